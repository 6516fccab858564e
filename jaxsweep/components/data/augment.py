"""Image augmentation drawn inside the compiled training step.

A dataset asks for augmentation with ``info["augment"]`` (the image loaders
set it from ``data: {..., augment: {crop_padding: 4, flip: true}}``; for your
own arrays use :func:`with_augment`). The options are structural: the program
builder reads them once per group and the training step calls :func:`augment`
on every training batch, with a key of its own drawn from the variant's run
key and the step, so each variant and each step draws its own crops and
flips. Evaluation never augments.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from jaxsweep.components.data import augment
  >>> x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
  >>> augment.augment(x, jax.random.key(0), crop_padding=1, flip=True).shape
  (2, 4, 4, 1)
  >>> bool((augment.augment(x, jax.random.key(0)) == x).all())  # No options: identity.
  True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsweep import errors

# Options and their defaults (all off).
OPTIONS = {"crop_padding": 0, "flip": False}


def check_options(options: Mapping[str, Any] | None, *, key: str = "data.augment"
                  ) -> dict[str, Any] | None:
  """Validated augmentation options, or ``None`` when nothing is on.

  Args:
    options: ``{"crop_padding": int >= 0, "flip": bool}`` (either may be
      left out), ``None`` or ``{}``.
    key: the setting named by errors.

  Returns:
    Both options with plain Python values, or ``None`` when every option is
    off (augmenting would be the identity).

  Raises:
    ConfigError: for an unknown option or a bad value.
  """
  if options is None:
    return None
  if not isinstance(options, Mapping):
    raise errors.ConfigError(
        f"must be a mapping of options, got {type(options).__name__} {options!r}.", key=key,
        fix="write e.g. augment: {crop_padding: 4, flip: true}")
  out = dict(OPTIONS)
  for name, value in options.items():
    if name not in OPTIONS:
      raise errors.unknown_key(f"{key}.{name}", OPTIONS, what="augmentation option",
                               name=str(name))
    if name == "flip":
      if not isinstance(value, (bool, np.bool_)):
        raise errors.ConfigError(f"must be true or false, got {value!r}.",
                                 key=f"{key}.flip", fix="write flip: true")
      out[name] = bool(value)
    else:
      if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
          or value < 0):
        raise errors.ConfigError(f"must be a whole number >= 0, got {value!r}.",
                                 key=f"{key}.{name}", fix="write e.g. crop_padding: 4")
      out[name] = int(value)
  return out if any(out.values()) else None


def check_images(x: np.ndarray, options: Mapping[str, Any] | None,
                 key: str = "data.augment") -> None:
  """Refuses augmentation of inputs that are not images ``[N, H, W, C]``.

  Raises:
    ConfigError: for inputs of another rank, or a crop padding at least as
      large as the image (the crop would mostly be padding).
  """
  if not options:
    return
  if np.ndim(x) != 4:
    raise errors.ConfigError(
        f"crops and flips need images [N, H, W, C], but the inputs have shape "
        f"{tuple(np.shape(x))}.", key=key,
        fix="drop augment for this dataset, or give images with a channel axis")
  h, w = np.shape(x)[1:3]
  if options.get("crop_padding", 0) >= min(h, w):
    raise errors.ConfigError(
        f"crop_padding {options['crop_padding']} is not smaller than the "
        f"{h}x{w} images.", key=f"{key}.crop_padding",
        fix="use a padding well below the image size (4 for 32x32 images)")


def augment(x: jax.Array, key: jax.Array, *, crop_padding: int = 0,
            flip: bool = False) -> jax.Array:
  """Random crops and horizontal flips of ONE batch of images, per example.

  Args:
    x: images ``[B, H, W, C]`` (or ``[B, H, W]``).
    key: the PRNG key of this batch (one variant, one step).
    crop_padding: pad every side with ``crop_padding`` zeros (after
      normalisation: the training split's mean colour) and crop an ``H x W``
      window at a random offset; 0: no crop.
    flip: mirror each image left-right with probability 1/2.

  Returns:
    The augmented batch, same shape and dtype. ``crop_padding=0`` and
    ``flip=False`` return ``x`` itself.
  """
  if not crop_padding and not flip:
    return x
  squeeze = x.ndim == 3
  if squeeze:
    x = x[..., None]
  b, h, w, c = x.shape
  k_crop, k_flip = jax.random.split(key)
  if crop_padding:
    p = int(crop_padding)
    padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * p + 1)
    x = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(
        padded, offsets)
  if flip:
    mirror = jax.random.bernoulli(k_flip, 0.5, (b,))
    x = jnp.where(mirror[:, None, None, None], x[:, :, ::-1, :], x)
  return x[..., 0] if squeeze else x


def options_of(info: Mapping[str, Any]) -> dict[str, Any] | None:
  """The augmentation options a dataset's ``info`` asks for (``None``: none)."""
  return check_options(info.get("augment"))


def with_augment(ds, **options):
  """A copy of a Dataset whose training batches are augmented.

  Args:
    ds: a :class:`~jaxsweep.components.data.Dataset` of images.
    **options: ``crop_padding`` and ``flip`` (see :func:`augment`).

  Returns:
    The dataset with ``info["augment"]`` set (or removed when every option
    is off).

  Raises:
    ConfigError: for bad options or inputs that are not ``[N, H, W, C]``.
  """
  checked = check_options(options)
  check_images(ds.train["x"], checked)
  info = {k: v for k, v in ds.info.items() if k != "augment"}
  if checked:
    info["augment"] = checked
  return dataclasses.replace(ds, info=info)
