"""W&B sweep files read as jaxsweep searches.

Nothing here imports the ``wandb`` package: a W&B sweep file is plain YAML.
What it says maps onto jaxsweep as follows; anything else is refused with
what to use instead, never ignored:

==========================================  ======================================
W&B                                         jaxsweep
==========================================  ======================================
``method: grid`` / ``random``               the sweep's variants (random:
                                            ``run_cap`` or ``count`` draws)
``method: bayes``                           ``method: {name: tpe, samples:
                                            run_cap}``: batched TPE proposals
                                            (:mod:`jaxsweep.engine.proposals`)
``metric: {name, goal}``                    ``target: name``, ``mode: max|min``
                                            (no goal: jaxsweep's default for the
                                            name, max for accuracies, else min)
``early_terminate: {type: hyperband,``      ``method: {name: halving, eta,``
``min_iter | max_iter + s, eta}``           ``min_steps: min_iter * eval_every,``
                                            ``max_rungs: s}``
``name``, ``description``, ``program``,     not used: they say how W&B starts
``command``, ``project``, ``entity``        and logs runs, not what is searched
==========================================  ======================================

W&B counts a metric's *iterations* as the values a run logged; jaxsweep
evaluates (logs) the validation metric once per period of ``eval_every``
steps, so ``min_iter`` iterations are ``min_iter * eval_every`` steps. W&B's
hyperband checks every run at the rungs ``min_iter * eta**k`` (``k < s``);
that is jaxsweep's successive halving (``halving``) with ``max_rungs: s``,
not its bracketed ``hyperband``, whose brackets start at other budgets.
"""

from __future__ import annotations

import dataclasses
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
_WANDB_METHODS = ("grid", "random", "bayes")
_WANDB_DISTS = {"uniform": domains.Uniform,
                "log_uniform_values": domains.LogUniform,
                "int_uniform": domains.IntUniform}
_WANDB_PARAM_KEYS = ("value", "values", "distribution", "min", "max",
                     "parameters", "probabilities")
_METRIC_KEYS = ("name", "goal")
_GOALS = {"maximize": "max", "minimize": "min"}
_HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta")
_FIX_WANDB = ("use values: [...], value: x, or distribution: uniform | "
              "log_uniform_values | int_uniform | categorical | constant "
              "with min/max")


@dataclasses.dataclass(frozen=True)
class Imported:
  """A W&B sweep file as jaxsweep runs it.

  Attributes:
    sweep: the parameters: a sweep (grid, random) or, for ``bayes``, a
      mapping of keys to domains (distributions without sizes) for the
      sampler.
    method: ``{"name": "tpe", "samples": N}`` for ``bayes``, else None.
    early_terminate: ``{"eta", "min_iter", "max_rungs"}`` from a hyperband
      ``early_terminate`` (see :func:`halving_method`), else None.
    target, mode: from ``metric`` (``name``; ``goal`` as max/min), or None.
    file: the sweep file, named in errors found later (``early_terminate``
      against the config's steps).
  """

  sweep: Any
  method: dict[str, Any] | None = None
  early_terminate: dict[str, Any] | None = None
  target: str | None = None
  mode: str | None = None
  file: str | None = None


def from_wandb(obj: Mapping[str, Any], *, file: str | None = None,
               samples: int | None = None, seed: int = 0) -> nodes.Sweep:
  """The variants of a W&B sweep file (``method: grid|random``) as a sweep.

  ``parameters`` map names (dotted config paths, or nested ``parameters:``
  which become dotted paths) to ``{value: x}``, ``{values: [...]}`` or
  ``{distribution: ..., min, max}`` with ``uniform``, ``log_uniform_values``,
  ``int_uniform`` (or no distribution: ints give int_uniform, floats
  uniform), ``categorical`` and ``constant``. ``grid`` is the product of the
  parameters in order (int_uniform lists every integer); ``random`` draws
  ``samples`` (else ``run_cap``, else ``count``) points jointly with
  ``seed``. The rest of the file (``bayes``, ``metric``, ``early_terminate``)
  is read by :func:`read_wandb`.

  Raises:
    errors.ConfigError: for ``bayes`` and ``early_terminate`` (a sweep
      cannot hold them: use :func:`read_wandb`), unsupported distributions
      (W&B's exponent-based ``log_uniform``, ``normal``, ``q_*``, ...),
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
  imported = read_wandb(obj, file=file, samples=samples, seed=seed)
  if imported.method is not None or imported.early_terminate is not None:
    what = "method: bayes" if imported.method is not None else "early_terminate"
    err = errors.ConfigError(
        f"{what} is a search method, not a list of variants.",
        key="method" if imported.method is not None else "early_terminate",
        fix="load it with jaxsweep run CONFIG --wandb FILE (config.load(wandb=...)), "
            "or space.read_wandb")
    raise err.with_file(file) if file else err
  return imported.sweep


def read_wandb(obj: Mapping[str, Any], *, file: str | None = None,
               samples: int | None = None, seed: int = 0) -> Imported:
  """Reads a whole W&B sweep file: parameters, method, metric, early_terminate.

  See the module docstring for the mapping; :func:`from_wandb` for the
  parameters.

  Raises:
    errors.ConfigError: naming the key and what to use, for anything not
      mapped.

  Examples:
    >>> from jaxsweep import space
    >>> w = space.read_wandb({"method": "bayes", "run_cap": 32,
    ...     "metric": {"name": "val_accuracy", "goal": "maximize"},
    ...     "parameters": {"optimizer.learning_rate": {
    ...         "distribution": "log_uniform_values", "min": 1e-4, "max": 1.0}}})
    >>> w.method, w.target, w.mode
    ({'name': 'tpe', 'samples': 32}, 'val_accuracy', 'max')
  """
  try:
    return dataclasses.replace(_read_wandb(obj, samples=samples, seed=seed), file=file)
  except errors.ConfigError as e:
    if file is None:
      raise
    raise e.with_file(file) from None


def halving_method(early: Mapping[str, Any], *, eval_every: int,
                   steps: int) -> dict[str, Any]:
  """jaxsweep's ``halving`` method for a W&B hyperband ``early_terminate``.

  Args:
    early: :attr:`Imported.early_terminate`.
    eval_every: steps between evaluations (a W&B iteration).
    steps: the training steps.

  Raises:
    errors.ConfigError: when the first rung is not before the end of training.

  Examples:
    >>> halving_method({"eta": 3, "min_iter": 2, "max_rungs": None}, eval_every=50,
    ...                steps=1000)
    {'name': 'halving', 'eta': 3, 'min_steps': 100}
  """
  min_steps = early["min_iter"] * eval_every
  if min_steps >= steps:
    raise errors.ConfigError(
        f"min_iter={early['min_iter']} evaluations of {eval_every} steps ({min_steps}) "
        f"do not end before training does ({steps} steps).", key="early_terminate.min_iter",
        fix="lower min_iter, or evaluate more often (train.eval_every: W&B's iterations "
            "are jaxsweep's evaluations)")
  out = {"name": "halving", "eta": early["eta"], "min_steps": min_steps}
  if early.get("max_rungs") is not None:
    out["max_rungs"] = early["max_rungs"]
  return out


def _read_wandb(obj: Any, *, samples: int | None, seed: int) -> Imported:
  if not isinstance(obj, Mapping):
    raise errors.ConfigError(
        f"a W&B sweep must be a mapping, got {type(obj).__name__}",
        key="method", fix="give the loaded W&B sweep YAML (method:, "
                          "parameters:)")
  for k in obj:
    if k not in _WANDB_TOP:
      raise errors.unknown_key(str(k), _WANDB_TOP, what="W&B sweep key")
  method = obj.get("method")
  if method not in _WANDB_METHODS:
    raise domains.unknown_option(method, _WANDB_METHODS, key="method",
                                 what="W&B method")
  params = obj.get("parameters")
  if not isinstance(params, Mapping) or not params:
    raise errors.ConfigError(
        "a W&B sweep needs parameters: a non-empty mapping", key="parameters",
        fix="add parameters: {optimizer.learning_rate: {values: [...]}}")
  specs = {k: _wandb_domain(k, p, method)
           for k, p in _wandb_flatten(params, "")}
  target, mode = _metric(obj.get("metric"))
  early = _early_terminate(obj["early_terminate"]) if "early_terminate" in obj else None
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
    return Imported(sweep, None, early, target, mode)
  n = samples
  for name in ("run_cap", "count"):
    if n is None and obj.get(name) is not None:
      n = domains.check_count(obj[name], name, name)
  if n is None:
    raise errors.ConfigError(
        f"method: {method} needs a number of runs", key="run_cap",
        fix="set run_cap: N in the sweep file, or pass samples=N")
  if method == "random":
    return Imported(grammar.random(specs, samples=n, seed=seed), None, early, target, mode)
  if early is not None:
    raise errors.ConfigError(
        "early_terminate with method: bayes is not mapped: jaxsweep's TPE stops trials "
        "with Optuna's median pruner instead", key="early_terminate",
        fix="remove early_terminate (TPE prunes by default), or use method: random with it")
  return Imported(specs, {"name": "tpe", "samples": n, "seed": seed}
                  if seed else {"name": "tpe", "samples": n}, None, target, mode)


def _metric(metric: Any) -> tuple[str | None, str | None]:
  """``metric: {name, goal}`` as (target, mode)."""
  if metric is None:
    return None, None
  if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str):
    raise errors.ConfigError(f"metric must be {{name: ..., goal: ...}}, got {metric!r}",
                             key="metric", fix="write metric: {name: val_accuracy, goal: "
                                               "maximize}")
  for k in metric:
    if k not in _METRIC_KEYS:
      raise errors.ConfigError(
          f"metric.{k} is not supported: jaxsweep trains the whole budget and ranks on "
          "metric.name", key=f"metric.{k}", fix=f"remove {k} (keep name and goal)")
  goal = metric.get("goal")
  if goal is not None and goal not in _GOALS:
    raise domains.unknown_option(goal, _GOALS, key="metric.goal", what="goal")
  return metric["name"], _GOALS.get(goal)


def _early_terminate(early: Any) -> dict[str, Any]:
  """A hyperband ``early_terminate``, checked: ``{"eta", "min_iter", "max_rungs"}``."""
  if not isinstance(early, Mapping):
    raise errors.ConfigError(f"early_terminate must be a mapping, got {early!r}",
                             key="early_terminate",
                             fix="write early_terminate: {type: hyperband, min_iter: 3}")
  if early.get("type") != "hyperband":
    raise errors.ConfigError(
        f"early_terminate type {early.get('type')!r} is not mapped (W&B knows hyperband)",
        key="early_terminate.type",
        fix="use type: hyperband, or jaxsweep's early_stopping: {patience: 3} at the top "
            "of the config")
  for k in early:
    if k not in _HYPERBAND_KEYS:
      fix = ("remove strict: jaxsweep halves synchronously, every run compared at each "
             "rung" if k == "strict" else f"use {', '.join(_HYPERBAND_KEYS)}")
      raise errors.ConfigError(f"early_terminate.{k} is not mapped",
                               key=f"early_terminate.{k}", fix=fix)
  eta = early.get("eta", 3)
  if isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta <= 1:
    raise errors.ConfigError(f"eta must be a number above 1, got {eta!r}",
                             key="early_terminate.eta", fix="write eta: 3")
  s = early.get("s")
  if s is not None:
    s = domains.check_count(s, "early_terminate.s", "s")
  if ("min_iter" in early) == ("max_iter" in early):
    raise errors.ConfigError("early_terminate needs min_iter, or max_iter with s",
                             key="early_terminate", fix="write min_iter: 3 (and eta: 3)")
  if "min_iter" in early:
    min_iter = domains.check_count(early["min_iter"], "early_terminate.min_iter", "min_iter")
  else:
    max_iter = domains.check_count(early["max_iter"], "early_terminate.max_iter", "max_iter")
    if s is None:
      raise errors.ConfigError("max_iter needs s (the number of brackets)",
                               key="early_terminate.s", fix="add s: 2, or give min_iter")
    # W&B's brackets are max_iter / eta**s ... max_iter / eta.
    min_iter = round(max_iter / eta ** s)
    if min_iter < 1:
      raise errors.ConfigError(
          f"max_iter={max_iter} / eta**s is below one iteration", key="early_terminate.s",
          fix="lower s, or raise max_iter")
  return {"eta": eta, "min_iter": min_iter, "max_rungs": s}


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
