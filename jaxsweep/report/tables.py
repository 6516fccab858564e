"""The results as tables: per variant, aggregated over seeds, rendered.

A :class:`Table` holds formatted cells; :func:`to_plain`, :func:`to_markdown`
and :func:`to_rich` render it, :func:`render` prints the run's table and its
best lines in a console format (:data:`jaxsweep.report.console.FORMATS`).

Seed aggregation uses the sample standard deviation (``ddof=1``, as pandas'
``std``; see :func:`jaxsweep.results.mean_std`); diverged seeds are counted
and left out of the mean and std.

Examples:
  >>> from jaxsweep import results
  >>> from jaxsweep.report import tables
  >>> res = results.Results(
  ...     [{"variant": 0, "lr": 0.1, "status": "ok", "acc": 0.9},
  ...      {"variant": 1, "lr": 0.01, "status": "ok", "acc": 0.95}], {},
  ...     swept=["lr"], target="acc", mode="max", metrics=["acc"])
  >>> print(tables.format_table(res))
  variant    lr  status   acc
  -------  ----  ------  ----
        1  0.01  ok      0.95
        0   0.1  ok       0.9
  2 variants, ranked by acc (higher is better)
  >>> tables.format_best(res)
  'best: variant 1 (lr=0.01): acc = 0.95'
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NamedTuple

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import results as results_lib
from jaxsweep.report import console


class Table(NamedTuple):
  """A table ready to render as plain text, markdown or rich.

  Attributes:
    headers: column titles.
    cells: rows of formatted cells.
    right: per column, whether it is numeric (right-aligned).
    status: per row, ``ok``/``diverged`` (for styling).
    footer: one line under the table.
  """

  headers: list[str]
  cells: list[list[str]]
  right: list[bool]
  status: list[str]
  footer: str


def per_variant_table(res: results_lib.Results, *, top: int | None = None,
                      columns: Sequence[str] | None = None) -> Table:
  """One row per variant, best first (diverged and NaN rows last).

  Args:
    res: the results.
    top: show only the best K rows.
    columns: the columns to show (default:
      :meth:`jaxsweep.results.Results.table_columns`).
  """
  rows = res.table[:top] if top else res.table
  if columns:
    diverged = any(r.get("diverged_step") is not None for r in rows)
    cols = [c for c in columns if c != "diverged_step" or diverged]
  else:
    cols = res.table_columns(rows)
  names = format_lib.short_names(res.swept)
  footer = res.caption()
  if top and top < len(res.rows):
    footer += f"; best {top} shown"
  return Table(headers=[names.get(c, c) for c in cols],
               cells=[[format_lib.fmt(r.get(c)) for c in cols] for r in rows],
               right=[format_lib.is_numeric(rows, c) for c in cols],
               status=[r.get("status", "") for r in rows], footer=footer)


def aggregated_table(res: results_lib.Results, *, top: int | None = None,
                     ddof: int = results_lib.DEFAULT_DDOF) -> Table:
  """Rows that differ only in ``seed`` merged: mean ± std, diverged k/n."""
  agg = res.aggregate(ddof=ddof)
  shown = agg[:top] if top else agg
  config_cols = [c for c in res.swept if c != results_lib.SEED]
  names = format_lib.short_names(res.swept)
  metrics = [m for m in res.metrics if m != res.target]
  metrics.insert(0, res.target)
  headers = ([names[c] for c in config_cols] + ["seeds", "diverged"]
             + [f"{m} (mean ± std)" if i == 0 else m for i, m in enumerate(metrics)])
  cells = []
  for r in shown:
    cells.append([format_lib.fmt(r[c]) for c in config_cols]
                 + [str(r["n"]), f"{r['diverged']}/{r['n']}"]
                 + [format_lib.fmt_mean_std(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics])
  counts = sorted({r["n"] for r in agg})
  seeds = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}")
  num_div = sum(r["diverged"] for r in agg)
  footer = (f"{len(agg)} configurations x {seeds} seeds ({len(res.rows)} variants), "
            f"ranked by mean {res.target} ({res.better} is better); "
            f"mean ± std (ddof={ddof}) over non-diverged seeds"
            + (f"; {num_div} diverged seed(s) excluded from the mean" if num_div else ""))
  if top and top < len(agg):
    footer += f"; best {top} shown"
  right = ([format_lib.is_numeric(agg, c) for c in config_cols] + [True, True]
           + [True] * len(metrics))
  return Table(headers=headers, cells=cells, right=right,
               status=[r["status"] for r in shown], footer=footer)


def aggregated_columns(res: results_lib.Results) -> list[str]:
  """Column order of the aggregated files."""
  cols = [c for c in res.swept if c != results_lib.SEED]
  cols += ["n", "diverged", "status", "seeds", "variants"]
  for m in res.metrics:
    cols += [f"{m}_mean", f"{m}_std", f"{m}_n"]
  return cols


# --------------------------------------------------------------------------
# Rendering a Table.

def to_plain(table: Table) -> str:
  """Aligned plain text, no control codes (logs, pipes, CI)."""
  return format_lib.align(table.headers, table.cells, table.right, table.footer)


def to_markdown(table: Table) -> str:
  """A GitHub-flavoured markdown table with the footer as a caption."""
  def esc(s):
    return s.replace("|", "\\|")
  out = ["| " + " | ".join(esc(h) for h in table.headers) + " |",
         "|" + "|".join("---:" if r else ":---" for r in table.right) + "|"]
  out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.cells]
  out.append("")
  out.append(f"*{table.footer}*")
  return "\n".join(out)


def rich_width(table: Table) -> int:
  """Columns a rich rendering needs (cells, padding and borders)."""
  widths = [max([len(h)] + [len(row[j]) for row in table.cells])
            for j, h in enumerate(table.headers)]
  return sum(widths) + 3 * len(widths) + 1


def to_rich(table: Table):
  """A ``rich.table.Table``: best row bold, diverged rows red."""
  from rich.table import Table as RichTable  # pylint: disable=g-import-not-at-top
  t = RichTable(caption=table.footer, caption_justify="left", header_style="bold")
  for h, r in zip(table.headers, table.right):
    t.add_column(h, justify="right" if r else "left", no_wrap=True)
  for i, (row, status) in enumerate(zip(table.cells, table.status)):
    style = ("red" if status != results_lib.STATUS_OK
             else "bold green" if i == 0 else None)
    t.add_row(*row, style=style)
  return t


def print_rich_or_plain(table: Table, stream) -> None:
  """Prints with rich, or as plain text when rich would have to crop it."""
  from rich.console import Console  # pylint: disable=g-import-not-at-top
  out = Console(file=stream)
  if rich_width(table) > out.width:
    # Rich would crop or squeeze the numbers into ellipses: plain text wraps
    # in the terminal instead and loses nothing.
    print(to_plain(table), file=stream)
  else:
    out.print(to_rich(table))


# --------------------------------------------------------------------------
# Text of a run.

def format_table(res: results_lib.Results, *, top: int | None = None,
                 columns: Sequence[str] | None = None) -> str:
  """The ranked per-variant table as aligned plain text (best first)."""
  return to_plain(per_variant_table(res, top=top, columns=columns))


def format_aggregated(res: results_lib.Results, *, top: int | None = None,
                      ddof: int = results_lib.DEFAULT_DDOF) -> str:
  """The seed-aggregated table as aligned plain text (best mean first)."""
  return to_plain(aggregated_table(res, top=top, ddof=ddof))


def format_best(res: results_lib.Results) -> str:
  """The best variant, its swept values and target, as one line."""
  best = res.best
  parts = [f"{k}={format_lib.fmt(best[k])}" for k in res.swept if k in best]
  return (f"best: variant {best['variant']} ({', '.join(parts) or 'no swept values'}): "
          f"{res.target} = {format_lib.fmt(best.get(res.target))}")


def format_best_aggregated(res: results_lib.Results) -> str:
  """The best configuration by mean over seeds, as one line."""
  best = res.aggregate()[0]
  config_cols = [c for c in res.swept if c != results_lib.SEED]
  settings = format_lib.describe_settings(best, config_cols) or "the only configuration"
  score = format_lib.fmt_mean_std(best[f"{res.target}_mean"], best[f"{res.target}_std"])
  return (f"best mean: {settings}: {res.target} = {score}"
          f" over {best[f'{res.target}_n']} of {best['n']} seeds")


def use_aggregated(res: results_lib.Results, aggregate: bool = True) -> bool:
  """Whether the aggregated table is the one to show (several seeds swept)."""
  return aggregate and res.has_seeds


def render(res: results_lib.Results, *, top: int | None = None, aggregate: bool = True,
           fmt_name: str = "auto", stream=None) -> None:
  """Prints the table (aggregated over seeds when seeds were swept) and best.

  Args:
    res: the results.
    top: show only the best K rows.
    aggregate: merge rows that differ only in seed (when seeds were swept).
    fmt_name: one of :data:`jaxsweep.report.console.FORMATS`; ``csv``/``json``
      print only the data, so the output can be piped into a file.
    stream: where to print (default: stdout).
  """
  stream = stream if stream is not None else sys.stdout
  kind = console.resolve_format(fmt_name, stream)
  agg = use_aggregated(res, aggregate)
  if kind == "csv":
    if agg:
      rows = res.aggregate()[:top] if top else res.aggregate()
      stream.write(results_lib.rows_to_csv(rows, aggregated_columns(res)))
    else:
      rows = res.table[:top] if top else res.table
      stream.write(results_lib.rows_to_csv(rows, res.columns()))
    return
  if kind == "json":
    rows = res.aggregate() if agg else res.table
    stream.write(results_lib.rows_to_json(rows[:top] if top else rows) + "\n")
    return
  table = aggregated_table(res, top=top) if agg else per_variant_table(res, top=top)
  lines = [format_best(res)] if res.rows else []
  if agg:
    lines.append(format_best_aggregated(res))
  if kind == "rich":
    print_rich_or_plain(table, stream)
  else:
    print(to_markdown(table) if kind == "markdown" else to_plain(table), file=stream)
  for line in lines:
    print(line, file=stream)


def render_tables(tables: Sequence[Table], *, fmt_name: str = "auto", stream=None) -> None:
  """Prints tables one after another in a console format.

  Raises:
    ConfigError: for ``csv``/``json``, which hold a single results table.
  """
  stream = stream if stream is not None else sys.stdout
  kind = console.resolve_format(fmt_name, stream)
  if kind in ("csv", "json"):
    raise errors.ConfigError(f"--format {kind} is for a single results table.",
                             key="format", fix="use plain, rich or markdown here")
  for i, t in enumerate(tables):
    if i:
      print(file=stream)
    if kind == "rich":
      print_rich_or_plain(t, stream)
    else:
      print(to_markdown(t) if kind == "markdown" else to_plain(t), file=stream)
