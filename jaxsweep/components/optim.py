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


_TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
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
    except _TRACER_ERRORS:
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
# Learning-rate schedules written in jnp arithmetic so that every numeric
# parameter (warmup, decay steps, rates) can be a traced per-variant value.

def schedule(name: str | tuple[str, ...], learning_rate, *, total_steps, warmup_steps=0.0,
             decay_rate=0.1, decay_steps=None, end_factor=0.0,
             step_boundaries=(0.5, 0.75), index=0) -> Callable:
  """Returns ``count -> lr`` for a named schedule (all parameters traced).

  Args:
    name: ``constant``, ``cosine``, ``warmup_cosine``, ``exponential``,
      ``step`` or ``reduce_on_plateau`` (constant here: the registered
      optimizers add :func:`reduce_on_plateau`, with factor ``decay_rate``
      and their ``patience``, which scales the updates); or a tuple of them,
      picked per variant by the traced ``index`` (``lax.switch``: one
      compiled program for every schedule).
    learning_rate: the peak learning rate.
    total_steps: training steps (cosine decays over them).
    warmup_steps: linear warmup length (``warmup_cosine``; also honoured by
      the others when positive).
    decay_rate: ``exponential``: factor per ``decay_steps``; ``step``: factor
      applied at each boundary.
    decay_steps: ``exponential`` time constant (defaults to total_steps).
    end_factor: final lr as a fraction of the peak (cosine variants).
    step_boundaries: fractions of total_steps where ``step`` decays.
    index: with a tuple of names, which one (traced; rounded and clamped).
  """
  names = name if isinstance(name, tuple) else (name,)
  for n in names:
    if n not in SCHEDULES:
      raise errors.unknown_key("optimizer.schedule", SCHEDULES, what="schedule", name=str(n))
  total = jnp.asarray(total_steps, jnp.float32)
  warm = jnp.asarray(warmup_steps, jnp.float32)
  decay_steps = total if decay_steps is None else jnp.asarray(decay_steps, jnp.float32)

  def fn(count):
    t = jnp.asarray(count, jnp.float32)
    warm_factor = jnp.where(warm > 0, jnp.minimum(1.0, (t + 1.0) / jnp.maximum(warm, 1.0)), 1.0)
    after = jnp.maximum(t - warm, 0.0)
    span = jnp.maximum(total - warm, 1.0)

    def factor_of(n):
      if n in ("constant", "reduce_on_plateau"):  # The latter scales the updates.
        return jnp.ones([], jnp.float32)
      if n in ("cosine", "warmup_cosine"):
        frac = jnp.clip(after / span, 0.0, 1.0)
        return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
      if n == "exponential":
        return jnp.power(decay_rate, after / jnp.maximum(decay_steps, 1.0))
      steps_passed = sum((after >= b * span).astype(jnp.float32) for b in step_boundaries)
      return jnp.power(decay_rate, steps_passed)

    if len(names) == 1:
      factor = factor_of(names[0])
    else:
      branches = [lambda n=n: jnp.asarray(factor_of(n), jnp.float32) for n in names]
      factor = jax.lax.switch(_index(index), branches)
    return learning_rate * warm_factor * factor

  return fn


SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential", "step",
             "reduce_on_plateau")


def _index(index) -> jax.Array:
  """A (traced, maybe float32) choice index as int32 (rounded)."""
  i = jnp.asarray(index)
  if not jnp.issubdtype(i.dtype, jnp.integer):
    i = jnp.round(i)
  return i.astype(jnp.int32)


def _with_extras(tx: optax.GradientTransformation, *, grad_clip=0.0,
                 weight_decay=0.0, decoupled=False) -> optax.GradientTransformation:
  del decoupled
  parts = []
  if not is_static_zero(grad_clip):
    # A clip of 0 means "off"; a traced clip value c > 0 clips the global norm.
    parts.append(_clip_by_global_norm_or_off(grad_clip))
  if not is_static_zero(weight_decay):
    parts.append(optax.add_decayed_weights(weight_decay))
  return optax.chain(*parts, tx) if parts else tx


def _clip_by_global_norm_or_off(max_norm) -> optax.GradientTransformation:
  """``clip_by_global_norm`` where a (traced) ``max_norm <= 0`` disables it."""
  inner = optax.clip_by_global_norm(jnp.where(max_norm > 0, max_norm, jnp.inf))
  return inner


REGISTRY = registry.Registry("optimizer", default="adam")
register = REGISTRY.register
names = REGISTRY.names
get = REGISTRY.get


def _on_plateau(tx, schedule_name, factor, patience, index) -> optax.GradientTransformation:
  """``tx`` then :func:`reduce_on_plateau` when the schedule is (or may be,
  in a vectorized choice) ``reduce_on_plateau``; other choices get factor 1."""
  names = schedule_name if isinstance(schedule_name, tuple) else (schedule_name,)
  if "reduce_on_plateau" not in names:
    return tx
  if len(names) > 1:
    factor = jnp.where(_index(index) == names.index("reduce_on_plateau"), factor, 1.0)
  return optax.chain(tx, reduce_on_plateau(factor, patience))


def _lr(learning_rate, schedule_name, total_steps, warmup_steps, decay_rate,
        decay_steps, schedule_index=0.0):
  # The constant schedule is exact (lr * 1 * 1) when warmup_steps is 0.
  return schedule(schedule_name, learning_rate, total_steps=total_steps,
                  warmup_steps=warmup_steps, decay_rate=decay_rate,
                  decay_steps=decay_steps, index=schedule_index)


@REGISTRY.register("sgd")
def sgd(learning_rate=1e-2, *, momentum=0.0, nesterov=False, weight_decay=0.0,
        grad_clip=0.0, schedule="constant", warmup_steps=0.0, decay_rate=0.1,
        decay_steps=None, total_steps=1000.0, patience=10.0, schedule_index=0.0):
  """SGD (momentum when ``momentum > 0``; Nesterov with ``nesterov: true``)."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps,
           schedule_index)
  tx = optax.sgd(lr, momentum=momentum, nesterov=nesterov)
  tx = _on_plateau(tx, schedule, decay_rate, patience, schedule_index)
  return _with_extras(tx, grad_clip=grad_clip, weight_decay=weight_decay)


@REGISTRY.register("momentum")
def momentum_sgd(learning_rate=1e-2, *, momentum=0.9, nesterov=False,
                 weight_decay=0.0, grad_clip=0.0, schedule="constant",
                 warmup_steps=0.0, decay_rate=0.1, decay_steps=None,
                 total_steps=1000.0, patience=10.0, schedule_index=0.0):
  """SGD with heavy-ball momentum (0.9 by default)."""
  return sgd(learning_rate, momentum=momentum, nesterov=nesterov,
             weight_decay=weight_decay, grad_clip=grad_clip, schedule=schedule,
             warmup_steps=warmup_steps, decay_rate=decay_rate,
             decay_steps=decay_steps, total_steps=total_steps, schedule_index=schedule_index,
             patience=patience)


@REGISTRY.register("nesterov")
def nesterov_sgd(learning_rate=1e-2, *, momentum=0.9, weight_decay=0.0,
                 grad_clip=0.0, schedule="constant", warmup_steps=0.0,
                 decay_rate=0.1, decay_steps=None, total_steps=1000.0, patience=10.0,
                 schedule_index=0.0):
  """SGD with Nesterov momentum."""
  return sgd(learning_rate, momentum=momentum, nesterov=True,
             weight_decay=weight_decay, grad_clip=grad_clip, schedule=schedule,
             warmup_steps=warmup_steps, decay_rate=decay_rate,
             decay_steps=decay_steps, total_steps=total_steps, schedule_index=schedule_index,
             patience=patience)


@REGISTRY.register("adam")
def adam(learning_rate=1e-3, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
         grad_clip=0.0, schedule="constant", warmup_steps=0.0, decay_rate=0.1,
         decay_steps=None, total_steps=1000.0, patience=10.0, schedule_index=0.0):
  """Adam; ``weight_decay`` here is L2 added to the gradient (use adamw for
  decoupled decay)."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps,
           schedule_index)
  tx = optax.adam(lr, b1=b1, b2=b2, eps=eps)
  tx = _on_plateau(tx, schedule, decay_rate, patience, schedule_index)
  return _with_extras(tx, grad_clip=grad_clip, weight_decay=weight_decay)


@REGISTRY.register("adamw")
def adamw(learning_rate=1e-3, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4,
          grad_clip=0.0, schedule="constant", warmup_steps=0.0, decay_rate=0.1,
          decay_steps=None, total_steps=1000.0, patience=10.0, schedule_index=0.0):
  """AdamW (decoupled weight decay, Loshchilov & Hutter 2019)."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps,
           schedule_index)
  tx = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  tx = _on_plateau(tx, schedule, decay_rate, patience, schedule_index)
  return _with_extras(tx, grad_clip=grad_clip)




@REGISTRY.register("rmsprop")
def rmsprop(learning_rate=1e-3, *, decay=0.9, eps=1e-8, momentum=0.0,
            centered=False, nesterov=False, eps_in_sqrt=True, weight_decay=0.0,
            grad_clip=0.0, schedule="constant", warmup_steps=0.0, decay_rate=0.1,
            decay_steps=None, total_steps=1000.0, patience=10.0, schedule_index=0.0):
  """RMSProp (Hinton 2012); ``centered`` divides by the gradient's std.

  ``momentum`` is always passed on (a trace with decay 0 is the identity), so
  a traced momentum of 0 and one of 0.9 share the same optimizer structure.
  ``eps_in_sqrt: false`` matches PyTorch's ``sqrt(v) + eps``.
  """
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps,
           schedule_index)
  tx = optax.rmsprop(lr, decay=decay, eps=eps, momentum=momentum, centered=centered,
                     nesterov=nesterov, eps_in_sqrt=eps_in_sqrt)
  tx = _on_plateau(tx, schedule, decay_rate, patience, schedule_index)
  return _with_extras(tx, grad_clip=grad_clip, weight_decay=weight_decay)


@REGISTRY.register("adagrad")
def adagrad(learning_rate=1e-2, *, initial_accumulator_value=0.1, eps=1e-7,
            weight_decay=0.0, grad_clip=0.0, schedule="constant", warmup_steps=0.0,
            decay_rate=0.1, decay_steps=None, total_steps=1000.0, patience=10.0,
            schedule_index=0.0):
  """Adagrad (Duchi et al. 2011), as ``optax.adagrad``; ``weight_decay`` is
  L2 on the gradient."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps,
           schedule_index)
  # init_state builds each variant's accumulator from its own initial value.
  tx = optax.adagrad(lr, initial_accumulator_value=initial_accumulator_value, eps=eps)
  tx = _on_plateau(tx, schedule, decay_rate, patience, schedule_index)
  return _with_extras(tx, grad_clip=grad_clip, weight_decay=weight_decay)


@REGISTRY.register("lamb")
def lamb(learning_rate=1e-3, *, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0,
         grad_clip=0.0, schedule="constant", warmup_steps=0.0, decay_rate=0.1,
         decay_steps=None, total_steps=1000.0, patience=10.0, schedule_index=0.0):
  """LAMB (You et al. 2020): Adam with decoupled decay and a per-layer trust
  ratio."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps,
           schedule_index)
  tx = optax.lamb(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  tx = _on_plateau(tx, schedule, decay_rate, patience, schedule_index)
  return _with_extras(tx, grad_clip=grad_clip)


@REGISTRY.register("lion")
def lion(learning_rate=1e-4, *, b1=0.9, b2=0.99, weight_decay=1e-3, grad_clip=0.0,
         schedule="constant", warmup_steps=0.0, decay_rate=0.1, decay_steps=None,
         total_steps=1000.0, patience=10.0, schedule_index=0.0):
  """Lion (Chen et al. 2023): sign updates, so its learning rate is typically
  3-10x smaller than Adam's; ``weight_decay`` is decoupled."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps,
           schedule_index)
  tx = optax.lion(lr, b1=b1, b2=b2, weight_decay=weight_decay)
  tx = _on_plateau(tx, schedule, decay_rate, patience, schedule_index)
  return _with_extras(tx, grad_clip=grad_clip)


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
           for fn, acc in zip(fns, accepts)]
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
