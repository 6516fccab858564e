"""The sweep tree: keyed, composable nodes and what their structure implies.

Nodes are built, validated, by :mod:`jaxsweep.space.grammar` (from dicts and
the Python combinators) and turned into variants by
:mod:`jaxsweep.space.expansion`. This module knows the shape of a tree: which
keys it sets (:func:`keys_of`), how many variants it has (:func:`length`) and
in which order the parts of a product are crossed (:func:`ordered`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep.space import domains

# How a Random node draws its points.
METHODS = ("random", "sobol", "halton")


class Sweep:
  """A node of a sweep tree; ``expand`` turns it into variants."""


@dataclasses.dataclass(frozen=True)
class Axis(Sweep):
  """One key and the (validated) domain of its values."""
  key: str
  domain: domains.Domain


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
  params: tuple  # ((key, Domain), ...)
  samples: int
  seed: int
  method: str  # One of METHODS.


@dataclasses.dataclass(frozen=True)
class When(Sweep):
  """A sub-sweep crossed only into variants that match ``condition``."""
  condition: tuple  # ((key, (allowed value, ...)), ...)
  then: Sweep


# ----------------------------------------------------------------------------
# Validated builders.


def product_of(parts: list[Sweep]) -> Sweep:
  """The product of `parts`, flattened; a single part is returned as is.

  Raises:
    errors.ConfigError: if two parts (other than conditional ones) set one key.
  """
  flat: list[Sweep] = []
  for p in parts:
    flat.extend(p.parts if isinstance(p, Product) else [p])
  # Alternative when() parts may set the same key; everything else may not.
  check_disjoint(keys_of(p) for p in flat if not isinstance(p, When))
  return flat[0] if len(flat) == 1 else Product(tuple(flat))


def zip_of(parts: list[Sweep]) -> Zip:
  """The lockstep combination of `parts`.

  Raises:
    errors.ConfigError: for no parts, a conditional part, parts that share a
      key, or parts of different lengths.
  """
  if not parts:
    raise errors.ConfigError("zip needs at least one sub-sweep", key="zip",
                             fix="write zip({'a': [1, 2], 'b': [3, 4]})")
  for p in parts:
    if has_when(p):
      raise errors.ConfigError(
          "a conditional (when/if) cannot be zipped: lengths would vary",
          key=", ".join(keys_of(p)), fix="use when(...) in a product instead")
  check_disjoint(keys_of(p) for p in parts)
  lengths = [length(p) for p in parts]
  if len(set(lengths)) > 1:
    desc = ", ".join(f"{n} ({', '.join(keys_of(p))})"
                     for p, n in zip(parts, lengths, strict=True))
    bad = next(p for p, n in zip(parts, lengths, strict=True)
               if n != lengths[0])
    raise errors.ConfigError(
        f"zip needs sides of equal length, got {desc}",
        key=", ".join(keys_of(bad)),
        fix="give every side the same number of values, or use product")
  return Zip(tuple(parts))


def check_disjoint(key_lists: Iterable[Iterable[str]]) -> None:
  """Raises a ConfigError if two of the key lists share a key."""
  seen: dict[str, int] = {}
  for i, ks in enumerate(key_lists):
    for k in dict.fromkeys(ks):
      if k in seen:
        if k == keys.SEED:
          raise errors.ConfigError(
              "the seeds are set by two sides of a product (by 'seeds:' and by a 'seed:' "
              "key, or in two of its parts): each variant would get two seeds", key=k,
              fix="keep one of them: 'seeds: 3' (seeds 0, 1, 2) or 'seed: [0, 1, 2]'")
        raise errors.ConfigError(
            f"set by two sides of a product (its parts {seen[k] + 1} and {i + 1}): each "
            "variant would get it twice", key=k,
            fix=f"list all of {k}'s values in one part ({k}: [a, b, c]), or use "
                "chain: [...] to try the parts one after the other")
      seen[k] = i


# ----------------------------------------------------------------------------
# Structure.


def _is_seed_part(node: Sweep) -> bool:
  return isinstance(node, Axis) and node.key == keys.SEED


def ordered(parts: Iterable[Sweep]) -> list[Sweep]:
  """Parts of a product in crossing order: plain, then conditional, then seed."""
  # Conditions test keys set by the ordinary parts; seeds vary fastest.
  parts = list(parts)
  return ([p for p in parts if not isinstance(p, When) and not _is_seed_part(p)]
          + [p for p in parts if isinstance(p, When)]
          + [p for p in parts if _is_seed_part(p)])


def has_when(node: Sweep) -> bool:
  """Whether `node` contains a conditional part."""
  if isinstance(node, When):
    return True
  return any(has_when(p) for p in getattr(node, "parts", ()))


def children(node: Sweep) -> tuple:
  """The sub-sweeps of `node` (a product's in crossing order)."""
  if isinstance(node, Product):
    return tuple(ordered(node.parts))
  if isinstance(node, (Zip, Chain)):
    return node.parts
  if isinstance(node, When):
    return (node.then,)
  return ()


def keys_of(node: Sweep) -> list[str]:
  """Keys `node` sets, in first-appearance order (seed last in products)."""
  out: dict[str, None] = {}
  if isinstance(node, Axis):
    out[node.key] = None
  elif isinstance(node, Random):
    out.update((k, None) for k, _ in node.params)
  for child in children(node):
    out.update((k, None) for k in keys_of(child))
  return list(out)


def length(node: Sweep) -> int | None:
  """Number of variants, or None where it depends on conditions."""
  if isinstance(node, Axis):
    return domains.size(node.domain)
  if isinstance(node, Random):
    return node.samples
  if isinstance(node, When):
    return None
  lens = [length(p) for p in node.parts]
  if any(n is None for n in lens):
    return None
  if isinstance(node, Product):
    return math.prod(lens)
  if isinstance(node, Chain):
    return sum(lens)
  return lens[0]  # Zip: equal by construction.
