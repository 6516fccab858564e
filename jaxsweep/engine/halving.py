"""Successive halving and Hyperband: the published formulas and :class:`Halving`.

Successive halving (Jamieson & Talwalkar 2016) as the inner loop of
Hyperband (Li et al. 2018): a bracket ``s`` ranks its configurations at
rungs ``R * eta**(i - s)`` steps and keeps the best ``floor(n_i / eta)``.
With ``brackets`` it is Hyperband: the population is split into brackets
``s = s_max, ..., 0`` in the papers' proportions. :func:`jaxsweep.engine.schedulers.make`
builds it by name (``halving``, ``hyperband``).
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxsweep import errors
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import ranking
from jaxsweep.engine import scheduling

Boundary = scheduling.Boundary
Decision = scheduling.Decision


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
    self._configs: ranking.Configs | None = None
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
      step = ranking.on_period(float(steps * eta_ ** (i - s)), period)
      if step < steps and (not out or step > out[-1]):
        out.append(step)
    return out

  def start(self, plan: plan_lib.Plan, settings: Mapping[int, Any]) -> None:
    steps, period = ranking.clock(plan, settings, "halving")
    self.steps = steps
    unit = self._unit(steps, period)
    top = s_max(fractions.Fraction(steps, unit), self.eta)
    if self.max_rungs is not None:
      top = min(top, self.max_rungs)
    self._configs = ranking.Configs(plan, range(plan.num_variants))
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
    metric = ranking.metric_of(b, self.metric)
    mode = ranking.mode_of(metric, self.mode)
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
