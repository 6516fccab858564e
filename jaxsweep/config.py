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
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from jaxsweep import engine
from jaxsweep import errors
from jaxsweep import space

SECTIONS = ("data", "model", "loss", "optimizer", "train")
TOP_LEVEL = (*SECTIONS, "seed", "sweep", "target", "mode", "name", "description", "run",
             "vectorize")
RUN_KEYS = ("chunk_size", "max_variants", "memory_budget", "devices")


@dataclasses.dataclass
class Config:
  """A loaded, validated config.

  Attributes:
    raw: the config as a dict (overrides applied, sweep included).
    path: the file it came from (or None).
    base: qualified settings shared by all variants.
    points: qualified settings of each variant.
    target, mode: ranking metric and direction, if given.
    run: execution options (chunk_size, max_variants, ...).
  """

  raw: dict[str, Any]
  path: str | None
  base: dict[str, Any]
  points: list[dict[str, Any]]
  target: str | None
  mode: str | None
  run: dict[str, Any]

  @property
  def spec(self) -> engine.Spec:
    return registry_spec(self.raw.get("vectorize") or ())

  def variant_config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A runnable config (no sweep) for one variant's full settings."""
    raw = copy.deepcopy({k: v for k, v in self.raw.items() if k != "sweep"})
    for key, value in settings.items():
      set_path(raw, key, list(value) if isinstance(value, tuple) else value)
    return raw


def registry_spec(vectorize=()) -> engine.Spec:
  """Components looked up by name in jaxsweep's registries.

  Args:
    vectorize: config paths of string choices to select per variant inside
      one compiled program (``model.activation``, ``loss.name``).
  """
  vectorize = [vectorize] if isinstance(vectorize, str) else list(vectorize)
  for key in vectorize:
    if key not in VECTORIZABLE:
      raise errors.ConfigError(
          f"'{key}' cannot be vectorized.{errors.did_you_mean(str(key), VECTORIZABLE)}",
          key="vectorize", fix=f"vectorize one of: {', '.join(VECTORIZABLE)} (other "
                               "structural keys form compile groups)")
  return engine.Spec(model=engine.MODEL_REGISTRY, optimizer=engine.OPTIMIZER_REGISTRY,
                     loss=engine.LOSS_REGISTRY, data=engine.DATA_REGISTRY,
                     vectorize=frozenset(vectorize))


# String choices that the built-in models and losses can select per variant.
VECTORIZABLE = ("model.activation", "loss.name")


def read_yaml(path: str) -> dict[str, Any]:
  """Reads a YAML mapping, with clear errors for missing or broken files."""
  if not os.path.exists(path):
    raise errors.ConfigError(f"config file not found: {path}", file=path,
                             fix="check the path; the shipped configs are in configs/")
  try:
    with open(path) as f:
      raw = space.load_yaml(f.read())
  except yaml.YAMLError as e:
    raise errors.ConfigError(f"not valid YAML: {e}", file=path) from e
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
    wandb: a W&B sweep file whose parameters replace the config's sweep.
  """
  try:
    if raw is None:
      raw = read_yaml(path)
    raw = copy.deepcopy(dict(raw))
    if wandb is not None:
      try:
        raw["sweep"] = space.from_wandb(read_yaml(wandb), file=wandb)
      except errors.ConfigError as e:
        raise e.with_file(wandb)
    cfg = _load(raw, path, list(overrides), max_variants)
    if wandb is not None:  # Keep config.yaml plain YAML: name the source.
      cfg.raw["sweep"] = {"imported_from_wandb": os.path.abspath(wandb)}
    return cfg
  except errors.ConfigError as e:
    raise e.with_file(path) if path else e


def _load(raw, path, overrides, max_variants) -> Config:
  for k in raw:
    if k not in TOP_LEVEL:
      raise errors.unknown_key(str(k), TOP_LEVEL, what="top-level key")
  fixed, override_sweep = space.parse_overrides(overrides) if overrides else ({}, None)
  for key, value in fixed.items():
    _check_path(key)
    set_path(raw, key, value)
  sweep_obj = raw.get("sweep")
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
  base = flatten(raw)
  base.setdefault("seed", 0)  # The seed of variants whose sweep does not set one.
  run_opts = dict(raw.get("run") or {})
  for k in run_opts:
    if k not in RUN_KEYS:
      raise errors.unknown_key(f"run.{k}", [f"run.{r}" for r in RUN_KEYS])
  limit = max_variants or int(run_opts.get("max_variants", 10_000))
  parts = []
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
      _check_path(k)
  mode = raw.get("mode")
  if mode not in (None, "max", "min"):
    raise errors.ConfigError(f"mode must be max or min, got {mode!r}.", key="mode")
  raw_out = dict(raw)
  if sweep_obj is not None or parsed_override is not None:
    raw_out["sweep"] = raw.get("sweep")
  return Config(raw=raw_out, path=path, base=base, points=points,
                target=raw.get("target"), mode=mode, run=run_opts)


def _check_path(key: str) -> None:
  head, _, tail = key.partition(".")
  if key == "seed":
    return
  if head not in SECTIONS or not tail:
    valid = [*(f"{s}.<arg>" for s in SECTIONS), "seed"]
    raise errors.ConfigError(
        f"'{key}' is not a config path.{errors.did_you_mean(head, SECTIONS + ('seed',))}",
        key=key, fix=f"paths look like {', '.join(valid)}")


def set_path(raw: dict, key: str, value: Any) -> None:
  """Sets a dotted config path (``optimizer.learning_rate``) in a config dict."""
  if key == "seed":
    raw["seed"] = value
    return
  head, _, tail = key.partition(".")
  section = raw.get(head)
  if isinstance(section, str):  # loss: cross_entropy
    section = {"name": section}
  section = dict(section or {})
  section[tail] = value
  raw[head] = section


def flatten(raw: Mapping[str, Any]) -> dict[str, Any]:
  """Config dict -> qualified settings (``optimizer.learning_rate``: 1e-3)."""
  out: dict[str, Any] = {}
  for section in SECTIONS:
    value = raw.get(section)
    if value is None:
      continue
    if isinstance(value, str):
      value = {"name": value}
    if not isinstance(value, Mapping):
      raise errors.ConfigError(
          f"'{section}' must be a mapping (or a name), got {type(value).__name__}.",
          key=section, fix=f"write e.g. {section}: {{name: ..., ...}}")
    for k, v in value.items():
      out[f"{section}.{k}"] = tuple(_tuple(v)) if isinstance(v, list) else v
  if "seed" in raw:
    out["seed"] = raw["seed"]
  return out


def _tuple(v):
  return [tuple(_tuple(x)) if isinstance(x, list) else x for x in v]


def run(cfg: Config, *, out: str | None = None, progress=False, mesh=None,
        chunk_size: int | None = None, memory_budget: int | str | None = None):
  """Runs a loaded config through the same engine as :func:`jaxsweep.run`."""
  from jaxsweep import api  # pylint: disable=g-import-not-at-top
  try:
    return api.run_plan(cfg.spec, cfg.base, cfg.points, target=cfg.target,
                        mode=cfg.mode, chunk_size=chunk_size or cfg.run.get("chunk_size"),
                        memory_budget=memory_budget or cfg.run.get("memory_budget"),
                        mesh=mesh, out=out, progress=progress, config=cfg.raw)
  except errors.ConfigError as e:
    raise e.with_file(cfg.path) if cfg.path else e
