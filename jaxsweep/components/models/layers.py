"""Building blocks of the built-in models: activations, initializers, dropout.

Given a *tuple* of activation names, :func:`apply_activation` picks one per
variant with ``lax.switch`` on a traced index, so an activation sweep can
share one compiled program instead of forming compile groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsweep import errors

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
    raise errors.unknown_key("model.activation", ACTIVATIONS, what="activation",
                             name=str(name))
  return ACTIVATIONS[name]


def initializer(name: str, key: str = "model.kernel_init"):
  if not isinstance(name, str) or name not in INITIALIZERS:
    raise errors.unknown_key(key, INITIALIZERS, what="initializer", name=str(name))
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


def check_activation(value: Any, key: str = "model.activation") -> Activation:
  """Validates a name or a list of names; lists become tuples (hashable)."""
  if not isinstance(value, (str, list, tuple)):
    raise errors.ConfigError(
        f"takes an activation name or a list of names, got {type(value).__name__} "
        f"{value!r}.", key=key, fix=f"use one of: {', '.join(ACTIVATIONS)}")
  names_ = (value,) if isinstance(value, str) else tuple(value)
  if not names_:
    raise errors.ConfigError("the activation list is empty.", key=key,
                             fix="give a name or a non-empty list of names")
  for n in names_:
    if not isinstance(n, str) or n not in ACTIVATIONS:
      raise errors.unknown_key(key, ACTIVATIONS, what="activation", name=str(n))
  return value if isinstance(value, str) else names_


# The widest layer accepted (16,777,216), before any shape arithmetic overflows.
MAX_WIDTH = 2**24
# The most layers a list of widths may give (each is traced and compiled).
MAX_LAYERS = 1_000


def check_widths(value: Any, key: str, *, allow_empty: bool = False) -> tuple[int, ...]:
  """Layer widths as a tuple of positive ints (one int is one layer).

  Raises:
    ConfigError: for anything but a list of whole numbers >= 1 (a string,
      a float such as 64.5, a bool, a nested list), or an empty list where
      one layer is needed.
  """
  example = "[64, 64]" if allow_empty else "[16, 32]"
  items = (value,) if isinstance(value, (int, float, np.integer)) and not isinstance(
      value, bool) else value
  if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple)):
    raise errors.ConfigError(
        f"takes a list of layer widths, got {type(value).__name__} {value!r}.", key=key,
        fix=f"write a list of positive integers, e.g. {key.rsplit('.', 1)[-1]}: {example}")
  widths = []
  for w in items:
    whole = (isinstance(w, (int, float, np.integer, np.floating)) and not isinstance(w, bool)
             and float(w).is_integer())
    if not whole or w < 1:
      raise errors.ConfigError(
          f"widths must be whole numbers >= 1, got {w!r} in {list(items)}.", key=key,
          fix=f"write a list of positive integers, e.g. {key.rsplit('.', 1)[-1]}: {example}")
    if w > MAX_WIDTH:
      raise errors.ConfigError(
          f"a layer {w:g} wide is beyond any that fits in memory (at most {MAX_WIDTH:,}: "
          f"such a layer alone holds over {MAX_WIDTH:,} x its input width parameters).",
          key=key, fix=f"give realistic widths, e.g. {key.rsplit('.', 1)[-1]}: {example}")
    widths.append(int(w))
  if len(widths) > MAX_LAYERS:
    raise errors.ConfigError(
        f"{len(widths):,} layers would take hours to trace and compile (at most "
        f"{MAX_LAYERS:,}).", key=key,
        fix=f"give a realistic depth, e.g. {key.rsplit('.', 1)[-1]}: {example}")
  if not widths and not allow_empty:
    raise errors.ConfigError("needs at least one layer, got [].", key=key,
                             fix=f"e.g. {key.rsplit('.', 1)[-1]}: {example}")
  return tuple(widths)


def dropout(x, rate, rng, *, train: bool):
  """Inverted dropout whose ``rate`` may be a traced per-variant value.

  ``flax.linen.Dropout`` branches on ``rate == 0`` in Python, which a traced
  rate cannot do; this version is exact (identity) at rate 0 and at eval.
  """
  if not train or is_zero(rate):
    return x
  keep = 1.0 - jnp.asarray(rate, jnp.float32)
  mask = jax.random.bernoulli(rng, keep, x.shape)
  return jnp.where(mask, x / jnp.maximum(keep, 1e-6), 0.0).astype(x.dtype)


def is_zero(x) -> bool:
  """Whether ``x`` is a Python number equal to 0 (a traced value never is)."""
  return isinstance(x, (int, float)) and x == 0
