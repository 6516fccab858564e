"""Config files: YAML in, a validated sweep out.

A config names registered components and their settings, plus a ``sweep``
section mapping dotted paths to values or distributions (see
:mod:`jaxsweep.space`)::

  data: {name: digits, test_fraction: 0.2, seed: 0}
  model: {name: mlp, features: [128, 128], activation: relu}
  loss: cross_entropy                     # or {name: cross_entropy, label_smoothing: 0.1}
  optimizer: {name: adam, learning_rate: 1.0e-3}
  train: {steps: 300, batch_size: 128, eval_every: 100}
  sweep:
    optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0], num: 16}
    seed: [0, 1, 2]

Every mistake raises :class:`~jaxsweep.errors.ConfigError` naming the file,
the key and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import selection
from jaxsweep import space
from jaxsweep.components import data as data_lib
from jaxsweep.components import losses as losses_lib
from jaxsweep.components import models as models_lib
from jaxsweep.components import optim
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import proposals
from jaxsweep.engine import record as record_lib
from jaxsweep.engine import search_space as search_space_lib
from jaxsweep.engine import strategy
from jaxsweep.engine import validate
from jaxsweep.space import wandb as wandb_lib
from jaxsweep.space import yaml12

SECTIONS = keys.SLOTS
TOP_LEVEL = (*SECTIONS, "seed", "sweep", "target", "mode", "name", "description", "run",
             "early_stopping", "vectorize", "group")
RUN_KEYS = ("chunk_size", "lanes", "max_variants", "memory_budget", "unstable_factor",
            "allow_zero_learning_rate")


@dataclasses.dataclass
class Config:
  """A loaded, validated config.

  Attributes:
    raw: the effective config as a dict: the overrides applied, fixed and
      swept (a swept override and a W&B sweep are in its ``sweep:``), so
      saved as YAML and loaded again it expands to the same variants.
    path: the file it came from (or None).
    base: qualified settings shared by all variants.
    points: qualified settings of each variant.
    target, mode: ranking metric and direction, if given.
    run: execution options (chunk_size, max_variants, ...).
    method: the search method (``sweep.method``: a name or a mapping with
      options), ``None`` for a plain sweep.
    early_stopping: the ``early_stopping`` section, if any.
    search: for a proposal method (``sweep.method: tpe|gp|qmc``), the
      search space (:class:`jaxsweep.engine.search_space.Space`) the sampler
      draws from; ``points`` is then ``[{}]``.
  """

  raw: dict[str, Any]
  path: str | None
  base: dict[str, Any]
  points: list[dict[str, Any]]
  target: str | None
  mode: str | None
  run: dict[str, Any]
  method: Any = None
  early_stopping: dict[str, Any] | None = None
  search: search_space_lib.Space | None = None

  @property
  def components(self) -> plan_lib.Components:
    vectorize = self.raw.get("vectorize")
    return registry_components(() if vectorize is None else vectorize,
                               self.raw.get("group") or ())


def registry_components(vectorize: Any = (), group: Any = ()) -> plan_lib.Components:
  """Components looked up by name in jaxsweep's registries.

  Args:
    vectorize: config paths of string choices to select per variant inside
      one compiled program (``model.activation``, ``model.features``,
      ``loss.name``); ``False``: group every key not listed in ``vectorize``
      (no automatic choice).
    group: config paths forced to split compile groups (one program per
      value). Keys in neither are decided by the planner's estimates.
  """
  auto = vectorize is not False
  lists = {}
  for field, value in (("vectorize", vectorize), ("group", group)):
    if isinstance(value, bool):
      value = ()
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)):
      raise errors.ConfigError(f"{field} must be a list of keys, got {value!r}.", key=field,
                               fix=f"write {field}: [model.activation, loss.name]")
    for key in value:
      if key not in VECTORIZABLE:
        raise errors.ConfigError(
            f"'{key}' is not a structural choice.{errors.did_you_mean(str(key), VECTORIZABLE)}",
            key=field, fix=f"{field} takes keys among: {', '.join(VECTORIZABLE)} (other "
                           "structural keys always form compile groups)")
    lists[field] = frozenset(keys.parse(k) for k in value)
  return plan_lib.Components(
      model=models_lib.REGISTRY, optimizer=optim.REGISTRY, loss=losses_lib.REGISTRY,
      data=data_lib.REGISTRY, vectorize=lists["vectorize"], group=lists["group"], auto=auto)


# String choices that the built-in models and losses can select per variant.
VECTORIZABLE = ("model.activation", "model.features", "model.channels", "loss.name",
                "optimizer.name", "optimizer.schedule")


def read_yaml(path: str) -> dict[str, Any]:
  """Reads a YAML mapping, with clear errors for missing or broken files.

  Raises:
    ConfigError: for a missing path, a directory, a file that is not UTF-8
      text or not YAML, a key given twice, or a document that is not a mapping.
  """
  if not os.path.exists(path):
    raise errors.ConfigError(f"config file not found: {path}", file=path,
                             fix="check the path; the shipped configs are in configs/")
  if os.path.isdir(path):
    inside = sorted(f for f in os.listdir(path) if f.endswith((".yaml", ".yml")))
    raise errors.ConfigError(
        "is a directory, not a config file.", file=path,
        fix=(f"give a YAML file inside it, e.g. {os.path.join(path, inside[0])}" if inside
             else "give the path of a YAML config file"))
  try:
    with open(path, "rb") as f:
      text = f.read().decode("utf-8")
  except UnicodeDecodeError as e:
    line = e.object[:e.start].count(b"\n") + 1
    raise errors.ConfigError(
        f"is not UTF-8 text (byte 0x{e.object[e.start]:02x} on line {line}).", file=path,
        fix="save the file as UTF-8 text (a config is YAML text, not a binary file)"
        ) from None
  except OSError as e:
    raise errors.ConfigError(f"cannot read the file: {e.strerror or e}.", file=path,
                             fix="check the path and its permissions") from None
  try:
    raw = space.load_yaml(text)
  except yaml12.DuplicateKeyError as e:
    lines = (f"both on line {e.line}" if e.line == e.first_line
             else f"lines {e.first_line} and {e.line}")
    raise errors.ConfigError(
        f"given twice ({lines}); YAML would keep only the last.", key=e.key, file=path,
        fix=f"keep one '{e.key.rsplit('.', 1)[-1]}' (to sweep several values, list them "
            "under sweep:)") from None
  except yaml12.UnsupportedValueError as e:
    raise errors.ConfigError(
        f"{e}.", key=e.key or None, file=path,
        fix="a seed is an integer: write e.g. seed: 0" if e.key.endswith("seed") else
        f"drop the {e.tag.rpartition(':')[2] and '!!' + e.tag.rpartition(':')[2]} tag: write "
        "the value as a number or as quoted text") from None
  except yaml12.TooLargeError as e:
    raise errors.ConfigError(
        f"{e}", file=path, fix="write the values out instead of nesting aliases of "
                               "aliases") from None
  except yaml.YAMLError as e:
    syntax = isinstance(e, yaml.MarkedYAMLError)  # Else nesting too deep or cyclic.
    raise errors.ConfigError(
        f"not valid YAML: {' '.join(str(e).split())}", file=path,
        fix="check the indentation, colons and brackets near the line named" if syntax
        else f"write the values out: no alias inside itself, at most {yaml12.MAX_DEPTH} "
             "levels of nesting") from None
  if raw is None:
    raw = {}
  if not isinstance(raw, dict):
    raise errors.ConfigError(f"the file must hold a mapping, got {type(raw).__name__}.",
                             file=path, fix="write 'key: value' lines at the top level")
  return raw


def load(path: str | None = None, overrides: Sequence[str] = (), *,
         raw: Mapping[str, Any] | None = None, max_variants: int | None = None,
         wandb: str | None = None) -> Config:
  """Loads a config file (or dict), applies CLI overrides, expands the sweep.

  Args:
    path: a YAML file.
    overrides: Hydra-style ``key=value`` (fixed) or ``key=v1,v2`` (swept).
    raw: a config dict instead of a file.
    max_variants: refuse to expand more variants (None: the config's
      ``run.max_variants`` or 10,000).
    wandb: a W&B sweep file whose parameters replace the config's sweep;
      its ``method: bayes`` becomes TPE proposals, its hyperband
      ``early_terminate`` the ``halving`` method, its ``metric`` the target
      and mode (:mod:`jaxsweep.space.wandb`).
  """
  try:
    if raw is None:
      raw = read_yaml(path)
    raw = copy.deepcopy(dict(raw))
    imported = None
    if wandb is not None:
      try:
        imported = space.read_wandb(read_yaml(wandb), file=wandb)
        raw["sweep"] = imported.sweep
        for name, value in (("target", imported.target), ("mode", imported.mode)):
          if value is not None and raw.get(name) not in (None, value):
            raise errors.ConfigError(
                f"the W&B metric says {name} {value}, the config {raw[name]}.", key="metric",
                fix=f"remove {name}: from the config, or make them agree")
          if value is not None:
            raw[name] = value
      except errors.ConfigError as e:
        raise e.with_file(wandb) from None
    # cfg.raw holds the effective sweep (overrides and W&B file included) in
    # the grammar: the run's config.yaml expands to the same variants.
    return _load(raw, path, list(overrides), max_variants, imported)
  except errors.ConfigError as e:
    raise (e.with_file(path) if path else e) from None


def _run_options(run: Any) -> dict[str, Any]:
  """The ``run:`` section, checked: positive integers and a memory size."""
  if run is None:
    return {}
  if not isinstance(run, Mapping):
    raise errors.ConfigError(f"'run' must be a mapping, got {type(run).__name__}.",
                             key="run", fix="write run: {chunk_size: 64, memory_budget: 2GiB}")
  for k, v in run.items():
    if k not in RUN_KEYS:
      raise errors.unknown_key(f"run.{k}", [f"run.{r}" for r in RUN_KEYS])
    if k == "memory_budget":
      if v is not None:
        memory_lib.parse_bytes(v, key="run.memory_budget")
    elif k == "allow_zero_learning_rate":
      if not isinstance(v, bool):
        raise errors.ConfigError(f"must be true or false, got {v!r}.", key=f"run.{k}",
                                 fix="write run: {allow_zero_learning_rate: true}")
    elif k == "unstable_factor":
      record_lib.unstable_factor(v, key=f"run.{k}", fix="write e.g. run: {unstable_factor: 3}")
    elif k == "lanes":  # The rule of js.run and --lanes: a positive integer or auto.
      if v is not None:
        strategy.check_lanes(v, key="run.lanes", fix="write e.g. run: {lanes: 8} (or auto)")
    elif v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
      raise errors.ConfigError(f"must be a positive integer, got {v!r}.", key=f"run.{k}",
                               fix=f"write e.g. run: {{{k}: {64 if k == 'chunk_size' else 20000}}}")
  return {k: v for k, v in run.items() if v is not None}


# What a config (a YAML file or the raw= dict of the API) may hold.
_PLAIN = (str, numbers.Number, type(None), list, tuple, Mapping)


def _check_plain(obj: Any, path: str, depth: int = 0) -> None:
  """Refuses values YAML cannot write back as plain text (a date, bytes, a
  set, an object), naming the key; a parsed sweep's trees and domains pass."""
  if isinstance(obj, (space.Sweep, space.Domain)) or depth > yaml12.MAX_DEPTH:
    return
  if not isinstance(obj, _PLAIN):
    raise errors.ConfigError(
        f"holds {type(obj).__name__} {obj!r}; a config holds only numbers, text, "
        "true/false, null, lists and mappings.", key=path or None,
        fix="give the value as a number or as text (a seed is an integer)")
  if isinstance(obj, Mapping):
    for k, v in obj.items():
      _check_plain(v, f"{path}.{k}" if path else str(k), depth + 1)
  elif isinstance(obj, (list, tuple)):
    for v in obj:
      _check_plain(v, path, depth + 1)


def _load(raw, path, overrides, max_variants, imported=None) -> Config:
  # Long on purpose: the config's sections checked top to bottom in the order
  # a reader meets them, each check one line from the key it names.
  for k in raw:
    if k not in TOP_LEVEL:
      raise errors.unknown_key(str(k), TOP_LEVEL, what="top-level key")
  _check_plain(raw, "")
  fixed, override_sweep = space.parse_overrides(overrides) if overrides else ({}, None)
  for key, value in fixed.items():
    key = keys.parse(key)
    section = raw.get(key.slot)
    if not key.is_seed and not isinstance(section, (type(None), str, Mapping)):
      raise errors.ConfigError(
          f"'{key.slot}' must be a mapping (or a name), got {type(section).__name__}; the "
          f"override {key}={value!r} cannot be set in it.", key=key.slot,
          fix=f"write {key.slot}: {{{key.arg}: ...}} in the config")
    keys.set_path(raw, key, value)
  sweep_obj = raw.get("sweep")
  method = None
  if isinstance(sweep_obj, dict) and "method" in sweep_obj:  # How to search, not a key.
    method = sweep_obj["method"]
    if not isinstance(method, (str, dict)):
      raise errors.ConfigError(f"sweep.method must be a name or a mapping, got {method!r}.",
                               key="sweep.method",
                               fix="write method: halving, or method: {name: pbt, ...}")
    sweep_obj = {k: v for k, v in sweep_obj.items() if k != "method"} or None
  if override_sweep is not None:
    swept = set(space.keys(override_sweep))
    if isinstance(sweep_obj, dict) and not any(k in space.SPECIAL_KEYS for k in sweep_obj):
      sweep_obj = {k: v for k, v in sweep_obj.items() if k not in swept} or None
    parsed_override = override_sweep
  else:
    parsed_override = None
  for key in fixed:  # A fixed override wins over the same key in the sweep.
    if isinstance(sweep_obj, dict) and key in sweep_obj:
      sweep_obj = {k: v for k, v in sweep_obj.items() if k != key} or None
  base = keys.flatten(raw)
  base.setdefault("seed", 0)  # The seed of variants whose sweep does not set one.
  if imported is not None and imported.method is not None:
    method = imported.method
  elif imported is not None and imported.early_terminate is not None:
    steps = base.get("train.steps")
    if not isinstance(steps, int):
      raise errors.ConfigError("early_terminate needs train.steps in the config.",
                               key="train.steps", fix="write train: {steps: 1000, ...}")
    try:
      method = wandb_lib.halving_method(imported.early_terminate, steps=steps,
                                        eval_every=base.get("train.eval_every") or steps)
    except errors.ConfigError as e:
      raise (e.with_file(imported.file) if imported.file else e) from None
  run_opts = _run_options(raw.get("run"))
  limit = max_variants or run_opts.get("max_variants") or space.DEFAULT_MAX_VARIANTS
  search = None
  if proposals.method_name(method):
    proposals.options(method)  # Checked now, the file named.
    search = search_space_lib.search_space(sweep_obj, parsed_override)
    for k in search.names():
      keys.parse(k)
  parts = []
  if search is None:  # A sweep's variants.
    if isinstance(sweep_obj, space.Sweep):
      parts.append(sweep_obj)
    elif sweep_obj:
      parts.append(space.parse(sweep_obj, file=path))
    if parsed_override is not None:
      parts.append(parsed_override)
  if not parts:
    points = [{}]
  elif len(parts) == 1:
    points = space.expand(parts[0], max_variants=limit)
  else:
    points = space.expand(space.product(*parts), max_variants=limit)
  for p in points:
    for k in p:
      keys.parse(k)
      if k in fixed:  # Inside random:, zip:, when: ... a fixed override cannot reach it.
        raise errors.ConfigError(
            f"the override {k}={fixed[k]!r} fixes a key the sweep sets inside a "
            "combinator; it would be ignored.", key=k,
            fix=f"take {k} out of the config's sweep section (it is set inside random:, "
                "zip:, chain: or when: there), then fix it in the config or by the override")
  validate.check_learning_rate(points, base,
                               allow_zero=run_opts.get("allow_zero_learning_rate", False))
  mode = raw.get("mode")
  selection.check_mode(mode)
  raw_out = dict(raw)
  effective = effective_sweep(sweep_obj, parsed_override)
  if method is not None:  # The search method stays with the sweep it searches.
    effective = {**(effective or {}), "method": method}
  if effective is not None:
    effective = space.plain_sweep(effective)
  if effective is None:
    raw_out.pop("sweep", None)
  else:
    raw_out["sweep"] = effective
  stopping = raw.get("early_stopping")
  if stopping is not None and not isinstance(stopping, dict):
    raise errors.ConfigError(f"early_stopping must be a mapping, got {stopping!r}.",
                             key="early_stopping",
                             fix="write early_stopping: {patience: 3, min_delta: 0.001}")
  return Config(raw=raw_out, path=path, base=base, points=points,
                target=raw.get("target"), mode=mode, run=run_opts, method=method,
                early_stopping=stopping, search=search)


def effective_sweep(sweep: Any, override: space.Sweep | None) -> dict[str, Any] | None:
  """The ``sweep:`` section that expands to a run's variants, as plain YAML.

  Args:
    sweep: the config's sweep after the overrides (a mapping in the grammar,
      a parsed sweep such as a W&B file's, or None).
    override: the sweep given on the command line (``key=v1,v2``), or None.

  Returns:
    The config's own text where it can be kept: a plain mapping gets the
    swept overrides as more keys; otherwise ``product: [sweep, overrides]``.
    None when nothing is swept.

  Examples:
    >>> from jaxsweep import space
    >>> _, over = space.parse_overrides(["model.activation=relu,tanh"])
    >>> effective_sweep({"optimizer.learning_rate": [0.1, 0.3]}, over)
    {'optimizer.learning_rate': [0.1, 0.3], 'model.activation': ['relu', 'tanh']}
  """
  # A W&B bayes space is a mapping of key -> domain: written in the grammar.
  sweep = space.plain_sweep(sweep) or None
  if override is None:
    return sweep
  over = space.unparse(override)
  if sweep is None:
    return over
  if isinstance(sweep, Mapping) and not any(k in space.SPECIAL_KEYS for k in sweep):
    return {**sweep, **over}
  return {"product": [sweep, over]}
