"""Sweep grammar: which hyperparameter variants a run trains.

A *sweep* maps dotted config paths (``optimizer.learning_rate``, ``seed``) to
the values they take. :func:`expand` turns it into an ordered list of
*variants*, plain dicts ``{path: value}`` whose values are Python scalars,
strings, booleans, ``None`` or tuples (lists become tuples, numpy scalars
become Python ones), so variants are hashable and print cleanly. The same
sweep expands to the same variants, in the same order, on every machine.

Python API::

  from jaxsweep import space
  sweep = space.product({
      "optimizer.learning_rate": space.log_uniform(1e-4, 1.0, num=16),
      "model.activation": ["relu", "tanh"],
  }, space.seeds(3))
  variants = space.expand(sweep)  # 16 * 2 * 3 = 96 dicts

YAML grammar (the ``sweep:`` section of a config; :func:`parse`)::

  sweep:
    optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0], num: 16}  # log grid
    model.activation: [relu, tanh]                    # values (also {values: [..]})
    model.features: [[64], [128, 128]]                # list values -> tuples
    train.steps: 1000                                 # a scalar is one fixed value
    weight: {uniform: [0, 1], samples: 8, seed: 0}    # 8 seeded random draws
    model.depth: {int_uniform: [1, 4]}                # every int 1..4 (or num: N)
    data.name: {choice: [digits, synthetic]}          # like values
    seed: [0, 1, 2]                                   # or  seeds: 3

* Several keys in one mapping form a Cartesian product; the first key varies
  slowest (like ``itertools.product``). ``seed`` (and ``seeds:``) is always
  crossed last, i.e. varies fastest, wherever it is written.
* A value under a key is: a list (values), a scalar (fixed), or a mapping with
  exactly one of ``values``, ``choice``, ``fixed``, ``uniform``,
  ``log_uniform``, ``int_uniform``; distributions take ``[low, high]`` and
  either ``num: N`` (grid with both endpoints, log-spaced for
  ``log_uniform``, rounded and deduplicated for ``int_uniform``) or
  ``samples: N`` (random draws; ``seed`` defaults to one derived from the
  key). ``int_uniform`` with neither means every integer in the range.
* To set a list-valued key to one value, write ``{fixed: [64, 64]}`` or
  ``[[64, 64]]``: a bare list always means "sweep over these values".
* Strings such as ``1e-3`` (which PyYAML reads as text) are read as floats.
* Reserved keys (not config paths):

  - ``product: [sweep, ...]`` -- Cartesian product of sub-sweeps.
  - ``zip: [sweep, ...]`` or ``zip: {key: [..], key: [..]}`` -- lockstep; all
    sides must have the same length.
  - ``chain: [sweep, ...]`` -- concatenation; each branch may set different
    keys, which is one way to write conditional parameters.
  - ``random: {params: {...}, samples: N, seed: 0, method: random}`` -- joint
    random search over every distribution in ``params`` (no ``num``/
    ``samples`` inside); lists inside are sampled as ``choice``, scalars are
    fixed. ``method`` is ``random``, ``sobol`` or ``halton`` (scrambled,
    seeded quasi-random points, via ``scipy.stats.qmc``).
  - ``seeds: N`` (seeds ``0..N-1``) or ``seeds: [list]`` -- the ``seed`` key.
  - ``when: {if: {key: value}, then: sweep}`` (or a list of them), or a
    mapping ``{if: ..., then: ...}`` inside ``product:`` -- a conditional
    sub-sweep crossed only into the variants whose keys match the condition
    (a list of values in the condition means "any of"); the other variants
    simply lack its keys. Conditions test keys set by the rest of the same
    product; a condition that never holds is an error.
  - ``fixed: {key: value, ...}`` -- settings taken literally (lists included).

Conditional example::

  sweep:
    optimizer.name: [sgd, adam]
    optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-1], num: 4}
    when:
      if: {optimizer.name: sgd}
      then: {optimizer.momentum: [0.0, 0.9]}

Command-line overrides (:func:`parse_overrides`) use Hydra's ``key=value``
with ``key=v1,v2,...`` for a product axis; W&B sweep files are read by
:func:`from_wandb`.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import hashlib
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import yaml

from jaxsweep import errors

SEED_KEY = "seed"
DEFAULT_MAX_VARIANTS = 10_000
METHODS = ("random", "sobol", "halton")
# int_uniform without num= lists every integer; beyond this it is a mistake.
_MAX_INT_RANGE = 1_000

# This module defines `zip`; the builtin is still needed internally.
_zip = builtins.zip

_FIX_SIZE = "pass --max-variants N (or max_variants=N) to confirm"
_FIX_DIST = "give num= for a grid or samples= for random draws"


# ----------------------------------------------------------------------------
# Value specs: what one key takes, before it is bound to a key.


class Spec:
  """What one config key takes (values, a distribution, ...), keyless."""


@dataclasses.dataclass(frozen=True)
class Values(Spec):
  """An explicit list of values, one variant each."""
  items: tuple


@dataclasses.dataclass(frozen=True)
class Fixed(Spec):
  """One value, taken literally (a list stays one tuple value)."""
  value: Any


@dataclasses.dataclass(frozen=True)
class Choice(Spec):
  """Options; sampled uniformly inside :func:`random`, else all of them."""
  options: Any


@dataclasses.dataclass(frozen=True)
class Uniform(Spec):
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


_DISTRIBUTIONS = {c.kind: c for c in (Uniform, LogUniform, IntUniform)}


def values(*vs: Any) -> Values:
  """The given values, one variant each.

  A plain list, tuple or range written where a value is expected means the
  same thing; a list *inside* ``values`` is one (tuple) value.

  Examples:
    >>> expand({"model.features": values([64], [128, 128])})
    [{'model.features': (64,)}, {'model.features': (128, 128)}]
  """
  return Values(tuple(_freeze(v) for v in vs))


def fixed(value: Any) -> Fixed | Sweep:
  """One value taken literally, or a mapping of such settings as a sweep.

  Examples:
    >>> expand({"model.features": fixed([64, 64])})
    [{'model.features': (64, 64)}]
    >>> expand(fixed({"train.steps": 100, "model.features": [8]}))
    [{'train.steps': 100, 'model.features': (8,)}]
  """
  if isinstance(value, Mapping):
    return _fixed_mapping(value)
  return Fixed(_freeze(value))


def choice(options: Sequence[Any]) -> Choice:
  """Categorical options: drawn uniformly inside :func:`random`, else all.

  Examples:
    >>> expand({"model.activation": choice(["relu", "tanh"])})
    [{'model.activation': 'relu'}, {'model.activation': 'tanh'}]
  """
  if isinstance(options, (list, tuple, range, np.ndarray)):
    options = tuple(_freeze(v) for v in options)
  return Choice(options)


def uniform(low: float, high: float, *, num: int | None = None,
            samples: int | None = None, seed: int | None = None) -> Uniform:
  """Uniform on ``[low, high]``: ``num`` grid points or ``samples`` draws.

  Inside :func:`random` give neither; the search samples it jointly.

  Examples:
    >>> expand({"weight": uniform(0, 1, num=3)})
    [{'weight': 0.0}, {'weight': 0.5}, {'weight': 1.0}]
  """
  return Uniform(low, high, num=num, samples=samples, seed=seed)


def log_uniform(low: float, high: float, *, num: int | None = None,
                samples: int | None = None,
                seed: int | None = None) -> LogUniform:
  """Log-uniform on ``[low, high]``: a geometric grid or log-spread draws.

  Examples:
    >>> [v["lr"] for v in expand({"lr": log_uniform(1e-3, 1e-1, num=3)})]
    [0.001, 0.01, 0.1]
  """
  return LogUniform(low, high, num=num, samples=samples, seed=seed)


def int_uniform(low: int, high: int, *, num: int | None = None,
                samples: int | None = None,
                seed: int | None = None) -> IntUniform:
  """Integers ``low..high``: all of them, ``num`` evenly spaced, or draws.

  Examples:
    >>> [v["model.depth"] for v in expand({"model.depth": int_uniform(1, 4)})]
    [1, 2, 3, 4]
    >>> [v["n"] for v in expand({"n": int_uniform(0, 10, num=3)})]
    [0, 5, 10]
  """
  return IntUniform(low, high, num=num, samples=samples, seed=seed)


# ----------------------------------------------------------------------------
# Sweep nodes: keyed, composable.


class Sweep:
  """A node of a sweep tree; :func:`expand` turns it into variants."""


@dataclasses.dataclass(frozen=True)
class Axis(Sweep):
  """One key and the (validated) spec of its values."""
  key: str
  spec: Spec


@dataclasses.dataclass(frozen=True)
class Product(Sweep):
  """Cartesian product; ``seed`` parts last, conditional parts before."""
  parts: tuple


@dataclasses.dataclass(frozen=True)
class Zip(Sweep):
  """Lockstep combination of equally long sub-sweeps."""
  parts: tuple


@dataclasses.dataclass(frozen=True)
class Chain(Sweep):
  """Concatenation of sub-sweeps."""
  parts: tuple


@dataclasses.dataclass(frozen=True)
class Random(Sweep):
  """Joint (quasi-)random search over ``params``."""
  params: tuple  # ((key, Spec), ...)
  samples: int
  seed: int
  method: str


@dataclasses.dataclass(frozen=True)
class When(Sweep):
  """A sub-sweep crossed only into variants that match ``condition``."""
  condition: tuple  # ((key, (allowed value, ...)), ...)
  then: Sweep


def product(*parts: Sweep | Mapping[str, Any]) -> Sweep:
  """Cartesian product; the first key varies slowest, ``seed`` fastest.

  A dict is the product of its keys. Parts made by :func:`when` are applied
  after the others, to the variants that match their condition.

  Examples:
    >>> expand(product({"a": [1, 2]}, {"b": ["x", "y"]}))
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
  """
  return _product([_to_sweep(p) for p in parts])


def zip(*parts: Sweep | Mapping[str, Any]) -> Zip:  # noqa: A001
  """Lockstep: the i-th variant of every part together; lengths must match.

  A single dict zips its keys.

  Examples:
    >>> expand(zip({"a": [1, 2], "b": [10, 20]}))
    [{'a': 1, 'b': 10}, {'a': 2, 'b': 20}]
  """
  if len(parts) == 1 and isinstance(parts[0], Mapping):
    parts = tuple({k: v} for k, v in parts[0].items())
  return _zip_node([_to_sweep(p) for p in parts])


def chain(*parts: Sweep | Mapping[str, Any]) -> Chain:
  """Concatenation: the variants of each part in turn.

  Examples:
    >>> expand(chain({"opt": "adam"}, {"opt": "sgd", "momentum": [0.0, 0.9]}))
    [{'opt': 'adam'}, {'opt': 'sgd', 'momentum': 0.0}, {'opt': 'sgd', 'momentum': 0.9}]
  """
  if not parts:
    raise errors.ConfigError("chain needs at least one sub-sweep",
                             key="chain", fix="write chain(sweep_a, sweep_b)")
  return Chain(tuple(_to_sweep(p) for p in parts))


def random(params: Mapping[str, Any], *, samples: int, seed: int = 0,
           method: str = "random") -> Random:
  """Joint random or quasi-random search over every distribution in params.

  Distributions take no ``num``/``samples`` here; lists are sampled as
  :func:`choice`, scalars are fixed. ``method="sobol"``/``"halton"`` draw
  scrambled, seeded low-discrepancy points (``scipy.stats.qmc``), mapped
  through each distribution (log for log_uniform, floor for int_uniform,
  index for choice).

  Examples:
    >>> vs = expand(random({"lr": log_uniform(1e-4, 1.0), "act": ["relu", "tanh"]},
    ...                    samples=4, method="sobol"))
    >>> len(vs), all(1e-4 <= v["lr"] <= 1.0 for v in vs)
    (4, True)
  """
  where = "random"
  if not isinstance(params, Mapping) or not params:
    raise errors.ConfigError(
        "random needs params: a non-empty mapping of config keys to "
        "distributions", key=where,
        fix="write random({'optimizer.learning_rate': log_uniform(1e-4, 1)}, "
            "samples=16)")
  bound = []
  for key, v in params.items():
    key = _check_key(key, where="random params")
    bound.append((key, _check_spec(_as_spec(v, key), key, in_random=True)))
  _check_disjoint([[k] for k, _ in bound])
  if all(isinstance(s, Fixed) for _, s in bound):
    raise errors.ConfigError(
        "random has nothing to sample: every param is fixed", key=where,
        fix="give at least one distribution or list, or use fixed(...)")
  samples = _count(samples, where, "samples")
  seed = _seed(seed, where)
  if method not in METHODS:
    raise _unknown(method, METHODS, key=where, what="random method")
  return Random(tuple(bound), samples, seed, method)


def when(condition: Mapping[str, Any],
         sweep: Sweep | Mapping[str, Any]) -> When:
  """A sub-sweep applied only to variants whose keys match ``condition``.

  Use it as a part of :func:`product`. A list in the condition means "any
  of" (so a list-valued key is tested with ``[[64, 64]]``); keys the
  sub-sweep sets are absent from variants that do not match. Numbers compare
  by value (1 matches 1.0), booleans only match booleans.

  Examples:
    >>> expand(product({"opt": ["sgd", "adam"]},
    ...                when({"opt": "sgd"}, {"momentum": [0.0, 0.9]})))
    [{'opt': 'sgd', 'momentum': 0.0}, {'opt': 'sgd', 'momentum': 0.9}, {'opt': 'adam'}]
  """
  if not isinstance(condition, Mapping) or not condition:
    raise errors.ConfigError(
        "a condition must be a non-empty mapping of config keys to values",
        key="when", fix="write when({'optimizer.name': 'sgd'}, {...})")
  cond = []
  for key, v in condition.items():
    key = _check_key(key, where="when")
    allowed = v if isinstance(v, (list, tuple)) and not isinstance(v, str) else [v]
    if not allowed:
      raise errors.ConfigError("condition lists no values", key=key,
                               fix=f"write {key}: value or {key}: [v1, v2]")
    cond.append((key, tuple(_value(a, key) for a in allowed)))
  then = _to_sweep(sweep)
  overlap = [k for k, _ in cond if k in _keys(then)]
  if overlap:
    raise errors.ConfigError(
        "a conditional sub-sweep sets the key its condition tests",
        key=overlap[0], fix="set that key outside the when(...) part")
  return When(tuple(cond), then)


def seeds(n_or_list: int | Sequence[int]) -> Axis:
  """The ``seed`` axis: seeds ``0..n-1`` or the listed ones.

  In a product it is always crossed last (varies fastest).

  Examples:
    >>> [tuple(v.values()) for v in expand(product(seeds(2), {"lr": [1, 2]}))]
    [(1, 0), (1, 1), (2, 0), (2, 1)]
  """
  if isinstance(n_or_list, (list, tuple, range, np.ndarray)):
    items = [_value(s, SEED_KEY) for s in n_or_list]
    if not items or not all(isinstance(s, int) and not isinstance(s, bool)
                            for s in items):
      raise errors.ConfigError(
          f"seeds must be a non-empty list of integers, got {list(items)!r}",
          key=SEED_KEY, fix="write seeds: 3 or seeds: [0, 1, 2]")
  else:
    items = list(range(_count(n_or_list, SEED_KEY, "seeds")))
  return Axis(SEED_KEY, _check_spec(Values(tuple(items)), SEED_KEY))


# ----------------------------------------------------------------------------
# Parsing dicts / YAML.

_SPECIAL = ("product", "zip", "chain", "random", "seeds", "when", "if",
            "then", "fixed")
_SPEC_KINDS = ("values", "choice", "fixed", "uniform", "log_uniform",
               "int_uniform")
_SPEC_OPTIONS = {
    "values": (), "choice": (), "fixed": (),
    "uniform": ("num", "samples", "seed"),
    "log_uniform": ("num", "samples", "seed"),
    "int_uniform": ("num", "samples", "seed"),
}
_RANDOM_KEYS = ("params", "samples", "seed", "method")
# Words that belong one level deeper; at sweep level they are a misplacement.
_MISPLACED = {
    **{k: "a value kind; put it under a config key, e.g. "
          f"optimizer.learning_rate: {{{k}: ...}}" for k in _SPEC_KINDS
       if k != "fixed"},
    "num": "an option of a distribution, e.g. lr: {uniform: [0, 1], num: 5}",
    "samples": "an option of a distribution or of random: {...}",
    "params": "a key of random:, e.g. random: {params: {...}, samples: 16}",
    "method": "a key of random:, e.g. random: {params: {...}, method: sobol}",
}
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*")
# PyYAML (YAML 1.1) reads 1e-3 as a string; such strings are floats here.
_EXP_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse(obj: Any, *, file: str | None = None) -> Sweep:
  """Turns a config's ``sweep:`` section (loaded YAML) into a sweep.

  See the module docstring for the grammar. ``None`` is the empty sweep (one
  variant that changes nothing).

  Args:
    obj: the loaded ``sweep:`` value (a mapping), or a sweep object.
    file: the config file, named in errors.

  Returns:
    A :class:`Sweep`.

  Raises:
    errors.ConfigError: naming the file and key, with a fix.

  Examples:
    >>> s = parse({"lr": {"log_uniform": [1e-2, 1.0], "num": 3}, "seeds": 2})
    >>> len(expand(s))
    6
  """
  try:
    if obj is None:
      return Product(())
    if not isinstance(obj, (Mapping, Sweep)):
      raise errors.ConfigError(
          f"sweep must be a mapping of config keys to values, got "
          f"{type(obj).__name__}", key="sweep",
          fix="write sweep: {optimizer.learning_rate: [1.0e-3, 1.0e-2]}; "
              "use chain: [...] for a list of sub-sweeps")
    return _to_sweep(obj)
  except errors.ConfigError as e:
    if file is None:
      raise
    raise e.with_file(file) from None


def _to_sweep(obj: Any) -> Sweep:
  if isinstance(obj, Sweep):
    return obj
  if isinstance(obj, Mapping):
    return _from_mapping(obj)
  if isinstance(obj, Spec):
    raise errors.ConfigError(
        f"a bare {type(obj).__name__} spec has no config key", key=None,
        fix="put it in a dict: {'optimizer.learning_rate': ...}")
  raise errors.ConfigError(
      f"expected a sweep (a mapping of config keys to values), got "
      f"{obj!r}", fix="write {'model.activation': ['relu', 'tanh']}")


def _from_mapping(m: Mapping) -> Sweep:
  if "if" in m or "then" in m:
    return _when_from_mapping(m)
  parts: list[Sweep] = []
  for key, v in m.items():
    if key in _SPECIAL and isinstance(v, Sweep):
      parts.append(v)  # Python API: {"random": random(...), ...}.
    elif key in _SPECIAL:
      parts.extend(_special(key, v))
    else:
      parts.append(_axis(key, v))
  return _product(parts)


def _special(name: str, v: Any) -> list[Sweep]:
  if name in ("product", "zip", "chain"):
    if isinstance(v, Mapping) and name != "chain":
      subs = [{k: x} for k, x in v.items()]
    elif isinstance(v, list) and v:
      subs = v
    else:
      raise errors.ConfigError(
          f"{name} needs a non-empty list of sub-sweeps, got {v!r}", key=name,
          fix=f"write {name}: [{{a: [1, 2]}}, {{b: [3, 4]}}]")
    for s in subs:
      if not isinstance(s, Mapping):
        raise errors.ConfigError(
            f"each item of {name} must be a mapping (a sub-sweep), got {s!r}",
            key=name, fix=f"write {name}: [{{a: [1, 2]}}, {{b: [3, 4]}}]")
    nodes = [_to_sweep(s) for s in subs]
    if name == "product":
      return [_product(nodes)]
    return [_zip_node(nodes) if name == "zip" else Chain(tuple(nodes))]
  if name == "random":
    if not isinstance(v, Mapping):
      raise errors.ConfigError(
          f"random needs a mapping, got {v!r}", key="random",
          fix="write random: {params: {...}, samples: 16, method: sobol}")
    for k in v:
      if k not in _RANDOM_KEYS:
        raise _unknown(k, _RANDOM_KEYS, key="random", what="random option")
    if "samples" not in v:
      raise errors.ConfigError("random needs samples: N", key="random",
                               fix="add samples: 16 to random:")
    return [random(v.get("params"), samples=v["samples"], seed=v.get("seed", 0),
                   method=v.get("method", "random"))]
  if name == "seeds":
    return [seeds(v)]
  if name == "when":
    items = v if isinstance(v, list) else [v]
    out = []
    for item in items:
      if not isinstance(item, Mapping) or "if" not in item:
        raise errors.ConfigError(
            f"when needs {{if: {{key: value}}, then: sweep}}, got {item!r}",
            key="when", fix="write when: {if: {optimizer.name: sgd}, "
                            "then: {optimizer.momentum: [0.0, 0.9]}}")
      out.append(_when_from_mapping(item))
    return out
  if name == "fixed":
    return [_fixed_mapping(v)]
  raise errors.ConfigError(  # 'then' outside a conditional.
      f"'{name}' is only valid next to 'if'", key=name,
      fix="write {if: {optimizer.name: sgd}, then: {...}}")


def _when_from_mapping(m: Mapping) -> When:
  for k in m:
    if k not in ("if", "then"):
      raise _unknown(k, ("if", "then"), key="when", what="conditional key")
  if "if" not in m or "then" not in m:
    raise errors.ConfigError(
        "a conditional needs both 'if' and 'then'", key="when",
        fix="write {if: {optimizer.name: sgd}, then: {optimizer.momentum: "
            "[0.0, 0.9]}}")
  return when(m["if"], m["then"])


def _fixed_mapping(m: Any) -> Sweep:
  if not isinstance(m, Mapping):
    raise errors.ConfigError(
        f"fixed at sweep level needs a mapping of settings, got {m!r}",
        key="fixed", fix="write fixed: {train.steps: 100}")
  axes = []
  for k, v in m.items():
    k = _check_key(k, where="fixed")
    axes.append(Axis(k, _check_spec(Fixed(_freeze(v)), k)))
  return _product(axes)


def _axis(key: Any, v: Any) -> Axis:
  key = _check_key(key)
  try:
    return Axis(key, _check_spec(_as_spec(v, key), key))
  except errors.ConfigError:
    # A typo of a reserved word (`prodcut: [...]`) reads as a config path
    # whose value is malformed: say what was probably meant.
    if "." not in key and difflib.get_close_matches(key, _SPECIAL, 1, 0.6):
      raise errors.unknown_key(key, _SPECIAL, what="special key") from None
    raise


def _check_key(key: Any, *, where: str = "sweep") -> str:
  if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
    raise errors.ConfigError(
        f"{key!r} in {where} is not a dotted config path", key=str(key),
        fix="write keys like optimizer.learning_rate (letters, digits, _ "
            "and - between dots)")
  if key in _MISPLACED:
    raise errors.ConfigError(f"'{key}' is {_MISPLACED[key]}", key=key,
                             fix=f"move '{key}' to where it belongs")
  if (key != SEED_KEY and "." not in key
      and difflib.get_close_matches(key, _SPECIAL, 1, 0.8)):
    raise errors.unknown_key(key, _SPECIAL, what="special key")
  return key


def _as_spec(v: Any, key: str) -> Spec:
  if isinstance(v, Spec):
    return v
  if isinstance(v, Sweep):
    raise errors.ConfigError(
        f"a sweep ({type(v).__name__}) cannot be the value of a key",
        key=key, fix="put combinators at sweep level: product({...}, zip(...))")
  if isinstance(v, Mapping):
    return _spec_from_mapping(v, key)
  if isinstance(v, (list, tuple, range, np.ndarray)):
    return values(*v)
  return Fixed(v)


def _spec_from_mapping(m: Mapping, key: str) -> Spec:
  kinds = [k for k in m if k in _SPEC_KINDS]
  if len(kinds) != 1:
    if kinds:
      raise errors.ConfigError(
          f"give one value kind, got {', '.join(kinds)}", key=key,
          fix=f"keep one of {', '.join(kinds)}")
    options = {o for opts in _SPEC_OPTIONS.values() for o in opts}
    other = [k for k in m if k not in options]
    if other:
      raise _unknown(other[0], _SPEC_KINDS, key=key, what="value kind")
    raise errors.ConfigError(
        f"{dict(m)!r} names no value kind", key=key,
        fix=f"write {{{' | '.join(_SPEC_KINDS)}: ...}}, e.g. "
            "{log_uniform: [1.0e-4, 1.0], num: 8}")
  kind = kinds[0]
  arg = m[kind]
  opts = {k: v for k, v in m.items() if k != kind}
  for o in opts:
    if o not in _SPEC_OPTIONS[kind]:
      raise _unknown(o, _SPEC_OPTIONS[kind], key=key, what=f"{kind} option")
  if kind == "fixed":
    return Fixed(_freeze(arg))
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
  return _DISTRIBUTIONS[kind](arg[0], arg[1], **opts)


# ----------------------------------------------------------------------------
# Validation.


def _check_spec(spec: Spec, key: str, *, in_random: bool = False) -> Spec:
  """Validates `spec` for `key` and returns it normalized."""
  if isinstance(spec, Fixed):
    return Fixed(_value(spec.value, key))
  if isinstance(spec, (Values, Choice)):
    items = spec.items if isinstance(spec, Values) else spec.options
    name = "values" if isinstance(spec, Values) else "choice"
    if not isinstance(items, tuple):
      raise errors.ConfigError(f"{name} needs a list, got {items!r}", key=key,
                               fix=f"write {name}([a, b])")
    if not items:
      raise errors.ConfigError(
          f"{name} is empty", key=key,
          fix="list at least one value, or remove the key from the sweep")
    items = tuple(_value(v, key) for v in items)
    seen: dict[str, Any] = {}
    for v in items:
      c = _canon(v)
      if c in seen:
        raise errors.ConfigError(
            f"{name} lists {v!r} twice", key=key,
            fix="remove the duplicate; to set a list-valued key to one value "
                "write {fixed: [64, 64]} (a bare list means several values)")
      seen[c] = v
    if in_random or isinstance(spec, Choice):
      return Choice(items)
    return Values(items)
  if isinstance(spec, Uniform):
    return _check_distribution(spec, key, in_random=in_random)
  raise errors.ConfigError(f"unsupported value spec {spec!r}", key=key)


def _check_distribution(spec: Uniform, key: str, *, in_random: bool) -> Uniform:
  kind = spec.kind
  is_int = isinstance(spec, IntUniform)
  low = _number(spec.low, key, f"{kind} low", integer=is_int)
  high = _number(spec.high, key, f"{kind} high", integer=is_int)
  if isinstance(spec, LogUniform) and (low <= 0 or high <= 0):
    raise errors.ConfigError(
        f"{kind} needs positive bounds, got {low if low <= 0 else high!r}",
        key=key, fix="use bounds > 0 (e.g. [1.0e-5, 1.0]) or uniform for "
                     "ranges that include 0")
  if low >= high:
    raise errors.ConfigError(
        f"{kind} needs low < high, got [{low!r}, {high!r}]", key=key,
        fix="swap the bounds, or use fixed for a single value")
  num = None if spec.num is None else _count(spec.num, key, "num")
  samples = None if spec.samples is None else _count(spec.samples, key,
                                                     "samples")
  seed = None if spec.seed is None else _seed(spec.seed, key)
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
  return type(spec)(low, high, num=num, samples=samples, seed=seed)


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


def _count(x: Any, key: str, name: str) -> int:
  if (isinstance(x, (bool, np.bool_))
      or not isinstance(x, (int, np.integer)) or x <= 0):
    raise errors.ConfigError(f"{name} must be a positive integer, got {x!r}",
                             key=key,
                             fix=f"write {name}=8 (a whole number > 0)")
  return int(x)


def _seed(x: Any, key: str) -> int:
  if (isinstance(x, (bool, np.bool_))
      or not isinstance(x, (int, np.integer)) or x < 0):
    raise errors.ConfigError(f"seed must be an integer >= 0, got {x!r}",
                             key=key, fix="write seed=0")
  return int(x)


def _freeze(v: Any) -> Any:
  if isinstance(v, np.ndarray):
    v = v.tolist()
  if isinstance(v, (list, tuple)):
    return tuple(_freeze(x) for x in v)
  return v


def _value(v: Any, key: str) -> Any:
  """One variant value as a plain, hashable Python object."""
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
    return tuple(_value(x, key) for x in v)
  if isinstance(v, Mapping):
    raise errors.ConfigError(
        f"a mapping {dict(v)!r} is not a value", key=key,
        fix="use numbers, strings, booleans, null or lists; a distribution "
            "is written {uniform: [0, 1], num: 5}")
  raise errors.ConfigError(
      f"unsupported value {v!r} of type {type(v).__name__}", key=key,
      fix="use numbers, strings, booleans, null or lists of them")


def _canon(v: Any) -> str:
  # JSON keeps 1, 1.0, True and "1" apart, and writes floats with repr().
  return json.dumps(v, separators=(",", ":"))


def _unknown(name: Any, options: Iterable[str], *, key: str | None,
             what: str) -> errors.ConfigError:
  options = list(options)
  return errors.ConfigError(
      f"unknown {what} '{name}'.{errors.did_you_mean(str(name), options)}",
      key=key, fix=f"use one of: {', '.join(options)}" if options else None)


def _check_disjoint(key_lists: Iterable[Iterable[str]]) -> None:
  seen: set[str] = set()
  for ks in key_lists:
    for k in dict.fromkeys(ks):
      if k in seen:
        raise errors.ConfigError(
            "set by two sides of a product (each variant would get it twice)",
            key=k, fix="keep it on one side, or use chain/when for "
                       "alternatives")
      seen.add(k)


# ----------------------------------------------------------------------------
# Structure.


def _is_seed_part(node: Sweep) -> bool:
  return isinstance(node, Axis) and node.key == SEED_KEY


def _ordered(parts: Iterable[Sweep]) -> list[Sweep]:
  # Conditions test keys set by the ordinary parts; seeds vary fastest.
  parts = list(parts)
  return ([p for p in parts if not isinstance(p, When) and not _is_seed_part(p)]
          + [p for p in parts if isinstance(p, When)]
          + [p for p in parts if _is_seed_part(p)])


def _product(parts: list[Sweep]) -> Sweep:
  flat: list[Sweep] = []
  for p in parts:
    flat.extend(p.parts if isinstance(p, Product) else [p])
  # Alternative when() parts may set the same key; everything else may not.
  _check_disjoint(_keys(p) for p in flat if not isinstance(p, When))
  return flat[0] if len(flat) == 1 else Product(tuple(flat))


def _zip_node(parts: list[Sweep]) -> Zip:
  if not parts:
    raise errors.ConfigError("zip needs at least one sub-sweep", key="zip",
                             fix="write zip({'a': [1, 2], 'b': [3, 4]})")
  for p in parts:
    if _has_when(p):
      raise errors.ConfigError(
          "a conditional (when/if) cannot be zipped: lengths would vary",
          key=", ".join(_keys(p)), fix="use when(...) in a product instead")
  _check_disjoint(_keys(p) for p in parts)
  lengths = [_length(p) for p in parts]
  if len(set(lengths)) > 1:
    desc = ", ".join(f"{n} ({', '.join(_keys(p))})"
                     for p, n in _zip(parts, lengths))
    bad = next(p for p, n in _zip(parts, lengths) if n != lengths[0])
    raise errors.ConfigError(
        f"zip needs sides of equal length, got {desc}",
        key=", ".join(_keys(bad)),
        fix="give every side the same number of values, or use product")
  return Zip(tuple(parts))


def _has_when(node: Sweep) -> bool:
  if isinstance(node, When):
    return True
  return any(_has_when(p) for p in getattr(node, "parts", ()))


def _children(node: Sweep) -> tuple:
  if isinstance(node, Product):
    return tuple(_ordered(node.parts))
  if isinstance(node, (Zip, Chain)):
    return node.parts
  if isinstance(node, When):
    return (node.then,)
  return ()


def _keys(node: Sweep) -> list[str]:
  out: dict[str, None] = {}
  if isinstance(node, Axis):
    out[node.key] = None
  elif isinstance(node, Random):
    out.update((k, None) for k, _ in node.params)
  for child in _children(node):
    out.update((k, None) for k in _keys(child))
  return list(out)


def _spec_len(spec: Spec) -> int:
  if isinstance(spec, Fixed):
    return 1
  if isinstance(spec, Values):
    return len(spec.items)
  if isinstance(spec, Choice):
    return len(spec.options)
  if spec.samples is not None:
    return spec.samples
  if isinstance(spec, IntUniform):
    span = spec.high - spec.low + 1
    # A step of at most 1 hits every integer, so no need to build the grid.
    return span if spec.num is None or spec.num >= span else len(
        _int_grid(spec.low, spec.high, spec.num))
  return spec.num


def _length(node: Sweep) -> int | None:
  """Number of variants, or None where it depends on conditions."""
  if isinstance(node, Axis):
    return _spec_len(node.spec)
  if isinstance(node, Random):
    return node.samples
  if isinstance(node, When):
    return None
  lens = [_length(p) for p in node.parts]
  if any(n is None for n in lens):
    return None
  if isinstance(node, Product):
    return math.prod(lens)
  if isinstance(node, Chain):
    return sum(lens)
  return lens[0]  # Zip: equal by construction.


# ----------------------------------------------------------------------------
# Expansion.


def _int_grid(low: int, high: int, num: int) -> list[int]:
  grid = np.rint(np.linspace(low, high, num)).astype(np.int64)
  return [int(v) for v in dict.fromkeys(grid.tolist())]


def _key_seed(key: str) -> int:
  # Independent default streams per key, stable across machines (not hash()).
  return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)


def _from_unit(spec: Spec, u: np.ndarray) -> list:
  """Maps unit-interval coordinates through a distribution (inverse CDF)."""
  if isinstance(spec, Choice):
    k = len(spec.options)
    idx = np.minimum((u * k).astype(np.int64), k - 1)
    return [spec.options[i] for i in idx.tolist()]
  if isinstance(spec, IntUniform):
    span = spec.high - spec.low + 1
    ints = spec.low + np.minimum(np.floor(u * span).astype(np.int64), span - 1)
    return [int(v) for v in ints.tolist()]
  if isinstance(spec, LogUniform):
    lo, hi = math.log(spec.low), math.log(spec.high)
    out = np.clip(np.exp(lo + u * (hi - lo)), spec.low, spec.high)
    return [float(v) for v in out.tolist()]
  out = spec.low + u * (spec.high - spec.low)
  return [float(v) for v in out.tolist()]


def _unit_points(n: int, d: int, seed: int, method: str) -> np.ndarray:
  """[n, d] points in the unit cube: i.i.d. or scrambled Sobol/Halton."""
  if method == "random":
    return np.random.default_rng(seed).random((n, d))
  from scipy.stats import qmc  # Lazy: scipy is slow to import.
  cls = qmc.Sobol if method == "sobol" else qmc.Halton
  try:
    engine = cls(d, scramble=True, rng=seed)
  except TypeError:  # scipy < 1.15 spells it seed=.
    engine = cls(d, scramble=True, seed=seed)
  with warnings.catch_warnings():
    # Sobol prefers powers of 2; any n is still well spread.
    warnings.filterwarnings("ignore", message=".*balance properties.*")
    return engine.random(n)


def _axis_values(key: str, spec: Spec) -> list:
  if isinstance(spec, Fixed):
    return [spec.value]
  if isinstance(spec, Values):
    return list(spec.items)
  if isinstance(spec, Choice):
    return list(spec.options)
  if spec.samples is not None:
    seed = _key_seed(key) if spec.seed is None else spec.seed
    return _from_unit(spec, np.random.default_rng(seed).random(spec.samples))
  if isinstance(spec, IntUniform):
    if spec.num is None:
      return list(range(spec.low, spec.high + 1))
    return _int_grid(spec.low, spec.high, spec.num)
  if isinstance(spec, LogUniform):
    return [float(v) for v in np.geomspace(spec.low, spec.high, spec.num)]
  return [float(v) for v in np.linspace(spec.low, spec.high, spec.num)]


class _Expansion:
  """State of one expand() call: the size limit and what conditions saw."""

  def __init__(self, limit: int | None):
    self.limit = limit
    self.conditions: dict[int, tuple[When, dict[str, list], list[bool]]] = {}

  def check(self, n: int, *, exact: bool = False) -> None:
    if self.limit is not None and n > self.limit:
      size = f"{n} variants" if exact else f"at least {n} variants"
      raise errors.ConfigError(
          f"sweep expands to {size}, more than max_variants={self.limit}",
          key=None, fix=_FIX_SIZE)


def _merge(p: dict, v: dict) -> dict:
  for k in v:
    if k in p:
      raise errors.ConfigError(
          "set twice in one variant (by two sides of a product, or by a "
          "conditional and the sweep around it)", key=k,
          fix="keep it on one side, or use chain/when for alternatives")
  return {**p, **v}


def _cross(base: list[dict], variants: list[dict],
           ctx: _Expansion) -> list[dict]:
  ctx.check(len(base) * len(variants))
  return [_merge(p, v) for p in base for v in variants]


def _extend(node: Sweep, base: list[dict], ctx: _Expansion) -> list[dict]:
  """Crosses `base` (slowest) with `node`'s variants given each point."""
  if isinstance(node, Product):
    for part in _ordered(node.parts):
      base = _extend(part, base, ctx)
    return base
  if isinstance(node, When):
    return _extend_when(node, base, ctx)
  if isinstance(node, Chain) and _has_when(node):
    out = []
    for p in base:
      for part in node.parts:
        out.extend(_extend(part, [p], ctx))
        ctx.check(len(out))
    return out
  return _cross(base, _variants(node, ctx), ctx)


def _extend_when(node: When, base: list[dict], ctx: _Expansion) -> list[dict]:
  _, seen, matched = ctx.conditions.setdefault(
      id(node), (node, {k: [] for k, _ in node.condition}, [False]))
  out = []
  for p in base:
    ok = True
    for k, allowed in node.condition:
      if k not in p:
        ok = False
        continue
      if len(seen[k]) < 10 and not any(_same(p[k], s) for s in seen[k]):
        seen[k].append(p[k])
      ok = ok and any(_same(p[k], a) for a in allowed)
    if ok:
      matched[0] = True
      out.extend(_extend(node.then, [p], ctx))
    else:
      out.append(p)
    ctx.check(len(out))
  return out


def _same(a: Any, b: Any) -> bool:
  # Condition values: True must not match 1, but 1 matches 1.0.
  if isinstance(a, bool) or isinstance(b, bool):
    return type(a) is type(b) and a == b
  return a == b


def _variants(node: Sweep, ctx: _Expansion) -> list[dict]:
  """Variants of a node that does not depend on the point it extends."""
  if isinstance(node, Axis):
    ctx.check(_spec_len(node.spec))
    return [{node.key: v} for v in _axis_values(node.key, node.spec)]
  if isinstance(node, Random):
    ctx.check(node.samples)
    dims = [(k, s) for k, s in node.params if not isinstance(s, Fixed)]
    u = _unit_points(node.samples, len(dims), node.seed, node.method)
    cols = {k: _from_unit(s, u[:, j]) for j, (k, s) in enumerate(dims)}
    return [{k: s.value if isinstance(s, Fixed) else cols[k][i]
             for k, s in node.params} for i in range(node.samples)]
  if isinstance(node, Zip):
    sides = [_variants(p, ctx) for p in node.parts]
    out = sides[0]
    for side in sides[1:]:
      out = [_merge(a, b) for a, b in _zip(out, side, strict=True)]
    return out
  if isinstance(node, Chain):
    return [v for p in node.parts for v in _variants(p, ctx)]
  return _extend(node, [{}], ctx)


def expand(sweep: Sweep | Mapping[str, Any], *,
           max_variants: int | None = DEFAULT_MAX_VARIANTS) -> list[dict]:
  """The variants of a sweep, in a deterministic order.

  Args:
    sweep: a sweep object or a dict in the YAML grammar.
    max_variants: refuse sweeps larger than this (None: no limit).

  Returns:
    A new list of new dicts ``{config path: value}``.

  Raises:
    errors.ConfigError: for a malformed sweep, a condition that never holds,
      zero variants, or more than ``max_variants``.

  Examples:
    >>> expand({"lr": [0.1, 0.01], "seeds": 2})[:3]
    [{'lr': 0.1, 'seed': 0}, {'lr': 0.1, 'seed': 1}, {'lr': 0.01, 'seed': 0}]
  """
  node = parse(sweep)
  ctx = _Expansion(max_variants)
  n = _length(node)
  if n is not None:
    ctx.check(n, exact=True)
  points = _extend(node, [{}], ctx)
  for cond, seen, matched in ctx.conditions.values():
    for k, _ in cond.condition:
      if not seen[k]:
        raise errors.ConfigError(
            "a condition tests a key that the sweep around it never sets"
            f".{errors.did_you_mean(k, _keys(node))}", key=k,
            fix="put when(...) in a product with the key it tests")
    if not matched[0]:
      text = ", ".join(f"{k} in {list(a)!r}" for k, a in cond.condition)
      got = "; ".join(f"{k} takes {seen[k]!r}" for k, _ in cond.condition)
      raise errors.ConfigError(
          f"condition {text} never holds ({got})", key=cond.condition[0][0],
          fix="fix the condition's values (types matter: 'sgd', 1, true)")
  if not points:
    raise errors.ConfigError("sweep expands to zero variants", key=None,
                             fix="give every key at least one value")
  return [dict(p) for p in points]


def variant_id(d: Mapping[str, Any]) -> str:
  """Stable 10-hex-digit id of a variant, the same on every machine.

  The id is the start of the SHA-1 of the canonical JSON of the sorted
  ``[key, value]`` pairs (compact separators; tuples as lists; floats as
  ``repr``), so 1, 1.0, True and "1" give different ids.

  Examples:
    >>> variant_id({"b": 2, "a": 0.1}) == variant_id({"a": 0.1, "b": 2})
    True
  """
  items = [[str(k), _value(v, str(k))] for k, v in sorted(d.items())]
  return hashlib.sha1(_canon(items).encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------
# Introspection.


def keys(sweep: Sweep | Mapping[str, Any]) -> list[str]:
  """Keys a sweep sets, in first-appearance order (seed last in products).

  Examples:
    >>> keys({"seeds": 2, "b": [1, 2], "a": 0})
    ['b', 'a', 'seed']
  """
  return _keys(parse(sweep))


def describe(sweep: Sweep | Mapping[str, Any]) -> dict[str, str]:
  """A short human description of what each key takes.

  Examples:
    >>> describe({"lr": {"log_uniform": [1e-4, 1.0], "num": 16},
    ...           "act": ["relu", "tanh"]})
    {'lr': 'log grid 1e-04..1e+00 (16)', 'act': 'values [relu, tanh]'}
  """
  out: dict[str, list[str]] = {}
  _describe(parse(sweep), out, "")
  return {k: " | ".join(v) for k, v in out.items()}


def _describe(node: Sweep, out: dict[str, list[str]], suffix: str) -> None:
  def add(key: str, text: str) -> None:
    texts = out.setdefault(key, [])
    if text + suffix not in texts:
      texts.append(text + suffix)

  if isinstance(node, Axis):
    add(node.key, _describe_spec(node.spec))
  elif isinstance(node, Random):
    for k, s in node.params:
      add(k, _describe_spec(s, sampled=True) + (
          "" if isinstance(s, Fixed) else
          f" ({node.method} search, {node.samples} samples, seed "
          f"{node.seed})"))
  elif isinstance(node, When):
    cond = ", ".join(f"{k}={'|'.join(map(_fmt, a))}" if len(a) <= 4 else
                     f"{k} in {_fmt_list(a)}" for k, a in node.condition)
    _describe(node.then, out, f"{suffix} if {cond}")
  else:
    for child in _children(node):
      _describe(child, out, suffix + (" (zipped)" if isinstance(node, Zip)
                                      else ""))


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:g}"
  if isinstance(v, tuple):
    return "[" + ", ".join(map(_fmt, v)) + "]"
  return str(v)


def _fmt_list(items: Sequence[Any]) -> str:
  if len(items) > 6:
    return (f"[{', '.join(map(_fmt, items[:5]))}, ..., {_fmt(items[-1])}] "
            f"({len(items)})")
  return f"[{', '.join(map(_fmt, items))}]"


def _fmt_sci(x: float) -> str:
  mantissa, exp = f"{x:.2e}".split("e")
  return f"{mantissa.rstrip('0').rstrip('.')}e{exp}"


def _describe_spec(spec: Spec, *, sampled: bool = False) -> str:
  if isinstance(spec, Fixed):
    return f"fixed {_fmt(spec.value)}"
  if isinstance(spec, Values):
    return f"values {_fmt_list(spec.items)}"
  if isinstance(spec, Choice):
    return f"choice {_fmt_list(spec.options)}"
  log = isinstance(spec, LogUniform)
  fmt = _fmt_sci if log else _fmt
  span = f"{fmt(spec.low)}..{fmt(spec.high)}"
  name = {"uniform": "uniform", "log_uniform": "log-uniform",
          "int_uniform": "int-uniform"}[spec.kind]
  if spec.samples is not None:
    seed = "" if spec.seed is None else f", seed {spec.seed}"
    return f"{name} {span}, {spec.samples} samples{seed}"
  if spec.num is not None:
    grid = {"uniform": "grid", "log_uniform": "log grid",
            "int_uniform": "int grid"}[spec.kind]
    return f"{grid} {span} ({_spec_len(spec)})"
  if isinstance(spec, IntUniform) and not sampled:
    return f"ints {span} ({_spec_len(spec)})"
  return f"{name} {span}"


def is_log_scaled(sweep: Sweep | Mapping[str, Any], key: str) -> bool:
  """Whether plots should use a log axis for `key`.

  True if any distribution of `key` is log-uniform, or if its explicit values
  are at least 3 positive numbers spanning a factor of 100 or more (e.g.
  ``lr=1e-4,1e-3,1e-2`` on the command line). False for keys not swept.

  Examples:
    >>> is_log_scaled({"lr": [1e-4, 1e-3, 1e-2], "act": ["relu", "tanh"]}, "lr")
    True
  """
  specs: list[Spec] = []
  _collect_specs(parse(sweep), key, specs)
  if any(isinstance(s, LogUniform) for s in specs):
    return True
  nums = []
  for s in specs:
    items = (s.items if isinstance(s, Values) else
             s.options if isinstance(s, Choice) else ())
    nums.extend(items)
  if len(nums) < 3 or not all(isinstance(v, (int, float))
                              and not isinstance(v, bool) and v > 0
                              for v in nums):
    return False
  return max(nums) / min(nums) >= 100


def _collect_specs(node: Sweep, key: str, out: list[Spec]) -> None:
  if isinstance(node, Axis) and node.key == key:
    out.append(node.spec)
  elif isinstance(node, Random):
    out.extend(s for k, s in node.params if k == key)
  for child in _children(node):
    _collect_specs(child, key, out)


# ----------------------------------------------------------------------------
# Command-line overrides.


class _Yaml12Loader(yaml.SafeLoader):
  """SafeLoader with YAML 1.2 core scalars: 1e-3 is a float, yes is text."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs
         if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    _FLOAT_TAG, re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))
# YAML 1.1 reads 010 as octal 8; 1.2 core reads it as decimal.
_Yaml12Loader.add_constructor(
    _INT_TAG, lambda loader, node: int(loader.construct_scalar(node)))


def load_yaml(text: str) -> Any:
  """``yaml.safe_load`` with YAML 1.2 numbers and booleans.

  PyYAML follows YAML 1.1, which reads ``1e-3`` as a string and ``yes``/
  ``on`` as booleans; config files and overrides expect the 1.2 reading.

  Examples:
    >>> load_yaml("{lr: 1e-3, flag: yes, n: 010}")
    {'lr': 0.001, 'flag': 'yes', 'n': 10}
  """
  return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader)


def _split_top(text: str, override: str) -> list[str]:
  """Splits on commas outside brackets and quotes."""
  parts, depth, quote, cur = [], 0, None, []
  for ch in text:
    if quote:
      quote = None if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "[{(":
      depth += 1
    elif ch in "]})":
      depth -= 1
      if depth < 0:
        break
    elif ch == "," and depth == 0:
      parts.append("".join(cur))
      cur = []
      continue
    cur.append(ch)
  if depth != 0 or quote:
    raise errors.ConfigError(
        f"override '{override}' has unbalanced brackets or quotes",
        key=override.partition("=")[0].strip(),
        fix="close every [ { ( and quote, e.g. model.features=[64,64]")
  parts.append("".join(cur))
  return parts


def _parse_item(item: str, key: str, override: str) -> Any:
  item = item.strip()
  for convert in (int, float):
    try:
      return convert(item)
    except ValueError:
      pass
  try:
    return load_yaml(item)
  except yaml.YAMLError as e:
    raise errors.ConfigError(
        f"override '{override}': cannot read {item!r} "
        f"({str(e).splitlines()[0]})", key=key,
        fix="quote strings with special characters, e.g. key='a: b'") from None


def parse_overrides(overrides: Sequence[str]) -> tuple[dict[str, Any],
                                                       Sweep | None]:
  """Hydra-style ``key=value`` overrides: fixed settings and a sweep.

  ``key=v`` sets one value; ``key=v1,v2,...`` (commas outside brackets and
  quotes) is a product axis. Each item is read as an int, a float, else YAML
  (1.2 numbers), so ``[64,64]`` is a tuple and ``1e-3`` a float.

  Args:
    overrides: strings such as ``"optimizer.learning_rate=1e-3,1e-2"``.

  Returns:
    ``(fixed, sweep)``: a dict of single settings and the product of the
    swept keys in the given order (None if nothing is swept).

  Raises:
    errors.ConfigError: naming the override and the fix.

  Examples:
    >>> fixed_, sweep = parse_overrides(["train.steps=100", "lr=1e-3,1e-2"])
    >>> fixed_, expand(sweep)
    ({'train.steps': 100}, [{'lr': 0.001}, {'lr': 0.01}])
  """
  if isinstance(overrides, str):
    overrides = [overrides]
  settings: dict[str, Any] = {}
  axes: list[Sweep] = []
  seen: set[str] = set()
  for text in overrides:
    if not isinstance(text, str):
      raise errors.ConfigError(f"override {text!r} is not a string",
                               key=str(text), fix="write key=value")
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
      raise errors.ConfigError(
          f"override '{text}' is not key=value", key=key or text,
          fix="write key=value (e.g. optimizer.learning_rate=1e-3) or "
              "key=v1,v2 to sweep")
    if not _KEY_RE.fullmatch(key):
      raise errors.ConfigError(
          f"override '{text}': '{key}' is not a dotted config path", key=key,
          fix="write keys like optimizer.learning_rate (Hydra's +key/~key "
              "prefixes are not supported)")
    if key in seen:
      raise errors.ConfigError(f"override '{text}' sets '{key}' again",
                               key=key, fix="give each key once; list "
                                            "several values as key=v1,v2")
    seen.add(key)
    items = _split_top(raw, text)
    if any(not it.strip() for it in items):
      raise errors.ConfigError(
          f"override '{text}' has an empty value", key=key,
          fix=f"write {key}=value, or {key}=v1,v2 to sweep (no empty items)")
    vals = [_parse_item(it, key, text) for it in items]
    if len(vals) == 1:
      settings[key] = _value(vals[0], key)
    else:
      axes.append(Axis(key, _check_spec(Values(tuple(vals)), key)))
  return settings, (_product(axes) if axes else None)


# ----------------------------------------------------------------------------
# W&B sweep files.

_WANDB_TOP = ("method", "parameters", "run_cap", "count", "metric", "name",
              "description", "program", "command", "project", "entity",
              "early_terminate")
_WANDB_DISTS = {"uniform": Uniform, "log_uniform_values": LogUniform,
                "int_uniform": IntUniform}
_WANDB_PARAM_KEYS = ("value", "values", "distribution", "min", "max",
                     "parameters", "probabilities")
_FIX_WANDB = ("use values: [...], value: x, or distribution: uniform | "
              "log_uniform_values | int_uniform | categorical | constant "
              "with min/max")


def from_wandb(obj: Mapping[str, Any], *, file: str | None = None,
               samples: int | None = None, seed: int = 0) -> Sweep:
  """Reads a W&B sweep configuration (``method: grid|random``).

  ``parameters`` map names (dotted config paths, or nested ``parameters:``
  which become dotted paths) to ``{value: x}``, ``{values: [...]}`` or
  ``{distribution: ..., min, max}`` with ``uniform``, ``log_uniform_values``,
  ``int_uniform`` (or no distribution: ints give int_uniform, floats
  uniform), ``categorical`` and ``constant``. ``grid`` is the product of the
  parameters in order (int_uniform lists every integer); ``random`` draws
  ``samples`` (else ``run_cap``, else ``count``) points jointly with
  ``seed``. ``metric``, ``program`` and the like are ignored.

  Raises:
    errors.ConfigError: for ``bayes``, unsupported distributions (W&B's
      exponent-based ``log_uniform``, ``normal``, ``q_*``, ...),
      ``probabilities``, a grid over a continuous range, or a random search
      without a size.

  Examples:
    >>> s = from_wandb({"method": "grid", "parameters": {
    ...     "optimizer.learning_rate": {"values": [1e-3, 1e-2]},
    ...     "model.depth": {"distribution": "int_uniform", "min": 1, "max": 2}}})
    >>> len(expand(s))
    4
  """
  try:
    return _from_wandb(obj, samples=samples, seed=seed)
  except errors.ConfigError as e:
    if file is None:
      raise
    raise e.with_file(file) from None


def _from_wandb(obj: Any, *, samples: int | None, seed: int) -> Sweep:
  if not isinstance(obj, Mapping):
    raise errors.ConfigError(
        f"a W&B sweep must be a mapping, got {type(obj).__name__}",
        key="method", fix="give the loaded W&B sweep YAML (method:, "
                          "parameters:)")
  for k in obj:
    if k not in _WANDB_TOP:
      raise errors.unknown_key(str(k), _WANDB_TOP, what="W&B sweep key")
  method = obj.get("method")
  if method == "bayes":
    raise errors.ConfigError(
        "W&B method 'bayes' is not supported: jaxsweep trains the whole "
        "population at once, so it cannot propose points from past results",
        key="method",
        fix="use method: random (or jaxsweep's random: {method: sobol} for "
            "quasi-random coverage)")
  if method not in ("grid", "random"):
    raise _unknown(method, ("grid", "random"), key="method",
                   what="W&B method")
  params = obj.get("parameters")
  if not isinstance(params, Mapping) or not params:
    raise errors.ConfigError(
        "a W&B sweep needs parameters: a non-empty mapping", key="parameters",
        fix="add parameters: {optimizer.learning_rate: {values: [...]}}")
  specs = {k: _wandb_spec(k, p, method)
           for k, p in _wandb_flatten(params, "")}
  if method == "grid":
    sweep = product(specs)
    cap = obj.get("run_cap")
    n = _length(sweep)
    if cap is not None and n is not None and _count(cap, "run_cap",
                                                    "run_cap") < n:
      raise errors.ConfigError(
          f"run_cap={cap} is smaller than the grid ({n} points); jaxsweep "
          "runs whole grids", key="run_cap",
          fix="remove run_cap, or trim the values so the grid fits")
    return sweep
  n = samples
  for name in ("run_cap", "count"):
    if n is None and obj.get(name) is not None:
      n = _count(obj[name], name, name)
  if n is None:
    raise errors.ConfigError(
        "method: random needs a number of runs", key="run_cap",
        fix="set run_cap: N in the sweep file, or pass samples=N")
  return random(specs, samples=n, seed=seed)


def _wandb_flatten(params: Mapping, prefix: str) -> list[tuple[str, Any]]:
  out = []
  for name, p in params.items():
    key = f"{prefix}{name}"
    if isinstance(p, Mapping) and "parameters" in p:
      extra = [k for k in p if k != "parameters"]
      if extra or not isinstance(p["parameters"], Mapping):
        raise errors.ConfigError(
            f"nested parameters of '{key}' must be alone: "
            "{parameters: {name: {...}}}", key=key,
            fix="move other settings into the nested parameters")
      out.extend(_wandb_flatten(p["parameters"], key + "."))
    else:
      out.append((key, p))
  return out


def _wandb_spec(key: str, p: Any, method: str) -> Spec:
  _check_key(key, where="W&B parameters")
  if not isinstance(p, Mapping):
    raise errors.ConfigError(
        f"W&B parameters are mappings, got {p!r}", key=key,
        fix=f"write {key}: {{values: [...]}} or {key}: {{value: x}}")
  for k in p:
    if k not in _WANDB_PARAM_KEYS:
      if k in ("mu", "sigma", "q", "a", "b"):
        raise errors.ConfigError(
            f"'{k}' belongs to a W&B distribution jaxsweep does not support",
            key=key, fix=_FIX_WANDB)
      raise _unknown(k, _WANDB_PARAM_KEYS, key=key, what="W&B parameter key")
  if "probabilities" in p:
    raise errors.ConfigError(
        "probabilities are not supported (options are drawn uniformly)",
        key=key, fix="remove probabilities")
  dist = p.get("distribution")
  if "value" in p and dist in (None, "constant"):
    return Fixed(_freeze(p["value"]))
  if "values" in p and dist in (None, "categorical"):
    if not isinstance(p["values"], list):
      raise errors.ConfigError(f"values must be a list, got {p['values']!r}",
                               key=key, fix=f"write {key}: {{values: [a, b]}}")
    return values(*p["values"])
  if dist is None and "min" in p and "max" in p:
    # W&B infers the distribution from the bounds' types.
    ints = all(isinstance(p[b], int) and not isinstance(p[b], bool)
               for b in ("min", "max"))
    dist = "int_uniform" if ints else "uniform"
  if dist == "log_uniform":
    lo, hi = p.get("min"), p.get("max")
    hint = (f" (here min: {math.exp(lo):.6g}, max: {math.exp(hi):.6g})"
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float))
            else "")
    raise errors.ConfigError(
        "W&B's log_uniform takes min/max as natural-log exponents; it is not "
        "supported", key=key,
        fix=f"use distribution: log_uniform_values with the values "
            f"themselves as min/max{hint}")
  if dist not in _WANDB_DISTS:
    if dist is None:
      raise errors.ConfigError(
          "W&B parameter has no value, values or min/max", key=key,
          fix=_FIX_WANDB)
    raise errors.ConfigError(
        f"W&B distribution '{dist}' is not supported", key=key, fix=_FIX_WANDB)
  if "min" not in p or "max" not in p:
    raise errors.ConfigError(f"distribution {dist} needs min and max",
                             key=key, fix=f"add min: and max: to {key}")
  cls = _WANDB_DISTS[dist]
  if method == "grid" and cls is not IntUniform:
    raise errors.ConfigError(
        f"method: grid needs a list of values, and distribution: {dist} "
        "has no grid (only int_uniform is expanded, to every integer)",
        key=key, fix="give values: [...], or use method: random, or "
                     f"jaxsweep's {{{cls.kind}: [min, max], num: N}}")
  return cls(p["min"], p["max"])

# Reserved (non-path) keys of the YAML grammar, for the config loader.
SPECIAL_KEYS = _SPECIAL
