"""Schedulers: decisions at period boundaries, on the whole population at once.

Every tuner stops bad trials early, copies good ones or replays what worked;
here the trials are the variants of one compiled population, so these
decisions are taken at a period boundary (:mod:`jaxsweep.engine.execute`)
with every variant's validation metric in hand:

* :class:`Halving`: successive halving (Jamieson & Talwalkar 2016): at rungs
  ``min_steps * eta**k`` the worst ``1 - 1/eta`` stop. With ``brackets`` it
  is Hyperband (Li et al. 2018): the population is split into brackets that
  start halving at different budgets.
* :class:`PBT`: population-based training (Jaderberg et al. 2017): every
  ``ready_every`` steps the bottom quantile copies the state of a member of
  the top quantile (exploit) and perturbs its hyperparameters (explore).
* :class:`EarlyStopping`: a variant stops when its metric has not improved by
  ``min_delta`` for ``patience`` evaluations.
* :class:`Replay`: applies a recorded hyperparameter schedule (a PBT
  member's) to every variant.
* :class:`Compose`: several of them (stops united).

Where seeds are swept, :class:`Halving` and :class:`PBT` rank configurations
by their mean over seeds, and keep or copy whole configurations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep.engine import execute
from jaxsweep.engine import plan as plan_lib


def _mode(metric: str, mode: str | None) -> str:
  return mode or results_lib.mode_of(metric)


def _score(values: np.ndarray, mode: str) -> np.ndarray:
  """Higher is better; NaN (diverged, skipped) is worst."""
  s = values if mode == "max" else -values
  return np.where(np.isfinite(s), s, -np.inf)


def _metric(b: execute.Boundary, metric: str | None) -> str:
  if metric is not None:
    if metric not in b.metrics:
      raise errors.ConfigError(f"the scheduler's metric '{metric}' is not evaluated.",
                               key="sweep.method.metric",
                               fix=f"use one of: {', '.join(sorted(b.metrics))}")
    return metric
  return b.target or results_lib.default_target(list(b.metrics))[0]


class _Configs:
  """Variants grouped by configuration (all settings but the seed)."""

  def __init__(self, plan: plan_lib.Plan, variants: Sequence[int]):
    self.of: dict[int, tuple] = {}
    for v in variants:
      self.of[v] = tuple(sorted((str(k), keys.freeze(x)) for k, x in plan.variants[v].items()
                                if str(k) != keys.SEED))
    self.members: dict[tuple, list[int]] = {}
    for v in variants:
      self.members.setdefault(self.of[v], []).append(v)

  def scores(self, b: execute.Boundary, metric: str, mode: str,
             among: set[int]) -> dict[tuple, float]:
    """Mean score over each configuration's variants in ``among``."""
    index = {v: j for j, v in enumerate(b.variants)}
    values = _score(np.asarray(b.metrics[metric], np.float64), mode)
    out = {}
    for config, members in self.members.items():
      live = [values[index[v]] for v in members if v in among and v in index]
      if live:
        out[config] = float(np.mean(live))
    return out


class Halving:
  """Successive halving, or Hyperband with ``brackets``.

  Args:
    eta: keep the best ``1/eta`` at each rung (3 in the papers).
    min_steps: the first rung, in steps (a multiple of ``eval_every``);
      default: ``steps / eta**(rungs)`` rounded down to a period, at least one
      period.
    brackets: Hyperband's brackets (``None``: plain successive halving; an
      int: that many brackets, the most aggressive first).
    max_rungs: at most this many rungs per bracket (W&B's ``s``); default:
      every rung before the end.
    metric, mode: what ranks the variants (default: the run's target).
    seed: draws the assignment of variants to brackets.
  """

  name = "halving"

  def __init__(self, *, eta: float = 3, min_steps: int | None = None,
               brackets: int | None = None, max_rungs: int | None = None,
               metric: str | None = None, mode: str | None = None, seed: int = 0):
    if not (isinstance(eta, (int, float)) and not isinstance(eta, bool) and eta > 1):
      raise errors.ConfigError(f"eta must be a number above 1, got {eta!r}.",
                               key="sweep.method.eta", fix="use eta: 3 (or 2)")
    if brackets is not None and (not isinstance(brackets, int) or isinstance(brackets, bool)
                                 or brackets < 1):
      raise errors.ConfigError(f"brackets must be a positive integer, got {brackets!r}.",
                               key="sweep.method.brackets", fix="use e.g. brackets: 3")
    if max_rungs is not None and (not isinstance(max_rungs, int) or isinstance(max_rungs, bool)
                                  or max_rungs < 1):
      raise errors.ConfigError(f"max_rungs must be a positive integer, got {max_rungs!r}.",
                               key="sweep.method.max_rungs", fix="use e.g. max_rungs: 2")
    self.eta, self.min_steps, self.brackets = float(eta), min_steps, brackets
    self.max_rungs = max_rungs
    self.metric, self.mode, self.seed = metric, mode, seed
    self._rungs: dict[int, list[int]] = {}    # bracket -> rung steps
    self._bracket: dict[int, int] = {}        # variant -> bracket
    self._configs: _Configs | None = None
    self.stopped_at: dict[int, int] = {}      # variant -> rung index it stopped at

  # The schedule ---------------------------------------------------------
  def _check_steps(self, settings) -> int:
    period = settings.eval_every
    if self.min_steps is None:
      depth = max(1, math.floor(math.log(max(settings.steps // period, 1), self.eta)))
      first = max(period, int(settings.steps / self.eta ** depth) // period * period)
    else:
      first = self.min_steps
    if (not isinstance(first, int) or isinstance(first, bool) or first < 1
        or first % period or first >= settings.steps):
      raise errors.ConfigError(
          f"min_steps={first!r} must be a multiple of eval_every ({period}) below steps "
          f"({settings.steps}).", key="sweep.method.min_steps",
          fix=f"use a multiple of {period}, e.g. min_steps: {period}")
    return first

  def rungs(self, first: int, steps: int, period: int) -> list[int]:
    """Rung steps from ``first``: ``first * eta**k`` (on a period) below ``steps``."""
    out, r = [], float(first)
    while True:
      step = int(round(r / period)) * period
      if step >= steps:
        break
      if not out or step > out[-1]:
        out.append(step)
      r *= self.eta
    return out[:self.max_rungs]

  def start_group(self, plan: plan_lib.Plan, group: plan_lib.Group, settings) -> None:
    first = self._check_steps(settings)
    self._configs = _Configs(plan, group.members)
    configs = list(self._configs.members)
    if self.brackets is None:
      self._rungs = {0: self.rungs(first, settings.steps, settings.eval_every)}
      self._bracket.update({v: 0 for v in group.members})
      return
    # Hyperband: bracket s starts halving at first * eta**s; sizes as in Li et al.
    total = len(self.rungs(first, settings.steps, settings.eval_every))
    count = min(self.brackets, total + 1)
    # Bracket b is Hyperband's s = count - 1 - b: n_s ~ eta**s / (s + 1).
    weights = np.asarray([self.eta ** (count - 1 - b) / (count - b) for b in range(count)])
    sizes = np.floor(weights / weights.sum() * len(configs)).astype(int)
    sizes[0] += len(configs) - sizes.sum()
    order = np.random.default_rng(self.seed).permutation(len(configs))
    start = 0
    for s, n in enumerate(sizes):
      bracket_first = int(round(first * self.eta ** s / settings.eval_every)) * settings.eval_every
      self._rungs[s] = self.rungs(bracket_first, settings.steps, settings.eval_every)
      for c in order[start:start + n]:
        for v in self._configs.members[configs[c]]:
          self._bracket[v] = s
      start += n

  def budget(self, n: int, steps: int, period: int, first: int) -> int:
    """Variant-steps successive halving uses for ``n`` variants (no seeds, no
    divergence): each rung keeps ``ceil(n / eta)``."""
    total, live, prev = 0, n, 0
    for r in self.rungs(first, steps, period):
      total += live * (r - prev)
      prev, live = r, max(1, math.ceil(live / self.eta))
    return total + live * (steps - prev)

  # Decisions -------------------------------------------------------------
  def boundary(self, b: execute.Boundary) -> execute.Decision:
    metric = _metric(b, self.metric)
    mode = _mode(metric, self.mode)
    live = {v for v, s in zip(b.variants, b.stopped) if not s}
    stop: set[int] = set()
    for bracket, rungs in self._rungs.items():
      if b.step not in rungs:
        continue
      members = {v for v in live if self._bracket.get(v) == bracket}
      scores = self._configs.scores(b, metric, mode, members)
      if not scores:
        continue
      keep = max(1, math.ceil(len(scores) / self.eta))
      ranked = sorted(scores, key=lambda c: -scores[c])
      for config in ranked[keep:]:
        for v in self._configs.members[config]:
          if v in members:
            stop.add(v)
            self.stopped_at[v] = rungs.index(b.step)
    return execute.Decision(stop=frozenset(stop))

  def columns(self) -> dict[int, dict]:
    """Per-variant row fields: its bracket and the rung it stopped at."""
    out = {}
    for v, bracket in self._bracket.items():
      out[v] = {"rung": self.stopped_at.get(v)}
      if self.brackets is not None:
        out[v]["bracket"] = bracket
    return out

  def state_dict(self) -> dict:
    return {"stopped_at": {str(k): v for k, v in self.stopped_at.items()}}

  def load_state_dict(self, d: Mapping) -> None:
    self.stopped_at = {int(k): v for k, v in d.get("stopped_at", {}).items()}


class EarlyStopping:
  """Stops a variant whose metric has not improved for ``patience`` evaluations.

  Args:
    patience: evaluations (period boundaries) without improvement allowed.
    min_delta: the least change that counts as an improvement.
    metric, mode: what is watched (default: the run's target).
  """

  name = "early_stopping"

  def __init__(self, *, patience: int = 3, min_delta: float = 0.0,
               metric: str | None = None, mode: str | None = None):
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
      raise errors.ConfigError(f"patience must be a positive integer, got {patience!r}.",
                               key="early_stopping.patience", fix="use e.g. patience: 3")
    if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or min_delta < 0:
      raise errors.ConfigError(f"min_delta must be a number >= 0, got {min_delta!r}.",
                               key="early_stopping.min_delta", fix="use e.g. min_delta: 0.001")
    self.patience, self.min_delta = patience, float(min_delta)
    self.metric, self.mode = metric, mode
    self.best: dict[int, float] = {}
    self.waited: dict[int, int] = {}

  def boundary(self, b: execute.Boundary) -> execute.Decision:
    metric = _metric(b, self.metric)
    scores = _score(np.asarray(b.metrics[metric], np.float64), _mode(metric, self.mode))
    stop = set()
    for v, s, halted in zip(b.variants, scores, b.stopped):
      if halted:
        continue
      if v not in self.best or s > self.best[v] + self.min_delta:
        self.best[v], self.waited[v] = max(s, self.best.get(v, -np.inf)), 0
        continue
      self.waited[v] += 1
      if self.waited[v] >= self.patience:
        stop.add(v)
    return execute.Decision(stop=frozenset(stop))

  def state_dict(self) -> dict:
    return {"best": {str(k): v for k, v in self.best.items()},
            "waited": {str(k): v for k, v in self.waited.items()}}

  def load_state_dict(self, d: Mapping) -> None:
    self.best = {int(k): v for k, v in d.get("best", {}).items()}
    self.waited = {int(k): v for k, v in d.get("waited", {}).items()}


class PBT:
  """Population-based training: exploit the top, explore around it.

  Args:
    ready_every: steps between decisions (a multiple of ``eval_every``).
    quantile: the bottom ``quantile`` copies from the top ``quantile``.
    hyperparams: the traced keys explored (default: every swept numeric
      traced key of the group).
    factors: a copied value is multiplied by one of these.
    resample_probability: or drawn again from ``bounds`` (log-uniformly
      for a positive range spanning more than a factor of 10).
    bounds: ``{key: (low, high)}`` explored values are clipped to (default:
      the range the sweep gave the key).
    metric, mode: what ranks the members (default: the run's target).
    seed: draws the partners and the perturbations (reproducible).
  """

  name = "pbt"

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
    self.ready_every, self.quantile = ready_every, float(quantile)
    self.hyperparams = None if hyperparams is None else [str(k) for k in hyperparams]
    self.factors = [float(f) for f in factors]
    self.resample_probability = float(resample_probability)
    self.bounds = {str(k): (float(lo), float(hi)) for k, (lo, hi) in (bounds or {}).items()}
    self.metric, self.mode, self.seed = metric, mode, seed
    self.rng = np.random.default_rng(seed)
    self.values: dict[int, dict[str, float]] = {}  # variant -> current explored values
    self._configs: _Configs | None = None

  def start_group(self, plan: plan_lib.Plan, group: plan_lib.Group, settings) -> None:
    every = self.ready_every or settings.eval_every
    if every % settings.eval_every or every < 1:
      raise errors.ConfigError(
          f"ready_every={every} must be a multiple of eval_every ({settings.eval_every}).",
          key="sweep.method.ready_every", fix=f"use a multiple of {settings.eval_every}")
    self.ready_every = every
    traced = {str(k) for k in group.traced if not k.is_seed}
    swept = {str(k) for k in plan.swept}
    keys_ = self.hyperparams or sorted(k for k in traced & swept
                                       if not k.endswith("_index"))
    for k in keys_:
      if k not in traced:
        raise errors.ConfigError(f"PBT cannot explore '{k}': it is not a traced value.",
                                 key="sweep.method.hyperparams",
                                 fix=f"explore traced keys: {', '.join(sorted(traced))}")
    self.hyperparams = keys_
    for k in keys_:
      if k not in self.bounds:
        vals = [float(plan.variants[v][k]) for v in group.members if k in plan.variants[v]]
        self.bounds[k] = (min(vals), max(vals)) if vals else (-math.inf, math.inf)
    for v in group.members:
      self.values.setdefault(v, {k: float(plan.variants[v].get(k, math.nan)) for k in keys_})
    self._configs = _Configs(plan, group.members)

  def _explore(self, value: float, key: str) -> float:
    lo, hi = self.bounds[key]
    if self.rng.random() < self.resample_probability and math.isfinite(lo + hi):
      if lo > 0 and hi / lo > 10:
        value = float(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))
      else:
        value = float(self.rng.uniform(lo, hi))
    else:
      value = value * float(self.rng.choice(self.factors))
    return float(min(max(value, lo), hi))

  def boundary(self, b: execute.Boundary) -> execute.Decision:
    if b.step % self.ready_every or b.step >= b.steps:
      return execute.Decision()
    metric = _metric(b, self.metric)
    mode = _mode(metric, self.mode)
    scores = self._configs.scores(b, metric, mode, set(b.variants))
    if len(scores) < 2:
      return execute.Decision()
    ranked = sorted(scores, key=lambda c: (-scores[c], min(self._configs.members[c])))
    n = max(1, int(len(ranked) * self.quantile))
    top, bottom = ranked[:n], ranked[-n:]
    copy, assign = {}, {}
    for config in bottom:
      if config in top:
        continue
      partner = top[int(self.rng.integers(len(top)))]
      values = {k: self._explore(self.values[self._configs.members[partner][0]][k], k)
                for k in self.hyperparams}
      # Seed s of the loser copies seed s of the partner (configurations are
      # compared by their mean over seeds, their seeds kept apart).
      for dst, src in zip(self._configs.members[config], self._configs.members[partner]):
        copy[dst], assign[dst] = src, values
        self.values[dst] = dict(values)
    return execute.Decision(copy=copy, assign=assign)

  def state_dict(self) -> dict:
    return {"rng": self.rng.bit_generator.state,
            "values": {str(k): v for k, v in self.values.items()}}

  def load_state_dict(self, d: Mapping) -> None:
    if "rng" in d:
      self.rng.bit_generator.state = d["rng"]
    self.values = {int(k): v for k, v in d.get("values", {}).items()}


class Replay:
  """Applies a hyperparameter schedule (e.g. a PBT member's) to every variant.

  Args:
    schedule: ``[{"step": s, "set": {key: value}}, ...]`` (as
      :func:`schedule_of` returns); at the boundary at step ``s`` every
      variant's values become the given ones.
  """

  name = "replay"

  def __init__(self, schedule: Sequence[Mapping[str, Any]]):
    self.schedule = sorted(({"step": int(e["step"]), "set": dict(e["set"])} for e in schedule),
                           key=lambda e: e["step"])

  def start_group(self, plan, group, settings) -> None:
    del plan, group  # Unused.
    for e in self.schedule:
      if e["step"] % settings.eval_every:
        raise errors.ConfigError(
            f"the schedule changes values at step {e['step']}, not a period boundary "
            f"(eval_every={settings.eval_every}).", key="sweep.method.schedule",
            fix=f"replay with train.eval_every dividing {e['step']}")

  def boundary(self, b: execute.Boundary) -> execute.Decision:
    values = {}
    for e in self.schedule:
      if e["step"] == b.step:
        values.update(e["set"])
    if not values:
      return execute.Decision()
    return execute.Decision(assign={v: values for v in b.variants})


class Compose:
  """Several schedulers at once: their stops united (copies and values from
  the first that gives them)."""

  def __init__(self, *parts):
    self.parts = [p for p in parts if p is not None]

  def start_group(self, plan, group, settings) -> None:
    for p in self.parts:
      if hasattr(p, "start_group"):
        p.start_group(plan, group, settings)

  def boundary(self, b: execute.Boundary) -> execute.Decision:
    stop, copy, assign = set(), {}, {}
    for p in self.parts:
      d = p.boundary(b)
      stop |= set(d.stop)
      copy = copy or dict(d.copy)
      assign = assign or dict(d.assign)
    return execute.Decision(stop=frozenset(stop), copy=copy, assign=assign)

  def columns(self) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for p in self.parts:
      if hasattr(p, "columns"):
        for v, fields in p.columns().items():
          out.setdefault(v, {}).update(fields)
    return out

  def state_dict(self) -> dict:
    return {str(i): p.state_dict() for i, p in enumerate(self.parts)
            if hasattr(p, "state_dict")}

  def load_state_dict(self, d: Mapping) -> None:
    for i, p in enumerate(self.parts):
      if str(i) in d and hasattr(p, "load_state_dict"):
        p.load_state_dict(d[str(i)])


def schedule_of(lineage: Mapping[int, Sequence[Mapping]], variant: int,
                initial: Mapping[int, Mapping[str, float]]) -> list[dict]:
  """The hyperparameter schedule a PBT member followed, ancestors included.

  A member's parameters came from the members it copied; its schedule is
  theirs up to each copy, then its own values.

  Args:
    lineage: ``Results.lineage`` (variant -> copies and values over steps).
    variant: the member.
    initial: variant -> its values at step 0 (its settings).

  Returns:
    ``[{"step": 0, "set": {...}}, {"step": s, "set": {...}}, ...]``.
  """
  events: list[dict] = []
  current, until = variant, math.inf
  while True:
    own = [e for e in lineage.get(current, []) if e["step"] < until]
    copies = [e for e in own if "from" in e]
    last_copy = copies[-1] if copies else None
    since = last_copy["step"] if last_copy else -1
    events = [{"step": e["step"], "set": dict(e["set"])} for e in own
              if "set" in e and e["step"] >= since] + events
    if last_copy is None:
      events.insert(0, {"step": 0, "set": dict(initial[current])})
      break
    current, until = last_copy["from"], last_copy["step"]
  merged: dict[int, dict] = {}
  for e in events:
    merged.setdefault(e["step"], {}).update(e["set"])
  return [{"step": s, "set": v} for s, v in sorted(merged.items())]


def make(method: Any = None, *, early_stopping: Mapping | None = None):
  """A scheduler from a config's ``sweep.method`` and ``early_stopping``.

  Args:
    method: ``None``/``"grid"``/``"random"`` (no decisions), ``"halving"``,
      ``"hyperband"``, ``"pbt"``, ``"replay"``, a mapping ``{name: ...,
      options}``, or a scheduler object.
    early_stopping: ``{patience, min_delta, metric, mode}`` or ``None``.

  Raises:
    ConfigError: for an unknown method or option.
  """
  options: dict[str, Any] = {}
  if isinstance(method, Mapping):
    options = {k: v for k, v in method.items() if k != "name"}
    method = method.get("name")
  if method is None or isinstance(method, str):
    name = method or "grid"
    factories = {"grid": None, "random": None, "halving": Halving,
                 "hyperband": Halving, "pbt": PBT, "replay": Replay}
    if name in ("tpe", "gp", "qmc"):
      raise errors.ConfigError(
          f"method {name} proposes variants between rounds: it is not a scheduler.",
          key="sweep.method", fix="give it to js.run(method=...) or a config's sweep.method")
    if name not in factories:
      raise errors.unknown_key("sweep.method", [*factories, "tpe", "gp", "qmc"],
                               what="method", name=str(name))
    if name == "hyperband":
      options.setdefault("brackets", 3)
    scheduler = None
    if factories[name] is not None:
      try:
        scheduler = factories[name](**options)
      except TypeError as e:
        raise errors.ConfigError(f"{name}: {e}", key="sweep.method",
                                 fix="see the options in README's adaptive search") from e
  elif options:
    raise errors.ConfigError("options go with a method name, not an object.",
                             key="sweep.method")
  else:
    scheduler = method
  stopping = None
  if early_stopping:
    if not isinstance(early_stopping, Mapping):
      raise errors.ConfigError("early_stopping must be a mapping.", key="early_stopping",
                               fix="write early_stopping: {patience: 3, min_delta: 0.001}")
    try:
      stopping = EarlyStopping(**early_stopping)
    except TypeError as e:
      raise errors.ConfigError(f"{e}", key="early_stopping",
                               fix="give patience, min_delta, metric or mode") from e
  if scheduler is None or stopping is None:
    return scheduler or stopping
  return Compose(scheduler, stopping)
