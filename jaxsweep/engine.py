"""Orchestration: variants -> compile groups -> compiled population runs.

The data flow is::

  settings of each variant (qualified names: ``optimizer.learning_rate``)
    -> split static / dynamic -> groups (one per static signature)
    -> per group: stacked dynamic values [V] -> jit(vmap(init)), then
       jit(vmap(chunk)) once per eval period, on a mesh, in variant chunks
    -> rows (one per variant) + history -> :class:`~jaxsweep.results.Results`

Names. Every setting has a *qualified* name ``slot.arg`` where the slot is
``model``, ``optimizer``, ``loss``, ``data`` or ``train``, plus ``seed``.
The Python API also accepts bare names (``learning_rate``) and qualifies them
by looking at which factory accepts them.

Static vs dynamic. Numeric optimizer and loss arguments, traced keyword
arguments of the model's ``__call__``, ``model.init_scale`` and ``seed`` are
*dynamic*: they become [V] arrays and never recompile. Everything else (model
factory arguments, strings, bools, data and train settings) is *static*:
variants that differ there form separate compile groups.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsweep import data as data_lib
from jaxsweep import errors
from jaxsweep import losses as losses_lib
from jaxsweep import models as models_lib
from jaxsweep import optim
from jaxsweep import sharding
from jaxsweep import train as train_lib

SLOTS = ("model", "optimizer", "loss", "data", "train")
TRAIN_ARGS = {"steps": None, "batch_size": None, "eval_every": None,
              "eval_batch_size": 1024}
# Arguments filled from the data or the train settings when not given.
OUTPUT_ARGS = ("num_outputs",)


@dataclasses.dataclass(frozen=True)
class Dispatch:
  """A slot whose concrete factory is picked by a structural ``name``.

  Config files use this: ``optimizer: {name: adam, learning_rate: 1e-3}``
  looks ``adam`` up in the optimizer registry.
  """

  kind: str
  lookup: Callable[[str], Callable]
  default: str

  def resolve(self, name: str | None) -> Callable:
    return self.lookup(self.default if name is None else name)


MODEL_REGISTRY = Dispatch("model", models_lib.factory, "mlp")
OPTIMIZER_REGISTRY = Dispatch("optimizer", optim.get, "adam")
LOSS_REGISTRY = Dispatch("loss", losses_lib.get, "cross_entropy")
DATA_REGISTRY = Dispatch("data", data_lib.loader, "digits")


@dataclasses.dataclass(frozen=True, eq=False)
class Spec:
  """What is swept: the user's components, before any variant is chosen.

  Attributes:
    model: a Linen module, model factory, ``(init, apply)`` pair, ModelFns or
      :class:`Dispatch`.
    optimizer: an optax factory or :class:`Dispatch`.
    loss: ``loss(outputs, batch, **hparams)`` or :class:`Dispatch`.
    data: a :class:`~jaxsweep.data.Dataset`, a factory of one, or Dispatch.
    metrics: name -> metric function; ``None`` picks the task's defaults.
    static: qualified names forced static even when numeric.
    vectorize: qualified names of string choices (``model.activation``,
      ``loss.name``) to select per variant inside one program (an int index
      and ``lax.switch``) instead of splitting compile groups.
  """

  model: Any
  optimizer: Any
  loss: Any
  data: Any
  metrics: Mapping[str, Callable] | None = None
  static: frozenset = frozenset()
  vectorize: frozenset = frozenset()


# --------------------------------------------------------------------------
# Names.

def _params(fn) -> Mapping[str, inspect.Parameter]:
  try:
    return inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return {}


def _takes_var_kwargs(fn) -> bool:
  return any(p.kind == p.VAR_KEYWORD for p in _params(fn).values())


def _factory_args(fn) -> dict[str, Any]:
  return {n: p.default for n, p in _params(fn).items()
          if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _loss_args(fn) -> dict[str, Any]:
  items = [(n, p) for n, p in _params(fn).items()
           if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
  return {n: p.default for n, p in items[2:]}


def slot_factory(spec: Spec, slot: str, name: str | None):
  """The concrete factory of a slot for a variant whose ``slot.name`` is name."""
  obj = getattr(spec, slot)
  if isinstance(obj, Dispatch):
    return obj.resolve(name)
  return obj


def slot_args(spec: Spec, slot: str, name: str | None = None) -> dict[str, Any]:
  """Arguments a slot's factory accepts, with defaults (may be empty)."""
  if slot == "train":
    return dict(TRAIN_ARGS)
  fn = slot_factory(spec, slot, name)
  args: dict[str, Any] = {}
  if isinstance(getattr(spec, slot), Dispatch):
    args["name"] = getattr(spec, slot).default
  if slot == "loss":
    args.update(_loss_args(fn))
  elif slot == "data":
    if not isinstance(fn, data_lib.Dataset) and callable(fn):
      args.update(_factory_args(fn))
  elif slot == "model":
    if models_lib.is_factory(fn):
      args.update(_factory_args(fn))
  else:
    args.update(_factory_args(fn))
  return args


def qualify(names: Sequence[str], spec: Spec,
            model_kwargs: Mapping[str, Any] | None = None) -> dict[str, str]:
  """Maps the user's names to qualified ``slot.arg`` names.

  Raises:
    ConfigError: for a name no component accepts (listing what they accept)
      or one that several accept (asking for a qualified name).
  """
  accepted = {s: slot_args(spec, s) for s in SLOTS}
  call_args: tuple[str, ...] | None = None
  out = {}
  for name in names:
    head, _, tail = name.partition(".")
    if name == "seed" or (tail and head in SLOTS):
      out[name] = name
      continue
    hits = [s for s in ("model", "optimizer", "loss", "data", "train")
            if name in accepted[s]]
    if not hits:
      if call_args is None:
        call_args = _model_call_args(spec, model_kwargs or {})
      if name in call_args or name == "init_scale":
        hits = ["model"]
    if len(hits) > 1:
      raise errors.ConfigError(
          f"'{name}' is accepted by the {' and the '.join(hits)}.", key=name,
          fix=f"write it qualified: {' or '.join(h + '.' + name for h in hits)}")
    if not hits:
      listing = "; ".join(
          f"{s}: {', '.join(sorted(a)) or '-'}" for s, a in accepted.items()
          if s != "train") + f"; model call: {', '.join(call_args or ()) or '-'}"
      raise errors.ConfigError(
          f"no component accepts '{name}'.{errors.did_you_mean(name, _all_names(accepted, call_args))}",
          key=name,
          fix=f"sweep a name one of them accepts ({listing}; or seed, steps, "
              "batch_size, eval_every, init_scale)")
    out[name] = f"{hits[0]}.{name}"
  return out


def _all_names(accepted, call_args):
  names = set(["seed", "init_scale"]) | set(call_args or ())
  for a in accepted.values():
    names |= set(a)
  return names


def _model_call_args(spec: Spec, model_kwargs: Mapping[str, Any]) -> tuple[str, ...]:
  try:
    fns = _build_model(spec, dict(model_kwargs), check=False)
  except Exception:  # pylint: disable=broad-except
    return ()
  return fns.call_args


def _build_model(spec: Spec, static_model: dict, *, check: bool = True):
  name = static_model.pop("name", None)
  fn = slot_factory(spec, "model", name)
  if models_lib.is_factory(fn):
    try:
      built = fn(**static_model)
    except errors.ConfigError:
      raise
    except TypeError as e:
      if not check:
        raise
      raise errors.ConfigError(
          f"the model factory rejected its arguments {static_model}: {e}",
          key="model", fix=f"it accepts: {', '.join(_factory_args(fn))}") from e
    return models_lib.to_model_fns(built)
  if static_model and check:
    raise errors.ConfigError(
        f"the model is not a factory, so it cannot take {sorted(static_model)}.",
        key="model." + sorted(static_model)[0],
        fix="pass a model factory (e.g. lambda features: MLP(features)) to sweep "
            "structural arguments")
  return models_lib.to_model_fns(fn)


# --------------------------------------------------------------------------
# Variants -> groups.

def _freeze(value):
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  if isinstance(value, dict):
    return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
  if isinstance(value, np.generic):
    return value.item()
  return value


def _split_slot(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  per = {s: {} for s in SLOTS}
  for k, v in settings.items():
    if k == "seed":
      continue
    head, _, tail = k.partition(".")
    if head not in per or not tail:
      raise errors.unknown_key(k, [f"{s}.*" for s in SLOTS] + ["seed"])
    per[head][tail] = v
  return per


@dataclasses.dataclass
class Group:
  """Variants that share one compiled program.

  Attributes:
    index: position in the plan.
    static: qualified static settings shared by all members.
    dynamic: qualified names vectorized within the group.
    members: indices of the member variants in the plan.
    defaults: values used for dynamic names a member does not set.
    choices: vectorized choice key -> its options in this group; the
      variant's option index is the dynamic value ``index_name(key)``.
  """

  index: int
  static: dict[str, Any]
  dynamic: tuple[str, ...]
  members: list[int]
  defaults: dict[str, Any]
  choices: dict[str, tuple] = dataclasses.field(default_factory=dict)

  def describe(self) -> str:
    return ", ".join(f"{k}={v}" for k, v in self.static.items()
                     if not k.startswith("data.")) or "(single group)"


@dataclasses.dataclass
class Plan:
  """Expanded variants and their compile groups, ready to run."""

  spec: Spec
  variants: list[dict[str, Any]]      # full qualified settings per variant
  swept: list[str]                     # qualified names that vary / were swept
  display: dict[str, str]              # qualified name -> column name
  groups: list[Group]
  ids: list[str]

  @property
  def num_variants(self) -> int:
    return len(self.variants)


def index_name(key: str) -> str:
  """The dynamic int that selects a vectorized choice: ``loss.name`` ->
  ``loss.loss_index``, ``model.activation`` -> ``model.activation_index``."""
  head, _, tail = key.partition(".")
  return f"{head}.{head if tail == 'name' else tail}_index"


def _is_dynamic(spec: Spec, key: str, value: Any, factory_args: Mapping[str, dict],
                call_args: tuple[str, ...]) -> bool:
  if key == "seed":
    return True
  if key in spec.static or not optim.is_numeric(value):
    return False
  head, _, tail = key.partition(".")
  if head in ("optimizer", "loss"):
    return True
  if head == "model":
    if tail in factory_args["model"]:
      return False
    return tail in call_args or tail == "init_scale"
  return False


def make_plan(spec: Spec, base: Mapping[str, Any],
              points: Sequence[Mapping[str, Any]], *,
              display: Mapping[str, str] | None = None) -> Plan:
  """Expands qualified settings into variants and groups them.

  Args:
    spec: the components.
    base: qualified settings shared by all variants (defaults).
    points: one dict of qualified settings per variant (the sweep).
    display: column name per qualified name (defaults to the name).

  Raises:
    ConfigError: for unknown arguments, missing required values, or an
      optimizer/model/loss that rejects its arguments.
  """
  from jaxsweep import space  # pylint: disable=g-import-not-at-top
  if not points:
    raise errors.ConfigError("the sweep expands to zero variants.", key="sweep",
                             fix="give at least one value per swept key")
  variants = [{**base, **p} for p in points]
  swept: list[str] = []
  for p in points:
    for k in p:
      if k not in swept:
        swept.append(k)
  display = dict(display or {})
  for k in swept:
    display.setdefault(k, k)

  groups: "OrderedDict[tuple, Group]" = OrderedDict()
  call_args_cache: dict[tuple, tuple[str, ...]] = {}
  for i, settings in enumerate(variants):
    per = _split_slot(settings)
    fargs = {s: slot_args(spec, s, per[s].get("name")) for s in SLOTS}
    for s in SLOTS:
      _check_known(spec, s, per[s], fargs[s])
    model_static = {k: v for k, v in per["model"].items()
                    if k in fargs["model"] and k != "init_scale"}
    ck = tuple(sorted((k, _freeze(v)) for k, v in model_static.items()))
    if ck not in call_args_cache:
      call_args_cache[ck] = _build_model(spec, dict(model_static)).call_args
    call_args = call_args_cache[ck]
    for k in per["model"]:
      if k not in fargs["model"] and k not in call_args and k != "init_scale":
        if not models_lib.is_factory(slot_factory(spec, "model", per["model"].get("name"))):
          raise errors.ConfigError(
              f"the model is not a factory, so it cannot take '{k}'.", key=f"model.{k}",
              fix="pass a model factory (e.g. lambda width: MyModel(width)) to sweep "
                  "structural arguments; traced ones must be keyword arguments of "
                  f"__call__ (it accepts: {', '.join(call_args) or 'none'})")
        raise errors.unknown_key(
            f"model.{k}", [f"model.{a}" for a in (*fargs["model"], *call_args, "init_scale")],
            what="model argument")
    static, dynamic, chosen = {}, {}, {}
    for k, v in settings.items():
      if k in spec.vectorize and isinstance(v, str):
        chosen[k] = v
      elif _is_dynamic(spec, k, v, fargs, call_args):
        dynamic[k] = v
      else:
        static[k] = v
    gkey = (tuple(sorted((k, _freeze(v)) for k, v in static.items())), tuple(sorted(chosen)))
    if gkey not in groups:
      groups[gkey] = Group(index=len(groups), static=static, dynamic=(),
                           members=[], defaults={})
    g = groups[gkey]
    g.members.append(i)
    for k, v in chosen.items():
      if v not in g.choices.setdefault(k, ()):
        g.choices[k] += (v,)
      if index_name(k) not in dynamic:
        dynamic[index_name(k)] = 0
    for k in dynamic:
      if k not in g.dynamic:
        g.dynamic += (k,)
  for g in groups.values():
    g.static.update(g.choices)  # The factories receive the tuple of options.
    _add_numeric_defaults(spec, g)
    g.defaults = _dynamic_defaults(spec, g)
  ids = [space.variant_id({display.get(k, k): v[k] for k in swept if k in v})
         for v in variants]
  return Plan(spec, variants, swept, display, list(groups.values()), ids)


def _add_numeric_defaults(spec: Spec, group: Group) -> None:
  """Makes every numeric optimizer argument dynamic, swept or not.

  inject_hyperparams keeps them all in ``opt_state.hyperparams`` anyway; with
  all of them in the hparams pytree, sweeping one more of them later (say
  ``b1``) is a new value, not a new program. (Loss arguments stay static
  unless swept: a user's loss may branch on them in Python.)
  """
  per = _split_slot(group.static)
  for slot in ("optimizer",):
    for arg, default in slot_args(spec, slot, per[slot].get("name")).items():
      key = f"{slot}.{arg}"
      if (optim.is_numeric(default) and key not in spec.static
          and key not in group.static and key not in group.dynamic):
        group.dynamic += (key,)


def _check_known(spec: Spec, slot: str, args: Mapping[str, Any],
                 accepted: Mapping[str, Any]):
  if slot == "model":
    return  # Model call arguments are checked once the module is built.
  if slot != "train" and _takes_var_kwargs(slot_factory(spec, slot, args.get("name"))):
    return
  for k in args:
    if k not in accepted:
      what = f"{slot} argument" + (f" of '{args['name']}'" if "name" in args else "")
      raise errors.unknown_key(f"{slot}.{k}", [f"{slot}.{a}" for a in accepted],
                               what=what)


def _dynamic_defaults(spec: Spec, group: Group) -> dict[str, Any]:
  """Default value of each dynamic name, for members that do not set it."""
  per = _split_slot(group.static)
  out = {}
  model_fns = None
  index_keys = {index_name(c) for c in group.choices}
  for k in group.dynamic:
    head, _, tail = k.partition(".")
    default = inspect.Parameter.empty
    if k in index_keys:
      default = 0
    elif k == "seed":
      default = 0
    elif tail == "init_scale" and head == "model":
      default = 1.0
    elif k == "optimizer.total_steps":  # Schedules span the whole run.
      default = group.static.get("train.steps", default)
    elif head in ("optimizer", "loss"):
      default = slot_args(spec, head, per[head].get("name")).get(tail, default)
    elif head == "model":
      if model_fns is None:
        model_fns = _model_defaults(spec, per["model"])
      default = model_fns.get(tail, default)
    if default is inspect.Parameter.empty or not optim.is_numeric(default):
      default = None
    out[k] = default
  return out


def _model_defaults(spec, static_model) -> dict[str, Any]:
  name = static_model.get("name")
  fn = slot_factory(spec, "model", name)
  kwargs = {k: v for k, v in static_model.items() if k != "name"}
  module = fn(**kwargs) if models_lib.is_factory(fn) else fn
  if isinstance(module, models_lib.nn.Module):
    return {n: p.default for n, p in _params(type(module).__call__).items()}
  return {}


def stack_hparams(plan: Plan, group: Group,
                  members: Sequence[int] | None = None) -> dict[str, Any]:
  """Stacks a group's dynamic values into the per-variant hparams pytree.

  Returns:
    ``{"seed": int32[V], "init_scale": f32[V]?, "optimizer": {arg: f32[V]},
    "loss": {...}, "model": {...}}`` as numpy arrays.
  """
  members = group.members if members is None else members
  hp: dict[str, Any] = {"seed": None, "optimizer": {}, "loss": {}, "model": {}}
  chooser = {index_name(c): c for c in group.choices}
  for k in ("seed",) + tuple(d for d in group.dynamic if d != "seed"):
    vals = []
    for i in members:
      if k in chooser:
        c = chooser[k]
        vals.append(group.choices[c].index(plan.variants[i][c]))
        continue
      v = plan.variants[i].get(k, group.defaults.get(k))
      if v is None:
        raise errors.ConfigError(
            f"'{k}' has no value for variant {i} and no default.", key=k,
            fix=f"give {k} a value in the base config or the sweep")
      vals.append(v)
    if k == "seed":
      arr = np.asarray(vals, dtype=np.int64)
      if (arr < 0).any() or (arr >= 2**32).any():
        raise errors.ConfigError(f"seeds must be in [0, 2**32), got {vals}.",
                                 key="seed")
      hp["seed"] = arr.astype(np.uint32)
      continue
    arr = np.asarray(vals, dtype=np.int32 if k in chooser else np.float32)
    head, _, tail = k.partition(".")
    if k == "model.init_scale":
      hp["init_scale"] = arr
    else:
      hp[head][tail] = arr
  return hp


# --------------------------------------------------------------------------
# Building a group's program (cached: same structure => same jitted program).

@dataclasses.dataclass
class Built:
  """A group's components and jitted population functions."""

  program: train_lib.Program
  dataset: data_lib.Dataset
  init: Callable          # vmap(init), jitted per mesh by compile_group
  chunk: Callable         # vmap(chunk)
  model: models_lib.ModelFns
  metric_names: tuple[str, ...]
  derived: dict[str, Callable]
  compiled: dict = dataclasses.field(default_factory=dict)


_PROGRAM_CACHE: "OrderedDict[tuple, Built]" = OrderedDict()
_CACHE_SIZE = 64


def _ident(obj):
  try:
    hash(obj)
    return obj
  except TypeError:
    return ("id", id(obj))


def load_data(spec: Spec, static_data: Mapping[str, Any]) -> data_lib.Dataset:
  """The group's dataset (loaded once per distinct data settings)."""
  obj = spec.data
  if isinstance(obj, data_lib.Dataset):
    if static_data:
      raise errors.ConfigError(
          f"data is a fixed Dataset, so it cannot take {sorted(static_data)}.",
          key="data." + sorted(static_data)[0],
          fix="pass a data factory to sweep data settings")
    return obj
  kwargs = dict(static_data)
  if isinstance(obj, Mapping):  # {"x_train": ..., "y_train": ..., "x_test": ..., "y_test": ...}
    missing = [k for k in data_lib.NPZ_KEYS if k not in obj]
    if missing:
      raise errors.ConfigError(f"the data dict has no {', '.join(missing)}.", key="data",
                               fix=f"give all of {', '.join(data_lib.NPZ_KEYS)}")
    return data_lib.arrays(*(obj[k] for k in data_lib.NPZ_KEYS))
  if isinstance(obj, Dispatch):
    return data_lib.load_cached(kwargs.pop("name", obj.default), **kwargs)
  if callable(obj):
    return obj(**kwargs)
  raise errors.ConfigError(f"cannot use {type(obj).__name__} as data.", key="data",
                           fix="pass js.data.arrays(...), a Dataset, or a factory")


def _output_size(ds: data_lib.Dataset) -> int:
  if ds.task in ("classification", "language_model"):
    return int(ds.num_classes)
  y = ds.train["y"]
  return int(np.prod(y.shape[1:])) if y.ndim > 1 else 1


def train_settings(static: Mapping[str, Any]) -> train_lib.TrainSettings:
  vals = {k: static.get(f"train.{k}", d) for k, d in TRAIN_ARGS.items()}
  for k in ("steps", "batch_size"):
    v = vals[k]
    if v is None:
      raise errors.ConfigError(f"train.{k} is not set.", key=f"train.{k}",
                               fix=f"give {k}=... (e.g. steps=300, batch_size=128)")
  for k, v in vals.items():
    if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)
                          or v < 1):
      raise errors.ConfigError(f"train.{k} must be a positive integer, got {v!r}.",
                               key=f"train.{k}")
  steps = int(vals["steps"])
  eval_every = min(int(vals["eval_every"] or steps), steps)
  return train_lib.TrainSettings(steps, int(vals["batch_size"]), eval_every,
                                 int(vals["eval_batch_size"]))


def build_group(plan: Plan, group: Group) -> Built:
  """Builds (or fetches from the cache) the jitted program of a group."""
  spec = plan.spec
  per = _split_slot(group.static)
  dataset = load_data(spec, per["data"])
  settings = train_settings(group.static)
  dyn_names = {s: tuple(sorted(k.partition(".")[2] for k in group.dynamic
                               if k.startswith(s + "."))) for s in ("optimizer", "loss", "model")}

  # Model.
  model_static = dict(per["model"])
  fn = slot_factory(spec, "model", model_static.get("name"))
  margs = _factory_args(fn) if models_lib.is_factory(fn) else {}
  for a in OUTPUT_ARGS:
    if a in margs and a not in model_static:
      model_static[a] = _output_size(dataset)
  # Optimizer: every numeric argument is dynamic; only strings/bools static.
  opt_static = {k: v for k, v in per["optimizer"].items() if k not in dyn_names["optimizer"]}
  opt_fn = slot_factory(spec, "optimizer", opt_static.pop("name", None))
  loss_static = {k: v for k, v in per["loss"].items() if k not in dyn_names["loss"]}
  loss_name = loss_static.pop("name", None)
  if isinstance(loss_name, tuple):  # A vectorized choice of named losses.
    loss_fn = losses_lib.choice(loss_name)
  else:
    loss_fn = slot_factory(spec, "loss", loss_name)
  metrics = dict(spec.metrics) if spec.metrics is not None else losses_lib.default_metrics(dataset.task)
  derived = {} if spec.metrics is not None else losses_lib.derived_metrics(dataset.task)

  key = (_ident(spec.model), _freeze(model_static), _ident(opt_fn), _freeze(opt_static),
         dyn_names["optimizer"],
         ("choice", loss_name) if isinstance(loss_name, tuple) else _ident(loss_fn),
         _freeze(loss_static), dyn_names["loss"],
         dyn_names["model"], "model.init_scale" in group.dynamic,
         tuple((k, _ident(v)) for k, v in metrics.items()), settings)
  if key in _PROGRAM_CACHE:
    _PROGRAM_CACHE.move_to_end(key)
    built = _PROGRAM_CACHE[key]
    return dataclasses.replace(built, dataset=dataset, derived=derived)

  model_fns = _build_model(spec, model_static)
  first = plan.variants[group.members[0]]
  placeholders = {a: first.get(f"optimizer.{a}", group.defaults.get(f"optimizer.{a}"))
                  for a in dyn_names["optimizer"]}
  try:
    tx = optim.wrap(opt_fn, opt_static, placeholders)
  except TypeError as e:
    raise errors.ConfigError(f"the optimizer rejected its arguments: {e}", key="optimizer",
                             fix=f"it accepts: {', '.join(_factory_args(opt_fn))}") from e
  loss_bound = functools.partial(loss_fn, **loss_static) if loss_static else loss_fn
  program = train_lib.make_train(model_fns, tx, loss_bound, metrics, settings)
  built = Built(
      program=program, dataset=dataset,
      init=jax.vmap(program.init, in_axes=(0, None)),
      chunk=jax.vmap(program.chunk, in_axes=(0, 0, None)),
      model=model_fns, metric_names=tuple(metrics), derived=derived)
  _PROGRAM_CACHE[key] = built
  while len(_PROGRAM_CACHE) > _CACHE_SIZE:
    _PROGRAM_CACHE.popitem(last=False)
  return built


def device_data(dataset: data_lib.Dataset, mesh=None) -> dict:
  """The dataset as device arrays ``{"train": {...}, "test": {...}}``."""
  tree = {"train": dict(dataset.train), "test": dict(dataset.test)}
  if mesh is None:
    return jax.tree.map(jnp.asarray, tree)
  return sharding.put_replicated(tree, mesh)


def check_group(plan: Plan, group: Group, built: Built):
  """Traces one variant abstractly so shape and purity errors come first."""
  hp = jax.tree.map(lambda a: a[0], stack_hparams(plan, group, group.members[:1]))
  data = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                      {"train": dict(built.dataset.train), "test": dict(built.dataset.test)})
  settings = built.program.settings
  try:
    state = jax.eval_shape(built.program.init, hp, data)
  except errors.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ModelError(
        f"the model failed to initialise on inputs of shape "
        f"{tuple(built.dataset.train['x'].shape[1:])} per example: "
        f"{type(e).__name__}: {_first_line(e)}", key="model") from e
  x = jax.ShapeDtypeStruct((settings.batch_size,) + built.dataset.train["x"].shape[1:],
                           built.dataset.train["x"].dtype)
  y = built.dataset.train["y"]
  batch = {"x": x, "y": jax.ShapeDtypeStruct((settings.batch_size,) + y.shape[1:], y.dtype)}
  try:
    out = jax.eval_shape(
        lambda s, b: built.model.apply({"params": s.params, **s.model_state}, b["x"],
                                       train=False, rng=None, **hp["model"])[0], state, batch)
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ModelError(f"the model's apply failed: {type(e).__name__}: {_first_line(e)}",
                            key="model") from e
  try:
    jax.eval_shape(built.program.chunk, state, hp, data)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
          jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError) as e:
    raise errors.ModelError(
        "the loss, metrics or model is not traceable by jax.jit: it uses a traced "
        f"value in Python control flow or converts it to a Python/numpy value, "
        f"{_user_frame(e)}({type(e).__name__}: {_first_line(e)})", key="loss",
        fix="use jnp.where / lax.cond instead of if/else on array values, and no "
            "float()/.item()/print of arrays inside the loss") from e
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ModelError(
        f"the model's outputs {_shape_str(out)} do not fit the loss/metrics with targets "
        f"{_shape_str(batch['y'])}: {type(e).__name__}: {_first_line(e)}", key="loss",
        fix="make the model's output size match the targets (e.g. num_outputs = number "
            "of classes) or use a loss for these targets") from e


def _user_frame(e: BaseException) -> str:
  """'in fn (file:line) ' for the innermost traceback frame of user code."""
  import os  # pylint: disable=g-import-not-at-top
  import traceback  # pylint: disable=g-import-not-at-top
  skip = (os.sep + "jax" + os.sep, os.sep + "jaxlib" + os.sep, os.sep + "flax" + os.sep,
          os.sep + "optax" + os.sep, os.path.dirname(os.path.abspath(__file__)) + os.sep,
          "contextlib.py", "functools.py")
  frames = [f for f in traceback.extract_tb(e.__traceback__)
            if not any(p in f.filename for p in skip)]
  if not frames:
    return ""
  f = frames[-1]
  return f"in {f.name} ({f.filename}:{f.lineno}: {(f.line or '').strip()}) "


def _shape_str(x) -> str:
  leaves = jax.tree.leaves(x)
  if len(leaves) == 1:
    return f"of shape {tuple(leaves[0].shape)} {leaves[0].dtype}"
  return str(jax.tree.map(lambda a: tuple(a.shape), x))


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return text[0] if text else type(e).__name__



# --------------------------------------------------------------------------
# Execution.

@dataclasses.dataclass
class Compiled:
  """AOT-compiled population functions for one chunk shape.

  Attributes:
    init: compiled ``vmap(init)``, or ``None`` until a run needs it (memory
      planning compiles the chunk step alone).
    chunk: compiled ``vmap(chunk)``; its state argument is donated.
    seconds: compile time spent on this entry so far.
    memory_bytes: the chunk step's arguments + outputs + temporaries per
      device (:func:`jaxsweep.memory.measure`), ``None`` if unknown.
  """

  init: Callable | None
  chunk: Callable
  seconds: float
  memory_bytes: int | None = None


# Init runs once per chunk, so its speed does not matter, but XLA's backend
# optimisations of the many unrolled threefry rounds in a model's init took
# 4-15 s to compile on a 2-core CPU against ~1 s at level 0 (measured here).
_COLD_OPTIONS = {"xla_backend_optimization_level": 0}


def _compile_cold(lowered):
  try:
    return lowered.compile(compiler_options=_COLD_OPTIONS)
  except Exception:  # pylint: disable=broad-except  # Backend without the option.
    return lowered.compile()


def compile_group(built: Built, mesh, hp_dev, data, *, init: bool = True,
                  timings: list[float] | None = None) -> Compiled:
  """Compiles (once per chunk shape and mesh) the group's init and chunk.

  Population arrays are sharded on the mesh's ``"sweep"`` axis and the data
  replicated, for inputs and outputs alike, so every chunk call sees the
  shardings it was compiled for; the run state is donated.

  Args:
    built: the group's program (:func:`build_group`); compiled programs are
      cached on it.
    mesh: the device mesh.
    hp_dev: stacked hyperparameters: arrays or ``jax.ShapeDtypeStruct``s
      (only shapes and dtypes matter).
    data: the data, as arrays or shape structs.
    init: also compile ``init`` (memory planning needs only the chunk).
    timings: compile seconds are appended here whenever this compiles.

  Returns:
    The cached :class:`Compiled` for this chunk shape.
  """
  key = str((jax.tree.map(lambda a: (a.shape, a.dtype), hp_dev),
             jax.tree.map(lambda a: (a.shape, a.dtype), data),
             tuple(d.id for d in mesh.devices.flat)))
  from jaxsweep import memory as memory_lib  # pylint: disable=g-import-not-at-top
  pop, rep = sharding.population(mesh), sharding.replicated(mesh)
  entry = built.compiled.get(key)
  if entry is not None and (entry.init is not None or not init):
    return entry
  t0 = time.perf_counter()
  if entry is None:
    chunk = jax.jit(built.chunk, in_shardings=(pop, pop, rep), out_shardings=(pop, pop),
                    donate_argnums=(0,))
    state = jax.eval_shape(built.init, hp_dev, data)
    compiled_chunk = chunk.lower(state, hp_dev, data).compile()
    entry = built.compiled[key] = Compiled(None, compiled_chunk, 0.0,
                                           memory_lib.measure(compiled_chunk))
  if init:
    entry.init = _compile_cold(jax.jit(built.init, in_shardings=(pop, rep),
                                       out_shardings=pop).lower(hp_dev, data))
  seconds = time.perf_counter() - t0
  entry.seconds += seconds
  if timings is not None:
    timings.append(seconds)
  return entry


def abstract_population(plan: Plan, group: Group, size: int, mesh):
  """Shape structs of a group's stacked hyperparameters at ``size`` variants."""
  hp = stack_hparams(plan, group, group.members[:1])
  pop = sharding.population(mesh)
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct((size,) + np.shape(a)[1:], np.asarray(a).dtype,
                                     sharding=pop), hp)


def abstract_data(dataset: data_lib.Dataset, mesh):
  """Shape structs of the data as :func:`device_data` places it."""
  rep = sharding.replicated(mesh)
  tree = {"train": dict(dataset.train), "test": dict(dataset.test)}
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, sharding=rep), tree)


def _nbytes(tree) -> int:
  total = 0
  for x in jax.tree.leaves(tree):
    try:
      itemsize = np.dtype(x.dtype).itemsize
    except TypeError:
      itemsize = 8  # A typed PRNG key: two uint32 words.
    total += int(np.prod(x.shape)) * itemsize
  return total


def plan_memory(plan: Plan, group: Group, built: Built, mesh, data=None, *,
                chunk_size: int | None = None, limit=None, safety: float | None = None,
                fit: bool = False, timings: list[float] | None = None):
  """Picks a group's chunk size from the memory its compiled step needs.

  Compiles the chunk step at the requested chunk size (which the run needs
  anyway) and, only when that does not fit ``limit``, at one or two more
  sizes to fit ``bytes(v) = fixed + per_variant * v`` per device
  (:func:`jaxsweep.memory.plan_chunks`).

  Args:
    plan, group, built: the group and its program.
    mesh: the device mesh.
    data: the data as arrays or shape structs (default: shape structs).
    chunk_size: the requested chunk size (default: the whole group).
    limit: a :class:`jaxsweep.memory.Limit`, or ``None`` for no limit.
    safety: headroom factor (default :data:`jaxsweep.memory.SAFETY`).
    fit: always compile two sizes so the footprint is known (dry runs).
    timings: compile seconds are appended here.

  Returns:
    A :class:`jaxsweep.memory.GroupEstimate`.

  Raises:
    ConfigError: when not even one variant per device fits.
  """
  from jaxsweep import memory as memory_lib  # pylint: disable=g-import-not-at-top
  data = abstract_data(built.dataset, mesh) if data is None else data
  n, ndev = len(group.members), mesh.devices.size
  requested = sharding.population_size(min(chunk_size or n, n), ndev)
  hp1 = jax.tree.map(lambda a: a[0], stack_hparams(plan, group, group.members[:1]))
  plain = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), data)
  state_bytes = _nbytes(jax.eval_shape(built.program.init, hp1, plain))
  data_bytes = _nbytes(data)  # Replicated: all of it on every device.

  def lower_bound(local):
    return data_bytes + 2 * state_bytes * local  # The state comes in and goes out.

  def measure_at(local):
    hp = abstract_population(plan, group, local * ndev, mesh)
    return compile_group(built, mesh, hp, data, init=False, timings=timings).memory_bytes

  return memory_lib.plan_chunks(
      measure_at, group=group.index, variants=n, devices=ndev, requested=requested,
      limit=limit, safety=memory_lib.SAFETY if safety is None else safety,
      lower_bound=lower_bound, fit=fit, min_local=sharding.MIN_PER_DEVICE)


def estimate_memory(plan: Plan, *, mesh=None, memory_budget: int | str | None = None,
                    chunk_size: int | None = None) -> dict[int, Any]:
  """Dry run of :func:`execute`'s memory planning (``jaxsweep plan``).

  Compiles each group's step at two sizes (nothing is trained) and picks the
  chunk size :func:`execute` would pick with the same arguments.

  Returns:
    group index -> :class:`jaxsweep.memory.GroupEstimate` (``str()`` gives
    one line; ``.as_dict()`` the numbers).

  Raises:
    ConfigError: when a group cannot fit even one variant per device.
  """
  from jaxsweep import memory as memory_lib  # pylint: disable=g-import-not-at-top
  return {e.group: e for e in memory_lib.estimate(
      plan, mesh=mesh, memory_budget=memory_budget, chunk_size=chunk_size)}


def execute(plan: Plan, *, mesh=None, chunk_size: int | None = None,
            memory_budget: int | str | None = None,
            callback: Callable[[dict], None] | None = None):
  """Trains every variant of a plan and returns its :class:`Results`.

  Every group is built, checked and fitted into memory before any trains, so
  a sweep that cannot fit fails first. In a multi-process run
  (:mod:`jaxsweep.distributed`) every process calls this with the same plan
  and gets the whole results; only process 0 receives progress events.

  Args:
    plan: from :func:`make_plan`.
    mesh: the device mesh (default: all devices, axis ``"sweep"``).
    chunk_size: at most this many variants per compiled call (default: the
      whole group); padded up to a multiple of the device count, and to at
      least two variants per device (:func:`jaxsweep.sharding.population_size`).
    memory_budget: memory the run may use (``"2GiB"``; see
      :func:`jaxsweep.memory.available`): groups that would not fit are
      trained in chunks that do. Default: each accelerator's memory, or 75 %
      of the available host RAM on CPU.
    callback: receives progress events (dicts with an ``"event"`` key).

  Raises:
    ConfigError: for a group that does not fit even one variant per device.
  """
  from jaxsweep import memory as memory_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep import results as results_lib  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh() if mesh is None else mesh
  num_devices = mesh.devices.size
  # One table, printed once: the other processes stay silent (issue 7).
  emit = (callback if callback is not None and jax.process_index() == 0
          else (lambda event: None))
  t_start = time.perf_counter()
  limit = memory_lib.available(mesh, memory_budget)
  emit({"event": "start", "variants": plan.num_variants, "groups": len(plan.groups),
        "devices": num_devices, "processes": jax.process_count(),
        "memory_limit_per_device": limit and limit.per_device,
        "memory_source": limit and limit.source})
  # Build, check and size every group first: errors come before any training.
  built_of, estimate_of, timings_of = {}, {}, {}
  for group in plan.groups:
    built = built_of[group.index] = build_group(plan, group)
    check_group(plan, group, built)
    timings_of[group.index] = []
    estimate_of[group.index] = plan_memory(
        plan, group, built, mesh, chunk_size=chunk_size, limit=limit,
        timings=timings_of[group.index])
  data_of: dict[int, Any] = {}
  history: dict[int, list[dict]] = {i: [] for i in range(plan.num_variants)}
  final: dict[int, dict] = {}
  states: dict[int, tuple[Any, int]] = {}
  group_info = []
  for group in plan.groups:
    built = built_of[group.index]
    estimate = estimate_of[group.index]
    settings = built.program.settings
    # Placed once per dataset, shared by every group that trains on it.
    if id(built.dataset) not in data_of:
      data_of.clear()  # Free the previous dataset's device copies first.
      data_of[id(built.dataset)] = device_data(built.dataset, mesh)
    data = data_of[id(built.dataset)]
    n = len(group.members)
    size = estimate.chunk_size
    info = {"group": group.index, "variants": n, "chunk_size": size,
            "padding": estimate.padding, "static": group.describe(),
            "dynamic": [plan.display.get(k, k) for k in group.dynamic
                        if k in plan.swept or k in group.choices],
            "compile_seconds": 0.0, "train_seconds": 0.0, **estimate.as_dict()}
    emit({"event": "group", **info, "steps": settings.steps,
          "num_groups": len(plan.groups), "dataset": built.dataset.describe()})
    # Every chunk has the same shape (the last one padded): one program.
    compiled = compile_group(built, mesh, abstract_population(plan, group, size, mesh),
                             data, timings=timings_of[group.index])
    info["compile_seconds"] = sum(timings_of[group.index])
    if info["compile_seconds"]:
      emit({"event": "compiled", "group": group.index, "seconds": info["compile_seconds"]})
    for c0 in range(0, n, size):
      members = group.members[c0:c0 + size]
      hp = sharding.pad(stack_hparams(plan, group, members), size)
      hp_dev = sharding.put_population(hp, mesh)
      t0 = time.perf_counter()
      state = compiled.init(hp_dev, data)
      for period in range(settings.num_chunks):
        state, stats = compiled.chunk(state, hp_dev, data)
        host = sharding.to_host({"stats": stats, "diverged": state.diverged,
                                 "diverged_step": state.diverged_step})
        step = min((period + 1) * settings.eval_every, settings.steps)
        for j, i in enumerate(members):
          entry = {"step": step, **{k: float(v[j]) for k, v in host["stats"].items()}}
          history[i].append(entry)
          final[i] = {"diverged": bool(host["diverged"][j]),
                      "diverged_step": int(host["diverged_step"][j]), **entry}
        elapsed = time.perf_counter() - t0
        emit({"event": "period", "group": group.index, "chunk_start": c0,
              "chunk_variants": len(members), "group_variants": n, "step": step,
              "steps": settings.steps, "diverged": int(host["diverged"][:len(members)].sum()),
              "variant_steps_per_s": len(members) * step / max(elapsed, 1e-9),
              "elapsed": elapsed})
      info["train_seconds"] += time.perf_counter() - t0
      host_state = sharding.to_host({"params": state.params, "model_state": state.model_state})
      for j, i in enumerate(members):
        states[i] = (host_state, j)
    group_info.append(info)
  seconds = time.perf_counter() - t_start
  emit({"event": "done", "seconds": seconds})
  derived = {}
  for built in built_of.values():
    derived.update(built.derived)
  return results_lib.Results.from_run(plan, history, final, states, group_info,
                                      seconds=seconds, derived=derived)
