"""Masked width and depth (issue #15): networks of different sizes padded to
one compiled program behave as the unpadded networks.

Tolerances: a padded variant starts from exactly the unpadded parameters,
but its matmuls sum over more (zero) terms, blocked in another order, so
outputs agree to float32 rounding (``FORWARD``), and a few training steps to
a little more (``TRAINED``). Padded parameters are compared exactly.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsweep as js
from jaxsweep.components import optim
from jaxsweep.components.models import masked
from tests import helpers

OPTIONS = ((8,), (16, 8))    # A narrower and a shallower variant of the widest.
FORWARD = {"rtol": 1e-5, "atol": 1e-6}   # Reduction order over padded zeros.
TRAINED = {"rtol": 1e-4, "atol": 1e-5}   # The same, compounded over a few steps.
X = jnp.asarray(helpers.DATA.train["x"][:helpers.BATCH])
Y = jnp.asarray(helpers.DATA.train["y"][:helpers.BATCH])
KEY = jax.random.key(3)
LRS = (0.1, 0.3)


def _rows(option, layer):
  """Real input rows of ``hidden_{layer}`` for one option."""
  return X.shape[-1] if layer == 0 else option[layer - 1]


def _real_slices(option, params):
  """Each unpadded parameter's slice of the padded tree (the real entries)."""
  out = {}
  for layer, width in enumerate(option):
    out[f"hidden_{layer}"] = {"kernel": np.s_[:_rows(option, layer), :width],
                              "bias": np.s_[:width]}
    if f"bn_{layer}" in params:
      out[f"bn_{layer}"] = {"scale": np.s_[:width], "bias": np.s_[:width]}
  out["output"] = {"kernel": np.s_[:option[-1], :], "bias": np.s_[:]}
  return out


def assert_masked_like(padded, unpadded, option, *, tol=None):
  """The real entries of ``padded`` equal ``unpadded`` (exactly, or within
  ``tol``); every other entry, including layers beyond the depth, is 0."""
  slices = _real_slices(option, padded)
  for name, leaves in padded.items():
    for leaf, value in leaves.items():
      value = np.asarray(value)
      rest = np.ones(value.shape, bool)
      if name in slices:
        s = slices[name][leaf]
        rest[s] = False
        if tol is None:
          np.testing.assert_array_equal(value[s], unpadded[name][leaf], err_msg=name)
        else:
          np.testing.assert_allclose(value[s], unpadded[name][leaf], err_msg=name, **tol)
      np.testing.assert_array_equal(value[rest], 0.0, err_msg=f"{name}/{leaf} padding")


# --------------------------------------------------------------------------
# (a) module level: init, forward, batch norm and dropout.

@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("index", range(len(OPTIONS)))
def test_masked_mlp_starts_and_runs_as_the_unpadded_mlp(index, batch_norm):
  option = OPTIONS[index]
  padded = js.models.mlp(features=OPTIONS, num_outputs=4, batch_norm=batch_norm)
  alone = js.models.mlp(features=option, num_outputs=4, batch_norm=batch_norm)
  rngs = {"params": KEY, "dropout": jax.random.key(4)}
  vp = padded.init(rngs, X, features_index=index)
  va = alone.init(rngs, X)
  assert_masked_like(vp["params"], va["params"], option)
  for train, rate in ((False, 0.0), (True, 0.0), (True, 0.3)):
    kw = {"train": train, "dropout_rate": rate, "rngs": {"dropout": jax.random.key(5)}}
    if train and batch_norm:
      kw["mutable"] = ["batch_stats"]
    out_p = padded.apply(vp, X, features_index=index, **kw)
    out_a = alone.apply(va, X, **kw)
    if "mutable" in kw:
      (out_p, stats_p), (out_a, stats_a) = out_p, out_a
      for layer, width in enumerate(option):
        for k in ("mean", "var"):
          np.testing.assert_allclose(stats_p["batch_stats"][f"bn_{layer}"][k][:width],
                                     stats_a["batch_stats"][f"bn_{layer}"][k], **FORWARD)
    np.testing.assert_allclose(out_p, out_a, err_msg=f"train={train} rate={rate}", **FORWARD)


def test_column_dropout_drops_the_same_real_units():
  x = jnp.ones((6, 16))
  rng = jax.random.key(7)
  wide = masked.column_dropout(x, 0.5, rng)
  narrow = masked.column_dropout(x[:, :8], 0.5, rng)
  np.testing.assert_array_equal(wide[:, :8], narrow)
  assert 0 < int(jnp.sum(narrow == 0)) < narrow.size


def test_column_init_is_prefix_stable_with_its_own_fans():
  wide = masked.column_init("he_uniform", KEY, 8, 16, fan_in=5, fan_out=4)
  narrow = masked.column_init("he_uniform", KEY, 5, 4, fan_in=5, fan_out=4)
  np.testing.assert_array_equal(wide[:5, :4], narrow)


# --------------------------------------------------------------------------
# (b), (d), (f) through js.run: vectorized vs grouped vs alone.

def _sgd(learning_rate):
  # Not Adam: the gradient of a bias before batch norm is 0 up to rounding
  # (~1e-9), which Adam scales to steps of ~lr, so two float orders would
  # move that bias apart (and the eval, through the running mean). Adam
  # keeps padded parameters at 0 all the same (the optimizer test below).
  return optax.chain(optax.add_decayed_weights(0.1), optax.sgd(learning_rate, momentum=0.9))


def _run(sweep, **kw):
  return js.run(model=js.models.mlp, optimizer=_sgd, data=helpers.DATA, sweep=sweep,
                fixed={"batch_norm": True, "dropout_rate": 0.2}, steps=helpers.STEPS,
                batch_size=helpers.BATCH, eval_every=3, **kw)


@pytest.fixture(scope="module")
def runs():
  sweep = {"features": [list(o) for o in OPTIONS], "learning_rate": list(LRS)}
  return {"masked": _run(sweep, vectorize=["features"]),
          "grouped": _run(sweep, group=["features"]),
          "alone": _run({"features": [list(OPTIONS[1])], "learning_rate": [LRS[1]]})}


def _settings(res, i):
  return tuple(res.rows[i]["features"]), res.rows[i]["learning_rate"]


def test_one_group_when_vectorized(runs):
  assert {r["group"] for r in runs["masked"].rows} == {0}
  assert len({r["group"] for r in runs["grouped"].rows}) == len(OPTIONS)


def test_vectorized_equals_grouped(runs):
  m, g = runs["masked"], runs["grouped"]
  by_settings = {_settings(g, i): i for i in range(len(g.rows))}
  assert len(m.rows) == len(g.rows) == len(OPTIONS) * len(LRS)
  for i, row in enumerate(m.rows):
    j = by_settings[_settings(m, i)]
    for k, v in row.items():
      if k.startswith(("train_", "val_", "test_")) and isinstance(v, float):
        if k.endswith("accuracy"):
          assert v == g.rows[j][k], (k, row["features"])
        else:
          np.testing.assert_allclose(v, g.rows[j][k], err_msg=k, **TRAINED)
    option = tuple(row["features"])
    vm, vg = m.variables(i), g.variables(j)
    assert_masked_like(vm["params"], vg["params"], option, tol=TRAINED)
    for layer, width in enumerate(option):
      np.testing.assert_allclose(vm["batch_stats"][f"bn_{layer}"]["mean"][:width],
                                 vg["batch_stats"][f"bn_{layer}"]["mean"], **TRAINED)


def test_a_variant_alone_equals_it_inside_the_masked_population(runs):
  m, alone = runs["masked"], runs["alone"]
  [i] = [i for i in range(len(m.rows)) if _settings(m, i) == (OPTIONS[1], LRS[1])]
  for k in ("val_accuracy", "test_accuracy"):
    assert m.rows[i][k] == alone.rows[0][k]
  np.testing.assert_allclose(m.rows[i]["test_nll"], alone.rows[0]["test_nll"], **TRAINED)
  assert_masked_like(m.params(i), alone.params(0), OPTIONS[1], tol=TRAINED)


def test_padded_parameters_stay_zero_under_weight_decay(runs):
  """(f) the skipped layer of the shallow variant, the padded units of every
  variant: exactly 0 after training with weight decay."""
  m = runs["masked"]
  for i in range(len(m.rows)):
    params = m.params(i)
    _assert_padding_zero(params, _real_slices(tuple(m.rows[i]["features"]), params), i)
  shallow = [i for i in range(len(m.rows)) if len(m.rows[i]["features"]) == 1]
  for i in shallow:
    for name in ("hidden_1", "bn_1"):
      for leaf in m.params(i)[name].values():
        np.testing.assert_array_equal(leaf, 0.0)


def test_params_column_counts_each_variant_alone(runs):
  # 8 inputs, 4 classes: (8,): 8*8+8 + 8*2 (bn) + 8*4+4; (16, 8): 8*16+16 + 16*2
  # + 16*8+8 + 8*2 + 8*4+4.
  expected = {(8,): 124, (16, 8): 364}
  for res in (runs["masked"], runs["grouped"]):
    for row in res.rows:
      assert row["params"] == expected[tuple(row["features"])], row


# --------------------------------------------------------------------------
# (c) every registered optimizer, weight decay where it takes it.

def _optimizers():
  out = {}
  for name in optim.REGISTRY.names():
    fn = optim.REGISTRY.get(name)
    kw = {"learning_rate": 1e-2}
    if "weight_decay" in inspect.signature(fn).parameters:
      kw["weight_decay"] = 0.1
    out[name] = optim.REGISTRY.build(name, **kw)
  return out


def _train_every_optimizer(model, x, y, index):
  """Three steps of each registered optimizer (weight decay 0.1 where it
  takes one) on variant ``index`` of ``model``, train mode, dropout 0.2.
  One jitted program for all (compiling each apart costs more).

  Returns:
    name -> (initial params, trained params, trained state, initial state).
  """
  variables = model.init({"params": KEY, "dropout": KEY}, x, **index)
  stats = {k: v for k, v in variables.items() if k != "params"}

  def loss(params, t):
    logits, _ = model.apply({"params": params, **stats}, x, train=True, dropout_rate=0.2,
                            mutable=["batch_stats"], rngs={"dropout": jax.random.fold_in(KEY, t)},
                            **index)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def train_all(params):
    out = {}
    for name, tx in _optimizers().items():
      def step(carry, t, tx=tx):
        p, s = carry
        u, s = tx.update(jax.grad(loss)(p, t), s, p)
        return (optax.apply_updates(p, u), s), None
      start = tx.init(params)
      out[name] = (*jax.lax.scan(step, (params, start), jnp.arange(3))[0], start)
    return out

  trained = train_all(variables["params"])
  assert set(trained) == set(optim.REGISTRY.names())
  return {k: (variables["params"], *v) for k, v in trained.items()}


def _assert_padding_stays(trained, slices, moved):
  """Padded params stay 0 and padded state entries at their initial values
  (0; adagrad's accumulator 0.1); layer ``moved`` trained."""
  for name, (params0, params, state, start) in trained.items():
    params_def = jax.tree.structure(params)

    def parts(state, params_def=params_def):   # Params-shaped parts: moments, traces, sums.
      return [sub for sub in jax.tree.leaves(
          state, is_leaf=lambda n: jax.tree.structure(n) == params_def)
              if jax.tree.structure(sub) == params_def]

    _assert_padding_zero(params, slices, name)
    assert bool(jnp.any(params[moved]["kernel"] != params0[moved]["kernel"])), name
    for sub, sub0 in zip(parts(state), parts(start), strict=True):
      _assert_padding_zero(jax.tree.map(jnp.subtract, sub, sub0), slices, name)


def test_every_optimizer_keeps_padded_parameters_and_their_state_zero():
  """The shallow, narrow MLP padded to the deep, wide one (batch norm)."""
  model = js.models.mlp(features=OPTIONS, num_outputs=4, batch_norm=True)
  trained = _train_every_optimizer(model, X, Y, {"features_index": 0})
  _assert_padding_stays(trained, _real_slices(OPTIONS[0], trained["adam"][1]), "hidden_0")


def _assert_padding_zero(tree, slices, what):
  """Entries of a params-shaped ``tree`` outside ``slices`` (layer -> leaf ->
  the real entries; a layer not named is all padding) are 0."""
  for name, leaves in tree.items():
    for leaf, value in leaves.items():
      rest = np.ones(np.shape(value), bool)
      if name in slices:
        rest[slices[name][leaf]] = False
      np.testing.assert_array_equal(np.asarray(value)[rest], 0.0, err_msg=f"{what} {name}")


# --------------------------------------------------------------------------
# (e) initializers that cannot be drawn unit by unit.

def test_orthogonal_with_vectorized_widths_is_refused():
  with pytest.raises(js.ConfigError) as e:
    js.models.mlp(features=OPTIONS, kernel_init="orthogonal")
  assert e.value.key == "model.kernel_init"
  assert "vectorize" in e.value.fix and "lecun_normal" in e.value.fix
  with pytest.raises(js.ConfigError, match="unit by unit"):   # Before anything trains.
    js.run(model=js.models.mlp, optimizer=helpers.adam, data=helpers.DATA,
           sweep={"features": [list(o) for o in OPTIONS]}, fixed={"kernel_init": "orthogonal"},
           vectorize=["features"], steps=1, batch_size=helpers.BATCH)


# --------------------------------------------------------------------------
# The CNN: a vectorized choice of channels (one number of blocks).

CHANNELS = ((4, 8), (8, 4))
_rng = np.random.default_rng(0)
IMAGES = js.data.arrays(_rng.normal(size=(32, 8, 8, 1)).astype(np.float32),
                        _rng.integers(0, 4, 32), _rng.normal(size=(16, 8, 8, 1)).astype(np.float32),
                        _rng.integers(0, 4, 16))
PIXELS = 2 * 2   # 8x8 pooled twice.


def _cnn(channels, batch_norm=False):
  return js.models.cnn(channels=channels, head=(5,), num_outputs=4, batch_norm=batch_norm)


def _cnn_slices(option, params):
  out, cin = {}, 1
  for layer, c in enumerate(option):
    out[f"conv_{layer}"] = {"kernel": np.s_[:, :, :cin, :c], "bias": np.s_[:c]}
    if f"bn_{layer}" in params:
      out[f"bn_{layer}"] = {"scale": np.s_[:c], "bias": np.s_[:c]}
    cin = c
  out["head_0"] = {"kernel": np.s_[:PIXELS * cin, :], "bias": np.s_[:]}
  out["output"] = {"kernel": np.s_[:, :], "bias": np.s_[:]}
  return out


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("index", range(len(CHANNELS)))
def test_masked_cnn_starts_and_runs_as_the_unpadded_cnn(index, batch_norm):
  option, x = CHANNELS[index], jnp.asarray(IMAGES.train["x"][:8])
  padded, alone = _cnn(CHANNELS, batch_norm), _cnn(option, batch_norm)
  rngs = {"params": KEY, "dropout": jax.random.key(4)}
  vp = padded.init(rngs, x, channels_index=index)
  va = alone.init(rngs, x)
  slices = _cnn_slices(option, vp["params"])
  _assert_padding_zero(vp["params"], slices, "init")
  for name, leaves in slices.items():
    for leaf, s in leaves.items():
      np.testing.assert_array_equal(vp["params"][name][leaf][s], va["params"][name][leaf])
  for train, rate in ((False, 0.0), (True, 0.3)):
    kw = {"train": train, "dropout_rate": rate, "rngs": {"dropout": jax.random.key(5)},
          "mutable": ["batch_stats"] if train and batch_norm else False}
    out_p = padded.apply(vp, x, channels_index=index, **kw)
    out_a = alone.apply(va, x, **kw)
    if kw["mutable"]:
      (out_p, _), (out_a, _) = out_p, out_a
    np.testing.assert_allclose(out_p, out_a, err_msg=f"train={train}", **FORWARD)


def test_every_optimizer_keeps_padded_cnn_channels_zero():
  model = _cnn(CHANNELS, batch_norm=True)
  x, y = jnp.asarray(IMAGES.train["x"][:8]), jnp.asarray(IMAGES.train["y"][:8])
  trained = _train_every_optimizer(model, x, y, {"channels_index": 0})
  _assert_padding_stays(trained, _cnn_slices(CHANNELS[0], trained["adam"][1]), "conv_0")


def test_cnn_channels_of_different_depths_are_refused():
  with pytest.raises(js.ConfigError, match="conv blocks") as e:
    js.models.cnn(channels=((4,), (4, 8)))
  assert e.value.key == "model.channels" and "vectorize" in e.value.fix


def test_cnn_channels_vectorized_through_run():
  res = js.run(model=_cnn_factory, optimizer=_sgd, data=IMAGES,
               sweep={"channels": [list(o) for o in CHANNELS]}, vectorize=["channels"],
               fixed={"learning_rate": 0.1},
               steps=2, batch_size=8)
  assert {r["group"] for r in res.rows} == {0}
  for i, row in enumerate(res.rows):
    option = tuple(row["channels"])
    params = res.params(i)
    _assert_padding_zero(params, _cnn_slices(option, params), i)
    alone = _cnn(option).init(KEY, IMAGES.train["x"][:1])["params"]
    assert row["params"] == js.models.count_params(alone)


def _cnn_factory(channels=(4,)):
  return _cnn(channels)
