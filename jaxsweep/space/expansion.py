"""Expansion: a sweep tree -> its ordered list of variants, and variant ids.

Grids are exact (``numpy.linspace``/``geomspace``); random draws come from
``numpy.random.default_rng`` seeded per key or per search, and Sobol/Halton
points from ``scipy.stats.qmc``, so the same sweep gives the same variants on
every machine.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep.space import domains
from jaxsweep.space import grammar
from jaxsweep.space import nodes

DEFAULT_MAX_VARIANTS = 10_000

_FIX_SIZE = "pass --max-variants N (or max_variants=N) to confirm"


def expand(sweep: nodes.Sweep | Mapping[str, Any], *,
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
    >>> from jaxsweep import space
    >>> space.expand({"lr": [0.1, 0.01], "seeds": 2})[:3]
    [{'lr': 0.1, 'seed': 0}, {'lr': 0.1, 'seed': 1}, {'lr': 0.01, 'seed': 0}]
  """
  node = grammar.parse(sweep)
  ctx = _Expansion(max_variants)
  n = nodes.length(node)
  if n is not None:
    ctx.check(n, exact=True)
  points = _extend(node, [{}], ctx)
  for cond, seen, matched in ctx.conditions.values():
    for k, _ in cond.condition:
      if not seen[k]:
        raise errors.ConfigError(
            "a condition tests a key that the sweep around it never sets"
            f".{errors.did_you_mean(k, nodes.keys_of(node))}", key=k,
            fix="put when(...) in a product with the key it tests")
    if not matched[0]:
      text = ", ".join(f"{k} in {list(a)!r}" for k, a in cond.condition)
      got = "; ".join(f"{k} takes {seen[k]!r}" for k, _ in cond.condition)
      raise errors.ConfigError(
          f"condition {text} never holds ({got})", key=cond.condition[0][0],
          fix="fix the condition's values (types matter: 'sgd', 1, true)")
  if not points:
    raise errors.ConfigError("sweep expands to zero variants", key="sweep",
                             fix="give every key at least one value")
  return [dict(p) for p in points]


def variant_id(d: Mapping[str, Any]) -> str:
  """Stable 10-hex-digit id of a variant, the same on every machine.

  The id is the start of the SHA-1 of the canonical JSON of the sorted
  ``[key, value]`` pairs (compact separators; tuples as lists; floats as
  ``repr``), so 1, 1.0, True and "1" give different ids.

  Examples:
    >>> from jaxsweep import space
    >>> space.variant_id({"b": 2, "a": 0.1}) == space.variant_id({"a": 0.1, "b": 2})
    True
  """
  items = [[str(k), domains.normalize(v, str(k))] for k, v in sorted(d.items())]
  return hashlib.sha1(domains.canonical(items).encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------
# Values of one axis, and (quasi-)random points.


def _key_seed(key: str) -> int:
  # Independent default streams per key, stable across machines (not hash()).
  return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)


def _from_unit(domain: domains.Domain, u: np.ndarray) -> list:
  """Maps unit-interval coordinates through a distribution (inverse CDF)."""
  if isinstance(domain, domains.Choice):
    k = len(domain.options)
    idx = np.minimum((u * k).astype(np.int64), k - 1)
    return [domain.options[i] for i in idx.tolist()]
  if isinstance(domain, domains.IntUniform):
    span = domain.high - domain.low + 1
    ints = domain.low + np.minimum(np.floor(u * span).astype(np.int64),
                                   span - 1)
    return [int(v) for v in ints.tolist()]
  if isinstance(domain, domains.LogUniform):
    lo, hi = math.log(domain.low), math.log(domain.high)
    out = np.clip(np.exp(lo + u * (hi - lo)), domain.low, domain.high)
    return [float(v) for v in out.tolist()]
  out = domain.low + u * (domain.high - domain.low)
  return [float(v) for v in out.tolist()]


def _unit_points(n: int, d: int, seed: int, method: str) -> np.ndarray:
  """[n, d] points in the unit cube: i.i.d. or scrambled Sobol/Halton."""
  if method == "random":
    return np.random.default_rng(seed).random((n, d))
  # Imported here on purpose: scipy adds ~1.3 s to `import jaxsweep` and only
  # quasi-random sweeps need it.
  from scipy.stats import qmc  # pylint: disable=g-import-not-at-top
  cls = qmc.Sobol if method == "sobol" else qmc.Halton
  try:
    engine = cls(d, scramble=True, rng=seed)
  except TypeError:  # scipy < 1.15 spells it seed=.
    engine = cls(d, scramble=True, seed=seed)
  with warnings.catch_warnings():
    # Sobol prefers powers of 2; any n is still well spread.
    warnings.filterwarnings("ignore", message=".*balance properties.*")
    return engine.random(n)


def _axis_values(key: str, domain: domains.Domain) -> list:
  if isinstance(domain, domains.Fixed):
    return [domain.value]
  if isinstance(domain, domains.Values):
    return list(domain.items)
  if isinstance(domain, domains.Choice):
    return list(domain.options)
  if domain.samples is not None:
    seed = _key_seed(key) if domain.seed is None else domain.seed
    return _from_unit(domain,
                      np.random.default_rng(seed).random(domain.samples))
  if isinstance(domain, domains.IntUniform):
    if domain.num is None:
      return list(range(domain.low, domain.high + 1))
    return domains.int_grid(domain.low, domain.high, domain.num)
  if isinstance(domain, domains.LogUniform):
    return [float(v) for v in np.geomspace(domain.low, domain.high, domain.num)]
  return [float(v) for v in np.linspace(domain.low, domain.high, domain.num)]


# ----------------------------------------------------------------------------
# Crossing.


class _Expansion:
  """State of one expand() call: the size limit and what conditions saw."""

  def __init__(self, limit: int | None):
    self.limit = limit
    self.conditions: dict[int, tuple[nodes.When, dict[str, list],
                                     list[bool]]] = {}

  def check(self, n: int, *, exact: bool = False) -> None:
    if self.limit is not None and n > self.limit:
      size = f"{n} variants" if exact else f"at least {n} variants"
      raise errors.ConfigError(
          f"sweep expands to {size}, more than max_variants={self.limit}",
          key="sweep", fix=_FIX_SIZE)


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


def _extend(node: nodes.Sweep, base: list[dict],
            ctx: _Expansion) -> list[dict]:
  """Crosses `base` (slowest) with `node`'s variants given each point."""
  if isinstance(node, nodes.Product):
    for part in nodes.ordered(node.parts):
      base = _extend(part, base, ctx)
    return base
  if isinstance(node, nodes.When):
    return _extend_when(node, base, ctx)
  if isinstance(node, nodes.Chain) and nodes.has_when(node):
    out = []
    for p in base:
      for part in node.parts:
        out.extend(_extend(part, [p], ctx))
        ctx.check(len(out))
    return out
  return _cross(base, _variants(node, ctx), ctx)


def _extend_when(node: nodes.When, base: list[dict],
                 ctx: _Expansion) -> list[dict]:
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


def _variants(node: nodes.Sweep, ctx: _Expansion) -> list[dict]:
  """Variants of a node that does not depend on the point it extends."""
  if isinstance(node, nodes.Axis):
    ctx.check(domains.size(node.domain))
    return [{node.key: v} for v in _axis_values(node.key, node.domain)]
  if isinstance(node, nodes.Random):
    ctx.check(node.samples)
    dims = [(k, d) for k, d in node.params
            if not isinstance(d, domains.Fixed)]
    u = _unit_points(node.samples, len(dims), node.seed, node.method)
    cols = {k: _from_unit(d, u[:, j]) for j, (k, d) in enumerate(dims)}
    return [{k: d.value if isinstance(d, domains.Fixed) else cols[k][i]
             for k, d in node.params} for i in range(node.samples)]
  if isinstance(node, nodes.Zip):
    sides = [_variants(p, ctx) for p in node.parts]
    out = sides[0]
    for side in sides[1:]:
      out = [_merge(a, b) for a, b in zip(out, side, strict=True)]
    return out
  if isinstance(node, nodes.Chain):
    return [v for p in node.parts for v in _variants(p, ctx)]
  return _extend(node, [{}], ctx)
