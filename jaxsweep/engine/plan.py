"""Planning: variants -> compile groups, with static vs traced decided once.

The first stage of the engine, pure Python (no JAX computation)::

  qualified settings per variant   {Key("optimizer", "learning_rate"): 3e-3, ...}
    -> the components each variant picks (by ``name`` for config files)
    -> each setting classified once: STATIC (compile-time: a group of its
       own per distinct value), TRACED (a [V] array in the hparams pytree)
       or CHOICE (a string picked per variant by a traced index)
    -> groups: variants with equal static settings share one program.

What is traced: ``seed``; float optimizer arguments and any swept numeric
one; numeric loss arguments; numeric keyword arguments of the model's
``__call__`` (``dropout_rate``) and ``model.init_scale``. What is static:
model-factory arguments, strings, bools, integer optimizer arguments that
are not swept (``decay_steps=200``: Optax branches on step counts in
Python), data and train settings, and any name the user marks static.
Every float argument of a group's optimizer is traced even when not set
(``optax.inject_hyperparams`` keeps them in ``opt_state.hyperparams``), so
sweeping one more of them later is a new value, not a new program; one
marked static keeps its default as a Python value.

The next stage, :mod:`jaxsweep.engine.program`, builds each group's program
from the group's classification; nothing downstream re-derives it.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import space
from jaxsweep.components import data as data_lib
from jaxsweep.components import losses as losses_lib
from jaxsweep.components import models as models_lib
from jaxsweep.components import optim
from jaxsweep.components import registry
from jaxsweep.engine import validate
from jaxsweep.keys import Key

TRAIN_ARGS = {"steps": None, "batch_size": None, "eval_every": None,
              "eval_batch_size": 1024, "first_eval": None}
# Model-factory arguments filled from the data when the sweep does not set them.
OUTPUT_ARGS = ("num_outputs",)
SEED = Key(keys.SEED, "")
INIT_SCALE = Key("model", "init_scale")

# Roles of a setting in a group.
STATIC, TRACED, CHOICE = "static", "traced", "choice"
# Components that pick one of several named ones per variant (traced index).
CHOOSERS = {"loss": losses_lib.choice, "optimizer": optim.choice}


@dataclasses.dataclass(frozen=True, eq=False)
class Components:
  """What a sweep trains, before any variant is chosen.

  Each slot holds the user's object or a
  :class:`~jaxsweep.components.registry.Registry` (config files: the
  concrete factory is picked by the variant's ``slot.name`` setting).

  Attributes:
    model: a Linen module, model factory, ``(init, apply)`` pair, ModelFns or
      Registry.
    optimizer: an optax factory or Registry.
    loss: ``loss(outputs, batch, **hparams)`` or Registry.
    data: a :class:`~jaxsweep.components.data.Dataset`, a factory of one, or
      Registry.
    metrics: name -> metric function; ``None`` picks the task's defaults.
    static: keys forced static even when numeric.
    vectorize: keys of string choices (``model.activation``, ``loss.name``)
      selected per variant inside one program (an int index and
      ``lax.switch``, or masks) instead of splitting compile groups.
    group: keys forced to split compile groups.
    auto: whether :func:`jaxsweep.engine.structure.make_plan` decides the
      other vectorizable keys from its cost estimates.
  """

  model: Any
  optimizer: Any
  loss: Any
  data: Any
  metrics: Mapping[str, Callable] | None = None
  static: frozenset[Key] = frozenset()
  vectorize: frozenset[Key] = frozenset()
  group: frozenset[Key] = frozenset()
  auto: bool = True

  def named(self, slot: str) -> bool:
    """Whether the slot's component is chosen by name from a registry."""
    return isinstance(getattr(self, slot), registry.Registry)

  def factory(self, slot: str, name: str | tuple[str, ...] | None = None) -> Any:
    """The slot's concrete component for a variant whose ``slot.name`` is name.

    A tuple of names (a vectorized choice) gives a component picking one of
    them per variant by a traced index (losses and optimizers).
    """
    obj = getattr(self, slot)
    if isinstance(name, tuple) and slot in CHOOSERS:
      return CHOOSERS[slot](name)
    return obj.get(name) if isinstance(obj, registry.Registry) else obj

  def accepted(self, slot: str, name: str | None = None) -> dict[str, Any]:
    """Arguments a slot's component accepts, with their defaults (may be empty)."""
    if slot == "train":
      return dict(TRAIN_ARGS)
    fn = self.factory(slot, name)
    args: dict[str, Any] = {}
    if self.named(slot):
      args["name"] = getattr(self, slot).default
    if slot == "loss":
      args.update(loss_args(fn))
    elif slot == "data":
      if not isinstance(fn, data_lib.Dataset) and callable(fn):
        args.update(registry.signature_args(fn))
    elif slot == "model":
      if models_lib.is_factory(fn):
        args.update(registry.signature_args(fn))
    else:
      args.update(registry.signature_args(fn))
    return args


def loss_args(fn: Callable) -> dict[str, Any]:
  """A loss's hyperparameters: its named arguments after ``(outputs, batch)``."""
  return dict(list(registry.signature_args(fn).items())[2:])


def build_model(components: Components, static_model: Mapping[str, Any]
                ) -> models_lib.ModelFns:
  """The model of a group as pure functions, from its static model settings.

  Raises:
    ConfigError: when the factory rejects its arguments or a non-factory
      model is given structural arguments.
  """
  static_model = dict(static_model)
  fn = components.factory("model", static_model.pop("name", None))
  if models_lib.is_factory(fn):
    try:
      built = fn(**static_model)
    except errors.ConfigError:
      raise
    except TypeError as e:
      raise errors.ConfigError(
          f"the model factory rejected its arguments {static_model}: {e}", key="model",
          fix=f"it accepts: {', '.join(registry.signature_args(fn))}") from e
    return models_lib.to_model_fns(built)
  if static_model:
    raise errors.ConfigError(
        f"the model is not a factory, so it cannot take {sorted(static_model)}.",
        key="model." + sorted(static_model)[0],
        fix="pass a model factory (e.g. lambda features: MLP(features)) to sweep "
            "structural arguments")
  return models_lib.to_model_fns(fn)


@dataclasses.dataclass(frozen=True)
class Signature:
  """What the components a variant picked accept.

  Attributes:
    accepted: slot -> argument -> default.
    var_kwargs: slots whose factory takes ``**kwargs`` (anything goes).
    call_args: traced keyword arguments of the built model's ``__call__``,
      with their defaults.
  """

  accepted: Mapping[str, Mapping[str, Any]]
  var_kwargs: frozenset[str]
  call_args: Mapping[str, Any]

  def classify(self, key: Key, value: Any, components: Components,
               swept: Collection[Key] = ()) -> str:
    """The role of one setting: :data:`STATIC`, :data:`TRACED` or :data:`CHOICE`.

    Args:
      key: the setting.
      value: its value for one variant.
      components: what is trained (its ``static`` and ``vectorize`` keys).
      swept: the keys the sweep varies: an integer optimizer argument is
        traced only when swept.
    """
    if key.is_seed:
      return TRACED
    if key in components.vectorize and not key.is_seed and not optim.is_numeric(value):
      return CHOICE
    if key in components.static or not optim.is_numeric(value):
      return STATIC
    if key.slot == "optimizer":
      return TRACED if (optim.traced_by_default(value) or key in swept) else STATIC
    if key.slot == "loss":
      return TRACED
    if key.slot == "model" and key.arg not in self.accepted["model"]:
      return TRACED if (key.arg in self.call_args or key == INIT_SCALE) else STATIC
    return STATIC


def signature(components: Components, settings: Mapping[Key, Any],
              model_cache: dict | None = None) -> Signature:
  """The :class:`Signature` of the components a variant's settings pick."""
  names = {s: settings.get(Key(s, "name")) for s in keys.SLOTS}
  accepted = {s: components.accepted(s, names[s]) for s in keys.SLOTS}
  var_kwargs = frozenset(
      s for s in keys.SLOTS if s != "train"
      and registry.takes_var_kwargs(components.factory(s, names[s])))
  model_static = {k.arg: v for k, v in settings.items()
                  if k.slot == "model" and k.arg in accepted["model"] and k != INIT_SCALE}
  cache_key = keys.freeze(model_static)
  if model_cache is None or cache_key not in model_cache:
    fns = build_model(components, model_static)
    call = dict(zip(fns.call_args, [None] * len(fns.call_args)))
    call.update(fns.call_defaults)
    if model_cache is not None:
      model_cache[cache_key] = call
  else:
    call = model_cache[cache_key]
  return Signature(accepted, var_kwargs, call)


def _check_known(components: Components, sig: Signature, settings: Mapping[Key, Any]):
  for key in settings:
    if key.is_seed:
      continue
    accepted = sig.accepted[key.slot]
    if key.slot == "model":
      if key.arg in accepted or key.arg in sig.call_args or key == INIT_SCALE:
        continue
      if not models_lib.is_factory(components.factory("model", settings.get(Key("model", "name")))):
        raise errors.ConfigError(
            f"the model is not a factory, so it cannot take '{key.arg}'.", key=str(key),
            fix="pass a model factory (e.g. lambda width: MyModel(width)) to sweep "
                "structural arguments; traced ones must be keyword arguments of "
                f"__call__ (it accepts: {', '.join(sig.call_args) or 'none'})")
      raise errors.unknown_key(
          str(key), [f"model.{a}" for a in (*accepted, *sig.call_args, "init_scale")],
          what="model argument")
    if key.arg not in accepted and key.slot not in sig.var_kwargs:
      name = settings.get(Key(key.slot, "name"))
      what = f"{key.slot} argument" + (f" of '{name}'" if name is not None else "")
      raise errors.unknown_key(str(key), [f"{key.slot}.{a}" for a in accepted], what=what)


def index_key(key: Key) -> Key:
  """The traced int that selects a vectorized choice: ``loss.name`` ->
  ``loss.loss_index``, ``model.activation`` -> ``model.activation_index``."""
  return Key(key.slot, f"{key.slot if key.arg == 'name' else key.arg}_index")


def hparam_path(key: Key) -> tuple[str, ...]:
  """Where a traced key lives in the hparams pytree."""
  if key.is_seed:
    return ("seed",)
  if key == INIT_SCALE:
    return ("init_scale",)
  return (key.slot, key.arg)


@dataclasses.dataclass
class Group:
  """Variants that share one compiled program.

  Attributes:
    index: position in the plan.
    static: static settings shared by all members (a vectorized choice key
      holds the tuple of its options: the factories receive it).
    traced: keys vectorized within the group, each a [V] array.
    choices: vectorized choice key -> its options; a member's option index
      is the traced value at ``index_key(key)``.
    members: indices of the member variants in the plan.
    defaults: values of traced keys for members that do not set them.
    signature: what the group's components accept.
    swept: the plan's swept keys (the ones :meth:`describe` names).
  """

  index: int
  static: dict[Key, Any]
  traced: tuple[Key, ...]
  choices: dict[Key, tuple]
  members: list[int]
  defaults: dict[Key, Any]
  signature: Signature
  swept: frozenset = frozenset()

  def static_args(self, slot: str) -> dict[str, Any]:
    """The static arguments of one slot (``name`` included)."""
    return {k.arg: v for k, v in self.static.items() if k.slot == slot}

  def traced_args(self, slot: str) -> tuple[str, ...]:
    """The traced arguments of one slot, sorted (``init_scale`` excluded)."""
    return tuple(sorted(k.arg for k in self.traced
                        if k.slot == slot and not k.is_seed and k != INIT_SCALE))

  def describe(self) -> str:
    """What sets this group apart: its swept static values (``model.depth=2``).

    The fixed settings every group shares are left out (issue #26: they made
    the progress line ~300 characters); without swept static values, all of
    its static settings but the data's.
    """
    own = [(k, v) for k, v in self.static.items()
           if k in self.swept and k not in self.choices]
    if not own and not self.swept:
      own = [(k, v) for k, v in self.static.items() if k.slot != "data"]
    return ", ".join(f"{k}={v}" for k, v in own) or "(single group)"


@dataclasses.dataclass
class Plan:
  """Variants and their compile groups, ready to build and run.

  Attributes:
    components: what is trained.
    variants: each variant's full settings (defaults included).
    swept: keys that vary or were swept, in order of appearance.
    display: key -> column name in tables (the user's name for it).
    groups: the compile groups.
    ids: each variant's stable id (from its swept values).
    structure: how each swept structural key is trained (vectorized or
      grouped, and why): :class:`jaxsweep.engine.structure.KeyPlacement`.
  """

  components: Components
  variants: list[dict[Key, Any]]
  swept: list[Key]
  display: dict[Key, str]
  groups: list[Group]
  ids: list[str]
  structure: tuple = ()

  @property
  def num_variants(self) -> int:
    return len(self.variants)

  def column(self, key: Key) -> str:
    return self.display.get(key, str(key))


def make_plan(components: Components, base: Mapping[str, Any],
              points: Sequence[Mapping[str, Any]], *,
              display: Mapping[str, str] | None = None) -> Plan:
  """Expands qualified settings into variants and groups them.

  Args:
    components: what is trained.
    base: qualified settings shared by all variants (defaults).
    points: one dict of qualified settings per variant (the sweep).
    display: column name per qualified name (defaults to the name).

  Raises:
    ConfigError: for unknown arguments, missing required values, or a model
      factory that rejects its arguments.
  """
  if not points:
    raise errors.ConfigError("the sweep expands to zero variants.", key="sweep",
                             fix="give at least one value per swept key")
  base_k = {keys.parse(k): v for k, v in base.items()}
  points_k = [{keys.parse(k): v for k, v in p.items()} for p in points]
  variants = [{**base_k, **p} for p in points_k]
  swept = list(dict.fromkeys(k for p in points_k for k in p))
  shown = {keys.parse(k): v for k, v in (display or {}).items()}
  shown = {k: shown.get(k, str(k)) for k in swept}

  swept_set = frozenset(swept)
  groups: dict[tuple, Group] = {}
  sig_cache: dict[tuple, Signature] = {}
  model_cache: dict = {}
  components = _static_where_untraceable(components, variants, swept_set, model_cache)
  for i, settings in enumerate(variants):
    names = tuple(keys.freeze(settings.get(Key(s, "name"))) for s in keys.SLOTS)
    model_static = tuple(sorted((k.arg, keys.freeze(v)) for k, v in settings.items()
                                if k.slot == "model"))
    sig_key = (names, model_static)
    if sig_key not in sig_cache:
      # Factory arguments first: the model is built to read its signature.
      validate.check_values(settings, {"model": components.accepted("model", names[0])}, {})
      sig_cache[sig_key] = signature(components, settings, model_cache)
    sig = sig_cache[sig_key]
    _check_known(components, sig, settings)
    validate.check_values(settings, sig.accepted, sig.call_args)
    static, traced, chosen = {}, [], {}
    for k, v in settings.items():
      role = sig.classify(k, v, components, swept_set)
      if role == CHOICE:
        chosen[k] = v
      elif role == TRACED:
        traced.append(k)
      else:
        static[k] = v
    gkey = (tuple(sorted((k, keys.freeze(v)) for k, v in static.items())), tuple(sorted(chosen)))
    if gkey not in groups:
      groups[gkey] = Group(index=len(groups), static=static, traced=(), choices={},
                           members=[], defaults={}, signature=sig, swept=swept_set)
    g = groups[gkey]
    g.members.append(i)
    for k, v in chosen.items():
      if v not in g.choices.setdefault(k, ()):
        g.choices[k] += (v,)
      traced.append(index_key(k))
    g.traced += tuple(k for k in traced if k not in g.traced)
  for g in groups.values():
    g.static.update(g.choices)  # The factories receive the tuple of options.
    for key, options in g.choices.items():
      if key.arg == "name" and key.slot in CHOOSERS:  # The union of the candidates' args.
        accepted = dict(g.signature.accepted)
        accepted[key.slot] = components.accepted(key.slot, options)
        g.signature = dataclasses.replace(g.signature, accepted=accepted)
    g.traced += _unswept_optimizer_args(components, g)
    g.static.update(_unswept_static_args(components, g))
    g.defaults = _traced_defaults(g)
  ids = [space.variant_id({str(k): v[k] for k in swept if k in v}) for v in variants]
  return Plan(components, variants, swept, shown, list(groups.values()), ids)


# Stand-in parameters for probing an optimizer factory: the tracer errors
# of interest come from the factory's Python control flow, not the shapes.
_PROBE_PARAMS = {"w": np.zeros((2,), np.float32)}


def _static_where_untraceable(components: Components, variants: Sequence[Mapping[Key, Any]],
                              swept: frozenset, model_cache: dict) -> Components:
  """The user's optimizer arguments that cannot be traced, made static.

  ``optax.adam(optax.warmup_cosine_decay_schedule(0.0, learning_rate, 20,
  200))`` tests ``peak_value == 0.0`` in Python, so a traced learning rate
  raises a tracer error. Do what the user meant (issue #26): each such
  argument becomes static for this factory (one compiled program per value),
  said in one warning line with the cheaper form as a hint. Each traced
  argument is traced alone through the factory and ``init``
  (:func:`jaxsweep.components.optim.untraceable`); factories named from the
  registry (configs) are jaxsweep's own and traceable.
  """
  if components.named("optimizer") or not callable(components.optimizer):
    return components
  factory = components.optimizer
  found: list[str] = []
  probed: set = set()
  sigs: dict[tuple, Signature] = {}
  for settings in variants:
    sig_key = (tuple(keys.freeze(settings.get(Key(s, "name"))) for s in keys.SLOTS),
               tuple(sorted((k.arg, keys.freeze(v)) for k, v in settings.items()
                            if k.slot == "model")))
    if sig_key not in sigs:
      sigs[sig_key] = signature(components, settings, model_cache)
    sig = sigs[sig_key]
    static, traced = {}, {}
    for k, v in settings.items():
      if k.slot != "optimizer" or k.arg not in sig.accepted["optimizer"]:
        continue
      role = sig.classify(k, v, components, swept)
      (traced if role == TRACED else static)[k.arg] = v
    for arg, default in sig.accepted["optimizer"].items():  # Unset: as the groups bind them.
      key = Key("optimizer", arg)
      if arg in static or arg in traced:
        continue
      if key in components.static and optim.is_numeric(default):
        static[arg] = default
      elif key not in components.static and optim.traced_by_default(default):
        traced[arg] = default
    probe = keys.freeze(static), tuple(sorted(traced))
    if not traced or probe in probed:
      continue
    probed.add(probe)
    try:
      opt = optim.wrap(factory, static, {k: float(v) for k, v in traced.items()})
      names = optim.untraceable(opt, _PROBE_PARAMS)
    except Exception:  # pylint: disable=broad-except  # Reported when it is built.
      continue
    found += [n for n in names if n not in found]
  if not found:
    return components
  name = getattr(factory, "__name__", "<lambda>")
  # An unswept argument bound as a Python value costs nothing: only swept
  # ones multiply the programs, and only they are worth a line.
  which = ", ".join(n for n in found if Key("optimizer", n) in swept)
  if which:
    warnings.warn(
        f"jaxsweep: the optimizer factory{'' if name == '<lambda>' else ' ' + name} uses "
        f"{which} in Python control flow (Optax schedules test their values), so {which} "
        "compiles one program per value; to train all values in one program, build the "
        "schedule from constants and scale it (lambda count: learning_rate * "
        "sched(count)), or use js.optim.schedule / optax.inject_hyperparams.",
        UserWarning, stacklevel=4)
  return dataclasses.replace(
      components, static=components.static | {Key("optimizer", n) for n in found})


def _unswept_optimizer_args(components: Components, group: Group) -> tuple[Key, ...]:
  """Every float optimizer default not set and not marked static becomes traced."""
  out = []
  for arg, default in group.signature.accepted["optimizer"].items():
    key = Key("optimizer", arg)
    if (optim.traced_by_default(default) and key not in components.static
        and key not in group.static and key not in group.traced):
      out.append(key)
  return tuple(out)


def _unswept_static_args(components: Components, group: Group) -> dict[Key, Any]:
  """Optimizer defaults the user marked static (``static=["decay_steps"]``)
  without setting them: the factory receives the default as a Python value."""
  out = {}
  for arg, default in group.signature.accepted["optimizer"].items():
    key = Key("optimizer", arg)
    if (key in components.static and optim.is_numeric(default)
        and key not in group.static and key not in group.traced):
      out[key] = default
  return out


def _traced_defaults(group: Group) -> dict[Key, Any]:
  """Default value of each traced key, for members that do not set it."""
  index_keys = {index_key(c) for c in group.choices}
  sig = group.signature
  out = {}
  for k in group.traced:
    if k in index_keys or k.is_seed:
      default = 0
    elif k == INIT_SCALE:
      default = 1.0
    elif k == Key("optimizer", "total_steps"):  # Schedules span the whole run.
      default = group.static.get(Key("train", "steps"))
    elif k.slot in ("optimizer", "loss"):
      default = sig.accepted[k.slot].get(k.arg)
    elif k.slot == "model":
      default = sig.call_args.get(k.arg)
    else:
      default = None
    out[k] = default if optim.is_numeric(default) else None
  return out


def stack_hparams(plan: Plan, group: Group,
                  members: Sequence[int] | None = None) -> dict[str, Any]:
  """Stacks a group's traced values into the per-variant hparams pytree.

  Returns:
    ``{"seed": uint32[V], "init_scale": f32[V]?, "optimizer": {arg: f32[V]},
    "loss": {...}, "model": {...}}`` as numpy arrays (choice indices int32).

  Raises:
    ConfigError: for a traced key with no value and no default, or a seed
      outside ``[0, 2**32)``.
  """
  members = group.members if members is None else members
  hp: dict[str, Any] = {"seed": None, "optimizer": {}, "loss": {}, "model": {}}
  chooser = {index_key(c): c for c in group.choices}
  for k in (SEED,) + tuple(t for t in group.traced if not t.is_seed):
    vals = []
    for i in members:
      settings = plan.variants[i]
      if k in chooser:
        vals.append(group.choices[chooser[k]].index(settings[chooser[k]]))
        continue
      v = settings.get(k, _default(plan, group, i, k))
      if v is None:
        raise errors.ConfigError(
            f"'{k}' has no value for variant {i} and no default.", key=str(k),
            fix=f"give {k} a value in the base config or the sweep")
      vals.append(v)
    path = hparam_path(k)
    if k.is_seed:
      arr = np.asarray(vals, dtype=np.int64)
      if (arr < 0).any() or (arr >= 2**32).any():
        raise errors.ConfigError(f"seeds must be in [0, 2**32), got {vals}.", key="seed")
      hp["seed"] = arr.astype(np.uint32)
    elif len(path) == 1:
      hp[path[0]] = np.asarray(vals, dtype=np.float32)
    else:
      hp[path[0]][path[1]] = np.asarray(vals, dtype=np.int32 if k in chooser else np.float32)
  return hp


def _default(plan: Plan, group: Group, variant: int, key: Key) -> Any:
  """A traced key's default for one variant: with a vectorized choice of
  named components, the default of the variant's own component."""
  name = Key(key.slot, "name")
  if name in group.choices and key != Key("optimizer", "total_steps"):
    own = plan.components.accepted(key.slot, plan.variants[variant][name]).get(key.arg)
    if optim.is_numeric(own):
      return own
  return group.defaults.get(key)


def qualify(names: Sequence[str], components: Components,
            model_kwargs: Mapping[str, Any] | None = None) -> dict[str, str]:
  """Maps the Python API's names to qualified ``slot.arg`` names.

  A bare name (``learning_rate``) is qualified by which component accepts it;
  a qualified one (``optimizer.learning_rate``) is kept.

  Raises:
    ConfigError: for a name no component accepts (listing what they accept)
      or one that several accept (asking for a qualified name).
  """
  accepted = {s: components.accepted(s) for s in keys.SLOTS}
  call_args: tuple[str, ...] | None = None
  out = {}
  for name in names:
    if keys.is_path(name):
      out[name] = name
      continue
    hits = [s for s in keys.SLOTS if name in accepted[s]]
    if not hits:
      if call_args is None:
        call_args = _model_call_args(components, model_kwargs or {})
      if name in call_args or name == INIT_SCALE.arg:
        hits = ["model"]
    if len(hits) > 1:
      raise errors.ConfigError(
          f"'{name}' is accepted by the {' and the '.join(hits)}.", key=name,
          fix=f"write it qualified: {' or '.join(h + '.' + name for h in hits)}")
    if not hits:
      listing = "; ".join(
          f"{s}: {', '.join(sorted(a)) or '-'}" for s, a in accepted.items()
          if s != "train") + f"; model call: {', '.join(call_args or ()) or '-'}"
      candidates = {keys.SEED, INIT_SCALE.arg, *(call_args or ())}
      for a in accepted.values():
        candidates |= set(a)
      raise errors.ConfigError(
          f"no component accepts '{name}'.{errors.did_you_mean(name, candidates)}",
          key=name,
          fix=f"sweep a name one of them accepts ({listing}; or seed, steps, "
              "batch_size, eval_every, init_scale)")
    out[name] = f"{hits[0]}.{name}"
  return out


def _model_call_args(components: Components, model_kwargs: Mapping[str, Any]
                     ) -> tuple[str, ...]:
  try:
    return build_model(components, model_kwargs).call_args
  except (errors.ConfigError, TypeError, ValueError):
    return ()  # The factory needs swept arguments to build: nothing to list.
