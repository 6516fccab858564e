"""Turning results into things people read: tables, files, progress.

Side effects (printing, files) live here, in :mod:`jaxsweep.plots`,
:mod:`jaxsweep.loggers` and in the CLI only; everything below the engine is
pure.

:func:`write_outputs` fills a run's directory with:

==============================================  ===============================
``results.csv``, ``results.json``               one row per variant, best first
``results_aggregated.csv``, ``.json``           rows differing only in ``seed``
                                                merged (mean, std, count)
``results.parquet``, ``results_aggregated...``  when pyarrow is installed
``results.md``                                  both tables, the best, plots
``config.yaml``                                 the sweep's config (config runs)
``best.yaml``                                   the best variant alone, runnable
``*.png``                                       plots (:mod:`jaxsweep.plots`)
``tensorboard/``                                event files (opt-in)
==============================================  ===============================

Seed aggregation uses the sample standard deviation (``ddof=1``, as pandas'
``std``); diverged seeds are counted and left out of the mean and std.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import keys
from jaxsweep import results as results_lib

# Console and file table formats; "auto" is rich in a terminal, else plain.
FORMATS = ("auto", "rich", "plain", "markdown", "csv", "json")
# results.md lists at most this many per-variant rows (the CSV has them all).
_MD_MAX_ROWS = 200
# Learning curves show this many of the best variants unless told otherwise.
DEFAULT_CURVES = 5


# --------------------------------------------------------------------------
# Cells.

# Shared with repr(Results): one way to write a cell.
fmt = format_lib.fmt
fmt_mean_std = format_lib.fmt_mean_std
short_names = format_lib.short_names
describe_settings = format_lib.describe_settings


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


def _numeric_col(col: str, rows) -> bool:
  return format_lib.is_numeric(rows, col)


def _arrow(res) -> str:
  return res.better


def per_variant_table(res: results_lib.Results, *, top: int | None = None,
                      columns: Sequence[str] | None = None) -> Table:
  """One row per variant, best first (diverged and NaN rows last)."""
  rows = res.table[:top] if top else res.table
  if columns:
    diverged = any(r.get("diverged_step") is not None for r in rows)
    cols = [c for c in columns if c != "diverged_step" or diverged]
  else:
    cols = res.table_columns(rows)
  names = short_names(res.swept)
  footer = res.caption()
  if top and top < len(res.rows):
    footer += f"; best {top} shown"
  return Table(headers=[names.get(c, c) for c in cols],
               cells=[[fmt(r.get(c)) for c in cols] for r in rows],
               right=[_numeric_col(c, rows) for c in cols],
               status=[r.get("status", "") for r in rows], footer=footer)


def aggregated_table(res: results_lib.Results, *, top: int | None = None,
                     ddof: int = results_lib.DEFAULT_DDOF) -> Table:
  """Rows that differ only in ``seed`` merged: mean ± std, diverged k/n."""
  agg = res.aggregate(ddof=ddof)
  shown = agg[:top] if top else agg
  config_cols = [c for c in res.swept if c != results_lib.SEED]
  names = short_names(res.swept)
  metrics = [m for m in res.metrics if m != res.target]
  metrics.insert(0, res.target)
  headers = ([names[c] for c in config_cols] + ["seeds", "diverged"]
             + [f"{m} (mean ± std)" if i == 0 else m for i, m in enumerate(metrics)])
  cells = []
  for r in shown:
    cells.append([fmt(r[c]) for c in config_cols] + [str(r["n"]), f"{r['diverged']}/{r['n']}"]
                 + [fmt_mean_std(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics])
  counts = sorted({r["n"] for r in agg})
  seeds = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}")
  num_div = sum(r["diverged"] for r in agg)
  footer = (f"{len(agg)} configurations x {seeds} seeds ({len(res.rows)} variants), "
            f"ranked by mean {res.target} ({_arrow(res)} is better); "
            f"mean ± std (ddof={ddof}) over non-diverged seeds"
            + (f"; {num_div} diverged seed(s) excluded from the mean" if num_div else ""))
  if top and top < len(agg):
    footer += f"; best {top} shown"
  right = ([_numeric_col(c, agg) for c in config_cols] + [True, True]
           + [True] * len(metrics))
  return Table(headers=headers, cells=cells, right=right,
               status=[r["status"] for r in shown], footer=footer)


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


def _print_rich_or_plain(table: Table, stream) -> None:
  from rich.console import Console  # pylint: disable=g-import-not-at-top
  console = Console(file=stream)
  if rich_width(table) > console.width:
    # Rich would crop or squeeze the numbers into ellipses: plain text wraps
    # in the terminal instead and loses nothing.
    print(to_plain(table), file=stream)
  else:
    console.print(to_rich(table))


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


def format_table(res: results_lib.Results, *, top: int | None = None,
                 columns: Sequence[str] | None = None) -> str:
  """The ranked per-variant table as aligned plain text (best first)."""
  return to_plain(per_variant_table(res, top=top, columns=columns))


def format_aggregated(res: results_lib.Results, *, top: int | None = None,
                      ddof: int = results_lib.DEFAULT_DDOF) -> str:
  """The seed-aggregated table as aligned plain text (best mean first)."""
  return to_plain(aggregated_table(res, top=top, ddof=ddof))


def format_best(res: results_lib.Results) -> str:
  best = res.best
  parts = [f"{k}={fmt(best[k])}" for k in res.swept if k in best]
  return (f"best: variant {best['variant']} ({', '.join(parts) or 'no swept values'}): "
          f"{res.target} = {fmt(best.get(res.target))}")


def format_best_aggregated(res: results_lib.Results) -> str:
  """The best configuration by mean over seeds, as one line."""
  best = res.aggregate()[0]
  config_cols = [c for c in res.swept if c != results_lib.SEED]
  return (f"best mean: {describe_settings(best, config_cols) or 'the only configuration'}: "
          f"{res.target} = {fmt_mean_std(best[f'{res.target}_mean'], best[f'{res.target}_std'])}"
          f" over {best[f'{res.target}_n']} of {best['n']} seeds")


def _isatty(stream) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):
    return False


def _has_rich() -> bool:
  try:
    import rich  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def _resolve_format(fmt_name: str, stream) -> str:
  if fmt_name not in FORMATS:
    raise errors.ConfigError(f"unknown format {fmt_name!r}.", key="format",
                             fix=f"use one of: {', '.join(FORMATS)}")
  if fmt_name == "auto":
    return "rich" if _isatty(stream) and _has_rich() else "plain"
  if fmt_name == "rich" and not _has_rich():
    return "plain"
  return fmt_name


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
    fmt_name: one of :data:`FORMATS`; ``csv``/``json`` print only the data,
      so the output can be piped into a file.
    stream: where to print (default: stdout).
  """
  stream = stream if stream is not None else sys.stdout
  kind = _resolve_format(fmt_name, stream)
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
    _print_rich_or_plain(table, stream)
    for line in lines:
      print(line, file=stream)
    return
  text = to_markdown(table) if kind == "markdown" else to_plain(table)
  print(text, file=stream)
  for line in lines:
    print(line, file=stream)


def aggregated_columns(res: results_lib.Results) -> list[str]:
  """Column order of the aggregated files."""
  cols = [c for c in res.swept if c != results_lib.SEED]
  cols += ["n", "diverged", "status", "seeds", "variants"]
  for m in res.metrics:
    cols += [f"{m}_mean", f"{m}_std", f"{m}_n"]
  return cols


# --------------------------------------------------------------------------
# Best config.

def best_config(raw: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
  """A runnable config (no sweep) with a variant's qualified settings set.

  Args:
    raw: the sweep's config dict (as :attr:`jaxsweep.config.Config.raw`).
    settings: the variant's qualified settings (``optimizer.learning_rate``:
      0.01, ``seed``: 1, ...), e.g. ``results.settings[i]``.

  Returns:
    A new dict of plain YAML types; ``raw`` is left as it was.

  Examples:
    >>> best_config({"optimizer": {"name": "sgd"}, "sweep": {"seed": [0, 1]}},
    ...             {"optimizer.learning_rate": 0.1, "seed": 1})
    {'optimizer': {'name': 'sgd', 'learning_rate': 0.1}, 'seed': 1}
  """
  out = keys.plain({k: v for k, v in raw.items() if k != "sweep"})  # A new copy.
  for key, value in settings.items():
    keys.set_path(out, key, value)
  return out


def write_best_config(res: results_lib.Results, out_dir: str,
                      config: Mapping[str, Any]) -> str | None:
  """Writes ``best.yaml``: the best variant's config, runnable on its own.

  Returns:
    The path, or None when no variant is healthy or its settings are unknown.
  """
  import yaml  # pylint: disable=g-import-not-at-top
  if not res.rows:
    return None
  best = res.best
  settings = res.settings.get(best["variant"])
  if settings is None or not results_lib.is_healthy(best):
    return None
  cfg = best_config(config, settings)
  header = (f"# The best variant ({best['variant']}, id {best.get('id', '-')}) of the sweep "
            f"in this directory:\n#   {res.target} = {fmt(best.get(res.target))}"
            + (f" ({describe_settings(best, res.swept)})" if res.swept else "")
            + "\n# Train it alone: jaxsweep run best.yaml\n")
  path = os.path.join(out_dir, "best.yaml")
  results_lib.atomic_write(path, header + yaml.safe_dump(cfg, sort_keys=False))
  return path


# --------------------------------------------------------------------------
# Files.

_OPTIONS: contextvars.ContextVar[dict] = contextvars.ContextVar(
    "jaxsweep_output_options", default={})


@contextlib.contextmanager
def output_options(**options) -> Iterator[None]:
  """Defaults for :func:`write_outputs` calls made inside the block.

  The CLI uses it to pass ``--no-plots``, ``--tensorboard``, ... through
  ``jaxsweep.config.run`` (which calls :func:`write_outputs` itself).

  Args:
    **options: ``aggregate``, ``plots``, ``tensorboard``, ``curves``.
  """
  unknown = set(options) - {"aggregate", "plots", "tensorboard", "curves"}
  if unknown:
    raise TypeError(f"unknown output options: {sorted(unknown)}")
  token = _OPTIONS.set({**_OPTIONS.get(), **options})
  try:
    yield
  finally:
    _OPTIONS.reset(token)


def write_outputs(res: results_lib.Results, out_dir: str, *,
                  config: Mapping[str, Any] | None = None, aggregate: bool | None = None,
                  plots: bool | None = None, tensorboard: bool | None = None,
                  curves: int | None = None) -> dict[str, Any]:
  """Writes every output file of a run (see the module docstring).

  results.csv/json are written first (atomically), so a failing plot never
  costs the results.

  Args:
    res: the results.
    out_dir: the run's directory (created if needed).
    config: the sweep's config dict (config-file runs): saved as config.yaml
      and used for best.yaml and log axes.
    aggregate: put the seed-aggregated table first in results.md.
    plots: render PNG plots (needs matplotlib).
    tensorboard: write TensorBoard event files (needs tensorboardX).
    curves: number of best variants in the learning-curves plot.
    (Unset options come from :func:`output_options`, else: aggregate and
    plots on, tensorboard off, 5 curves.)

  Returns:
    Paths by kind (``csv``, ``json``, ``config``, ``aggregated_csv``, ...,
    ``plots``: a list).
  """
  os.makedirs(out_dir, exist_ok=True)
  paths: dict[str, Any] = {"csv": os.path.join(out_dir, "results.csv"),
                           "json": os.path.join(out_dir, "results.json")}
  res.to_csv(paths["csv"])
  res.to_json(paths["json"])
  if config is not None:
    import yaml  # pylint: disable=g-import-not-at-top
    paths["config"] = os.path.join(out_dir, "config.yaml")
    results_lib.atomic_write(paths["config"], yaml.safe_dump(keys.plain(config), sort_keys=False))
  paths.update(write_derived(res, out_dir, config=config, aggregate=aggregate, plots=plots,
                             tensorboard=tensorboard, curves=curves))
  return paths


def write_derived(res: results_lib.Results, out_dir: str, *,
                  config: Mapping[str, Any] | None = None, aggregate: bool | None = None,
                  plots: bool | None = None, tensorboard: bool | None = None,
                  curves: int | None = None) -> dict[str, Any]:
  """Writes what is derived from results.json (``jaxsweep report`` reruns it).

  Same arguments as :func:`write_outputs`; results.csv/json are left alone.
  """
  opts = _OPTIONS.get()
  aggregate = opts.get("aggregate", True) if aggregate is None else aggregate
  plots = opts.get("plots", True) if plots is None else plots
  tensorboard = opts.get("tensorboard", False) if tensorboard is None else tensorboard
  curves = opts.get("curves", DEFAULT_CURVES) if curves is None else curves
  os.makedirs(out_dir, exist_ok=True)
  paths: dict[str, Any] = {
      "aggregated_csv": os.path.join(out_dir, "results_aggregated.csv"),
      "aggregated_json": os.path.join(out_dir, "results_aggregated.json")}
  agg = res.aggregate()
  results_lib.atomic_write(paths["aggregated_csv"],
                           results_lib.rows_to_csv(agg, aggregated_columns(res)))
  results_lib.atomic_write(paths["aggregated_json"], results_lib.rows_to_json(
      {"target": res.target, "mode": res.mode, "ddof": results_lib.DEFAULT_DDOF,
       "swept": [c for c in res.swept if c != results_lib.SEED],
       "metrics": res.metrics, "rows": agg}))
  paths.update(_write_parquet(res, agg, out_dir))
  if config is not None:
    best = write_best_config(res, out_dir, config)
    if best is not None:
      paths["best"] = best
  if plots:
    from jaxsweep import plots as plots_lib  # pylint: disable=g-import-not-at-top
    sweep = config.get("sweep") if isinstance(config, Mapping) else None
    paths["plots"] = plots_lib.make_plots(res, out_dir, sweep=sweep, curves=curves)
  if tensorboard:
    from jaxsweep import loggers  # pylint: disable=g-import-not-at-top
    tb = loggers.write_tensorboard(res, os.path.join(out_dir, "tensorboard"))
    if tb is not None:
      paths["tensorboard"] = tb
  paths["markdown"] = os.path.join(out_dir, "results.md")
  results_lib.atomic_write(paths["markdown"], format_markdown_report(
      res, aggregate=aggregate, plots=paths.get("plots", ()), best_yaml="best" in paths,
      out_dir=out_dir))
  return paths


def _write_parquet(res, agg, out_dir) -> dict[str, str]:
  """results(.aggregated).parquet when pandas and pyarrow are installed."""
  try:
    import pandas as pd  # pylint: disable=g-import-not-at-top
    import pyarrow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return {}  # Optional: skipped silently (pip install jaxsweep[all]).
  out = {}
  for kind, rows, cols in (("parquet", res.table, res.columns()),
                           ("aggregated_parquet", agg, aggregated_columns(res))):
    name = "results.parquet" if kind == "parquet" else "results_aggregated.parquet"
    path = os.path.join(out_dir, name)
    tmp = os.path.join(out_dir, f".tmp-{name}")
    try:
      pd.DataFrame(rows, columns=cols).to_parquet(tmp, index=False)
      os.replace(tmp, path)
      out[kind] = path
    except Exception as e:  # pylint: disable=broad-except
      # Mixed-type columns (e.g. a sweep over None and numbers) are not
      # representable in Parquet; the CSV/JSON files still hold everything.
      if os.path.exists(tmp):
        os.unlink(tmp)
      print(f"jaxsweep: {name} not written ({type(e).__name__}: {e})", file=sys.stderr)
  return out


def format_markdown_report(res: results_lib.Results, *, aggregate: bool = True,
                           plots: Sequence[str] = (), best_yaml: bool = False,
                           out_dir: str | None = None) -> str:
  """results.md: summary, best, tables (aggregated first) and plots."""
  groups = len(res.groups) or 1
  secs = f" in {res.seconds:.1f}s" if res.seconds else ""
  out = ["# jaxsweep results", "",
         f"{len(res.rows)} variants in {groups} compile group(s){secs}; ranked by "
         f"{res.target} ({_arrow(res)} is better).", ""]
  if res.rows:
    out.append(f"**{format_best(res)}**" + (" (config: [best.yaml](best.yaml))"
                                            if best_yaml else ""))
    out.append("")
  rows = len(res.rows)
  per_variant = ["## Per variant", "",
                 to_markdown(per_variant_table(res, top=min(rows, _MD_MAX_ROWS) or None)), ""]
  if rows > _MD_MAX_ROWS:
    per_variant += [f"({rows - _MD_MAX_ROWS} more rows in results.csv)", ""]
  sections = [per_variant]
  if res.has_seeds:
    aggregated = ["## Aggregated over seeds", "", format_best_aggregated(res), "",
                  to_markdown(aggregated_table(res)), ""]
    # --no-aggregate: the per-variant table is what was asked for; put it first.
    sections = [aggregated, per_variant] if aggregate else [per_variant, aggregated]
  for section in sections:
    out += section
  if plots:
    out += ["## Plots", ""]
    for p in plots:
      rel = os.path.relpath(p, out_dir) if out_dir else p
      out += [f"![{os.path.splitext(os.path.basename(p))[0]}]({rel})", ""]
  return "\n".join(out)


def describe_outputs(out_dir: str) -> str:
  """One line naming the files a run directory holds."""
  names = ["results.csv", "results.json", "results_aggregated.csv", "results_aggregated.json",
           "results.parquet", "results.md", "config.yaml", "best.yaml"]
  present = [n for n in names if os.path.isfile(os.path.join(out_dir, n))]
  num_plots = len([n for n in os.listdir(out_dir) if n.endswith(".png")
                   and not n.startswith(".")]) if os.path.isdir(out_dir) else 0
  if num_plots:
    present.append(f"{num_plots} plot(s)")
  if os.path.isdir(os.path.join(out_dir, "tensorboard")):
    present.append("tensorboard/")
  return f"results in {out_dir}: {', '.join(present) or 'none'}"


# --------------------------------------------------------------------------
# Reading a run back.

def load_run(path: str) -> tuple[results_lib.Results, dict[str, Any] | None]:
  """Loads a run directory's results.json (and config.yaml, if any).

  Raises:
    CheckpointError: for a missing directory or a missing/corrupt results
      file, with the fix.
  """
  if os.path.isfile(path) and path.endswith(".json"):
    directory, results_path = os.path.dirname(path) or ".", path
  else:
    if not os.path.isdir(path):
      raise errors.CheckpointError(
          f"no results directory at {path}.", key="results",
          fix="pass the --out directory of a finished run (default runs/<config name>)")
    directory, results_path = path, os.path.join(path, "results.json")
  res = results_lib.Results.from_json(results_path)
  config = None
  config_path = os.path.join(directory, "config.yaml")
  if os.path.isfile(config_path):
    import yaml  # pylint: disable=g-import-not-at-top
    try:
      with open(config_path) as f:
        config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
      print(f"jaxsweep: {config_path} unreadable ({e}); best.yaml not rewritten",
            file=sys.stderr)
    if not isinstance(config, dict):
      config = None
  return res, config


# --------------------------------------------------------------------------
# Two sweeps side by side.

def _marginal(res: results_lib.Results, cols: Sequence[str], metric: str):
  """key -> (values, healthy metric values, total, diverged) over the rest."""
  out: dict[tuple, list] = {}
  for r in res.rows:
    key = tuple(keys.freeze(r.get(c)) for c in cols)
    entry = out.setdefault(key, [[r.get(c) for c in cols], [], 0, 0])
    entry[2] += 1
    if results_lib.is_healthy(r, metric):
      entry[1].append(float(r[metric]))
    elif r.get("status") != results_lib.STATUS_OK:
      entry[3] += 1
  return out


def _sort_value(v):
  if isinstance(v, (int, float)) and not isinstance(v, bool):
    return (0, float("inf") if math.isnan(v) else v, "")
  return (1, 0.0, fmt(v))


def compare_tables(a: results_lib.Results, b: results_lib.Results, *,
                   labels: Sequence[str] = ("A", "B"),
                   target: str | None = None) -> list[Table]:
  """Tables comparing two sweeps: best rows, then rows matched on shared columns.

  The first table has each sweep's best variant (its swept values and
  metrics). The second groups each sweep's rows by the swept columns both
  share (seed excluded) and shows the target's mean ± std over everything
  else (seeds and unshared columns), diverged rows excluded, with B - A.

  Args:
    a, b: the two sweeps' results.
    labels: their names (e.g. their directories).
    target: the metric to compare (default: A's target).
  """
  target = target or a.target
  for res, label in ((a, labels[0]), (b, labels[1])):
    if res.rows and target not in res.rows[0]:
      raise errors.ConfigError(f"{label} has no metric '{target}'.", key="target",
                               fix=f"pass --target with one of: {', '.join(res.metrics)}")
  mode = a.mode if target == a.target else None
  a, b = a.ranked(target, mode), b.ranked(target, mode)
  metrics = [target] + [m for m in a.metrics if m in b.metrics and m != target]
  cells, status = [], []
  for res, label in ((a, labels[0]), (b, labels[1])):
    best = res.best if res.rows else {}
    num_div = sum(r["status"] != results_lib.STATUS_OK for r in res.rows)
    cells.append([label, str(len(res.rows)), str(num_div),
                  fmt(res.seconds) if res.seconds else "-",
                  describe_settings(best, [c for c in res.swept if c in best]) or "-"]
                 + [fmt(best.get(m)) for m in metrics])
    status.append(best.get("status", ""))
  best_table = Table(headers=["sweep", "variants", "diverged", "seconds", "best variant",
                              *metrics],
                     cells=cells, right=[False, True, True, True, False] + [True] * len(metrics),
                     status=status,
                     footer=f"best variant of each sweep by {target} ({_arrow(a)} is better)")
  shared = [c for c in a.swept if c in b.swept and c != results_lib.SEED]
  if not shared:
    return [best_table]
  ma, mb = _marginal(a, shared, target), _marginal(b, shared, target)
  keys = list(dict.fromkeys([*ma, *mb]))
  keys.sort(key=lambda k: [_sort_value(v) for v in (ma.get(k) or mb.get(k))[0]])
  names = short_names(shared)
  rows, status = [], []
  for k in keys:
    values = (ma.get(k) or mb.get(k))[0]
    row = [fmt(v) for v in values]
    means = []
    for m in (ma, mb):
      if k not in m:
        row += ["-", "-"]
        means.append(None)
        continue
      _, vals, total, div = m[k]
      mean, std = results_lib.mean_std(vals)
      means.append(mean)
      row += [fmt_mean_std(mean, std), f"{div}/{total}"]
    delta = means[1] - means[0] if None not in means else None
    row.append("-" if delta is None else f"{delta:+.4g}")
    rows.append(row)
    status.append(results_lib.STATUS_OK)
  headers = ([names[c] for c in shared] + [f"{labels[0]} {target}", f"{labels[0]} diverged",
                                            f"{labels[1]} {target}", f"{labels[1]} diverged",
                                            f"{labels[1]} - {labels[0]}"])
  right = [_numeric_col(c, a.rows + b.rows) for c in shared] + [True] * 5
  matched = Table(headers=headers, cells=rows, right=right, status=status,
                  footer=f"rows matched on {', '.join(names[c] for c in shared)}; "
                         f"{target} mean ± std (ddof={results_lib.DEFAULT_DDOF}) over seeds "
                         "and unshared columns, diverged excluded; - where a sweep lacks the "
                         "value")
  return [best_table, matched]


def render_tables(tables: Sequence[Table], *, fmt_name: str = "auto", stream=None) -> None:
  """Prints tables one after another in a console format."""
  stream = stream if stream is not None else sys.stdout
  kind = _resolve_format(fmt_name, stream)
  if kind in ("csv", "json"):
    raise errors.ConfigError(f"--format {kind} is for a single results table.",
                             key="format", fix="use plain, rich or markdown here")
  for i, t in enumerate(tables):
    if i:
      print(file=stream)
    if kind == "rich":
      _print_rich_or_plain(t, stream)
    else:
      print(to_markdown(t) if kind == "markdown" else to_plain(t), file=stream)


# --------------------------------------------------------------------------
# Progress.

def _duration(seconds: float | None) -> str:
  if seconds is None or not math.isfinite(seconds):
    return "?"
  if seconds < 1:
    return "<1s"
  if seconds < 60:
    return f"{seconds:.0f}s"
  if seconds < 3600:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
  return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class _Tracker:
  """Running totals of a sweep from the engine's events."""

  def __init__(self):
    self.variants = self.num_groups = 0
    self.group: dict[str, Any] = {}
    self.chunk_diverged: dict[int, int] = {}
    self.finished_seconds = 0.0   # training seconds of finished chunks
    self.current_elapsed = 0.0
    self.done = 0                 # variant-steps done in the current group
    self.diverged_total = 0       # in finished groups
    self.train_total = 0.0        # training seconds of finished chunks, all groups
    self.compile_seconds = 0.0
    self.group_compile: float | None = None
    self.last_period: dict[str, Any] = {}

  def update(self, event: Mapping[str, Any]) -> None:
    kind = event.get("event")
    if kind == "start":
      self.__init__()
      self.variants, self.num_groups = event["variants"], event["groups"]
    elif kind == "group":
      self.diverged_total += self.diverged
      self.group = dict(event)
      self.chunk_diverged, self.finished_seconds, self.current_elapsed = {}, 0.0, 0.0
      self.done, self.group_compile = 0, None
    elif kind == "compiled":
      self.group_compile = event["seconds"]
      self.compile_seconds += event["seconds"]
    elif kind == "period":
      self.last_period = dict(event)
      self.chunk_diverged[event["chunk_start"]] = event["diverged"]
      self.done = (event["chunk_start"] * event["steps"]
                   + event["chunk_variants"] * event["step"])
      self.current_elapsed = event["elapsed"]
      if event["step"] >= event["steps"]:
        self.finished_seconds += event["elapsed"]
        self.train_total += event["elapsed"]
        self.current_elapsed = 0.0

  @property
  def diverged(self) -> int:
    return sum(self.chunk_diverged.values())

  @property
  def total(self) -> int:
    return self.group.get("variants", 0) * self.group.get("steps", 0)

  @property
  def rate(self) -> float | None:
    seconds = self.finished_seconds + self.current_elapsed
    return self.done / seconds if seconds > 0 and self.done else None

  @property
  def eta(self) -> float | None:
    rate = self.rate
    return (self.total - self.done) / rate if rate else None

  @property
  def group_done(self) -> bool:
    p = self.last_period
    return bool(p) and p["step"] >= p["steps"] and (
        p["chunk_start"] + p["chunk_variants"] >= p["group_variants"])

  def done_line(self) -> str:
    # Compile time is shown on its own: the engine may compile before its
    # "start" event, so the event's total seconds need not include it.
    return f"training {self.train_total:.1f}s, compile {self.compile_seconds:.1f}s"

  def group_label(self) -> str:
    return f"group {self.group.get('group', 0) + 1}/{self.group.get('num_groups', 1)}"

  def status_line(self, *, markup: bool = False) -> str:
    p = self.last_period
    rate = self.rate
    chunked = p["chunk_variants"] < p["group_variants"]
    div = f"diverged {self.diverged}"
    if markup and self.diverged:
      div = f"[red]{div}[/]"
    return (f"step {p['step']}/{p['steps']}  "
            + (f"variants {p['chunk_start'] + 1}-{p['chunk_start'] + p['chunk_variants']}"
               f"/{p['group_variants']}  " if chunked or not markup else "")
            + f"{rate or 0:,.0f} variant-steps/s  ETA {_duration(self.eta)}  {div}")


class ProgressPrinter:
  """Progress of a sweep on stderr, from the engine's events.

  In a terminal with rich installed: a live bar per compile group (steps,
  variant-steps/s, ETA, diverged so far; compile time on its own). Otherwise
  plain lines without control codes: in a terminal at most one progress line
  per ``min_interval`` seconds; in a log or CI (stderr not a terminal) only a
  few lines per group (start, compile time, end) plus one line per
  ``min_interval`` (30 s) of long training.

  Args:
    stream: where to print (default: ``sys.stderr``).
    min_interval: seconds between progress lines (default: 1 in a terminal,
      30 otherwise).
    live: force the rich live display on or off (default: a terminal and
      rich installed).
  """

  def __init__(self, stream=None, min_interval: float | None = None, *,
               live: bool | None = None):
    self.stream = stream if stream is not None else sys.stderr
    tty = _isatty(self.stream)
    self.min_interval = min_interval if min_interval is not None else (1.0 if tty else 30.0)
    self.live = (tty and _has_rich()) if live is None else live
    self._tracker = _Tracker()
    self._rich: _RichProgress | None = None
    self._last = 0.0

  def __call__(self, event: Mapping[str, Any]) -> None:
    self._tracker.update(event)
    if self.live:
      if self._rich is None or event.get("event") == "start":
        if self._rich is not None:
          self._rich.close()
        self._rich = _RichProgress(self.stream)
      self._rich.handle(event, self._tracker)
      return
    self._plain(event)

  def _plain(self, event: Mapping[str, Any]) -> None:
    t = self._tracker
    kind = event.get("event")
    if kind == "start":
      self._print(f"jaxsweep: {event['variants']} variants in {event['groups']} "
                  f"compile group(s) on {event['devices']} device(s)")
    elif kind == "group":
      self._last = time.monotonic()
      self._print(f"{t.group_label()}: {event['variants']} variants x {event['steps']} steps "
                  f"({event['static']}); chunk {event['chunk_size']}, padding "
                  f"{event['padding']}; vectorized: {', '.join(event['dynamic']) or '-'}")
    elif kind == "compiled":
      self._print(f"  {t.group_label()} compiled in {event['seconds']:.1f}s")
    elif kind == "period":
      if t.group_done:
        rate = t.rate
        self._print(f"  {t.group_label()} trained in {t.finished_seconds:.1f}s "
                    f"({rate or 0:,.0f} variant-steps/s); diverged {t.diverged}")
        return
      now = time.monotonic()
      if now - self._last < self.min_interval:
        return
      self._last = now
      self._print(f"  {t.group_label()}  {t.status_line()}")
    elif kind == "done":
      div = t.diverged_total + t.diverged
      self._print(f"done: {t.done_line()}"
                  + (f"; {div} of {t.variants} variants diverged" if div else ""))

  def _print(self, text: str) -> None:
    print(text, file=self.stream, flush=True)


_LIVE: list[_RichProgress] = []


@atexit.register
def _close_live() -> None:
  # A run that raised mid-sweep leaves its live display open: restore the
  # terminal (cursor) on the way out.
  for live in list(_LIVE):
    live.close()


class _RichProgress:
  """The rich live display; refreshed on events only (no background thread)."""

  def __init__(self, stream):
    from rich.console import Console  # pylint: disable=g-import-not-at-top
    from rich.progress import BarColumn, Progress, TextColumn  # pylint: disable=g-import-not-at-top
    from rich.table import Column  # pylint: disable=g-import-not-at-top
    self.console = Console(file=stream, force_terminal=True)
    self.progress = Progress(
        TextColumn("{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=20), TextColumn("{task.fields[info]}"),
        console=self.console, auto_refresh=False, redirect_stdout=False,
        redirect_stderr=False)
    self.task = None
    self.started = False

  def handle(self, event: Mapping[str, Any], t: _Tracker) -> None:
    kind = event.get("event")
    if kind == "start":
      self.console.print(f"[bold]jaxsweep[/]: {event['variants']} variants in "
                         f"{event['groups']} compile group(s) on {event['devices']} device(s)",
                         highlight=False)
      self.progress.start()
      self.started = True
      _LIVE.append(self)
    elif kind == "group":
      self.progress.console.print(
          f"{t.group_label()}: {event['variants']} variants x {event['steps']} steps "
          f"[dim]({event['static']}; vectorized: {', '.join(event['dynamic']) or '-'})[/]",
          highlight=False)
      self.task = self.progress.add_task(t.group_label(), total=max(t.total, 1),
                                         info="compiling...")
    elif kind == "compiled" and self.task is not None:
      self.progress.update(self.task, info=f"compiled in {event['seconds']:.1f}s")
    elif kind == "period" and self.task is not None:
      info = (t.status_line(markup=True)
              + (f"  [dim]compile {t.group_compile:.1f}s[/]" if t.group_compile else ""))
      self.progress.update(self.task, completed=t.done, info=info)
    elif kind == "done":
      self.close()
      div = t.diverged_total + t.diverged
      self.console.print(f"done: {t.done_line()}"
                         + (f"; [red]{div} of {t.variants} variants diverged[/]" if div else ""),
                         highlight=False)
      return
    if self.started:
      self.progress.refresh()

  def close(self) -> None:
    if self.started:
      self.started = False
      self.progress.stop()
    if self in _LIVE:
      _LIVE.remove(self)
