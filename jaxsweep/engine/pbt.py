"""Population-based training (Jaderberg et al. 2017): :class:`PBT`.

Every ``ready_every`` steps the bottom quantile of the sweep's configurations
copies the state of a member of the top quantile (exploit) and perturbs its
hyperparameters (explore); :func:`stream_salt` gives each fork its own random
stream. :func:`jaxsweep.engine.schedulers.make` builds it by name (``pbt``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import keys
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import ranking
from jaxsweep.engine import scheduling

Boundary = scheduling.Boundary
Decision = scheduling.Decision


def stream_salt(step: int, config: int) -> int:
  """The salt of a PBT fork (:class:`scheduling.Decision`): distinct for every
  (step, configuration), the same for a configuration's seeds (their keys
  already differ), and a uint32."""
  return (int(step) * 1_000_003 + int(config) + 1) % 2**32


class PBT(scheduling.Base):
  """Population-based training: exploit the top, explore around it.

  At every ``ready_every`` steps (a boundary of every group) the sweep's
  configurations are ranked together (mean over seeds); each configuration
  of the bottom ``quantile`` copies the state of one of the top
  ``quantile`` in its own compile group (one program, one state structure;
  seed ``s`` copies seed ``s``) and perturbs the explored values. A bottom
  configuration whose group holds no top one goes on unchanged.

  No clones: partners are drawn without replacement (a partner is reused
  only when the losers outnumber the top of their group), and a loser's
  values differ (in float32, as trained) from its partner's and from every
  other loser's that copied the same partner in that round: a colliding draw
  (a factor of 1, a value clipped to a bound) is drawn again, then resampled
  within the bounds; a loser that still cannot differ goes on unchanged.

  What the rows report (:meth:`columns`): each explored column holds the
  value the member *ended* with (what its weights last trained with: the
  table, ``selected``, ``best.yaml`` and plots use it; the starting values
  stay in ``Results.settings``); ``copied_from`` the member it last copied
  (None: never overwritten); ``lineage`` the history of its weights in words;
  ``member`` its configuration (so two members that end alike are not merged
  as seeds). :func:`~jaxsweep.lineage.schedule_of` gives the replayable schedule.

  Args:
    ready_every: steps between decisions (a multiple of every group's
      ``eval_every``; default: their least common multiple).
    quantile: the bottom ``quantile`` copies from the top ``quantile``.
    hyperparams: the traced keys explored (default: every swept numeric
      key traced in every group).
    factors: a copied value is multiplied by one of these.
    resample_probability: or drawn again from ``bounds`` (log-uniformly
      for a positive range spanning more than a factor of 10).
    bounds: ``{key: (low, high)}`` explored values are clipped to (default:
      the range the sweep gave the key).
    metric, mode: what ranks the members (default: the run's target).
    seed: draws the partners and the perturbations (reproducible).
  """

  name = "pbt"
  sweep_wide = True
  # Draws of a perturbation before giving up on one loser (then of a resample).
  DRAWS = 16

  def __init__(self, *, ready_every: int | None = None, quantile: float = 0.25,
               hyperparams: Sequence[str] | None = None,
               factors: Sequence[float] = (0.8, 1.2), resample_probability: float = 0.0,
               bounds: Mapping[str, Sequence[float]] | None = None,
               metric: str | None = None, mode: str | None = None, seed: int = 0):
    if not 0 < quantile <= 0.5:
      raise errors.ConfigError(f"quantile must be in (0, 0.5], got {quantile!r}.",
                               key="sweep.method.quantile", fix="use e.g. quantile: 0.25")
    if not 0 <= resample_probability <= 1:
      raise errors.ConfigError(
          f"resample_probability must be in [0, 1], got {resample_probability!r}.",
          key="sweep.method.resample_probability", fix="use e.g. 0.25")
    if ready_every is not None and (not isinstance(ready_every, int)
                                    or isinstance(ready_every, bool) or ready_every < 1):
      raise errors.ConfigError(f"ready_every must be a positive integer, got {ready_every!r}.",
                               key="sweep.method.ready_every", fix="use e.g. ready_every: 100")
    self.ready_every, self.quantile = ready_every, float(quantile)
    self.hyperparams = None if hyperparams is None else [str(k) for k in hyperparams]
    self.factors = [float(f) for f in factors]
    self.resample_probability = float(resample_probability)
    self.bounds = {str(k): (float(lo), float(hi)) for k, (lo, hi) in (bounds or {}).items()}
    self.metric, self.mode, self.seed = metric, mode, seed
    self.rng = np.random.default_rng(seed)
    self.keys: list[str] = []
    self.initial: dict[int, dict[str, float]] = {}  # variant -> values at step 0
    self.values: dict[int, dict[str, float]] = {}   # variant -> values it trains with now
    self.events: dict[int, list[dict]] = {}         # variant -> [{"step", "from", "set"}]
    self._every = 0
    self.steps = 0
    self._configs: ranking.Configs | None = None
    self._group: dict[int, int] = {}
    self._column: dict[str, str] = {}

  def start(self, plan: plan_lib.Plan, settings: Mapping[int, Any]) -> None:
    steps, period = ranking.clock(plan, settings, "pbt")
    every = period if self.ready_every is None else self.ready_every
    if every % period:
      raise errors.ConfigError(
          f"ready_every={every} must be a multiple of every group's eval_every (their least "
          f"common multiple is {period}).", key="sweep.method.ready_every",
          fix=f"use a multiple of {period}")
    self._every, self.steps = every, steps
    used = [g for g in plan.groups if g.members]
    common = set.intersection(*({str(k) for k in g.traced if not k.is_seed} for g in used))
    by_name = {plan.column(k): str(k) for k in plan.swept}
    swept = {str(k) for k in plan.swept}
    wanted = ([by_name.get(k, k) for k in self.hyperparams] if self.hyperparams is not None
              else sorted(k for k in common & swept if not k.endswith("_index")))
    for k in wanted:
      if k not in common:
        static = [g.index for g in used if k not in {str(x) for x in g.traced}]
        raise errors.ConfigError(
            f"PBT cannot explore '{k}': it is not a traced value in group(s) "
            f"{static} (a copy keeps the program, so explored values must be traced "
            "everywhere).", key="sweep.method.hyperparams",
            fix=f"explore keys traced in every group: {', '.join(sorted(common)) or 'none'}")
    if not wanted:
      raise errors.ConfigError("PBT has nothing to explore: no swept value is traced.",
                               key="sweep.method.hyperparams",
                               fix="sweep a traced value, e.g. optimizer.learning_rate")
    self.keys = wanted
    self._column = {k: plan.column(keys.parse(k)) for k in wanted}
    variants = range(plan.num_variants)
    for k in wanted:
      if k not in self.bounds:
        vals = [float(plan.variants[v][k]) for v in variants if k in plan.variants[v]]
        self.bounds[k] = (min(vals), max(vals)) if vals else (-math.inf, math.inf)
    for v in variants:
      self.initial[v] = {k: float(plan.variants[v].get(k, math.nan)) for k in wanted}
      self.values.setdefault(v, dict(self.initial[v]))
      self.events.setdefault(v, [])
    self._configs = ranking.Configs(plan, variants)
    self._group = ranking.group_of(plan)

  # Explore ---------------------------------------------------------------
  def _clip(self, value: float, key: str) -> float:
    lo, hi = self.bounds[key]
    return float(min(max(value, lo), hi))

  def _resample(self, key: str) -> float | None:
    lo, hi = self.bounds[key]
    if not math.isfinite(lo + hi):
      return None
    if lo > 0 and hi / lo > 10:
      return float(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))
    return float(self.rng.uniform(lo, hi))

  def _explore(self, value: float, key: str) -> float:
    if self.rng.random() < self.resample_probability:
      new = self._resample(key)
      if new is not None:
        return self._clip(new, key)
    return self._clip(value * float(self.rng.choice(self.factors)), key)

  def _as_trained(self, values: Mapping[str, float]) -> tuple:
    # Hyperparameters train in float32: distinct means distinct there.
    return tuple(float(np.float32(values[k])) for k in self.keys)

  def _distinct(self, current: Mapping[str, float], used: set) -> dict[str, float] | None:
    """Explored values not in ``used``, or None when none could be drawn."""
    for _ in range(self.DRAWS):
      values = {k: self._explore(current[k], k) for k in self.keys}
      if self._as_trained(values) not in used:
        return values
    for _ in range(self.DRAWS):
      values = dict(current)
      for k in self.keys:
        new = self._resample(k)
        values[k] = current[k] if new is None else self._clip(new, k)
      if self._as_trained(values) not in used:
        return values
    return None

  # Decisions -------------------------------------------------------------
  def boundary(self, b: Boundary) -> Decision:
    if not self._every or b.step % self._every or b.step >= self.steps:
      return Decision()
    metric = ranking.metric_of(b, self.metric)
    mode = ranking.mode_of(metric, self.mode)
    index = {v: j for j, v in enumerate(b.variants)}
    scores = self._configs.scores(b, metric, mode, set(b.variants))
    if len(scores) < 2:
      return Decision()
    ranked = self._configs.ranked(scores)
    n = max(1, int(len(ranked) * self.quantile))
    top = ranked[:n]
    bottom = [c for c in ranked[-n:] if c not in top]
    pools: dict[int, list[tuple]] = {}
    taken: dict[tuple, set] = {}
    copy, assign, fork = {}, {}, {}
    for config in bottom:
      dsts = [v for v in self._configs.members[config] if v in index]
      if not dsts:
        continue
      group = self._group[dsts[0]]
      mates = [c for c in top if self._group[self._configs.first(c)] == group]
      if not mates:
        continue  # No top configuration shares its program.
      if not pools.get(group):  # Partners without replacement, refilled when spent.
        pools[group] = [mates[j] for j in self.rng.permutation(len(mates))]
      partner = pools[group].pop(0)
      src_of = {self._configs.seeds[v]: v for v in self._configs.members[partner]
                if v in index and not b.stopped[index[v]]}
      pairs = [(d, src_of[self._configs.seeds[d]]) for d in dsts
               if self._configs.seeds[d] in src_of]
      if not pairs:
        continue
      current = self.values[pairs[0][1]]
      used = taken.setdefault(partner, {self._as_trained(current)})
      values = self._distinct(current, used)
      if values is None:
        continue  # Every draw would clone a member: it goes on as it is.
      used.add(self._as_trained(values))
      # Its own random stream from here on (scheduling.Decision.fork): one salt
      # for the configuration's seeds, so a replay of its schedule forks alike.
      salt = stream_salt(b.step, self._configs.first(config))
      for dst, src in pairs:
        copy[dst], assign[dst], fork[dst] = src, dict(values), salt
        self.values[dst] = dict(values)
        self.events[dst].append({"step": int(b.step), "from": int(src), "set": dict(values),
                                 "fork": salt})
    return Decision(copy=copy, assign=assign, fork=fork)

  # What it reports ---------------------------------------------------------
  def chain(self, variant: int) -> tuple[int, list[dict]]:
    """Where a member's weights came from: its root (the member whose
    initialisation they are) and the copies since, oldest first."""
    chain, current, until = [], variant, math.inf
    while True:
      copies = [e for e in self.events.get(current, []) if e["step"] < until]
      if not copies:
        return current, chain[::-1]
      e = copies[-1]
      chain.append({**e, "to": current})
      current, until = e["from"], e["step"]

  def schedule(self, variant: int) -> list[dict]:
    """The explored values the member's weights trained with: ``[{"step": 0,
    "set": root's values}, {"step": s, "set": ...}, ...]`` (as
    :func:`~jaxsweep.lineage.schedule_of`)."""
    root, chain = self.chain(variant)
    return [{"step": 0, "set": dict(self.initial[root])},
            *({"step": e["step"], "set": dict(e["set"])} for e in chain)]

  def lineage_text(self, variant: int) -> str:
    """``trained as v2 (lr=0.0136); step 100: copied into v5, lr=0.0163; ...``
    ('' for a member never overwritten)."""
    root, chain = self.chain(variant)
    if not chain:
      return ""

    def values(vals):
      return ", ".join(f"{self._column[k]}={format_lib.fmt(vals[k])}" for k in self.keys)

    parts = [f"trained as v{root} ({values(self.initial[root])})"]
    parts += [f"step {e['step']}: copied into v{e['to']}, {values(e['set'])}" for e in chain]
    return "; ".join(parts)

  def columns(self) -> dict[int, dict]:
    out = {}
    for v in self.initial:
      row = {self._column[k]: self.values[v][k] for k in self.keys}
      events = self.events.get(v, [])
      row["copied_from"] = events[-1]["from"] if events else None
      row["lineage"] = self.lineage_text(v)
      row["member"] = self._configs.first(self._configs.of[v])
      out[v] = row
    return out

  def state_dict(self) -> dict:
    return {"rng": self.rng.bit_generator.state,
            "values": {str(k): v for k, v in self.values.items()},
            "events": {str(k): v for k, v in self.events.items() if v}}

  def load_state_dict(self, d: Mapping) -> None:
    if "rng" in d:
      self.rng.bit_generator.state = d["rng"]
    self.values.update({int(k): dict(v) for k, v in d.get("values", {}).items()})
    self.events.update({int(k): [dict(e) for e in v] for k, v in d.get("events", {}).items()})
