"""The built-in models, by name: ``mlp``, ``cnn``, ``rnn`` and ``rnn_classifier``.

``mlp`` and ``cnn`` take any input (images are flattened by the MLP);
``rnn`` is a character-level language model (int tokens ``[B, T]`` in,
logits ``[B, T, vocab]`` out); ``rnn_classifier`` reads padded int tokens
``[B, T]`` and returns class logits ``[B, classes]``. Each factory takes ``num_outputs`` (filled
from the data when not given) and ``kernel_init``. Given a *tuple* of
activation names, ``mlp`` and ``cnn`` pick one per variant from the traced
call argument ``activation_index``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxsweep import errors
from jaxsweep.components import registry
from jaxsweep.components.models import adapters
from jaxsweep.components.models import layers as layers_lib
from jaxsweep.components.models import masked
from jaxsweep.components.models.layers import Activation


class MLP(nn.Module):
  """A multi-layer perceptron.

  Every kernel is drawn unit by unit (:class:`~jaxsweep.components.models.masked.ColumnDense`),
  so the same MLP padded to a wider or deeper population starts from the
  same parameters (see :mod:`jaxsweep.components.models.masked`).

  Attributes:
    features: hidden layer widths (depth = len(features)), or a tuple of
      such tuples: one compiled network padded to the widest and deepest,
      each variant picking its widths by the traced ``features_index``.
    num_outputs: width of the output layer.
    activation: name in :data:`ACTIVATIONS`, or a tuple of names chosen per
      variant by the traced ``activation_index`` call argument.
    batch_norm: batch normalisation after each hidden Dense.
    kernel_init: name in :data:`INITIALIZERS` (``orthogonal`` cannot be
      padded, so it needs a single ``features``).
  """

  features: Sequence[int] | Sequence[Sequence[int]] = (128, 128)
  num_outputs: int = 10
  activation: Activation = "relu"
  batch_norm: bool = False
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout_rate=0.0,
               activation_index=0, features_index=0):
    """Logits for ``x`` (any trailing shape, flattened).

    Args:
      x: ``[B, ...]`` inputs.
      train: batch statistics and dropout on.
      dropout_rate: traced dropout rate after each hidden layer.
      activation_index: traced index into a tuple ``activation`` (ignored
        for a single name).
      features_index: traced index into a choice of ``features`` (ignored
        for a single tuple of widths).
    """
    x = x.reshape((x.shape[0], -1))
    if masked.is_choice(self.features):
      return self._masked(x, train, dropout_rate, activation_index, features_index)
    for layer, width in enumerate(self.features):
      x = self._dense(int(width), f"hidden_{layer}")(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn_{layer}")(x)
      x = layers_lib.apply_activation(self.activation, x, activation_index)
      x = self._dropout(x, train, dropout_rate)
    return self._dense(self.num_outputs, "output")(x)

  def _dense(self, width: int, name: str):
    # Named, so a layer's parameter key is the same padded or not.
    if self.kernel_init in masked.COLUMN_INITIALIZERS:
      return masked.ColumnDense(width, kernel_init=self.kernel_init, name=name)
    return nn.Dense(width, kernel_init=layers_lib.initializer(self.kernel_init), name=name)

  def _dropout(self, x, train, rate):
    if not train or layers_lib.is_zero(rate):
      return x
    return masked.column_dropout(x, rate, self.make_rng("dropout"))

  def _masked(self, x, train, dropout_rate, activation_index, features_index):
    """Every option padded to the widest layer and the deepest stack.

    A padded unit is zero after its activation; a layer beyond the variant's
    depth passes its input through; the next layer's fan-in and rows follow
    the last real layer. Their parameters start at zero and receive zero
    gradients, so they stay zero (see :mod:`~jaxsweep.components.models.masked`).
    """
    depth, width, table = masked.width_table(self.features)
    widths = jnp.asarray(table)[layers_lib.switch_index(features_index)]
    units = jnp.arange(width)
    h, last = x, jnp.asarray(x.shape[-1], jnp.int32)
    for layer in range(depth):
      w = widths[layer]
      real = units < w
      y = masked.ColumnDense(width, kernel_init=self.kernel_init, name=f"hidden_{layer}")(
          h, fan_in=last, fan_out=w, rows_mask=None if layer == 0 else units < last,
          cols_mask=real)
      if self.batch_norm:
        y = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn_{layer}",
                         scale_init=masked.mask_init(real))(y)
      y = jnp.where(real, layers_lib.apply_activation(self.activation, y, activation_index), 0.0)
      y = self._dropout(y, train, dropout_rate)
      h = y if layer == 0 else jnp.where(w > 0, y, h)
      last = jnp.where(w > 0, w, last)
    return masked.ColumnDense(self.num_outputs, kernel_init=self.kernel_init, name="output")(
        h, fan_in=last, rows_mask=units < last)


POOLINGS = ("max", "avg", "none")


class CNN(nn.Module):
  """A small convolutional network: conv blocks, then a dense head.

  Each block is ``Conv(k x k, SAME) -> [BatchNorm] -> activation -> pool(2x2)
  -> dropout``; pooling uses SAME padding so a 1x1 map stays 1x1 (deep
  stacks on 8x8 digits do not run out of pixels). The last block's maps
  are flattened channel by channel (``[B, C, H, W]``), so a network with
  fewer channels reads a prefix of a wider one's features.

  With an initializer in :data:`~jaxsweep.components.models.masked.COLUMN_INITIALIZERS`
  every kernel is drawn unit by unit (:class:`~jaxsweep.components.models.masked.ColumnConv`,
  :class:`~jaxsweep.components.models.masked.ColumnDense`), so the same CNN
  padded to more channels starts from the same parameters.

  Attributes:
    channels: output channels of each conv block, or a tuple of such tuples
      (all of one length): one network padded to the most channels per
      block, each variant picking its own by the traced ``channels_index``.
    kernel_size: square kernel size.
    pooling: ``max``, ``avg`` or ``none`` (2x2, stride 2).
    head: widths of the hidden dense layers after flattening.
    num_outputs: width of the output layer.
    activation: a name, or a tuple of names chosen by ``activation_index``.
    batch_norm: batch normalisation after each convolution.
    kernel_init: name in :data:`INITIALIZERS` (convolutions and dense).
  """

  channels: Sequence[int] | Sequence[Sequence[int]] = (16, 32)
  kernel_size: int = 3
  pooling: str = "max"
  head: Sequence[int] = (64,)
  num_outputs: int = 10
  activation: Activation = "relu"
  batch_norm: bool = False
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout_rate=0.0,
               activation_index=0, channels_index=0):
    """Logits for images ``x`` of shape ``[B, H, W, C]`` (or ``[B, H, W]``).

    Args:
      x: images; a missing channel axis is added.
      train: batch statistics and dropout on.
      dropout_rate: traced dropout rate after each block and head layer.
      activation_index: traced index into a tuple ``activation``.
      channels_index: traced index into a choice of ``channels`` (ignored
        for a single tuple).
    """
    if x.ndim == 3:
      x = x[..., None]
    if x.ndim != 4:
      raise ValueError(
          f"the cnn model needs images [B, H, W, C], got inputs of shape {x.shape}; "
          "for digits set data.as_images: true")
    choice = masked.is_choice(self.channels)
    if choice:
      _, width, table = masked.width_table(self.channels, key="model.channels")
      widths = jnp.asarray(table)[layers_lib.switch_index(channels_index)]
      sizes = [width] * len(self.channels[0])
    else:
      widths = sizes = [int(c) for c in self.channels]
    column = self.kernel_init in masked.COLUMN_INITIALIZERS
    k = int(self.kernel_size)
    drop = train and not layers_lib.is_zero(dropout_rate)
    last = x.shape[-1]
    for layer, size in enumerate(sizes):
      c = widths[layer]
      real = jnp.arange(size) < c if choice else None
      name = f"conv_{layer}"
      if column:
        x = masked.ColumnConv(size, k, kernel_init=self.kernel_init, name=name)(
            x, in_channels=last, out_channels=c,
            rows_mask=jnp.arange(x.shape[-1]) < last if choice and layer else None,
            cols_mask=real)
      else:
        x = nn.Conv(size, (k, k), padding="SAME", name=name,
                    kernel_init=layers_lib.initializer(self.kernel_init))(x)
      if self.batch_norm:
        scale = nn.initializers.ones if real is None else masked.mask_init(real)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn_{layer}",
                         scale_init=scale)(x)
      x = layers_lib.apply_activation(self.activation, x, activation_index)
      if real is not None:  # A padded channel is 0 (a bias or sigmoid(0) cannot leak).
        x = jnp.where(real, x, 0.0)
      if self.pooling == "max":
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
      elif self.pooling == "avg":
        x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME",
                        count_include_pad=False)
      if drop:
        x = masked.column_dropout(x, dropout_rate, self.make_rng("dropout"))
      last = c
    pixels = x.shape[1] * x.shape[2]
    x = jnp.moveaxis(x, -1, 1).reshape((x.shape[0], -1))
    fan_in = pixels * last
    rows = jnp.arange(x.shape[-1]) < fan_in if choice else None
    for layer, width in enumerate((*self.head, self.num_outputs)):
      name = "output" if layer == len(self.head) else f"head_{layer}"
      if column:
        x = masked.ColumnDense(int(width), kernel_init=self.kernel_init, name=name)(
            x, fan_in=fan_in, rows_mask=rows)
      else:
        x = nn.Dense(int(width), kernel_init=layers_lib.initializer(self.kernel_init),
                     name=name)(x)
      if name == "output":
        return x
      x = layers_lib.apply_activation(self.activation, x, activation_index)
      if drop:
        x = masked.column_dropout(x, dropout_rate, self.make_rng("dropout"))
      fan_in, rows = x.shape[-1], None


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
      (:func:`jaxsweep.components.models.layers.orthogonal`, as Flax's default but without LAPACK).
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
    init = layers_lib.initializer(self.kernel_init)
    h = nn.Embed(self.num_outputs, self.embed_dim)(x.astype(jnp.int32))
    for _ in range(self.layers):
      h = nn.RNN(CELLS[self.cell](features=self.hidden, kernel_init=init,
                                  recurrent_kernel_init=layers_lib.orthogonal()))(h)
      if train and not layers_lib.is_zero(dropout_rate):
        h = layers_lib.dropout(h, dropout_rate, self.make_rng("dropout"), train=train)
    return nn.Dense(self.num_outputs, kernel_init=init)(h)


RNN_POOLINGS = ("last", "mean", "max")


class RNNClassifier(nn.Module):
  """A recurrent text classifier over padded token ids.

  ``Embed(vocab_size, embed_dim) -> layers x RNN(cell, hidden)`` (each
  optionally bidirectional, the two directions concatenated) ``-> pooling
  -> Dense(num_outputs)``, with dropout (traced rate) on the output of each
  recurrent layer.

  Id 0 is padding: its embedding is zero, the recurrence stops after the
  last real token of each row (sequences are right-padded, as the
  ``text_classification`` dataset makes them) and pooling covers the real
  tokens only. Ids at or above ``vocab_size`` are read as the unknown id 1.

  Attributes:
    num_outputs: number of classes.
    vocab_size: embedding rows (the dataset's vocabulary size).
    embed_dim: embedding width.
    cell: ``lstm``, ``gru`` or ``simple``.
    hidden: recurrent state width (per direction).
    layers: number of stacked recurrent layers.
    bidirectional: also read each sequence right to left.
    pooling: ``last`` (the state after the last real token; bidirectional:
      with the backward state after the first), ``mean`` or ``max`` over
      the real tokens. A row of padding only pools to zeros.
    kernel_init: name in :data:`INITIALIZERS` for the input kernels and the
      output layer; recurrent kernels are orthogonal
      (:func:`jaxsweep.components.models.layers.orthogonal`).
  """

  num_outputs: int = 2
  vocab_size: int = 20000
  embed_dim: int = 64
  cell: str = "lstm"
  hidden: int = 128
  layers: int = 1
  bidirectional: bool = False
  pooling: str = "last"
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout_rate=0.0):
    """Class logits ``[B, num_outputs]`` for int tokens ``x`` ``[B, T]`` (0 = padding)."""
    if x.ndim != 2:
      raise ValueError(f"the rnn_classifier model needs int tokens [B, T], got shape {x.shape}")
    init = layers_lib.initializer(self.kernel_init)
    x = x.astype(jnp.int32)
    mask = x != 0
    ids = jnp.where(x < self.vocab_size, x, 1)
    h = nn.Embed(self.vocab_size, self.embed_dim)(ids) * mask[..., None]
    steps = jnp.arange(x.shape[1])
    # One past the last real token of each row (0 for a row of padding).
    lengths = jnp.max(jnp.where(mask, steps + 1, 0), axis=1)

    def cell():
      return CELLS[self.cell](features=self.hidden, kernel_init=init,
                              recurrent_kernel_init=layers_lib.orthogonal())

    for _ in range(self.layers):
      forward = nn.RNN(cell())(h, seq_lengths=lengths)
      if self.bidirectional:
        backward = nn.RNN(cell(), reverse=True, keep_order=True)(h, seq_lengths=lengths)
        h = jnp.concatenate([forward, backward], axis=-1)
      else:
        h = forward
      if train and not layers_lib.is_zero(dropout_rate):
        h = layers_lib.dropout(h, dropout_rate, self.make_rng("dropout"), train=train)
    any_token = lengths > 0
    if self.pooling == "last":
      last = jnp.maximum(lengths - 1, 0)
      pooled = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]
      if self.bidirectional:  # The backward direction ends at the first token.
        pooled = jnp.concatenate([pooled[:, :self.hidden], h[:, 0, self.hidden:]], axis=-1)
    elif self.pooling == "mean":
      pooled = (jnp.sum(h * mask[..., None], axis=1)
                / jnp.maximum(jnp.sum(mask, axis=1), 1)[:, None].astype(h.dtype))
    else:
      pooled = jnp.max(jnp.where(mask[..., None], h, jnp.finfo(h.dtype).min), axis=1)
    pooled = jnp.where(any_token[:, None], pooled, 0.0)
    return nn.Dense(self.num_outputs, kernel_init=init)(pooled)


# --------------------------------------------------------------------------
# Registry of named model factories (``model: {name: mlp, ...}`` in configs).

# A name "package.module:Name" imports the user's own model (a Linen class
# or a factory) from the working directory: see jaxsweep.components.registry.
REGISTRY = registry.Registry("model", default="mlp", adapt=adapters.linen_factory)


@REGISTRY.register("mlp")
def mlp(*, features: Sequence[int] = (128, 128), num_outputs: int = 10,
        activation: Activation = "relu", batch_norm: bool = False,
        kernel_init: str = "lecun_normal") -> MLP:
  """The MLP; ``features`` is the width of each hidden layer.

  ``activation`` may be a list of names: the module then picks one per
  variant from the traced call argument ``activation_index``. ``features``
  may be a list of width lists (``vectorize: [model.features]`` passes one):
  one network padded to the widest and deepest, each variant masked to its
  own widths by the traced ``features_index``.
  """
  if masked.is_choice(features):
    features = tuple(layers_lib.check_widths(o, "model.features") for o in features)
    masked.width_table(features)
    masked.check_initializer(kernel_init)
  else:
    features = layers_lib.check_widths(features, "model.features", allow_empty=True)
  activation = layers_lib.check_activation(activation)
  layers_lib.initializer(kernel_init)
  return MLP(features=features, num_outputs=int(num_outputs),
             activation=activation, batch_norm=bool(batch_norm),
             kernel_init=kernel_init)


@REGISTRY.register("cnn")
def cnn(*, channels: Sequence[int] = (16, 32), kernel_size: int = 3,
        pooling: str = "max", head: Sequence[int] = (64,), num_outputs: int = 10,
        activation: Activation = "relu", batch_norm: bool = False,
        kernel_init: str = "lecun_normal") -> CNN:
  """The CNN (:class:`CNN`): conv blocks of ``channels``, a dense ``head``.

  Use it on images, e.g. ``data: {name: digits, as_images: true}``.
  ``channels`` may be a list of channel lists of one length
  (``vectorize: [model.channels]`` passes one): one network padded to the
  most channels per block, each variant masked to its own by the traced
  ``channels_index``.
  """
  if masked.is_choice(channels):
    channels = tuple(layers_lib.check_widths(o, "model.channels") for o in channels)
    if len({len(o) for o in channels}) > 1:
      raise errors.ConfigError(
          f"a vectorized choice of channels needs one number of conv blocks, got "
          f"{sorted({len(o) for o in channels})} (a block halves the image, so a "
          "skipped one cannot pass its input through).",
          key="model.channels",
          fix="give every option as many blocks, or leave model.channels out of vectorize "
              "(each depth then compiles apart)")
    masked.width_table(channels, key="model.channels")
    masked.check_initializer(kernel_init)
  else:
    channels = layers_lib.check_widths(channels, "model.channels")
  head = layers_lib.check_widths(head, "model.head", allow_empty=True)
  if int(kernel_size) < 1:
    raise errors.ConfigError(f"kernel_size must be >= 1, got {kernel_size}.",
                             key="model.kernel_size")
  if not isinstance(pooling, str) or pooling not in POOLINGS:
    raise errors.unknown_key("model.pooling", POOLINGS, what="pooling", name=str(pooling))
  activation = layers_lib.check_activation(activation)
  layers_lib.initializer(kernel_init)
  return CNN(channels=channels, kernel_size=int(kernel_size), pooling=pooling,
             head=head, num_outputs=int(num_outputs), activation=activation,
             batch_norm=bool(batch_norm), kernel_init=kernel_init)


@REGISTRY.register("rnn")
def rnn(*, embed_dim: int = 32, cell: str = "lstm", hidden: int = 128,
        layers: int = 1, num_outputs: int = 128,
        kernel_init: str = "lecun_normal") -> RecurrentLM:
  """The recurrent language model (:class:`RecurrentLM`).

  ``num_outputs`` is the vocabulary size (filled from the data).
  """
  if not isinstance(cell, str) or cell not in CELLS:
    raise errors.unknown_key("model.cell", CELLS, what="recurrent cell", name=str(cell))
  for k, v in (("embed_dim", embed_dim), ("hidden", hidden), ("layers", layers),
               ("num_outputs", num_outputs)):
    if isinstance(v, bool) or int(v) < 1:
      raise errors.ConfigError(f"{k} must be a positive integer, got {v!r}.",
                               key=f"model.{k}")
  layers_lib.initializer(kernel_init)
  return RecurrentLM(num_outputs=int(num_outputs), embed_dim=int(embed_dim),
                     cell=cell, hidden=int(hidden), layers=int(layers),
                     kernel_init=kernel_init)


@REGISTRY.register("rnn_classifier")
def rnn_classifier(*, vocab_size: int = 20000, embed_dim: int = 64, cell: str = "lstm",
                   hidden: int = 128, layers: int = 1, bidirectional: bool = False,
                   pooling: str = "last", num_outputs: int = 2,
                   kernel_init: str = "lecun_normal") -> RNNClassifier:
  """The recurrent text classifier (:class:`RNNClassifier`).

  ``num_outputs`` (the number of classes) and ``vocab_size`` are filled
  from the data when not given (the ``text_classification`` dataset says
  its vocabulary size in ``info["model_args"]``).
  """
  if not isinstance(cell, str) or cell not in CELLS:
    raise errors.unknown_key("model.cell", CELLS, what="recurrent cell", name=str(cell))
  if not isinstance(pooling, str) or pooling not in RNN_POOLINGS:
    raise errors.unknown_key("model.pooling", RNN_POOLINGS, what="pooling", name=str(pooling))
  for k, v, low in (("vocab_size", vocab_size, 2), ("embed_dim", embed_dim, 1),
                    ("hidden", hidden, 1), ("layers", layers, 1),
                    ("num_outputs", num_outputs, 1)):
    if (isinstance(v, bool) or not isinstance(v, numbers.Real) or not float(v).is_integer()
        or int(v) < low):
      raise errors.ConfigError(f"{k} must be a whole number >= {low}, got {v!r}.",
                               key=f"model.{k}")
  layers_lib.initializer(kernel_init)
  return RNNClassifier(num_outputs=int(num_outputs), vocab_size=int(vocab_size),
                       embed_dim=int(embed_dim), cell=cell, hidden=int(hidden),
                       layers=int(layers), bidirectional=bool(bidirectional),
                       pooling=pooling, kernel_init=kernel_init)


def build(name: str, **kwargs) -> nn.Module:
  """Builds a registered model, with clear errors for unknown arguments."""
  return REGISTRY.build(name, **kwargs)
