"""Masked width and depth: networks of different sizes in one compiled program.

A layer of width ``w`` padded to ``W`` units behaves exactly like a layer of
width ``w`` when

* its kernel is drawn unit by unit (column ``j`` from ``fold_in(key, j)``,
  prefix-stable under JAX's partitionable threefry), scaled by the variant's
  own fan-in and fan-out, and its padded rows and columns are zero;
* its padded units are zeroed after the activation (so a bias, a batch norm
  shift or ``sigmoid(0) = 0.5`` cannot leak), and their batch-norm scale
  starts at zero: a zero weight receives a zero gradient under every
  optimizer, and weight decay of zero is zero, so padded parameters stay
  exactly zero through training.

A layer beyond a variant's depth has width 0: it is skipped (its input passes
through unchanged) and its parameters are all zero, so it cannot learn.

:class:`ColumnDense` (and :class:`ColumnConv`, channel by channel) is used
by the built-in MLP (and CNN) for every kernel, padded or not, so that a
variant trained inside a padded population starts from the same parameters
as the same variant trained alone; they then agree to float rounding (the padded matmuls sum over more, zero, terms in another order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsweep import errors

# Initializers drawn unit by unit: name -> (scale, fan mode, distribution),
# as flax's variance_scaling.
COLUMN_INITIALIZERS = {
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "he_uniform": (2.0, "fan_in", "uniform"),
}
# The std of a standard normal truncated to [-2, 2] (flax's correction).
_TRUNCATED_STD = 0.87962566103423978


def check_initializer(name: str) -> None:
  """Raises ConfigError unless ``name`` can be drawn unit by unit."""
  if name not in COLUMN_INITIALIZERS:
    raise errors.ConfigError(
        f"the kernel initializer '{name}' cannot be drawn unit by unit, so widths "
        "padded to one network would not start as the unpadded ones.",
        key="model.kernel_init",
        fix=f"masked (vectorized) widths need one of: {', '.join(COLUMN_INITIALIZERS)}; "
            "or leave model.features out of vectorize")


def column_init(name: str, key: jax.Array, rows: int | Sequence[int], cols: int, fan_in,
                fan_out) -> jax.Array:
  """A ``[*rows, cols]`` kernel drawn column by column, variance-scaled.

  Column ``j`` (one output unit) is drawn from ``fold_in(key, j)`` with the
  shape ``rows``; a prefix of its leading axis is the same draw whatever
  that axis' length (JAX's partitionable threefry), so a layer with fewer
  inputs or outputs gets a prefix of the wider layer's kernel.

  Args:
    name: one of :data:`COLUMN_INITIALIZERS`.
    key: the layer's parameter key.
    rows: the (padded) inputs of one unit: an int (a Dense kernel) or a shape
      whose leading axis is the one padded (``(in, k, k)`` for a convolution).
    cols: the (padded) number of units.
    fan_in, fan_out: the variant's own fans (traced ints are fine).
  """
  check_initializer(name)
  scale, mode, dist = COLUMN_INITIALIZERS[name]
  shape = (rows,) if isinstance(rows, int) else tuple(rows)
  fan_in = jnp.maximum(jnp.asarray(fan_in, jnp.float32), 1.0)
  fan_out = jnp.maximum(jnp.asarray(fan_out, jnp.float32), 1.0)
  fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
  variance = scale / fan

  def column(j):
    k = jax.random.fold_in(key, j)
    if dist == "truncated_normal":
      return jax.random.truncated_normal(k, -2.0, 2.0, shape, jnp.float32) / _TRUNCATED_STD
    return jax.random.uniform(k, shape, jnp.float32, -1.0, 1.0) * math.sqrt(3.0)

  unit = jax.vmap(column, out_axes=-1)(jnp.arange(cols))
  return unit * jnp.sqrt(variance)


def mask_init(real: jax.Array):
  """An initializer of ones on real units and zeros on padded ones (a batch
  norm scale: a zero scale gets zero gradients, so it stays zero)."""
  def init(key, shape, dtype=jnp.float32):
    del key, shape  # Unused.
    return real.astype(dtype)
  return init


class ColumnDense(nn.Module):
  """A Dense layer whose kernel is drawn unit by unit (:func:`column_init`).

  Attributes:
    features: output units (padded width).
    kernel_init: name in :data:`COLUMN_INITIALIZERS`.
  """

  features: int
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, fan_in=None, fan_out=None, rows_mask=None, cols_mask=None):
    """``x @ kernel + bias``; the masks zero padded rows and columns at init.

    Args:
      x: ``[B, in]`` inputs.
      fan_in, fan_out: the variant's fans (default: the shapes).
      rows_mask, cols_mask: which input rows and output units are real.
    """
    rows = x.shape[-1]

    def init(key, shape):
      kernel = column_init(self.kernel_init, key, shape[0], shape[1],
                           rows if fan_in is None else fan_in,
                           self.features if fan_out is None else fan_out)
      if rows_mask is not None:
        kernel = kernel * rows_mask[:, None]
      if cols_mask is not None:
        kernel = kernel * cols_mask[None, :]
      return kernel

    kernel = self.param("kernel", init, (rows, self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return x @ kernel + bias


class ColumnConv(nn.Module):
  """A ``k x k`` SAME convolution whose kernel is drawn channel by channel.

  Output channel ``j``'s kernel ``[in, k, k]`` comes from ``fold_in(key, j)``
  (:func:`column_init`), so a convolution with fewer input or output
  channels starts as a prefix of a wider one.

  Attributes:
    features: output channels (padded).
    kernel_size: square kernel size.
    kernel_init: name in :data:`COLUMN_INITIALIZERS`.
  """

  features: int
  kernel_size: int = 3
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, in_channels=None, out_channels=None, rows_mask=None,
               cols_mask=None):
    """The convolution of ``x`` ``[B, H, W, in]``, plus a bias.

    Args:
      x: images, channels last.
      in_channels, out_channels: the variant's real channels, for its fans
        (``k * k * channels``, as flax's variance scaling); default: the shapes.
      rows_mask, cols_mask: which input and output channels are real.
    """
    k, cin = self.kernel_size, x.shape[-1]

    def init(key, shape):
      del shape  # Unused.
      kernel = column_init(self.kernel_init, key, (cin, k, k), self.features,
                           k * k * (cin if in_channels is None else in_channels),
                           k * k * (self.features if out_channels is None else out_channels))
      if rows_mask is not None:
        kernel = kernel * rows_mask[:, None, None, None]
      if cols_mask is not None:
        kernel = kernel * cols_mask
      return jnp.transpose(kernel, (1, 2, 0, 3))   # [k, k, in, out]

    kernel = self.param("kernel", init, (k, k, cin, self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def width_table(options: Sequence[Sequence[int]], key: str = "model.features"
                ) -> tuple[int, int, np.ndarray]:
  """``(depth, width, table)``: the padded depth and width of a choice of
  layer widths, and each option's widths ``[options, depth]`` (0: no layer).

  Raises:
    ConfigError: for an option without layers (the first layer cannot be
      skipped: its input is the data, not a padded layer).
  """
  for o in options:
    if not o:
      raise errors.ConfigError(
          "a vectorized choice of widths needs at least one layer in every option.",
          key=key, fix=f"group models without layers apart (leave {key} out of vectorize)")
  depth = max(len(o) for o in options)
  width = max(max(o) for o in options)
  # numpy: a constant of the traced program, and building it compiles nothing.
  table = np.asarray([[o[i] if i < len(o) else 0 for i in range(depth)] for o in options],
                     np.int32)
  return depth, width, table


def column_dropout(x: jax.Array, rate, rng: jax.Array) -> jax.Array:
  """Inverted dropout on ``[..., units]`` whose mask is drawn unit by unit.

  Unit ``j``'s mask (over the leading axes) comes from ``fold_in(rng, j)``,
  so a layer padded to more units drops the same entries of its real units
  as the unpadded layer.
  """
  keep = 1.0 - jnp.asarray(rate, jnp.float32)

  def column(j):
    return jax.random.bernoulli(jax.random.fold_in(rng, j), keep, x.shape[:-1])

  mask = jax.vmap(column, out_axes=-1)(jnp.arange(x.shape[-1]))
  return jnp.where(mask, x / jnp.maximum(keep, 1e-6), 0.0).astype(x.dtype)


def is_choice(features: Sequence) -> bool:
  """Whether ``features`` is a choice of layer widths (a tuple of tuples)."""
  return bool(features) and all(isinstance(o, (tuple, list)) for o in features)
