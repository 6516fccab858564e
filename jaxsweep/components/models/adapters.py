"""The adapter from user code to pure ``(init, apply)`` functions.

jaxsweep trains anything it can turn into a :class:`ModelFns`:

* a ``flax.linen.Module`` instance (:func:`from_linen`);
* a *model factory*, ``fn(**structural_hparams) -> Module``: its keyword
  arguments are structural hyperparameters (one compile group per value);
* an ``(init, apply)`` pair of pure functions (:func:`from_pair`);
* a Flax NNX module factory wrapped with :func:`from_nnx`;
* a :class:`ModelFns` built by hand.

Keyword arguments of a Linen module's ``__call__`` (other than the input and
the train flag) are *value* hyperparameters: they are traced, so e.g. a swept
``dropout_rate`` never recompiles.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsweep import errors

# Names under which a module's __call__ receives the training flag.
_TRAIN_FLAGS = ("train", "training", "is_training")
_EVAL_FLAGS = ("deterministic", "eval", "use_running_average")


class ModelFns(NamedTuple):
  """A model as pure functions, for one variant.

  Attributes:
    init: ``(key, x, **hparams) -> variables``, a dict of collections with
      ``"params"``; it receives the traced call arguments named in
      ``init_args`` (e.g. ``features_index``, which picks the variant's
      widths in a padded network), the same values ``apply`` gets.
    apply: ``(variables, x, *, train, rng, **hparams) -> (outputs, updates)``
      where ``updates`` holds the new values of mutable collections (e.g.
      ``batch_stats``) when ``train`` is true, else ``{}``.
    call_args: names of traced keyword arguments that ``apply`` accepts.
    call_defaults: their defaults, where known (used for variants that do
      not set them).
    init_args: the call arguments ``init`` takes too.
  """

  init: Callable[..., Any]
  apply: Callable[..., Any]
  call_args: tuple[str, ...] = ()
  call_defaults: Mapping[str, Any] = types.MappingProxyType({})
  init_args: tuple[str, ...] = ()


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


def _call_defaults(fn, names: tuple[str, ...]) -> dict[str, Any]:
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return {}
  return {n: params[n].default for n in names
          if n in params and params[n].default is not inspect.Parameter.empty}


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

  def init(key, x, **hparams):
    k_params, k_dropout = jax.random.split(key)
    variables = module.init({"params": k_params, "dropout": k_dropout}, x,
                            **flag_kwargs(False), **hparams)
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

  return ModelFns(init, apply, call_args, _call_defaults(call, call_args), call_args)


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

  return ModelFns(init, apply, call_args, _call_defaults(apply_fn, call_args))


def from_nnx(factory: Callable[..., Any]) -> ModelFns:
  """Wraps a Flax NNX model built by ``factory(rngs=nnx.Rngs(...))``.

  The model is only used through ``nnx.split``/``nnx.merge``, with its state
  held as plain arrays (pure dicts), so every variant has its own:

  * ``nnx.Param`` values are the trained ``params``;
  * other variables (``nnx.BatchStat``: ``nnx.BatchNorm``'s running mean and
    variance) are mutable model state under ``nnx_state``, updated by each
    training step and read at evaluation;
  * RNG streams (``nnx.RngKey`` / ``nnx.RngCount``, e.g. the stream an
    ``nnx.Dropout`` keeps) are not carried: each training step reseeds every
    stream from the variant's own key for that step, so dropout masks differ
    between variants and between steps.

  ``factory`` gets ``nnx.Rngs(key, params=key, dropout=...)`` from the
  variant's seed. Evaluation calls ``model.eval()`` (running averages, no
  dropout): deterministic.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxsweep as js
    >>> from flax import nnx
    >>> fns = js.models.from_nnx(lambda rngs: nnx.Linear(4, 2, rngs=rngs))
    >>> v = fns.init(jax.random.key(0), jnp.ones((3, 4)))
    >>> fns.apply(v, jnp.ones((3, 4)), train=False)[0].shape
    (3, 2)
  """
  import flax.nnx as nnx  # pylint: disable=g-import-not-at-top  # Only NNX users pay for it.

  def build(key):
    return factory(rngs=nnx.Rngs(jax.random.fold_in(key, 2), params=key,
                                 dropout=jax.random.fold_in(key, 1)))

  static = {}

  def structure():
    """The graph (static, the same for every variant) and the RNG state's
    shapes, from an abstract model."""
    if not static:
      abstract = nnx.eval_shape(lambda: build(jax.random.key(0)))
      graphdef, _, rngs, _ = nnx.split(abstract, nnx.Param, nnx.RngState, ...)
      static["graphdef"], static["rngs"] = graphdef, nnx.to_pure_dict(rngs)
    return static["graphdef"], static["rngs"]

  def split(model):
    _, params, _, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

  def rng_state(rng):
    """Every stream's key from ``rng`` (the i-th stream's ``fold_in(rng,
    i)``), every count 0."""
    leaves, treedef = jax.tree.flatten(structure()[1])
    out = []
    for i, leaf in enumerate(leaves):
      if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        key = jax.random.fold_in(rng, i)
        out.append(jax.random.split(key, leaf.shape) if leaf.shape else key)
      else:
        out.append(jnp.zeros(leaf.shape, leaf.dtype))
    return jax.tree.unflatten(treedef, out)

  def init(key, x, **hparams):
    del x, hparams  # Unused: NNX models know their input size at construction.
    params, rest = split(build(key))
    return {"params": params, "nnx_state": rest}

  def apply(variables, x, *, train: bool, rng=None, **hparams):
    graphdef, _ = structure()
    # Eval needs no randomness; a fixed key keeps it deterministic.
    rngs = rng_state(jax.random.key(0) if rng is None else rng)
    # As jax arrays: NNX writes batch statistics in place (not into numpy's).
    params, rest = jax.tree.map(jnp.asarray,
                                (variables["params"], variables["nnx_state"]))
    model = nnx.merge(graphdef, params, rngs, rest)
    if train:
      model.train()
    else:
      model.eval()
    out = model(x, **hparams)
    return out, ({"nnx_state": split(model)[1]} if train else {})

  return ModelFns(init, apply, ())


def to_model_fns(model: Any) -> ModelFns:
  """Turns anything :func:`jaxsweep.run` accepts as a model into ModelFns."""
  if isinstance(model, ModelFns):
    return model
  if isinstance(model, nn.Module):
    return from_linen(model)
  if isinstance(model, tuple) and len(model) == 2 and all(map(callable, model)):
    return from_pair(*model)
  # flax.nnx is imported where it is used (0.22 s of every run's imports): a
  # model can only be an NNX module when the user imported flax.nnx.
  nnx_mod = sys.modules.get("flax.nnx")
  if nnx_mod is not None and isinstance(model, nnx_mod.Module):
    raise errors.ModelError(
        "an NNX module instance cannot be re-initialised per variant.",
        key="model", fix="pass js.models.from_nnx(lambda rngs: MyModel(..., rngs=rngs))")
  raise errors.ModelError(
      f"cannot use {type(model).__name__} as a model.", key="model",
      fix="pass a flax.linen Module, a factory returning one, an (init, apply) "
          "pair, js.models.from_nnx(factory) or js.models.ModelFns")


def linen_factory(obj: Any) -> Any:
  """A Linen module class as a factory of its fields; anything else as it is.

  A module class's signature has Flax's own ``parent`` and ``name``; the
  factory's has only the module's fields, so a config's keys are checked
  against them (``model: {name: "mynets:Net", width: 64}``).
  """
  if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
    return obj
  params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for n, p in inspect.signature(obj).parameters.items()
            if n not in ("parent", "name") and p.kind is not p.VAR_KEYWORD]

  def factory(**kwargs):
    return obj(**kwargs)

  factory.__signature__ = inspect.Signature(params)
  factory.__name__ = factory.__qualname__ = obj.__name__
  factory.__doc__ = obj.__doc__
  return factory


def is_factory(model: Any) -> bool:
  """True for a callable that builds a model from hyperparameters."""
  if isinstance(model, (nn.Module, ModelFns, tuple)):
    return False
  return callable(model)


def count_params(params) -> int:
  """Number of scalars in a parameter pytree (of one variant)."""
  return int(sum(np.size(x) for x in jax.tree.leaves(params)))
