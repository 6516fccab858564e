"""The results of a sweep: one row per variant, history, trained parameters.

Rows are plain dicts (JSON-friendly): ``variant`` (index), ``id`` (stable,
from the swept values), one column per swept hyperparameter, ``group``,
``status`` (``ok``, ``stopped``, ``unstable`` or ``diverged``), ``note`` (why,
for the last two), ``diverged_step``, ``stopped_step``, ``steps``,
``params``, ``seconds`` and the final metrics: ``val_*`` (selection),
``test_*`` (the numbers to report), ``train_*``, ``batch_objective`` and
``best_<target>``/``best_step``. An unhealthy variant is never ranked above a
healthy one, whatever its metrics.

Schedulers add columns (:mod:`jaxsweep.engine.schedulers`): ``rung`` (the
halving rung a variant stopped at, None if it went on) and ``bracket``
(Hyperband's ``s``); for PBT the explored columns hold the values a member
*ended* with (its starting values stay in :attr:`Results.settings`),
``copied_from`` (the member it last copied, None if never overwritten),
``lineage`` (the history of its weights in words) and ``member`` (its
configuration, so that members ending alike are not merged as seeds);
:attr:`Results.lineage` has every copy and value, and :func:`jaxsweep.lineage.schedule_of`
the replayable schedule (what ``best.yaml`` replays).

Selection is on the validation split; with seeds swept it is on the mean
over seeds (:func:`aggregate_rows`, :attr:`Results.selected`), so one lucky
seed does not pick the configuration.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import selection

# The selection vocabulary (see :mod:`jaxsweep.selection`), under its old names.
STATUS_OK = selection.STATUS_OK
STATUS_STOPPED = selection.STATUS_STOPPED
STATUS_UNSTABLE = selection.STATUS_UNSTABLE
STATUS_DIVERGED = selection.STATUS_DIVERGED
STATUSES = selection.STATUSES
SEED = selection.SEED
DEFAULT_DDOF = selection.DEFAULT_DDOF
mode_of = selection.mode_of
default_target = selection.default_target
sort_key = selection.sort_key
mean_std = selection.mean_std
is_healthy = selection.is_healthy
has_value = selection.has_value
split_of = selection.split_of
report_metric = selection.report_metric
aggregate_rows = selection.aggregate_rows
seeds_swept = selection.seeds_swept
check_comparable = selection.check_comparable
# Columns that measure time: the only ones two runs of a sweep may differ in.
TIMING_COLUMNS = ("seconds",)
# Columns the per-variant table leaves out (they are in the files).
HIDDEN_COLUMNS = ("id", "group", "steps")


class Results:
  """What :func:`jaxsweep.run` returns.

  Attributes:
    rows: one dict per variant, in variant order.
    history: variant index -> list of per-eval-period metric dicts.
    swept: the swept hyperparameters' column names.
    target, mode: the ranking metric and ``"max"``/``"min"``.
    groups: one info dict per compile group (sizes, compile/train seconds).
    settings: variant index -> its full (qualified) settings.
  """

  def __init__(self, rows, history, *, swept, target, mode, groups=(),
               settings=None, states=None, seconds=None, metrics=(), lineage=None):
    self.rows = list(rows)
    # Variant -> what a scheduler did to it: [{"step", "from": variant}] for
    # a copied state, [{"step", "set": {key: value}}] for new values (PBT).
    self.lineage = dict(lineage or {})
    self.history = dict(history)
    self.swept = list(swept)
    self.target = target
    self.mode = mode
    self.groups = list(groups)
    self.settings = dict(settings or {})
    self.seconds = seconds
    self.metrics = list(metrics)
    self._states = states or {}

  # ------------------------------------------------------------------ views
  def ranked(self, target: str | None = None, mode: str | None = None) -> Results:
    """A copy ranked on another metric.

    Raises:
      ConfigError: for an unknown metric, a bad mode, or an objective
        (``*_objective``) when the sweep varies the loss: each variant's
        objective is its own loss, not comparable between variants.
    """
    target = target or self.target
    if self.rows and target not in self.rows[0]:
      raise errors.ConfigError(f"unknown target metric '{target}'.", key="target",
                               fix=_target_fix(target, self.metrics))
    selection.check_mode(mode)
    selection.check_comparable(target, self.settings.values())
    mode = mode or ("max" if "accuracy" in target else "min")
    rows, metrics = self.rows, self.metrics
    if target != self.target and self.history:
      rows, metrics = _best_columns(rows, self.history, metrics, target, mode)
    out = Results(rows, self.history, swept=self.swept, target=target, mode=mode,
                  groups=self.groups, settings=self.settings, states=self._states,
                  seconds=self.seconds, metrics=metrics, lineage=self.lineage)
    return out

  @property
  def table(self) -> list[dict[str, Any]]:
    """Rows sorted best first (unstable, diverged and NaN rows last); targets
    within :data:`jaxsweep.selection.RANK_RTOL` tie and go in variant order."""
    return selection.rank_rows(self.rows, self.target, self.mode)

  @property
  def selected(self) -> dict[str, Any] | None:
    """The selected configuration: the first of :meth:`aggregate`, or None.

    With seeds swept, the best mean of the target over seeds (ties: the
    lower std); without, the best row as one configuration (``n`` 1). None
    when no configuration has a healthy seed.
    """
    agg = self.aggregate()
    return agg[0] if agg and agg[0]["best"] else None

  @property
  def best(self) -> dict[str, Any]:
    """The best row of the selected configuration (without seeds: the best row).

    With seeds swept this is the selected configuration's best seed, not
    necessarily the best single run (``table[0]``): a lucky seed of a worse
    configuration does not win.
    """
    if not self.rows:
      raise errors.ConfigError("no variants were trained.", key="sweep")
    table = self.table
    chosen = self.selected if self.has_seeds else None
    if chosen is not None:
      return next(r for r in table if r.get("variant") in chosen["variants"])
    return table[0]

  def aggregate(self, *, ddof: int = DEFAULT_DDOF) -> Aggregate:
    """Rows that differ only in ``seed`` merged: mean/std per metric, best first.

    Unstable seeds count in the mean, diverged seeds are counted and left
    out; the first row is the selected configuration (``best``). See
    :func:`aggregate_rows` for the columns and the ranking. ``ddof=1``
    (default) is the sample standard deviation, ``numpy.std(values, ddof=1)``.

    Returns:
      An :class:`Aggregate`: a list of dicts that prints as the console's
      seed-aggregated table and has ``to_pandas()``.
    """
    return Aggregate(aggregate_rows(self.rows, swept=self.swept, metrics=self.metrics,
                                    target=self.target, mode=self.mode, ddof=ddof),
                     self, ddof)

  def aggregated_parts(self, rows: Sequence[Mapping[str, Any]] | None = None, *,
                       top: int | None = None, ddof: int = DEFAULT_DDOF) -> dict[str, Any]:
    """The seed-aggregated table's headers, cells and caption (one row per configuration).

    Columns: ``best`` (``*`` on the selected configuration), the swept values
    but seed, ``seeds``, ``status`` (the seeds by status), the target's mean
    ± std and the other validation metrics, their test counterparts, params.
    :func:`jaxsweep.report.tables.aggregated_table` renders it; so does
    ``print(res.aggregate())``.

    Returns:
      ``headers``, ``cells``, ``right``, ``status``, ``footer``, ``columns``.
    """
    agg = list(self.aggregate(ddof=ddof)) if rows is None else list(rows)
    shown = agg[:top] if top else agg
    config_cols = [c for c in self.swept if c != SEED]
    names = format_lib.short_names(self.swept)
    first, second = self.metric_sets()
    metrics = first + second
    size = ["params"] if any(r.get("params") is not None for r in agg) else []
    headers = (["best"] + [names[c] for c in config_cols] + ["seeds", "status"]
               + [f"{m} (mean ± std)" if i == 0 else m for i, m in enumerate(metrics)] + size)
    cells = []
    for r in shown:
      cells.append(["*" if r["best"] else ""] + [format_lib.fmt(r[c]) for c in config_cols]
                   + [str(r["n"]), seed_status(r)]
                   + [format_lib.fmt_mean_std(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
                   + [format_lib.fmt(r.get("params")) for _ in size])
    counts = sorted({r["n"] for r in agg}) or [0]
    seeds = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}")
    where = {"val": " on the validation split", "test": " on the test split"}.get(
        split_of(self.target), "")
    lines = [f"{len(agg)} configurations x {seeds} seeds ({len(self.rows)} variants), ranked "
             f"by the mean {self.target}{where} ({self.better} is better), ties by the lower "
             f"std; mean ± std (ddof={ddof}) over seeds"]
    num_div = sum(r[STATUS_DIVERGED] for r in agg)
    num_uns = sum(r[STATUS_UNSTABLE] for r in agg)
    num_stop = sum(r[STATUS_STOPPED] for r in agg)
    if num_stop:
      lines.append(f"{num_stop} stopped seed(s) count with their metrics at the step a "
                   "scheduler stopped them (a shorter budget)")
    if num_uns:
      lines.append(f"{num_uns} unstable seed(s) count in the means (their metrics are what "
                   "the configuration does)")
    if num_div:
      lines.append(f"{num_div} diverged seed(s) are left out of the means; a configuration "
                   "with one ranks after those without")
    if top and top < len(agg):
      lines[0] += f"; best {top} shown"
    advice = self.advice(configurations=True)
    if advice:
      lines.append(advice)
    cols = ["best", *config_cols, "seeds", "status", *metrics, *size]
    right = ([False] + [format_lib.is_numeric(agg, c) for c in config_cols] + [True, False]
             + [True] * (len(metrics) + len(size)))
    return {"headers": headers, "cells": cells, "right": right,
            "status": [r["status"] for r in shown], "footer": "\n".join(lines),
            "columns": cols, "second": second}

  def aggregated_columns(self) -> list[str]:
    """Column order of the aggregated files (and of ``aggregate().to_pandas()``)."""
    cols = [c for c in self.swept if c != SEED]
    cols += ["best", "n", *STATUSES, "status", "seeds", "variants", "params"]
    for m in self.metrics:
      cols += [f"{m}_mean", f"{m}_std", f"{m}_n"]
    return cols

  @property
  def has_seeds(self) -> bool:
    """Whether some configuration ran with several seeds (aggregation matters)."""
    return seeds_swept(self.rows, self.swept)

  def __len__(self) -> int:
    return len(self.rows)

  def __repr__(self) -> str:
    """The table the console shows, as aligned plain text (best first).

    With seeds swept, the seed-aggregated table (one row per configuration,
    mean ± std; the per-variant rows are ``res.table``); else one row per
    variant.
    """
    if self.has_seeds:
      return (repr(self.aggregate())
              + "\nper-variant rows: res.table, res.to_pandas(); configurations: "
                "res.aggregate()")
    rows, cols = self.table, self.table_columns()
    second = self.metric_sets()[1]
    breaks = [cols.index(c) for c in (second[:1] + ["params"]) if second and c in cols]
    return format_lib.text_table(rows, cols, names=format_lib.short_names(self.swept),
                                 footer=self.caption(rows), breaks=breaks)

  @property
  def better(self) -> str:
    """``"higher"`` or ``"lower"``: which way the target is better."""
    return "higher" if self.mode == "max" else "lower"

  def caption(self, rows: Sequence[Mapping[str, Any]] = (), *, shown: str = "") -> str:
    """The lines under the per-variant table.

    What it is ranked on and what went wrong (``6 variants, ranked by
    val_accuracy on the validation split (higher is better); 1 unstable, 2
    diverged``), then why each of ``rows`` that is not ``ok`` is so
    (:func:`jaxsweep.selection.notes`), then which number to report or a
    warning that the ranking is on the test split (:meth:`advice`).

    Args:
      rows: the rows shown, whose notes are listed.
      shown: appended to the first line (e.g. ``; best 5 shown``).
    """
    counts = [f"{n} {s}" for s in (STATUS_STOPPED, STATUS_UNSTABLE, STATUS_DIVERGED)
              if (n := sum(r.get("status") == s for r in self.rows))]
    where = {"val": " on the validation split", "test": " on the test split"}.get(
        split_of(self.target), "")
    first = (f"{len(self.rows)} variants, ranked by {self.target}{where} "
             f"({self.better} is better)" + (f"; {', '.join(counts)}" if counts else "")
             + shown)
    advice = self.advice()
    tie = self.tie_note()
    return "\n".join([first, *([tie] if tie else []), *selection.notes(rows),
                      *([advice] if advice else [])])

  def tie_note(self) -> str:
    """A line when the selection is a tie, else ``''``: how many share its
    value and what broke the tie (the one place this is worded).

    Configurations tie when they are as healthy as the selected one and
    their means of the target are equal within :data:`jaxsweep.selection.RANK_RTOL`
    (:func:`jaxsweep.selection.tie_classes`); the selection then took the
    lower std, then the first in sweep order (its ``tie_break`` field).
    """
    chosen = self.selected
    t = self.target
    if chosen is None or chosen.get(f"{t}_mean") is None:
      return ""
    agg = self.aggregate()
    health = lambda r: (r[STATUS_OK] > 0, r[STATUS_DIVERGED] > 0)
    peers = [r for r in agg if health(r) == health(chosen)]
    sign = -1.0 if self.mode == "max" else 1.0
    classes = selection.tie_classes([None if r.get(f"{t}_mean") is None
                                     else sign * r[f"{t}_mean"] for r in peers])
    mine = classes[next(j for j, r in enumerate(peers) if r is chosen or r == chosen)]
    tied = [r for r, c in zip(peers, classes, strict=True) if c == mine]
    if len(tied) < 2:
      return ""
    what = "configurations" if self.has_seeds else "variants"
    value = format_lib.fmt(chosen[f"{t}_mean"])
    rule = chosen.get("tie_break") or "sweep order"
    return (f"tie: {len(tied)} {what} share {t} = {value} (within a relative "
            f"{selection.RANK_RTOL:g}); the {rule} decided. Rank on a finer metric "
            "(--target) or add seeds to separate them.")

  def advice(self, *, configurations: bool = False) -> str:
    """Which number to report, or a warning when the ranking is on the test split.

    Args:
      configurations: phrase it for the seed-aggregated table.
    """
    split, present = split_of(self.target), self.columns()
    report = report_metric(self.target)
    what = ("configuration (*)" if configurations else
            "configuration (the mean over its seeds)" if self.has_seeds else
            "variant (the first row)")
    if split == "val":
      if report not in present:
        return ""
      return (f"Report the {report} of the selected {what}: the test split played no part "
              "in the selection.")
    if split != "test":
      return ""
    val = f"val_{self.target.partition('_')[2]}"
    if val in present:
      return (f"WARNING: ranked on the test split: the selected {what}'s {self.target} is "
              f"optimistic (chosen on the data it is measured on). Rank on {val} and "
              f"report {self.target}.")
    return (f"WARNING: no validation split: ranked on the test split, so the selected "
            f"{what}'s {self.target} is optimistic (chosen on the data it is measured on). "
            "Give the data a validation split (x_val/y_val or val_fraction) to get a number "
            "to report.")

  def table_columns(self, rows: Sequence[Mapping[str, Any]] | None = None) -> list[str]:
    """Columns of the per-variant table, in order.

    ``variant``, the swept columns, ``status``, the target and the other
    metrics of its split (validation), then their test counterparts, then
    ``params``. An ``*_objective`` equal to the same split's ``nll`` or
    ``mse`` in every row (an unsmoothed cross-entropy or MSE loss) is left
    out, as are train metrics, :data:`HIDDEN_COLUMNS` and the timings: the
    files have every column.
    """
    del rows  # The same columns whichever rows are shown.
    cols = ["variant", *self.swept, "status"]
    return [c for c in cols + self.metric_sets()[0] + self.metric_sets()[1] + ["params"]
            if c not in HIDDEN_COLUMNS and (c != "params" or c in self.columns())]

  def metric_sets(self) -> tuple[list[str], list[str]]:
    """The table's metric columns: (target and its split's, their test counterparts)."""
    present = self.columns()
    split = split_of(self.target) or ""
    names = [m for m in self.metrics if m in present and not self._redundant(m)]
    first = [self.target] + [m for m in names if m != self.target and split
                             and split_of(m) == split]
    if split != "val":
      return first if self.target in present else first[1:], []
    second = [report_metric(m) for m in first if report_metric(m) in present]
    second += [m for m in names if split_of(m) == "test" and m not in second]
    return first, second

  def _redundant(self, metric: str) -> bool:
    split, _, name = metric.partition("_")
    if name != "objective":
      return False
    for same in (f"{split}_nll", f"{split}_mse"):
      values = [(r.get(metric), r.get(same)) for r in self.rows]
      if all(b is not None for _, b in values) and all(
          a == b or (a != a and b != b) for a, b in values):  # NaN == NaN here.
        return True
    return False

  def columns(self) -> list[str]:
    cols: list[str] = []
    for r in self.rows:
      for k in r:
        if k not in cols:
          cols.append(k)
    return cols

  # -------------------------------------------------------------- trained state
  def params(self, i: int):
    """Variant ``i``'s trained parameters, unstacked (ready for ``apply``).

    For a masked structural choice (widths or channels vectorized), these
    are the padded arrays its group trained: the padded entries are 0, and
    ``apply`` needs the variant's ``<arg>_index`` (e.g. ``features_index``).
    """
    host, j = self._state(i)
    return _unstack(host["params"], j)

  def variables(self, i: int) -> dict:
    """Variant ``i``'s Flax variables: ``{"params": ..., **model_state}``."""
    host, j = self._state(i)
    return {"params": self.params(i), **_unstack(host["model_state"], j)}

  def _state(self, i: int):
    if i not in self._states:
      raise errors.ConfigError(
          f"no trained parameters for variant {i} (results loaded from disk keep "
          "metrics only, or the index is out of range).", key="variant")
    return self._states[i]

  # -------------------------------------------------------------- export
  def to_csv(self, path: str | None = None, *, table: bool = True) -> str:
    """Writes (atomically) or returns the rows as CSV, best first."""
    text = rows_to_csv(self.table if table else self.rows, self.columns())
    if path is not None:
      atomic_write(path, text)
    return text

  def to_dict(self) -> dict[str, Any]:
    rows = self.table
    return {"target": self.target, "mode": self.mode, "swept": self.swept,
            "metrics": self.metrics, "seconds": self.seconds, "groups": self.groups,
            "rows": rows,
            "history": {str(k): v for k, v in self.history.items()},
            "lineage": {str(k): v for k, v in self.lineage.items()},
            "settings": {str(k): v for k, v in self.settings.items()},
            # Strict JSON has no NaN/inf: such cells are written as null and
            # listed here, so from_json restores them (a NaN learning rate
            # stays NaN, not None, when a report is re-rendered).
            "nonfinite": {
                "rows": _nonfinite((r.get("variant"), r) for r in rows),
                "settings": _nonfinite(self.settings.items())}}

  def to_json(self, path: str | None = None) -> str:
    """Writes (atomically) or returns rows, history and settings as JSON."""
    text = rows_to_json(self.to_dict())
    if path is not None:
      atomic_write(path, text)
    return text

  @classmethod
  def from_json(cls, path: str) -> Results:
    """Loads results written by :meth:`to_json` (metrics only, no params)."""
    if not os.path.isfile(path):
      raise errors.CheckpointError(f"no results file at {path}.", key="results",
                                   fix="pass the --out directory of a finished run")
    try:
      with open(path) as f:
        d = json.load(f)
      if not isinstance(d, dict):
        raise TypeError(f"expected a JSON object, got {type(d).__name__}")
      rows = sorted(d["rows"], key=lambda r: r["variant"])
      settings = {int(k): v for k, v in d.get("settings", {}).items()}
      nonfinite = d.get("nonfinite") or {}
      _restore({r["variant"]: r for r in rows}, nonfinite.get("rows", ()))
      _restore(settings, nonfinite.get("settings", ()))
      # History holds only the step and metric floats: null there was NaN.
      history = {int(k): [{m: (float("nan") if v is None else v) for m, v in e.items()}
                          for e in entries]
                 for k, entries in d.get("history", {}).items()}
      return cls(rows, history,
                 swept=d["swept"], target=d["target"], mode=d["mode"],
                 groups=d.get("groups", ()), settings=settings,
                 seconds=d.get("seconds"), metrics=d.get("metrics", ()),
                 lineage={int(k): v for k, v in d.get("lineage", {}).items()})
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
      raise errors.CheckpointError(f"{path} is not a jaxsweep results file ({e}).",
                                   key="results",
                                   fix="rerun the sweep, or restore the file") from e

  def to_pandas(self):
    """The rows as a ``pandas.DataFrame`` (best first); needs pandas."""
    try:
      import pandas as pd  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("to_pandas needs pandas: pip install pandas") from e
    return pd.DataFrame(self.table, columns=self.columns())


def _unstack(tree, j: int):
  """Entry ``j`` of every leaf of a stacked pytree."""
  # JAX only here, where trained parameters exist (and JAX with them):
  # results read from disk are rendered without it (issue #24).
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(lambda a: a[j], tree)


def seed_status(row: Mapping[str, Any]) -> str:
  """A configuration's seeds by status: ``ok 3/3``, ``unstable 1/3, diverged 1/3``."""
  n = row["n"]
  bad = [f"{s} {row[s]}/{n}" for s in (STATUS_STOPPED, STATUS_UNSTABLE, STATUS_DIVERGED)
         if row.get(s)]
  return ", ".join(bad) or f"ok {n}/{n}"


class Aggregate(list):
  """What :meth:`Results.aggregate` returns: one dict per configuration, best first.

  A plain list of dicts (index it, loop over it, ``json.dumps`` it) that
  prints as the console's seed-aggregated table and converts to pandas.
  """

  def __init__(self, rows: Sequence[Mapping[str, Any]], results: Results, ddof: int):
    super().__init__(rows)
    self._results = results
    self._ddof = ddof

  def __repr__(self) -> str:
    parts = self._results.aggregated_parts(self, ddof=self._ddof)
    second = parts["second"]
    breaks = [parts["columns"].index(c) for c in (second[:1] + ["params"])
              if second and c in parts["columns"]]
    return format_lib.align(parts["headers"], parts["cells"], parts["right"],
                            parts["footer"], breaks=breaks)

  __str__ = __repr__

  def to_pandas(self):
    """The configurations as a ``pandas.DataFrame`` (best first); needs pandas."""
    try:
      import pandas as pd  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("to_pandas needs pandas: pip install pandas") from e
    return pd.DataFrame(list(self), columns=self._results.aggregated_columns())


def _target_fix(target: str, metrics: Sequence[str]) -> str:
  """How to name a metric that exists: a close name first, then the list."""
  split, _, name = target.partition("_")
  # A loss is reported under what it measures (cross-entropy as nll, squared
  # error as mse), and as the training objective the variant minimised.
  aliases = {"loss": ("nll", "mse", "objective")}.get(name, ())
  close = [m for a in aliases if (m := f"{split}_{a}") in metrics]
  close += [m for m in difflib.get_close_matches(target, metrics, n=2) if m not in close]
  hint = f"did you mean {' or '.join(close)}? " if close else ""
  return f"{hint}use one of: {', '.join(m for m in metrics if not m.startswith('best_'))}"


def _best_columns(rows, history, metrics, target: str, mode: str):
  """Rows with ``best_<target>``/``best_step`` for a new target, from the history.

  The engine names the column after the target it ranked on while training;
  a run ranked on another target (``target:`` in the config, ``--target``)
  gets its own target's best, so the name says what the value is.
  """
  old = [m for m in metrics if m.startswith("best_")]
  new_rows = []
  for r in rows:
    r = {k: v for k, v in r.items() if k not in old}
    values = [(e[target], e["step"]) for e in history.get(r.get("variant"), ())
              if isinstance(e.get(target), (int, float)) and math.isfinite(e[target])]
    best = (max(values, key=lambda vs: (vs[0], -vs[1])) if mode == "max"
            else min(values, key=lambda vs: (vs[0], vs[1]))) if values else (None, None)
    r[f"best_{target}"], r["best_step"] = best
    new_rows.append(r)
  return new_rows, [m for m in metrics if m not in old] + [f"best_{target}"]


def rows_to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
  """CSV text of rows (lists as JSON, NaN as ``nan``, None as empty)."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: _csv_value(v) for k, v in r.items()})
  return buf.getvalue()


def rows_to_json(obj: Any) -> str:
  """Strict JSON (NaN/inf as null) of rows or any JSON-like object."""
  return json.dumps(_jsonable(obj), indent=1, allow_nan=False)


_NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _nonfinite(items) -> list[list[Any]]:
  """``[[index, key, "nan"|"inf"|"-inf"], ...]`` for non-finite float cells."""
  out = []
  for i, cells in items:
    for k, v in cells.items():
      if isinstance(v, (float, np.floating)) and not math.isfinite(v):
        out.append([i, k, "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")])
  return out


def _restore(by_index: Mapping[Any, dict], cells) -> None:
  for i, k, v in cells:
    if i in by_index and by_index[i].get(k) is None:
      by_index[i][k] = _NONFINITE[v]


def _csv_value(v):
  if isinstance(v, float) and math.isnan(v):
    return "nan"
  if isinstance(v, (list, tuple)):
    return json.dumps(list(v))
  return v


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.floating, float)):
    x = float(x)
    return None if (math.isnan(x) or math.isinf(x)) else x
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


def atomic_write(path: str, text: str) -> None:
  """Writes a file so a reader never sees it half-written (tmp + rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    # mkstemp creates 0600; results are ordinary files (0666 minus umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
