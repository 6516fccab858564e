"""W&B sweep files (``method: grid|random``) read as jaxsweep sweeps.

Nothing here imports the ``wandb`` package: a W&B sweep file is plain YAML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jaxsweep import errors
from jaxsweep.space import domains
from jaxsweep.space import grammar
from jaxsweep.space import nodes

_WANDB_TOP = ("method", "parameters", "run_cap", "count", "metric", "name",
              "description", "program", "command", "project", "entity",
              "early_terminate")
_WANDB_DISTS = {"uniform": domains.Uniform,
                "log_uniform_values": domains.LogUniform,
                "int_uniform": domains.IntUniform}
_WANDB_PARAM_KEYS = ("value", "values", "distribution", "min", "max",
                     "parameters", "probabilities")
_FIX_WANDB = ("use values: [...], value: x, or distribution: uniform | "
              "log_uniform_values | int_uniform | categorical | constant "
              "with min/max")


def from_wandb(obj: Mapping[str, Any], *, file: str | None = None,
               samples: int | None = None, seed: int = 0) -> nodes.Sweep:
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
    >>> from jaxsweep import space
    >>> s = space.from_wandb({"method": "grid", "parameters": {
    ...     "optimizer.learning_rate": {"values": [1e-3, 1e-2]},
    ...     "model.depth": {"distribution": "int_uniform", "min": 1, "max": 2}}})
    >>> len(space.expand(s))
    4
  """
  try:
    return _from_wandb(obj, samples=samples, seed=seed)
  except errors.ConfigError as e:
    if file is None:
      raise
    raise e.with_file(file) from None


def _from_wandb(obj: Any, *, samples: int | None, seed: int) -> nodes.Sweep:
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
    raise domains.unknown_option(method, ("grid", "random"), key="method",
                                 what="W&B method")
  params = obj.get("parameters")
  if not isinstance(params, Mapping) or not params:
    raise errors.ConfigError(
        "a W&B sweep needs parameters: a non-empty mapping", key="parameters",
        fix="add parameters: {optimizer.learning_rate: {values: [...]}}")
  specs = {k: _wandb_domain(k, p, method)
           for k, p in _wandb_flatten(params, "")}
  if method == "grid":
    sweep = grammar.product(specs)
    cap = obj.get("run_cap")
    n = nodes.length(sweep)
    if cap is not None and n is not None and domains.check_count(
        cap, "run_cap", "run_cap") < n:
      raise errors.ConfigError(
          f"run_cap={cap} is smaller than the grid ({n} points); jaxsweep "
          "runs whole grids", key="run_cap",
          fix="remove run_cap, or trim the values so the grid fits")
    return sweep
  n = samples
  for name in ("run_cap", "count"):
    if n is None and obj.get(name) is not None:
      n = domains.check_count(obj[name], name, name)
  if n is None:
    raise errors.ConfigError(
        "method: random needs a number of runs", key="run_cap",
        fix="set run_cap: N in the sweep file, or pass samples=N")
  return grammar.random(specs, samples=n, seed=seed)


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


def _wandb_domain(key: str, p: Any, method: str) -> domains.Domain:
  grammar.check_key(key, where="W&B parameters")
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
      raise domains.unknown_option(k, _WANDB_PARAM_KEYS, key=key,
                                   what="W&B parameter key")
  if "probabilities" in p:
    raise errors.ConfigError(
        "probabilities are not supported (options are drawn uniformly)",
        key=key, fix="remove probabilities")
  dist = p.get("distribution")
  if "value" in p and dist in (None, "constant"):
    return domains.Fixed(domains.freeze_lists(p["value"]))
  if "values" in p and dist in (None, "categorical"):
    if not isinstance(p["values"], list):
      raise errors.ConfigError(f"values must be a list, got {p['values']!r}",
                               key=key, fix=f"write {key}: {{values: [a, b]}}")
    return domains.values(*p["values"])
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
  if method == "grid" and cls is not domains.IntUniform:
    raise errors.ConfigError(
        f"method: grid needs a list of values, and distribution: {dist} "
        "has no grid (only int_uniform is expanded, to every integer)",
        key=key, fix="give values: [...], or use method: random, or "
                     f"jaxsweep's {{{cls.kind}: [min, max], num: N}}")
  return cls(p["min"], p["max"])
