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

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from jaxsweep import config as config_lib
from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import report
from jaxsweep import results as results_lib
from jaxsweep import space
from jaxsweep.components import data as data_lib
from jaxsweep.components import losses as losses_lib
from jaxsweep.engine import distributed
from jaxsweep.engine import execute
from jaxsweep.engine import plan as plan_lib


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
        vectorize: Iterable[str] = (),
        target: str | None = None, mode: str | None = None,
        chunk_size: int | None = None, memory_budget: int | str | None = None,
        mesh=None, out: str | None = None,
        progress: bool | Callable[[dict], None] = False,
        max_variants: int = 10_000) -> results_lib.Results:
  """Trains every variant of a sweep, vectorized, and returns the results.

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
      compiled program (an int index + ``lax.switch``) instead of one program
      per value; the model factory must accept a tuple of options for them
      (the built-in models do for ``activation``).
    target, mode: the metric to rank on and ``"max"``/``"min"`` (default:
      test accuracy, max; else test loss, min).
    chunk_size: at most this many variants per compiled call.
    memory_budget: memory the run may use (``"2GiB"``, bytes); groups that
      would not fit are split into chunks that do (default: the device's
      memory, or 75 % of free RAM on CPU).
    mesh: a ``jax.sharding.Mesh`` with axis ``"sweep"`` (default: all devices).
    out: a directory to write the results files into (nothing is written
      without it).
    progress: ``True`` prints progress to stderr; a callable receives events.
    max_variants: refuse larger sweeps unless raised.

  Returns:
    :class:`~jaxsweep.results.Results`: ``.table`` (best first), ``.best``,
    ``.params(i)``, ``.history``, ``.to_csv()``, ``.to_pandas()``.

  Raises:
    ConfigError: for names no component accepts, impossible values, or a
      model whose outputs do not fit the loss (raised before training).
  """
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
  points = expand_sweep(sweep, max_variants=max_variants)
  fixed = dict(fixed or {})
  names = list(dict.fromkeys([*fixed, *(k for p in points for k in p)]))
  model_kwargs = {k: v for k, v in {**fixed, **points[0]}.items()
                  if k in components.accepted("model")}
  qualified = plan_lib.qualify(names, components, model_kwargs)
  components = plan_lib.Components(
      model=model, optimizer=optimizer, loss=loss, data=data, metrics=metrics,
      static=_keys(plan_lib.qualify(list(static), components, model_kwargs)),
      vectorize=_keys(plan_lib.qualify(list(vectorize), components, model_kwargs)))
  base = {"train.steps": steps, "train.batch_size": batch_size,
          "train.eval_every": eval_every if eval_every is not None else steps,
          "train.eval_batch_size": eval_batch_size, "seed": seed}
  base.update({qualified[k]: v for k, v in fixed.items()})
  q_points = [{qualified[k]: v for k, v in p.items()} for p in points]
  display = {q: n for n, q in qualified.items()}
  return run_plan(components, base, q_points, display=display, target=target, mode=mode,
                  chunk_size=chunk_size, memory_budget=memory_budget, mesh=mesh, out=out,
                  progress=progress)


def _keys(qualified: Mapping[str, str]) -> frozenset:
  return frozenset(keys.parse(q) for q in qualified.values())


def run_config(cfg: config_lib.Config | str, overrides: Sequence[str] = (), *,
               out: str | None = None, progress: bool | Callable[[dict], None] = False,
               mesh=None, chunk_size: int | None = None,
               memory_budget: int | str | None = None) -> results_lib.Results:
  """Runs a config file (or a loaded config) through the same engine as :func:`run`.

  Args:
    cfg: a path to a YAML config, or a :class:`~jaxsweep.config.Config`.
    overrides: ``key=value`` / ``key=v1,v2`` overrides (with a path only).
    out: a directory to write the results files into (with ``config.yaml``
      and ``best.yaml``).
    progress, mesh: as for :func:`run`.
    chunk_size, memory_budget: override the config's ``run:`` section.
  """
  if not isinstance(cfg, config_lib.Config):
    cfg = config_lib.load(cfg, overrides)
  try:
    return run_plan(cfg.components, cfg.base, cfg.points, target=cfg.target, mode=cfg.mode,
                    chunk_size=chunk_size or cfg.run.get("chunk_size"),
                    memory_budget=memory_budget or cfg.run.get("memory_budget"),
                    mesh=mesh, out=out, progress=progress, config=cfg.raw)
  except errors.ConfigError as e:
    raise (e.with_file(cfg.path) if cfg.path else e) from None


def run_plan(components: plan_lib.Components, base: Mapping[str, Any],
             points: Sequence[Mapping[str, Any]], *,
             display: Mapping[str, str] | None = None, target: str | None = None,
             mode: str | None = None, chunk_size: int | None = None,
             memory_budget: int | str | None = None, mesh=None,
             out: str | None = None, progress: bool | Callable[[dict], None] = False,
             config: Mapping[str, Any] | None = None) -> results_lib.Results:
  """Plans and runs qualified settings (the layer shared by :func:`run` and configs)."""
  plan = plan_lib.make_plan(components, base, points, display=display)
  if callable(progress):
    callback = progress
  elif progress:
    callback = report.ProgressPrinter()
  else:
    callback = None
  res = execute.execute(plan, mesh=mesh, chunk_size=chunk_size,
                        memory_budget=memory_budget, callback=callback)
  if target is not None or mode is not None:
    res = res.ranked(target, mode)
  if out is not None and distributed.is_primary():  # One writer per sweep.
    report.write_outputs(res, out, config=config)
  return res
