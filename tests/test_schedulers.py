"""Schedulers against the papers and the sweep-wide protocol, without training.

A scheduler sees a :class:`~jaxsweep.engine.scheduling.Boundary` (every
variant of the sweep at one step) and answers a ``Decision``; these tests
drive them with constructed plans and metrics (no JAX), so rung counts,
rankings across groups, PBT's exploit and a resume from ``state_dict`` are
checked exactly and fast.
"""

import fractions
import json
import math
import types

import numpy as np
import pytest

import jaxsweep as js
from jaxsweep import keys
from jaxsweep import selection
from jaxsweep.engine import halving as halving_lib
from jaxsweep.engine import pbt as pbt_lib
from jaxsweep.engine import proposals
from jaxsweep.engine import ranking
from jaxsweep.engine import record as record_lib
from jaxsweep.engine import schedulers, scheduling

LR = "optimizer.learning_rate"


# --------------------------------------------------------------------------
# A constructed sweep: variants, groups, a clock.

def _plan(lrs, *, groups=None, seeds=(0,), traced=(LR,)):
  """A plan-like object: one variant per (lr, seed); ``groups[j]`` the
  group of configuration ``j`` (default: one group)."""
  variants, group_of = [], []
  for j, lr in enumerate(lrs):
    for s in seeds:
      variants.append({keys.Key("optimizer", "learning_rate"): lr, keys.Key("seed"): s})
      group_of.append(0 if groups is None else groups[j])
  members = {}
  for v, g in enumerate(group_of):
    members.setdefault(g, []).append(v)
  plan_groups = [types.SimpleNamespace(index=g, members=members.get(g, []),
                                       traced=tuple(keys.parse(k) for k in (*traced, "seed")))
                 for g in range(max(group_of) + 1)]
  swept = [keys.parse(LR)] + ([keys.Key("seed")] if len(seeds) > 1 else [])
  display = {keys.parse(LR): "learning_rate"}
  return types.SimpleNamespace(
      variants=variants, groups=plan_groups, swept=swept, num_variants=len(variants),
      display=display, column=lambda k: display.get(k, str(k)))


def _settings(plan, steps, eval_every):
  every = eval_every if isinstance(eval_every, dict) else {}
  return {g.index: types.SimpleNamespace(steps=steps if not isinstance(steps, dict)
                                         else steps[g.index],
                                         eval_every=every.get(g.index, eval_every),
                                         num_periods=0)
          for g in plan.groups}


def _boundary(plan, step, score, *, stopped=(), steps=None, target="val_accuracy"):
  """Every live variant at ``step``; ``score(v)`` its metric (higher is better)."""
  variants = tuple(v for v in range(plan.num_variants) if v not in stopped)
  group = {v: g.index for g in plan.groups for v in g.members}
  return scheduling.Boundary(
      step=step, variants=variants, groups=np.asarray([group[v] for v in variants]),
      metrics={target: np.asarray([score(v) for v in variants], np.float64)},
      stopped=np.zeros(len(variants), bool),
      final=np.asarray([steps is not None and step >= steps] * len(variants)),
      target=target)


def _drive(scheduler, plan, steps, every, score, *, until=None):
  """Runs the clock: a boundary every ``every`` steps; returns the stop step per variant."""
  stopped: dict[int, int] = {}
  for step in range(every, (until or steps) + 1, every):
    d = scheduler.boundary(_boundary(plan, step, lambda v, step=step: score(v, step),
                                     stopped=set(stopped), steps=steps))
    stopped.update({v: step for v in d.stop})
  return stopped


# --------------------------------------------------------------------------
# Rung counts as published.

def _published(R, eta):
  """Li et al. (2018), Algorithm 1, in integers: [(s, n, r, [(n_i, r_i)])]."""
  s_max = 0
  while eta ** (s_max + 1) <= R:
    s_max += 1
  out = []
  for s in range(s_max, -1, -1):
    n = -(-(s_max + 1) * eta ** s // (s + 1))  # ceil((s_max+1)/(s+1) * eta^s)
    r = fractions.Fraction(R, eta ** s)
    out.append((s, n, r, [(n // eta ** i, r * eta ** i) for i in range(s + 1)]))
  return out


def test_li_et_al_worked_example():
  """R = 81, eta = 3 (Li et al. 2018, Table 1)."""
  brackets = halving_lib.hyperband(81, 3)
  assert [(b.s, b.n, b.r) for b in brackets] == [(4, 81, 1), (3, 34, 3), (2, 15, 9),
                                                 (1, 8, 27), (0, 5, 81)]
  assert [[x.n for x in b.rounds] for b in brackets] == [
      [81, 27, 9, 3, 1], [34, 11, 3, 1], [15, 5, 1], [8, 2], [5]]
  assert [[x.r for x in b.rounds] for b in brackets] == [
      [1, 3, 9, 27, 81], [3, 9, 27, 81], [9, 27, 81], [27, 81], [81]]


@pytest.mark.parametrize("eta", [2, 3, 4])
@pytest.mark.parametrize("R", [1, 2, 3, 8, 9, 10, 16, 26, 27, 64, 80, 81, 100, 243, 256])
def test_rung_counts_and_budgets_match_the_papers(R, eta):
  ours, theirs = halving_lib.hyperband(R, eta), _published(R, eta)
  assert [(b.s, b.n) for b in ours] == [(s, n) for s, n, _, _ in theirs]
  B = (ours[0].s + 1) * R  # Li et al.'s budget per bracket.
  for b, (s, _, r, rounds) in zip(ours, theirs, strict=True):
    assert fractions.Fraction(b.r) == r
    assert [(x.n, fractions.Fraction(x.r)) for x in b.rounds] == rounds
    # Each round keeps floor(n_i / eta) (Jamieson & Talwalkar with eta for 2).
    for a, c in zip(b.rounds, b.rounds[1:], strict=False):
      assert c.n == max(1, a.n // eta)
    # The papers' cost (retraining each round) stays within B plus one round's rounding.
    paper = sum(n_i * r_i for n_i, r_i in rounds)
    assert paper <= B + (s + 1) * r
    # Ours resumes: sum n_i (r_i - r_{i-1}).
    resumed = sum(n_i * (r_i - (rounds[i - 1][1] if i else 0))
                  for i, (n_i, r_i) in enumerate(rounds))
    assert fractions.Fraction(halving_lib.variant_steps(b.rounds)) == resumed
    assert b.rounds[-1].r == R


def test_hyperband_on_the_papers_population_keeps_the_papers_counts():
  """143 configurations (81+34+15+8+5), R = 81 steps of 1: at every rung each
  bracket keeps exactly Li et al.'s floor(n_i / eta)."""
  plan = _plan([float(i) for i in range(143)])
  band = halving_lib.Halving(eta=3, min_steps=1, brackets="all", seed=0)
  band.start(plan, _settings(plan, 81, 1))
  sizes = {s: n for s, (n, _) in band.bracket_rounds().items()}
  assert sizes == {4: 81, 3: 34, 2: 15, 1: 8, 0: 5}
  rng = np.random.default_rng(0)
  noise = rng.permutation(143)
  stopped = _drive(band, plan, 81, 1, lambda v, step: float(noise[v]))
  columns = band.columns()
  for b in halving_lib.hyperband(81, 3):
    members = [v for v, c in columns.items() if c["bracket"] == b.s]
    alive = len(members)
    for i, x in enumerate(b.rounds):
      assert alive == x.n, (b.s, i)
      at = b.r * 3 ** i
      alive -= sum(1 for v in members if stopped.get(v) == at)
  assert band.budget() == sum(halving_lib.variant_steps(b.rounds) for b in
                              halving_lib.hyperband(81, 3))


def test_halving_keeps_floor_n_over_eta_and_caps_its_bracket_by_the_population():
  plan = _plan([float(i) for i in range(10)])
  halving = halving_lib.Halving(eta=3, min_steps=10)
  halving.start(plan, _settings(plan, 270, 10))  # R = 27: s_max = 3, but 10 < 27.
  (s, (n, rungs)), = halving.bracket_rounds().items()
  assert (s, n, rungs) == (2, 10, [30, 90])  # s = floor(log3 10) = 2: r = 270 / 9.
  stopped = _drive(halving, plan, 270, 10, lambda v, step: float(v))
  assert sorted(stopped.values()) == [30] * 7 + [90] * 2  # 10 -> 3 -> 1: floor, not ceil.
  assert [v for v in range(10) if v not in stopped] == [9]
  assert halving.budget() == 10 * 30 + 3 * 60 + 1 * 180


def test_rungs_are_rounded_to_a_boundary():
  plan = _plan([0.1 * (i + 1) for i in range(9)])
  halving = halving_lib.Halving(eta=3)
  halving.start(plan, _settings(plan, 100, 10))  # R = 10: s = 2, r = 100/9 -> 10, 33 -> 30.
  assert halving.bracket_rounds() == {2: (9, [10, 30])}


# --------------------------------------------------------------------------
# One ranking across the sweep.

def test_halving_ranks_across_groups_the_same_however_the_sweep_is_grouped():
  """Issue #23: with the key grouped, halving kept one survivor per group."""
  lrs = [float(i) for i in range(8)]
  score = lambda v, step: [0.47, 0.57, 0.979, 0.97, 0.975, 0.3, 0.2, 0.1][v]  # noqa: E731
  outcomes = []
  for groups in (None, [0, 1, 0, 1, 0, 1, 0, 1], [0, 0, 1, 1, 2, 2, 3, 3]):
    plan = _plan(lrs, groups=groups)
    halving = halving_lib.Halving(eta=2, min_steps=10)
    halving.start(plan, _settings(plan, 80, 10))
    outcomes.append(_drive(halving, plan, 80, 10, score))
  assert outcomes[0] == outcomes[1] == outcomes[2]
  assert [v for v in range(8) if v not in outcomes[0]] == [2]  # The 0.979 survives.


def test_near_equal_scores_fall_to_sweep_order_not_float_noise():
  plan = _plan([0.1, 0.2, 0.3])
  halving = halving_lib.Halving(eta=3, min_steps=10)
  halving.start(plan, _settings(plan, 30, 10))
  values = [0.10256409893, 0.10256410142, 0.05]
  d = halving.boundary(_boundary(plan, 10, lambda v: values[v]))
  assert d.stop == {1, 2}  # 0 and 1 tie: the first in the sweep stays.


def test_a_configuration_scores_its_mean_over_seeds_as_selection_does():
  """One mean over seeds, one NaN policy (selection.over_seeds): a diverged
  (NaN) seed is left out; a configuration with no finite seed scores worst."""
  plan = _plan([0.1, 0.2, 0.3], seeds=(0, 1))
  values = [0.5, math.nan, 0.7, 0.2, math.nan, math.nan]  # Variant = 2 * config + seed.
  b = _boundary(plan, 10, lambda v: values[v])
  configs = ranking.Configs(plan, range(plan.num_variants))
  scores = configs.scores(b, "val_accuracy", "max", set(range(plan.num_variants)))
  by_first = {configs.first(c): x for c, x in scores.items()}
  assert by_first == {0: selection.over_seeds([0.5, math.nan]).mean,
                      2: selection.over_seeds([0.7, 0.2]).mean, 4: -math.inf}
  assert by_first[0] == 0.5 and by_first[2] == pytest.approx(0.45)
  assert configs.ranked(scores) == [configs.of[0], configs.of[2], configs.of[4]]


def test_groups_without_a_common_rung_are_a_config_error():
  plan = _plan([0.1, 0.2], groups=[0, 1])
  with pytest.raises(js.ConfigError) as e:
    halving_lib.Halving(eta=2).start(plan, _settings(plan, {0: 40, 1: 80}, 10))
  assert e.value.key == "train.steps"
  with pytest.raises(js.ConfigError) as e:
    pbt_lib.PBT().start(plan, _settings(plan, 40, {0: 10, 1: 25}))
  assert e.value.key == "train.eval_every"
  with pytest.raises(js.ConfigError) as e:
    halving_lib.Halving(eta=2, min_steps=10).start(plan, _settings(plan, 80, {0: 10, 1: 20}))
  assert e.value.key == "sweep.method.min_steps" and "20" in str(e.value)


def test_sweep_wide_flags():
  assert halving_lib.Halving().sweep_wide and pbt_lib.PBT().sweep_wide
  assert not schedulers.EarlyStopping().sweep_wide and not schedulers.Replay([]).sweep_wide
  assert schedulers.make("hyperband").sweep_wide
  assert schedulers.make("halving", early_stopping={"patience": 2}).sweep_wide
  assert not schedulers.make(None, early_stopping={"patience": 2}).sweep_wide
  with pytest.raises(TypeError, match="not a scheduler"):
    schedulers.make(object())


# --------------------------------------------------------------------------
# PBT: no clones, what it reports.

def _pbt_round(pbt, plan, step, score):
  return pbt.boundary(_boundary(plan, step, lambda v: score(v)))


@pytest.mark.parametrize("factors", [[1.0], [0.8, 1.2]])
def test_pbt_exploit_never_makes_clones(factors):
  """Issue #23: factor 1.0 made 8 members 4 distinct ones. Within a round no
  two losers get the same (partner, values), and none gets its partner's."""
  lrs = [0.01 * (i + 1) for i in range(8)]
  plan = _plan(lrs, groups=[0, 0, 0, 0, 0, 0, 0, 1])
  pbt = pbt_lib.PBT(ready_every=10, quantile=0.5, factors=factors, seed=0)
  pbt.start(plan, _settings(plan, 100, 10))
  rng = np.random.default_rng(1)
  for step in range(10, 100, 10):
    before = {v: dict(pbt.values[v]) for v in range(8)}
    draw = rng.random(8)
    d = _pbt_round(pbt, plan, step, lambda v, draw=draw: draw[v])
    assert d.copy, step
    states = {}
    for dst, src in d.copy.items():
      assert np.float32(d.assign[dst][LR]) != np.float32(before[src][LR])
      ident = (src, np.float32(d.assign[dst][LR]))
      assert ident not in states, (step, dst, states)
      states[ident] = dst
      assert plan.groups[0].members.count(dst) == plan.groups[0].members.count(src)  # Same group.


def test_pbt_partners_are_drawn_without_replacement():
  lrs = [0.01 * (i + 1) for i in range(8)]
  plan = _plan(lrs)
  pbt = pbt_lib.PBT(ready_every=10, quantile=0.5, seed=3)
  pbt.start(plan, _settings(plan, 100, 10))
  d = _pbt_round(pbt, plan, 10, lambda v: float(v))
  assert sorted(d.copy) == [0, 1, 2, 3] and sorted(d.copy.values()) == [4, 5, 6, 7]


def test_pbt_copies_seeds_of_a_configuration_seed_by_seed():
  plan = _plan([0.01, 0.02, 0.03, 0.04], seeds=(0, 1))
  pbt = pbt_lib.PBT(ready_every=10, quantile=0.25, seed=0)
  pbt.start(plan, _settings(plan, 100, 10))
  d = _pbt_round(pbt, plan, 10, lambda v: float(v // 2))  # lr 0.04 best, 0.01 worst.
  assert d.copy == {0: 6, 1: 7}
  assert d.assign[0] == d.assign[1]
  cols = pbt.columns()
  assert cols[0]["member"] == cols[1]["member"] == 0 and cols[6]["member"] == 6


def test_pbt_rows_report_the_values_they_ended_with_and_their_lineage():
  plan = _plan([0.01, 0.02, 0.03, 0.04])
  pbt = pbt_lib.PBT(ready_every=10, quantile=0.25, factors=[2.0], seed=0,
                       bounds={LR: (1e-4, 1.0)})
  pbt.start(plan, _settings(plan, 100, 10))
  _pbt_round(pbt, plan, 10, lambda v: float(v))          # 0 copies 3: lr 0.08.
  _pbt_round(pbt, plan, 20, lambda v: [9, 0, 1, 2][v])    # 1 copies 0: lr 0.16.
  cols = pbt.columns()
  assert cols[1]["learning_rate"] == pytest.approx(0.16) and cols[1]["copied_from"] == 0
  assert cols[3]["learning_rate"] == 0.04 and cols[3]["copied_from"] is None
  assert cols[3]["lineage"] == ""
  assert cols[1]["lineage"] == ("trained as v3 (learning_rate=0.04); step 10: copied into "
                                "v0, learning_rate=0.08; step 20: copied into v1, "
                                "learning_rate=0.16")
  assert pbt.schedule(1) == [{"step": 0, "set": {LR: 0.04}}, {"step": 10, "set": {LR: 0.08}},
                             {"step": 20, "set": {LR: pytest.approx(0.16)}}]
  # The engine's lineage (copies, then values) gives the same schedule.
  lineage = {0: [{"step": 10, "from": 3}, {"step": 10, "set": {LR: 0.08}}],
             1: [{"step": 20, "from": 0}, {"step": 20, "set": {LR: 0.16}}]}
  initial = {v: {LR: lr} for v, lr in enumerate([0.01, 0.02, 0.03, 0.04])}
  assert schedulers.schedule_of(lineage, 1, initial) == pbt.schedule(1)
  assert schedulers.root_of(lineage, 1) == 3


def test_pbt_refuses_to_explore_a_static_key():
  plan = _plan([0.01, 0.02], traced=())
  with pytest.raises(js.ConfigError) as e:
    pbt_lib.PBT(hyperparams=[LR]).start(plan, _settings(plan, 100, 10))
  assert e.value.key == "sweep.method.hyperparams"


# --------------------------------------------------------------------------
# Resume: state_dict carries everything.

def _resume_equals_uninterrupted(make, plan, settings, steps, every, score, cut):
  whole = make()
  whole.start(plan, settings)
  decisions = [whole.boundary(_boundary(plan, s, lambda v, s=s: score(v, s), steps=steps))
               for s in range(every, steps + 1, every)]
  first = make()
  first.start(plan, settings)
  resumed_decisions = [first.boundary(_boundary(plan, s, lambda v, s=s: score(v, s),
                                                steps=steps))
                       for s in range(every, cut + 1, every)]
  saved = json.loads(json.dumps(first.state_dict(), allow_nan=False))  # As a checkpoint.
  second = make()
  second.start(plan, settings)
  second.load_state_dict(saved)
  resumed_decisions += [second.boundary(_boundary(plan, s, lambda v, s=s: score(v, s),
                                                  steps=steps))
                        for s in range(cut + every, steps + 1, every)]
  assert resumed_decisions == decisions
  assert second.columns() == whole.columns()
  assert json.dumps(second.state_dict()) == json.dumps(whole.state_dict())


@pytest.mark.parametrize("name", ["halving", "hyperband", "pbt", "early_stopping", "compose"])
def test_a_scheduler_resumed_from_its_state_decides_as_if_uninterrupted(name):
  plan = _plan([0.01 * (i + 1) for i in range(12)], groups=[0, 1] * 6)
  rng = np.random.default_rng(0)
  table = rng.random((13, 12))
  make = {
      "halving": lambda: halving_lib.Halving(eta=2, min_steps=10),
      "hyperband": lambda: halving_lib.Halving(eta=2, min_steps=10, brackets="all", seed=1),
      "pbt": lambda: pbt_lib.PBT(ready_every=10, quantile=0.25, seed=2,
                                    resample_probability=0.5),
      "early_stopping": lambda: schedulers.EarlyStopping(patience=2),
      "compose": lambda: schedulers.make("halving", early_stopping={"patience": 2}),
  }[name]
  for cut in (10, 40):
    _resume_equals_uninterrupted(make, plan, _settings(plan, 80, 10), 80, 10,
                                 lambda v, s: float(table[s // 10, v]), cut)


def test_columns_cover_every_variant_of_the_plan():
  """Issue #23: after a resume, groups finished before lost their rung column."""
  plan = _plan([0.01 * (i + 1) for i in range(6)], groups=[0, 1, 2, 0, 1, 2])
  halving = halving_lib.Halving(eta=2, min_steps=10)
  halving.start(plan, _settings(plan, 40, 10))
  assert set(halving.columns()) == set(range(6))
  pbt = pbt_lib.PBT()
  pbt.start(plan, _settings(plan, 40, 10))
  assert set(pbt.columns()) == set(range(6))


# --------------------------------------------------------------------------
# A stopped variant at chance is unstable.

def test_a_variant_stopped_at_chance_is_unstable():
  plan = types.SimpleNamespace(
      variants=[{"optimizer.learning_rate": 1.0}, {"optimizer.learning_rate": 0.1}],
      swept=[keys.parse(LR)], column=lambda k: "learning_rate", ids=["a", "b"],
      groups=[types.SimpleNamespace(index=0, members=[0, 1])], num_variants=2)
  snap = types.SimpleNamespace(history={}, finals={}, extra={})
  record = record_lib.Record(plan, snap, task="classification", unstable_factor=3.0)
  record.chance[0] = {"val_accuracy": 0.1}
  flat = [{"step": 0, "val_accuracy": 0.1, "train_objective": 2.3},
          {"step": 10, "val_accuracy": 0.1, "train_objective": 2.3}]
  learning = [{"step": 0, "val_accuracy": 0.1, "train_objective": 2.3},
              {"step": 10, "val_accuracy": 0.5, "train_objective": 1.0}]
  record.history.update({0: flat, 1: learning})
  record.finals.update({0: {"status": "stopped", "at": 10, "step": 10},
                        1: {"status": "stopped", "at": 10, "step": 10}})
  rows = record.results(seconds=1.0).rows
  assert rows[0]["status"] == "unstable" and rows[0]["stopped_step"] == 10
  assert "stopped by the scheduler at step 10" in rows[0]["note"]
  assert "chance" in rows[0]["note"]
  assert rows[1]["status"] == "stopped"


def test_replay_refuses_a_step_that_is_not_a_boundary_and_a_wrong_start():
  plan = _plan([0.3])
  with pytest.raises(js.ConfigError, match="not a boundary"):
    schedulers.Replay([{"step": 15, "set": {LR: 0.1}}]).start(plan, _settings(plan, 40, 10))
  with pytest.raises(js.ConfigError, match="step 0"):
    schedulers.Replay([{"step": 0, "set": {LR: 0.1}}]).start(plan, _settings(plan, 40, 10))
  replay = schedulers.Replay([{"step": 0, "set": {LR: 0.3}}, {"step": 20, "set": {LR: 0.1}}])
  replay.start(plan, _settings(plan, 40, 10))
  assert replay.boundary(_boundary(plan, 20, lambda v: 0.5)).assign == {0: {LR: 0.1}}
  assert not math.isnan(plan.variants[0][LR])


def test_pbt_never_copies_across_programs():
  """A bottom member whose group holds no top member goes on unchanged."""
  plan = _plan([0.01, 0.02, 0.03, 0.04], groups=[0, 0, 1, 1])
  pbt = pbt_lib.PBT(ready_every=10, quantile=0.5, seed=0)
  pbt.start(plan, _settings(plan, 100, 10))
  d = _pbt_round(pbt, plan, 10, lambda v: [0.1, 0.2, 0.9, 0.8][v])  # Group 1 on top.
  assert not d.copy and not d.assign
  d = _pbt_round(pbt, plan, 20, lambda v: [0.1, 0.9, 0.2, 0.8][v])  # One top per group.
  assert d.copy == {0: 1, 2: 3}


class _Trial:
  """An optuna.Trial stand-in that logs the order of calls."""

  def __init__(self, number, log, prune):
    self.number, self.log, self.prune = number, log, prune

  def report(self, value, step):
    self.log.append(("report", self.number, step))

  def should_prune(self):
    self.log.append(("ask", self.number))
    return self.prune


def test_pruning_hears_every_trial_before_asking_any():
  """The median pruner must see the same values whichever group a trial trains in."""
  log = []
  trials = {n: _Trial(n, log, prune=n == 2) for n in range(3)}
  pruning = proposals.Pruning(trials, {n: [n] for n in range(3)}, "val_accuracy")
  assert pruning.sweep_wide
  plan = _plan([0.1, 0.2, 0.3], groups=[0, 1, 2])
  d = pruning.boundary(_boundary(plan, 10, lambda v: 0.5, steps=30))
  assert [e[0] for e in log] == ["report"] * 3 + ["ask"] * 3
  assert d.stop == {2} and pruning.pruned == {2: 10}
  state = json.loads(json.dumps(pruning.state_dict()))
  again = proposals.Pruning(trials, {n: [n] for n in range(3)}, "val_accuracy")
  again.load_state_dict(state)
  assert again.pruned == {2: 10} and again.reported == pruning.reported
