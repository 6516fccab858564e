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
"""

from __future__ import annotations

import inspect
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

INITIALIZERS: dict[str, Callable[..., Any]] = {
    "lecun_normal": nn.initializers.lecun_normal,
    "he_normal": nn.initializers.he_normal,
    "glorot_uniform": nn.initializers.glorot_uniform,
    "glorot_normal": nn.initializers.glorot_normal,
    "he_uniform": nn.initializers.he_uniform,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in ACTIVATIONS:
    raise errors.unknown_key(str(name), ACTIVATIONS, what="activation")
  return ACTIVATIONS[name]


def initializer(name: str):
  if name not in INITIALIZERS:
    raise errors.unknown_key(str(name), INITIALIZERS, what="initializer")
  return INITIALIZERS[name]()


def dropout(x, rate, rng, *, train: bool):
  """Inverted dropout whose ``rate`` may be a traced per-variant value.

  ``flax.linen.Dropout`` branches on ``rate == 0`` in Python, which a traced
  rate cannot do; this version is exact (identity) at rate 0 and at eval.
  """
  if not train or (isinstance(rate, (int, float)) and rate == 0.0):
    return x
  keep = 1.0 - jnp.asarray(rate, jnp.float32)
  mask = jax.random.bernoulli(rng, keep, x.shape)
  return jnp.where(mask, x / jnp.maximum(keep, 1e-6), 0.0).astype(x.dtype)


class MLP(nn.Module):
  """A multi-layer perceptron.

  Attributes:
    features: hidden layer widths (depth = len(features)).
    num_outputs: width of the output layer.
    activation: name in :data:`ACTIVATIONS`.
    batch_norm: batch normalisation after each hidden Dense.
    kernel_init: name in :data:`INITIALIZERS`.
  """

  features: Sequence[int] = (128, 128)
  num_outputs: int = 10
  activation: str = "relu"
  batch_norm: bool = False
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout_rate=0.0):
    act = activation(self.activation)
    x = x.reshape((x.shape[0], -1))
    for width in self.features:
      x = nn.Dense(int(width), kernel_init=initializer(self.kernel_init))(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = act(x)
      if train and not (isinstance(dropout_rate, float) and dropout_rate == 0.0):
        x = dropout(x, dropout_rate, self.make_rng("dropout"), train=train)
    return nn.Dense(self.num_outputs, kernel_init=initializer(self.kernel_init))(x)


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
        activation: str = "relu", batch_norm: bool = False,
        kernel_init: str = "lecun_normal") -> MLP:
  """The MLP; ``features`` is the width of each hidden layer."""
  if isinstance(features, int):
    features = (features,)
  features = tuple(int(f) for f in features)
  if any(f < 1 for f in features):
    raise errors.ConfigError(f"layer widths must be >= 1, got {list(features)}.",
                             key="model.features")
  activation_fn = ACTIVATIONS.get(activation)
  if activation_fn is None:
    raise errors.unknown_key("model.activation=" + str(activation),
                             ACTIVATIONS, what="activation")
  initializer(kernel_init)
  return MLP(features=features, num_outputs=int(num_outputs),
             activation=activation, batch_norm=bool(batch_norm),
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



