"""A run's directory: the files written from its results, and reading them back.

:func:`write_outputs` fills a run's directory with:

==============================================  ===============================
``results.csv``, ``results.json``               one row per variant, best first
``results_aggregated.csv``, ``.json``           rows differing only in ``seed``
                                                merged (mean, std, count)
``results.parquet``, ``results_aggregated...``  when pyarrow is installed
``results.md``                                  both tables, the best, plots
``config.yaml``                                 the sweep's config (config runs)
``best.yaml``                                   the best variant alone, runnable
``*.png``                                       plots (:mod:`jaxsweep.report.plots`)
``tensorboard/``                                event files (opt-in,
                                                :mod:`jaxsweep.report.tensorboard`)
==============================================  ===============================

Every option is an explicit argument: the caller (the CLI, or
:func:`jaxsweep.api.run_sweep` for ``out=``) says what to write.
:func:`load_run` reads a directory back for ``jaxsweep report``/``compare``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import keys
from jaxsweep import lineage as lineage_lib
from jaxsweep import results as results_lib
from jaxsweep.report import plots as plots_lib
from jaxsweep.report import tables
from jaxsweep.report import tensorboard as tensorboard_lib

# The run's manifest (jaxsweep.report.rundir writes it; read here by name).
RUN_MANIFEST = "run.json"
# Learning curves show this many of the best variants unless told otherwise.
DEFAULT_CURVES = 5
# results.md lists at most this many per-variant rows (the CSV has them all).
_MD_MAX_ROWS = 200


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
  """Writes ``best.yaml``: the selected configuration, runnable on its own.

  Without swept seeds, the best variant's config. With seeds swept, the
  configuration with the best mean over seeds, *without* a seed (a comment
  lists the seeds, the validation and the test mean ± std, and how to train
  the seeds again).

  Returns:
    The path, or None when no configuration has a healthy seed or its
    settings are unknown.
  """
  chosen = res.selected if res.rows else None
  if chosen is None:
    return None
  settings = res.settings.get(chosen["variants"][0])
  if settings is None:
    return None
  replay = replay_of(res, chosen["variants"][0])
  if replay is not None:  # PBT: the schedule its weights trained with, replayable.
    settings = res.settings.get(replay["root"], settings)
  fmt, report = format_lib.fmt, results_lib.report_metric(res.target)
  report = report if report and report != res.target and f"{report}_mean" in chosen else None
  if res.has_seeds:
    cfg = best_config(config, {k: v for k, v in settings.items() if k != results_lib.SEED})
    cfg.pop(results_lib.SEED, None)
    config_cols = [c for c in res.swept if c != results_lib.SEED]
    seeds = ", ".join(fmt(s) for s in chosen["seeds"])
    n = chosen[f"{res.target}_n"]
    lines = ["The selected configuration of the sweep in this directory"
             + (f" ({format_lib.describe_settings(chosen, config_cols)})" if config_cols else "")
             + f": the best mean {res.target} over seeds {seeds} ({res.better} is better).",
             f"  {res.target} = {_mean_std(chosen, res.target)} (mean ± std over {n} seeds, "
             f"ddof={results_lib.DEFAULT_DDOF})"]
    if report:
      lines.append(f"  {report} = {_mean_std(chosen, report)}  <- the number to report")
    if n < chosen["n"]:
      lines.append(f"  {chosen['n'] - n} of its {chosen['n']} seeds diverged (left out)")
    lines += ["It has no seed: it trains with seed 0. Train its seeds again:",
              f"  jaxsweep run best.yaml seed={','.join(fmt(s) for s in chosen['seeds'])}"]
  else:
    best = next(r for r in res.rows if r.get("variant") == chosen["variants"][0])
    cfg = best_config(config, settings)
    lines = [f"The best variant ({best['variant']}, id {best.get('id', '-')}) of the sweep in "
             "this directory" + (f" ({format_lib.describe_settings(best, res.swept)})"
                                 if res.swept else "") + ":",
             f"  {res.target} = {fmt(best.get(res.target))} ({res.better} is better)"]
    if report:
      lines.append(f"  {report} = {fmt(best.get(report))}  <- the number to report")
    lines.append("Train it alone: jaxsweep run best.yaml")
  if replay is not None:
    cfg["sweep"] = {"method": {"name": "replay", "schedule": replay["schedule"]}}
    lines[1:1] = [
        f"Its weights started as variant {replay['root']}'s and trained with a schedule "
        f"(PBT): {replay['lineage'] or 'see results.json lineage'}.",
        "The config sets the values at step 0; sweep.method replays the changes."]
  header = "".join(f"# {line}\n" for line in lines)
  path = os.path.join(out_dir, "best.yaml")
  results_lib.atomic_write(path, header + yaml.safe_dump(cfg, sort_keys=False))
  return path


def replay_of(res: results_lib.Results, variant: int) -> dict[str, Any] | None:
  """How to train ``variant`` again when a scheduler changed its values (PBT).

  Returns:
    None when its values never changed; else ``{"root": the variant whose
    settings it started from, "schedule": [{"step", "set"}, ...] after step
    0 (for ``method: replay``), "lineage": the row's lineage text}``.
  """
  if not any("set" in e for events in res.lineage.values() for e in events):
    return None
  root = lineage_lib.root_of(res.lineage, variant)
  schedule = [e for e in lineage_lib.schedule_of(res.lineage, variant, {root: {}})
              if e["step"] > 0 and e["set"]]
  if not schedule:
    return None
  row = next((r for r in res.rows if r.get("variant") == variant), {})
  return {"root": root, "schedule": keys.plain(schedule), "lineage": row.get("lineage", "")}


def _mean_std(row: Mapping[str, Any], metric: str) -> str:
  return format_lib.fmt_mean_std(row.get(f"{metric}_mean"), row.get(f"{metric}_std"))


# --------------------------------------------------------------------------
# Files.

# The optional outputs, in the order written (after the results, each on its
# own: one failing never costs the others or the results).
EXTRAS = ("config.yaml", "best.yaml", "parquet", "plots", "tensorboard", "results.md")


def write_outputs(res: results_lib.Results, out_dir: str, *,
                  config: Mapping[str, Any] | None = None, aggregate: bool = True,
                  plots: bool = True, tensorboard: bool = False,
                  curves: int = DEFAULT_CURVES) -> dict[str, Any]:
  """Writes every output file of a run (see the module docstring).

  The results (:func:`write_results`) first, then the optional files
  (:func:`write_extras`), so a failing plot or config dump never costs the
  results.

  Args:
    res: the results.
    out_dir: the run's directory (created if needed).
    config: the sweep's config dict (config-file runs): saved as config.yaml
      and used for best.yaml and log axes.
    aggregate: put the seed-aggregated table first in results.md.
    plots: render PNG plots (needs matplotlib).
    tensorboard: write TensorBoard event files (needs tensorboardX).
    curves: number of best variants in the learning-curves plot.

  Returns:
    Paths by kind (``csv``, ``json``, ``config``, ``aggregated_csv``, ...,
    ``plots``: a list).
  """
  paths = write_results(res, out_dir, aggregate=aggregate)
  paths.update(write_extras(res, out_dir, config=config, aggregate=aggregate, plots=plots,
                            tensorboard=tensorboard, curves=curves))
  return paths


def write_results(res: results_lib.Results, out_dir: str, *,
                  aggregate: bool = True) -> dict[str, Any]:
  """The results alone: ``results.csv``/``.json``, the aggregated tables and a
  first ``results.md`` (without plots). Nothing here depends on an optional
  package or on the config."""
  os.makedirs(out_dir, exist_ok=True)
  paths: dict[str, Any] = {"csv": os.path.join(out_dir, "results.csv"),
                           "json": os.path.join(out_dir, "results.json")}
  res.to_csv(paths["csv"])
  res.to_json(paths["json"])
  paths.update(_write_aggregated(res, out_dir))
  paths["markdown"] = os.path.join(out_dir, "results.md")
  results_lib.atomic_write(paths["markdown"], format_markdown_report(
      res, aggregate=aggregate, out_dir=out_dir))
  return paths


def _write_aggregated(res: results_lib.Results, out_dir: str) -> dict[str, str]:
  paths = {"aggregated_csv": os.path.join(out_dir, "results_aggregated.csv"),
           "aggregated_json": os.path.join(out_dir, "results_aggregated.json")}
  agg = res.aggregate()
  results_lib.atomic_write(paths["aggregated_csv"],
                           results_lib.rows_to_csv(agg, tables.aggregated_columns(res)))
  results_lib.atomic_write(paths["aggregated_json"], results_lib.rows_to_json(
      {"target": res.target, "mode": res.mode, "ddof": results_lib.DEFAULT_DDOF,
       "swept": [c for c in res.swept if c != results_lib.SEED],
       "metrics": res.metrics, "rows": agg}))
  return paths


def write_extras(res: results_lib.Results, out_dir: str, *,
                 config: Mapping[str, Any] | None = None, aggregate: bool = True,
                 plots: bool = True, tensorboard: bool = False, curves: int = DEFAULT_CURVES,
                 dump_config: bool = True,
                 on_error: Callable[[str, Exception], None] | None = None,
                 on_done: Callable[[str], None] | None = None) -> dict[str, Any]:
  """The optional files, in the order of :data:`EXTRAS`, each on its own.

  Args:
    res, out_dir, config, aggregate, plots, tensorboard, curves: as for
      :func:`write_outputs`.
    dump_config: write ``config.yaml`` (``jaxsweep report`` keeps the run's).
    on_error: called with the step's name and the exception when a step
      fails, and the next step goes on; without it the exception is raised.
      (A ``KeyboardInterrupt`` is never caught.)
    on_done: called with each step's name once it is done.

  Returns:
    Paths by kind of the files written.
  """
  os.makedirs(out_dir, exist_ok=True)
  paths: dict[str, Any] = {}

  def config_yaml():
    if config is not None and dump_config:
      paths["config"] = os.path.join(out_dir, "config.yaml")
      results_lib.atomic_write(paths["config"],
                               yaml.safe_dump(keys.plain(config), sort_keys=False))

  def best_yaml():
    best = write_best_config(res, out_dir, config) if config is not None else None
    if best is not None:
      paths["best"] = best

  def parquet():
    paths.update(_write_parquet(res, res.aggregate(), out_dir))

  def plots_():
    if plots:
      sweep = config.get("sweep") if isinstance(config, Mapping) else None
      paths["plots"] = plots_lib.make_plots(res, out_dir, sweep=sweep, curves=curves)

  def tensorboard_():
    if tensorboard:
      tb = tensorboard_lib.write_tensorboard(res, os.path.join(out_dir, "tensorboard"))
      if tb is not None:
        paths["tensorboard"] = tb

  def markdown():
    paths["markdown"] = os.path.join(out_dir, "results.md")
    results_lib.atomic_write(paths["markdown"], format_markdown_report(
        res, aggregate=aggregate, plots=paths.get("plots", ()), best_yaml="best" in paths,
        out_dir=out_dir))

  steps = dict(zip(EXTRAS, (config_yaml, best_yaml, parquet, plots_, tensorboard_, markdown),
                   strict=True))
  for name, step in steps.items():
    try:
      step()
    except Exception as e:  # pylint: disable=broad-except
      if on_error is None:
        raise
      on_error(name, e)
      continue
    if on_done is not None:
      on_done(name)
  return paths


def write_derived(res: results_lib.Results, out_dir: str, *,
                  config: Mapping[str, Any] | None = None, aggregate: bool = True,
                  plots: bool = True, tensorboard: bool = False,
                  curves: int = DEFAULT_CURVES) -> dict[str, Any]:
  """Writes what is derived from results.json (``jaxsweep report`` reruns it).

  Same arguments as :func:`write_outputs`; results.csv/json and config.yaml
  are left alone.
  """
  paths = _write_aggregated(res, out_dir)
  paths.update(write_extras(res, out_dir, config=config, aggregate=aggregate, plots=plots,
                            tensorboard=tensorboard, curves=curves, dump_config=False))
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
                           ("aggregated_parquet", agg, tables.aggregated_columns(res))):
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
  """results.md: summary, selection, val vs test, statuses, tables and plots."""
  groups = len(res.groups) or 1
  secs = f" in {res.seconds:.1f}s" if res.seconds else ""
  out = ["# jaxsweep results", "",
         f"{len(res.rows)} variants in {groups} compile group(s){secs}; ranked by "
         f"{res.target} ({res.better} is better).", ""]
  lines = tables.selection_lines(res)
  if lines:
    out.append(f"**{lines[0]}**" + (" (config: [best.yaml](best.yaml))" if best_yaml else ""))
    out += [""] + [f"{line}" for line in lines[1:]] + ([""] if lines[1:] else [])
  out += [_splits_text(res), "", _statuses_text(res), ""]
  rows = len(res.rows)
  per_variant = ["## Per variant", "", tables.to_markdown(
      tables.per_variant_table(res, top=min(rows, _MD_MAX_ROWS) or None)), ""]
  if rows > _MD_MAX_ROWS:
    per_variant += [f"({rows - _MD_MAX_ROWS} more rows in results.csv)", ""]
  sections = [per_variant]
  if res.has_seeds:
    aggregated = ["## Aggregated over seeds", "",
                  tables.to_markdown(tables.aggregated_table(res)), ""]
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


def _splits_text(res: results_lib.Results) -> str:
  """Two sentences on validation vs test (or a warning without validation)."""
  report = results_lib.report_metric(res.target)
  if results_lib.split_of(res.target) == "val":
    return (f"The ranking and the selection use the validation split ({res.target}), held "
            "out of training. The test split played no part in them, so the "
            f"{report or 'test metric'} of the selected configuration is the number to "
            "report; the test columns of other rows are not for choosing.")
  return res.advice() or f"Ranked on {res.target}."


def _statuses_text(res: results_lib.Results) -> str:
  """What the statuses mean."""
  return ("Statuses: `ok`; `stopped` (a scheduler stopped it early); `unstable` (finite, but "
          "its training objective ended above the unstable factor, 3 by default, times its "
          "value at step 0, or it ended at chance without learning; `note` says which); "
          "`diverged` (a non-finite loss or parameter: its metrics are not values). Unstable "
          "seeds count in means over seeds; diverged ones are left out and counted.")


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

def incomplete(directory: str) -> str | None:
  """Why a run directory is incomplete according to its ``run.json``, or None.

  Incomplete: the run did not finish (``running`` is also a run that died),
  or an output was not written (``"missing"``, ``"error"``). A directory
  without ``run.json`` (written by ``js.run(out=)`` of an older version, or
  by hand) is not judged.
  """
  try:
    with open(os.path.join(directory, RUN_MANIFEST), encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(manifest, dict):
    return None
  why = []
  status = manifest.get("status")
  if status != "finished":
    why.append(f"run {status}")
  missing = manifest.get("missing")
  if isinstance(missing, list) and missing:
    why.append("not written: " + ", ".join(str(m) for m in missing))
  if manifest.get("error") and not missing:
    why.append(f"error: {manifest['error']}")
  return "; ".join(why) or None


def load_run(path: str) -> tuple[results_lib.Results, dict[str, Any] | None]:
  """Loads a run directory's results.json (and config.yaml, if any).

  Args:
    path: the run's directory, or its results.json.

  Returns:
    The results (metrics only, no parameters) and the config dict, or None
    when the run has no readable config.yaml.

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
  note = incomplete(directory)
  if note:
    print(f"jaxsweep: note: {directory} is incomplete ({note}); the table is its "
          "results.json.", file=sys.stderr)
  config = None
  config_path = os.path.join(directory, "config.yaml")
  if os.path.isfile(config_path):
    try:
      with open(config_path) as f:
        config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
      print(f"jaxsweep: {config_path} unreadable ({e}); best.yaml not rewritten",
            file=sys.stderr)
    if not isinstance(config, dict):
      config = None
  return res, config
