"""Execution: the loop over population chunks and eval periods.

The third stage of the engine. For each group of the plan (built and checked
by :mod:`jaxsweep.engine.program` before anything trains)::

  for each chunk of the group's population (memory permitting, one):
    state = init(hparams)                       # compiled vmap(init)
    for each eval period:
      state, stats = period(state, hparams)     # compiled vmap(period)
      --- period boundary ---
      record stats; progress event; the scheduler decides

A *period* is a slice of training time (``eval_every`` steps and an
evaluation); a *chunk* is a slice of the population. The period boundary is
the one place where the run's state is on hand between compiled calls: a
:class:`Scheduler` sees every variant's metrics there and answers which
variants go on and which stop. :class:`Grid`, the plain sweep, lets all go on.

Events (dicts with an ``"event"`` key: ``start``, ``group``, ``compiled``,
``period``, ``done``) go to a callback; printing them is the report layer's
job (:class:`jaxsweep.report.ProgressPrinter`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import sharding


class Boundary(NamedTuple):
  """What a scheduler sees at a period boundary of one chunk.

  Attributes:
    group: the group's index in the plan.
    variants: plan indices of the chunk's variants (padding excluded).
    step: optimisation steps taken so far.
    steps: the group's total steps.
    metrics: metric name -> value per variant (``[len(variants)]``).
    stopped: per variant, whether it no longer trains (diverged or stopped).
  """

  group: int
  variants: tuple[int, ...]
  step: int
  steps: int
  metrics: Mapping[str, np.ndarray]
  stopped: np.ndarray


class Decision(NamedTuple):
  """A scheduler's answer at a boundary.

  Attributes:
    stop: plan indices of variants to stop now: they are frozen (their
      parameters no longer change) and their rows say ``stopped`` at this
      step. A chunk whose variants have all stopped trains no further.
  """

  stop: frozenset[int] = frozenset()


class Scheduler(Protocol):
  """Decides at each period boundary which variants go on."""

  def boundary(self, b: Boundary) -> Decision:
    ...


class Grid:
  """The plain sweep: every variant trains to the end."""

  def boundary(self, b: Boundary) -> Decision:
    del b  # Unused.
    return Decision()


@jax.jit
def _stop(state, mask):
  """Marks the variants where ``mask`` is set as stopped at their current step."""
  newly = mask & ~state.stopped
  return state._replace(stopped=state.stopped | mask,
                        stopped_step=jnp.where(newly, state.step, state.stopped_step))


def execute(plan: plan_lib.Plan, *, mesh=None, chunk_size: int | None = None,
            memory_budget: int | str | None = None, scheduler: Scheduler | None = None,
            callback: Callable[[dict], None] | None = None) -> results_lib.Results:
  """Trains every variant of a plan and returns its :class:`Results`.

  Every group is built, checked and fitted into memory before any trains, so
  a sweep that cannot fit fails first. In a multi-process run
  (:mod:`jaxsweep.engine.distributed`) every process calls this with the same
  plan and gets the whole results; only process 0 receives progress events.

  Args:
    plan: from :func:`jaxsweep.engine.plan.make_plan`.
    mesh: the device mesh (default: all devices, axis ``"sweep"``).
    chunk_size: at most this many variants per compiled call (default: the
      whole group); padded up to a multiple of the device count, and to at
      least two variants per device (:func:`jaxsweep.engine.sharding.population_size`).
    memory_budget: memory the run may use (``"2GiB"``; see
      :func:`jaxsweep.engine.memory.available`): groups that would not fit are
      trained in chunks that do. Default: each accelerator's memory, or 75 %
      of the available host RAM on CPU.
    scheduler: decides at period boundaries (default: :class:`Grid`).
    callback: receives progress events (dicts with an ``"event"`` key).

  Raises:
    ConfigError: for a group that does not fit even one variant per device.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  scheduler = Grid() if scheduler is None else scheduler
  num_devices = mesh.devices.size
  # One table, printed once: the other processes stay silent.
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
    built = built_of[group.index] = program_lib.build(plan, group)
    program_lib.check(plan, group, built)
    timings_of[group.index] = []
    estimate_of[group.index] = program_lib.plan_memory(
        plan, group, built, mesh, chunk_size=chunk_size, limit=limit,
        timings=timings_of[group.index])
  record = _Record(plan)
  data_of: dict[int, Any] = {}
  for group in plan.groups:
    built = built_of[group.index]
    estimate = estimate_of[group.index]
    settings = built.program.settings
    # Placed once per dataset, shared by every group that trains on it.
    if id(built.dataset) not in data_of:
      data_of.clear()  # Free the previous dataset's device copies first.
      data_of[id(built.dataset)] = program_lib.device_data(built.dataset, mesh)
    data = data_of[id(built.dataset)]
    n, size = len(group.members), estimate.chunk_size
    info = {"group": group.index, "variants": n, "chunk_size": size,
            "padding": estimate.padding, "static": group.describe(),
            "dynamic": [plan.column(k) for k in group.traced
                        if k in plan.swept or k in group.choices],
            "compile_seconds": 0.0, "train_seconds": 0.0, **estimate.as_dict()}
    emit({"event": "group", **info, "steps": settings.steps,
          "num_groups": len(plan.groups), "dataset": built.dataset.describe()})
    # Every chunk has the same shape (the last one padded): one program.
    compiled = program_lib.compile(
        built, mesh, program_lib.abstract_population(plan, group, size, mesh), data,
        timings=timings_of[group.index])
    info["compile_seconds"] = sum(timings_of[group.index])
    if info["compile_seconds"]:
      emit({"event": "compiled", "group": group.index, "seconds": info["compile_seconds"]})
    for c0 in range(0, n, size):
      members = tuple(group.members[c0:c0 + size])
      hp = sharding.pad(plan_lib.stack_hparams(plan, group, members), size)
      hp_dev = sharding.put_population(hp, mesh)
      t0 = time.perf_counter()
      state = compiled.init(hp_dev, data)
      for period in range(settings.num_periods):
        state, stats = compiled.period(state, hp_dev, data)
        # --- The period boundary. ---
        host = sharding.to_host({"stats": stats, "diverged": state.diverged,
                                 "stopped": state.stopped})
        step = min((period + 1) * settings.eval_every, settings.steps)
        live = len(members)
        metrics = {k: v[:live] for k, v in host["stats"].items()}
        record.period(members, step, metrics)
        elapsed = time.perf_counter() - t0
        emit({"event": "period", "group": group.index, "chunk_start": c0,
              "chunk_variants": live, "group_variants": n, "step": step,
              "steps": settings.steps, "diverged": int(host["diverged"][:live].sum()),
              "variant_steps_per_s": live * step / max(elapsed, 1e-9),
              "elapsed": elapsed})
        halted = host["diverged"][:live] | host["stopped"][:live]
        decision = scheduler.boundary(
            Boundary(group.index, members, step, settings.steps, metrics, halted))
        if decision.stop:
          mask = np.zeros(size, bool)
          mask[[j for j, i in enumerate(members) if i in decision.stop]] = True
          state = _stop(state, sharding.put_population(mask, mesh))
          halted = halted | mask[:live]
        if halted.all() and step < settings.steps:
          break  # Nothing left to train in this chunk.
      info["train_seconds"] += time.perf_counter() - t0
      record.final(members, sharding.to_host(state._replace(key=None, opt_state=None)),
                   settings.steps)
    record.groups.append(info)
  seconds = time.perf_counter() - t_start
  emit({"event": "done", "seconds": seconds})
  derived = {}
  for built in built_of.values():
    derived.update(built.derived)
  return record.results(seconds=seconds, derived=derived)


class _Record:
  """What the run produced, gathered at period boundaries and chunk ends."""

  def __init__(self, plan: plan_lib.Plan):
    self.plan = plan
    self.history: dict[int, list[dict]] = {i: [] for i in range(plan.num_variants)}
    self.finals: dict[int, dict] = {}
    self.states: dict[int, tuple[Any, int]] = {}
    self.groups: list[dict] = []

  def period(self, members: Sequence[int], step: int,
             metrics: Mapping[str, np.ndarray]) -> None:
    for j, i in enumerate(members):
      self.history[i].append({"step": step, **{k: float(v[j]) for k, v in metrics.items()}})

  def final(self, members: Sequence[int], state, steps: int) -> None:
    """A chunk's last state: statuses, the step reached, trained parameters."""
    host = {"params": state.params, "model_state": state.model_state}
    for j, i in enumerate(members):
      diverged, stopped = bool(state.diverged[j]), bool(state.stopped[j])
      if diverged:
        status, at = results_lib.STATUS_DIVERGED, int(state.diverged_step[j])
      elif stopped:
        status, at = results_lib.STATUS_STOPPED, int(state.stopped_step[j])
      else:
        status, at = results_lib.STATUS_OK, None
      # Steps whose updates were applied: a diverging step is discarded.
      trained = at if at is not None else int(min(state.step[j], steps))
      self.finals[i] = {"status": status, "at": at, "step": trained}
      self.states[i] = (host, j)

  def results(self, *, seconds: float, derived: Mapping[str, Callable]) -> results_lib.Results:
    plan = self.plan
    metric_keys = list(dict.fromkeys(k for entries in self.history.values()
                                     for e in entries for k in e if k != "step"))
    group_of = {i: g.index for g in plan.groups for i in g.members}
    rows = []
    for i, settings in enumerate(plan.variants):
      f = self.finals[i]
      last = self.history[i][-1] if self.history[i] else {}
      row: dict[str, Any] = {"variant": i, "id": plan.ids[i]}
      for k in plan.swept:
        row[plan.column(k)] = keys.plain(settings.get(k))
      row["group"] = group_of[i]
      row["status"] = f["status"]
      row["diverged_step"] = f["at"] if f["status"] == results_lib.STATUS_DIVERGED else None
      row["stopped_step"] = f["at"] if f["status"] == results_lib.STATUS_STOPPED else None
      row["steps"] = f["step"]
      for k in metric_keys:
        row[k] = last.get(k)
      for name, fn in derived.items():
        try:
          row[f"test_{name}"] = float(fn(row))
        except (KeyError, TypeError, ValueError, OverflowError):
          row[f"test_{name}"] = math.nan
      rows.append(row)
    metrics = [k for k in rows[0] if k.startswith(("train_", "test_"))] if rows else []
    target, mode = results_lib.default_target(metrics)
    settings = {i: {str(k): keys.plain(v) for k, v in s.items()}
                for i, s in enumerate(plan.variants)}
    return results_lib.Results(
        rows, self.history, swept=[plan.column(k) for k in plan.swept], target=target,
        mode=mode, groups=self.groups, settings=settings, states=self.states,
        seconds=seconds, metrics=metrics)

