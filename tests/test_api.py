"""The Python API for research ablations: user models, optimizers, losses,
data and metrics; examples; and the errors that help."""

import importlib.util
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsweep as js
from jaxsweep.engine import record
from tests import helpers

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
NAMES = sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py"))


def _example(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture(scope="module")
def example_runs():
  """Every example run as a user runs it (`python examples/NAME.py --smoke`).

  The scripts start in parallel (each is its own JAX process) and the tests
  below read their output.
  """
  env = {**os.environ, "JAX_PLATFORMS": "cpu", **helpers.SUBPROCESS_ENV}
  env.pop("XLA_FLAGS", None)
  procs = {n: subprocess.Popen([sys.executable, os.path.join(EXAMPLES, f"{n}.py"), "--smoke"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=os.path.dirname(EXAMPLES))
           for n in NAMES}
  return {n: (p.wait(timeout=600), *p.communicate()) for n, p in procs.items()}


@pytest.mark.parametrize("name", NAMES)
def test_example_script_runs_as_a_user_runs_it(name, example_runs):
  code, out, err = example_runs[name]
  assert code == 0, err[-3000:]
  if name == "low_level":
    assert out.count("test accuracy") == 3
  else:
    assert "test_accuracy" in out and "ok" in out, out


def test_hand_written_vmap_equals_run():
  """jit(vmap(make_train(...))) by hand gives js.run's numbers.

  The two compile different programs (the engine's is sharded over the
  devices, its period's steps skip under lax.cond), whose float rounding may
  differ in the last bits: rtol 1e-5.
  """
  _, stats = _example("low_level").main(smoke=True)
  res = js.run(model=js.models.MLP(features=(64,), num_outputs=10), optimizer=optax.adam,
               loss=js.losses.cross_entropy, metrics={"accuracy": js.losses.accuracy},
               data=js.data.load("digits"),
               sweep=[{"learning_rate": lr, "seed": i} for i, lr in enumerate([1e-3, 3e-3, 1e-2])],
               steps=4, batch_size=32, eval_every=2)
  np.testing.assert_allclose([r["test_objective"] for r in res.rows], stats["test_objective"],
                             rtol=1e-5)
  np.testing.assert_allclose([r["test_accuracy"] for r in res.rows], stats["test_accuracy"],
                             atol=1e-6)


def test_results_api():
  res = helpers.run({"learning_rate": [1e-2, 3e-2]})
  assert res.best == res.table[0]
  assert res.best["val_accuracy"] > 0.5  # It trained: 4 balanced classes, chance 0.25.
  params = res.params(res.best["variant"])
  out = helpers.mlp().apply({"params": params}, jnp.asarray(helpers.DATA.test["x"]))
  assert out.shape == (40, 4)
  acc = float(np.mean(np.argmax(out, -1) == helpers.DATA.test["y"]))
  assert acc == pytest.approx(res.best["test_accuracy"], abs=1e-6)
  assert res.to_csv().count("\n") == 3
  assert len(res.to_pandas()) == 2
  by_nll = res.ranked("val_nll").table
  assert by_nll[0]["val_nll"] == min(r["val_nll"] for r in res.rows)


def test_swept_loss_argument_is_traced():
  """Label smoothing passed to the loss is a value: two values, one program."""
  def run(values):
    return js.run(model=helpers.mlp, optimizer=helpers.adam, loss=js.losses.cross_entropy,
                  data=helpers.DATA, sweep={"label_smoothing": values, "learning_rate": [1e-2]},
                  fixed={"features": (16,)}, steps=helpers.STEPS, batch_size=helpers.BATCH,
                  eval_every=3)
  a = run([0.0, 0.2])
  with helpers.count_compiles() as compiles:
    b = run([0.1, 0.3])
  assert compiles == []
  assert a.rows[0]["test_objective"] != a.rows[1]["test_objective"]
  assert b.rows[0]["test_objective"] not in (a.rows[0]["test_objective"],
                                             a.rows[1]["test_objective"])
  assert b.rows[0]["label_smoothing"] == 0.1


def test_init_apply_pair_and_nnx():
  def init(key, x):
    return {"w": jax.random.normal(key, (x.shape[-1], 4)) * 0.1, "b": jnp.zeros(4)}

  def apply(params, x):
    return x @ params["w"] + params["b"]

  res = js.run(model=(init, apply), optimizer=helpers.sgd, data=helpers.DATA,
               sweep={"learning_rate": [0.1, 0.3]}, steps=4, batch_size=16)
  assert res.params(0)["w"].shape == (8, 4)
  assert all(r["status"] == "ok" for r in res.rows)
  assert res.best["val_accuracy"] > 0.5

  from flax import nnx
  res = js.run(model=js.models.from_nnx(lambda rngs: nnx.Linear(8, 4, rngs=rngs)),
               optimizer=helpers.sgd, data=helpers.DATA,
               sweep={"learning_rate": [0.1, 0.3], "seed": [0, 1]}, steps=4, batch_size=16)
  assert len(res.rows) == 4 and all(r["status"] == "ok" for r in res.rows)
  # Seeds 0 and 1 initialise differently (per-variant keys reach nnx.Rngs).
  k0, k1 = (max(jax.tree.leaves(res.params(i)), key=np.size) for i in (0, 1))
  assert k0.shape == (8, 4) and not np.array_equal(k0, k1)


def test_error_unknown_swept_name_lists_accepted():
  with pytest.raises(js.ConfigError) as e:
    helpers.run({"learnin_rate": [1e-2]})
  msg = str(e.value)
  assert "learnin_rate" in msg and "learning_rate" in msg and "optimizer:" in msg


def test_a_zero_option_is_refused_not_replaced_by_the_default():
  """unstable_factor=0 was silently the default (``x or default``): now it is refused."""
  assert record.unstable_factor(None) == record.UNSTABLE_FACTOR
  with pytest.raises(js.ConfigError, match="unstable_factor"):
    helpers.run({"learning_rate": [1e-2]}, unstable_factor=0)


def test_error_ambiguous_name():
  def opt(learning_rate, weight):
    return optax.sgd(learning_rate)

  def loss(out, batch, weight=0.0):
    return js.losses.cross_entropy(out, batch) * (1 + weight)

  with pytest.raises(js.ConfigError, match="optimizer.weight or loss.weight"):
    js.run(model=helpers.mlp, optimizer=opt, loss=loss, data=helpers.DATA,
           sweep={"weight": [1.0], "learning_rate": [0.1]}, steps=2, batch_size=4)


def test_error_output_shape_does_not_fit_loss():
  with pytest.raises(js.errors.ModelError) as e:
    js.run(model=lambda: js.models.MLP(features=(8,), num_outputs=3), optimizer=helpers.sgd,
           loss=js.losses.mse, data=js.data.load("regression", num_train=32, num_test=16),
           sweep={"learning_rate": [0.1]}, steps=2, batch_size=8)
  msg = str(e.value)
  assert "(8, 3)" in msg and "(8, 1)" in msg


def test_error_non_pure_loss_names_the_problem():
  def bad_loss(out, batch):
    loss = js.losses.cross_entropy(out, batch)
    if loss > 1.0:  # Python control flow on a traced value.
      return loss * 2
    return loss

  with pytest.raises(js.errors.ModelError) as e:
    js.run(model=helpers.mlp, optimizer=helpers.sgd, loss=bad_loss, data=helpers.DATA,
           sweep={"learning_rate": [0.1]}, fixed={"features": (16,)}, steps=2, batch_size=4)
  msg = str(e.value)
  assert "not traceable" in msg and "TracerBoolConversionError" in msg
  assert "in bad_loss (" in msg and "test_api.py" in msg
  assert "jnp.where" in msg


def test_error_model_factory_argument_missing():
  with pytest.raises(js.ConfigError, match="features"):
    js.run(model=helpers.mlp, optimizer=helpers.sgd, data=helpers.DATA,
           sweep={"learning_rate": [0.1], "features": [(8,)], "depth": [2]},
           steps=2, batch_size=4)


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(x)


def test_module_instance_rejects_structural_sweep():
  with pytest.raises(js.ConfigError, match="not a factory"):
    js.run(model=_Tiny(), optimizer=helpers.sgd, data=helpers.DATA,
           sweep={"learning_rate": [0.1], "model.width": [3]}, steps=2, batch_size=4)
