"""The core engine against independent references: a plain Flax + Optax loop,
a variant trained alone, NaN isolation, no recompilation, grouping, the run
state and the scheduler hook at the period boundary."""

import flax.linen as nn
import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsweep as js
from jaxsweep import engine
from jaxsweep.engine import train as train_lib
from tests import helpers

LRS = [1e-3, 3e-3, 1e-2, 3e-2, 5e-2]


@pytest.fixture(scope="module")
def population():
  return helpers.run([{"learning_rate": lr, "seed": i % 2} for i, lr in enumerate(LRS)])


def _tree_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def test_rows_and_columns(population):
  rows = population.rows
  assert len(rows) == len(LRS)
  assert [r["variant"] for r in rows] == list(range(len(LRS)))
  assert [r["learning_rate"] for r in rows] == LRS
  for col in ("id", "status", "note", "diverged_step", "params", "seconds", "batch_objective",
              "val_objective", "val_accuracy", "val_nll", "test_objective", "test_accuracy",
              "test_nll", "train_objective", "train_accuracy", "best_val_accuracy",
              "best_step"):
    assert col in rows[0]
  assert all(r["status"] in ("ok", "unstable") and r["steps"] == helpers.STEPS for r in rows)
  assert rows[0]["params"] == 8 * 16 + 16 + 16 * 4 + 4
  # History: the evaluation at step 0, then one entry per eval period,
  # ending at the final metrics.
  h = population.history[2]
  assert [e["step"] for e in h] == [0, 3, 6]
  assert "batch_objective" not in h[0] and h[-1]["test_objective"] == rows[2]["test_objective"]
  # Ranked best first on the validation accuracy.
  assert population.target == "val_accuracy"
  accs = [r["val_accuracy"] for r in population.table]
  assert accs == sorted(accs, reverse=True)


# --------------------------------------------------------------------------
# An independent reference: the training loop a user would write by hand.

class _BNDropMLP(nn.Module):
  """Dense -> BatchNorm -> relu -> dropout -> Dense, with a traced dropout rate.

  The first Dense has no bias: batch norm removes it, so its gradient is
  rounding noise that Adam would amplify into different last bits.
  """

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout_rate=0.0):
    x = nn.Dense(16, use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x)
    if train:
      keep = 1.0 - jnp.asarray(dropout_rate, jnp.float32)
      mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape)
      x = jnp.where(mask, x / keep, 0.0)
    return nn.Dense(4)(x)


def _reference(module, tx, *, seed, steps, batch_size, call_kwargs=None):
  """Plain Flax + Optax: jaxsweep's documented keys and batch indices.

  A variant's key is ``jax.random.key(seed)``, split into an init key (itself
  split into the ``params`` and ``dropout`` keys of ``module.init``) and a run
  key; step ``t``'s batch indices and dropout key are Threefry-2x32 under the
  run key's words at counters ``(t, j)``: ``j < batch_size`` gives example
  ``word0 % num_train`` (with replacement), ``j = batch_size`` the dropout
  key's two words.
  """
  call_kwargs = dict(call_kwargs or {})
  data = helpers.DATA
  x, y = jnp.asarray(data.train["x"]), jnp.asarray(data.train["y"])
  k_init, k_run = jax.random.split(jax.random.key(np.uint32(seed)))
  k_params, k_dropout = jax.random.split(k_init)
  variables = module.init({"params": k_params, "dropout": k_dropout}, x[:1], train=False)
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  opt_state = tx.init(params)

  @jax.jit
  def step(params, state, opt_state, t):
    words = jax.random.key_data(k_run)
    cols = jnp.arange(batch_size + 1, dtype=jnp.uint32)
    y0, y1 = jax.extend.random.threefry2x32_p.bind(
        words[0], words[1], jnp.full(cols.shape, t, jnp.uint32), cols)
    idx = (y0[:batch_size] % x.shape[0]).astype(jnp.int32)
    k_drop = jax.random.wrap_key_data(jnp.stack([y0[-1], y1[-1]]))

    def loss_fn(p):
      out, updates = module.apply({"params": p, **state}, x[idx], train=True,
                                  rngs={"dropout": k_drop}, mutable=list(state),
                                  **call_kwargs)
      return optax.softmax_cross_entropy_with_integer_labels(out, y[idx]).mean(), updates

    (_, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    delta, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, delta), {**state, **updates}, opt_state

  for t in range(steps):
    params, state, opt_state = step(params, state, opt_state, t)
  logits = module.apply({"params": params, **state}, jnp.asarray(data.test["x"]), train=False,
                        **call_kwargs)
  y_test = jnp.asarray(data.test["y"])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_test).mean()
  acc = jnp.mean(jnp.argmax(logits, -1) == y_test)
  return params, state, float(loss), float(acc)


def _assert_close_to_reference(res, i, ref):
  params, state, loss, acc = ref
  # vmap turns each matmul into a batched one whose float rounding may differ
  # in the last bits: a few steps at moderate learning rates stay within 1e-5.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               res.params(i), params)
  variables = res.variables(i)
  for name, collection in state.items():
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 variables[name], collection)
  assert res.rows[i]["test_objective"] == pytest.approx(loss, abs=1e-5)
  assert res.rows[i]["test_nll"] == pytest.approx(loss, abs=1e-5)  # Cross-entropy: the same.
  assert res.rows[i]["test_accuracy"] == pytest.approx(acc, abs=1e-6)


def test_mlp_adam_equals_a_plain_flax_optax_loop(population):
  for i in (0, 3):
    seed = i % 2
    ref = _reference(helpers.mlp(), optax.adam(LRS[i]), seed=seed, steps=helpers.STEPS,
                     batch_size=helpers.BATCH)
    _assert_close_to_reference(population, i, ref)


def test_batch_norm_and_dropout_equal_a_plain_flax_optax_loop():
  sweep = [{"learning_rate": 3e-2, "dropout_rate": 0.2, "seed": 3},
           {"learning_rate": 1e-2, "dropout_rate": 0.5, "seed": 4}]
  res = js.run(model=_BNDropMLP(), optimizer=optax.adam, data=helpers.DATA, sweep=sweep,
               steps=helpers.STEPS, batch_size=helpers.BATCH, eval_every=3)
  assert "batch_stats" in res.variables(0)
  for i, s in enumerate(sweep):
    ref = _reference(_BNDropMLP(), optax.adam(s["learning_rate"]), seed=s["seed"],
                     steps=helpers.STEPS, batch_size=helpers.BATCH,
                     call_kwargs={"dropout_rate": s["dropout_rate"]})
    _assert_close_to_reference(res, i, ref)
  # The per-variant dropout rate and batch statistics really differ.
  assert not _tree_equal(res.variables(0)["batch_stats"], res.variables(1)["batch_stats"])


def test_training_beats_the_untrained_model(population):
  """The population learns: better than chance and than its own first period."""
  best = population.best
  assert best["val_accuracy"] > 0.5  # 4 balanced classes: chance is 0.25.
  first = population.history[best["variant"]][0]["val_objective"]  # Step 0.
  assert best["val_objective"] < first


# --------------------------------------------------------------------------
# Population invariance and isolation.

def test_population_invariance(population):
  """A variant alone is bit-identical to the same variant in a population."""
  alone = helpers.run([{"learning_rate": LRS[3], "seed": 1}])
  assert _tree_equal(alone.params(0), population.params(3))
  for k in ("batch_objective", "val_objective", "test_objective", "test_accuracy"):
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
    assert poisoned.rows[i]["test_objective"] == population.rows[i]["test_objective"]
  # Frozen at step 0: the parameters are the initial ones.
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(poisoned.params(1)))
  # Never ranked above a healthy variant, whatever its accuracy.
  assert [r["status"] for r in poisoned.table][-2:] == ["diverged", "diverged"]


def test_divergence_mid_run_freezes_the_last_finite_parameters():
  """SGD at a huge learning rate overflows after some steps, not at step 0.

  Its parameters are those after the last finite step (the same variant
  trained for exactly that many steps), and its neighbours are bit-identical
  to a population without it.
  """
  healthy = [{"learning_rate": 1e-2}, {"learning_rate": 3e-2}]
  res = helpers.run(healthy[:1] + [{"learning_rate": 1e30}] + healthy[1:],
                    optimizer=helpers.sgd)
  assert [r["status"] for r in res.rows][1] == "diverged"
  at = res.rows[1]["diverged_step"]
  assert 0 < at < helpers.STEPS
  assert res.rows[1]["steps"] == at
  last_finite = helpers.run([{"learning_rate": 1e30}], optimizer=helpers.sgd, steps=at,
                            eval_every=at)
  assert last_finite.rows[0]["status"] != "diverged"
  assert _tree_equal(res.params(1), last_finite.params(0))
  without = helpers.run(healthy, optimizer=helpers.sgd)
  for i, j in ((0, 0), (2, 1)):
    assert _tree_equal(res.params(i), without.params(j))
    assert res.rows[i]["test_objective"] == without.rows[j]["test_objective"]


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_last_period_shorter_than_eval_every_trains_exactly_the_steps(lanes):
  """steps=5 with eval_every=3: the second period has one step too many,
  which every variant skips (a real branch with one lane, a select under
  vmap). The result equals one period of exactly 5 steps."""
  sweep = [{"learning_rate": lr} for lr in LRS[:2]]
  periods = helpers.run(sweep, steps=5, eval_every=3, lanes=lanes)
  one = helpers.run(sweep, steps=5, eval_every=5, lanes=lanes)
  assert [e["step"] for e in periods.history[0]] == [0, 3, 5]
  for i in range(2):
    assert periods.rows[i]["steps"] == 5
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 periods.params(i), one.params(i))


def test_no_recompile_when_values_change(population):
  """New values are new arrays: no XLA compilation, and different results."""
  with helpers.count_compiles() as compiles:
    res = helpers.run([{"learning_rate": lr * 0.7, "seed": 5 + i} for i, lr in enumerate(LRS)])
    # Changing a value that was fixed (b1) is also just a new array value.
    b1 = helpers.run([{"learning_rate": lr, "b1": 0.8, "seed": i % 2}
                      for i, lr in enumerate(LRS)])
  assert compiles == []
  for i in range(len(LRS)):
    assert res.rows[i]["test_objective"] != population.rows[i]["test_objective"]
    assert b1.rows[i]["test_objective"] != population.rows[i]["test_objective"]


def test_structural_keys_form_groups():
  res = helpers.run({"features": [(8,), (16,)], "learning_rate": [1e-2, 3e-2]},
                    fixed={}, group=["features"])
  assert len(res.groups) == 2
  assert [g["variants"] for g in res.groups] == [2, 2]
  assert sorted({r["group"] for r in res.rows}) == [0, 1]
  assert [tuple(r["features"]) for r in res.rows] == [(8,), (8,), (16,), (16,)]
  shapes = {tuple(res.params(i)["hidden_0"]["kernel"].shape) for i in range(4)}
  assert shapes == {(8, 8), (8, 16)}


def _plan(lrs):
  return engine.make_plan(
      engine.Components(model=helpers.mlp, optimizer=helpers.adam,
                        loss=js.losses.cross_entropy, data=helpers.DATA),
      {"train.steps": helpers.STEPS, "train.batch_size": helpers.BATCH,
       "train.eval_every": 3, "model.features": (16,), "seed": 0},
      [{"optimizer.learning_rate": lr} for lr in lrs])


def test_static_and_traced_are_decided_once_per_group():
  plan = _plan(LRS[:2])
  [group] = plan.groups
  traced = {str(k) for k in group.traced}
  assert {"seed", "optimizer.learning_rate", "optimizer.b1"} <= traced
  assert group.static_args("model") == {"features": (16,)}
  assert group.traced_args("optimizer") == ("b1", "learning_rate")
  hp = engine.stack_hparams(plan, group)
  np.testing.assert_array_equal(hp["optimizer"]["learning_rate"], np.float32(LRS[:2]))
  np.testing.assert_array_equal(hp["optimizer"]["b1"], np.float32([0.9, 0.9]))


def test_run_state_is_one_pytree():
  """init -> period works on the whole stacked RunState (checkpointable)."""
  plan = _plan(LRS[:2])
  built = engine.program.build(plan, plan.groups[0])
  hp = engine.stack_hparams(plan, plan.groups[0])
  state = jax.jit(built.init)(hp, engine.device_data(built.dataset))
  assert isinstance(state, train_lib.RunState)
  assert state.step.shape == (2,) and state.diverged.dtype == jnp.bool_
  np.testing.assert_array_equal(state.opt_state.hyperparams["learning_rate"],
                                np.float32(LRS[:2]))


class _StopSecond(engine.scheduling.Base):
  """A scheduler that stops the second variant at the first boundary."""

  def __init__(self):
    self.seen = []

  def boundary(self, b):
    self.seen.append((b.step, b.variants, sorted(b.metrics)))
    return engine.Decision(stop=frozenset({1}) if b.step == 3 else frozenset())


def test_scheduler_stops_a_variant_at_a_period_boundary(population):
  del population  # Compiled by the fixture.
  plan = engine.make_plan(
      engine.Components(model=helpers.mlp, optimizer=helpers.adam,
                        loss=js.losses.cross_entropy, data=helpers.DATA),
      {"train.steps": helpers.STEPS, "train.batch_size": helpers.BATCH,
       "train.eval_every": 3, "train.eval_batch_size": 1024, "model.features": (16,),
       "seed": 0},
      [{"optimizer.learning_rate": lr, "seed": i % 2} for i, lr in enumerate(LRS)])
  scheduler = _StopSecond()
  res = engine.execute.execute(plan, scheduler=scheduler)
  assert [s for s, _, _ in scheduler.seen] == [3, 6]  # Period boundaries (not step 0).
  assert scheduler.seen[0][1] == tuple(range(len(LRS)))
  assert "val_accuracy" in scheduler.seen[0][2]
  assert res.rows[1]["status"] == "stopped" and res.rows[1]["stopped_step"] == 3
  assert res.rows[1]["steps"] == 3
  # Frozen after the boundary: its parameters are those after 3 steps.
  three = helpers.run([{"learning_rate": LRS[1], "seed": 1}], steps=3, eval_every=3)
  assert _tree_equal(res.params(1), three.params(0))
  # The others went on, bit-identical to the plain grid.
  grid = engine.execute.execute(plan)
  for i in (0, 2, 3, 4):
    assert res.rows[i]["status"] == grid.rows[i]["status"] != "stopped"
    assert _tree_equal(res.params(i), grid.params(i))


@pytest.mark.parametrize("lanes", [1, 2])
def test_the_step_zero_evaluation_runs_no_training_step(lanes):
  """period(train=False) only evaluates, one variant at a time or vmapped.

  Under vmap a condition on a per-variant value (halted) becomes a select of
  both branches and batches its operands; with the train flag inside it, the
  step-0 evaluation trained a whole period and threw it away (lanes > 1).
  An optimizer that counts its updates (a host callback) tells.
  """
  calls = []

  def counted(u, s, params=None):
    del params  # Unused.
    jax.debug.callback(lambda: calls.append(1))
    return u, s

  tx = optax.chain(optax.sgd(0.1), optax.GradientTransformation(lambda p: optax.EmptyState(),
                                                                counted))
  prog = js.make_train(js.models.to_model_fns(helpers.mlp()), tx, js.losses.cross_entropy,
                       {"accuracy": js.losses.accuracy},
                       engine.TrainSettings(steps=4, batch_size=8, eval_every=2))
  mesh = js.sharding.make_mesh(jax.devices()[:2])
  data = engine.device_data(helpers.DATA)
  hp = {"seed": jnp.arange(4, dtype=jnp.uint32)}
  init = jax.jit(js.sharding.population_map(prog.init, mesh, lanes=lanes, num_population=1))
  period = jax.jit(js.sharding.population_map(prog.period, mesh, lanes=lanes, num_population=2,
                                              skip=(prog.halted, prog.passthrough)))
  state = init(hp, data)
  state, stats = period(state, hp, data, jnp.asarray(False))
  jax.effects_barrier()
  assert calls == [] and np.all(np.asarray(state.step) == 0)
  assert np.all(np.isnan(stats["batch_objective"])) and np.all(np.isfinite(stats["val_accuracy"]))
  state, stats = period(state, hp, data, jnp.asarray(True))
  jax.effects_barrier()
  assert calls and np.all(np.asarray(state.step) == 2)
  assert np.all(np.isfinite(stats["batch_objective"]))
