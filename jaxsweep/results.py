"""The results of a sweep: one row per variant, history, trained parameters.

Rows are plain dicts (JSON-friendly): ``variant`` (index), ``id`` (stable,
from the swept values), one column per swept hyperparameter, ``group``,
``status`` (``ok`` or ``diverged``), ``diverged_step`` and the final metrics.
A diverged variant is never ranked above a healthy one, whatever its metrics.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import keys

STATUS_OK = "ok"
STATUS_STOPPED = "stopped"    # A scheduler stopped it early (see jaxsweep.engine.execute).
STATUS_UNSTABLE = "unstable"  # Finite, but blew up or ended at chance.
STATUS_DIVERGED = "diverged"  # A non-finite loss or parameter: frozen.
# Ranking: healthy rows first, then these, whatever their metric.
_STATUS_RANK = {STATUS_OK: 0, STATUS_STOPPED: 1, STATUS_UNSTABLE: 2, STATUS_DIVERGED: 3}

# The default target per task: (metric, "max"/"min"), on the validation split
# (the test split only when there is none).
_TASK_TARGETS = {"classification": ("accuracy", "max"), "language_model": ("nll", "min"),
                 "regression": ("mse", "min")}
_FALLBACKS = (("accuracy", "max"), ("nll", "min"), ("mse", "min"), ("objective", "min"))


def mode_of(metric: str) -> str:
  """Whether a metric is better high (accuracy) or low (everything else)."""
  return "max" if "accuracy" in metric else "min"


def default_target(metric_names: Sequence[str], task: str | None = None) -> tuple[str, str]:
  """The metric ranked on by default, and whether higher is better.

  Selection is on validation metrics (``val_*``); the test split is used
  only when the data has no validation split.

  Examples:
    >>> default_target(["test_accuracy", "val_accuracy", "val_nll"], "classification")
    ('val_accuracy', 'max')
    >>> default_target(["test_mse", "test_rmse"], "regression")
    ('test_mse', 'min')
  """
  preferred = (_TASK_TARGETS[task],) if task in _TASK_TARGETS else ()
  for split in ("val", "test"):
    for name, mode in (*preferred, *_FALLBACKS):
      if f"{split}_{name}" in metric_names:
        return f"{split}_{name}", mode
  name = metric_names[0]
  return name, mode_of(name)


def sort_key(row: Mapping[str, Any], target: str, mode: str):
  """Healthy rows first (best ``target`` first), then stopped, unstable and
  diverged ones; NaN or missing values last within their status."""
  value = row.get(target)
  rank = _STATUS_RANK.get(row.get("status"), len(_STATUS_RANK))
  missing = (value is None or isinstance(value, bool)
             or (isinstance(value, float) and math.isnan(value)))
  if missing:
    return (rank, 1, 0.0, row.get("variant", 0))
  return (rank, 0, -value if mode == "max" else value, row.get("variant", 0))


SEED = keys.SEED
# Every mean ± std over seeds (aggregated tables, compare, plots) uses the
# sample standard deviation (ddof=1, as pandas' ``std`` and most papers'
# error bars over seeds do); with one healthy seed the spread is unknown, so
# it is None rather than a misleading 0.
DEFAULT_DDOF = 1
# Columns that measure time: the only ones two runs of a sweep may differ in.
TIMING_COLUMNS = ("seconds",)
# Columns the per-variant table leaves out (they are in the files).
HIDDEN_COLUMNS = ("id", "group", "steps")


def mean_std(values: Sequence[float], *,
             ddof: int = DEFAULT_DDOF) -> tuple[float | None, float | None]:
  """The mean and standard deviation of some values, in float64.

  The one place a spread over seeds is computed: aggregation, ``compare``
  and plots all call it.

  Args:
    values: the (healthy) values.
    ddof: delta degrees of freedom (1: sample std; 0: population).

  Returns:
    ``(mean, std)``: the mean is None for no values, the std for fewer than
    ``ddof + 1``.

  Examples:
    >>> mean, std = mean_std([0.5, 0.7])
    >>> mean, round(std, 4)
    (0.6, 0.1414)
    >>> mean_std([0.5]), mean_std([])
    ((0.5, None), (None, None))
  """
  a = np.asarray(values, dtype=np.float64)
  mean = float(a.mean()) if a.size else None
  std = float(a.std(ddof=ddof)) if a.size > ddof else None
  return mean, std


def is_healthy(row: Mapping[str, Any], metric: str | None = None) -> bool:
  """Whether a row counts as a valid value (not diverged, finite metric)."""
  if row.get("status") != STATUS_OK:
    return False
  if metric is None:
    return True
  v = row.get(metric)
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def aggregate_rows(rows: Sequence[Mapping[str, Any]], *, swept: Sequence[str],
                   metrics: Sequence[str], target: str, mode: str,
                   ddof: int = DEFAULT_DDOF) -> list[dict[str, Any]]:
  """Groups rows that differ only in ``seed``; mean and std of each metric.

  Diverged seeds (and NaN/inf metric values) are counted but excluded from
  the mean and std, so one exploding seed does not turn a configuration's
  mean into NaN; the ``diverged`` column says how many were left out.

  Args:
    rows: per-variant rows.
    swept: the swept columns (``seed`` among them is what is averaged over).
    metrics: the metric columns to aggregate.
    target, mode: ranking metric and ``"max"``/``"min"``.
    ddof: delta degrees of freedom of the std (1: sample std; 0: population).

  Returns:
    One dict per configuration, best mean first: the swept columns but seed,
    ``seeds`` (list), ``n``, ``diverged`` (count), ``status`` (``ok`` if any
    seed is healthy), ``variants`` (indices), and ``<metric>_mean``,
    ``<metric>_std``, ``<metric>_n`` (values used) for each metric; a mean
    with no healthy value and a std with fewer than ``ddof + 1`` values are
    None.

  Examples:
    >>> rows = [{"variant": i, "lr": 0.1, "seed": i, "status": "ok", "acc": a}
    ...         for i, a in enumerate([0.5, 0.7])]
    >>> agg = aggregate_rows(rows, swept=["lr", "seed"], metrics=["acc"],
    ...                      target="acc", mode="max")
    >>> agg[0]["acc_mean"], round(agg[0]["acc_std"], 4), agg[0]["n"]
    (0.6, 0.1414, 2)
  """
  config_cols = [c for c in swept if c != SEED]
  groups: dict[tuple, list[Mapping[str, Any]]] = {}
  for r in sorted(rows, key=lambda r: r.get("variant", 0)):
    groups.setdefault(tuple(keys.freeze(r.get(c)) for c in config_cols), []).append(r)
  out = []
  for members in groups.values():
    first = members[0]
    row: dict[str, Any] = {c: first.get(c) for c in config_cols}
    row["seeds"] = [r.get(SEED) for r in members]
    row["n"] = len(members)
    row["diverged"] = sum(r.get("status") != STATUS_OK for r in members)
    row["status"] = STATUS_OK if row["diverged"] < len(members) else STATUS_DIVERGED
    row["variants"] = [r.get("variant") for r in members]
    for m in metrics:
      vals = [float(r[m]) for r in members if is_healthy(r, m)]
      row[f"{m}_mean"], row[f"{m}_std"] = mean_std(vals, ddof=ddof)
      row[f"{m}_n"] = len(vals)
    out.append(row)
  key = f"{target}_mean"
  return sorted(out, key=lambda r: sort_key({**r, "variant": r["variants"][0]}, key, mode))


def seeds_swept(rows: Sequence[Mapping[str, Any]], swept: Sequence[str]) -> bool:
  """Whether some configuration was trained with more than one seed."""
  if SEED not in swept:
    return False
  config_cols = [c for c in swept if c != SEED]
  configs = [tuple(keys.freeze(r.get(c)) for c in config_cols) for r in rows]
  return len(set(configs)) < len(configs)


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
    """A copy ranked on another metric."""
    target = target or self.target
    if self.rows and target not in self.rows[0]:
      raise errors.ConfigError(f"unknown target metric '{target}'.", key="target",
                               fix=f"use one of: {', '.join(self.metrics)}")
    if mode not in (None, "max", "min"):
      raise errors.ConfigError(f"mode must be 'max' or 'min', got {mode!r}.", key="mode")
    mode = mode or ("max" if "accuracy" in target else "min")
    out = Results(self.rows, self.history, swept=self.swept, target=target, mode=mode,
                  groups=self.groups, settings=self.settings, states=self._states,
                  seconds=self.seconds, metrics=self.metrics, lineage=self.lineage)
    return out

  @property
  def table(self) -> list[dict[str, Any]]:
    """Rows sorted best first (diverged and NaN rows last)."""
    return sorted(self.rows, key=lambda r: sort_key(r, self.target, self.mode))

  @property
  def best(self) -> dict[str, Any]:
    """The best healthy variant's row (the first of :attr:`table`)."""
    if not self.rows:
      raise errors.ConfigError("no variants were trained.", key="sweep")
    return self.table[0]

  def aggregate(self, *, ddof: int = DEFAULT_DDOF) -> list[dict[str, Any]]:
    """Rows that differ only in ``seed`` merged: mean/std per metric, best first.

    Diverged seeds are counted in ``diverged`` and excluded from the mean; see
    :func:`aggregate_rows` for the columns. ``ddof=1`` (default) is the
    sample standard deviation, ``numpy.std(values, ddof=1)``.
    """
    return aggregate_rows(self.rows, swept=self.swept, metrics=self.metrics,
                          target=self.target, mode=self.mode, ddof=ddof)

  @property
  def has_seeds(self) -> bool:
    """Whether some configuration ran with several seeds (aggregation matters)."""
    return seeds_swept(self.rows, self.swept)

  def __len__(self) -> int:
    return len(self.rows)

  def __repr__(self) -> str:
    """The ranked per-variant table as aligned plain text (best first)."""
    rows = self.table
    return format_lib.text_table(rows, self.table_columns(rows),
                                 names=format_lib.short_names(self.swept),
                                 footer=self.caption())

  @property
  def better(self) -> str:
    """``"higher"`` or ``"lower"``: which way the target is better."""
    return "higher" if self.mode == "max" else "lower"

  def caption(self) -> str:
    """``6 variants, ranked by test_accuracy (higher is better); 2 diverged``."""
    num_div = sum(r.get("status") != STATUS_OK for r in self.rows)
    return (f"{len(self.rows)} variants, ranked by {self.target} ({self.better} is better)"
            + (f"; {num_div} diverged" if num_div else ""))

  def table_columns(self, rows: Sequence[Mapping[str, Any]] | None = None) -> list[str]:
    """Columns of the per-variant table, in order.

    ``variant``, the swept columns, ``status``, ``diverged_step`` (when one
    of ``rows``, default all, diverged), then the target and the other
    metrics; never :data:`HIDDEN_COLUMNS`.
    """
    rows = self.rows if rows is None else rows
    cols = ["variant", *self.swept, "status"]
    if any(r.get("diverged_step") is not None for r in rows):
      cols.append("diverged_step")
    present = self.columns()
    metrics = [m for m in self.metrics if m in present]
    if self.target in metrics:
      metrics.remove(self.target)
      metrics.insert(0, self.target)
    return [c for c in cols + metrics if c not in HIDDEN_COLUMNS]

  def columns(self) -> list[str]:
    cols: list[str] = []
    for r in self.rows:
      for k in r:
        if k not in cols:
          cols.append(k)
    return cols

  # -------------------------------------------------------------- trained state
  def params(self, i: int):
    """Variant ``i``'s trained parameters, unstacked (ready for ``apply``)."""
    host, j = self._state(i)
    return jax.tree.map(lambda a: a[j], host["params"])

  def variables(self, i: int) -> dict:
    """Variant ``i``'s Flax variables: ``{"params": ..., **model_state}``."""
    host, j = self._state(i)
    return {"params": self.params(i),
            **jax.tree.map(lambda a: a[j], host["model_state"])}

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
