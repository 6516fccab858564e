"""Models: the adapter from user code to pure (init, apply), and named models.

jaxsweep trains anything it can turn into a :class:`ModelFns`:

* a ``flax.linen.Module`` instance;
* a *model factory*, ``fn(**structural_hparams) -> Module`` (e.g.
  ``lambda features, activation: MLP(features, activation)``): its keyword
  arguments are structural hyperparameters and split the sweep into compile
  groups;
* an ``(init, apply)`` pair of pure functions, ``init(key, x) -> params`` and
  ``apply(params, x) -> outputs``;
* a Flax NNX module factory wrapped with :func:`from_nnx`;
* a :class:`ModelFns` built by hand.

Keyword arguments of a Linen module's ``__call__`` (other than the input and
the train flag) are *value* hyperparameters: they are traced, so e.g. a swept
``dropout_rate`` never recompiles.

Named models (``model: {name: ...}`` in configs): ``mlp``, ``cnn`` (images)
and ``rnn`` (a character-level language model: int tokens ``[B, T]`` in,
logits ``[B, T, vocab]`` out). Each factory takes ``num_outputs`` (filled
from the data) and ``kernel_init``. Given a *tuple* of activation names,
``mlp`` and ``cnn`` pick one per variant with ``lax.switch`` on the traced
call argument ``activation_index``, so an activation sweep can share one
compiled program instead of forming compile groups.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsweep import errors

# Names under which a module's __call__ receives the training flag.
_TRAIN_FLAGS = ("train", "training", "is_training")
_EVAL_FLAGS = ("deterministic", "eval", "use_running_average")


class ModelFns(NamedTuple):
  """A model as pure functions, for one variant.

  Attributes:
    init: ``(key, x) -> variables``, a dict of collections with ``"params"``.
    apply: ``(variables, x, *, train, rng, **hparams) -> (outputs, updates)``
      where ``updates`` holds the new values of mutable collections (e.g.
      ``batch_stats``) when ``train`` is true, else ``{}``.
    call_args: names of traced keyword arguments that ``apply`` accepts.
  """

  init: Callable[..., Any]
  apply: Callable[..., Any]
  call_args: tuple[str, ...] = ()


def _train_flag(fn) -> tuple[str | None, bool]:
  """Finds how ``fn`` is told train vs eval: (argument name, value for train)."""
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return None, True
  for name in _TRAIN_FLAGS:
    if name in params:
      return name, True
  for name in _EVAL_FLAGS:
    if name in params:
      return name, False
  return None, True


def _call_args(fn, flag: str | None) -> tuple[str, ...]:
  try:
    params = list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):
    return ()
  out = []
  for i, p in enumerate(params):
    if p.name in ("self",) or p.name == flag:
      continue
    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
      continue
    # The first positional argument is the input.
    if i == (1 if params[0].name == "self" else 0):
      continue
    if p.default is inspect.Parameter.empty and p.kind != p.KEYWORD_ONLY:
      continue
    out.append(p.name)
  return tuple(out)


def from_linen(module: nn.Module) -> ModelFns:
  """Wraps a Linen module: non-``params`` collections become mutable state.

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxsweep as js
    >>> fns = js.models.from_linen(nn.Dense(3))
    >>> v = fns.init(jax.random.key(0), jnp.ones((2, 4)))
    >>> fns.apply(v, jnp.ones((2, 4)), train=True, rng=jax.random.key(1))[0].shape
    (2, 3)
  """
  call = type(module).__call__
  flag, train_value = _train_flag(call)
  call_args = _call_args(call, flag)

  def flag_kwargs(train: bool) -> dict:
    if flag is None:
      return {}
    return {flag: train if train_value else not train}

  def init(key, x):
    k_params, k_dropout = jax.random.split(key)
    variables = module.init({"params": k_params, "dropout": k_dropout}, x,
                            **flag_kwargs(False))
    return dict(variables)

  def apply(variables, x, *, train: bool, rng=None, **hparams):
    rngs = {"dropout": rng} if rng is not None else {}
    mutable = [c for c in variables if c != "params"]
    if train and mutable:
      out, updates = module.apply(variables, x, rngs=rngs, mutable=mutable,
                                  **flag_kwargs(True), **hparams)
      return out, dict(updates)
    out = module.apply(variables, x, rngs=rngs, **flag_kwargs(train), **hparams)
    return out, {}

  return ModelFns(init, apply, call_args)


def from_pair(init_fn: Callable, apply_fn: Callable) -> ModelFns:
  """Wraps pure ``init(key, x) -> params`` and ``apply(params, x) -> out``.

  ``apply`` may also take ``train`` and ``rng`` keyword arguments.
  """
  try:
    params = inspect.signature(apply_fn).parameters
  except (TypeError, ValueError):
    params = {}
  flag, train_value = _train_flag(apply_fn)
  takes_rng = "rng" in params
  call_args = tuple(n for n in _call_args(apply_fn, flag) if n != "rng")

  def init(key, x):
    return {"params": init_fn(key, x)}

  def apply(variables, x, *, train: bool, rng=None, **hparams):
    kw = dict(hparams)
    if flag is not None:
      kw[flag] = train if train_value else not train
    if takes_rng:
      kw["rng"] = rng
    return apply_fn(variables["params"], x, **kw), {}

  return ModelFns(init, apply, call_args)


def from_nnx(factory: Callable[..., Any]) -> ModelFns:
  """Wraps a Flax NNX model built by ``factory(rngs=nnx.Rngs(...))``.

  The model is only used through ``nnx.split``/``nnx.merge``: parameters
  (``nnx.Param``) are trained, other state (e.g. batch statistics) is carried
  as mutable model state, per variant. Dropout layers draw from an
  ``nnx.Rngs`` stream that jaxsweep re-seeds from the variant's key each step.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxsweep as js
    >>> from flax import nnx
    >>> fns = js.models.from_nnx(lambda rngs: nnx.Linear(4, 2, rngs=rngs))
    >>> v = fns.init(jax.random.key(0), jnp.ones((3, 4)))
    >>> fns.apply(v, jnp.ones((3, 4)), train=False)[0].shape
    (3, 2)
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top

  def build(key):
    return factory(rngs=nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)))

  graphdef_box = {}

  def graphdef():
    if "g" not in graphdef_box:  # Static structure, identical for all variants.
      abstract = nnx.eval_shape(lambda: build(jax.random.key(0)))
      graphdef_box["g"] = nnx.split(abstract, nnx.Param, ...)[0]
    return graphdef_box["g"]

  def init(key, x):
    del x  # Unused: NNX models know their input size at construction.
    _, params, rest = nnx.split(build(key), nnx.Param, ...)
    return {"params": params, "nnx_state": rest}

  def apply(variables, x, *, train: bool, rng=None, **hparams):
    model = nnx.merge(graphdef(), variables["params"], variables["nnx_state"])
    if train:
      model.train()
    else:
      model.eval()
    if rng is not None:
      nnx.reseed(model, dropout=rng)
    out = model(x, **hparams)
    _, _, rest = nnx.split(model, nnx.Param, ...)
    return out, ({"nnx_state": rest} if train else {})

  return ModelFns(init, apply, ())


def to_model_fns(model: Any) -> ModelFns:
  """Turns anything :func:`jaxsweep.run` accepts as a model into ModelFns."""
  if isinstance(model, ModelFns):
    return model
  if isinstance(model, nn.Module):
    return from_linen(model)
  if isinstance(model, tuple) and len(model) == 2 and all(map(callable, model)):
    return from_pair(*model)
  try:
    from flax import nnx  # pylint: disable=g-import-not-at-top
    if isinstance(model, nnx.Module):
      raise errors.ModelError(
          "an NNX module instance cannot be re-initialised per variant.",
          key="model", fix="pass js.models.from_nnx(lambda rngs: MyModel(..., rngs=rngs))")
  except ImportError:  # pragma: no cover
    pass
  raise errors.ModelError(
      f"cannot use {type(model).__name__} as a model.", key="model",
      fix="pass a flax.linen Module, a factory returning one, an (init, apply) "
          "pair, js.models.from_nnx(factory) or js.models.ModelFns")


def is_factory(model: Any) -> bool:
  """True for a callable that builds a model from hyperparameters."""
  if isinstance(model, (nn.Module, ModelFns, tuple)):
    return False
  return callable(model)


def count_params(params) -> int:
  """Number of scalars in a parameter pytree."""
  return int(sum(jnp.size(x) for x in jax.tree.leaves(params)))


# --------------------------------------------------------------------------
# Activations and initialisers by name.

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "leaky_relu": nn.leaky_relu,
    "elu": nn.elu,
    "identity": lambda x: x,
}

def orthogonal(scale: float = 1.0):
  """A random orthogonal initializer computed without LAPACK.

  Same distribution as ``flax.linen.initializers.orthogonal`` (the Q factor
  of a Gaussian matrix, signs fixed by diag(R), so Haar-distributed; Mezzadri
  2007), but the Householder QR is written in plain jnp inside a
  ``fori_loop``. Why: the LAPACK QR custom call in a vmapped init hung
  XLA:CPU here (all threads parked on futexes; 5 of 8 runs of a vmapped
  LSTM/GRU init with 128 hidden units, on 1 or 2 virtual devices; 0 of 8
  with a non-QR init). The cost, n rank-1 updates of an n x n matrix, is
  negligible at init.

  Args:
    scale: multiplies the orthogonal matrix.

  Returns:
    ``init(key, shape, dtype) -> array`` for 2-D (or more, flattened to
    ``[prod(shape[:-1]), shape[-1]]``) shapes.
  """

  def init(key, shape, dtype=jnp.float32):
    rows, cols = math.prod(shape[:-1]), shape[-1]
    n, m = max(rows, cols), min(rows, cols)
    z = jax.random.normal(key, (n, m), jnp.float32)
    idx = jnp.arange(n)

    def householder(k, carry):
      r, q = carry  # Invariant: z = q @ r, r zero below the diagonal in columns < k.
      x = jnp.where(idx >= k, r[:, k], 0.0)
      alpha = -jnp.where(x[k] < 0, -1.0, 1.0) * jnp.sqrt(x @ x)
      v = x - alpha * (idx == k)
      vv = v @ v
      beta = jnp.where(vv > 0, 2.0 / jnp.where(vv > 0, vv, 1.0), 0.0)
      return r - beta * jnp.outer(v, v @ r), q - beta * jnp.outer(q @ v, v)

    r, q = jax.lax.fori_loop(0, m, householder, (z, jnp.eye(n, dtype=jnp.float32)))
    q = q[:, :m] * jnp.where(jnp.diag(r[:m]) < 0, -1.0, 1.0)[None, :]
    if rows < cols:
      q = q.T
    return (scale * q).reshape(shape).astype(dtype)

  return init


INITIALIZERS: dict[str, Callable[..., Any]] = {
    "lecun_normal": nn.initializers.lecun_normal,
    "he_normal": nn.initializers.he_normal,
    "glorot_uniform": nn.initializers.glorot_uniform,
    "glorot_normal": nn.initializers.glorot_normal,
    "he_uniform": nn.initializers.he_uniform,
    "orthogonal": orthogonal,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in ACTIVATIONS:
    raise errors.unknown_key(str(name), ACTIVATIONS, what="activation")
  return ACTIVATIONS[name]


def initializer(name: str):
  if name not in INITIALIZERS:
    raise errors.unknown_key(str(name), INITIALIZERS, what="initializer")
  return INITIALIZERS[name]()


Activation = str | tuple[str, ...]


def switch_index(index) -> jax.Array:
  """A (possibly traced, possibly float) choice index as an int32 scalar.

  The engine stacks every dynamic value as float32, so an index can arrive
  as 1.0; it is rounded (``lax.switch`` then clamps it to the branches).
  """
  i = jnp.asarray(index)
  if not jnp.issubdtype(i.dtype, jnp.integer):
    i = jnp.round(i)
  return i.astype(jnp.int32)


def apply_activation(names: Activation, x: jax.Array, index=0) -> jax.Array:
  """Applies one activation, or the ``index``-th of a tuple of them.

  With a tuple of names the choice is a *value* hyperparameter: ``index`` may
  be traced per variant, and under ``vmap`` ``lax.switch`` becomes a select
  over all candidates, so variants with different activations share one
  compiled program.

  Examples:
    >>> import jax.numpy as jnp, jaxsweep as js
    >>> js.models.apply_activation(("relu", "tanh"), jnp.array([-1.0]), 0)
    Array([0.], dtype=float32)
  """
  if isinstance(names, str):
    return activation(names)(x)
  fns = [activation(n) for n in names]
  if len(fns) == 1:
    return fns[0](x)
  return jax.lax.switch(switch_index(index), fns, x)


def _check_activation(value: Any, key: str = "model.activation") -> Activation:
  """Validates a name or a list of names; lists become tuples (hashable)."""
  names_ = (value,) if isinstance(value, str) else tuple(value)
  if not names_:
    raise errors.ConfigError("the activation list is empty.", key=key,
                             fix="give a name or a non-empty list of names")
  for n in names_:
    if n not in ACTIVATIONS:
      raise errors.unknown_key(f"{key}={n}", ACTIVATIONS, what="activation")
  return value if isinstance(value, str) else names_


def _check_widths(value: Any, key: str, *, allow_empty: bool = False) -> tuple[int, ...]:
  widths = (value,) if isinstance(value, int) else tuple(int(f) for f in value)
  if any(w < 1 for w in widths) or (not widths and not allow_empty):
    raise errors.ConfigError(f"widths must be >= 1, got {list(widths)}.", key=key)
  return widths


def dropout(x, rate, rng, *, train: bool):
  """Inverted dropout whose ``rate`` may be a traced per-variant value.

  ``flax.linen.Dropout`` branches on ``rate == 0`` in Python, which a traced
  rate cannot do; this version is exact (identity) at rate 0 and at eval.
  """
  if not train or _is_zero(rate):
    return x
  keep = 1.0 - jnp.asarray(rate, jnp.float32)
  mask = jax.random.bernoulli(rng, keep, x.shape)
  return jnp.where(mask, x / jnp.maximum(keep, 1e-6), 0.0).astype(x.dtype)


def _is_zero(x) -> bool:
  return isinstance(x, (int, float)) and x == 0


class MLP(nn.Module):
  """A multi-layer perceptron.

  Attributes:
    features: hidden layer widths (depth = len(features)).
    num_outputs: width of the output layer.
    activation: name in :data:`ACTIVATIONS`, or a tuple of names chosen per
      variant by the traced ``activation_index`` call argument.
    batch_norm: batch normalisation after each hidden Dense.
    kernel_init: name in :data:`INITIALIZERS`.
  """

  features: Sequence[int] = (128, 128)
  num_outputs: int = 10
  activation: Activation = "relu"
  batch_norm: bool = False
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout_rate=0.0,
               activation_index=0):
    """Logits for ``x`` (any trailing shape, flattened).

    Args:
      x: ``[B, ...]`` inputs.
      train: batch statistics and dropout on.
      dropout_rate: traced dropout rate after each hidden layer.
      activation_index: traced index into a tuple ``activation`` (ignored
        for a single name).
    """
    x = x.reshape((x.shape[0], -1))
    for width in self.features:
      x = nn.Dense(int(width), kernel_init=initializer(self.kernel_init))(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = apply_activation(self.activation, x, activation_index)
      if train and not _is_zero(dropout_rate):
        x = dropout(x, dropout_rate, self.make_rng("dropout"), train=train)
    return nn.Dense(self.num_outputs, kernel_init=initializer(self.kernel_init))(x)


POOLINGS = ("max", "avg", "none")


class CNN(nn.Module):
  """A small convolutional network: conv blocks, then a dense head.

  Each block is ``Conv(k x k, SAME) -> [BatchNorm] -> activation -> pool(2x2)
  -> dropout``; pooling uses SAME padding so a 1x1 map stays 1x1 (deep
  stacks on 8x8 digits do not run out of pixels).

  Attributes:
    channels: output channels of each conv block.
    kernel_size: square kernel size.
    pooling: ``max``, ``avg`` or ``none`` (2x2, stride 2).
    head: widths of the hidden dense layers after flattening.
    num_outputs: width of the output layer.
    activation: a name, or a tuple of names chosen by ``activation_index``.
    batch_norm: batch normalisation after each convolution.
    kernel_init: name in :data:`INITIALIZERS` (convolutions and dense).
  """

  channels: Sequence[int] = (16, 32)
  kernel_size: int = 3
  pooling: str = "max"
  head: Sequence[int] = (64,)
  num_outputs: int = 10
  activation: Activation = "relu"
  batch_norm: bool = False
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout_rate=0.0,
               activation_index=0):
    """Logits for images ``x`` of shape ``[B, H, W, C]`` (or ``[B, H, W]``).

    Args:
      x: images; a missing channel axis is added.
      train: batch statistics and dropout on.
      dropout_rate: traced dropout rate after each block and head layer.
      activation_index: traced index into a tuple ``activation``.
    """
    if x.ndim == 3:
      x = x[..., None]
    if x.ndim != 4:
      raise ValueError(
          f"the cnn model needs images [B, H, W, C], got inputs of shape {x.shape}; "
          "for digits set data.as_images: true")
    init = initializer(self.kernel_init)
    k = int(self.kernel_size)
    drop = train and not _is_zero(dropout_rate)
    for c in self.channels:
      x = nn.Conv(int(c), (k, k), padding="SAME", kernel_init=init)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = apply_activation(self.activation, x, activation_index)
      if self.pooling == "max":
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
      elif self.pooling == "avg":
        x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME",
                        count_include_pad=False)
      if drop:
        x = dropout(x, dropout_rate, self.make_rng("dropout"), train=train)
    x = x.reshape((x.shape[0], -1))
    for width in self.head:
      x = nn.Dense(int(width), kernel_init=init)(x)
      x = apply_activation(self.activation, x, activation_index)
      if drop:
        x = dropout(x, dropout_rate, self.make_rng("dropout"), train=train)
    return nn.Dense(self.num_outputs, kernel_init=init)(x)


CELLS: dict[str, Callable[..., nn.RNNCellBase]] = {
    "lstm": nn.OptimizedLSTMCell,
    "gru": nn.GRUCell,
    "simple": nn.SimpleCell,
}


class RecurrentLM(nn.Module):
  """A character-level recurrent language model.

  ``Embed(vocab, embed_dim) -> layers x RNN(cell, hidden) -> Dense(vocab)``,
  with dropout (traced rate) on the output of each recurrent layer.

  Attributes:
    num_outputs: vocabulary size (input tokens are ids below it).
    embed_dim: embedding width.
    cell: ``lstm``, ``gru`` or ``simple`` (Elman, tanh).
    hidden: recurrent state width.
    layers: number of stacked recurrent layers.
    kernel_init: name in :data:`INITIALIZERS` for the input kernels of the
      cells and the output layer; recurrent kernels are orthogonal
      (:func:`orthogonal`, as Flax's default but without LAPACK).
  """

  num_outputs: int = 128
  embed_dim: int = 32
  cell: str = "lstm"
  hidden: int = 128
  layers: int = 1
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout_rate=0.0):
    """Next-token logits ``[B, T, vocab]`` for int tokens ``x`` ``[B, T]``."""
    if x.ndim != 2:
      raise ValueError(f"the rnn model needs int tokens [B, T], got shape {x.shape}")
    init = initializer(self.kernel_init)
    h = nn.Embed(self.num_outputs, self.embed_dim)(x.astype(jnp.int32))
    for _ in range(self.layers):
      h = nn.RNN(CELLS[self.cell](features=self.hidden, kernel_init=init,
                                  recurrent_kernel_init=orthogonal()))(h)
      if train and not _is_zero(dropout_rate):
        h = dropout(h, dropout_rate, self.make_rng("dropout"), train=train)
    return nn.Dense(self.num_outputs, kernel_init=init)(h)


# --------------------------------------------------------------------------
# Registry of named model factories (``model: {name: mlp, ...}`` in configs).

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
  """Decorator registering a model factory ``fn(**config) -> Module``."""
  def deco(fn):
    _MODELS[name] = fn
    return fn
  return deco


def names() -> list[str]:
  return sorted(_MODELS)


def factory(name: str) -> Callable[..., nn.Module]:
  if name not in _MODELS:
    raise errors.unknown_key(str(name), _MODELS, what="model")
  return _MODELS[name]


@register("mlp")
def mlp(*, features: Sequence[int] = (128, 128), num_outputs: int = 10,
        activation: Activation = "relu", batch_norm: bool = False,
        kernel_init: str = "lecun_normal") -> MLP:
  """The MLP; ``features`` is the width of each hidden layer.

  ``activation`` may be a list of names: the module then picks one per
  variant from the traced call argument ``activation_index``.
  """
  features = _check_widths(features, "model.features", allow_empty=True)
  activation = _check_activation(activation)
  initializer(kernel_init)
  return MLP(features=features, num_outputs=int(num_outputs),
             activation=activation, batch_norm=bool(batch_norm),
             kernel_init=kernel_init)


@register("cnn")
def cnn(*, channels: Sequence[int] = (16, 32), kernel_size: int = 3,
        pooling: str = "max", head: Sequence[int] = (64,), num_outputs: int = 10,
        activation: Activation = "relu", batch_norm: bool = False,
        kernel_init: str = "lecun_normal") -> CNN:
  """The CNN (:class:`CNN`): conv blocks of ``channels``, a dense ``head``.

  Use it on images, e.g. ``data: {name: digits, as_images: true}``.
  """
  channels = _check_widths(channels, "model.channels")
  head = _check_widths(head, "model.head", allow_empty=True)
  if int(kernel_size) < 1:
    raise errors.ConfigError(f"kernel_size must be >= 1, got {kernel_size}.",
                             key="model.kernel_size")
  if pooling not in POOLINGS:
    raise errors.unknown_key(f"model.pooling={pooling}", POOLINGS, what="pooling")
  activation = _check_activation(activation)
  initializer(kernel_init)
  return CNN(channels=channels, kernel_size=int(kernel_size), pooling=pooling,
             head=head, num_outputs=int(num_outputs), activation=activation,
             batch_norm=bool(batch_norm), kernel_init=kernel_init)


@register("rnn")
def rnn(*, embed_dim: int = 32, cell: str = "lstm", hidden: int = 128,
        layers: int = 1, num_outputs: int = 128,
        kernel_init: str = "lecun_normal") -> RecurrentLM:
  """The recurrent language model (:class:`RecurrentLM`).

  ``num_outputs`` is the vocabulary size (filled from the data).
  """
  if cell not in CELLS:
    raise errors.unknown_key(f"model.cell={cell}", CELLS, what="recurrent cell")
  for k, v in (("embed_dim", embed_dim), ("hidden", hidden), ("layers", layers),
               ("num_outputs", num_outputs)):
    if isinstance(v, bool) or int(v) < 1:
      raise errors.ConfigError(f"{k} must be a positive integer, got {v!r}.",
                               key=f"model.{k}")
  initializer(kernel_init)
  return RecurrentLM(num_outputs=int(num_outputs), embed_dim=int(embed_dim),
                     cell=cell, hidden=int(hidden), layers=int(layers),
                     kernel_init=kernel_init)


def build(name: str, **kwargs) -> nn.Module:
  """Builds a registered model, with clear errors for unknown arguments."""
  fn = factory(name)
  params = inspect.signature(fn).parameters
  for k in kwargs:
    if k not in params:
      raise errors.unknown_key(f"model.{k}", [f"model.{p}" for p in params],
                               what=f"argument of model '{name}'")
  return fn(**kwargs)



