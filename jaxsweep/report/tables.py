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

import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import NamedTuple

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import results as results_lib
from jaxsweep.report import console

# Console output is kept to this many columns where it can be (captions
# wrapped, long descriptions under the table).
WIDTH = 100
# A terminal table shows at least this many rows, however short the window.
MIN_ROWS = 10


class Table(NamedTuple):
  """A table ready to render as plain text, markdown or rich.

  Attributes:
    headers: column titles.
    cells: rows of formatted cells.
    right: per column, whether it is numeric (right-aligned).
    status: per row, ``ok``/``stopped``/``unstable``/``diverged`` (for styling).
    footer: lines under the table (what it is ranked on, notes, advice).
    breaks: column indices that start a new column set (validation | test |
      size): a ``|`` before them in plain text.
  """

  headers: list[str]
  cells: list[list[str]]
  right: list[bool]
  status: list[str]
  footer: str
  breaks: tuple[int, ...] = ()


def per_variant_table(res: results_lib.Results, *, top: int | None = None,
                      columns: Sequence[str] | None = None) -> Table:
  """One row per variant, best first (unstable, diverged and NaN rows last).

  The columns: variant, the swept values, status, the target and the other
  validation metrics, their test counterparts, params. Under the table: what
  it is ranked on, why each unhealthy variant is so (its ``note``), and
  which number to report.

  Args:
    res: the results.
    top: show only the best K rows.
    columns: the columns to show (default:
      :meth:`jaxsweep.results.Results.table_columns`).
  """
  rows = res.table[:top] if top else res.table
  cols = list(columns) if columns else res.table_columns(rows)
  names = format_lib.short_names(res.swept)
  shown = f"; best {top} shown" if top and top < len(res.rows) else ""
  return Table(headers=[names.get(c, c) for c in cols],
               cells=[[format_lib.fmt(r.get(c)) for c in cols] for r in rows],
               right=[format_lib.is_numeric(rows, c) for c in cols],
               status=[r.get("status", "") for r in rows],
               footer=res.caption(rows, shown=shown),
               breaks=_breaks(cols, res.metric_sets()[1]))


def _breaks(cols: Sequence[str], second: Sequence[str]) -> tuple[int, ...]:
  """Where the test column set and the size column start (when both sets show)."""
  if not second or second[0] not in cols:
    return ()
  return tuple(cols.index(c) for c in (second[0], "params") if c in cols)


seed_status = results_lib.seed_status


def aggregated_table(res: results_lib.Results, *, top: int | None = None,
                     ddof: int = results_lib.DEFAULT_DDOF) -> Table:
  """One row per configuration (seeds merged), best mean first, the selected one starred.

  See :meth:`jaxsweep.results.Results.aggregated_parts` for the columns
  (``print(res.aggregate())`` shows the same table).
  """
  parts = res.aggregated_parts(top=top, ddof=ddof)
  return Table(headers=parts["headers"], cells=parts["cells"], right=parts["right"],
               status=parts["status"], footer=parts["footer"],
               breaks=_breaks(parts["columns"], parts["second"]))


def aggregated_columns(res: results_lib.Results) -> list[str]:
  """Column order of the aggregated files."""
  return res.aggregated_columns()


# --------------------------------------------------------------------------
# Rendering a Table.

def to_plain(table: Table) -> str:
  """Aligned plain text, no control codes (logs, pipes, CI)."""
  return format_lib.align(table.headers, table.cells, table.right, table.footer,
                         breaks=table.breaks)


def to_markdown(table: Table) -> str:
  """A GitHub-flavoured markdown table with the footer lines as captions."""
  def esc(s):
    return s.replace("|", "\\|").replace("*", "\\*")
  out = ["| " + " | ".join(esc(h) for h in table.headers) + " |",
         "|" + "|".join("---:" if r else ":---" for r in table.right) + "|"]
  out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.cells]
  for line in table.footer.split("\n"):
    out += ["", f"*{esc(line.strip())}*" if line.strip() else ""]
  return "\n".join(out)


def rich_width(table: Table) -> int:
  """Columns a rich rendering needs (cells, padding and borders)."""
  widths = [max([len(h)] + [len(row[j]) for row in table.cells])
            for j, h in enumerate(table.headers)]
  return sum(widths) + 3 * len(widths) + 1


def to_rich(table: Table):
  """A ``rich.table.Table``: best row bold, unstable rows yellow, diverged rows red."""
  from rich.table import Table as RichTable  # pylint: disable=g-import-not-at-top
  t = RichTable(caption=table.footer, caption_justify="left", header_style="bold")
  for h, r in zip(table.headers, table.right):
    t.add_column(h, justify="right" if r else "left", no_wrap=True)
  for i, (row, status) in enumerate(zip(table.cells, table.status)):
    style = ("red" if status == results_lib.STATUS_DIVERGED
             else "yellow" if status != results_lib.STATUS_OK
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
  """What was selected, on its own line(s); see :func:`selection_lines`."""
  return "\n".join(selection_lines(res))


def selection_lines(res: results_lib.Results) -> list[str]:
  """The selected configuration and the number to report, as lines.

  Without seeds: ``best: variant 5 (learning_rate=0.1): val_accuracy =
  0.625; report test_accuracy = 0.6484``. With seeds swept, the selected
  configuration by its mean over seeds (``selected: ...``), then the best
  single run, which is not the selection.
  """
  if not res.rows:
    return []
  chosen = res.selected
  report = results_lib.report_metric(res.target)
  report = report if report and report != res.target and report in res.columns() else None
  if chosen is None:
    return ["nothing selected: no variant trained without trouble (each is unstable or "
            "diverged; see the status and note columns)"]
  tie = tie_line(res)
  if not res.has_seeds:
    best = res.table[0]
    line = (f"best: variant {best['variant']} ({_settings(best, res.swept)}): "
            f"{res.target} = {format_lib.fmt(best.get(res.target))}")
    return [line + (f"; report {report} = {format_lib.fmt(best.get(report))}" if report
                    else ""), *tie]
  config_cols = [c for c in res.swept if c != results_lib.SEED]
  seeds = ", ".join(format_lib.fmt(s) for s in chosen["seeds"])
  line = (f"selected: {_settings(chosen, config_cols)}, mean over seeds {seeds}: "
          f"{res.target} = {_mean_std(chosen, res.target)}")
  if chosen[f"{res.target}_n"] < chosen["n"]:
    line += f" ({chosen[f'{res.target}_n']} of {chosen['n']} seeds did not diverge)"
  if report:
    line += f"; report {report} = {_mean_std(chosen, report)}"
  single = res.table[0]
  one = (f"best single run: variant {single['variant']} ({_settings(single, res.swept)}): "
         f"{res.target} = {format_lib.fmt(single.get(res.target))}"
         + (f", {report} = {format_lib.fmt(single.get(report))}" if report else "")
         + " (one seed: not the selection)")
  return [line, *tie, one]


def tie_line(res: results_lib.Results) -> list[str]:
  """The selection's tie, as a list of at most one line (:meth:`Results.tie_note`)."""
  note = res.tie_note()
  return [note] if note else []


def _settings(row, columns) -> str:
  return format_lib.describe_settings(row, columns) or "no swept values"


def _mean_std(row, metric) -> str:
  return format_lib.fmt_mean_std(row.get(f"{metric}_mean"), row.get(f"{metric}_std"))


def format_best_aggregated(res: results_lib.Results) -> str:
  """The selected configuration by its mean over seeds, as one line."""
  return selection_lines(res)[0] if res.rows else ""


def use_aggregated(res: results_lib.Results, aggregate: bool = True) -> bool:
  """Whether the aggregated table is the one to show (several seeds swept)."""
  return aggregate and res.has_seeds


def fitting_rows(res: results_lib.Results, stream, *, aggregate: bool = True) -> int | None:
  """How many rows of the table fit the terminal's height, or None (all).

  In a terminal, the rows that fit with the caption, the selection lines and
  the files line (at least :data:`MIN_ROWS`); elsewhere (a log, a pipe, a
  notebook) every row.
  """
  if not console.isatty(stream):
    return None
  height = shutil.get_terminal_size().lines
  n = len(res.aggregate()) if use_aggregated(res, aggregate) else len(res.rows)
  # Header and rule, ~4 caption lines, 2-3 selection lines, the files line, a prompt.
  fit = max(height - 12, MIN_ROWS)
  return fit if fit < n else None


def wrap(text: str, width: int = WIDTH) -> str:
  """Each line of ``text`` wrapped at ``width``, continuation lines indented."""
  return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") if line.strip() else line
                   for line in text.split("\n"))


def render(res: results_lib.Results, *, top: int | None = None, aggregate: bool = True,
           fmt_name: str = "auto", stream=None) -> None:
  """Prints the table (aggregated over seeds when seeds were swept) and best.

  In a terminal, without ``top``, only the best rows that fit its height are
  shown ("N more rows ...": the files have them all) and the lines under the
  table are wrapped at :data:`WIDTH` columns.

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
  fit = None
  if top is None and kind in ("rich", "plain"):
    top = fit = fitting_rows(res, stream, aggregate=aggregate)
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
  lines = selection_lines(res)
  if console.isatty(stream):
    width = min(WIDTH, shutil.get_terminal_size().columns)
    table = table._replace(footer=wrap(table.footer, width))
    lines = [wrap(line, width) for line in lines]
  if fit is not None:
    total = len(res.aggregate()) if agg else len(res.rows)
    what = "configurations" if agg else "rows"
    table = table._replace(footer=table.footer + f"\n{total - fit} more {what} in results.md "
                                                 "(or --top K to print more here)")
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
