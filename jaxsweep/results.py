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

STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"


def default_target(metric_names: Sequence[str]) -> tuple[str, str]:
  """The metric ranked on by default, and whether higher is better."""
  for name, mode in (("test_accuracy", "max"), ("test_loss", "min")):
    if name in metric_names:
      return name, mode
  return metric_names[0], "min"


def sort_key(row: Mapping[str, Any], target: str, mode: str):
  value = row.get(target)
  bad = (row.get("status") != STATUS_OK or value is None
         or (isinstance(value, float) and math.isnan(value)))
  if bad:
    return (1, 0.0, row.get("variant", 0))
  return (0, -value if mode == "max" else value, row.get("variant", 0))


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
               settings=None, states=None, seconds=None, metrics=()):
    self.rows = list(rows)
    self.history = dict(history)
    self.swept = list(swept)
    self.target = target
    self.mode = mode
    self.groups = list(groups)
    self.settings = dict(settings or {})
    self.seconds = seconds
    self.metrics = list(metrics)
    self._states = states or {}

  @classmethod
  def from_run(cls, plan, history, final, states, group_info, *, seconds=None):
    """Assembles rows from the engine's per-variant final metrics."""
    metric_keys: list[str] = []
    for entries in history.values():
      for e in entries:
        for k in e:
          if k != "step" and k not in metric_keys:
            metric_keys.append(k)
    derived = {}
    from jaxsweep import engine  # pylint: disable=g-import-not-at-top
    for g in plan.groups:
      built = engine.build_group(plan, g)
      derived.update(built.derived)
    rows = []
    group_of = {i: g.index for g in plan.groups for i in g.members}
    for i, settings in enumerate(plan.variants):
      f = final[i]
      row: dict[str, Any] = {"variant": i, "id": plan.ids[i]}
      for k in plan.swept:
        v = settings.get(k)
        row[plan.display.get(k, k)] = list(v) if isinstance(v, tuple) else v
      row["group"] = group_of[i]
      row["status"] = STATUS_DIVERGED if f["diverged"] else STATUS_OK
      row["diverged_step"] = f["diverged_step"] if f["diverged"] else None
      row["steps"] = f["step"]
      for k in metric_keys:
        row[k] = f.get(k)
      for name, fn in derived.items():
        try:
          row[f"test_{name}"] = float(fn(row))
        except (KeyError, TypeError, ValueError, OverflowError):
          row[f"test_{name}"] = float("nan")
      rows.append(row)
    metrics = [k for k in rows[0] if k.startswith(("train_", "test_"))] if rows else []
    target, mode = default_target(metrics)
    settings = {i: dict(v) for i, v in enumerate(plan.variants)}
    return cls(rows, history, swept=[plan.display.get(k, k) for k in plan.swept],
               target=target, mode=mode, groups=group_info, settings=settings,
               states=states, seconds=seconds, metrics=metrics)

  # ------------------------------------------------------------------ views
  def ranked(self, target: str | None = None, mode: str | None = None) -> "Results":
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
                  seconds=self.seconds, metrics=self.metrics)
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

  def __len__(self) -> int:
    return len(self.rows)

  def __repr__(self) -> str:
    from jaxsweep import report  # pylint: disable=g-import-not-at-top
    return report.format_table(self)

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
    rows = self.table if table else self.rows
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=self.columns(), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
      writer.writerow({k: _csv_value(v) for k, v in r.items()})
    text = buf.getvalue()
    if path is not None:
      atomic_write(path, text)
    return text

  def to_dict(self) -> dict[str, Any]:
    return {"target": self.target, "mode": self.mode, "swept": self.swept,
            "metrics": self.metrics, "seconds": self.seconds, "groups": self.groups,
            "rows": self.table,
            "history": {str(k): v for k, v in self.history.items()},
            "settings": {str(k): v for k, v in self.settings.items()}}

  def to_json(self, path: str | None = None) -> str:
    """Writes (atomically) or returns rows, history and settings as JSON."""
    text = json.dumps(_jsonable(self.to_dict()), indent=1, allow_nan=False)
    if path is not None:
      atomic_write(path, text)
    return text

  @classmethod
  def from_json(cls, path: str) -> "Results":
    """Loads results written by :meth:`to_json` (metrics only, no params)."""
    if not os.path.exists(path):
      raise errors.CheckpointError(f"no results file at {path}.", key="results",
                                   fix="pass the --out directory of a finished run")
    try:
      with open(path) as f:
        d = json.load(f)
      rows = sorted(d["rows"], key=lambda r: r["variant"])
      return cls(rows, {int(k): v for k, v in d.get("history", {}).items()},
                 swept=d["swept"], target=d["target"], mode=d["mode"],
                 groups=d.get("groups", ()),
                 settings={int(k): v for k, v in d.get("settings", {}).items()},
                 seconds=d.get("seconds"), metrics=d.get("metrics", ()))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
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
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
