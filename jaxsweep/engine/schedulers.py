"""Schedulers: decisions at the sweep's boundaries, on every variant at once.

Every tuner stops bad trials early, copies good ones or replays what worked;
here the trials are the variants of the sweep, so these decisions are taken
at a boundary of the sweep's clock (:mod:`jaxsweep.engine.scheduling`) with
every variant's validation metric in hand, whichever compile group or chunk
it trains in:

* :class:`Halving`: successive halving (Jamieson & Talwalkar 2016), as the
  inner loop of Hyperband (Li et al. 2018): a bracket ``s`` ranks its
  configurations at rungs ``R * eta**(i - s)`` steps and keeps the best
  ``floor(n_i / eta)``. With ``brackets`` it is Hyperband: the population is
  split into brackets ``s = s_max, ..., 0`` in the papers' proportions.
* :class:`PBT`: population-based training (Jaderberg et al. 2017): every
  ``ready_every`` steps the bottom quantile copies the state of a member of
  the top quantile (exploit) and perturbs its hyperparameters (explore).
* :class:`EarlyStopping`: a variant stops when its metric has not improved by
  ``min_delta`` for ``patience`` evaluations.
* :class:`Replay`: applies a recorded hyperparameter schedule (a PBT
  member's) to every variant.
* :class:`Compose`: several of them (stops united).

Halving, Hyperband and PBT are ``sweep_wide``: they rank the whole sweep at
once, so the same sweep stops and copies the same configurations whether a
key is grouped or vectorized. Where seeds are swept they rank configurations
by their mean over seeds, and keep or copy whole configurations. Scores are
compared at :data:`jaxsweep.selection.RANK_RTOL`; ties go to sweep order.
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep import selection
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import scheduling

Boundary = scheduling.Boundary
Decision = scheduling.Decision


def _mode(metric: str, mode: str | None) -> str:
  return mode or results_lib.mode_of(metric)


def _score(values: np.ndarray, mode: str) -> np.ndarray:
  """Higher is better; NaN (diverged, skipped) is worst."""
  s = values if mode == "max" else -values
  return np.where(np.isfinite(s), s, -np.inf)


def _metric(b: Boundary, metric: str | None) -> str:
  if metric is not None:
    if metric not in b.metrics:
      raise errors.ConfigError(f"the scheduler's metric '{metric}' is not evaluated.",
                               key="sweep.method.metric",
                               fix=f"use one of: {', '.join(sorted(b.metrics))}")
    return metric
  return b.target or results_lib.default_target(list(b.metrics))[0]


def _group_of(plan: plan_lib.Plan) -> dict[int, int]:
  return {v: g.index for g in plan.groups for v in g.members}


def _clock(plan: plan_lib.Plan, settings: Mapping[int, Any], what: str) -> tuple[int, int]:
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


def _on_period(x: float, period: int) -> int:
  """``x`` steps rounded to the nearest boundary, at least one period."""
  return max(period, math.floor(x / period + 0.5) * period)  # Half up, not to even.


def stream_salt(step: int, config: int) -> int:
  """The salt of a PBT fork (:class:`scheduling.Decision`): distinct for every
  (step, configuration), the same for a configuration's seeds (their keys
  already differ), and a uint32."""
  return (int(step) * 1_000_003 + int(config) + 1) % 2**32


class _Configs:
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
    values = _score(np.asarray(b.metrics[metric], np.float64), mode)
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


# --------------------------------------------------------------------------
# Successive halving and Hyperband, as published.

class Round(NamedTuple):
  """One round of a bracket: ``n`` configurations trained to ``r`` resource
  (an int, or an exact ``Fraction`` where ``R`` is not a power of ``eta``)."""

  n: int
  r: int | fractions.Fraction


class Bracket(NamedTuple):
  """A Hyperband bracket (Li et al. 2018, Algorithm 1).

  Attributes:
    s: the bracket's index (``s_max`` is the most aggressive).
    n: configurations it starts with.
    r: the resource each gets in the first round.
    rounds: its successive halving rounds.
  """

  s: int
  n: int
  r: int | fractions.Fraction
  rounds: tuple[Round, ...]


def s_max(R: float, eta: float) -> int:
  """``floor(log_eta(R))``, exactly (no float logarithm: log(81, 3) < 4 in floats).

  Examples:
    >>> s_max(81, 3), s_max(80, 3), s_max(1, 2)
    (4, 3, 0)
  """
  R, eta_ = fractions.Fraction(R), fractions.Fraction(eta)
  s = 0
  while eta_ ** (s + 1) <= R:
    s += 1
  return s


def halving_rounds(n: int, r: float, eta: float, s: int) -> tuple[Round, ...]:
  """Successive halving's rounds: ``n_i`` configurations trained to ``r_i``.

  Li et al. (2018), Algorithm 1's inner loop (Jamieson & Talwalkar's
  successive halving with ``eta`` for 2): for ``i = 0..s``, ``r_i = r * eta**i``
  and after round ``i`` the best ``floor(n_i / eta)`` go on. Here ``n_i`` is the
  number that went on (``floor`` of the previous over ``eta``), which equals
  the paper's ``floor(n * eta**-i)`` for an integer ``eta``; and a round never
  keeps fewer than one (the paper's ``n`` never needs it).

  Examples:
    >>> [(x.n, x.r) for x in halving_rounds(81, 1, 3, 4)]
    [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]
  """
  out, live = [], n
  eta_ = fractions.Fraction(eta)
  for i in range(s + 1):
    r_i = fractions.Fraction(r) * eta_ ** i
    out.append(Round(live, int(r_i) if r_i.denominator == 1 else r_i))
    live = max(1, math.floor(fractions.Fraction(live) / eta_))
  return tuple(out)


def hyperband(R: float, eta: float) -> tuple[Bracket, ...]:
  """Hyperband's brackets for a maximum resource ``R`` (Li et al. 2018).

  ``s_max = floor(log_eta(R))``; bracket ``s`` (from ``s_max`` down to 0)
  starts ``n = ceil((s_max + 1) / (s + 1) * eta**s)`` configurations at
  ``r = R * eta**-s`` and halves them (:func:`halving_rounds`). Computed in
  exact fractions: ``5 / 3 * 9`` is 15, not 15.000000000000002.

  Examples:
    >>> [(b.s, b.n, b.r) for b in hyperband(81, 3)]
    [(4, 81, 1), (3, 34, 3), (2, 15, 9), (1, 8, 27), (0, 5, 81)]
  """
  top = s_max(R, eta)
  eta_ = fractions.Fraction(eta)
  out = []
  for s in range(top, -1, -1):
    n = math.ceil(fractions.Fraction(top + 1, s + 1) * eta_ ** s)
    r = fractions.Fraction(R) / eta_ ** s
    r = int(r) if r.denominator == 1 else r
    out.append(Bracket(s, n, r, halving_rounds(n, r, eta, s)))
  return tuple(out)


def variant_steps(rounds: Sequence[Round]) -> float:
  """Resource a bracket spends when each round resumes the previous one's
  training (as here): ``sum_i n_i * (r_i - r_{i-1})``.

  (The papers count ``sum_i n_i * r_i``, retraining from scratch each round.)
  """
  total, prev = 0, 0
  for x in rounds:
    total += x.n * (x.r - prev)
    prev = x.r
  return total


class Halving(scheduling.Base):
  """Successive halving, or Hyperband with ``brackets``.

  The resource is optimisation steps; ``R = steps / min_steps`` is the
  maximum resource in units of the smallest (Li et al.'s ``R``, with
  ``r_min = 1``). A bracket ``s`` ranks its configurations at the rungs
  ``steps * eta**(i - s)`` for ``i = 0..s-1`` and keeps the best
  ``floor(n_i / eta)`` (:func:`halving_rounds`). Where we differ from the
  papers, and why:

  * the population is given, not sampled per bracket: plain halving is one
    bracket of every configuration, ``s = min(s_max, floor(log_eta(n)),
    max_rungs)`` (the most aggressive bracket the population can halve down
    to one); Hyperband splits the configurations between its brackets in
    proportion to the papers' ``n`` (exactly the papers' counts when the
    population is their sum, e.g. 143 for R=81, eta=3), by largest remainder;
  * a rung is a boundary: ``steps * eta**(i - s)`` is rounded to the nearest
    common multiple of the groups' ``eval_every`` (exact when ``R`` is a
    power of ``eta`` and ``min_steps`` a multiple of every period);
  * a round never keeps fewer than one configuration;
  * training resumes from the previous rung (the papers retrain), so a
    bracket spends :func:`variant_steps`.

  Args:
    eta: keep the best ``1/eta`` at each rung (3 in the papers).
    min_steps: the smallest resource, in steps (a multiple of ``eval_every``;
      default: one period).
    brackets: Hyperband's brackets: ``None`` is plain successive halving,
      ``"all"`` every bracket ``s_max..0`` (the papers'), an int that many,
      the most aggressive first.
    max_rungs: at most this many rungs per bracket (caps ``s``).
    metric, mode: what ranks the variants (default: the run's target).
    seed: draws the assignment of configurations to brackets.
  """

  name = "halving"
  sweep_wide = True

  def __init__(self, *, eta: float = 3, min_steps: int | None = None,
               brackets: int | str | None = None, max_rungs: int | None = None,
               metric: str | None = None, mode: str | None = None, seed: int = 0):
    if not (isinstance(eta, (int, float)) and not isinstance(eta, bool) and eta > 1):
      raise errors.ConfigError(f"eta must be a number above 1, got {eta!r}.",
                               key="sweep.method.eta", fix="use eta: 3 (or 2)")
    if brackets is not None and brackets != "all" and (
        not isinstance(brackets, int) or isinstance(brackets, bool) or brackets < 1):
      raise errors.ConfigError(f"brackets must be a positive integer or 'all', got "
                               f"{brackets!r}.", key="sweep.method.brackets",
                               fix="use e.g. brackets: 3, or brackets: all")
    if max_rungs is not None and (not isinstance(max_rungs, int) or isinstance(max_rungs, bool)
                                  or max_rungs < 1):
      raise errors.ConfigError(f"max_rungs must be a positive integer, got {max_rungs!r}.",
                               key="sweep.method.max_rungs", fix="use e.g. max_rungs: 2")
    self.eta = eta
    self.min_steps, self.brackets = min_steps, brackets
    self.max_rungs = max_rungs
    self.metric, self.mode, self.seed = metric, mode, seed
    self._rungs: dict[int, list[int]] = {}    # bracket s -> rung steps
    self._bracket: dict[int, int] = {}        # variant -> bracket s
    self._configs: _Configs | None = None
    self.steps = 0
    self.stopped_at: dict[int, int] = {}      # variant -> rung index it stopped at

  # The schedule ---------------------------------------------------------
  def _unit(self, steps: int, period: int) -> int:
    unit = period if self.min_steps is None else self.min_steps
    if (not isinstance(unit, int) or isinstance(unit, bool) or unit < 1
        or unit % period or unit >= steps):
      raise errors.ConfigError(
          f"min_steps={unit!r} must be a multiple of eval_every ({period}, common to every "
          f"group) below steps ({steps}).", key="sweep.method.min_steps",
          fix=f"use a multiple of {period}, e.g. min_steps: {period}")
    return unit

  def rungs(self, s: int, steps: int, period: int) -> list[int]:
    """Bracket ``s``'s rung steps: ``steps * eta**(i - s)``, ``i < s``, on a boundary."""
    out = []
    eta_ = fractions.Fraction(self.eta)
    for i in range(s):
      step = _on_period(float(steps * eta_ ** (i - s)), period)
      if step < steps and (not out or step > out[-1]):
        out.append(step)
    return out

  def start(self, plan: plan_lib.Plan, settings: Mapping[int, Any]) -> None:
    steps, period = _clock(plan, settings, "halving")
    self.steps = steps
    unit = self._unit(steps, period)
    top = s_max(fractions.Fraction(steps, unit), self.eta)
    if self.max_rungs is not None:
      top = min(top, self.max_rungs)
    self._configs = _Configs(plan, range(plan.num_variants))
    configs = list(self._configs.members)
    self._rungs, self._bracket = {}, {}
    if self.brackets is None:
      s = min(top, s_max(max(len(configs), 1), self.eta))
      self._rungs[s] = self.rungs(s, steps, period)
      self._bracket = {v: s for v in range(plan.num_variants)}
      return
    count = top + 1 if self.brackets == "all" else min(self.brackets, top + 1)
    published = [b.n for b in hyperband(fractions.Fraction(steps, unit), self.eta)][:count]
    sizes = _apportion(published, len(configs))
    order = np.random.default_rng(self.seed).permutation(len(configs))
    begin = 0
    for j, n in enumerate(sizes):
      s = top - j
      self._rungs[s] = self.rungs(s, steps, period)
      for c in order[begin:begin + n]:
        for v in self._configs.members[configs[c]]:
          self._bracket[v] = s
      begin += n

  def bracket_rounds(self) -> dict[int, tuple[int, list[int]]]:
    """Bracket s -> (its configurations, its rung steps)."""
    out = {}
    for s, rungs in self._rungs.items():
      n = sum(1 for c in self._configs.members
              if self._bracket.get(self._configs.first(c)) == s)
      out[s] = (n, rungs)
    return out

  def budget(self) -> int:
    """Variant-steps the schedule spends (no seeds lost, none diverged)."""
    total = 0
    for s, (n, rungs) in self.bracket_rounds().items():
      seeds = [len(m) for c, m in self._configs.members.items()
               if self._bracket.get(m[0]) == s]
      per = max(seeds) if seeds else 1
      rounds = [Round(x.n, r) for x, r in zip(halving_rounds(n, 1, self.eta, len(rungs)),
                                              [*rungs, self.steps], strict=True)]
      total += per * variant_steps(rounds)
    return int(total)

  # Decisions -------------------------------------------------------------
  def boundary(self, b: Boundary) -> Decision:
    metric = _metric(b, self.metric)
    mode = _mode(metric, self.mode)
    present = set(b.variants)
    stop: set[int] = set()
    for s, rungs in self._rungs.items():
      if b.step not in rungs:
        continue
      rung = rungs.index(b.step)
      # The bracket's race: configurations not stopped at an earlier rung
      # (a diverged one is in it and ranks last, as in the papers' n_i).
      race = {v for v, bs in self._bracket.items() if bs == s and v not in self.stopped_at}
      scores = self._configs.scores(b, metric, mode, race)
      for config in self._configs.members:
        if config not in scores and any(v in race for v in self._configs.members[config]):
          scores[config] = -math.inf  # None of its variants is left in a population.
      if not scores:
        continue
      keep = max(1, math.floor(fractions.Fraction(len(scores))
                               / fractions.Fraction(self.eta)))
      for config in self._configs.ranked(scores)[keep:]:
        for v in self._configs.members[config]:
          self.stopped_at[v] = rung
          if v in present:
            stop.add(v)
    return Decision(stop=frozenset(stop))

  def columns(self) -> dict[int, dict]:
    """Per-variant row fields: the rung it stopped at (None: it went on) and,
    for Hyperband, its bracket ``s`` (Li et al.'s index: ``s_max`` starts first)."""
    out = {}
    for v, s in self._bracket.items():
      out[v] = {"rung": self.stopped_at.get(v)}
      if self.brackets is not None:
        out[v]["bracket"] = s
    return out

  def state_dict(self) -> dict:
    return {"stopped_at": {str(k): v for k, v in self.stopped_at.items()},
            "bracket": {str(k): v for k, v in self._bracket.items()},
            "rungs": {str(k): v for k, v in self._rungs.items()}}

  def load_state_dict(self, d: Mapping) -> None:
    self.stopped_at = {int(k): int(v) for k, v in d.get("stopped_at", {}).items()}
    if d.get("bracket"):
      self._bracket = {int(k): int(v) for k, v in d["bracket"].items()}
    if d.get("rungs"):
      self._rungs = {int(k): [int(x) for x in v] for k, v in d["rungs"].items()}


def _apportion(weights: Sequence[int], total: int) -> list[int]:
  """``total`` split in proportion to ``weights`` (largest remainder, ties to
  the first): the weights themselves when they sum to ``total``.

  Examples:
    >>> _apportion([81, 34, 15, 8, 5], 143), _apportion([9, 5], 9)
    ([81, 34, 15, 8, 5], [6, 3])
  """
  whole = sum(weights)
  exact = [fractions.Fraction(w * total, whole) for w in weights]
  sizes = [math.floor(x) for x in exact]
  for j in sorted(range(len(weights)), key=lambda j: (-(exact[j] - sizes[j]), j)):
    if sum(sizes) == total:
      break
    sizes[j] += 1
  return sizes


class EarlyStopping(scheduling.Base):
  """Stops a variant whose metric has not improved for ``patience`` evaluations.

  Each variant is judged on its own history: not ``sweep_wide``.

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

  def boundary(self, b: Boundary) -> Decision:
    metric = _metric(b, self.metric)
    scores = _score(np.asarray(b.metrics[metric], np.float64), _mode(metric, self.mode))
    stop = set()
    for v, s, halted in zip(b.variants, scores, b.stopped, strict=True):
      if halted:
        continue
      s = float(s)
      if v not in self.best or s > self.best[v] + self.min_delta:
        self.best[v], self.waited[v] = max(s, self.best.get(v, -math.inf)), 0
        continue
      self.waited[v] += 1
      if self.waited[v] >= self.patience:
        stop.add(v)
    return Decision(stop=frozenset(stop))

  def state_dict(self) -> dict:
    # JSON has no -inf: a variant with no finite value yet is saved as None.
    return {"best": {str(k): (v if math.isfinite(v) else None) for k, v in self.best.items()},
            "waited": {str(k): v for k, v in self.waited.items()}}

  def load_state_dict(self, d: Mapping) -> None:
    self.best = {int(k): (-math.inf if v is None else float(v))
                 for k, v in d.get("best", {}).items()}
    self.waited = {int(k): int(v) for k, v in d.get("waited", {}).items()}
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
  as seeds). :func:`schedule_of` gives the replayable schedule.

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
    self._configs: _Configs | None = None
    self._group: dict[int, int] = {}
    self._column: dict[str, str] = {}

  def start(self, plan: plan_lib.Plan, settings: Mapping[int, Any]) -> None:
    steps, period = _clock(plan, settings, "pbt")
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
    self._configs = _Configs(plan, variants)
    self._group = _group_of(plan)

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
    metric = _metric(b, self.metric)
    mode = _mode(metric, self.mode)
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
    "set": root's values}, {"step": s, "set": ...}, ...]`` (as :func:`schedule_of`)."""
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


class Replay(scheduling.Base):
  """Applies a hyperparameter schedule (e.g. a PBT member's) to every variant.

  Args:
    schedule: ``[{"step": s, "set": {key: value}}, ...]`` (as
      :func:`schedule_of` returns); at the boundary at step ``s`` every
      variant's values become the given ones. An entry at step 0 must
      equal the variants' own settings (they are what trains from step 0).
  """

  name = "replay"

  def __init__(self, schedule: Sequence[Mapping[str, Any]]):
    try:
      self.schedule = sorted(({"step": int(e["step"]), "set": {str(k): float(x) for k, x in
                                                               dict(e["set"]).items()},
                               **({"fork": int(e["fork"])} if "fork" in e else {})}
                              for e in schedule), key=lambda e: e["step"])
    except (KeyError, TypeError, ValueError) as e:
      raise errors.ConfigError(f"a schedule is a list of {{step, set}} entries ({e}).",
                               key="sweep.method.schedule",
                               fix="write schedule: [{step: 100, set: "
                                   "{optimizer.learning_rate: 0.01}}]") from None

  def start(self, plan: plan_lib.Plan, settings: Mapping[int, Any]) -> None:
    for g in plan.groups:
      if not g.members:
        continue
      s = settings[g.index]
      for e in self.schedule:
        if e["step"] == 0:
          for v in g.members:
            for k, x in e["set"].items():
              if np.float32(plan.variants[v].get(k, math.nan)) != np.float32(x):
                raise errors.ConfigError(
                    f"the schedule sets {k}={x} at step 0, but variant {v} trains with "
                    f"{plan.variants[v].get(k)!r}.", key="sweep.method.schedule",
                    fix=f"set {k}: {x} in the config (the values at step 0)")
        elif e["step"] % s.eval_every or e["step"] >= s.steps:
          raise errors.ConfigError(
              f"the schedule changes values at step {e['step']}, not a boundary before the "
              f"end (eval_every={s.eval_every}, steps={s.steps}).",
              key="sweep.method.schedule",
              fix=f"replay with train.eval_every dividing {e['step']}")

  def boundary(self, b: Boundary) -> Decision:
    values, salt = {}, None
    for e in self.schedule:
      if e["step"] == b.step and b.step > 0:
        values.update(e["set"])
        salt = e.get("fork", salt)
    live = [v for v, halted in zip(b.variants, b.stopped, strict=True) if not halted]
    return Decision(assign={v: values for v in live} if values else {},
                    fork={v: salt for v in live} if salt is not None else {})


class Compose(scheduling.Base):
  """Several schedulers at once: their stops united (copies and values from
  the first that gives them); sweep-wide when any part is."""

  def __init__(self, *parts):
    self.parts = [scheduling.check(p) for p in parts if p is not None]
    self.sweep_wide = any(p.sweep_wide for p in self.parts)

  def start(self, plan, settings) -> None:
    for p in self.parts:
      p.start(plan, settings)

  def boundary(self, b: Boundary) -> Decision:
    stop, copy, assign, fork = set(), {}, {}, {}
    for p in self.parts:
      d = p.boundary(b)
      stop |= set(d.stop)
      copy = copy or dict(d.copy)
      assign = assign or dict(d.assign)
      fork = fork or dict(d.fork)
    return Decision(stop=frozenset(stop), copy=copy, assign=assign, fork=fork)

  def columns(self) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for p in self.parts:
      for v, fields in p.columns().items():
        out.setdefault(v, {}).update(fields)
    return out

  def state_dict(self) -> dict:
    return {str(i): p.state_dict() for i, p in enumerate(self.parts)}

  def load_state_dict(self, d: Mapping) -> None:
    for i, p in enumerate(self.parts):
      if str(i) in d:
        p.load_state_dict(d[str(i)])


# Lineage helpers live with the results (the report layer reads them there).
schedule_of = results_lib.schedule_of
root_of = results_lib.root_of


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
      options.setdefault("brackets", "all")  # Li et al.: every bracket s_max..0.
    scheduler = None
    if factories[name] is not None:
      try:
        scheduler = factories[name](**options)
      except TypeError as e:
        raise errors.ConfigError(f"{name}: {e}", key="sweep.method",
                                 fix="see docs/search.md") from e
  elif options:
    raise errors.ConfigError("options go with a method name, not an object.",
                             key="sweep.method")
  else:
    scheduler = scheduling.check(method)
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
