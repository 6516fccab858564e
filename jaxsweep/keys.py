"""Hyperparameter keys: one structured form from parsing to the hparams pytree.

A setting is addressed by a *slot* (the component it configures) and an
*argument* of that component: ``optimizer.learning_rate`` is
``Key("optimizer", "learning_rate")``. ``seed`` is the one key without an
argument. Config files, overrides, the sweep grammar, the planner and the
report all speak in these dotted paths; this module is the only place that
splits or joins them.

Examples:
  >>> from jaxsweep import keys
  >>> k = keys.parse("optimizer.learning_rate")
  >>> k.slot, k.arg, str(k)
  ('optimizer', 'learning_rate', 'optimizer.learning_rate')
  >>> raw = {"loss": "cross_entropy"}
  >>> keys.set_path(raw, "loss.label_smoothing", 0.1); raw
  {'loss': {'name': 'cross_entropy', 'label_smoothing': 0.1}}
  >>> keys.flatten({"model": {"features": [64, 64]}, "seed": 1})
  {'model.features': (64, 64), 'seed': 1}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jaxsweep import errors

# The components a setting can configure, in the order they are listed.
SLOTS = ("model", "optimizer", "loss", "data", "train")
SEED = "seed"


class Key(str):
  """A qualified hyperparameter name: the dotted path, with its parts parsed.

  A ``Key`` *is* its dotted string (``Key("optimizer", "learning_rate") ==
  "optimizer.learning_rate"``), so settings keyed by keys are looked up by
  plain strings too.

  Attributes:
    slot: one of :data:`SLOTS`, or ``"seed"``.
    arg: the argument of the slot's component (``""`` for ``seed``).
  """

  __slots__ = ()

  def __new__(cls, slot: str, arg: str = ""):
    return super().__new__(cls, f"{slot}.{arg}" if arg else slot)

  @property
  def slot(self) -> str:
    return self.partition(".")[0]

  @property
  def arg(self) -> str:
    return self.partition(".")[2]

  @property
  def is_seed(self) -> bool:
    return self == SEED

  def __repr__(self) -> str:
    return f"Key({str(self)!r})"


def parse(text: str, *, file: str | None = None) -> Key:
  """Parses ``slot.arg`` (or ``seed``) into a :class:`Key`.

  Raises:
    ConfigError: for a path outside the known slots, with a did-you-mean.
  """
  text = str(text)
  if text == SEED:
    return Key(SEED)
  head, _, tail = text.partition(".")
  if head not in SLOTS or not tail:
    valid = [*(f"{s}.<arg>" for s in SLOTS), SEED]
    raise errors.ConfigError(
        f"'{text}' is not a config path.{errors.did_you_mean(head, (*SLOTS, SEED))}",
        key=text, file=file, fix=f"paths look like {', '.join(valid)}")
  return Key(head, tail)


def is_path(text: Any) -> bool:
  """Whether ``text`` is a qualified path (``slot.arg`` or ``seed``)."""
  if not isinstance(text, str):
    return False
  head, _, tail = text.partition(".")
  return text == SEED or (head in SLOTS and bool(tail))


def freeze(value: Any) -> Any:
  """A hashable, order-stable stand-in for a setting's value.

  Lists become tuples, mappings sorted tuples of items, numpy scalars Python
  scalars, and NaN a marker equal to itself (so NaN settings group together).
  """
  if isinstance(value, (list, tuple)):
    return tuple(freeze(v) for v in value)
  if isinstance(value, Mapping):
    return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
  if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
    value = value.item()
  if isinstance(value, float) and math.isnan(value):
    return ("nan",)
  return value


def set_path(raw: dict, key: str | Key, value: Any) -> None:
  """Sets a dotted path (``optimizer.learning_rate``) in a config dict, in place.

  A section given as a bare name (``loss: cross_entropy``) becomes a mapping
  with that ``name``. Tuples are written as lists (plain YAML).
  """
  key = key if isinstance(key, Key) else parse(key)
  value = plain(value)
  if key.is_seed:
    raw[SEED] = value
    return
  section = raw.get(key.slot)
  if isinstance(section, str):
    section = {"name": section}
  section = dict(section or {})
  section[key.arg] = value
  raw[key.slot] = section


def flatten(raw: Mapping[str, Any], *, file: str | None = None) -> dict[str, Any]:
  """Config dict -> qualified settings (``{"optimizer.learning_rate": 1e-3}``).

  Lists become tuples (settings are hashable); a section may be a bare name.

  Raises:
    ConfigError: for a section that is neither a mapping nor a name.
  """
  out: dict[str, Any] = {}
  for slot in SLOTS:
    value = raw.get(slot)
    if value is None:
      continue
    if isinstance(value, str):
      value = {"name": value}
    if not isinstance(value, Mapping):
      raise errors.ConfigError(
          f"'{slot}' must be a mapping (or a name), got {type(value).__name__}.",
          key=slot, file=file, fix=f"write e.g. {slot}: {{name: ..., ...}}")
    for k, v in value.items():
      out[f"{slot}.{k}"] = as_tuple(v) if isinstance(v, list) else v
  if SEED in raw:
    out[SEED] = raw[SEED]
  return out


def as_tuple(value: Any) -> Any:
  """Lists (nested too) as tuples, so a setting's value is hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(as_tuple(v) for v in value)
  return value


def plain(x: Any) -> Any:
  """Tuples as lists and keys as strings: plain YAML/JSON types."""
  if isinstance(x, Mapping):
    return {str(k): plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [plain(v) for v in x]
  return x


