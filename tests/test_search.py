"""Adaptive search inside the population: successive halving, Hyperband,
population-based training, early stopping, replay."""

import jax
import numpy as np
import optax
import pytest

import jaxsweep as js
from jaxsweep import engine
from jaxsweep.engine import schedulers
from tests import helpers

# The scalar problem whose ranking is known (tests/helpers.py).
TARGET = helpers.SCALAR_TARGET
_init, _apply, _loss = helpers.scalar_init, helpers.scalar_apply, helpers.scalar_loss
_data = helpers.scalar_data

DATA = _data()
LRS = [0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3]


def _run(lrs=LRS, *, method=None, steps=90, eval_every=10, data=DATA, **kw):
  return js.run(model=(_init, _apply), optimizer=optax.sgd, loss=_loss,
                metrics={"mse": js.losses.rmse_sq}, data=data,
                sweep=[{"learning_rate": lr} for lr in lrs], steps=steps, batch_size=8,
                eval_every=eval_every, method=method, target="val_objective", mode="min",
                **kw)


@pytest.fixture(scope="module")
def grid():
  return _run()


def test_halving_keeps_the_best_and_uses_the_schedules_budget(grid):
  halving = schedulers.Halving(eta=3, min_steps=10)
  res = _run(method=halving)
  # Rungs at 10 and 30 steps: 9 -> 3 -> 1 variants.
  stopped = {r["learning_rate"]: r["stopped_step"] for r in res.rows}
  assert [lr for lr, s in stopped.items() if s is None] == [0.3]  # The best survives.
  assert sorted(s for s in stopped.values() if s) == [10] * 6 + [30] * 2
  assert res.best["learning_rate"] == 0.3 and res.best["status"] == "ok"
  assert {r["rung"] for r in res.rows if r["status"] == "stopped"} == {0, 1}
  used = sum(r["steps"] for r in res.rows)
  assert used == res.groups[0]["variant_steps"] == halving.budget(9, 90, 10, 10) == 210
  # The survivor is bit-identical to the same variant in the plain grid.
  _same_variant(res, grid, 8)


def _same_variant(a, b, i):
  jax.tree.map(np.testing.assert_array_equal, a.params(i), b.params(i))
  assert a.history[i] == b.history[i]
  for k in ("val_objective", "test_objective", "steps", "status"):
    assert a.rows[i][k] == b.rows[i][k], k


def test_compacted_population_equals_the_masked_one():
  """Two lanes: stopped variants leave a smaller population (recompiled),
  with one lane they are only skipped; the survivors agree bit for bit with
  the same variants in an unchanged population of the same lanes."""
  mesh = engine.sharding.make_mesh(jax.devices()[:2])
  events = []
  compact = _run(method=schedulers.Halving(eta=3, min_steps=10), lanes=2, mesh=mesh,
                 progress=events.append)
  full = _run(lanes=2, mesh=mesh)
  assert compact.groups[0]["lanes"] == 2
  survivor = next(r["variant"] for r in compact.rows if r["status"] == "ok")
  _same_variant(compact, full, survivor)
  # The stopped ones kept the parameters they had at their rung.
  early = next(r for r in compact.rows if r["stopped_step"] == 10)
  ten = _run([early["learning_rate"]], steps=10, lanes=2, mesh=mesh)
  jax.tree.map(np.testing.assert_array_equal, compact.params(early["variant"]), ten.params(0))


def test_hyperband_brackets_start_at_different_budgets():
  band = schedulers.Halving(eta=3, min_steps=10, brackets=2, seed=0)
  res = _run(method=band)
  brackets = {}
  for r in res.rows:
    brackets.setdefault(r["bracket"], []).append(r)
  assert set(brackets) == {0, 1}
  # The aggressive bracket (first rung at 10) is the larger one.
  assert len(brackets[0]) > len(brackets[1])
  assert min(r["stopped_step"] or 90 for r in brackets[0]) == 10
  assert min(r["stopped_step"] or 90 for r in brackets[1]) == 30
  # Each bracket keeps its best.
  for rows in brackets.values():
    best = min(rows, key=lambda r: r["val_objective"] if r["status"] == "ok" else 1e9)
    assert best["status"] == "ok"
    assert best["learning_rate"] == max(r["learning_rate"] for r in rows)


def test_halving_decides_on_the_mean_over_seeds():
  """With seeds swept, whole configurations are kept or stopped."""
  res = js.run(model=(_init, _apply), optimizer=optax.sgd, loss=_loss, data=_data(noise=1.0),
               sweep={"learning_rate": [0.02, 0.1, 0.3], "seed": [0, 1]}, steps=30,
               batch_size=4, eval_every=10, method={"name": "halving", "min_steps": 10},
               target="val_objective", mode="min")
  by_lr = {}
  for r in res.rows:
    by_lr.setdefault(r["learning_rate"], set()).add(r["status"])
  assert all(len(s) == 1 for s in by_lr.values()), by_lr  # Seeds share their fate.
  assert by_lr[0.3] == {"ok"}


def test_early_stopping_stops_at_the_right_period_on_a_constructed_curve():
  stopping = schedulers.EarlyStopping(patience=2, min_delta=0.01, metric="val_loss",
                                      mode="min")
  curve = [1.0, 0.5, 0.3, 0.295, 0.29, 0.1]  # Improves, then stalls from step 3.
  stopped_at = None
  for t, value in enumerate(curve, start=1):
    b = engine.Boundary(0, (7,), t, 10, {"val_loss": np.asarray([value])}, np.asarray([False]))
    if stopping.boundary(b).stop:
      stopped_at = t
      break
  # 0.295 and 0.29 improve by less than 0.01 on 0.3: two stalls, stop at the 5th.
  assert stopped_at == 5


def test_early_stopping_in_a_sweep_freezes_the_variant():
  res = _run(method=None, early_stopping={"patience": 1, "min_delta": 1e-3})
  slow, fast = res.rows[0], res.rows[-1]
  assert slow["status"] == "ok"  # Still improving at lr 0.01.
  assert fast["status"] == "stopped" and fast["stopped_step"] < 90  # Converged early.
  assert fast["steps"] == fast["stopped_step"]


class _CopyAtEnd:
  def boundary(self, b):
    if b.step == b.steps:
      return engine.Decision(copy={1: 0}, assign={1: {"optimizer.learning_rate": 0.5}})
    return engine.Decision()


def test_exploit_copies_exactly_the_chosen_members_state():
  res = _run(LRS[:2], method=_CopyAtEnd(), steps=20)
  jax.tree.map(np.testing.assert_array_equal, res.params(1), res.params(0))
  assert res.lineage[1] == [{"step": 20, "from": 0},
                            {"step": 20, "set": {"optimizer.learning_rate": 0.5}}]


def _far(noise=1.0, n=256, distance=100.0):
  """Noisy training targets far from the start, exact validation ones: the
  validation objective is how far the weight ended from the optimum. A large
  rate is needed to get there in time, a small one to settle: the optimal
  schedule decays, which no constant rate matches."""
  rng = np.random.default_rng(0)
  zeros = np.zeros((n, 1), np.float32)
  y = (distance + noise * rng.normal(size=(n, 1))).astype(np.float32)
  exact = np.full((n, 1), distance, np.float32)
  return js.data.arrays(zeros, y, zeros, exact, x_val=zeros, y_val=exact, task="regression")


NOISY = _far()


def _search(method, seed):
  return js.run(model=(_init, _apply), optimizer=optax.sgd, loss=_loss, data=NOISY,
                sweep={"learning_rate": js.space.log_uniform(3e-3, 0.3, samples=8, seed=seed)},
                steps=200, batch_size=1, eval_every=20, target="val_objective", mode="min",
                method=method)


def _pbt(seed=0):
  return _search({"name": "pbt", "ready_every": 20, "quantile": 0.25, "seed": seed,
                  "factors": [0.5, 0.8]}, seed)


def test_pbt_explores_inside_bounds_and_is_reproducible():
  a, b = _pbt(), _pbt()
  assert a.lineage == b.lineage and a.lineage
  helpers.assert_same_results(a, b)
  lrs = [r["learning_rate"] for r in a.rows]
  lo, hi = min(lrs), max(lrs)
  for events in a.lineage.values():
    for e in events:
      if "set" in e:
        assert lo <= e["set"]["optimizer.learning_rate"] <= hi
  # A member's schedule follows its ancestors up to each copy.
  best = a.best["variant"]
  initial = {i: {"optimizer.learning_rate": r["learning_rate"]} for i, r in enumerate(a.rows)}
  schedule = schedulers.schedule_of(a.lineage, best, initial)
  assert schedule[0]["step"] == 0 and all(
      s1["step"] < s2["step"] for s1, s2 in zip(schedule, schedule[1:]))


def test_pbt_beats_random_search_on_the_same_budget():
  """Mean over 4 searches of the best member's final distance to the optimum."""
  pbt, random = [], []
  for seed in range(4):
    p, r = _pbt(seed), _search(None, seed)
    assert sum(x["steps"] for x in p.rows) == sum(x["steps"] for x in r.rows)
    pbt.append(p.best["val_objective"])
    random.append(r.best["val_objective"])
  assert np.mean(pbt) < 0.5 * np.mean(random), (pbt, random)


def test_replay_applies_a_schedule():
  schedule = [{"step": 0, "set": {"optimizer.learning_rate": 0.3}},
              {"step": 40, "set": {"optimizer.learning_rate": 0.01}}]
  res = _run([0.3], method=schedulers.Replay(schedule), steps=80)
  two = _run([0.3], steps=40)
  # Up to step 40 it is the plain run at 0.3.
  assert res.history[0][4] == two.history[0][4]
  assert res.lineage[0] == [{"step": 40, "set": {"optimizer.learning_rate": 0.01}}]


def test_unknown_method_and_bad_options_are_config_errors():
  with pytest.raises(js.ConfigError, match="method"):
    schedulers.make("halfing")
  with pytest.raises(js.ConfigError, match="eta"):
    schedulers.make({"name": "halving", "eta": 1})
  with pytest.raises(js.ConfigError, match="min_steps"):
    _run(method={"name": "halving", "min_steps": 15})
