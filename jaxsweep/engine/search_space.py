"""The search space of a proposal method: parsed once into a flat :class:`Space`.

:func:`search_space` reads a sweep written in the grammar (or sweep objects)
into the keys the sampler searches (categorical or a distribution), the
settings every trial shares, and the seeds each trial trains;
:mod:`jaxsweep.engine.proposals` hands it to Optuna.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import space as space_lib
from jaxsweep.space import domains
from jaxsweep.space import grammar


@dataclasses.dataclass(frozen=True)
class Space:
  """What the sampler searches, what stays fixed, and the seeds of every trial.

  Attributes:
    params: ``((key, domain), ...)``: :class:`~jaxsweep.space.Choice` (lists
      and grids), ``Uniform``, ``LogUniform`` or ``IntUniform`` (no sizes).
    fixed: ``((key, value), ...)`` settings every trial shares.
    seeds: the seeds each trial trains, or None (the run's seed).
  """

  params: tuple[tuple[str, domains.Domain], ...]
  fixed: tuple[tuple[str, Any], ...] = ()
  seeds: tuple[int, ...] | None = None

  def renamed(self, names: Mapping[str, str]) -> Space:
    """The same space with keys renamed (``learning_rate`` -> qualified)."""
    return Space(tuple((names.get(k, k), d) for k, d in self.params),
                 tuple((names.get(k, k), v) for k, v in self.fixed), self.seeds)

  def names(self) -> list[str]:
    return [k for k, _ in self.params] + [k for k, _ in self.fixed]


_REFUSED = ("product", "zip", "chain", "random", "when", "if", "then")


def search_space(*parts: Any) -> Space:
  """The space of a sweep written for a proposal method.

  Each part is a mapping in the sweep grammar (``{key: {log_uniform: [lo,
  hi]}, key: [a, b], key: value, seeds: 3, fixed: {...}}``) or a sweep object
  (axes, their product, ``random(params)``); None is skipped.
  Distributions are written without ``num``/``samples`` (the sampler draws
  the values); a list of values, ``choice`` or a grid (``num:``) is
  categorical; a scalar stays fixed; ``seed``/``seeds`` are trained for every
  trial.

  Raises:
    ConfigError: for combinators (``product``, ``zip``, ``when``...), sampled
      distributions (``samples:``), a searched seed, or nothing to search.

  Examples:
    >>> s = search_space({"lr": {"log_uniform": [1e-4, 1.0]}, "act": ["relu", "tanh"],
    ...                   "steps": 100, "seeds": 2})
    >>> [k for k, _ in s.params], s.fixed, s.seeds
    (['lr', 'act'], (('steps', 100),), (0, 1))
  """
  params: dict[str, domains.Domain] = {}
  fixed: dict[str, Any] = {}
  seeds: list[tuple[int, ...] | None] = [None]
  for part in parts:
    if part is None:
      continue
    for key, domain in _entries(part):
      if key in params or key in fixed:
        raise errors.ConfigError("set twice in the search space.", key=key,
                                 fix="give each key once")
      if key == keys.SEED:
        seeds[0] = _seeds(domain)
      elif isinstance(domain, domains.Fixed):
        fixed[key] = domain.value
      else:
        params[key] = domain
  if not params:
    raise errors.ConfigError(
        "a proposal method needs something to search: every key is fixed.", key="sweep",
        fix="give a distribution, e.g. optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0]}")
  return Space(tuple(params.items()), tuple(fixed.items()), seeds[0])


def _entries(part: Any) -> list[tuple[str, domains.Domain]]:
  """(key, checked domain) pairs of one part of a search space."""
  if isinstance(part, space_lib.Axis):
    return [(part.key, _searchable(part.key, part.domain))]
  if isinstance(part, space_lib.Product):
    return [e for p in part.parts for e in _entries(p)]
  if isinstance(part, space_lib.Random):
    return [(k, _searchable(k, d)) for k, d in part.params]
  if isinstance(part, space_lib.Sweep):
    raise errors.ConfigError(
        f"a proposal method searches a flat space, not a {type(part).__name__}.", key="sweep",
        fix="write key: distribution (or a list) per searched key; no zip/chain/when")
  if not isinstance(part, Mapping):
    raise errors.ConfigError(
        f"the search space must be a mapping of keys to distributions, got {part!r}.",
        key="sweep", fix="write sweep: {optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0]}}")
  out = []
  for key, v in part.items():
    if key == "seeds":
      out.append((keys.SEED, space_lib.seeds(v).domain))
    elif key == "fixed" and isinstance(v, Mapping):
      out.extend((k, domains.Fixed(domains.freeze_lists(x))) for k, x in v.items())
    elif key in _REFUSED:
      raise errors.ConfigError(
          f"'{key}' cannot be searched by a proposal method: the sampler needs one "
          "flat space.", key=str(key),
          fix="write key: distribution (or a list of values) for each searched key")
    elif isinstance(v, space_lib.Sweep):
      out.extend(_entries(v))
    else:
      key = grammar.check_key(key, where="the search space")
      out.append((key, _searchable(key, _as_domain(v, key))))
  return out


def _as_domain(v: Any, key: str) -> domains.Domain:
  if isinstance(v, domains.Domain):
    return v
  if isinstance(v, Mapping):
    return domains.from_mapping(v, key)
  if isinstance(v, (list, tuple, range, np.ndarray)):
    return domains.values(*v)
  return domains.Fixed(v)


def _searchable(key: str, domain: domains.Domain) -> domains.Domain:
  """A domain as the sampler takes it: fixed, categorical or a distribution."""
  if isinstance(domain, domains.Uniform) and domain.samples is not None:
    raise errors.ConfigError(
        f"{domain.kind} with samples= draws its own values; here the sampler draws them.",
        key=key, fix=f"write {{{domain.kind}: [{domain.low}, {domain.high}]}} without samples")
  if isinstance(domain, domains.Uniform) and domain.num is not None:
    grid = [p[key] for p in space_lib.expand({key: domain}, max_variants=None)]
    return domains.check(domains.Choice(tuple(grid)), key, in_random=True)
  return domains.check(domain, key, in_random=True)


def _seeds(domain: domains.Domain) -> tuple[int, ...]:
  if isinstance(domain, domains.Fixed):
    return (domain.value,)
  if isinstance(domain, (domains.Values, domains.Choice)):
    items = domain.items if isinstance(domain, domains.Values) else domain.options
    return tuple(items)
  raise errors.ConfigError("seeds are not searched: every trial trains each seed.",
                           key=keys.SEED, fix="write seed: [0, 1, 2] or seeds: 3")
