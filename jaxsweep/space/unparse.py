"""Sweep trees back to the YAML grammar: :func:`unparse` is :func:`parse`'s inverse.

A run's ``config.yaml`` must expand to the same variants as the run: sweeps
given on the command line (``model.activation=relu,tanh``) or read from a
W&B file exist only as trees, so they are written back in the grammar of
:mod:`jaxsweep.space`. ``parse(unparse(s))`` equals ``s``, so both expand
to the same variants in the same order.
"""

from __future__ import annotations

from typing import Any

from jaxsweep import keys
from jaxsweep.space import domains
from jaxsweep.space import nodes


def unparse(sweep: nodes.Sweep) -> dict[str, Any] | None:
  """The YAML form (plain dicts, lists and scalars) of a sweep tree.

  Args:
    sweep: a parsed sweep (:func:`jaxsweep.space.parse`, the combinators,
      overrides or a W&B file).

  Returns:
    A mapping for a config's ``sweep:`` section, or None for the empty sweep.

  Examples:
    >>> from jaxsweep import space
    >>> s = space.product({"lr": space.log_uniform(1e-3, 1e-1, num=3)},
    ...                   {"act": ["relu", "tanh"]}, space.seeds(2))
    >>> space.unparse(s)
    {'lr': {'log_uniform': [0.001, 0.1], 'num': 3}, 'act': ['relu', 'tanh'], 'seed': [0, 1]}
    >>> space.expand(space.unparse(s)) == space.expand(s)
    True
  """
  if isinstance(sweep, nodes.Product) and not sweep.parts:
    return None
  return _node(sweep)


def plain_sweep(obj: Any) -> Any:
  """A ``sweep:`` value with every domain and sweep tree inside it in the YAML
  grammar (a W&B ``bayes`` search space is a mapping of key -> domain), so
  ``yaml.safe_dump`` can write it.

  Examples:
    >>> from jaxsweep import space
    >>> space.plain_sweep({"lr": space.log_uniform(1e-4, 1.0), "method": "tpe"})
    {'lr': {'log_uniform': [0.0001, 1.0]}, 'method': 'tpe'}
  """
  if isinstance(obj, nodes.Sweep):
    return unparse(obj)
  if isinstance(obj, domains.Domain):
    return _domain(obj)
  if isinstance(obj, dict) or hasattr(obj, "items"):
    return {k: plain_sweep(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [plain_sweep(v) for v in obj]
  return obj


def _node(node: nodes.Sweep) -> dict[str, Any]:
  if isinstance(node, nodes.Axis):
    return {node.key: _domain(node.domain)}
  if isinstance(node, nodes.Product):
    if all(isinstance(p, nodes.Axis) for p in node.parts):
      return {p.key: _domain(p.domain) for p in node.parts}  # Keys are distinct.
    return {"product": [_node(p) for p in node.parts]}
  if isinstance(node, nodes.Zip):
    return {"zip": [_node(p) for p in node.parts]}
  if isinstance(node, nodes.Chain):
    return {"chain": [_node(p) for p in node.parts]}
  if isinstance(node, nodes.Random):
    return {"random": {"params": {k: _domain(d, in_random=True) for k, d in node.params},
                       "samples": node.samples, "seed": node.seed, "method": node.method}}
  if isinstance(node, nodes.When):
    return {"when": {"if": {k: [_plain(v) for v in allowed] for k, allowed in node.condition},
                     "then": _node(node.then)}}
  raise TypeError(f"not a sweep node: {node!r}")


def _domain(domain: domains.Domain, *, in_random: bool = False) -> Any:
  if isinstance(domain, domains.Values):
    return [_plain(v) for v in domain.items]
  if isinstance(domain, domains.Fixed):
    return {"fixed": _plain(domain.value)}
  if isinstance(domain, domains.Choice):
    return {"choice": [_plain(v) for v in domain.options]}
  if isinstance(domain, domains.Uniform):
    out: dict[str, Any] = {domain.kind: [_plain(domain.low), _plain(domain.high)]}
    if not in_random:
      for name in ("num", "samples", "seed"):
        if getattr(domain, name) is not None:
          out[name] = getattr(domain, name)
    return out
  raise TypeError(f"not a domain: {domain!r}")


def _plain(v: Any) -> Any:
  return keys.plain(v)
