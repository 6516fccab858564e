"""Optimizers: user factories made vectorizable, and named optimizers.

An optimizer is a *factory* whose keyword arguments are hyperparameters, e.g.
``lambda learning_rate, weight_decay: optax.adamw(learning_rate,
weight_decay=weight_decay)``. jaxsweep wraps it once with
``optax.inject_hyperparams`` so every traced argument (floats, and any swept
number) lives in ``opt_state.hyperparams`` as a float32 array; each
variant's values are written there at init (optax#932), so changing values
never recompiles. Other arguments (integers such as ``decay_steps=200``,
strings, bools) are passed as Python values: Optax checks step counts in
Python (``if not decay_steps > 0``).

The engine passes the loss to ``tx.update`` as ``value=`` (Optax's extra
arguments), so ``optax.contrib.reduce_on_plateau`` works inside a factory;
:func:`reduce_on_plateau` is the same transformation with traceable
arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsweep import errors
from jaxsweep.components import registry


def is_numeric(value: Any) -> bool:
  """Numbers are value hyperparameters; bools and strings are structural."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def traced_by_default(value: Any) -> bool:
  """Whether an optimizer argument with this value (or default) is traced
  unless marked static: floats are; integers, like other non-floats, are
  step counts or sizes that Optax reads in Python, traced only when swept."""
  return isinstance(value, (float, np.floating))


def is_static_zero(value: Any) -> bool:
  """Whether ``value`` is a compile-time 0 (a Python number, not a traced one).

  The registered optimizers drop a transformation (clipping, weight decay)
  when its strength is a compile-time 0, i.e. an argument the planner made
  static (``static=``); a traced 0 keeps the transformation, which then
  does nothing.
  """
  return is_numeric(value) and value == 0


class Injected(NamedTuple):
  """An optimizer whose numeric arguments live in ``opt_state.hyperparams``.

  Attributes:
    tx: the transformation, built once (outside ``vmap``) with placeholder
      values; ``tx.update`` reads each variant's values from its state and
      passes extra arguments (``value=``) on.
    rebuild: ``values -> transformation`` with those values, used by
      :func:`init_state` so values read at ``init`` are honoured per variant.
    factory: the user's factory, and ``static`` / ``traced`` its arguments
      as :func:`wrap` received them (for :func:`untraceable`).
  """

  tx: optax.GradientTransformationExtraArgs
  rebuild: Callable[[Mapping[str, Any]], optax.GradientTransformationExtraArgs]
  factory: Callable[..., optax.GradientTransformation] | None = None
  static: Mapping[str, Any] = {}
  traced: Mapping[str, float] = {}


def wrap(opt_factory: Callable[..., optax.GradientTransformation],
         static: Mapping[str, Any], traced: Mapping[str, float]) -> Injected:
  """Builds the injectable optimizer once, outside ``vmap`` (optax#932).

  Args:
    opt_factory: the user's factory.
    static: structural arguments (bools, strings, numbers marked static),
      bound as Python values.
    traced: numeric arguments with placeholder values; per-variant values
      are written with :func:`init_state`. An argument in neither keeps its
      default: traced if it is a float (:func:`traced_by_default`), else
      passed as a Python value.

  Returns:
    An :class:`Injected` optimizer.

  Examples:
    >>> import jax.numpy as jnp, optax, jaxsweep as js
    >>> opt = js.optim.wrap(optax.sgd, {}, {"learning_rate": 0.1})
    >>> state = js.optim.init_state(opt, {"w": jnp.ones(2)}, {"learning_rate": 0.5})
    >>> float(state.hyperparams["learning_rate"])
    0.5
  """
  # inject_hyperparams traces every numeric default it binds, ints included.
  defaults = registry.signature_args(opt_factory)
  static_args = (*static, *(a for a, d in defaults.items() if a not in static
                            and a not in traced and not traced_by_default(d)))
  # hyperparam_dtype: optax#1414 (float32 whatever the placeholder's type).
  injectable = optax.inject_hyperparams(
      opt_factory, static_args=static_args, hyperparam_dtype=jnp.float32)
  placeholders = {k: float(v) for k, v in traced.items()}

  def rebuild(values: Mapping[str, Any]) -> optax.GradientTransformationExtraArgs:
    return injectable(**static, **{**placeholders, **values})

  return Injected(rebuild({}), rebuild, opt_factory, dict(static), placeholders)


def transformation(opt: Injected | optax.GradientTransformation
                   ) -> optax.GradientTransformation:
  """The optax transformation of an optimizer (injected or plain)."""
  return opt.tx if isinstance(opt, Injected) else opt


def set_hparams(opt_state, values: Mapping[str, Any]):
  """Writes one variant's (traced) values into ``opt_state.hyperparams``.

  Only what ``update`` reads is changed: a state that ``init`` built from a
  value (e.g. Adagrad's initial accumulator) keeps the placeholder's; use
  :func:`init_state` to initialise a variant.
  """
  hp = dict(opt_state.hyperparams)
  for k, v in values.items():
    hp[k] = jnp.asarray(v, jnp.float32)
  return opt_state._replace(hyperparams=hp)


def init_state(opt: Injected | optax.GradientTransformation, params,
               values: Mapping[str, Any]):
  """One variant's optimizer state, initialised with its (traced) values.

  For an :class:`Injected` optimizer the state is built by the factory
  called with the variant's values, so values that ``init`` uses
  (``optax.adagrad``'s ``initial_accumulator_value``, ``optax.rmsprop``'s
  ``initial_scale``) are honoured per variant, not only those ``update``
  reads. The state has the same structure as ``tx.init(params)``.

  Args:
    opt: the optimizer (from :func:`wrap` for per-variant values).
    params: the variant's parameters.
    values: numeric hyperparameter name -> scalar (traced under ``vmap``).

  Returns:
    The optimizer state, with ``values`` in ``.hyperparams``.
  """
  if not isinstance(opt, Injected) or not values:
    return transformation(opt).init(params)
  state = opt.rebuild({k: jnp.asarray(v, jnp.float32) for k, v in values.items()}).init(params)
  return set_hparams(state, values)


# A traced value used where Python needs a concrete one (control flow, int(), numpy).
TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                  jax.errors.TracerIntegerConversionError,
                  jax.errors.TracerArrayConversionError)


def untraceable(opt: Injected, params) -> tuple[str, ...]:
  """The traced arguments a factory cannot take as traced values.

  Each traced argument is traced alone (the others bound as Python values)
  through the factory and ``init``; those that raise a tracer error are
  used in Python control flow, by the factory or by Optax inside it
  (``optax.warmup_cosine_decay_schedule`` tests ``peak_value == 0.0``).

  Args:
    opt: the optimizer from :func:`wrap`.
    params: one variant's parameters (arrays or shape structs).
  """
  out = []
  for name, value in opt.traced.items():
    others = {k: v for k, v in opt.traced.items() if k != name}
    try:
      one = wrap(opt.factory, {**opt.static, **others}, {name: value})
      jax.eval_shape(lambda v, p, one=one, name=name: init_state(one, p, {name: v}),
                     jax.ShapeDtypeStruct((), jnp.float32), params)  # Nothing computes.
    except TRACER_ERRORS:
      out.append(name)
    except Exception:  # pylint: disable=broad-except  # Another fault: not this one's.
      pass
  return tuple(out)


def reduce_on_plateau(factor=0.1, patience=10, *, rtol=1e-4, atol=0.0, cooldown=0,
                      accumulation_size=1, min_scale=0.0
                      ) -> optax.GradientTransformationExtraArgs:
  """``optax.contrib.reduce_on_plateau`` with every argument traceable.

  The same state (``optax.contrib.ReduceLROnPlateauState``) and arithmetic
  as Optax's, whose argument checks (``if factor <= 0.0``) need Python
  numbers: here ``factor`` and ``patience`` may be per-variant values. The
  update scales the updates by the current scale and reads the loss from
  ``update(..., value=loss)``, which the engine passes.

  Args:
    factor: the scale is multiplied by it after ``patience`` windows
      without improvement; 1 never reduces.
    patience: windows without improvement before reducing (a float is
      compared with the integer count).
    rtol, atol: an improvement is ``avg < (1 - rtol) * best - atol``.
    cooldown: windows to wait after a reduction.
    accumulation_size: losses averaged per window (the engine passes each
      step's training batch loss).
    min_scale: the scale never goes below it.

  Examples:
    >>> import jax.numpy as jnp, jaxsweep as js
    >>> tx = js.optim.reduce_on_plateau(factor=0.5, patience=1)
    >>> params = {"w": jnp.ones(2)}
    >>> state = tx.init(params)
    >>> for loss in (1.0, 1.0, 1.0):
    ...   _, state = tx.update(params, state, params, value=jnp.asarray(loss))
    >>> float(state.scale)
    0.25
  """
  def init_fn(params):
    low, high = optax.tree.dtype(params, "lowest"), optax.tree.dtype(params, "highest")
    return optax.contrib.ReduceLROnPlateauState(
        scale=jnp.asarray(1.0, low), best_value=jnp.asarray(jnp.inf, high),
        plateau_count=jnp.asarray(0, jnp.int32), cooldown_count=jnp.asarray(0, jnp.int32),
        count=jnp.asarray(0, jnp.int32), avg_value=jnp.asarray(0.0, high))

  def update_scale(state):
    improved = state.avg_value < (1 - rtol) * state.best_value - atol
    plateau = jnp.where(improved, 0, state.plateau_count + 1)
    hit = plateau == patience
    cooling = state.cooldown_count > 0  # Optax's lax.cond, as selects.
    scale = jnp.maximum(jnp.where(hit, state.scale * factor, state.scale), min_scale)
    return state._replace(
        best_value=jnp.where(improved, state.avg_value, state.best_value
                             ).astype(state.best_value.dtype),
        plateau_count=jnp.where(cooling | hit, 0, plateau).astype(jnp.int32),
        scale=jnp.where(cooling, state.scale, scale).astype(state.scale.dtype),
        cooldown_count=jnp.where(cooling, state.cooldown_count - 1,
                                 jnp.where(hit, cooldown, 0)).astype(jnp.int32),
        count=jnp.asarray(0, jnp.int32), avg_value=jnp.zeros_like(state.avg_value))

  def update_fn(updates, state, params=None, *, value, **extra_args):
    del params, extra_args  # Unused.
    count = state.count + 1
    avg = (state.count * state.avg_value + jnp.asarray(value, state.avg_value.dtype)) / count
    state = state._replace(avg_value=avg.astype(state.avg_value.dtype), count=count)
    state = jax.lax.cond(count == accumulation_size, update_scale, lambda s: s, state)
    return jax.tree.map(lambda g: state.scale * g, updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --------------------------------------------------------------------------
# Learning-rate schedules: Optax's, with step counts that may be traced.
#
# Optax checks its step counts in Python (``if not decay_steps > 0``), so a
# per-variant (traced) count cannot reach it. The cosine shapes below are
# Optax's schedules evaluated in units of their span (``count / span`` with
# a span of 1), which is the same function and lets the span be traced.
# ``exponential`` and ``step`` are one line each because Optax also checks
# their rate in Python (``decay_rate == 0``, ``scale >= 0``); the tests
# compare every one with the Optax schedule of the same arguments.

SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential", "step",
             "reduce_on_plateau")
STEP_BOUNDARIES = (0.5, 0.75)  # The ``step`` schedule's boundaries, as fractions of the run.


def _cosine(learning_rate, steps) -> Callable:
  """``optax.schedules.cosine_decay_schedule(learning_rate, steps)``, traceable ``steps``."""
  unit = optax.schedules.cosine_decay_schedule(1.0, decay_steps=1)
  return lambda count: learning_rate * unit(count / jnp.maximum(steps, 1.0))


def _factor(name: str, learning_rate, *, total_steps, warmup_steps, decay_rate,
            decay_steps) -> Callable:
  """``count -> lr`` of one named schedule."""
  if name in ("constant", "reduce_on_plateau"):  # The latter scales the updates instead.
    return optax.schedules.constant_schedule(learning_rate)
  if name == "cosine":
    return _cosine(learning_rate, total_steps)
  if name == "warmup_cosine":  # optax.schedules.warmup_cosine_decay_schedule(0, lr, W, T).
    warm = optax.schedules.linear_schedule(0.0, 1.0, transition_steps=1)
    return optax.schedules.join_schedules(
        [lambda count: learning_rate * warm(count / jnp.maximum(warmup_steps, 1.0)),
         _cosine(learning_rate, total_steps - warmup_steps)], [warmup_steps])
  if name == "exponential":  # optax.schedules.exponential_decay(lr, decay_steps, decay_rate).
    span = total_steps if decay_steps is None else decay_steps
    return lambda count: learning_rate * jnp.power(decay_rate, count / span)
  # "step": optax.schedules.piecewise_constant_schedule(lr, {b * T: decay_rate, ...}).
  return lambda count: learning_rate * jnp.power(
      decay_rate, sum(jnp.asarray(count >= b * total_steps, jnp.float32) for b in STEP_BOUNDARIES))


def schedule(name: str | tuple[str, ...], learning_rate, *, total_steps, warmup_steps=0.0,
             decay_rate=0.1, decay_steps=None, index=0) -> Callable:
  """Returns ``count -> lr`` for a named schedule; every number may be traced.

  Args:
    name: ``constant``; ``cosine`` (to 0 at ``total_steps``); ``warmup_cosine``
      (linear from 0 over ``warmup_steps``, then cosine to 0 at ``total_steps``);
      ``exponential`` (``decay_rate`` per ``decay_steps``, default
      ``total_steps``); ``step`` (times ``decay_rate`` after 50 % and 75 % of
      ``total_steps``); ``reduce_on_plateau`` (constant here: the registered
      optimizers add :func:`reduce_on_plateau`). Or a tuple of names, picked
      per variant by the traced ``index`` (``lax.switch``: one compiled
      program for every schedule).
    learning_rate: the peak learning rate.
    total_steps: training steps.
    warmup_steps: ``warmup_cosine``'s warmup.
    decay_rate: ``exponential`` and ``step``: the decay factor.
    decay_steps: ``exponential``'s time constant.
    index: with a tuple of names, which one (traced; rounded).

  Raises:
    ConfigError: for an unknown name.

  Examples:
    >>> import jaxsweep as js
    >>> lr = js.optim.schedule("cosine", 0.1, total_steps=100)
    >>> [round(float(lr(t)), 4) for t in (0, 50, 100)]
    [0.1, 0.05, 0.0]
  """
  names = name if isinstance(name, tuple) else (name,)
  for n in names:
    if n not in SCHEDULES:
      raise errors.unknown_key("optimizer.schedule", SCHEDULES, what="schedule", name=str(n))
  fns = [_factor(n, learning_rate, total_steps=total_steps, warmup_steps=warmup_steps,
                 decay_rate=decay_rate, decay_steps=decay_steps) for n in names]
  if len(fns) == 1:
    return fns[0]
  return lambda count: jax.lax.switch(
      _index(index), [lambda f=f: jnp.asarray(f(count), jnp.float32) for f in fns])


def _index(index) -> jax.Array:
  """A (traced, maybe float32) choice index as int32 (rounded)."""
  i = jnp.asarray(index)
  if not jnp.issubdtype(i.dtype, jnp.integer):
    i = jnp.round(i)
  return i.astype(jnp.int32)


# --------------------------------------------------------------------------
# Registered optimizers: each the Optax alias of its name. :func:`_alias`
# adds the arguments they share, in one place.

REGISTRY = registry.Registry("optimizer", default="adam")
register = REGISTRY.register
names = REGISTRY.names
get = REGISTRY.get

_SHARED = (  # name, default: the arguments every registered optimizer takes.
    ("grad_clip", 0.0),  # Clip the gradient's global norm to it; 0 is off.
    ("schedule", "constant"), ("schedule_index", 0.0), ("total_steps", 1000.0),
    ("warmup_steps", 0.0), ("decay_rate", 0.1), ("decay_steps", None),
    ("patience", 10.0),  # reduce_on_plateau: windows without improvement.
)


def _alias(name: str) -> Callable:
  """Registers ``make(learning_rate, **own) -> optax transformation`` under ``name``
  with the shared arguments added to its signature:

  ``learning_rate`` follows ``schedule`` (:func:`schedule`; with
  ``reduce_on_plateau``, :func:`reduce_on_plateau` with factor ``decay_rate``
  and ``patience`` follows the optimizer); ``weight_decay``, unless ``make``
  takes its own (decoupled), is L2 added to the gradient
  (``optax.add_decayed_weights`` first); ``grad_clip`` clips the gradient's
  global norm before anything else. A compile-time 0 (a static value) drops
  the clip or the decay; a traced 0 keeps it as a no-op, so both share a
  program.
  """
  def decorate(make: Callable[..., optax.GradientTransformation]) -> Callable:
    own = inspect.signature(make).parameters
    shared = dict(_SHARED) if "weight_decay" in own else {**dict(_SHARED), "weight_decay": 0.0}
    params = [*own.values(), *(inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d)
                               for k, d in shared.items())]

    def factory(*args, **kwargs) -> optax.GradientTransformation:
      bound = inspect.signature(factory).bind(*args, **kwargs)
      bound.apply_defaults()
      kw = dict(bound.arguments)
      extra = {k: kw.pop(k) for k in shared}
      lr = schedule(extra["schedule"], kw.pop("learning_rate"),
                    total_steps=extra["total_steps"], warmup_steps=extra["warmup_steps"],
                    decay_rate=extra["decay_rate"], decay_steps=extra["decay_steps"],
                    index=extra["schedule_index"])
      parts = [make(lr, **kw)]
      if "reduce_on_plateau" in _names(extra["schedule"]):
        parts.append(reduce_on_plateau(_plateau_factor(extra), extra["patience"]))
      if "weight_decay" in extra and not is_static_zero(extra["weight_decay"]):
        parts.insert(0, optax.add_decayed_weights(extra["weight_decay"]))
      if not is_static_zero(extra["grad_clip"]):
        clip = extra["grad_clip"]  # A traced clip <= 0 is off: an infinite norm.
        parts.insert(0, optax.clip_by_global_norm(jnp.where(clip > 0, clip, jnp.inf)))
      return optax.chain(*parts) if len(parts) > 1 else parts[0]

    factory.__signature__ = inspect.Signature(params)
    factory.__name__ = factory.__qualname__ = make.__name__
    factory.__doc__ = make.__doc__
    factory.__module__ = make.__module__
    return REGISTRY.register(name)(factory)

  return decorate


def _names(schedule_name: str | tuple[str, ...]) -> tuple[str, ...]:
  return schedule_name if isinstance(schedule_name, tuple) else (schedule_name,)


def _plateau_factor(extra: Mapping[str, Any]):
  """``decay_rate``, or 1 (never reduce) for variants of a vectorized choice
  whose schedule is not ``reduce_on_plateau``."""
  names_ = _names(extra["schedule"])
  if len(names_) == 1:
    return extra["decay_rate"]
  picked = _index(extra["schedule_index"]) == names_.index("reduce_on_plateau")
  return jnp.where(picked, extra["decay_rate"], 1.0)


@_alias("sgd")
def sgd(learning_rate=1e-2, *, momentum=0.0, nesterov=False):
  """SGD, ``optax.sgd`` (heavy-ball momentum; Nesterov with ``nesterov: true``).

  A momentum of 0 keeps the (inert) trace, so a traced 0 and 0.9 share a program.
  """
  return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


@_alias("momentum")
def momentum_sgd(learning_rate=1e-2, *, momentum=0.9, nesterov=False):
  """SGD with heavy-ball momentum (0.9 by default), ``optax.sgd``."""
  return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


@_alias("nesterov")
def nesterov_sgd(learning_rate=1e-2, *, momentum=0.9):
  """SGD with Nesterov momentum, ``optax.sgd(..., nesterov=True)``."""
  return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


@_alias("adam")
def adam(learning_rate=1e-3, *, b1=0.9, b2=0.999, eps=1e-8):
  """Adam, ``optax.adam``; ``weight_decay`` is L2 on the gradient (adamw decouples it)."""
  return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


@_alias("adamw")
def adamw(learning_rate=1e-3, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4):
  """AdamW (decoupled weight decay, Loshchilov & Hutter 2019), ``optax.adamw``."""
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@_alias("rmsprop")
def rmsprop(learning_rate=1e-3, *, decay=0.9, eps=1e-8, momentum=0.0, centered=False,
            nesterov=False, eps_in_sqrt=True):
  """RMSProp, ``optax.rmsprop``; ``eps_in_sqrt: false`` is PyTorch's ``sqrt(v) + eps``."""
  return optax.rmsprop(learning_rate, decay=decay, eps=eps, momentum=momentum,
                       centered=centered, nesterov=nesterov, eps_in_sqrt=eps_in_sqrt)


@_alias("adagrad")
def adagrad(learning_rate=1e-2, *, initial_accumulator_value=0.1, eps=1e-7):
  """Adagrad, ``optax.adagrad`` (:func:`init_state` builds each variant's
  accumulator from its own initial value)."""
  return optax.adagrad(learning_rate, initial_accumulator_value=initial_accumulator_value,
                       eps=eps)


@_alias("lamb")
def lamb(learning_rate=1e-3, *, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0):
  """LAMB (You et al. 2020), ``optax.lamb``: Adam with decoupled decay and a
  per-layer trust ratio."""
  return optax.lamb(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@_alias("lion")
def lion(learning_rate=1e-4, *, b1=0.9, b2=0.99, weight_decay=1e-3):
  """Lion (Chen et al. 2023), ``optax.lion``: sign updates, so its learning
  rate is typically 3-10x smaller than Adam's; ``weight_decay`` is decoupled."""
  return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


def choice(names: Sequence[str]) -> Callable[..., optax.GradientTransformation]:
  """An optimizer factory that is one of several named ones, picked per variant.

  The returned factory takes the union of the candidates' arguments (each
  candidate receives those it accepts; a name's default is the first
  candidate's) plus a traced ``optimizer_index``. Its state holds every
  candidate's state; ``update`` runs the chosen candidate's update
  (``lax.switch``: with one variant per lane only that branch runs, under
  ``vmap`` all run and the chosen result is kept). So variants with different
  optimizers share one compiled program and each follows exactly its own
  optimizer's arithmetic.

  Args:
    names: registered optimizer names; ``optimizer_index = i`` picks
      ``names[i]``.

  Raises:
    ConfigError: for an empty list or an unknown name.

  Examples:
    >>> import jax.numpy as jnp, jaxsweep as js
    >>> tx = js.optim.choice(("sgd", "adam"))(learning_rate=0.1, optimizer_index=1)
    >>> params = {"w": jnp.ones(2)}
    >>> updates, _ = tx.update({"w": jnp.full(2, 0.5)}, tx.init(params), params)
    >>> [round(float(u), 3) for u in updates["w"]]  # Adam's first step: -lr * sign.
    [-0.1, -0.1]
  """
  names = (names,) if isinstance(names, str) else tuple(names)
  if not names:
    raise errors.ConfigError("the optimizer choice is empty.", key="optimizer.name",
                             fix="give at least one optimizer name")
  fns = [REGISTRY.get(n) for n in names]
  accepts = [registry.signature_args(fn) for fn in fns]
  params = [inspect.Parameter("optimizer_index", inspect.Parameter.KEYWORD_ONLY, default=0.0)]
  seen = {"optimizer_index"}
  for fn in fns:
    for p in inspect.signature(fn).parameters.values():
      if p.name not in seen and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        seen.add(p.name)
        params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

  def factory(*, optimizer_index=0.0, **kwargs) -> optax.GradientTransformation:
    txs = [fn(**{k: v for k, v in kwargs.items() if k in acc})
           for fn, acc in zip(fns, accepts, strict=True)]
    if len(txs) == 1:
      return txs[0]

    def init_fn(params):
      return tuple(tx.init(params) for tx in txs)

    def update_fn(updates, state, params=None, **extra_args):
      def branch(i):
        def run(updates, state, params, extra_args):
          new, inner = optax.with_extra_args_support(txs[i]).update(
              updates, state[i], params, **extra_args)
          return new, tuple(inner if j == i else s for j, s in enumerate(state))
        return run
      return jax.lax.switch(_index(optimizer_index), [branch(i) for i in range(len(txs))],
                            updates, state, params, extra_args)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)

  factory.__signature__ = inspect.Signature(params)
  factory.__name__ = factory.__qualname__ = "choice_" + "_".join(names)
  factory.__doc__ = f"One of {list(names)}, picked by the traced ``optimizer_index``."
  factory.names = names
  return factory
