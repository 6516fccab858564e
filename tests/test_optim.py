"""Tests for jaxsweep.optim: every optimizer and schedule is Optax's, and vectorizes.

The golden test of the design: ``vmap`` over variants with
different hyperparameter values equals the same variants run one at a time,
within a tolerance, over a few steps. Every optimizer is built the way the
engine builds it (``optim.wrap`` once, values written into
``opt_state.hyperparams``), so a factory whose structure depended on a
numeric value would fail here.
"""

from __future__ import annotations

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsweep import errors, optim

STEPS = 6
RTOL = 1e-5

# A tiny least-squares problem: two parameter leaves (a matrix and a bias)
# so that global-norm clipping and per-layer trust ratios see a tree.
_RNG = np.random.default_rng(0)
X = jnp.asarray(_RNG.normal(size=(8, 3)), jnp.float32)
Y = jnp.asarray(_RNG.normal(size=(8, 2)), jnp.float32)
PARAMS = {"w": jnp.asarray([[0.5, -1.0], [2.0, 0.3], [-0.7, 1.2]], jnp.float32),
          "b": jnp.asarray([0.1, -0.2], jnp.float32)}


def _loss(params):
  return jnp.mean((X @ params["w"] + params["b"] - Y) ** 2)


def _trajectory(tx, hparams, *, init=None):
  """Runs STEPS steps of one variant; returns final params and the losses.

  The state is made as train.py makes it (values written into the state of
  ``tx.init``) unless ``init`` says otherwise.
  """
  init = init or (lambda opt, params, hp: optim.set_hparams(
      optim.transformation(opt).init(params), hp))
  state = init(tx, PARAMS, hparams)
  tx = optim.transformation(tx)

  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(_loss)(params)
    # As train.py calls it: the loss as value= (reduce_on_plateau reads it).
    updates, opt_state = optax.with_extra_args_support(tx).update(grads, opt_state, params,
                                                                  value=loss)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (PARAMS, state), None, length=STEPS)
  return params, losses


def _vmapped_and_sequential(tx, stacked):
  """Both paths in ONE compiled program: vmap, and lax.map (one at a time)."""
  run = lambda hp: _trajectory(tx, hp)
  return jax.jit(lambda hp: (jax.vmap(run)(hp), jax.lax.map(run, hp)))(stacked)


# Three variants per optimizer, differing in every numeric argument that
# matters (learning rate, moments, clipping, decay).
VARIANTS = {
    "sgd": {"learning_rate": [0.01, 0.05, 0.1], "momentum": [0.0, 0.5, 0.9],
            "grad_clip": [0.0, 0.5, 2.0], "weight_decay": [0.0, 1e-3, 1e-2]},
    "momentum": {"learning_rate": [0.01, 0.02, 0.05], "momentum": [0.8, 0.9, 0.95]},
    "nesterov": {"learning_rate": [0.01, 0.02, 0.05], "momentum": [0.8, 0.9, 0.95]},
    "adam": {"learning_rate": [1e-3, 1e-2, 5e-2], "b1": [0.8, 0.9, 0.95],
             "b2": [0.99, 0.999, 0.9], "grad_clip": [0.0, 1.0, 0.1]},
    "adamw": {"learning_rate": [1e-3, 1e-2, 5e-2], "weight_decay": [0.0, 1e-2, 0.1]},
    "rmsprop": {"learning_rate": [1e-3, 1e-2, 3e-2], "decay": [0.9, 0.95, 0.99],
                "momentum": [0.0, 0.5, 0.9]},
    "adagrad": {"learning_rate": [0.01, 0.1, 0.3],
                "initial_accumulator_value": [0.1, 0.01, 1.0]},
    "lamb": {"learning_rate": [1e-3, 1e-2, 5e-2], "weight_decay": [0.0, 1e-2, 0.1]},
    "lion": {"learning_rate": [1e-4, 1e-3, 1e-2], "b1": [0.9, 0.95, 0.8],
             "weight_decay": [0.0, 1e-3, 1e-2]},
}

SCHEDULE_VARIANTS = {
    "constant": {},
    "cosine": {"total_steps": [4.0, 6.0, 10.0]},
    "warmup_cosine": {"warmup_steps": [0.0, 2.0, 3.0], "total_steps": [4.0, 6.0, 10.0]},
    "exponential": {"decay_rate": [0.5, 0.1, 0.9], "decay_steps": [2.0, 3.0, 5.0]},
    "step": {"decay_rate": [0.5, 0.1, 0.9], "total_steps": [4.0, 6.0, 8.0]},
    "reduce_on_plateau": {"decay_rate": [0.5, 0.1, 0.9], "patience": [1.0, 2.0, 3.0]},
}


def _check_vectorizes(name, schedule, values):
  tx = optim.wrap(optim.get(name), {"schedule": schedule},
                  {k: v[0] for k, v in values.items()})
  stacked = {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
  (p_vec, l_vec), (p_seq, l_seq) = _vmapped_and_sequential(tx, stacked)
  np.testing.assert_allclose(l_vec, l_seq, rtol=RTOL, atol=1e-7)
  for k in PARAMS:
    np.testing.assert_allclose(p_vec[k], p_seq[k], rtol=RTOL, atol=1e-7)
  assert np.all(np.isfinite(np.asarray(l_vec)))
  # The values are honoured: different hyperparameters, different runs.
  assert not np.allclose(p_vec["w"][0], p_vec["w"][2])
  return l_vec


def test_registry_has_every_optimizer():
  assert set(VARIANTS) <= set(optim.names())
  for name in VARIANTS:
    args = optim.REGISTRY.accepted_args(name)
    assert {"learning_rate", "grad_clip", "schedule", "warmup_steps",
            "total_steps"} <= set(args)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_optimizer_vectorizes(name):
  losses = _check_vectorizes(name, "constant", VARIANTS[name])
  # A few steps at these settings make progress on a convex problem.
  assert float(losses[1, -1]) < float(losses[1, 0])


@pytest.mark.parametrize("name", ["sgd", "adamw", "rmsprop", "lion"])
def test_optimizers_vectorize_with_warmup_cosine(name):
  values = {**VARIANTS[name], **SCHEDULE_VARIANTS["warmup_cosine"]}
  _check_vectorizes(name, "warmup_cosine", values)


@pytest.mark.parametrize("schedule", optim.SCHEDULES)
def test_every_schedule_vectorizes(schedule):
  values = {"learning_rate": [0.01, 0.05, 0.1], **SCHEDULE_VARIANTS[schedule]}
  _check_vectorizes("adam", schedule, values)


# --------------------------------------------------------------------------
# Every registered optimizer and schedule is the plain Optax call with the
# same arguments, step by step: built with Python values, and built as the
# engine builds it (numbers traced, written per variant by init_state).

OPTAX_CASES = {  # id: (registered name, its arguments, the plain Optax transformation).
    "sgd": ("sgd", {"learning_rate": 0.05}, optax.sgd(0.05)),
    "sgd-momentum": ("sgd", {"learning_rate": 0.05, "momentum": 0.5, "nesterov": True},
                     optax.sgd(0.05, momentum=0.5, nesterov=True)),
    "momentum": ("momentum", {"learning_rate": 0.05}, optax.sgd(0.05, momentum=0.9)),
    "momentum-args": ("momentum", {"learning_rate": 0.05, "momentum": 0.7, "nesterov": True},
                      optax.sgd(0.05, momentum=0.7, nesterov=True)),
    "nesterov": ("nesterov", {"learning_rate": 0.05, "momentum": 0.7},
                 optax.sgd(0.05, momentum=0.7, nesterov=True)),
    "adam": ("adam", {"learning_rate": 0.05}, optax.adam(0.05)),
    "adam-args": ("adam", {"learning_rate": 0.05, "b1": 0.7, "b2": 0.9, "eps": 1e-3},
                  optax.adam(0.05, b1=0.7, b2=0.9, eps=1e-3)),
    "adamw": ("adamw", {"learning_rate": 0.05}, optax.adamw(0.05)),
    "adamw-args": ("adamw", {"learning_rate": 0.05, "b1": 0.7, "b2": 0.9, "eps": 1e-3,
                             "weight_decay": 0.2},
                   optax.adamw(0.05, b1=0.7, b2=0.9, eps=1e-3, weight_decay=0.2)),
    "rmsprop": ("rmsprop", {"learning_rate": 0.01}, optax.rmsprop(0.01)),
    "rmsprop-args": ("rmsprop", {"learning_rate": 0.01, "decay": 0.7, "eps": 1e-3,
                                 "momentum": 0.5, "centered": True, "nesterov": True,
                                 "eps_in_sqrt": False},
                     optax.rmsprop(0.01, decay=0.7, eps=1e-3, momentum=0.5, centered=True,
                                   nesterov=True, eps_in_sqrt=False)),
    "adagrad": ("adagrad", {"learning_rate": 0.1}, optax.adagrad(0.1)),
    "adagrad-args": ("adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5,
                                 "eps": 1e-3},
                     optax.adagrad(0.1, initial_accumulator_value=0.5, eps=1e-3)),
    "lamb": ("lamb", {"learning_rate": 0.05}, optax.lamb(0.05)),
    "lamb-args": ("lamb", {"learning_rate": 0.05, "b1": 0.7, "b2": 0.9, "eps": 1e-3,
                           "weight_decay": 0.2},
                  optax.lamb(0.05, b1=0.7, b2=0.9, eps=1e-3, weight_decay=0.2)),
    "lion": ("lion", {"learning_rate": 0.01}, optax.lion(0.01)),
    "lion-args": ("lion", {"learning_rate": 0.01, "b1": 0.7, "b2": 0.9, "weight_decay": 0.2},
                  optax.lion(0.01, b1=0.7, b2=0.9, weight_decay=0.2)),
    # The shared arguments: clip the global norm, then L2, then the optimizer.
    "adam-clip-l2": ("adam", {"learning_rate": 0.05, "grad_clip": 0.3, "weight_decay": 0.1},
                     optax.chain(optax.clip_by_global_norm(0.3), optax.add_decayed_weights(0.1),
                                 optax.adam(0.05))),
    "sgd-clip-l2": ("sgd", {"learning_rate": 0.05, "grad_clip": 0.3, "weight_decay": 0.1},
                    optax.chain(optax.clip_by_global_norm(0.3), optax.add_decayed_weights(0.1),
                                optax.sgd(0.05))),
    "lion-clip": ("lion", {"learning_rate": 0.01, "grad_clip": 0.3},
                  optax.chain(optax.clip_by_global_norm(0.3), optax.lion(0.01))),
}

_S = optax.schedules
SCHEDULE_CASES = {  # schedule: (its arguments, the plain Optax learning rate).
    "constant": ({}, _S.constant_schedule(0.1)),
    "cosine": ({"total_steps": 4.0}, _S.cosine_decay_schedule(0.1, 4)),
    "warmup_cosine": ({"warmup_steps": 2.0, "total_steps": 5.0},
                      _S.warmup_cosine_decay_schedule(0.0, 0.1, 2, 5)),
    "exponential": ({"decay_rate": 0.5, "decay_steps": 2.0}, _S.exponential_decay(0.1, 2, 0.5)),
    "step": ({"decay_rate": 0.5, "total_steps": 4.0},
             _S.piecewise_constant_schedule(0.1, {2: 0.5, 3: 0.5})),
}


def _updates(tx):
  """Each step's updates (the whole trajectory), ``update`` called as train.py does."""
  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(_loss)(params)
    updates, opt_state = optax.with_extra_args_support(tx).update(grads, opt_state, params,
                                                                  value=loss)
    return (optax.apply_updates(params, updates), opt_state), updates
  return jax.lax.scan(step, (PARAMS, tx.init(PARAMS)), None, length=STEPS)[1]


def _traced(name, kwargs):
  """The registered optimizer as the engine builds it: numbers traced."""
  values = {k: v for k, v in kwargs.items() if optim.is_numeric(v)}
  static = {k: v for k, v in kwargs.items() if k not in values}
  opt = optim.wrap(optim.get(name), static, {k: 0.0 for k in values})
  return optax.GradientTransformationExtraArgs(
      lambda params: optim.init_state(opt, params, values), opt.tx.update)


def _assert_same_steps(name, kwargs, reference):
  ours, traced, want = jax.jit(lambda: (_updates(optim.get(name)(**kwargs)),
                                        _updates(_traced(name, kwargs)),
                                        _updates(reference)))()
  for got, atol in ((ours, 1e-8), (traced, 1e-6)):
    # Traced float32 hyperparameters round differently from Python constants
    # (~3e-7 on updates of ~0.05 for adam); a wrong argument is off by far more.
    for k in PARAMS:
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=atol, err_msg=k)


@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_registered_optimizer_is_the_optax_call(case):
  _assert_same_steps(*OPTAX_CASES[case])


def test_every_registered_optimizer_is_compared_with_optax():
  assert {name for name, _, _ in OPTAX_CASES.values()} == set(optim.names())
  # Each optimizer's own arguments are set away from their defaults in some case.
  shared = set(optim.REGISTRY.accepted_args("sgd")) - {"momentum", "nesterov"}
  for name in optim.names():
    own = set(optim.REGISTRY.accepted_args(name)) - shared
    covered = set().union(*(kw for n, kw, _ in OPTAX_CASES.values() if n == name))
    assert own <= covered, (name, own - covered)


def test_a_swapped_argument_fails_the_comparison():
  """A positive control: the comparison sees adam's b1 and b2 swapped."""
  name, kwargs, _ = OPTAX_CASES["adam-args"]
  with pytest.raises(AssertionError):
    _assert_same_steps(name, kwargs, optax.adam(0.05, b1=0.9, b2=0.7, eps=1e-3))


@pytest.mark.parametrize("schedule", sorted(SCHEDULE_CASES))
def test_registered_schedule_is_the_optax_schedule(schedule):
  kwargs, lr = SCHEDULE_CASES[schedule]
  _assert_same_steps("sgd", {"learning_rate": 0.1, "schedule": schedule, **kwargs},
                     optax.sgd(lr))
  kwargs = dict(kwargs)
  ours = optim.schedule(schedule, 0.1, total_steps=kwargs.pop("total_steps", 1000.0), **kwargs)
  for t in range(12):
    assert float(ours(t)) == pytest.approx(float(lr(t)), rel=1e-6, abs=1e-9), t


def test_reduce_on_plateau_schedule_is_optax_reduce_on_plateau():
  kwargs = {"learning_rate": 0.1, "schedule": "reduce_on_plateau", "decay_rate": 0.5,
            "patience": 1.0}
  _assert_same_steps("sgd", kwargs, optax.chain(
      optax.sgd(0.1), optax.contrib.reduce_on_plateau(factor=0.5, patience=1)))


def test_every_schedule_is_compared_with_optax():
  assert {*SCHEDULE_CASES, "reduce_on_plateau"} == set(optim.SCHEDULES)


def test_init_state_honours_values_used_at_init():
  """A user factory whose init reads a value (optax.adagrad's accumulator)."""
  factory = lambda learning_rate, initial_accumulator_value: optax.adagrad(
      learning_rate, initial_accumulator_value=initial_accumulator_value)
  tx = optim.wrap(factory, {}, {"learning_rate": 0.1, "initial_accumulator_value": 0.1})
  values = {"learning_rate": jnp.array([0.1, 0.1]),
            "initial_accumulator_value": jnp.array([0.1, 5.0])}
  (_, l_vec), _ = jax.jit(lambda hp: (
      jax.vmap(lambda h: _trajectory(tx, h, init=optim.init_state))(hp), 0))(values)
  for i in range(2):
    plain = optax.adagrad(0.1, initial_accumulator_value=float(values[
        "initial_accumulator_value"][i]))
    _, l_plain = jax.jit(lambda tx=plain: _plain_trajectory(tx))()
    np.testing.assert_allclose(l_vec[i], l_plain, rtol=RTOL)
  state = jax.eval_shape(lambda: optim.init_state(tx, PARAMS, {"learning_rate": 0.2}))
  assert jax.tree.structure(state) == jax.tree.structure(
      jax.eval_shape(lambda: tx.tx.init(PARAMS)))


def _plain_trajectory(tx):
  state = tx.init(PARAMS)

  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(_loss)(params)
    # As train.py calls it: the loss as value= (reduce_on_plateau reads it).
    updates, opt_state = optax.with_extra_args_support(tx).update(grads, opt_state, params,
                                                                  value=loss)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (PARAMS, state), None, length=STEPS)
  return params, losses


def test_hyperparams_hold_every_numeric_argument_as_float32():
  tx = optim.wrap(optim.get("lion"), {"schedule": "cosine"}, {"learning_rate": 1e-3})
  hp = tx.tx.init(PARAMS).hyperparams
  assert {"learning_rate", "b1", "b2", "weight_decay", "grad_clip", "warmup_steps",
          "decay_rate", "total_steps"} <= set(hp)
  assert all(v.dtype == jnp.float32 and v.shape == () for v in hp.values())
  assert "schedule" not in hp and "decay_steps" not in hp  # Static (str / None).


def test_new_values_never_retrace():
  tx = optim.wrap(optim.get("rmsprop"), {"schedule": "step"},
                  {"learning_rate": 1e-2, "momentum": 0.0})
  traces = []

  @jax.jit
  def run(hp):
    traces.append(1)
    return jax.vmap(lambda h: _trajectory(tx, h))(hp)

  for lr, mom in ((1e-2, 0.0), (3e-2, 0.9)):
    run({"learning_rate": jnp.full((3,), lr), "momentum": jnp.full((3,), mom)})
  assert len(traces) == 1


# --------------------------------------------------------------------------
# Schedules: values at known points (all parameters may be traced).

def _sched(name, **kw):
  return optim.schedule(name, 1.0, total_steps=kw.pop("total_steps", 100.0), **kw)


def test_constant_schedule():
  fn = _sched("constant")
  assert float(fn(0)) == 1.0 and float(fn(99)) == 1.0


def test_cosine_schedule_endpoints():
  fn = _sched("cosine")
  assert float(fn(0)) == pytest.approx(1.0)
  assert float(fn(50)) == pytest.approx(0.5, abs=1e-6)
  assert float(fn(100)) == pytest.approx(0.0, abs=1e-6)
  assert float(fn(500)) == pytest.approx(0.0, abs=1e-6)  # Clipped after the end.


def test_warmup_cosine_schedule():
  fn = _sched("warmup_cosine", warmup_steps=10.0)
  # Optax's: linear from 0 to the peak at step warmup_steps, then cosine decay.
  assert float(fn(0)) == pytest.approx(0.0)
  assert float(fn(5)) == pytest.approx(0.5)
  assert float(fn(10)) == pytest.approx(1.0)
  assert float(fn(55)) == pytest.approx(0.5, abs=1e-6)
  assert float(fn(100)) == pytest.approx(0.0, abs=1e-6)


def test_exponential_schedule():
  fn = _sched("exponential", decay_rate=0.5, decay_steps=10.0)
  assert float(fn(0)) == pytest.approx(1.0)
  assert float(fn(10)) == pytest.approx(0.5)
  assert float(fn(30)) == pytest.approx(0.125)


def test_step_schedule():
  fn = _sched("step", decay_rate=0.1)
  assert float(fn(49)) == pytest.approx(1.0)
  assert float(fn(50)) == pytest.approx(0.1)
  assert float(fn(75)) == pytest.approx(0.01)


def test_schedule_parameters_can_be_traced():
  @jax.jit
  @jax.vmap
  def lr_at_20(warmup, total):
    return optim.schedule("warmup_cosine", 2.0, total_steps=total,
                          warmup_steps=warmup)(20)
  out = lr_at_20(jnp.array([0.0, 40.0]), jnp.array([40.0, 100.0]))
  np.testing.assert_allclose(out, [2.0 * 0.5 * (1 + math.cos(math.pi * 0.5)),
                                   2.0 * 20 / 40], rtol=1e-6)


def test_unknown_schedule_is_a_config_error():
  with pytest.raises(errors.ConfigError, match="schedule"):
    optim.schedule("cosnie", 1.0, total_steps=10)


# --------------------------------------------------------------------------
# Gradient clipping and weight decay as traced values.

def test_traced_grad_clip_bounds_the_update_and_zero_means_off():
  tx = optim.wrap(optim.get("sgd"), {}, {"learning_rate": 1.0, "grad_clip": 0.0}).tx
  grads = jax.grad(_loss)(PARAMS)
  norm = float(optax.tree.norm(grads))

  @jax.jit
  @jax.vmap
  def update_norm(clip):
    state = optim.set_hparams(tx.init(PARAMS), {"grad_clip": clip})
    updates, _ = tx.update(grads, state, PARAMS)
    return optax.tree.norm(updates)

  out = np.asarray(update_norm(jnp.array([0.0, norm / 4, 10 * norm])))
  np.testing.assert_allclose(out, [norm, norm / 4, norm], rtol=1e-5)


def test_docstring_examples_run():
  result = doctest.testmod(optim)
  assert result.attempted > 0 and result.failed == 0
