"""Compile cost (issue #24): the evaluation graph, the step limit of a period
(the first number early) and the planner's compile estimate."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsweep as js
from bench import compile_cost
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import structure
from jaxsweep.engine import train as train_lib


def _program(*, eval_every=4, steps=8, eval_batch_size=1024, first_eval=0):
  ds = js.data.load("synthetic", num_train=96, num_test=40)
  data = program_lib.device_data(ds)
  prog = train_lib.make_train(
      js.models.to_model_fns(js.models.mlp(features=(8,), num_outputs=4)),
      js.optim.wrap(optax.adam, {}, {"learning_rate": 0.01}), js.losses.cross_entropy,
      {"accuracy": js.losses.accuracy},
      train_lib.TrainSettings(steps=steps, batch_size=8, eval_every=eval_every,
                              eval_batch_size=eval_batch_size, first_eval=first_eval))
  hp = {"seed": jnp.arange(3, dtype=jnp.uint32),
        "optimizer": {"learning_rate": jnp.array([0.003, 0.01, 0.03], jnp.float32)}}
  return prog, hp, data


def _host(tree):
  return [np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
                     else x) for x in jax.tree.leaves(tree)]


def _equal(a, b):
  la, lb = _host(a), _host(b)
  return len(la) == len(lb) and all(
      np.array_equal(x, y, equal_nan=np.issubdtype(x.dtype, np.inexact))
      for x, y in zip(la, lb, strict=True))


@pytest.mark.parametrize("lanes", [1, 3])
def test_a_period_split_in_two_trains_the_same_bits(lanes):
  """period(k) then period(eval_every - k) equals one period, bit for bit:
  a skipped step past the limit neither trains nor counts, and the next
  call draws the same randomness for it (a first evaluation after k steps
  changes no result)."""
  prog, hp, data = _program()
  init = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))
  if lanes == 1:
    period = jax.jit(lambda s, h, d, f: jax.lax.map(lambda q: prog.period(*q, d, f), (s, h)))
  else:
    period = jax.jit(jax.vmap(prog.period, in_axes=(0, 0, None, None)))
  flag = lambda n: program_lib.train_flag(n)
  whole, whole_stats = period(init(hp, data), hp, data, flag(True))
  part, first_stats = period(init(hp, data), hp, data, flag(1))
  assert np.all(np.asarray(part.step) == 1)
  assert np.all(np.isfinite(first_stats["test_accuracy"]))
  part, rest_stats = period(part, hp, data, flag(3))
  assert _equal(part, whole)
  for k in whole_stats:
    if k != "batch_objective":
      assert np.array_equal(rest_stats[k], whole_stats[k]), k
  # The period's mean batch loss, from its two parts' means.
  mean = (np.asarray(first_stats["batch_objective"])
          + 3 * np.asarray(rest_stats["batch_objective"])) / 4
  np.testing.assert_allclose(mean, whole_stats["batch_objective"], rtol=1e-6)


def test_a_bool_flag_and_the_int_flag_agree():
  prog, hp, data = _program()
  state = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))(hp, data)
  period = jax.jit(jax.vmap(prog.period, in_axes=(0, 0, None, None)))
  for b, n in ((True, program_lib.ALL_STEPS), (False, 0)):
    a = period(state, hp, data, jnp.asarray(b))
    c = period(state, hp, data, program_lib.train_flag(n))
    assert _equal(a, c)


def test_boundaries_with_a_first_evaluation():
  ts = train_lib.TrainSettings(steps=300, batch_size=8, eval_every=100, first_eval=10)
  assert ts.boundaries() == (10, 100, 200, 300)
  assert ts._replace(first_eval=0).boundaries() == (100, 200, 300)
  assert ts._replace(first_eval=100).boundaries() == (100, 200, 300)
  assert ts._replace(steps=250).boundaries() == (10, 100, 200, 250)


@pytest.mark.parametrize("eval_batch_size", [7, 1024])
def test_one_evaluation_graph_gives_each_splits_mean(eval_batch_size):
  """The splits share one padded lax.map, whatever the batch size; each
  split's mean is over its own examples (a numpy reference)."""
  prog, hp, data = _program(eval_batch_size=eval_batch_size)
  state = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))(hp, data)
  got = jax.jit(jax.vmap(prog.evaluate, in_axes=(0, 0, None)))(state, hp, data)
  model = js.models.to_model_fns(js.models.mlp(features=(8,), num_outputs=4))
  for key, prefix in train_lib.EVAL_SPLITS:
    if key not in data:
      continue
    for v in range(3):
      params = jax.tree.map(lambda a, v=v: a[v], state.params)
      logits, _ = model.apply({"params": params}, data[key]["x"], train=False, rng=None)
      logits, y = np.asarray(logits, np.float64), np.asarray(data[key]["y"])
      logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                                                               keepdims=True)) \
          - logits.max(-1, keepdims=True)
      nll = -logp[np.arange(len(y)), y].mean()
      np.testing.assert_allclose(got[f"{prefix}_objective"][v], nll, rtol=2e-5)
      np.testing.assert_allclose(got[f"{prefix}_accuracy"][v],
                                 (logits.argmax(-1) == y).mean(), rtol=1e-6)


# --------------------------------------------------------------------------
# The planner's compile estimate, from the program's HLO.

CALIBRATION = "bench/compile_calibration.json"


@pytest.mark.parametrize("depth,vectorized", [(1, False), (2, True), (4, True)])
def test_the_compile_estimate_is_within_1_3x_of_the_measured_compile(depth, vectorized):
  """The planner prices a program by its HLO instructions (lowered here, not
  compiled); the price is within 1.3x of the compile CPU seconds that
  bench/compile_cost.py --calibrate measured for the same program (stored:
  no timing in the test)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, CALIBRATION), encoding="utf-8") as f:
    measured = {(r["depth"], r["vectorized"]): r for r in json.load(f)["programs"]}
  row = measured[depth, vectorized]
  plan = compile_cost.calibration_plan(depth, vectorized)
  assert len(plan.groups) == (1 if vectorized else 3)
  ops = structure.program_ops(plan, plan.groups[0])
  assert abs(ops - row["hlo_ops"]) <= 0.05 * row["hlo_ops"]  # Else recalibrate.
  estimate = structure.profile("cpu").compile_seconds(ops)
  assert row["compile_cpu_s"] / 1.3 <= estimate <= row["compile_cpu_s"] * 1.3


def test_a_vectorized_deep_switch_is_priced_above_one_grouped_program():
  """The switched program's branches grow its HLO, and its estimate with it
  (the fixed 6 % per option missed a deep switch's growth)."""
  grouped = compile_cost.calibration_plan(4, False)
  merged = compile_cost.calibration_plan(4, True)
  a = structure.program_ops(grouped, grouped.groups[0])
  b = structure.program_ops(merged, merged.groups[0])
  assert b > 1.1 * a
  prof = structure.profile("cpu")
  assert prof.compile_seconds(b) > prof.compile_seconds(a)
