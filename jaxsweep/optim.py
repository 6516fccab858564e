"""Optimizers: user factories made vectorizable, and named optimizers.

An optimizer is a *factory* whose keyword arguments are hyperparameters, e.g.
``lambda learning_rate, weight_decay: optax.adamw(learning_rate,
weight_decay=weight_decay)``. jaxsweep wraps it once with
``optax.inject_hyperparams`` so every numeric argument lives in
``opt_state.hyperparams`` as a traced float32 array; each variant's values are
written there at init (optax#932), so changing values never recompiles.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import optax

from jaxsweep import errors


def factory_args(fn: Callable) -> dict[str, Any]:
  """Keyword arguments of a factory and their defaults (``inspect.empty``)."""
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return {}
  return {n: p.default for n, p in params.items()
          if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def is_numeric(value: Any) -> bool:
  """Numbers are value hyperparameters; bools and strings are structural."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def wrap(opt_factory: Callable[..., optax.GradientTransformation],
         static: Mapping[str, Any], dynamic: Mapping[str, float]
         ) -> optax.GradientTransformation:
  """Builds the injectable optimizer once, outside ``vmap``.

  Args:
    opt_factory: the user's factory.
    static: structural arguments (bools, strings), bound as Python values.
    dynamic: numeric arguments with placeholder values; per-variant values
      are written with :func:`set_hparams` after ``init``.

  Returns:
    An ``optax.GradientTransformation`` whose state has ``.hyperparams``.
  """
  # Every numeric argument, defaults included, becomes an entry of
  # opt_state.hyperparams; static ones are bound as Python values (so a
  # numeric argument the user marked static stays a compile-time constant).
  return optax.inject_hyperparams(
      opt_factory, static_args=tuple(static), hyperparam_dtype=jnp.float32)(
          **static, **{k: float(v) for k, v in dynamic.items()})


def set_hparams(opt_state, values: Mapping[str, Any]):
  """Writes one variant's (traced) values into ``opt_state.hyperparams``."""
  hp = dict(opt_state.hyperparams)
  for k, v in values.items():
    hp[k] = jnp.asarray(v, jnp.float32)
  return opt_state._replace(hyperparams=hp)


# --------------------------------------------------------------------------
# Learning-rate schedules written in jnp arithmetic so that every numeric
# parameter (warmup, decay steps, rates) can be a traced per-variant value.

def schedule(name: str, learning_rate, *, total_steps, warmup_steps=0.0,
             decay_rate=0.1, decay_steps=None, end_factor=0.0,
             step_boundaries=(0.5, 0.75)) -> Callable:
  """Returns ``count -> lr`` for a named schedule (all parameters traced).

  Args:
    name: ``constant``, ``cosine``, ``warmup_cosine``, ``exponential`` or
      ``step``.
    learning_rate: the peak learning rate.
    total_steps: training steps (cosine decays over them).
    warmup_steps: linear warmup length (``warmup_cosine``; also honoured by
      the others when positive).
    decay_rate: ``exponential``: factor per ``decay_steps``; ``step``: factor
      applied at each boundary.
    decay_steps: ``exponential`` time constant (defaults to total_steps).
    end_factor: final lr as a fraction of the peak (cosine variants).
    step_boundaries: fractions of total_steps where ``step`` decays.
  """
  if name not in SCHEDULES:
    raise errors.unknown_key(str(name), SCHEDULES, what="schedule")
  total = jnp.asarray(total_steps, jnp.float32)
  warm = jnp.asarray(warmup_steps, jnp.float32)
  decay_steps = total if decay_steps is None else jnp.asarray(decay_steps, jnp.float32)

  def fn(count):
    t = jnp.asarray(count, jnp.float32)
    warm_factor = jnp.where(warm > 0, jnp.minimum(1.0, (t + 1.0) / jnp.maximum(warm, 1.0)), 1.0)
    after = jnp.maximum(t - warm, 0.0)
    span = jnp.maximum(total - warm, 1.0)
    if name == "constant":
      factor = 1.0
    elif name in ("cosine", "warmup_cosine"):
      frac = jnp.clip(after / span, 0.0, 1.0)
      factor = end_factor + (1.0 - end_factor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    elif name == "exponential":
      factor = jnp.power(decay_rate, after / jnp.maximum(decay_steps, 1.0))
    else:  # step
      n = sum((after >= b * span).astype(jnp.float32) for b in step_boundaries)
      factor = jnp.power(decay_rate, n)
    return learning_rate * warm_factor * factor

  return fn


SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential", "step")


def _with_extras(tx: optax.GradientTransformation, *, grad_clip=0.0,
                 weight_decay=0.0, decoupled=False) -> optax.GradientTransformation:
  del decoupled
  parts = []
  if not (is_numeric(grad_clip) and grad_clip == 0.0):
    # A clip of 0 means "off"; a traced clip value c > 0 clips the global norm.
    parts.append(_clip_by_global_norm_or_off(grad_clip))
  if not (is_numeric(weight_decay) and weight_decay == 0.0):
    parts.append(optax.add_decayed_weights(weight_decay))
  return optax.chain(*parts, tx) if parts else tx


def _clip_by_global_norm_or_off(max_norm) -> optax.GradientTransformation:
  """``clip_by_global_norm`` where a (traced) ``max_norm <= 0`` disables it."""
  inner = optax.clip_by_global_norm(jnp.where(max_norm > 0, max_norm, jnp.inf))
  return inner


_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {}


def register(name: str):
  """Decorator registering a named optimizer factory."""
  def deco(fn):
    _OPTIMIZERS[name] = fn
    return fn
  return deco


def names() -> list[str]:
  return sorted(_OPTIMIZERS)


def get(name: str) -> Callable[..., optax.GradientTransformation]:
  if name not in _OPTIMIZERS:
    raise errors.unknown_key(str(name), _OPTIMIZERS, what="optimizer")
  return _OPTIMIZERS[name]


def accepted_args(name: str) -> dict[str, Any]:
  return factory_args(get(name))


def _lr(learning_rate, schedule_name, total_steps, warmup_steps, decay_rate,
        decay_steps):
  if schedule_name == "constant" and is_numeric(warmup_steps) and warmup_steps == 0:
    return learning_rate
  return schedule(schedule_name, learning_rate, total_steps=total_steps,
                  warmup_steps=warmup_steps, decay_rate=decay_rate,
                  decay_steps=decay_steps)


@register("sgd")
def sgd(learning_rate=1e-2, *, momentum=0.0, nesterov=False, weight_decay=0.0,
        grad_clip=0.0, schedule="constant", warmup_steps=0.0, decay_rate=0.1,
        decay_steps=None, total_steps=1000):
  """SGD (momentum when ``momentum > 0``; Nesterov with ``nesterov: true``)."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps)
  tx = optax.sgd(lr, momentum=momentum, nesterov=nesterov)
  return _with_extras(tx, grad_clip=grad_clip, weight_decay=weight_decay)


@register("momentum")
def momentum_sgd(learning_rate=1e-2, *, momentum=0.9, nesterov=False,
                 weight_decay=0.0, grad_clip=0.0, schedule="constant",
                 warmup_steps=0.0, decay_rate=0.1, decay_steps=None,
                 total_steps=1000):
  """SGD with heavy-ball momentum (0.9 by default)."""
  return sgd(learning_rate, momentum=momentum, nesterov=nesterov,
             weight_decay=weight_decay, grad_clip=grad_clip, schedule=schedule,
             warmup_steps=warmup_steps, decay_rate=decay_rate,
             decay_steps=decay_steps, total_steps=total_steps)


@register("nesterov")
def nesterov_sgd(learning_rate=1e-2, *, momentum=0.9, weight_decay=0.0,
                 grad_clip=0.0, schedule="constant", warmup_steps=0.0,
                 decay_rate=0.1, decay_steps=None, total_steps=1000):
  """SGD with Nesterov momentum."""
  return sgd(learning_rate, momentum=momentum, nesterov=True,
             weight_decay=weight_decay, grad_clip=grad_clip, schedule=schedule,
             warmup_steps=warmup_steps, decay_rate=decay_rate,
             decay_steps=decay_steps, total_steps=total_steps)


@register("adam")
def adam(learning_rate=1e-3, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
         grad_clip=0.0, schedule="constant", warmup_steps=0.0, decay_rate=0.1,
         decay_steps=None, total_steps=1000):
  """Adam; ``weight_decay`` here is L2 added to the gradient (use adamw for
  decoupled decay)."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps)
  tx = optax.adam(lr, b1=b1, b2=b2, eps=eps)
  return _with_extras(tx, grad_clip=grad_clip, weight_decay=weight_decay)


@register("adamw")
def adamw(learning_rate=1e-3, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4,
          grad_clip=0.0, schedule="constant", warmup_steps=0.0, decay_rate=0.1,
          decay_steps=None, total_steps=1000):
  """AdamW (decoupled weight decay, Loshchilov & Hutter 2019)."""
  lr = _lr(learning_rate, schedule, total_steps, warmup_steps, decay_rate, decay_steps)
  tx = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  return _with_extras(tx, grad_clip=grad_clip)


