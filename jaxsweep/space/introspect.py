"""What a sweep sets and how, without expanding it: keys, descriptions, axes.

The config loader asks :func:`keys` which keys an override sweep sets, and
the plots ask :func:`is_log_scaled` which axes are logarithmic and
:func:`is_sampled` which are random draws;
:func:`describe` summarizes each key in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jaxsweep.space import domains
from jaxsweep.space import grammar
from jaxsweep.space import nodes


def keys(sweep: nodes.Sweep | Mapping[str, Any]) -> list[str]:
  """Keys a sweep sets, in first-appearance order (seed last in products).

  Examples:
    >>> from jaxsweep import space
    >>> space.keys({"seeds": 2, "b": [1, 2], "a": 0})
    ['b', 'a', 'seed']
  """
  return nodes.keys_of(grammar.parse(sweep))


def describe(sweep: nodes.Sweep | Mapping[str, Any]) -> dict[str, str]:
  """A short human description of what each key takes.

  Examples:
    >>> from jaxsweep import space
    >>> space.describe({"lr": {"log_uniform": [1e-4, 1.0], "num": 16},
    ...                 "act": ["relu", "tanh"]})
    {'lr': 'log grid 1e-04..1e+00 (16)', 'act': 'values [relu, tanh]'}
  """
  out: dict[str, list[str]] = {}
  _describe(grammar.parse(sweep), out, "")
  return {k: " | ".join(v) for k, v in out.items()}


def is_log_scaled(sweep: nodes.Sweep | Mapping[str, Any], key: str) -> bool:
  """Whether plots should use a log axis for `key`.

  True if any distribution of `key` is log-uniform, or if its explicit values
  are at least 3 positive numbers spanning a factor of 100 or more (e.g.
  ``lr=1e-4,1e-3,1e-2`` on the command line). False for keys not swept.

  Examples:
    >>> from jaxsweep import space
    >>> space.is_log_scaled({"lr": [1e-4, 1e-3, 1e-2], "act": ["relu", "tanh"]}, "lr")
    True
  """
  found: list[domains.Domain] = []
  _collect_domains(grammar.parse(sweep), key, found)
  if any(isinstance(d, domains.LogUniform) for d in found):
    return True
  nums = []
  for d in found:
    items = (d.items if isinstance(d, domains.Values) else
             d.options if isinstance(d, domains.Choice) else ())
    nums.extend(items)
  if len(nums) < 3 or not all(isinstance(v, (int, float))
                              and not isinstance(v, bool) and v > 0
                              for v in nums):
    return False
  return max(nums) / min(nums) >= 100


def is_sampled(sweep: nodes.Sweep | Mapping[str, Any], key: str) -> bool:
  """Whether `key` takes random draws (``random:`` or ``samples:``), not a grid.

  Plots show a sampled hyperparameter as a scatter with a trend, a grid as
  a line through its values.

  Examples:
    >>> from jaxsweep import space
    >>> sweep = {"random": {"params": {"lr": {"log_uniform": [1e-4, 1.0]}}, "samples": 8},
    ...          "act": ["relu", "tanh"]}
    >>> space.is_sampled(sweep, "lr"), space.is_sampled(sweep, "act")
    (True, False)
  """
  return _sampled(grammar.parse(sweep), key)


def _sampled(node: nodes.Sweep, key: str) -> bool:
  if isinstance(node, nodes.Random):
    return any(k == key and not isinstance(d, domains.Fixed) for k, d in node.params)
  if isinstance(node, nodes.Axis) and node.key == key:
    return isinstance(node.domain, domains.Uniform) and node.domain.samples is not None
  return any(_sampled(child, key) for child in nodes.children(node))


def _collect_domains(node: nodes.Sweep, key: str,
                     out: list[domains.Domain]) -> None:
  if isinstance(node, nodes.Axis) and node.key == key:
    out.append(node.domain)
  elif isinstance(node, nodes.Random):
    out.extend(d for k, d in node.params if k == key)
  for child in nodes.children(node):
    _collect_domains(child, key, out)


def _describe(node: nodes.Sweep, out: dict[str, list[str]],
              suffix: str) -> None:
  def add(key: str, text: str) -> None:
    texts = out.setdefault(key, [])
    if text + suffix not in texts:
      texts.append(text + suffix)

  if isinstance(node, nodes.Axis):
    add(node.key, _describe_domain(node.domain))
  elif isinstance(node, nodes.Random):
    for k, d in node.params:
      add(k, _describe_domain(d, sampled=True) + (
          "" if isinstance(d, domains.Fixed) else
          f" ({node.method} search, {node.samples} samples, seed "
          f"{node.seed})"))
  elif isinstance(node, nodes.When):
    cond = ", ".join(f"{k}={'|'.join(map(_fmt, a))}" if len(a) <= 4 else
                     f"{k} in {_fmt_list(a)}" for k, a in node.condition)
    _describe(node.then, out, f"{suffix} if {cond}")
  else:
    for child in nodes.children(node):
      _describe(child, out, suffix + (" (zipped)"
                                      if isinstance(node, nodes.Zip) else ""))


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


def _describe_domain(domain: domains.Domain, *, sampled: bool = False) -> str:
  if isinstance(domain, domains.Fixed):
    return f"fixed {_fmt(domain.value)}"
  if isinstance(domain, domains.Values):
    return f"values {_fmt_list(domain.items)}"
  if isinstance(domain, domains.Choice):
    return f"choice {_fmt_list(domain.options)}"
  log = isinstance(domain, domains.LogUniform)
  fmt = _fmt_sci if log else _fmt
  span = f"{fmt(domain.low)}..{fmt(domain.high)}"
  name = {"uniform": "uniform", "log_uniform": "log-uniform",
          "int_uniform": "int-uniform"}[domain.kind]
  if domain.samples is not None:
    seed = "" if domain.seed is None else f", seed {domain.seed}"
    return f"{name} {span}, {domain.samples} samples{seed}"
  if domain.num is not None:
    grid = {"uniform": "grid", "log_uniform": "log grid",
            "int_uniform": "int grid"}[domain.kind]
    return f"{grid} {span} ({domains.size(domain)})"
  if isinstance(domain, domains.IntUniform) and not sampled:
    return f"ints {span} ({domains.size(domain)})"
  return f"{name} {span}"
