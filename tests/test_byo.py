"""Bring your own code (issue #16): Optax factories as users write them, and
Flax NNX models with batch statistics and dropout, per variant."""

import contextlib
import io
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxsweep as js
from jaxsweep import cli
from jaxsweep import errors
from tests import helpers

LRS = {"learning_rate": [1e-2, 3e-2]}


# --------------------------------------------------------------------------
# Optax factories.

def warm(learning_rate):
  return optax.adam(optax.warmup_cosine_decay_schedule(0.0, learning_rate, 2, 6))


def test_optax_schedule_that_branches_on_a_swept_value_compiles_one_program_per_value():
  # Optax tests `peak_value == 0.0` in Python: a traced peak cannot pass, so
  # jaxsweep makes learning_rate static for this factory and says so in one
  # line with the cheaper form (issue #26: it was a ConfigError after ~40
  # lines of JAX traceback).
  with pytest.warns(UserWarning) as record:
    res = helpers.run(LRS, optimizer=warm)
  [w] = [w for w in record if "jaxsweep" in str(w.message)]
  msg = str(w.message)
  assert "\n" not in msg and "optimizer factory warm uses learning_rate" in msg
  assert "one program per value" in msg and "learning_rate * sched(count)" in msg
  assert len(res.groups) == 2 and all(r["status"] == "ok" for r in res.rows)
  # The same as marking it static by hand ...
  ref = helpers.run(LRS, optimizer=warm, static=["learning_rate"])
  for a, b in zip(res.rows, ref.rows):
    assert a["test_objective"] == b["test_objective"]
  # ... and as the cheaper form: the schedule built from constants, scaled by
  # the traced value (one program).
  shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, 2, 6)

  def scaled(learning_rate):
    return optax.adam(lambda count: learning_rate * shape(count))

  traced = helpers.run(LRS, optimizer=scaled)
  assert len(traced.groups) == 1
  for a, b in zip(res.rows, traced.rows):
    np.testing.assert_allclose(a["test_objective"], b["test_objective"], rtol=1e-5)


def f(learning_rate, decay_steps=200):
  return optax.adam(optax.cosine_decay_schedule(learning_rate, decay_steps))


def g(learning_rate, decay_steps=200.0):
  return optax.adam(optax.cosine_decay_schedule(learning_rate, decay_steps))


def test_integer_default_is_static_and_a_swept_peak_is_traced():
  # `def f(learning_rate, decay_steps=200)`: the int is a Python value,
  # the swept peak a traced one (Optax allows it here).
  res = helpers.run(LRS, optimizer=f)
  assert len(res.rows) == 2 and all(np.isfinite(r["test_objective"]) for r in res.rows)


def test_an_unswept_default_optax_reads_in_python_is_bound_as_a_python_value():
  # A float default is traced unless marked static, and Optax checks
  # `decay_steps > 0` in Python: jaxsweep binds it as a Python value (one
  # program either way, so without a word), as static= would.
  res = helpers.run(LRS, optimizer=g)
  ref = helpers.run(LRS, optimizer=f)
  for a, b in zip(res.rows, ref.rows):
    assert a["test_objective"] == b["test_objective"]
  res = helpers.run(LRS, optimizer=g, static=["decay_steps"])
  for a, b in zip(res.rows, ref.rows):
    assert a["test_objective"] == b["test_objective"]


def plateau(learning_rate):
  return optax.chain(optax.adam(learning_rate),
                     optax.contrib.reduce_on_plateau(factor=0.5, patience=1))


def test_optax_reduce_on_plateau_in_a_user_factory():
  # Its update needs `value=`: the engine passes each step's batch loss.
  res = helpers.run(LRS, optimizer=plateau)
  assert all(np.isfinite(r["test_objective"]) for r in res.rows)


def test_traceable_reduce_on_plateau_equals_optax():
  params = {"w": jnp.ones(3)}
  values = jnp.asarray([3.0, 2.0, 2.0, 2.0, 2.5, 1.0, 1.0, 1.0, 1.0], jnp.float32)
  kw = dict(rtol=1e-4, atol=0.0, cooldown=1, accumulation_size=1, min_scale=0.01)

  def scales(tx):
    def step(state, v):
      _, state = tx.update(params, state, params, value=v)
      return state, state.scale
    return jax.lax.scan(step, tx.init(params), values)[1]

  want = [scales(optax.contrib.reduce_on_plateau(factor=f, patience=p, **kw))
          for f, p in [(0.5, 1), (0.1, 2)]]
  # factor and patience traced, one per variant.
  got = jax.vmap(lambda f, p: scales(js.optim.reduce_on_plateau(f, p, **kw)))(
      jnp.asarray([0.5, 0.1]), jnp.asarray([1.0, 2.0]))
  np.testing.assert_allclose(got, np.stack(want), rtol=1e-6)
  assert float(got[0, -1]) < 1.0


CONFIG = """
data: {name: synthetic, num_train: 64, num_test: 40, num_features: 8, num_classes: 4}
model: {name: mlp, features: [16], activation: relu}
loss: cross_entropy
optimizer: {name: adam, learning_rate: 1.0e-2, schedule: reduce_on_plateau, patience: 1}
train: {steps: 6, batch_size: 16, eval_every: 3}
sweep:
  optimizer.decay_rate: [0.5, 1.0]
"""


def test_reduce_on_plateau_from_the_config_registry(tmp_path):
  assert "reduce_on_plateau" in js.optim.SCHEDULES
  path = tmp_path / "plateau.yaml"
  path.write_text(CONFIG)
  res = js.run_config(str(path))
  assert len(res.rows) == 2
  # decay_rate is the factor, traced: 1.0 never reduces, 0.5 does, at once
  # on this noisy loss (patience 1), so the two runs differ.
  assert res.rows[0]["test_objective"] != res.rows[1]["test_objective"]


# --------------------------------------------------------------------------
# Flax NNX models with state.

class NnxNet(nnx.Module):

  def __init__(self, rate=0.5, *, rngs):
    self.l1 = nnx.Linear(8, 16, rngs=rngs)
    self.bn = nnx.BatchNorm(16, rngs=rngs)
    self.do = nnx.Dropout(rate, rngs=rngs)
    self.l2 = nnx.Linear(16, 4, rngs=rngs)

  def __call__(self, x):
    return self.l2(self.do(nnx.relu(self.bn(self.l1(x)))))


class LinenNet(nn.Module):
  """NnxNet in Linen, with the same names (so the same variables)."""
  rate: float = 0.5

  def setup(self):
    self.l1, self.bn = nn.Dense(16), nn.BatchNorm(momentum=0.99, epsilon=1e-5)
    self.do, self.l2 = nn.Dropout(self.rate), nn.Dense(4)

  def __call__(self, x, train=False):
    h = nn.relu(self.bn(self.l1(x), use_running_average=not train))
    return self.l2(self.do(h, deterministic=not train))


SEEDS = {"seed": [0, 1], "learning_rate": [1e-2, 3e-2]}


def _run(model, **kw):
  return js.run(model=model, optimizer=helpers.adam, loss=js.losses.cross_entropy,
                data=helpers.DATA, sweep=SEEDS, steps=helpers.STEPS,
                batch_size=helpers.BATCH, eval_every=3, **kw)


def test_an_nnx_module_instance_names_from_nnx():
  with pytest.raises(errors.ModelError, match="from_nnx") as info:
    js.models.to_model_fns(nnx.Linear(4, 2, rngs=nnx.Rngs(0)))
  assert info.value.key == "model"


def test_flax_nnx_is_imported_only_by_its_users():
  code = "import sys, jaxsweep.cli; print('flax.nnx' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.stdout.strip() == "False"


def test_nnx_batch_norm_and_dropout_per_variant():
  fns = js.models.from_nnx(NnxNet)
  res = _run(fns)
  v = [res.variables(i) for i in range(2)]
  mean = [np.asarray(x["nnx_state"]["bn"]["mean"]) for x in v]
  assert np.abs(mean[0]).max() > 1e-3  # Moved from its init (zeros).
  assert not np.allclose(mean[0], mean[1])  # Per variant.
  assert "do" not in v[0]["nnx_state"]  # RNG streams are reseeded, not carried.

  x = helpers.DATA.test["x"][:8]
  train = lambda key: fns.apply(v[0], x, train=True, rng=key)[0]
  keys = jax.random.split(jax.random.key(0), 2)  # Two variants', or two steps'.
  assert not np.allclose(train(keys[0]), train(keys[1]))  # Masks differ.
  np.testing.assert_array_equal(train(keys[0]), train(keys[0]))  # Reproducible.
  # Inside one vmapped call, as the engine trains: each lane its own mask.
  both = jax.vmap(train)(keys)
  np.testing.assert_allclose(both[0], train(keys[0]), rtol=1e-6)
  assert not np.allclose(both[0], both[1])
  # Eval: running statistics, no dropout, whatever the key.
  evals = [fns.apply(v[0], x, train=False, rng=k)[0] for k in (None, *keys)]
  np.testing.assert_array_equal(evals[0], evals[1])
  np.testing.assert_array_equal(evals[0], evals[2])


def test_nnx_equals_the_same_model_in_linen():
  """Same variables, same steps: the same results within 1e-5 (relative).
  Dropout rate 0: the two libraries draw masks from keys differently."""
  nnx_fns = js.models.from_nnx(lambda rngs: NnxNet(0.0, rngs=rngs))
  linen = js.models.from_linen(LinenNet(0.0))

  def init(key, x, **hparams):
    del hparams  # Unused.
    v = nnx_fns.init(key, x)
    return {"params": v["params"], "batch_stats": v["nnx_state"]}

  a = _run(nnx_fns)
  b = _run(linen._replace(init=init))
  for ra, rb in zip(a.rows, b.rows):
    for k in ("test_objective", "test_accuracy", "train_objective"):
      np.testing.assert_allclose(ra[k], rb[k], rtol=1e-5)
  for i in range(2):
    va, vb = a.variables(i), b.variables(i)
    jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6),
                 va["params"], vb["params"])
    jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6),
                 va["nnx_state"], vb["batch_stats"])


# --------------------------------------------------------------------------
# Your own model from a config file: model: {name: "package.module:Name"}.

NET = """\
import flax.linen as nn


class Net(nn.Module):
  width: int = 16
  num_outputs: int = 10

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_outputs)(nn.relu(nn.Dense(self.width)(x)))
"""


def _own_model_config(tmp_path, package, name):
  (tmp_path / package).mkdir()
  (tmp_path / package / "__init__.py").write_text("")
  (tmp_path / package / "nets.py").write_text(NET)
  (tmp_path / "own.yaml").write_text(
      "data: {name: synthetic, num_train: 64, num_test: 32}\n"
      f"model: {{name: \"{name}\", width: 8}}\n"
      "optimizer: {name: sgd, learning_rate: 0.1}\n"
      "train: {steps: 2, batch_size: 16, eval_every: 2}\n"
      "sweep:\n  optimizer.learning_rate: [0.1, 0.3]\n")
  return str(tmp_path / "own.yaml")


def _cli(argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main(argv)
  return code, out.getvalue(), err.getvalue()


def test_own_model_from_a_config_file_is_imported_from_the_working_directory(
    tmp_path, monkeypatch):
  path = _own_model_config(tmp_path, "own_nets_ok", "own_nets_ok.nets:Net")
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
  code, out, err = _cli(["run", path, "--out", str(tmp_path / "out"), "-q"])
  assert code == 0, err
  res = js.Results.from_json(str(tmp_path / "out" / "results.json"))
  assert len(res.rows) == 2 and {r["params"] for r in res.rows} == {16 * 8 + 8 + 8 * 4 + 4}  # width 8, 4 classes
  assert str(tmp_path) not in sys.path  # Searched, not left behind.


@pytest.mark.parametrize("name,needle,fix", [
    ("own_nets_gone.nets:Net", "no module named 'own_nets_gone'",
     "run jaxsweep from the folder that holds own_nets_gone/"),
    ("own_nets_attr.nets:Nett", "has no attribute 'Nett'. Did you mean 'Net'?",
     "name one of its attributes"),
    ("own_nets_form.nets.Net", "unknown model 'own_nets_form.nets.Net'",
     "'package.module:Name' for your own model"),
])
def test_own_model_that_cannot_be_imported_says_why(tmp_path, monkeypatch, name, needle, fix):
  package = name.split(".")[0]
  path = _own_model_config(tmp_path, package if "gone" not in package else "elsewhere", name)
  monkeypatch.chdir(tmp_path)
  code, _, err = _cli(["run", path, "--out", str(tmp_path / "out"), "-q"])
  assert code == 2 and needle in err and fix in err and "Traceback" not in err, err
