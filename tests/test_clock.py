"""The sweep's clock: sweep-wide decisions see every group at each step.

A plan with two compile groups (two network widths); a scheduler that
compares variants is asked once per step with every variant of the sweep,
whatever the grouping, and a checkpoint taken there holds both groups.
"""

import jax
import numpy as np
import pytest
import yaml

import jaxsweep as js
from jaxsweep import engine
from jaxsweep import losses
from tests import helpers

LRS = (3e-3, 1e-2, 3e-2)


def _plan(widths=((8,), (16,)), lrs=LRS, steps=6, **train):
  variants = [{"model.features": w, "optimizer.learning_rate": lr, "seed": 0}
              for w in widths for lr in lrs]
  plan = engine.make_plan(
      # auto=False: every width its own compile group, whatever the estimates.
      engine.Components(model=helpers.mlp, optimizer=helpers.adam,
                        loss=losses.cross_entropy, data=helpers.DATA, auto=False),
      {"train.steps": steps, "train.batch_size": helpers.BATCH, "train.eval_every": 2,
       "train.eval_batch_size": 1024, "model.features": widths[0], "seed": 0,
       **{f"train.{k}": v for k, v in train.items()}},
      variants)
  assert len(plan.groups) == len(widths)  # Widths are static: one program each.
  return plan


class _Watch(engine.scheduling.Base):
  """Records what each boundary showed; optionally stops the sweep's worst."""

  def __init__(self, *, sweep_wide, stop_worst_at=None, crash_at=None):
    self.sweep_wide, self.stop_worst_at, self.crash_at = sweep_wide, stop_worst_at, crash_at
    self.seen, self.calls = [], 0

  def boundary(self, b):
    self.calls += 1
    if self.crash_at == self.calls:
      raise _Crash
    self.seen.append((b.step, b.variants, tuple(b.groups), tuple(b.final)))
    if b.step == self.stop_worst_at:
      worst = b.variants[int(np.argmin(b.metrics["val_accuracy"] - 1e-6 * np.arange(
          len(b.variants))))]
      return engine.Decision(stop=frozenset({worst}))
    return engine.Decision()

  def state_dict(self):
    return {"calls": self.calls}

  def load_state_dict(self, d):
    self.calls = d["calls"]


class _Crash(Exception):
  pass


def _tree_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def grid():
  return engine.execute.execute(_plan())


def test_a_sweep_wide_scheduler_sees_every_group_at_each_step():
  watch = _Watch(sweep_wide=True)
  engine.execute.execute(_plan(), scheduler=watch)
  assert [s for s, *_ in watch.seen] == [2, 4, 6]
  for _, variants, groups, final in watch.seen:
    assert variants == tuple(range(6))
    assert groups == (0, 0, 0, 1, 1, 1)
  assert watch.seen[-1][3] == (True,) * 6 and watch.seen[0][3] == (False,) * 6


def test_a_per_variant_scheduler_sees_one_group_start_to_end():
  watch = _Watch(sweep_wide=False)
  engine.execute.execute(_plan(), scheduler=watch)
  assert [(s, v) for s, v, *_ in watch.seen] == [
      (2, (0, 1, 2)), (4, (0, 1, 2)), (6, (0, 1, 2)),
      (2, (3, 4, 5)), (4, (3, 4, 5)), (6, (3, 4, 5))]


def test_a_stop_across_groups_leaves_the_others_bit_identical(grid):
  watch, events = _Watch(sweep_wide=True, stop_worst_at=2), []
  res = engine.execute.execute(_plan(), scheduler=watch, callback=events.append)
  # (A variant stopped at chance is "unstable"; stopped_step says it stopped.)
  stopped = [r["variant"] for r in res.rows if r.get("stopped_step") is not None]
  assert len(stopped) == 1
  [v] = stopped
  # The worst of all six at step 2, whichever group it is in.
  accs = [grid.history[i][1]["val_accuracy"] for i in range(6)]
  assert accs[v] == min(accs)
  assert res.rows[v]["stopped_step"] == 2
  # The throughput line counts the variants that trained, not the stopped one.
  running = {(e["group"], e["step"]): e["running"] for e in events if e["event"] == "period"}
  assert running[(plan_group := v // 3, 4)] == 2 and running[(1 - plan_group, 4)] == 3
  for i in range(6):
    if i != v:
      _tree_equal(res.params(i), grid.params(i))
      assert res.rows[i]["val_accuracy"] == grid.rows[i]["val_accuracy"]


@pytest.mark.parametrize("crash_at", [1, 2])
def test_resume_with_two_live_groups_equals_uninterrupted(crash_at, grid, tmp_path):
  plan = _plan()
  with pytest.raises(_Crash):
    engine.execute.execute(plan, scheduler=_Watch(sweep_wide=True, crash_at=crash_at + 1),
                           checkpoint_dir=str(tmp_path), checkpoint_every=0)
  events, watch = [], _Watch(sweep_wide=True)
  res = engine.execute.execute(plan, scheduler=watch, checkpoint_dir=str(tmp_path),
                               resume=True, callback=events.append)
  helpers.assert_same_results(res, grid)
  # Both groups went on from the saved step; the scheduler from its state.
  steps = [(e["group"], e["step"]) for e in events if e["event"] == "period"]
  after = 2 * crash_at
  assert sorted(steps) == sorted((g, s) for g in (0, 1) for s in range(after + 2, 7, 2))
  assert watch.calls == crash_at + len(range(after + 2, 7, 2))


def test_a_copy_across_groups_is_refused():
  class _Across(engine.scheduling.Base):
    sweep_wide = True

    def boundary(self, b):
      return engine.Decision(copy={4: 0})

  with pytest.raises(ValueError, match="across compile groups"):
    engine.execute.execute(_plan(), scheduler=_Across())


class _CopyFork(engine.scheduling.Base):
  """At step 2, variants 1 and 2 copy variant 0; ``salts`` fork their keys."""

  sweep_wide = True

  def __init__(self, salts):
    self.salts = salts

  def boundary(self, b):
    if b.step != 2:
      return engine.Decision()
    return engine.Decision(copy={1: 0, 2: 0}, fork=self.salts)


def _same_seed_plan():
  return _plan(widths=((8,),), lrs=(1e-2, 1e-2, 1e-2))


def test_a_copy_without_a_fork_is_a_clone_and_a_fork_is_not():
  """Members of one seed that copy one partner share its key (it comes from
  the seed alone): without a fork they stay clones; with their own salt
  each draws its own batches from then on."""
  clones = engine.execute.execute(_same_seed_plan(), scheduler=_CopyFork({}))
  _tree_equal(clones.params(1), clones.params(2))
  forked = engine.execute.execute(_same_seed_plan(), scheduler=_CopyFork({1: 1, 2: 2}))
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(forked.params(1)), jax.tree.leaves(forked.params(2)), strict=True))
  assert [e for e in forked.lineage[1] if "fork" in e] == [{"step": 2, "fork": 1}]
  # The same salt is the same stream: a fork is reproducible.
  again = engine.execute.execute(_same_seed_plan(), scheduler=_CopyFork({1: 7, 2: 7}))
  _tree_equal(again.params(1), again.params(2))


def test_first_eval_adds_an_early_boundary_and_changes_no_bits(grid):
  """train.first_eval: the first number after a few steps, from the same
  program (the first call takes 1 of its 2 steps); the rest is the same run."""
  early = _plan(first_eval=1)
  events = []
  res = engine.execute.execute(early, callback=events.append)
  assert [e["step"] for e in events if e["event"] == "period" and e["group"] == 0] == [
      1, 2, 4, 6]
  assert [h["step"] for h in res.history[0]] == [0, 1, 2, 4, 6]
  for i in range(6):
    _tree_equal(res.params(i), grid.params(i))
    assert res.rows[i]["val_accuracy"] == grid.rows[i]["val_accuracy"]


def test_compiling_thread_is_shut_down_when_preparing_fails(monkeypatch):
  """An error after the first compile was submitted (e.g. restoring a
  checkpoint) still shuts the compiling thread down: nothing keeps compiling
  for a failed run, and the process does not wait for it at exit."""
  made = []

  class Recorded(engine.execute._Compiler):  # pylint: disable=protected-access
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      made.append(self)

  def fail(*args, **kwargs):
    del args, kwargs  # Unused.
    raise _Crash

  monkeypatch.setattr(engine.execute, "_Compiler", Recorded)
  monkeypatch.setattr(engine.execute, "_make_record", fail)
  with pytest.raises(_Crash):
    engine.execute.execute(_plan(widths=((8,),), lrs=LRS[:1], steps=2))
  (compiler,) = made
  assert compiler.jobs and compiler.pool._shutdown  # pylint: disable=protected-access
  assert all(job.done() for job in compiler.jobs.values())


def test_a_parked_population_goes_on_bit_for_bit():
  """Population.park (every chunk to the host between a group's turns, as on
  an accelerator with several groups live) changes nothing: the next period
  after parking equals the next period without it, stats and state."""
  cfg = js.config.load(raw=yaml.safe_load(helpers.TINY_BASE + "sweep:\n"
                                           "  optimizer.learning_rate: [0.001, 0.01, 0.1]\n"))
  plan = js.engine.structure.make_plan(cfg.components, cfg.base, cfg.points)
  group = plan.groups[0]
  built = js.engine.program.build(plan, group)
  mesh = js.sharding.make_mesh()
  data = js.engine.program.device_data(built.dataset, mesh)
  size = js.sharding.population_size(len(group.members), mesh.devices.size, 1)

  def compile_for(n):
    hp = js.engine.program.abstract_population(plan, group, n, mesh)
    return js.engine.program.compile(built, mesh, hp, data, lanes=1)

  def population(park: bool):
    pop = js.engine.population.Population(plan, group, built, mesh, 1, data, compile_for)
    pop.start(group.members, size)
    pop.run(steps=0)
    pop.run(steps=3)
    if park:
      pop.park()
      assert all(c.state is None and c.parked is not None for c in pop.chunks)
    return pop.run(steps=3), pop.host_arrays()

  (stats, flags), arrays = population(park=True)
  (stats0, flags0), arrays0 = population(park=False)
  assert stats == stats0 and flags == flags0
  for (m, a), (m0, a0) in zip(arrays, arrays0):
    assert m == m0
    jax.tree.map(np.testing.assert_array_equal, a, a0)
