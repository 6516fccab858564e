"""The Python API: sweep your own Flax model, Optax optimizer, loss and data.

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

from jaxsweep import data as data_lib
from jaxsweep import engine
from jaxsweep import losses as losses_lib
from jaxsweep import results as results_lib
from jaxsweep import space


def expand_sweep(sweep: Any, *, max_variants: int = 10_000) -> list[dict[str, Any]]:
  """Expands a sweep (dict of name -> values/distribution, or a space object).

  ``None`` or ``{}`` is one variant with no swept value.
  """
  if sweep is None or (isinstance(sweep, Mapping) and not sweep):
    return [{}]
  if isinstance(sweep, (list, tuple)) and all(isinstance(p, Mapping) for p in sweep):
    return [dict(p) for p in sweep]  # An explicit list of variants.
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
    data: ``js.data.arrays(...)``, a :class:`~jaxsweep.data.Dataset`, a dict
      with ``x_train, y_train, x_test, y_test``, or a factory of a Dataset
      whose keyword arguments may be swept (structural).
    sweep: name -> list of values or a ``js.space`` distribution; several
      names form their product; or any ``js.space`` combinator. Names are
      arguments of the components (``learning_rate``), qualified where
      ambiguous (``optimizer.weight_decay``), or ``seed``, ``steps``,
      ``batch_size``, ``eval_every``, ``init_scale``.
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
    out: a directory to write ``results.csv``/``results.json`` into.
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
    data = engine.load_data(engine.Spec(None, None, None, data), {})
  if loss is None:
    task = data.task if isinstance(data, data_lib.Dataset) else "classification"
    loss = losses_lib.mse if task == "regression" else losses_lib.cross_entropy
  spec = engine.Spec(model=model, optimizer=optimizer, loss=loss, data=data,
                     metrics=metrics)
  points = expand_sweep(sweep, max_variants=max_variants)
  fixed = dict(fixed or {})
  names = list(dict.fromkeys([*fixed, *(k for p in points for k in p)]))
  model_kwargs = {k: v for k, v in {**fixed, **points[0]}.items()
                  if k in engine.slot_args(spec, "model")}
  qualified = engine.qualify(names, spec, model_kwargs)
  static_q = frozenset(engine.qualify(list(static), spec, model_kwargs).values())
  vector_q = frozenset(engine.qualify(list(vectorize), spec, model_kwargs).values())
  spec = engine.Spec(model=model, optimizer=optimizer, loss=loss, data=data,
                     metrics=metrics, static=static_q, vectorize=vector_q)
  base = {"train.steps": steps, "train.batch_size": batch_size,
          "train.eval_every": eval_every if eval_every is not None else steps,
          "train.eval_batch_size": eval_batch_size, "seed": seed}
  base.update({qualified[k]: v for k, v in fixed.items()})
  q_points = [{qualified[k]: v for k, v in p.items()} for p in points]
  display = {q: n for n, q in qualified.items()}
  return run_plan(spec, base, q_points, display=display, target=target, mode=mode,
                  chunk_size=chunk_size, memory_budget=memory_budget, mesh=mesh, out=out,
                  progress=progress)


def run_plan(spec: engine.Spec, base: Mapping[str, Any],
             points: Sequence[Mapping[str, Any]], *,
             display: Mapping[str, str] | None = None, target: str | None = None,
             mode: str | None = None, chunk_size: int | None = None,
             memory_budget: int | str | None = None, mesh=None,
             out: str | None = None, progress: bool | Callable[[dict], None] = False,
             config: Mapping[str, Any] | None = None) -> results_lib.Results:
  """Runs qualified settings (the layer shared by the API and config files)."""
  plan = engine.make_plan(spec, base, points, display=display)
  callback = None
  if callable(progress):
    callback = progress
  elif progress:
    from jaxsweep import report  # pylint: disable=g-import-not-at-top
    callback = report.ProgressPrinter()
  res = engine.execute(plan, mesh=mesh, chunk_size=chunk_size,
                       memory_budget=memory_budget, callback=callback)
  if target is not None or mode is not None:
    res = res.ranked(target, mode)
  from jaxsweep import distributed  # pylint: disable=g-import-not-at-top
  if out is not None and distributed.is_primary():  # One writer per sweep.
    from jaxsweep import report  # pylint: disable=g-import-not-at-top
    report.write_outputs(res, out, config=config)
  return res

