"""The sweep grammar: Python combinators and dicts (loaded YAML) -> sweep trees.

The two are one grammar: every combinator accepts dicts written in it
(``product({"a": [1, 2]}, ...)``), and a dict's reserved keys (``product:``,
``zip:``, ``random:``, ``when:`` ...) build the same nodes the combinators
do. :mod:`jaxsweep.space` describes the grammar.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep.space import domains
from jaxsweep.space import nodes

# Reserved (non-path) keys of the YAML grammar; the config loader uses them.
SPECIAL_KEYS = ("product", "zip", "chain", "random", "seeds", "when", "if",
                "then", "fixed")
# A dotted config path as the grammar accepts it.
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*")
_RANDOM_KEYS = ("params", "samples", "seed", "method")
# Words that belong one level deeper; at sweep level they are a misplacement.
_MISPLACED = {
    **{k: "a value kind; put it under a config key, e.g. "
          f"optimizer.learning_rate: {{{k}: ...}}" for k in domains.KINDS
       if k != "fixed"},
    "num": "an option of a distribution, e.g. lr: {uniform: [0, 1], num: 5}",
    "samples": "an option of a distribution or of random: {...}",
    "params": "a key of random:, e.g. random: {params: {...}, samples: 16}",
    "method": "a key of random:, e.g. random: {params: {...}, method: sobol}",
}


# ----------------------------------------------------------------------------
# Combinators.


def fixed(value: Any) -> domains.Fixed | nodes.Sweep:
  """One value taken literally, or a mapping of such settings as a sweep.

  Examples:
    >>> from jaxsweep import space
    >>> space.expand({"model.features": space.fixed([64, 64])})
    [{'model.features': (64, 64)}]
    >>> space.expand(space.fixed({"train.steps": 100, "model.features": [8]}))
    [{'train.steps': 100, 'model.features': (8,)}]
  """
  if isinstance(value, Mapping):
    return _fixed_mapping(value)
  return domains.Fixed(domains.freeze_lists(value))


def product(*parts: nodes.Sweep | Mapping[str, Any]) -> nodes.Sweep:
  """Cartesian product; the first key varies slowest, ``seed`` fastest.

  A dict is the product of its keys. Parts made by :func:`when` are applied
  after the others, to the variants that match their condition.

  Examples:
    >>> from jaxsweep import space
    >>> space.expand(space.product({"a": [1, 2]}, {"b": ["x", "y"]}))
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
  """
  return nodes.product_of([_to_sweep(p) for p in parts])


def zip(*parts: nodes.Sweep | Mapping[str, Any]) -> nodes.Zip:  # noqa: A001
  """Lockstep: the i-th variant of every part together; lengths must match.

  A single dict zips its keys.

  Examples:
    >>> from jaxsweep import space
    >>> space.expand(space.zip({"a": [1, 2], "b": [10, 20]}))
    [{'a': 1, 'b': 10}, {'a': 2, 'b': 20}]
  """
  if len(parts) == 1 and isinstance(parts[0], Mapping):
    parts = tuple({k: v} for k, v in parts[0].items())
  return nodes.zip_of([_to_sweep(p) for p in parts])


def chain(*parts: nodes.Sweep | Mapping[str, Any]) -> nodes.Chain:
  """Concatenation: the variants of each part in turn.

  Examples:
    >>> from jaxsweep import space
    >>> space.expand(space.chain({"opt": "adam"}, {"opt": "sgd", "momentum": [0.0, 0.9]}))
    [{'opt': 'adam'}, {'opt': 'sgd', 'momentum': 0.0}, {'opt': 'sgd', 'momentum': 0.9}]
  """
  if not parts:
    raise errors.ConfigError("chain needs at least one sub-sweep",
                             key="chain", fix="write chain(sweep_a, sweep_b)")
  return nodes.Chain(tuple(_to_sweep(p) for p in parts))


def random(params: Mapping[str, Any], *, samples: int, seed: int = 0,
           method: str = "random") -> nodes.Random:
  """Joint random or quasi-random search over every distribution in params.

  Distributions take no ``num``/``samples`` here; lists are sampled as
  ``choice``, scalars are fixed. ``method="sobol"``/``"halton"`` draw
  scrambled, seeded low-discrepancy points (``scipy.stats.qmc``), mapped
  through each distribution (log for log_uniform, floor for int_uniform,
  index for choice).

  Examples:
    >>> from jaxsweep import space
    >>> vs = space.expand(space.random(
    ...     {"lr": space.log_uniform(1e-4, 1.0), "act": ["relu", "tanh"]},
    ...     samples=4, method="sobol"))
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
    key = check_key(key, where="random params")
    bound.append((key, domains.check(_as_domain(v, key), key, in_random=True)))
  nodes.check_disjoint([[k] for k, _ in bound])
  if all(isinstance(d, domains.Fixed) for _, d in bound):
    raise errors.ConfigError(
        "random has nothing to sample: every param is fixed", key=where,
        fix="give at least one distribution or list, or use fixed(...)")
  samples = domains.check_count(samples, where, "samples")
  seed = domains.check_seed(seed, where)
  if method not in nodes.METHODS:
    raise domains.unknown_option(method, nodes.METHODS, key=where,
                                 what="random method")
  return nodes.Random(tuple(bound), samples, seed, method)


def when(condition: Mapping[str, Any],
         sweep: nodes.Sweep | Mapping[str, Any]) -> nodes.When:
  """A sub-sweep applied only to variants whose keys match ``condition``.

  Use it as a part of :func:`product`. A list in the condition means "any
  of" (so a list-valued key is tested with ``[[64, 64]]``); keys the
  sub-sweep sets are absent from variants that do not match. Numbers compare
  by value (1 matches 1.0), booleans only match booleans.

  Examples:
    >>> from jaxsweep import space
    >>> space.expand(space.product({"opt": ["sgd", "adam"]},
    ...                            space.when({"opt": "sgd"}, {"momentum": [0.0, 0.9]})))
    [{'opt': 'sgd', 'momentum': 0.0}, {'opt': 'sgd', 'momentum': 0.9}, {'opt': 'adam'}]
  """
  if not isinstance(condition, Mapping) or not condition:
    raise errors.ConfigError(
        "a condition must be a non-empty mapping of config keys to values",
        key="when", fix="write when({'optimizer.name': 'sgd'}, {...})")
  cond = []
  for key, v in condition.items():
    key = check_key(key, where="when")
    allowed = v if isinstance(v, (list, tuple)) and not isinstance(v, str) else [v]
    if not allowed:
      raise errors.ConfigError("condition lists no values", key=key,
                               fix=f"write {key}: value or {key}: [v1, v2]")
    cond.append((key, tuple(domains.normalize(a, key) for a in allowed)))
  then = _to_sweep(sweep)
  overlap = [k for k, _ in cond if k in nodes.keys_of(then)]
  if overlap:
    raise errors.ConfigError(
        "a conditional sub-sweep sets the key its condition tests",
        key=overlap[0], fix="set that key outside the when(...) part")
  return nodes.When(tuple(cond), then)


def seeds(n_or_list: int | Sequence[int]) -> nodes.Axis:
  """The ``seed`` axis: seeds ``0..n-1`` or the listed ones.

  In a product it is always crossed last (varies fastest).

  Examples:
    >>> from jaxsweep import space
    >>> sweep = space.product(space.seeds(2), {"lr": [1, 2]})
    >>> [tuple(v.values()) for v in space.expand(sweep)]
    [(1, 0), (1, 1), (2, 0), (2, 1)]
  """
  if isinstance(n_or_list, (list, tuple, range, np.ndarray)):
    items = [domains.normalize(s, keys.SEED) for s in n_or_list]
    if not items or not all(isinstance(s, int) and not isinstance(s, bool)
                            for s in items):
      raise errors.ConfigError(
          f"seeds must be a non-empty list of integers, got {list(items)!r}",
          key=keys.SEED, fix="write seeds: 3 or seeds: [0, 1, 2]")
  else:
    items = list(range(domains.check_count(n_or_list, keys.SEED, "seeds")))
  return nodes.Axis(keys.SEED,
                    domains.check(domains.Values(tuple(items)), keys.SEED))


# ----------------------------------------------------------------------------
# Dicts.


def parse(obj: Any, *, file: str | None = None) -> nodes.Sweep:
  """Turns a config's ``sweep:`` section (loaded YAML) into a sweep.

  See :mod:`jaxsweep.space` for the grammar. ``None`` is the empty sweep (one
  variant that changes nothing).

  Args:
    obj: the loaded ``sweep:`` value (a mapping), or a sweep object.
    file: the config file, named in errors.

  Returns:
    A :class:`~jaxsweep.space.nodes.Sweep`.

  Raises:
    errors.ConfigError: naming the file and key, with a fix.

  Examples:
    >>> from jaxsweep import space
    >>> s = space.parse({"lr": {"log_uniform": [1e-2, 1.0], "num": 3}, "seeds": 2})
    >>> len(space.expand(s))
    6
  """
  try:
    if obj is None:
      return nodes.Product(())
    if not isinstance(obj, (Mapping, nodes.Sweep)):
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


def check_key(key: Any, *, where: str = "sweep") -> str:
  """`key` if it is a dotted config path and not a misplaced reserved word.

  Raises:
    errors.ConfigError: naming the key, with a did-you-mean for reserved words.
  """
  if not isinstance(key, str) or not KEY_RE.fullmatch(key):
    raise errors.ConfigError(
        f"{key!r} in {where} is not a dotted config path", key=str(key),
        fix="write keys like optimizer.learning_rate (letters, digits, _ "
            "and - between dots)")
  if key in _MISPLACED:
    raise errors.ConfigError(f"'{key}' is {_MISPLACED[key]}", key=key,
                             fix=f"move '{key}' to where it belongs")
  if (key != keys.SEED and "." not in key
      and difflib.get_close_matches(key, SPECIAL_KEYS, 1, 0.8)):
    raise errors.unknown_key(key, SPECIAL_KEYS, what="special key")
  return key


def _to_sweep(obj: Any) -> nodes.Sweep:
  if isinstance(obj, nodes.Sweep):
    return obj
  if isinstance(obj, Mapping):
    return _from_mapping(obj)
  if isinstance(obj, domains.Domain):
    raise errors.ConfigError(
        f"a bare {type(obj).__name__} spec has no config key", key="sweep",
        fix="put it in a dict: {'optimizer.learning_rate': ...}")
  raise errors.ConfigError(
      f"expected a sweep (a mapping of config keys to values), got "
      f"{obj!r}", key="sweep", fix="write {'model.activation': ['relu', 'tanh']}")


def _from_mapping(m: Mapping) -> nodes.Sweep:
  if "if" in m or "then" in m:
    return _when_from_mapping(m)
  parts: list[nodes.Sweep] = []
  for key, v in m.items():
    if key in SPECIAL_KEYS and isinstance(v, nodes.Sweep):
      parts.append(v)  # Python API: {"random": random(...), ...}.
    elif key in SPECIAL_KEYS:
      parts.extend(_special(key, v))
    else:
      parts.append(_axis(key, v))
  return nodes.product_of(parts)


def _special(name: str, v: Any) -> list[nodes.Sweep]:
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
    sweeps = [_to_sweep(s) for s in subs]
    if name == "product":
      return [nodes.product_of(sweeps)]
    return [nodes.zip_of(sweeps) if name == "zip"
            else nodes.Chain(tuple(sweeps))]
  if name == "random":
    if not isinstance(v, Mapping):
      raise errors.ConfigError(
          f"random needs a mapping, got {v!r}", key="random",
          fix="write random: {params: {...}, samples: 16, method: sobol}")
    for k in v:
      if k not in _RANDOM_KEYS:
        raise domains.unknown_option(k, _RANDOM_KEYS, key="random",
                                     what="random option")
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


def _when_from_mapping(m: Mapping) -> nodes.When:
  for k in m:
    if k not in ("if", "then"):
      raise domains.unknown_option(k, ("if", "then"), key="when",
                                   what="conditional key")
  if "if" not in m or "then" not in m:
    raise errors.ConfigError(
        "a conditional needs both 'if' and 'then'", key="when",
        fix="write {if: {optimizer.name: sgd}, then: {optimizer.momentum: "
            "[0.0, 0.9]}}")
  return when(m["if"], m["then"])


def _fixed_mapping(m: Any) -> nodes.Sweep:
  if not isinstance(m, Mapping):
    raise errors.ConfigError(
        f"fixed at sweep level needs a mapping of settings, got {m!r}",
        key="fixed", fix="write fixed: {train.steps: 100}")
  axes = []
  for k, v in m.items():
    k = check_key(k, where="fixed")
    axes.append(nodes.Axis(
        k, domains.check(domains.Fixed(domains.freeze_lists(v)), k)))
  return nodes.product_of(axes)


def _axis(key: Any, v: Any) -> nodes.Axis:
  key = check_key(key)
  try:
    return nodes.Axis(key, domains.check(_as_domain(v, key), key))
  except errors.ConfigError:
    # A typo of a reserved word (`prodcut: [...]`) reads as a config path
    # whose value is malformed: say what was probably meant.
    if ("." not in key and key != keys.SEED
        and difflib.get_close_matches(key, SPECIAL_KEYS, 1, 0.6)):
      raise errors.unknown_key(key, SPECIAL_KEYS, what="special key") from None
    raise


def _as_domain(v: Any, key: str) -> domains.Domain:
  if isinstance(v, domains.Domain):
    return v
  if isinstance(v, nodes.Sweep):
    raise errors.ConfigError(
        f"a sweep ({type(v).__name__}) cannot be the value of a key",
        key=key, fix="put combinators at sweep level: product({...}, zip(...))")
  if isinstance(v, Mapping):
    return domains.from_mapping(v, key)
  if isinstance(v, (list, tuple, range, np.ndarray)):
    return domains.values(*v)
  return domains.Fixed(v)
