"""Domains: what one config key takes (values, a distribution, ...), keyless.

A :class:`Domain` is bound to a key by an axis of the sweep tree
(:mod:`jaxsweep.space.nodes`). This module also holds what every layer above
uses to read values: :func:`normalize` (one variant value as a plain, hashable
Python object), :func:`check` (a domain validated for its key) and
:func:`from_mapping` (the YAML form ``{log_uniform: [1.0e-4, 1.0], num: 8}``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from jaxsweep import errors

# The value kinds of the YAML grammar and the options each one takes.
KINDS = ("values", "choice", "fixed", "uniform", "log_uniform", "int_uniform")
OPTIONS = {
    "values": (), "choice": (), "fixed": (),
    "uniform": ("num", "samples", "seed"),
    "log_uniform": ("num", "samples", "seed"),
    "int_uniform": ("num", "samples", "seed"),
}
# The largest size (num, samples, seeds) a sweep may ask for: more variants
# than any run can hold (its list would take minutes and gigabytes to build).
MAX_COUNT = 1_000_000
# int_uniform without num= lists every integer; beyond this it is a mistake.
_MAX_INT_RANGE = 1_000
# PyYAML (YAML 1.1) reads 1e-3 as a string; such strings are floats here.
_EXP_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

_FIX_DIST = "give num= for a grid or samples= for random draws"


class Domain:
  """What one config key takes (values, a distribution, ...), keyless."""


@dataclasses.dataclass(frozen=True)
class Values(Domain):
  """An explicit list of values, one variant each."""
  items: tuple


@dataclasses.dataclass(frozen=True)
class Fixed(Domain):
  """One value, taken literally (a list stays one tuple value)."""
  value: Any


@dataclasses.dataclass(frozen=True)
class Choice(Domain):
  """Options; sampled uniformly inside ``random``, else all of them."""
  options: Any


@dataclasses.dataclass(frozen=True)
class Uniform(Domain):
  """Uniform on ``[low, high]``: a grid (``num``) or draws (``samples``)."""
  low: Any
  high: Any
  num: Any = None
  samples: Any = None
  seed: Any = None
  kind: ClassVar[str] = "uniform"


@dataclasses.dataclass(frozen=True)
class LogUniform(Uniform):
  """Log-uniform on ``[low, high]`` (both positive)."""
  kind: ClassVar[str] = "log_uniform"


@dataclasses.dataclass(frozen=True)
class IntUniform(Uniform):
  """Uniform over the integers ``low..high`` (inclusive)."""
  kind: ClassVar[str] = "int_uniform"


DISTRIBUTIONS = {c.kind: c for c in (Uniform, LogUniform, IntUniform)}


def values(*vs: Any) -> Values:
  """The given values, one variant each.

  A plain list, tuple or range written where a value is expected means the
  same thing; a list *inside* ``values`` is one (tuple) value.

  Examples:
    >>> from jaxsweep import space
    >>> space.expand({"model.features": space.values([64], [128, 128])})
    [{'model.features': (64,)}, {'model.features': (128, 128)}]
  """
  return Values(tuple(freeze_lists(v) for v in vs))


def choice(options: Sequence[Any]) -> Choice:
  """Categorical options: drawn uniformly inside ``random``, else all.

  Examples:
    >>> from jaxsweep import space
    >>> space.expand({"model.activation": space.choice(["relu", "tanh"])})
    [{'model.activation': 'relu'}, {'model.activation': 'tanh'}]
  """
  if isinstance(options, (list, tuple, range, np.ndarray)):
    options = tuple(freeze_lists(v) for v in options)
  return Choice(options)


def uniform(low: float, high: float, *, num: int | None = None,
            samples: int | None = None, seed: int | None = None) -> Uniform:
  """Uniform on ``[low, high]``: ``num`` grid points or ``samples`` draws.

  Inside ``random`` give neither; the search samples it jointly.

  Examples:
    >>> from jaxsweep import space
    >>> space.expand({"weight": space.uniform(0, 1, num=3)})
    [{'weight': 0.0}, {'weight': 0.5}, {'weight': 1.0}]
  """
  return Uniform(low, high, num=num, samples=samples, seed=seed)


def log_uniform(low: float, high: float, *, num: int | None = None,
                samples: int | None = None,
                seed: int | None = None) -> LogUniform:
  """Log-uniform on ``[low, high]``: a geometric grid or log-spread draws.

  Examples:
    >>> from jaxsweep import space
    >>> [v["lr"] for v in space.expand({"lr": space.log_uniform(1e-3, 1e-1, num=3)})]
    [0.001, 0.01, 0.1]
  """
  return LogUniform(low, high, num=num, samples=samples, seed=seed)


def int_uniform(low: int, high: int, *, num: int | None = None,
                samples: int | None = None,
                seed: int | None = None) -> IntUniform:
  """Integers ``low..high``: all of them, ``num`` evenly spaced, or draws.

  Examples:
    >>> from jaxsweep import space
    >>> [v["model.depth"] for v in space.expand({"model.depth": space.int_uniform(1, 4)})]
    [1, 2, 3, 4]
    >>> [v["n"] for v in space.expand({"n": space.int_uniform(0, 10, num=3)})]
    [0, 5, 10]
  """
  return IntUniform(low, high, num=num, samples=samples, seed=seed)


def from_mapping(m: Mapping, key: str) -> Domain:
  """The domain written as a mapping in YAML (``{uniform: [0, 1], num: 5}``).

  Raises:
    errors.ConfigError: for no or several value kinds, or an unknown option.
  """
  kinds = [k for k in m if k in KINDS]
  if len(kinds) != 1:
    if kinds:
      raise errors.ConfigError(
          f"give one value kind, got {', '.join(kinds)}", key=key,
          fix=f"keep one of {', '.join(kinds)}")
    options = {o for opts in OPTIONS.values() for o in opts}
    other = [k for k in m if k not in options]
    if other:
      raise unknown_option(other[0], KINDS, key=key, what="value kind")
    raise errors.ConfigError(
        f"{dict(m)!r} names no value kind", key=key,
        fix=f"write {{{' | '.join(KINDS)}: ...}}, e.g. "
            "{log_uniform: [1.0e-4, 1.0], num: 8}")
  kind = kinds[0]
  arg = m[kind]
  opts = {k: v for k, v in m.items() if k != kind}
  for o in opts:
    if o not in OPTIONS[kind]:
      raise unknown_option(o, OPTIONS[kind], key=key, what=f"{kind} option")
  if kind == "fixed":
    return Fixed(freeze_lists(arg))
  if kind in ("values", "choice"):
    if not isinstance(arg, list):
      raise errors.ConfigError(
          f"{kind} needs a list, got {arg!r}", key=key,
          fix=f"write {{{kind}: [a, b]}}")
    return values(*arg) if kind == "values" else choice(arg)
  if not isinstance(arg, list) or len(arg) != 2:
    raise errors.ConfigError(
        f"{kind} needs [low, high], got {arg!r}", key=key,
        fix=f"write {{{kind}: [low, high], num: 8}}")
  return DISTRIBUTIONS[kind](arg[0], arg[1], **opts)


# ----------------------------------------------------------------------------
# Validation.


def check(domain: Domain, key: str, *, in_random: bool = False) -> Domain:
  """Validates `domain` for `key` and returns it normalized.

  Inside ``random`` (``in_random``) values become a :class:`Choice` and
  distributions must not have a size of their own.

  Raises:
    errors.ConfigError: naming the key and the fix.
  """
  if isinstance(domain, Fixed):
    return Fixed(normalize(domain.value, key))
  if isinstance(domain, (Values, Choice)):
    items = domain.items if isinstance(domain, Values) else domain.options
    name = "values" if isinstance(domain, Values) else "choice"
    if not isinstance(items, tuple):
      raise errors.ConfigError(f"{name} needs a list, got {items!r}", key=key,
                               fix=f"write {name}([a, b])")
    if not items:
      raise errors.ConfigError(
          f"{name} is empty", key=key,
          fix="list at least one value, or remove the key from the sweep")
    items = tuple(normalize(v, key) for v in items)
    seen: dict[str, Any] = {}
    for v in items:
      c = canonical(v)
      if c in seen:
        raise errors.ConfigError(
            f"{name} lists {v!r} twice", key=key,
            fix="remove the duplicate; to set a list-valued key to one value "
                "write {fixed: [64, 64]} (a bare list means several values)")
      seen[c] = v
    if in_random or isinstance(domain, Choice):
      return Choice(items)
    return Values(items)
  if isinstance(domain, Uniform):
    return _check_distribution(domain, key, in_random=in_random)
  raise errors.ConfigError(f"unsupported value spec {domain!r}", key=key)


def _check_distribution(domain: Uniform, key: str, *,
                        in_random: bool) -> Uniform:
  kind = domain.kind
  is_int = isinstance(domain, IntUniform)
  low = _number(domain.low, key, f"{kind} low", integer=is_int)
  high = _number(domain.high, key, f"{kind} high", integer=is_int)
  if isinstance(domain, LogUniform) and (low <= 0 or high <= 0):
    raise errors.ConfigError(
        f"{kind} needs positive bounds, got {low if low <= 0 else high!r}",
        key=key, fix="use bounds > 0 (e.g. [1.0e-5, 1.0]) or uniform for "
                     "ranges that include 0")
  if low >= high:
    raise errors.ConfigError(
        f"{kind} needs low < high, got [{low!r}, {high!r}]", key=key,
        fix="swap the bounds, or use fixed for a single value")
  num = None if domain.num is None else check_count(domain.num, key, "num")
  samples = None if domain.samples is None else check_count(domain.samples,
                                                            key, "samples")
  seed = None if domain.seed is None else check_seed(domain.seed, key)
  if in_random:
    if num is not None or samples is not None or seed is not None:
      raise errors.ConfigError(
          f"{kind} inside random takes no num/samples/seed: the search draws "
          "its samples jointly", key=key,
          fix=f"write {kind}({low!r}, {high!r}) and set samples= and seed= on "
              "random(...)")
  elif num is not None and samples is not None:
    raise errors.ConfigError(
        f"{kind} got both num={num} and samples={samples}", key=key,
        fix="give num= for a grid or samples= for random draws, not both")
  elif num is None and samples is None:
    if not is_int:
      raise errors.ConfigError(
          f"{kind} alone needs a size", key=key,
          fix=f"{_FIX_DIST}; or put it inside random(...) to sample it "
              "jointly")
    if high - low + 1 > _MAX_INT_RANGE:
      raise errors.ConfigError(
          f"{kind} [{low}, {high}] would list {high - low + 1} integers",
          key=key, fix=f"{_FIX_DIST}")
  return type(domain)(low, high, num=num, samples=samples, seed=seed)


def _number(x: Any, key: str, what: str, *, integer: bool = False) -> float:
  if isinstance(x, str) and _EXP_FLOAT_RE.fullmatch(x.strip()):
    x = float(x)
  if (isinstance(x, (bool, np.bool_))
      or not isinstance(x, (int, float, np.integer, np.floating))):
    raise errors.ConfigError(f"{what} must be a number, got {x!r}", key=key,
                             fix="write bounds as numbers, e.g. [1.0e-4, 1.0]")
  if not math.isfinite(x):
    raise errors.ConfigError(f"{what} must be finite, got {x!r}", key=key,
                             fix="use finite bounds")
  if integer:
    if float(x) != int(x):
      raise errors.ConfigError(f"{what} must be an integer, got {x!r}",
                               key=key, fix="use integer bounds, e.g. [1, 4]")
    return int(x)
  return float(x)


def check_count(x: Any, key: str, name: str) -> int:
  """`x` as a positive int (a size such as ``num`` or ``samples``)."""
  if (isinstance(x, (bool, np.bool_))
      or not isinstance(x, (int, np.integer)) or x <= 0):
    raise errors.ConfigError(f"{name} must be a positive integer, got {x!r}",
                             key=key,
                             fix=f"write {name}=8 (a whole number > 0)")
  if x > MAX_COUNT:
    raise errors.ConfigError(f"{name} must be at most {MAX_COUNT:,} (beyond any max_variants "
                             f"a run can hold), got {x!r}", key=key,
                             fix=f"ask for at most {MAX_COUNT:,} (e.g. {name}: 8)")
  return int(x)


def check_seed(x: Any, key: str) -> int:
  """`x` as a random seed (an int >= 0)."""
  if (isinstance(x, (bool, np.bool_))
      or not isinstance(x, (int, np.integer)) or x < 0):
    raise errors.ConfigError(f"seed must be an integer >= 0, got {x!r}",
                             key=key, fix="write seed=0")
  return int(x)


def unknown_option(name: Any, options: Iterable[str], *, key: str | None,
                   what: str) -> errors.ConfigError:
  """The error for an unknown word of the grammar, listing the valid ones.

  Unlike :func:`jaxsweep.errors.unknown_key`, it blames ``key`` (the config
  path the word appears under) and keeps ``options`` in the given order.
  """
  options = list(options)
  return errors.ConfigError(
      f"unknown {what} '{name}'.{errors.did_you_mean(str(name), options)}",
      key=key, fix=f"use one of: {', '.join(options)}" if options else None)


# ----------------------------------------------------------------------------
# Values.


def freeze_lists(v: Any) -> Any:
  """Lists, tuples and numpy arrays (nested too) as tuples; the rest as is.

  Unlike :func:`jaxsweep.keys.freeze`, it keeps NaN and numpy scalars as
  they are (:func:`normalize` converts those) and reads arrays of any rank.
  """
  if isinstance(v, np.ndarray):
    v = v.tolist()
  if isinstance(v, (list, tuple)):
    return tuple(freeze_lists(x) for x in v)
  return v


def normalize(v: Any, key: str) -> Any:
  """One variant value as a plain, hashable Python object.

  Numpy scalars become Python ones, lists, ranges and arrays tuples, and
  strings such as ``1e-3`` (text to YAML 1.1) floats.

  Raises:
    errors.ConfigError: for a mapping or an unsupported type.
  """
  if v is None or isinstance(v, bool):
    return v
  if isinstance(v, str):
    return float(v) if _EXP_FLOAT_RE.fullmatch(v.strip()) else v
  if isinstance(v, np.bool_):
    return bool(v)
  if isinstance(v, (int, np.integer)):
    return int(v)
  if isinstance(v, (float, np.floating)):
    return float(v)
  if isinstance(v, np.ndarray):
    v = v.tolist()
  if isinstance(v, (list, tuple, range)):
    return tuple(normalize(x, key) for x in v)
  if isinstance(v, Mapping):
    raise errors.ConfigError(
        f"a mapping {dict(v)!r} is not a value", key=key,
        fix="use numbers, strings, booleans, null or lists; a distribution "
            "is written {uniform: [0, 1], num: 5}")
  raise errors.ConfigError(
      f"unsupported value {v!r} of type {type(v).__name__}", key=key,
      fix="use numbers, strings, booleans, null or lists of them")


def canonical(v: Any) -> str:
  """Canonical JSON of a normalized value (what variant ids hash)."""
  # JSON keeps 1, 1.0, True and "1" apart, and writes floats with repr().
  return json.dumps(v, separators=(",", ":"))


# ----------------------------------------------------------------------------
# Sizes.


def int_grid(low: int, high: int, num: int) -> list[int]:
  """``num`` evenly spaced integers ``low..high``, rounded, deduplicated."""
  grid = np.rint(np.linspace(low, high, num)).astype(np.int64)
  return [int(v) for v in dict.fromkeys(grid.tolist())]


def size(domain: Domain) -> int:
  """Number of values a checked domain gives outside ``random``."""
  if isinstance(domain, Fixed):
    return 1
  if isinstance(domain, Values):
    return len(domain.items)
  if isinstance(domain, Choice):
    return len(domain.options)
  if domain.samples is not None:
    return domain.samples
  if isinstance(domain, IntUniform):
    span = domain.high - domain.low + 1
    # A step of at most 1 hits every integer, so no need to build the grid.
    return span if domain.num is None or domain.num >= span else len(
        int_grid(domain.low, domain.high, domain.num))
  return domain.num
