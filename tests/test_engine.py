"""The core engine: vectorized == sequential, population invariance, NaN
isolation, no recompilation, grouping and the run state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsweep as js
from jaxsweep import engine
from jaxsweep import train as train_lib
from tests import helpers

LRS = [1e-3, 3e-3, 1e-2, 3e-2, 5e-2]


@pytest.fixture(scope="module")
def population():
  return helpers.run([{"learning_rate": lr, "seed": i % 2} for i, lr in enumerate(LRS)])


def _tree_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_rows_and_columns(population):
  rows = population.rows
  assert len(rows) == len(LRS)
  assert [r["variant"] for r in rows] == list(range(len(LRS)))
  assert [r["learning_rate"] for r in rows] == LRS
  for col in ("id", "status", "diverged_step", "train_loss", "test_loss", "test_accuracy"):
    assert col in rows[0]
  assert all(r["status"] == "ok" and r["steps"] == helpers.STEPS for r in rows)
  # History: one entry per eval period, ending at the final metrics.
  h = population.history[2]
  assert [e["step"] for e in h] == [3, 6]
  assert h[-1]["test_loss"] == rows[2]["test_loss"]
  # Ranked best first on test accuracy.
  accs = [r["test_accuracy"] for r in population.table]
  assert accs == sorted(accs, reverse=True)


def test_vectorized_matches_sequential_reference(population):
  """Each variant trained alone by an un-vmapped jit equals the population.

  The per-variant reference runs the same one-variant program without vmap,
  one variant at a time (the jax batching_test pattern). vmap turns matmuls
  into batched matmuls, whose float rounding may differ: rtol 1e-5 over 6
  steps at moderate learning rates.
  """
  plan = engine.make_plan(
      js.engine.Spec(model=helpers.mlp, optimizer=helpers.adam,
                     loss=js.losses.cross_entropy, data=helpers.DATA),
      {"train.steps": helpers.STEPS, "train.batch_size": helpers.BATCH,
       "train.eval_every": 3, "model.features": (16,), "seed": 0},
      [{"optimizer.learning_rate": lr, "seed": i % 2} for i, lr in enumerate(LRS)])
  group = plan.groups[0]
  built = engine.build_group(plan, group)
  data = engine.device_data(built.dataset)
  hp_all = engine.stack_hparams(plan, group)
  init = jax.jit(built.program.init)
  chunk = jax.jit(built.program.chunk)
  for i in range(len(LRS)):
    hp = jax.tree.map(lambda a, i=i: a[i], hp_all)
    state = init(hp, data)
    for _ in range(2):
      state, stats = chunk(state, hp, data)
    ref = population.params(i)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["test_loss"], population.rows[i]["test_loss"], rtol=1e-5)


def test_population_invariance(population):
  """A variant alone is bit-identical to the same variant in a population."""
  alone = helpers.run([{"learning_rate": LRS[3], "seed": 1}])
  assert _tree_equal(alone.params(0), population.params(3))
  for k in ("train_loss", "test_loss", "test_accuracy"):
    assert alone.rows[0][k] == population.rows[3][k]
  assert alone.rows[0]["id"] == population.rows[3]["id"]


def test_nan_isolation(population):
  """Poisoned variants diverge, are frozen, and leave the others untouched."""
  lrs = list(LRS)
  lrs[1] = float("nan")
  lrs[4] = float("inf")
  poisoned = helpers.run([{"learning_rate": lr, "seed": i % 2} for i, lr in enumerate(lrs)])
  status = [r["status"] for r in poisoned.rows]
  assert status == ["ok", "diverged", "ok", "ok", "diverged"]
  assert poisoned.rows[1]["diverged_step"] == 0
  for i in (0, 2, 3):
    assert _tree_equal(poisoned.params(i), population.params(i))
    assert poisoned.rows[i]["test_loss"] == population.rows[i]["test_loss"]
  # Frozen: parameters of a diverged variant stay finite (its last good ones).
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(poisoned.params(1)))
  # Never ranked above a healthy variant, whatever its accuracy.
  assert [r["status"] for r in poisoned.table][-2:] == ["diverged", "diverged"]


def test_divergence_mid_run_records_step():
  """SGD at a huge learning rate overflows after some steps, not at step 0."""
  res = helpers.run([{"learning_rate": 1e-2}, {"learning_rate": 1e30}],
                    optimizer=helpers.sgd)
  assert res.rows[0]["status"] == "ok"
  assert res.rows[1]["status"] == "diverged"
  assert 0 <= res.rows[1]["diverged_step"] < helpers.STEPS


def test_no_recompile_when_values_change(population):
  del population  # Compiled by the fixture.
  before = dict(train_lib.TRACE_COUNT)
  res = helpers.run([{"learning_rate": lr * 0.7, "seed": 5 + i} for i, lr in enumerate(LRS)])
  assert train_lib.TRACE_COUNT == before
  assert len(res.rows) == len(LRS)
  # Changing a value that was fixed (b1) is also just a new array value.
  helpers.run([{"learning_rate": lr, "b1": 0.8} for lr in LRS])
  assert train_lib.TRACE_COUNT == before


def test_structural_keys_form_groups():
  res = helpers.run({"features": [(8,), (16,)], "learning_rate": [1e-2, 3e-2]},
                    fixed={})
  assert len(res.groups) == 2
  assert [g["variants"] for g in res.groups] == [2, 2]
  assert sorted({r["group"] for r in res.rows}) == [0, 1]
  assert [tuple(r["features"]) for r in res.rows] == [(8,), (8,), (16,), (16,)]
  shapes = {tuple(res.params(i)["Dense_0"]["kernel"].shape) for i in range(4)}
  assert shapes == {(8, 8), (8, 16)}


def test_run_state_is_one_pytree():
  """init -> chunk works on the whole stacked RunState (checkpointable)."""
  plan = engine.make_plan(
      js.engine.Spec(model=helpers.mlp, optimizer=helpers.adam,
                     loss=js.losses.cross_entropy, data=helpers.DATA),
      {"train.steps": helpers.STEPS, "train.batch_size": helpers.BATCH,
       "train.eval_every": 3, "model.features": (16,), "seed": 0},
      [{"optimizer.learning_rate": lr} for lr in LRS[:2]])
  built = engine.build_group(plan, plan.groups[0])
  hp = engine.stack_hparams(plan, plan.groups[0])
  state = jax.jit(built.init)(hp, engine.device_data(built.dataset))
  assert isinstance(state, train_lib.RunState)
  assert state.step.shape == (2,) and state.diverged.dtype == jnp.bool_
  np.testing.assert_array_equal(state.opt_state.hyperparams["learning_rate"],
                                np.float32(LRS[:2]))
