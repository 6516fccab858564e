"""The Python API: sweep your own Flax model, Optax optimizer, loss and data.

:func:`run` takes components as Python objects, :func:`run_config` a config
file (or a loaded :class:`~jaxsweep.config.Config`); both plan, train and
return :class:`~jaxsweep.results.Results`, and write files only when given
``out=``.

Examples:
  >>> import optax, jaxsweep as js
  >>> res = js.run(
  ...     model=lambda features: js.models.MLP(features=features, num_outputs=4),
  ...     optimizer=lambda learning_rate: optax.sgd(learning_rate),
  ...     loss=js.losses.cross_entropy,
  ...     data=js.data.load("synthetic", num_train=64, num_test=32),
  ...     sweep={"learning_rate": [0.1, 0.3], "features": [(8,)]},
  ...     steps=4, batch_size=16)
  >>> len(res.rows), res.best["status"]
  (2, 'ok')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from jaxsweep import config as config_lib
from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import options as options_lib
from jaxsweep import report
from jaxsweep import results as results_lib
from jaxsweep import space
from jaxsweep.components import data as data_lib
from jaxsweep.components import losses as losses_lib
from jaxsweep.engine import distributed
from jaxsweep.engine import execute
from jaxsweep.engine import fingerprint
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import proposals
from jaxsweep.engine import schedulers
from jaxsweep.engine import search_space as search_space_lib
from jaxsweep.engine import sharding
from jaxsweep.engine import structure
from jaxsweep.engine import validate
from jaxsweep.engine import xla_cache
from jaxsweep.report import rundir

# Seconds between checkpoints of a run with an output directory (0: at every
# period boundary); one is also written when a chunk finishes and on a signal.
DEFAULT_CHECKPOINT_EVERY = execute.CHECKPOINT_EVERY
# The default of run's option keywords: not given (see options_lib.merge).
UNSET = options_lib.UNSET


def expand_sweep(sweep: Any, *, max_variants: int = 10_000) -> list[dict[str, Any]]:
  """Expands a sweep (dict of name -> values/distribution, or a space object).

  ``None`` or ``{}`` is one variant with no swept value; a list of dicts is
  taken as the variants themselves.
  """
  if sweep is None or (isinstance(sweep, Mapping) and not sweep):
    return [{}]
  if isinstance(sweep, (list, tuple)) and not sweep:
    raise errors.ConfigError(
        "the sweep is an empty list: it has no variant to train.", key="sweep",
        fix="give at least one variant (sweep=[{'learning_rate': 1e-3}]), or sweep=None "
            "to train one variant with the fixed settings")
  if isinstance(sweep, (list, tuple)) and all(isinstance(p, Mapping) for p in sweep):
    return [dict(p) for p in sweep]
  return space.expand(sweep, max_variants=max_variants)


def run(model: Any, optimizer: Callable, loss: Callable | None = None, *,
        data: Any, sweep: Any = None, metrics: Mapping[str, Callable] | None = None,
        fixed: Mapping[str, Any] | None = None, steps: int = 1000,
        batch_size: int = 128, eval_every: int | None = None,
        eval_batch_size: int = 1024, seed: int = 0, static: Iterable[str] = (),
        vectorize: Iterable[str] | bool = (), group: Iterable[str] = (),
        options: options_lib.RunOptions | None = None,
        target: str | None = UNSET, mode: str | None = UNSET,
        chunk_size: int | None = UNSET, lanes: int | str | None = UNSET,
        unstable_factor: float | None = UNSET, memory_budget: int | str | None = UNSET,
        method: Any = UNSET, early_stopping: Mapping[str, Any] | None = UNSET,
        mesh=UNSET, out: str | None = UNSET, resume: bool = UNSET, overwrite: bool = UNSET,
        checkpoint_every: float = UNSET, outputs: Mapping[str, Any] | None = UNSET,
        progress: bool | Callable[[dict], None] = UNSET,
        compile_cache: str | bool | None = UNSET, max_variants: int | None = UNSET,
        allow_zero_learning_rate: bool = UNSET) -> results_lib.Results:
  """Trains every variant of a sweep, vectorized, and returns the results.

  It runs as the ``jaxsweep`` command does: the same devices, compilation
  cache and progress display, hence the same results at the same speed.
  To that end the first call changes JAX's global configuration, once per
  process (a later call changes only what it names explicitly):

  * on a CPU-only machine whose JAX backend has not started yet, and without
    ``mesh=``: one virtual CPU device per core (``jax_num_cpu_devices``, and
    ``--xla_cpu_multi_thread_eigen=false`` in ``XLA_FLAGS`` while the backend
    starts), unless the user chose a count (``XLA_FLAGS``,
    ``JAX_NUM_CPU_DEVICES``, ``jax_num_cpu_devices``) or
    ``JAXSWEEP_CPU_DEVICES`` says otherwise (see
    :func:`jaxsweep.sharding.configure_cpu_devices`; if JAX started earlier,
    a warning says how many devices it got);
  * JAX's persistent compilation cache (``jax_compilation_cache_dir``,
    ``jax_enable_compilation_cache``,
    ``jax_persistent_cache_min_compile_time_secs``), as ``compile_cache``
    says (:func:`jaxsweep.engine.xla_cache.enable`).

  The run options (how the population runs and what is written, from
  ``target`` to ``allow_zero_learning_rate``) are the fields of
  :class:`~jaxsweep.options.RunOptions`, documented there, with its
  defaults. Give them as keywords (``out=DIR, resume=True``) or as one
  ``options=js.RunOptions(...)``, or both: a keyword then fills a field
  that ``options`` leaves at its default.

  Args:
    model: a ``flax.linen.Module``; a model factory whose keyword arguments
      are structural hyperparameters (each distinct combination compiles
      once); an ``(init, apply)`` pair; ``js.models.from_nnx(factory)``.
      Keyword arguments of the module's ``__call__`` (e.g. ``dropout_rate``)
      are value hyperparameters. A factory argument ``num_outputs`` is filled
      from the data when not given.
    optimizer: a factory whose keyword arguments are hyperparameters, e.g.
      ``lambda learning_rate, weight_decay: optax.adamw(learning_rate,
      weight_decay=weight_decay)``. Numeric arguments are traced per variant
      (``optax.inject_hyperparams``); strings and bools are structural.
    loss: ``loss(outputs, batch, **hparams) -> scalar`` with ``batch =
      {"x": ..., "y": ...}``; numeric keyword arguments can be swept. Default:
      cross-entropy (classification) or MSE (regression).
    data: ``js.data.arrays(...)``, a :class:`~jaxsweep.components.data.Dataset`,
      a dict with ``x_train, y_train, x_test, y_test``, or a factory of a
      Dataset whose keyword arguments may be swept (structural).
    sweep: name -> list of values or a ``js.space`` distribution; several
      names form their product; or any ``js.space`` combinator; or a list of
      dicts (the variants). Names are arguments of the components
      (``learning_rate``), qualified where ambiguous
      (``optimizer.weight_decay``), or ``seed``, ``steps``, ``batch_size``,
      ``eval_every``, ``init_scale``.
    metrics: name -> ``metric(outputs, batch) -> scalar or [B]``, reported
      as ``test_<name>``; default: accuracy for classification.
    fixed: settings shared by all variants (same names as ``sweep``).
    steps, batch_size, eval_every, eval_batch_size: training settings
      (``eval_every`` defaults to ``steps``: evaluate once at the end).
    seed: the seed of variants whose sweep does not set ``seed``.
    static: names to treat as structural even though numeric.
    vectorize: structural string choices to select per variant inside one
      compiled program (an int index + ``lax.switch``, or masks for widths)
      instead of one program per value; the model factory must accept a
      tuple of options for them (the built-in models do for ``activation``
      and ``features``). Keys in neither ``vectorize`` nor ``group`` are
      decided from cost estimates (see ``jaxsweep plan``);
      ``vectorize=False`` groups every key not listed.
    group: structural keys forced to split compile groups (one program per
      value).
    options: a :class:`~jaxsweep.options.RunOptions`. Its fields
      (``target``, ``mode``, ``chunk_size``, ``lanes``, ``unstable_factor``,
      ``memory_budget``, ``method``, ``early_stopping``, ``mesh``, ``out``,
      ``resume``, ``overwrite``, ``checkpoint_every``, ``outputs``,
      ``progress``, ``compile_cache``, ``max_variants``,
      ``allow_zero_learning_rate``) are keywords of this function too; one
      given both ways is refused.

  Returns:
    :class:`~jaxsweep.results.Results`: ``.table`` (best first), ``.best``,
    ``.params(i)``, ``.history``, ``.to_csv()``, ``.to_pandas()``.

  Raises:
    ConfigError: for names no component accepts, impossible values, a run
      option given both as a keyword and in ``options``, or a model whose
      outputs do not fit the loss (raised before training).
  """
  opts = options_lib.merge(options, dict(
      target=target, mode=mode, chunk_size=chunk_size, lanes=lanes,
      unstable_factor=unstable_factor, memory_budget=memory_budget, method=method,
      early_stopping=early_stopping, mesh=mesh, out=out, resume=resume, overwrite=overwrite,
      checkpoint_every=checkpoint_every, outputs=outputs, progress=progress,
      compile_cache=compile_cache, max_variants=max_variants,
      allow_zero_learning_rate=allow_zero_learning_rate))
  if isinstance(data, Mapping):
    missing = [k for k in data_lib.NPZ_KEYS if k not in data]
    if missing:
      raise errors.ConfigError(f"the data dict has no {', '.join(missing)}.", key="data",
                               fix=f"give all of {', '.join(data_lib.NPZ_KEYS)}")
    data = data_lib.arrays(*(data[k] for k in data_lib.NPZ_KEYS))
  if loss is None:
    task = data.task if isinstance(data, data_lib.Dataset) else "classification"
    loss = losses_lib.mse if task == "regression" else losses_lib.cross_entropy
  components = plan_lib.Components(model=model, optimizer=optimizer, loss=loss, data=data,
                                   metrics=metrics)
  # A proposal method (tpe, gp, qmc) searches the sweep's distributions as they are.
  search = (search_space_lib.search_space(sweep) if proposals.method_name(opts.method)
            else None)
  limit = space.DEFAULT_MAX_VARIANTS if opts.max_variants is None else opts.max_variants
  points = [{}] if search else expand_sweep(sweep, max_variants=limit)
  fixed = dict(fixed or {})
  swept = search.names() if search else [k for p in points for k in p]
  names = list(dict.fromkeys([*fixed, *swept]))
  model_kwargs = {k: v for k, v in {**fixed, **(dict(search.fixed) if search else points[0])
                                    }.items() if k in components.accepted("model")}
  qualified = plan_lib.qualify(names, components, model_kwargs)
  components = plan_lib.Components(
      model=model, optimizer=optimizer, loss=loss, data=data, metrics=metrics,
      static=_keys(plan_lib.qualify(list(static), components, model_kwargs)),
      vectorize=_keys(plan_lib.qualify(
          [] if isinstance(vectorize, bool) else list(vectorize), components, model_kwargs)),
      group=_keys(plan_lib.qualify(list(group), components, model_kwargs)),
      auto=vectorize is not False)
  base = {"train.steps": steps, "train.batch_size": batch_size,
          "train.eval_every": eval_every if eval_every is not None else steps,
          "train.eval_batch_size": eval_batch_size, "seed": seed}
  base.update({qualified[k]: v for k, v in fixed.items()})
  display = {q: n for n, q in qualified.items()}
  if search is not None:
    validate.check_learning_rate([{}], base, allow_zero=opts.allow_zero_learning_rate)
    return run_sweep(components, base, space=search.renamed(qualified), display=display,
                     options=opts)
  q_points = [{qualified[k]: v for k, v in p.items()} for p in points]
  validate.check_learning_rate(q_points, base, allow_zero=opts.allow_zero_learning_rate)
  return run_sweep(components, base, points=q_points, display=display, options=opts)


def _keys(qualified: Mapping[str, str]) -> frozenset:
  return frozenset(keys.parse(q) for q in qualified.values())


def run_config(cfg: config_lib.Config | str, overrides: Sequence[str] = (), *,
               options: options_lib.RunOptions | None = None,
               **keywords: Any) -> results_lib.Results:
  """Runs a config file (or a loaded config) through the same engine as :func:`run`.

  Args:
    cfg: a path to a YAML config, or a :class:`~jaxsweep.config.Config`.
    overrides: ``key=value`` / ``key=v1,v2`` overrides (with a path only).
    options: a :class:`~jaxsweep.options.RunOptions`. A field left at None
      takes the config's value: ``target``, ``mode``, ``method``
      (``sweep.method``), ``early_stopping``, and ``chunk_size``, ``lanes``,
      ``unstable_factor``, ``memory_budget``, ``max_variants`` (its ``run:``
      section; ``max_variants`` with a path only). With ``out``, the
      directory also gets ``config.yaml`` and ``best.yaml``.
    **keywords: fields of :class:`~jaxsweep.options.RunOptions` (``out=``,
      ``resume=``, ``progress=`` ...), as for :func:`run` (which says what
      the first call changes in JAX's configuration).

  Raises:
    ConfigError: as for :func:`run`, naming the config file where the
      mistake is in it.
  """
  opts = options_lib.merge(options, keywords)
  if not isinstance(cfg, config_lib.Config):
    cfg = config_lib.load(cfg, overrides, max_variants=opts.max_variants)
  override = opts.method
  opts = dataclasses.replace(
      opts, target=_given(opts.target, cfg.target), mode=_given(opts.mode, cfg.mode),
      chunk_size=_given(opts.chunk_size, cfg.run.get("chunk_size")),
      lanes=_given(opts.lanes, cfg.run.get("lanes")),
      unstable_factor=_given(opts.unstable_factor, cfg.run.get("unstable_factor")),
      method=_given(opts.method, cfg.method),
      early_stopping=_given(opts.early_stopping, cfg.early_stopping),
      memory_budget=_given(opts.memory_budget, cfg.run.get("memory_budget")))
  try:
    if cfg.search is not None:
      if override is not None and not proposals.method_name(override):
        raise errors.ConfigError(
            "the config's sweep is a search space for a proposal method, not variants.",
            key="sweep.method", fix="give method= tpe, gp or qmc, or a config with a sweep")
      return run_sweep(cfg.components, cfg.base, space=cfg.search, options=opts,
                       config=cfg.raw)
    return run_sweep(cfg.components, cfg.base, points=cfg.points, options=opts,
                     config=cfg.raw)
  except errors.ConfigError as e:
    # A problem of the output directory is not the config file's.
    raise (e.with_file(cfg.path) if cfg.path and e.key != "out" else e) from None


def _given(value: Any, default: Any) -> Any:
  """``value`` unless it is None (a 0 or an empty mapping the user gave stays)."""
  return default if value is None else value


def run_sweep(components: plan_lib.Components, base: Mapping[str, Any], *,
              points: Sequence[Mapping[str, Any]] | None = None,
              space: search_space_lib.Space | None = None,
              display: Mapping[str, str] | None = None,
              options: options_lib.RunOptions | None = None,
              config: Mapping[str, Any] | None = None) -> results_lib.Results:
  """The one run entry, under :func:`run` and :func:`run_config`: plans and
  trains qualified settings, or searches a space; with ``out``, prepares,
  resumes and writes the run directory.

  With ``points`` (one dict of qualified settings per variant) the variants
  are planned (:func:`jaxsweep.engine.structure.make_plan`) and trained
  under ``method``'s scheduler. With ``space`` (``method`` tpe, gp or qmc,
  which may give ``budget:`` in variant-steps) rounds of trials are
  proposed, each round one population
  (:func:`jaxsweep.engine.proposals.search`); with ``out`` each round trains
  with its own checkpoint and finished rounds are saved, so ``resume=True``
  goes on from the round a crash interrupted (the seeded sampler proposes
  the finished trials again).

  With ``out``, the directory is prepared (checked, locked) before anything
  trains, and its files written after (see :func:`run`, whose arguments
  these are, qualified; ``options``: how it runs, default ``RunOptions()``;
  ``config``: the config to write as ``config.yaml``).

  Raises:
    ConfigError: for bad options, a proposal method given points (or a
      missing Optuna), or any error of a sweep.
    CheckpointError: when a resumed sampler proposes other trials.
  """
  if (points is None) == (space is None):
    raise ValueError("give points (variants to plan) or space (a search), not both")
  opts = options_lib.RunOptions() if options is None else options
  method, out = opts.method, opts.out
  if space is None and proposals.method_name(method):
    raise errors.ConfigError(
        f"method {proposals.method_name(method)} searches the sweep's distributions, not "
        "expanded variants.", key="sweep.method",
        fix="pass the sweep to js.run(method=...), or set sweep.method in the config")
  search_opts = proposals.options(method) if space is not None else None
  opts.check_out()
  configure(mesh=opts.mesh, compile_cache=opts.compile_cache)
  callback = _callback(opts.progress)
  engine = dict(target=opts.target, mode=opts.mode, callback=callback, mesh=opts.mesh,
                chunk_size=opts.chunk_size, lanes=opts.lanes, memory_budget=opts.memory_budget,
                unstable_factor=opts.unstable_factor, checkpoint_every=opts.checkpoint_every)
  if space is not None:
    sweep_id = proposals.fingerprint(components, base, space, search_opts)
    samples = 64 if search_opts.samples is None else search_opts.samples
    estimate = 4 * 2**20 + 4_000 * samples

    def train(checkpoint_dir: str | None, resume: bool) -> results_lib.Results:
      return proposals.search(components, base, space, search_opts, display=display,
                              early_stopping=opts.early_stopping,
                              checkpoint_dir=checkpoint_dir, resume=resume, **engine)

    # Only process 0 keeps a search's rounds (the other processes' samplers
    # propose the same trials).
    shared_checkpoint = None
  else:
    plan = structure.make_plan(components, base, points, display=display)
    if opts.target is not None:  # Before training: an objective of varied losses is refused.
      results_lib.check_comparable(opts.target, plan.variants)
    scheduler = schedulers.make(method, early_stopping=opts.early_stopping)
    sweep_id, estimate = fingerprint.fingerprint(plan), estimate_bytes(plan)

    def train(checkpoint_dir: str | None, resume: bool) -> results_lib.Results:
      return execute.execute(plan, scheduler=scheduler, checkpoint_dir=checkpoint_dir,
                             resume=resume, **engine)

    # Every process of a plan shares process 0's checkpoint.
    shared_checkpoint = out and rundir.checkpoint_path(out)
  if out is None or not distributed.is_primary():
    # Process 0 owns the directory.
    return train(shared_checkpoint, opts.resume and shared_checkpoint is not None)
  with rundir.prepare(out, sweep_id=sweep_id, resume=opts.resume, overwrite=opts.overwrite,
                      estimate_bytes=estimate) as rd:
    if callback is not None:
      callback({"event": "rundir", "dir": rd.path, "resumed": rd.resumed})
    _preload_plots(opts.outputs)
    res = train(rd.checkpoint_dir, rd.resumed)  # Nothing to resume in a new directory.
    published = None if callback is None else (
        lambda: callback({"event": "results", "dir": rd.path, "results": res}))
    paths = rd.write_outputs(res, config=as_run(config, res.groups), on_results=published,
                             **dict(opts.outputs or {}))
    if callback is not None:
      callback({"event": "outputs", "dir": rd.path, "paths": paths, "error": rd.error})
  return res


def configure(*, mesh=None, compile_cache: str | bool | None = None) -> None:
  """What a sweep changes in JAX's global configuration, as the command does.

  One virtual CPU device per core unless ``mesh`` is given (before JAX's
  backend starts; :func:`jaxsweep.sharding.configure_cpu_devices`), and the
  persistent compilation cache (:func:`jaxsweep.engine.xla_cache.enable`:
  decided once per process, changed only by an explicit ``compile_cache``).
  """
  if mesh is None:
    sharding.configure_cpu_devices()
  xla_cache.enable(compile_cache)


def as_run(config: Mapping[str, Any] | None, groups: Sequence[Mapping[str, Any]]
           ) -> Mapping[str, Any] | None:
  """The config as it ran: ``run.lanes`` set to the lanes its groups used.

  A variant's bits depend on its lanes, so ``config.yaml`` records them and
  running it again reproduces them, whatever chose them (the rule, a
  measurement, the user). Groups that ran with different lanes (the rule
  gives each model its own) leave the config as it is: the rule chooses the
  same again on the same platform, and ``results.json`` lists each group's.
  """
  lanes = {g.get("lanes") for g in groups}
  if config is None or len(lanes) != 1 or not isinstance(next(iter(lanes)), int):
    return config
  run_opts = config.get("run") if isinstance(config.get("run"), Mapping) else {}
  return {**config, "run": {**run_opts, "lanes": lanes.pop()}}


def _callback(progress: bool | Callable[[dict], None]) -> Callable[[dict], None] | None:
  if callable(progress):
    return progress
  return report.ProgressPrinter() if progress else None


def _preload_plots(outputs: Mapping[str, Any] | None) -> None:
  """Plots will be drawn after training: import matplotlib meanwhile."""
  if dict(outputs or {}).get("plots", True):
    report.plots.preload()


def estimate_bytes(plan: plan_lib.Plan) -> int:
  """About how many bytes a run's files take (results, histories, plots).

  The checkpoint is not counted: its size is the engine's to know.
  """
  total = 4 * 2**20  # Plots, results.md, config and best.yaml.
  for variant in plan.variants:
    steps = variant.get(keys.Key("train", "steps"))
    every = variant.get(keys.Key("train", "eval_every")) or steps
    try:
      evals = math.ceil(steps / every)
    except (TypeError, ZeroDivisionError):
      evals = 1
    # Rows in CSV, JSON and the aggregated tables; history entries in JSON.
    total += 2_000 + 300 * max(evals, 1)
  return total
