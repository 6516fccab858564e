"""Ranking the sweep at a boundary: the helpers the schedulers share.

The metric a scheduler watches and its direction, scores where NaN is worst,
the sweep's clock (the steps and the least period every group has a boundary
at), and the variants grouped by configuration, ranked by their mean over
seeds (:func:`jaxsweep.selection.over_seeds`, ties at
:data:`jaxsweep.selection.RANK_RTOL` to sweep order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep import selection
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import scheduling

Boundary = scheduling.Boundary


def mode_of(metric: str, mode: str | None) -> str:
  return mode or results_lib.mode_of(metric)


def score(values: np.ndarray, mode: str) -> np.ndarray:
  """Higher is better; NaN (diverged, skipped) is worst."""
  s = values if mode == "max" else -values
  return np.where(np.isfinite(s), s, -np.inf)


def metric_of(b: Boundary, metric: str | None) -> str:
  if metric is not None:
    if metric not in b.metrics:
      raise errors.ConfigError(f"the scheduler's metric '{metric}' is not evaluated.",
                               key="sweep.method.metric",
                               fix=f"use one of: {', '.join(sorted(b.metrics))}")
    return metric
  return b.target or results_lib.default_target(list(b.metrics))[0]


def group_of(plan: plan_lib.Plan) -> dict[int, int]:
  return {v: g.index for g in plan.groups for v in g.members}


def clock(plan: plan_lib.Plan, settings: Mapping[int, Any], what: str) -> tuple[int, int]:
  """The sweep's ``steps`` and the least period every group has a boundary at.

  A rung (or ready point) must be a boundary of every group: every group
  trains the same ``steps``, and rungs fall on multiples of the least common
  multiple of the groups' ``eval_every``.

  Raises:
    ConfigError: for groups of different ``steps``, or periods whose common
      multiple leaves no boundary before the end.
  """
  used = [g.index for g in plan.groups if g.members]
  steps = {settings[g].steps for g in used}
  if len(steps) > 1:
    raise errors.ConfigError(
        f"{what} ranks the whole sweep at the same steps, but its groups train "
        f"{sorted(steps)} steps.", key="train.steps",
        fix="give every variant the same train.steps (sweep steps in separate runs)")
  period = 1
  for g in used:
    period = math.lcm(period, int(settings[g].eval_every))
  (total,) = steps or {0}
  if used and period >= total:
    every = sorted({settings[g].eval_every for g in used})
    raise errors.ConfigError(
        f"{what} ranks every group at common boundaries, but the groups evaluate every "
        f"{every} steps: their first common boundary ({period}) is not before the end "
        f"({total}).", key="train.eval_every",
        fix="give every variant the same train.eval_every")
  return int(total), period


def on_period(x: float, period: int) -> int:
  """``x`` steps rounded to the nearest boundary, at least one period."""
  return max(period, math.floor(x / period + 0.5) * period)  # Half up, not to even.


class Configs:
  """Variants grouped by configuration (all settings but the seed), in plan order."""

  def __init__(self, plan: plan_lib.Plan, variants: Sequence[int]):
    self.of: dict[int, tuple] = {}
    for v in variants:
      self.of[v] = tuple(sorted((str(k), keys.freeze(x)) for k, x in plan.variants[v].items()
                                if str(k) != keys.SEED))
    self.members: dict[tuple, list[int]] = {}
    for v in sorted(variants):
      self.members.setdefault(self.of[v], []).append(v)
    self.seeds = {v: keys.freeze(plan.variants[v].get(keys.SEED)) for v in variants}

  def first(self, config: tuple) -> int:
    return self.members[config][0]

  def scores(self, b: Boundary, metric: str, mode: str,
             among: set[int]) -> dict[tuple, float]:
    """Mean score over each configuration's live variants in ``among``
    (:func:`selection.over_seeds`; -inf for a configuration with none, or
    with no finite value)."""
    index = {v: j for j, v in enumerate(b.variants)}
    values = score(np.asarray(b.metrics[metric], np.float64), mode)
    out = {}
    for config, members in self.members.items():
      if not any(v in among for v in members):
        continue
      live = [values[index[v]] for v in members
              if v in among and v in index and not b.stopped[index[v]]]
      mean = selection.over_seeds(live).mean
      out[config] = -math.inf if mean is None else mean
    return out

  def ranked(self, scores: Mapping[tuple, float]) -> list[tuple]:
    """Configurations best first; scores within RANK_RTOL tie, sweep order decides."""
    configs = list(scores)
    classes = selection.tie_classes([None if not math.isfinite(scores[c]) else -scores[c]
                                     for c in configs])
    order = sorted(range(len(configs)), key=lambda j: (classes[j], self.first(configs[j])))
    return [configs[j] for j in order]
