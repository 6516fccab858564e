"""One group's program: build it from the plan, check it, compile it on a mesh.

The second stage of the engine. It takes a :class:`~jaxsweep.engine.plan.Group`
(its static settings and traced keys, decided by the planner) and returns a
:class:`GroupProgram`: the per-variant functions of
:mod:`jaxsweep.engine.train`, vmapped over the population. Programs are cached
on their structure, so a second group (or a second sweep in the same process)
with the same structure reuses the jitted functions and their compilations.

State kept between sweeps, per process: the last :data:`CACHE_SIZE`
programs (least recently used dropped first; their compiled executables with
them, not their data: a build loads its dataset anew), emptied by
:func:`clear_cache`; and one background thread compiling inits
(:func:`prefetch_init`), started on first use and shut down at exit or by
:func:`shutdown`.

Before anything trains, :func:`check` traces one variant abstractly, so a
model whose outputs do not fit the loss, or a loss that branches on a traced
value, fails with the shapes or the offending line named.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep.components import data as data_lib
from jaxsweep.components import losses as losses_lib
from jaxsweep.components import models as models_lib
from jaxsweep.components import optim
from jaxsweep.components import registry
from jaxsweep.engine import diagnose
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import sharding
from jaxsweep.engine import train as train_lib
from jaxsweep.engine import xla_cache
from jaxsweep.engine import validate
from jaxsweep.keys import Key

# --------------------------------------------------------------------------
# Data and settings of a group.

def load_data(components: plan_lib.Components, static_data: Mapping[str, Any]
              ) -> data_lib.Dataset:
  """The group's dataset (registered datasets are loaded once per settings)."""
  obj = components.data
  static_data = dict(static_data)
  if isinstance(obj, data_lib.Dataset):
    if static_data:
      raise errors.ConfigError(
          f"data is a fixed Dataset, so it cannot take {sorted(static_data)}.",
          key="data." + sorted(static_data)[0],
          fix="pass a data factory to sweep data settings")
    return obj
  if isinstance(obj, registry.Registry):
    name = static_data.pop("name", obj.default)
    try:
      return data_lib.load_cached(name, **static_data)
    except (TypeError, ValueError) as e:
      if isinstance(e, errors.ConfigError):
        raise
      raise errors.ConfigError(
          f"the dataset '{name}' rejected its arguments {static_data}: "
          f"{type(e).__name__}: {errors.first_line(e)}", key="data",
          fix=f"it accepts: {', '.join(obj.accepted_args(name))}") from e
  if callable(obj):
    ds = obj(**static_data)
    if not isinstance(ds, data_lib.Dataset):
      raise errors.ConfigError(
          f"the data factory returned {type(ds).__name__}, not a Dataset.", key="data",
          fix="return js.data.arrays(x_train, y_train, x_test, y_test) from it")
    return ds
  raise errors.ConfigError(f"cannot use {type(obj).__name__} as data.", key="data",
                           fix="pass js.data.arrays(...), a Dataset, or a factory")


def output_size(ds: data_lib.Dataset) -> int:
  """The model output width the data needs (classes, vocabulary or targets)."""
  if ds.task in ("classification", "language_model"):
    return int(ds.num_classes)
  y = ds.train["y"]
  return int(np.prod(y.shape[1:])) if y.ndim > 1 else 1


def train_settings(static_train: Mapping[str, Any]) -> train_lib.TrainSettings:
  """The group's training settings, validated.

  Raises:
    ConfigError: for a missing or non-positive-integer setting.
  """
  vals = {k: static_train.get(k, d) for k, d in plan_lib.TRAIN_ARGS.items()}
  if vals["eval_batch_size"] is None:  # Like eval_every: None is the default.
    vals["eval_batch_size"] = plan_lib.TRAIN_ARGS["eval_batch_size"]
  for k in ("steps", "batch_size"):
    if vals[k] is None:
      raise errors.ConfigError(f"train.{k} is not set.", key=f"train.{k}",
                               fix=f"give {k}=... (e.g. steps=300, batch_size=128)")
  for k, v in vals.items():
    if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)
                          or v < 1):
      raise errors.ConfigError(f"train.{k} must be a positive integer, got {v!r}.",
                               key=f"train.{k}")
  steps = int(vals["steps"])
  eval_every = min(steps if vals["eval_every"] is None else int(vals["eval_every"]), steps)
  first = static_train.get("first_eval")
  if first is not None and (not isinstance(first, (int, np.integer)) or isinstance(first, bool)
                            or first < 0):
    raise errors.ConfigError(f"train.first_eval must be a number of steps, got {first!r}.",
                             key="train.first_eval", fix="e.g. first_eval=10 (0: none)")
  return train_lib.TrainSettings(steps, int(vals["batch_size"]), eval_every,
                                 int(vals["eval_batch_size"]),
                                 0 if first is None else int(first))


# The fixed subset of the training data evaluated (in eval mode) at every
# period boundary: at most this many examples, in a seeded order.
TRAIN_EVAL_SIZE = 2048


def data_tree(dataset: data_lib.Dataset) -> dict:
  """The arrays a group's program receives: ``train`` (sampled for training),
  ``train_eval`` (a fixed subset of it), ``val`` (if any) and ``test``."""
  train = dict(dataset.train)
  n = len(train["x"])
  idx = np.sort(np.random.default_rng(0).permutation(n)[:min(n, TRAIN_EVAL_SIZE)])
  tree = {"train": train, "train_eval": {k: v[idx] for k, v in train.items()},
          "test": dict(dataset.test)}
  if dataset.val is not None:
    tree["val"] = dict(dataset.val)
  return tree


def device_data(dataset: data_lib.Dataset, mesh=None) -> dict:
  """The dataset's arrays (:func:`data_tree`) on the devices.

  With a mesh, every device holds one copy, shared by all its variants.
  """
  tree = data_tree(dataset)
  if mesh is None:
    return jax.tree.map(jnp.asarray, tree)
  return sharding.put_replicated(tree, mesh)


def abstract_data(dataset: data_lib.Dataset, mesh=None):
  """Shape structs of the data as :func:`device_data` places it."""
  sharded = {} if mesh is None else {"sharding": sharding.replicated(mesh)}
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, **sharded),
      data_tree(dataset))


def chance_levels(dataset: data_lib.Dataset) -> dict[str, float]:
  """What the best constant prediction scores on the validation and test splits.

  Classification and language models: the majority class's share
  (``accuracy``) and the entropy of the labels (``nll``, natural log);
  regression: the variance of the targets (``mse``). A variant that ends
  no better is ``unstable``.
  """
  out = {}
  for prefix, split in (("val", dataset.val), ("test", dataset.test)):
    if split is None:
      continue
    y = np.asarray(split["y"])
    if dataset.task in ("classification", "language_model"):
      counts = np.bincount(y.ravel().astype(np.int64), minlength=dataset.num_classes or 0)
      p = counts[counts > 0] / counts.sum()
      out[f"{prefix}_accuracy"] = float(p.max())
      out[f"{prefix}_nll"] = float(-(p * np.log(p)).sum())
    else:
      y = y.reshape(len(y), -1).astype(np.float64)
      out[f"{prefix}_mse"] = float(y.var(axis=0).mean())
  return out


def num_params(plan: plan_lib.Plan, group: plan_lib.Group, built: GroupProgram
               ) -> int | dict[int, int]:
  """Trainable parameters of one variant of a group.

  Where a model factory argument is a vectorized choice (e.g. widths padded
  to one network), each variant counts the parameters of the model built
  with its own value alone: ``{variant: count}``.
  """
  def count(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))

  x = jax.ShapeDtypeStruct((1, *np.shape(built.dataset.train["x"])[1:]),
                           np.asarray(built.dataset.train["x"]).dtype)
  chosen = [k for k in group.choices
            if k.slot == "model" and k.arg in group.signature.accepted["model"]]
  if chosen:
    static = dict(built.model_args)
    out, cache = {}, {}
    for i in group.members:
      own = {k.arg: plan.variants[i][k] for k in chosen}
      ck = keys.freeze(own)
      if ck not in cache:
        fns = plan_lib.build_model(plan.components, {**static, **own})
        cache[ck] = count(jax.eval_shape(  # The key made in the trace: no compile.
            lambda x, fns=fns: fns.init(jax.random.key(0), x), x)["params"])
      out[i] = cache[ck]
    return out
  hp = jax.tree.map(lambda a: a[0], plan_lib.stack_hparams(plan, group, group.members[:1]))
  state = jax.eval_shape(built.program.init, hp, abstract_data(built.dataset))
  return count(state.params)


# A compiled period's ``train`` argument: an int32 scalar, the number of the
# period's steps to take (clipped to eval_every in the program).
ALL_STEPS = np.iinfo(np.int32).max


def train_flag(train: bool | int, mesh=None):
  """The ``train`` argument of a compiled period: ``True`` (the whole period),
  ``False`` (evaluate only: the step-0 evaluation) or a number of steps
  (a first period shorter than ``eval_every``:
  :meth:`~jaxsweep.engine.train.TrainSettings.boundaries`)."""
  n = (ALL_STEPS if train else 0) if isinstance(train, (bool, np.bool_)) else int(train)
  flag = np.asarray(n, np.int32)
  return jnp.asarray(flag) if mesh is None else sharding.put_replicated(flag, mesh)


# --------------------------------------------------------------------------
# Building (cached: same structure => same jitted program).

@dataclasses.dataclass
class GroupProgram:
  """A group's components and its vmapped population functions.

  Attributes:
    program: the per-variant functions (:func:`jaxsweep.engine.train.make_train`).
    dataset: the group's data.
    model: the model as pure functions.
    metric_names: metrics the evaluator reports (``<split>_<name>``).
    derived: metrics computed on the host from another: name -> (source, fn)
      (perplexity from nll, ...).
    init: ``vmap(program.init)``.
    period: ``vmap(program.period)``.
    compiled: compiled programs by shape and mesh (see :func:`compile`).
    pending_init: inits compiling in the background, by the same key
      (:func:`prefetch_init`).
    loss: the loss as the program calls it (static arguments bound).
    metrics: name -> metric function; ``None`` for the task's defaults.
    model_args: the factory arguments the model was built with.
    optimizer: the optimizer as the program calls it (:func:`jaxsweep.optim.wrap`).
  """

  program: train_lib.Program
  dataset: data_lib.Dataset
  model: models_lib.ModelFns
  metric_names: tuple[str, ...]
  derived: dict[str, tuple[str, Callable]]
  init: Callable
  period: Callable
  compiled: dict = dataclasses.field(default_factory=dict)
  pending_init: dict = dataclasses.field(default_factory=dict)
  loss: Callable | None = None
  metrics: Mapping[str, Callable] | None = None
  model_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  optimizer: Any = None


# Programs kept per process (least recently used dropped first). A sweep
# reuses a program for every group and chunk of one structure; past this many
# structures the oldest is rebuilt, and recompiled (from the persistent
# compilation cache when on), if it is needed again.
CACHE_SIZE = 64
_CACHE: collections.OrderedDict[tuple, GroupProgram] = collections.OrderedDict()


def clear_cache() -> None:
  """Drops every cached program (and its compiled executables) of this process."""
  _CACHE.clear()


def _ident(obj) -> Any:
  try:
    hash(obj)
    return obj
  except TypeError:
    return ("id", id(obj))


def build(plan: plan_lib.Plan, group: plan_lib.Group) -> GroupProgram:
  """Builds (or fetches from the cache) the program of a group.

  Raises:
    ConfigError: when a component rejects its static arguments.
  """
  comps = plan.components
  dataset = load_data(comps, group.static_args("data"))
  validate.check_data(dataset)  # Before output_size reads num_classes.
  settings = train_settings(group.static_args("train"))
  accepted = group.signature.accepted["model"]

  # Model: factory arguments build it; static call arguments are bound.
  model_static = group.static_args("model")
  factory_static = {k: v for k, v in model_static.items() if k in accepted or k == "name"}
  call_static = {k: v for k, v in model_static.items() if k not in factory_static}
  for a in plan_lib.OUTPUT_ARGS:
    if a in accepted and a not in factory_static:
      factory_static[a] = output_size(dataset)
  for a, v in dataset.info.get("model_args", {}).items():  # E.g. a vocabulary size.
    if a in accepted and a not in factory_static:
      factory_static[a] = v
  augment = data_lib.augment.options_of(dataset.info)  # Structural: part of the key.
  # Optimizer: traced arguments become opt_state.hyperparams entries.
  opt_static = group.static_args("optimizer")
  opt_fn = comps.factory("optimizer", opt_static.pop("name", None))
  opt_traced = group.traced_args("optimizer")
  # Loss: a tuple of names is a vectorized choice of named losses.
  loss_static = group.static_args("loss")
  loss_name = loss_static.pop("name", None)
  loss_fn = (losses_lib.choice(loss_name) if isinstance(loss_name, tuple)
             else comps.factory("loss", loss_name))
  if comps.metrics is not None:
    metrics, derived = dict(comps.metrics), {}
  else:
    metrics = losses_lib.default_metrics(dataset.task)
    derived = losses_lib.derived_metrics(dataset.task)

  # The program's identity in this process: the parts of
  # fingerprint.program_identity, resolved (output sizes filled in, static
  # arguments split between factory and call) and by object where a stable
  # name could be ambiguous (two instances of one class whose repr holds an
  # address). Data shapes are left out: jit specialises on them (compiled).
  cache_key = (
      _ident(comps.model), keys.freeze(factory_static), keys.freeze(call_static),
      _ident(opt_fn), keys.freeze(opt_static), opt_traced,
      ("choice", loss_name) if isinstance(loss_name, tuple) else _ident(loss_fn),
      keys.freeze(loss_static), group.traced_args("loss"), group.traced_args("model"),
      plan_lib.INIT_SCALE in group.traced,
      tuple((k, _ident(v)) for k, v in metrics.items()), settings, keys.freeze(augment))
  if cache_key in _CACHE:
    _CACHE.move_to_end(cache_key)
    return dataclasses.replace(_CACHE[cache_key], dataset=dataset, derived=derived)

  model_fns = plan_lib.build_model(comps, factory_static)
  if call_static:
    model_fns = model_fns._replace(apply=functools.partial(model_fns.apply, **call_static))
  first = plan.variants[group.members[0]]
  placeholders = {a: first.get(Key("optimizer", a), group.defaults.get(Key("optimizer", a)))
                  for a in opt_traced}
  try:
    opt = optim.wrap(opt_fn, opt_static, placeholders)
  except TypeError as e:
    raise errors.rejected_arguments(e, slot="optimizer",
                                    accepted=registry.signature_args(opt_fn)) from e
  loss_bound = functools.partial(loss_fn, **loss_static) if loss_static else loss_fn
  program = train_lib.make_train(model_fns, opt, loss_bound, metrics, settings,
                                 augment=augment)
  built = GroupProgram(
      program=program, dataset=dataset, model=model_fns, metric_names=tuple(metrics),
      derived=derived, init=jax.vmap(program.init, in_axes=(0, None)),
      period=jax.vmap(program.period, in_axes=(0, 0, None)), loss=loss_bound,
      metrics=metrics, model_args=factory_static, optimizer=opt)
  # The cache keeps the program, not the data (the compiled dict is shared).
  _CACHE[cache_key] = dataclasses.replace(built, dataset=None)
  while len(_CACHE) > CACHE_SIZE:
    _CACHE.popitem(last=False)
  return built


# --------------------------------------------------------------------------
# Checking: one variant traced abstractly, before anything trains.

def check(plan: plan_lib.Plan, group: plan_lib.Group, built: GroupProgram, *,
          period: bool = True) -> None:
  """Checks a group's data, then traces one variant abstractly, before anything
  compiles.

  Order: the data's arrays (:mod:`jaxsweep.engine.validate`); the model's
  init and apply; its output width against the number of classes; the loss
  and each metric on one batch of outputs; the whole training period.

  ``period=False`` leaves out the last (the slowest to trace): for a
  group about to compile, whose compile traces the period first thing and
  reports its errors the same way (:func:`compile`).

  Raises:
    ConfigError: for bad data (NaN, labels out of range, float labels).
    ModelError: for outputs whose shape does not fit the targets (naming
      both shapes), or any other exception in the user's model, loss or
      metric (shown as itself, with the user's file and line).
  """
  validate.check_data(built.dataset)
  validate.check_targets_fit_loss(built.dataset, built.loss)
  validate.check_batch_size(built.program.settings.batch_size, built.dataset)
  hp = jax.tree.map(lambda a: a[0], plan_lib.stack_hparams(plan, group, group.members[:1]))
  data = abstract_data(built.dataset)
  settings = built.program.settings
  try:
    state = jax.eval_shape(built.program.init, hp, data)
  except errors.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise diagnose.init_error(plan, built, hp, data, e) from None  # It names the user's line.
  batch = {k: jax.ShapeDtypeStruct((settings.batch_size,) + np.shape(a)[1:],
                                    np.asarray(a).dtype)
           for k, a in built.dataset.train.items()}
  try:
    out = jax.eval_shape(
        lambda s, b: built.model.apply({"params": s.params, **s.model_state}, b["x"],
                                       train=False, rng=None, **hp["model"])[0], state, batch)
  except errors.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ModelError(
        f"the model's apply failed, {errors.user_frame(e)}"
        f"({type(e).__name__}: {errors.first_line(e)})", key="model",
        fix="fix the model at the line named (it was traced once on one batch, before "
            "training)") from e
  validate.check_output_width(
      out, built.dataset, loss=built.loss, default_metrics=plan.components.metrics is None,
      num_outputs_given=Key("model", "num_outputs") in group.static)
  parts = [("loss", "loss", lambda o, b, h: built.loss(o, b, **h["loss"]))]
  parts += [(f"metric '{n}'", "metrics", lambda o, b, h, fn=fn: fn(o, b))
            for n, fn in (built.metrics or {}).items()]
  for what, key, fn in parts:
    try:
      result = jax.eval_shape(fn, out, batch, {"loss": hp.get("loss", {})})
    except errors.ConfigError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      if isinstance(e, (TypeError, ValueError)) and diagnose.shapes_differ(out, batch["y"]):
        raise errors.ModelError(
            f"the model's outputs {diagnose.shape_str(out)} do not fit the {what} with targets "
            f"{diagnose.shape_str(batch['y'])}: {type(e).__name__}: {errors.first_line(e)}",
            key=key, fix="make the model's output size match the targets (e.g. "
                         "num_outputs = number of classes) or use a loss for these "
                         "targets") from e
      raise diagnose.raised(e, what, key) from None  # It names the user's line.
    if what == "loss" and tuple(getattr(result, "shape", ())) != ():
      raise errors.ModelError(
          f"the loss returns an array {diagnose.shape_str(result)}, not a scalar (gradients "
          "need one number per batch).", key="loss",
          fix="return the mean over the batch, e.g. per_example.mean()")
  if period:
    with diagnose.training_step_errors():
      jax.eval_shape(built.program.period, state, hp, data)


# --------------------------------------------------------------------------
# Compiling on a mesh.

@dataclasses.dataclass
class Compiled:
  """AOT-compiled population functions for one population shape and mesh.

  Attributes:
    init: compiled ``vmap(init)``, or ``None`` until a run needs it (memory
      planning compiles the period step alone).
    period: compiled ``vmap(period)``; its state argument is donated.
    seconds: compile time spent on this entry so far.
    memory_bytes: the period step's arguments + outputs + temporaries per
      device (:func:`jaxsweep.engine.memory.measure`), ``None`` if unknown.
    state: shape structs of the population's run state.
    cache_hits: programs of this entry that came from the persistent
      compilation cache (:mod:`jaxsweep.engine.xla_cache`).
  """

  init: Callable | None
  period: Callable
  seconds: float
  memory_bytes: int | None = None
  state: Any = None
  cache_hits: int = 0


# Init runs once per variant: XLA's level 1 compiles it faster than the
# default and gives the same parameters bit for bit; level 0 compiled faster
# still but ran several times slower (bench/ENGINE_NOTES.md).
_COLD_OPTIONS = {"xla_backend_optimization_level": 1}


_init_pool: concurrent.futures.ThreadPoolExecutor | None = None
_init_pool_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
  """The thread compiling inits in the background, started on first use."""
  global _init_pool
  with _init_pool_lock:
    if _init_pool is None:
      _init_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxsweep-init")
    return _init_pool


def shutdown() -> None:
  """Stops the background init compiler: queued compiles are cancelled, a
  running one is waited for. Registered at exit; a later compile starts a
  new thread."""
  global _init_pool
  with _init_pool_lock:
    pool, _init_pool = _init_pool, None
  if pool is not None:
    pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown)


def _compile_cold(lowered):
  try:
    return lowered.compile(compiler_options=_COLD_OPTIONS)
  except Exception:  # pylint: disable=broad-except  # A backend without the option.
    return lowered.compile()


def compile(built: GroupProgram, mesh, hp, data, *, lanes: int = 1,  # noqa: A001
            init: bool = True, timings: list[float] | None = None) -> Compiled:
  """Compiles (once per population shape, lanes and mesh) a group's init and period.

  Each device maps the per-variant functions over its slice of the
  population in groups of ``lanes`` (:func:`jaxsweep.engine.sharding.population_map`),
  so a variant's bits depend on ``lanes`` only. Population arrays are
  sharded on the mesh's ``"sweep"`` axis and the data replicated, for inputs
  and outputs alike; the run state is donated.

  Args:
    built: the group's program; compiled programs are cached on it.
    mesh: the device mesh.
    hp: stacked hyperparameters: arrays or ``jax.ShapeDtypeStruct``s (only
      shapes and dtypes matter).
    data: the data, as arrays or shape structs.
    lanes: variants vmapped together on a device (see
      :func:`jaxsweep.engine.sharding.default_lanes`).
    init: also compile ``init`` (memory planning needs only the period).
    timings: compile seconds are appended here whenever this compiles.

  Returns:
    The cached :class:`Compiled` for this population shape.
  """
  key = _key(mesh, hp, data, lanes)
  pop, rep = sharding.population(mesh), sharding.replicated(mesh)
  entry = built.compiled.get(key)
  if entry is not None and (entry.init is not None or not init):
    return entry
  t0 = time.perf_counter()
  hits = xla_cache.counts()["hits"]
  if init:
    prefetch_init(built, mesh, hp, data, lanes=lanes)
  init_fn = sharding.population_map(built.program.init, mesh, lanes=lanes, num_population=1)
  if entry is None:
    prog = built.program
    period_fn = sharding.population_map(prog.period, mesh, lanes=lanes, num_population=2,
                                        skip=(prog.halted, prog.passthrough))
    period = jax.jit(period_fn, in_shardings=(pop, pop, rep, rep), out_shardings=(pop, pop),
                     donate_argnums=(0,))
    state = jax.eval_shape(init_fn, hp, data)
    flag = jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)  # train_flag's.
    # The first trace of the period when check() left it out.
    with diagnose.training_step_errors():
      lowered = period.lower(state, hp, data, flag)
    _start_inits(built)  # Their tracing overlaps this compile, not the trace above.
    compiled_period = lowered.compile()
    entry = built.compiled[key] = Compiled(None, compiled_period, 0.0,
                                           memory_lib.measure(compiled_period), state)
  if init:
    _start_inits(built)
    entry.init = built.pending_init.pop(key).result()
  seconds = time.perf_counter() - t0
  entry.seconds += seconds
  entry.cache_hits += xla_cache.counts()["hits"] - hits
  if timings is not None:
    timings.append(seconds)
  return entry


def _key(mesh, hp, data, lanes: int) -> str:
  return str((jax.tree.map(lambda a: (a.shape, a.dtype), hp),
              jax.tree.map(lambda a: (a.shape, a.dtype), data),
              tuple(d.id for d in mesh.devices.flat), lanes))


def prefetch_init(built: GroupProgram, mesh, hp, data, *, lanes: int = 1) -> None:
  """Marks a group's init to compile on a background thread once the next
  period compile has traced (XLA compiles without the GIL); :func:`compile`
  with the same shapes, mesh and lanes waits for it (the two compiles
  overlap: bench/ENGINE_NOTES.md).
  """
  key = _key(mesh, hp, data, lanes)
  entry = built.compiled.get(key)
  if key in built.pending_init or (entry is not None and entry.init is not None):
    return
  pop, rep = sharding.population(mesh), sharding.replicated(mesh)

  def job():
    init_fn = sharding.population_map(built.program.init, mesh, lanes=lanes, num_population=1)
    return _compile_cold(
        jax.jit(init_fn, in_shardings=(pop, rep), out_shardings=pop).lower(hp, data))

  built.pending_init[key] = job


def _start_inits(built: GroupProgram) -> None:
  for key, job in built.pending_init.items():
    if not isinstance(job, concurrent.futures.Future):
      built.pending_init[key] = _pool().submit(job)


def abstract_population(plan: plan_lib.Plan, group: plan_lib.Group, size: int, mesh):
  """Shape structs of a group's stacked hyperparameters at ``size`` variants."""
  hp = plan_lib.stack_hparams(plan, group, group.members[:1])
  pop = sharding.population(mesh)
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct((size,) + np.shape(a)[1:], np.asarray(a).dtype,
                                     sharding=pop), hp)
