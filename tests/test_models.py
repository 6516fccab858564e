"""Tests for jaxsweep.models, jaxsweep.losses and the datasets they train on.

Compilation dominates on CPU, so: shapes and parameter counts come from
``jax.eval_shape`` (nothing compiles); equivalence tests build parameters
with numpy (no PRNG program to compile); each training test compiles one
small population program (``make_train`` + ``jit(vmap)``) and checks several
things on it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsweep import data as data_lib
from jaxsweep import errors
from jaxsweep import losses
from jaxsweep import models
from jaxsweep import optim
from jaxsweep.engine import train as train_lib

KEY = jax.random.key(0)


@pytest.fixture(autouse=True, scope="module")
def _fast_prng_compilation():
  """Non-partitionable threefry for this module: the same semantics (keys,
  per-variant streams), other bits, and 2.5-3x faster XLA:CPU compilation of
  the random ops in init, dropout and batch sampling (measured here: CNN
  train program 40 s -> 13 s under load). Nothing here depends on the bits.
  """
  with jax.threefry_partitionable(False):
    yield


def _shapes(fns, x):
  """Variables of ``fns.init`` as shapes, without compiling anything."""
  return jax.eval_shape(fns.init, KEY, x)


def _n_params(fns, x) -> int:
  return int(sum(math.prod(a.shape) for a in jax.tree.leaves(_shapes(fns, x)["params"])))


def _out_shape(fns, x, **kw):
  variables = _shapes(fns, x)
  return jax.eval_shape(
      lambda v, x: fns.apply(v, x, train=False, **kw)[0], variables, x).shape


def _numpy_variables(fns, x, seed=0):
  """Variables with numpy-random parameters: the same for every model built
  with the same structure, and no jax.random program to compile."""
  rng = np.random.default_rng(seed)
  variables = _shapes(fns, x)
  return jax.tree.map(
      lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.5, a.dtype), variables)


def dense(i, o):
  return i * o + o


# --------------------------------------------------------------------------
# Shapes and exact parameter counts.

@pytest.mark.parametrize("features,batch_norm", [((32,), False), ((16, 8), True), ((), False)])
def test_mlp_params_and_shape(features, batch_norm):
  fns = models.to_model_fns(models.mlp(features=features, num_outputs=10,
                                       batch_norm=batch_norm))
  x = jnp.zeros((5, 64))
  widths = (64, *features)
  expected = sum(dense(a, b) for a, b in zip(widths, widths[1:])) + dense(widths[-1], 10)
  expected += 2 * sum(features) if batch_norm else 0  # BN scale and bias.
  assert _n_params(fns, x) == expected
  assert _out_shape(fns, x) == (5, 10)
  assert ("batch_stats" in _shapes(fns, x)) == batch_norm


@pytest.mark.parametrize("channels,kernel,pooling,head,bn", [
    ((16, 32), 3, "max", (64,), False),
    ((8,), 5, "none", (), True),
    ((4, 4, 4), 3, "avg", (8, 8), False),   # 8 -> 4 -> 2 -> 1 pixels.
    ((4, 4, 4, 4), 3, "max", (8,), False),  # SAME pooling keeps 1x1 at 1x1.
])
def test_cnn_params_and_shape(channels, kernel, pooling, head, bn):
  fns = models.to_model_fns(models.cnn(channels=channels, kernel_size=kernel,
                                       pooling=pooling, head=head, batch_norm=bn,
                                       num_outputs=10))
  x = jnp.zeros((3, 8, 8, 1))
  expected, c_in, side = 0, 1, 8
  for c in channels:
    expected += kernel * kernel * c_in * c + c + (2 * c if bn else 0)
    c_in = c
    side = side if pooling == "none" else -(-side // 2)
  widths = (side * side * c_in, *head)
  expected += sum(dense(a, b) for a, b in zip(widths, widths[1:])) + dense(widths[-1], 10)
  assert _n_params(fns, x) == expected
  assert _out_shape(fns, x) == (3, 10)
  assert _out_shape(fns, jnp.zeros((3, 8, 8))) == (3, 10)  # Channel axis added.


def _cell_params(cell, i, h):
  if cell == "lstm":  # 4 gates: input kernel, recurrent kernel + bias.
    return 4 * (i * h + h * h + h)
  if cell == "gru":   # r, z, n input kernels + biases; h kernels, bias on n only.
    return 3 * (i * h + h) + 3 * h * h + h
  return i * h + h + h * h  # simple: input kernel + bias, recurrent kernel.


@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("gru", 2), ("simple", 1), ("lstm", 2)])
def test_rnn_params_and_shape(cell, layers):
  vocab, embed, hidden, seq = 30, 8, 12, 7
  fns = models.to_model_fns(models.rnn(cell=cell, layers=layers, embed_dim=embed,
                                       hidden=hidden, num_outputs=vocab))
  x = jnp.zeros((4, seq), jnp.int32)
  expected = vocab * embed + _cell_params(cell, embed, hidden)
  expected += (layers - 1) * _cell_params(cell, hidden, hidden)
  expected += dense(hidden, vocab)
  assert _n_params(fns, x) == expected
  assert _out_shape(fns, x) == (4, seq, vocab)


def test_factories_fill_num_outputs_and_take_kernel_init():
  for name in ("mlp", "cnn", "rnn"):
    args = models.get(name).__code__.co_varnames
    assert "num_outputs" in args and "kernel_init" in args
  fns = models.to_model_fns(models.cnn(kernel_init="he_uniform", channels=(4,), head=()))
  v = _numpy_variables(fns, jnp.zeros((1, 8, 8, 1)))
  assert "conv_0" in v["params"]


def test_orthogonal_initializer_without_lapack():
  shapes = ((6, 6), (7, 3), (3, 7), (2, 3, 4))
  keys = jax.random.split(jax.random.key(1), 2)
  draw = jax.jit(lambda keys: [jax.vmap(lambda k, s=s: models.orthogonal(2.0)(k, s))(keys)
                               for s in shapes])
  # No LAPACK custom call (it hung vmapped inits on XLA:CPU here).
  hlo = draw.lower(keys).as_text()
  assert "lapack" not in hlo.lower() and "custom_call" not in hlo
  for shape, q in zip(shapes, draw(keys)):
    q = np.asarray(q)
    assert q.shape == (2, *shape)
    m = q.reshape(2, -1, shape[-1])
    gram = (np.einsum("vij,vik->vjk", m, m) if m.shape[1] >= m.shape[2]
            else np.einsum("vji,vki->vjk", m, m))
    np.testing.assert_allclose(gram, 4 * np.broadcast_to(np.eye(gram.shape[-1]), gram.shape),
                               atol=1e-5)
    assert not np.allclose(q[0], q[1])  # Per key.
  assert models.INITIALIZERS["orthogonal"] is models.orthogonal


@pytest.mark.parametrize("call,match", [
    (lambda: models.cnn(pooling="mean"), "pooling"),
    (lambda: models.cnn(channels=(0,)), "widths"),
    (lambda: models.rnn(cell="lstn"), "lstm"),
    (lambda: models.rnn(hidden=0), "hidden"),
    (lambda: models.mlp(activation="rleu"), "relu"),
    (lambda: models.mlp(activation=["relu", "tahn"]), "tanh"),
    (lambda: models.cnn(activation=[]), "empty"),
    (lambda: models.build("cnn", channel=(4,)), "channels"),
])
def test_bad_model_arguments_are_config_errors(call, match):
  with pytest.raises(errors.ConfigError, match=match):
    call()


def test_cnn_on_flat_inputs_says_how_to_fix():
  fns = models.to_model_fns(models.cnn())
  with pytest.raises(ValueError, match="as_images"):
    _shapes(fns, jnp.zeros((2, 64)))


# --------------------------------------------------------------------------
# Vectorized choices: the switch path equals the plain path.

ACTS = ("relu", "tanh", "gelu", "elu")


@pytest.mark.parametrize("name,x", [
    ("mlp", np.random.default_rng(1).normal(size=(6, 64)).astype(np.float32)),
    ("cnn", np.random.default_rng(2).normal(size=(6, 8, 8, 1)).astype(np.float32)),
])
def test_activation_switch_equals_plain_activation(name, x):
  kw = dict(num_outputs=5, **({"features": (16, 8)} if name == "mlp"
                               else {"channels": (4, 4), "head": (8,)}))
  switch = models.to_model_fns(models.build(name, activation=list(ACTS), **kw))
  plains = [models.to_model_fns(models.build(name, activation=a, **kw)) for a in ACTS]
  variables = _numpy_variables(switch, x)
  for plain in plains:  # Same structure: the choice adds no parameters.
    assert jax.tree.structure(_shapes(plain, x)) == jax.tree.structure(variables)

  @jax.jit  # One compilation for all the paths.
  def outputs(variables, x):
    want = [p.apply(variables, x, train=False)[0] for p in plains]
    got = [switch.apply(variables, x, train=False, activation_index=i)[0]
           for i in range(len(ACTS))]
    # Under vmap with a per-variant (float, as the engine stacks it) index,
    # lax.switch becomes a select: each variant still gets its activation.
    batched = jax.vmap(lambda i: switch.apply(variables, x, train=False,
                                              activation_index=i)[0])(
        jnp.arange(len(ACTS), dtype=jnp.float32))
    return jnp.stack(want), jnp.stack(got), batched

  want, got, batched = outputs(variables, x)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # Batched convolutions may sum in another order: within 1e-6 of the scale.
  scale = float(np.abs(want).max())
  np.testing.assert_allclose(batched, want, rtol=1e-6, atol=1e-6 * scale)
  assert not np.allclose(want[0], want[1])


def test_single_activation_ignores_the_index():
  fns = models.to_model_fns(models.mlp(features=(4,), activation="tanh", num_outputs=2))
  x = jnp.ones((2, 3))
  v = _numpy_variables(fns, x)
  np.testing.assert_array_equal(fns.apply(v, x, train=False, activation_index=3)[0],
                                fns.apply(v, x, train=False)[0])


def _cls_case(seed=0, n=12, c=5):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(n, c)) * 2, jnp.float32),
          {"y": jnp.asarray(rng.integers(0, c, size=n), jnp.int32)})


def test_loss_choice_equals_plain_losses_and_their_gradients():
  names = ("cross_entropy", "mse")
  choice = losses.choice(names)
  out, batch = _cls_case()
  cases = [(i, s) for s in (0.0, 0.2) for i in range(len(names))]

  @jax.jit  # One compilation for every case (eager grads compile op by op).
  def both(out):
    pairs = []
    for i, s in cases:
      kw = {"label_smoothing": s} if names[i] == "cross_entropy" else {}
      plain = lambda o, i=i, kw=kw: losses.get(names[i])(o, batch, **kw)
      switched = lambda o, i=i, s=s: choice(o, batch, loss_index=i, label_smoothing=s)
      pairs.append((jax.value_and_grad(switched)(out), jax.value_and_grad(plain)(out)))
    # Batched index and hyperparameters (the population path).
    batched = jax.vmap(lambda i, s: choice(out, batch, loss_index=i, label_smoothing=s))(
        jnp.array([0.0, 1.0, 0.0]), jnp.array([0.0, 0.3, 0.1]))
    return pairs, batched

  pairs, batched = both(out)
  for (got, got_grad), (want, want_grad) in pairs:
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-6, atol=1e-7)
  want = [losses.cross_entropy(out, batch, label_smoothing=0.0), losses.mse(out, batch),
          losses.cross_entropy(out, batch, label_smoothing=0.1)]
  np.testing.assert_allclose(batched, want, rtol=1e-6)


def test_loss_choice_signature_and_errors():
  import inspect
  fn = losses.choice(["mse", "cross_entropy"])
  params = inspect.signature(fn).parameters
  assert list(params) == ["outputs", "batch", "loss_index", "label_smoothing"]
  assert params["loss_index"].default == 0 and params["label_smoothing"].default == 0.0
  with pytest.raises(errors.ConfigError, match="cross_entropy"):
    losses.choice(["cross_entropy", "hinge"])
  with pytest.raises(errors.ConfigError, match="empty"):
    losses.choice([])
  out, batch = _cls_case()
  with pytest.raises(errors.ConfigError, match="label_smoothing"):
    fn(out, batch, label_smoothin=0.1)


# --------------------------------------------------------------------------
# Losses and metrics against numpy references.

def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_cross_entropy_and_label_smoothing():
  out, batch = _cls_case()
  o, y = np.asarray(out, np.float64), np.asarray(batch["y"])
  logp = _log_softmax(o)
  ce = -logp[np.arange(len(y)), y].mean()
  np.testing.assert_allclose(losses.cross_entropy(out, batch), ce, rtol=1e-6)
  a, c = 0.2, o.shape[-1]
  target = np.eye(c)[y] * (1 - a) + a / c
  np.testing.assert_allclose(losses.cross_entropy(out, batch, label_smoothing=a),
                             -(target * logp).sum(-1).mean(), rtol=1e-6)
  # Traced smoothing of 0 equals the unsmoothed loss.
  np.testing.assert_allclose(
      jax.jit(lambda s: losses.cross_entropy(out, batch, label_smoothing=s))(0.0),
      ce, rtol=1e-6)


def test_cross_entropy_on_sequences():
  rng = np.random.default_rng(3)
  out = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 4, size=(2, 3)), jnp.int32)
  logp = _log_softmax(np.asarray(out, np.float64))
  want = -np.take_along_axis(logp, np.asarray(y)[..., None], -1).mean()
  np.testing.assert_allclose(losses.cross_entropy(out, {"y": y}), want, rtol=1e-6)
  np.testing.assert_allclose(losses.nll(out, {"y": y}).mean(), want, rtol=1e-6)


def test_mse_on_one_hot_and_regression_targets():
  out, batch = _cls_case()
  p = np.exp(_log_softmax(np.asarray(out, np.float64)))
  onehot = np.eye(p.shape[-1])[np.asarray(batch["y"])]
  np.testing.assert_allclose(losses.mse(out, batch), ((p - onehot) ** 2).sum(-1).mean(),
                             rtol=1e-6)
  rng = np.random.default_rng(4)
  pred = rng.normal(size=(6, 3)).astype(np.float32)
  y = rng.normal(size=(6, 3)).astype(np.float32)
  np.testing.assert_allclose(losses.mse(jnp.asarray(pred), {"y": jnp.asarray(y)}),
                             ((pred - y) ** 2).mean(), rtol=1e-6)
  # Targets of shape [B] against outputs [B, 1].
  np.testing.assert_allclose(
      losses.mse(jnp.asarray(pred[:, :1]), {"y": jnp.asarray(y[:, 0])}),
      ((pred[:, 0] - y[:, 0]) ** 2).mean(), rtol=1e-6)
  np.testing.assert_allclose(
      losses.rmse_sq(jnp.asarray(pred), {"y": jnp.asarray(y)}),
      ((pred - y) ** 2).mean(-1), rtol=1e-6)


def test_accuracy_and_derived_metrics():
  out = jnp.asarray([[0.1, 2.0], [3.0, 0.0], [0.0, 1.0]])
  acc = losses.accuracy(out, {"y": jnp.asarray([1, 1, 1])})
  np.testing.assert_array_equal(acc, [1.0, 0.0, 1.0])
  lm = {name: fn for name, (source, fn) in losses.derived_metrics("language_model").items()
        if source == "nll"}
  nll = 1.5
  assert lm["perplexity"](nll) == pytest.approx(math.exp(1.5))
  assert lm["bits_per_char"](nll) == pytest.approx(1.5 / math.log(2))
  # A uniform model over V symbols: perplexity V, log2(V) bits per char.
  v = 64
  assert lm["perplexity"](math.log(v)) == pytest.approx(v)
  assert lm["bits_per_char"](math.log(v)) == pytest.approx(6.0)
  source, rmse = losses.derived_metrics("regression")["rmse"]
  assert source == "mse" and rmse(0.25) == 0.5
  assert set(losses.default_metrics("language_model")) == {"accuracy", "nll"}
  assert set(losses.default_metrics("regression")) == {"mse"}


# --------------------------------------------------------------------------
# The text dataset.

@pytest.fixture(scope="module")
def text_small():
  return data_lib.load("text", seq_len=16, max_chars=20_000, test_fraction=0.1)


def test_text_dataset_windows_and_vocab(text_small):
  ds = text_small
  assert ds.task == "language_model" and ds.name == "text"
  vocab = ds.info["vocab"]
  assert ds.num_classes == len(vocab) and vocab[0] == data_lib.UNKNOWN_CHAR
  assert len(set(vocab)) == len(vocab)
  for split in (ds.train, ds.test):
    assert split["x"].shape[1] == 16 and split["x"].dtype == np.int32
    # y is x shifted by one character.
    np.testing.assert_array_equal(split["x"][:, 1:], split["y"][:, :-1])
    assert split["x"].max() < len(vocab)
  # Consecutive windows tile the text (stride = seq_len): the next window
  # starts where the previous target ends.
  np.testing.assert_array_equal(ds.train["x"][1:, 0], ds.train["y"][:-1, -1])
  text = data_lib.decode(ds.train["x"][:3], vocab)
  assert len(text) == 48 and text.isprintable() or "\n" in text
  # Every training character is in the vocabulary; unknown only in test.
  assert (ds.train["x"] > 0).all()
  assert 0.08 < ds.num_test * 16 / (ds.num_train * 16 + ds.num_test * 16) < 0.12


def test_text_dataset_is_english_from_pydoc_topics(text_small):
  from pydoc_data import topics
  corpus = "\n\n".join(topics.topics.values())
  sample = data_lib.decode(text_small.train["x"][10], text_small.info["vocab"])
  assert sample in corpus
  assert "the" in data_lib.decode(text_small.train["x"][:50], text_small.info["vocab"])


def test_text_dataset_options():
  a = data_lib.load("text", seq_len=8, max_chars=4000, stride=4, seed=1)
  b = data_lib.load("text", seq_len=8, max_chars=4000, seed=2)
  assert a.num_train > 2 * b.num_train - 4  # Half the stride, twice the windows.
  assert a.info["vocab"] != b.info["vocab"] or not np.array_equal(a.test["x"], b.test["x"])
  with pytest.raises(errors.ConfigError, match="max_chars"):
    data_lib.load("text", seq_len=64, max_chars=100)
  with pytest.raises(errors.ConfigError, match="test_fraction"):
    data_lib.load("text", test_fraction=1.0)
  with pytest.raises(errors.ConfigError, match="seq_len"):
    data_lib.load("text", seq_len=0)


def test_digits_as_images():
  ds = data_lib.load_cached("digits", as_images=True)
  assert ds.train["x"].shape[1:] == (8, 8, 1) and ds.num_classes == 10


# --------------------------------------------------------------------------
# Dropout and batch norm semantics at the model level.

def test_dropout_per_key_per_rate_and_off_at_eval():
  fns = models.to_model_fns(models.mlp(features=(64, 64), num_outputs=4))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16)), jnp.float32)
  v = _numpy_variables(fns, x)
  keys = jax.random.split(jax.random.key(3), 2)

  @jax.jit
  def outputs(keys):
    def apply(rate, key, train):
      return fns.apply(v, x, train=train, rng=key, dropout_rate=rate)[0]
    return (jax.vmap(lambda k: apply(0.5, k, True))(keys),
            jax.vmap(lambda k: apply(0.5, k, False))(keys),
            apply(0.0, None, False),
            # A traced per-variant rate, as the engine passes it.
            jax.vmap(lambda r, k: apply(r, k, True))(jnp.array([0.0, 0.5]), keys))

  train_out, eval_out, plain, per_rate = outputs(keys)
  assert not np.allclose(train_out[0], train_out[1])  # Different keys, masks.
  np.testing.assert_array_equal(eval_out[0], eval_out[1])  # Off at eval.
  np.testing.assert_allclose(eval_out[0], plain, rtol=1e-6)
  # A variant at rate 0 is the deterministic net (batched matmuls may sum
  # in another order: within 1e-6 of the scale); at 0.5 it is not.
  np.testing.assert_allclose(per_rate[0], plain, rtol=1e-6,
                             atol=1e-6 * float(np.abs(plain).max()))
  assert not np.allclose(per_rate[1], plain)


# --------------------------------------------------------------------------
# Training: each model/loss pair reduces its loss within a small budget.

def _train(model, loss_fn, ds, hp, *, steps, batch_size=32, metrics=None):
  """Trains a population (one step per period, so the first period's
  batch_objective is the loss at initialisation); returns state and history."""
  prog = train_lib.make_train(
      models.to_model_fns(model), optim.wrap(optim.get("adam"), {}, {"learning_rate": 1e-3}),
      loss_fn, metrics if metrics is not None else losses.default_metrics(ds.task),
      train_lib.TrainSettings(steps=steps, batch_size=batch_size, eval_every=1))
  data = {"train": dict(ds.train), "test": dict(ds.test)}
  data = jax.tree.map(jnp.asarray, data)
  hp = jax.tree.map(jnp.asarray, hp)
  state = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))(hp, data)
  chunk = jax.jit(jax.vmap(prog.period, in_axes=(0, 0, None)))
  history = []
  for _ in range(steps):
    state, stats = chunk(state, hp, data)
    history.append(jax.tree.map(np.asarray, stats))
  return prog, state, history, data


def test_mlp_trains_with_vectorized_activation_and_loss_choice():
  ds = data_lib.load_cached("digits")
  names = ("cross_entropy", "mse")
  # 2 losses x 4 activations in ONE program, by index.
  loss_idx = np.repeat(np.arange(2), 4).astype(np.float32)
  act_idx = np.tile(np.arange(4), 2).astype(np.float32)
  hp = {"seed": np.arange(8, dtype=np.uint32),
        "optimizer": {"learning_rate": np.full(8, 1e-2, np.float32)},
        "loss": {"loss_index": loss_idx, "label_smoothing": np.zeros(8, np.float32)},
        "model": {"activation_index": act_idx,
                  "dropout_rate": np.tile([0.0, 0.1], 4).astype(np.float32)}}
  _, state, hist, _ = _train(models.mlp(features=(32,), activation=ACTS),
                             losses.choice(names), ds, hp, steps=40)
  first, last = hist[0]["batch_objective"], hist[-1]["test_objective"]
  assert np.all(last < 0.6 * first), (first, last)
  assert np.all(hist[-1]["test_accuracy"] > 0.7), hist[-1]["test_accuracy"]
  # The index picked the loss: CE starts near ln(10), MSE (Brier) below 1.
  assert np.all(first[:4] > 1.5) and np.all(first[4:] < 1.2)
  assert not bool(state.diverged.any())


def test_mlp_regression_with_mse_and_rmse():
  ds = data_lib.load_cached("regression", num_train=256, num_test=128)
  hp = {"seed": np.arange(2, dtype=np.uint32),
        "optimizer": {"learning_rate": np.array([3e-3, 1e-2], np.float32)}}
  _, _, hist, _ = _train(models.mlp(features=(32,), activation="tanh", num_outputs=1),
                         losses.mse, ds, hp, steps=40)
  last = hist[-1]
  assert np.all(last["test_objective"] < 0.5 * hist[0]["batch_objective"])
  # For the mean-over-elements MSE the loss is the metric; RMSE is its root.
  np.testing.assert_allclose(last["test_objective"], last["test_mse"], rtol=1e-5)
  _, rmse = losses.derived_metrics("regression")["rmse"]
  assert rmse(float(last["test_mse"][0])) == pytest.approx(math.sqrt(last["test_mse"][0]))


def test_cnn_trains_with_per_variant_batch_norm():
  ds = data_lib.load_cached("digits", as_images=True)
  hp = {"seed": np.array([0, 1, 0, 1], np.uint32),
        "optimizer": {"learning_rate": np.array([1e-2, 1e-2, 3e-2, 3e-2], np.float32)}}
  model = models.cnn(channels=(8,), head=(), batch_norm=True)
  prog, state, hist, data = _train(model, losses.cross_entropy, ds, hp, steps=50)
  assert np.all(hist[-1]["test_objective"] < 0.5 * hist[0]["batch_objective"])
  assert np.all(hist[-1]["test_accuracy"] > 0.7)

  # Batch-norm statistics are per variant and moved away from their init.
  mean = np.asarray(state.model_state["batch_stats"]["bn_0"]["mean"])  # [V, C]
  assert mean.shape == (4, 8)
  assert np.abs(mean).max() > 1e-3
  for i in range(4):
    for j in range(i + 1, 4):
      assert not np.allclose(mean[i], mean[j])

  # Eval uses the running statistics: the evaluator's loss is the loss of
  # the train=False outputs, which differ from batch-statistics outputs.
  fns = models.to_model_fns(model)
  v0 = jax.tree.map(lambda a: a[0], {"params": state.params, **state.model_state})
  x, batch = data["test"]["x"], data["test"]
  eval_out = fns.apply(v0, x, train=False)[0]
  batch_out = fns.apply(v0, x, train=True, rng=jax.random.key(0))[0]
  assert not np.allclose(eval_out, batch_out, atol=1e-3)
  np.testing.assert_allclose(losses.cross_entropy(eval_out, batch),
                             hist[-1]["test_objective"][0], rtol=1e-4)
  # Eval is deterministic, whatever the key and the dropout rate.
  np.testing.assert_array_equal(
      eval_out, fns.apply(v0, x, train=False, rng=jax.random.key(5), dropout_rate=0.5)[0])


def test_rnn_language_model_trains_on_text(text_small):
  hp = {"seed": np.arange(2, dtype=np.uint32),
        "optimizer": {"learning_rate": np.array([3e-2, 5e-2], np.float32)}}
  model = models.rnn(cell="lstm", embed_dim=16, hidden=32,
                     num_outputs=text_small.num_classes)
  _, _, hist, _ = _train(model, losses.cross_entropy, text_small, hp, steps=60)
  first, last = hist[0]["batch_objective"], hist[-1]
  # From a uniform guess (ln V) towards character statistics.
  np.testing.assert_allclose(first, math.log(text_small.num_classes), rtol=0.1)
  assert np.all(last["test_objective"] < first - 0.5), (first, last["test_objective"])
  np.testing.assert_allclose(last["test_nll"], last["test_objective"], rtol=1e-5)
  assert np.all(last["test_accuracy"] > 0.1)
