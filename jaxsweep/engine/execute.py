"""Execution: the loop over population chunks and eval periods.

The third stage of the engine. For each group of the plan (built and checked
by :mod:`jaxsweep.engine.program` before anything trains)::

  for each chunk of the group's population (memory permitting, one):
    state = init(hparams)                       # or restored from a checkpoint
    for each eval period:
      state, stats = period(state, hparams)     # compiled, on every device
      --- period boundary ---
      record stats; progress event; the scheduler decides;
      checkpoint when due (or when a signal asked to stop)

A *period* is a slice of training time (``eval_every`` steps and an
evaluation); a *chunk* is a slice of the population. The period boundary is
the one place where the run's state is on hand between compiled calls: a
:class:`Scheduler` sees every variant's metrics there and answers which
variants go on and which stop (:class:`Grid`, the plain sweep, lets all go
on), and :mod:`jaxsweep.engine.checkpoint` saves the population there.

SIGINT and SIGTERM are caught while a sweep runs: the current period
finishes, the population is saved (with a checkpoint directory) and
:class:`Interrupted` is raised; a second signal stops at once.

Events (dicts with an ``"event"`` key: ``start``, ``group``, ``compiled``,
``period``, ``checkpoint``, ``done``) go to a callback; printing them is the
report layer's job (:class:`jaxsweep.report.ProgressPrinter`).
"""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

from jaxsweep import results as results_lib
from jaxsweep.engine import checkpoint as ckpt_lib
from jaxsweep.engine import distributed
from jaxsweep.engine import fingerprint as fingerprint_lib
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import population as population_lib
from jaxsweep.engine import record as record_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import sharding
from jaxsweep.engine import sizing
from jaxsweep.engine import strategy
from jaxsweep.engine import xla_cache

# Seconds between checkpoints by default (at the next period boundary).
CHECKPOINT_EVERY = 300.0
# A finite run is "unstable" when its training objective ends above this
# multiple of its value at step 0 (or its validation metric at chance).
UNSTABLE_FACTOR = record_lib.UNSTABLE_FACTOR


class Boundary(NamedTuple):
  """What a scheduler sees at a period boundary of a group.

  Every chunk of the group has trained to the same step.

  Attributes:
    group: the group's index in the plan.
    variants: plan indices of the group's variants still in its population.
    step: optimisation steps taken so far.
    steps: the group's total steps.
    metrics: metric name -> value per variant (``[len(variants)]``; NaN for
      a variant that skipped the period).
    stopped: per variant, whether it no longer trains (diverged or stopped).
  """

  group: int
  variants: tuple[int, ...]
  step: int
  steps: int
  metrics: Mapping[str, np.ndarray]
  stopped: np.ndarray
  target: str | None = None  # The metric the run ranks on (a scheduler's default).


class Decision(NamedTuple):
  """A scheduler's answer at a boundary (applied in this order).

  Attributes:
    copy: ``{dst: src}``: ``dst`` goes on from ``src``'s run state and
      hyperparameters (population-based training's exploit), keeping its own
      random key.
    assign: ``{variant: {"optimizer.learning_rate": 3e-3, ...}}``: new values
      of traced hyperparameters (explore, or a replayed schedule).
    stop: variants to stop now: they are frozen (their parameters no longer
      change) and their rows say ``stopped`` at this step.
  """

  stop: frozenset[int] = frozenset()
  copy: Mapping[int, int] = {}
  assign: Mapping[int, Mapping[str, float]] = {}


class Scheduler(Protocol):
  """Decides at each period boundary which variants go on.

  Optional methods: ``start_group(plan, group, settings)`` before a group
  trains; ``state_dict()`` / ``load_state_dict(d)`` (JSON-friendly) so a
  resumed sweep continues the scheduler where it was.
  """

  def boundary(self, b: Boundary) -> Decision:
    ...


class Grid:
  """The plain sweep: every variant trains to the end."""

  def boundary(self, b: Boundary) -> Decision:
    del b  # Unused.
    return Decision()


class Interrupted(Exception):
  """A signal stopped the sweep at a period boundary.

  Attributes:
    signum: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
    exit_code: the conventional exit status, ``128 + signum`` (130, 143).
    step: the step the interrupted chunk had reached.
    saved: the checkpoint written, or ``None`` without a checkpoint directory.
  """

  def __init__(self, signum: int, step: int, saved: str | None):
    self.signum, self.step, self.saved = signum, step, saved
    self.exit_code = 128 + signum
    name = signal.Signals(signum).name
    super().__init__(f"{name} at step {step}: "
                     + (f"the population was saved in {saved}" if saved else
                        "nothing was saved (no checkpoint directory)"))


class _SignalGuard:
  """Turns SIGINT/SIGTERM into a flag read at period boundaries (main thread only)."""

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    del frame  # Unused.
    if self.signum is not None:  # A second signal: stop now.
      self.__exit__()
      raise KeyboardInterrupt
    self.signum = signum

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in (signal.SIGINT, signal.SIGTERM):
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()


def execute(plan: plan_lib.Plan, *, mesh=None, lanes: int | str | None = None,
            chunk_size: int | None = None, memory_budget: int | str | None = None,
            scheduler: Scheduler | None = None,
            callback: Callable[[dict], None] | None = None,
            checkpoint_dir: str | None = None,
            checkpoint_every: float = CHECKPOINT_EVERY,
            resume: bool = False, unstable_factor: float = UNSTABLE_FACTOR,
            target: str | None = None, mode: str | None = None) -> results_lib.Results:
  """Trains every variant of a plan and returns its :class:`Results`.

  Every group is built, checked and fitted into memory before any trains, so
  a sweep that cannot fit fails first. In a multi-process run
  (:mod:`jaxsweep.engine.distributed`) every process calls this with the same
  plan and gets the whole results; only process 0 receives progress events
  and writes checkpoints.

  Args:
    plan: from :func:`jaxsweep.engine.plan.make_plan`.
    mesh: the device mesh (default: all devices, axis ``"sweep"``).
    lanes: variants each device computes together (vmapped); a variant's
      results depend on it and on nothing else of the layout. An int, or
      ``"auto"`` (measured once per machine and program, then cached: see
      :mod:`jaxsweep.engine.strategy`), or ``None``: a cached measurement,
      else :func:`jaxsweep.engine.sharding.default_lanes` (1 on CPU).
    chunk_size: at most this many variants per compiled call (default: the
      whole group); padded to whole lanes on every device.
    memory_budget: memory the run may use (``"2GiB"``; see
      :func:`jaxsweep.engine.memory.available`): groups that would not fit are
      trained in chunks that do. Default: each accelerator's memory, or 75 %
      of the available host RAM on CPU.
    scheduler: decides at period boundaries (default: :class:`Grid`).
    callback: receives progress events (dicts with an ``"event"`` key).
    checkpoint_dir: where to save the population at period boundaries
      (:mod:`jaxsweep.engine.checkpoint`); ``None`` saves nothing.
    checkpoint_every: seconds between checkpoints (0: every period boundary);
      a checkpoint is also written when a chunk finishes and on a signal.
    resume: go on from the checkpoint in ``checkpoint_dir`` (finished chunks
      are skipped, a chunk in training restarts from its saved period); the
      results equal an uninterrupted run's bit for bit (but for timings).
    unstable_factor: a run whose training objective ends above this multiple
      of its step-0 value is ``unstable`` (so is one whose validation metric
      ends no better than chance).
    target, mode: the metric the results are ranked on, and whether higher
      is better (default: the task's validation metric); schedulers decide on
      it unless told otherwise.

  Raises:
    ConfigError: for a group that does not fit even one lane per device.
    CheckpointError: for a checkpoint of another sweep, or a corrupt one.
    Interrupted: when SIGINT/SIGTERM stopped the run (after saving).
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  scheduler = Grid() if scheduler is None else scheduler
  primary = jax.process_index() == 0
  # One table, printed once: the other processes stay silent.
  emit = (callback if callback is not None and primary else (lambda event: None))
  fingerprint = fingerprint_lib.fingerprint(plan)
  reader = (ckpt_lib.Reader(checkpoint_dir, fingerprint=fingerprint)
            if resume and ckpt_lib.exists(checkpoint_dir) else None)
  snap = reader.snapshot() if reader else ckpt_lib.Snapshot(fingerprint)
  # A resumed sweep keeps the layout it started with: its bits depend on it.
  choice_of = {}
  for group in plan.groups:
    saved = snap.groups.get(group.index)
    choice_of[group.index] = (strategy.Choice(saved["lanes"], "resumed") if saved
                              else strategy.choose(plan, group, mesh, lanes))
  writer = ckpt_lib.Writer(checkpoint_dir) if checkpoint_dir and primary else None
  saver = _Saver(writer, bool(checkpoint_dir), snap, checkpoint_every, emit)
  t_start = time.perf_counter()
  limit = memory_lib.available(mesh, memory_budget)
  emit({"event": "start", "variants": plan.num_variants, "groups": len(plan.groups),
        "devices": mesh.devices.size, "processes": jax.process_count(),
        "lanes": sorted({c.lanes for c in choice_of.values()}),
        "memory_limit_per_device": limit and limit.per_device,
        "memory_source": limit and limit.source,
        "resumed_from": reader.path if reader else None})
  # Build and check every group first (abstractly: nothing compiles), so that
  # errors come before any training. The first group to train compiles next:
  # its compile traces the training period before anything else (and reports
  # its errors as check() does), so check() leaves that trace out for it.
  built_of = {}
  pending = [g for g in plan.groups if not snap.groups.get(g.index, {}).get("done")]
  for group in plan.groups:
    built = built_of[group.index] = program_lib.build(plan, group)
    program_lib.check(plan, group, built, period=not pending or group is not pending[0])
    sizing.check_fits(plan, group, built, mesh, limit, lanes=choice_of[group.index].lanes)
  compiler = _Compiler(plan, mesh, limit, built_of, choice_of, snap, chunk_size)
  if pending:
    compiler.submit(pending[0])
  tasks = {built.dataset.task for built in built_of.values()}
  record = record_lib.Record(plan, snap, task=tasks.pop() if len(tasks) == 1 else None,
                   unstable_factor=unstable_factor)
  for group in plan.groups:
    built = built_of[group.index]
    record.derived[group.index] = built.derived
    record.chance[group.index] = program_lib.chance_levels(built.dataset)
    record.params[group.index] = program_lib.num_params(plan, group, built)
  data_of: dict[int, Any] = {}
  if reader is not None:
    if writer is not None:
      writer.keep_done(reader.done)
    for name, entry in reader.done.items():  # Variants that finished before.
      g = entry["group"]
      record.restore(entry["members"], reader.done_arrays(
          name, ckpt_lib.host_structure(_trained_like(
              built_of[g], program_lib.abstract_population(
                  plan, plan.groups[g], len(entry["members"]), mesh)))))
  if "scheduler" in snap.extra and hasattr(scheduler, "load_state_dict"):
    scheduler.load_state_dict(snap.extra["scheduler"])
  with _SignalGuard() as guard, compiler:
    for g_pos, group in enumerate(plan.groups):
      built = built_of[group.index]
      settings = built.program.settings
      if snap.groups.get(group.index, {}).get("done"):  # Finished before a resume.
        record.groups.append(snap.extra["group_info"][str(group.index)])
        continue
      if not compiler.ready(group.index):
        emit({"event": "compiling", "group": group.index, "num_groups": len(plan.groups)})
      estimate, timings, hits = compiler.get(group.index)
      later = [g for g in pending if g.index > group.index]
      if later:  # Compiled in the background while this group trains.
        compiler.submit(later[0])
      n, size = len(group.members), estimate.chunk_size
      choice = choice_of[group.index]
      lanes_g = choice.lanes
      saved = snap.groups.setdefault(group.index, {"chunk_size": size, "done": False,
                                                   "lanes": lanes_g})
      info = {"group": group.index, "variants": n, "chunk_size": size, "lanes": lanes_g,
              "lanes_source": choice.source,
              "padding": estimate.padding, "static": group.describe(),
              "dynamic": [plan.column(k) for k in group.traced
                          if k in plan.swept or k in group.choices],
              "compile_seconds": 0.0, "compile_cache_hits": hits, "train_seconds": 0.0,
              **estimate.as_dict()}
      # Placed once per dataset, shared by every group that trains on it.
      if id(built.dataset) not in data_of:
        data_of.clear()  # Free the previous dataset's device copies first.
        data_of[id(built.dataset)] = program_lib.device_data(built.dataset, mesh)
      data = data_of[id(built.dataset)]
      emit({"event": "group", **info, "steps": settings.steps,
            "num_groups": len(plan.groups), "dataset": built.dataset.describe()})

      def compile_for(chunk, built=built, group=group, data=data, timings=timings,
                      lanes_g=lanes_g):
        return program_lib.compile(
            built, mesh, program_lib.abstract_population(plan, group, chunk, mesh), data,
            lanes=lanes_g, timings=timings)

      compile_for(size)
      info["compile_seconds"] = sum(timings)
      if timings:
        emit({"event": "compiled", "group": group.index, "seconds": info["compile_seconds"],
              "cache_hits": hits, "background": compiler.was_background(group.index)})
      pop = population_lib.Population(plan, group, built, mesh, lanes_g, data, compile_for)
      t0 = time.perf_counter()
      live = snap.live.get(group.index)
      if live is None:
        pop.start([m for m in group.members if m not in record.finals], size)
        stats, _ = pop.run(train=False)  # The evaluation at step 0.
        record.period(group.index, stats, 0)
        first = 0
      else:
        pop.restore([(members, reader.live_arrays(group.index, c, ckpt_lib.host_structure(
            pop.abstract(len(members))))) for c, (members, _) in enumerate(live["chunks"])])
        first = live["periods"]
      snap.live = {}
      if hasattr(scheduler, "start_group"):
        scheduler.start_group(plan, group, settings)
      for period in range(first, settings.num_periods):
        stats, flags = pop.run()
        halted = {v: d or st for v, (d, st) in flags.items()}
        # --- The period boundary. ---
        step = min((period + 1) * settings.eval_every, settings.steps)
        record.period(group.index, stats, step)
        elapsed = time.perf_counter() - t0
        variants = pop.variants
        emit({"event": "period", "group": group.index, "chunk_start": 0,
              "chunk_variants": n, "group_variants": n, "step": step,
              "steps": settings.steps, "diverged": sum(d for d, _ in flags.values()),
              "variant_steps_per_s": n * (step - first * settings.eval_every)
                                     / max(elapsed, 1e-9),
              "elapsed": elapsed})
        metrics = {k: np.asarray([stats[v].get(k, np.nan) for v in variants])
                   for k in (stats[variants[0]] if variants else {})}
        decision = scheduler.boundary(Boundary(
            group.index, tuple(variants), step, settings.steps, metrics,
            np.asarray([halted[v] for v in variants]),
            target or results_lib.default_target(list(metrics), record.task)[0]))
        if decision.copy:
          pop.copy(decision.copy)
          record.copied(decision.copy, step)
        if decision.assign:
          pop.assign(decision.assign)
          record.assigned(decision.assign, step)
        if decision.stop:
          pop.stop(sorted(decision.stop))
          halted.update({v: True for v in decision.stop if v in halted})
        left = pop.compact(halted)
        if left:
          _finish(pop, record, saver, group.index, settings.steps, left)
        last = period + 1 == settings.num_periods or all(halted.values())
        stopping = distributed.agree_any(guard.signum is not None)
        if not last and (stopping or saver.due()):
          saved_to = saver.save_live(group.index, period + 1, pop, scheduler, step)
          if stopping:
            raise Interrupted(guard.signum or signal.SIGTERM, step, saved_to)
        if last:
          break  # Nothing left to train in this group.
      info["train_seconds"] = time.perf_counter() - t0
      _finish(pop, record, saver, group.index, settings.steps, pop.variants)
      info["variant_steps"] = sum(record.finals[i]["step"] for i in group.members)
      saved["done"] = True
      snap.extra.setdefault("group_info", {})[str(group.index)] = info
      saver.save_group(scheduler, settings.steps)
      record.groups.append(info)
      more = g_pos != len(plan.groups) - 1
      if more and distributed.agree_any(guard.signum is not None):
        raise Interrupted(guard.signum or signal.SIGTERM, settings.steps, saver.last)
  seconds = time.perf_counter() - t_start
  emit({"event": "done", "seconds": seconds})
  res = record.results(seconds=seconds,
                       columns=scheduler.columns() if hasattr(scheduler, "columns") else {})
  return res if target is None and mode is None else res.ranked(target, mode)


class _Compiler:
  """Compiles groups' programs one ahead: the next group compiles in a
  background thread while the current one trains (XLA compiles on the host;
  on an accelerator the two overlap fully, on a CPU they share its cores).

  A group's job sizes it into memory (:func:`jaxsweep.engine.sizing.plan_memory`,
  which compiles the period at the chunk size) and compiles its init.
  """

  def __init__(self, plan, mesh, limit, built_of, choice_of, snap, chunk_size):
    self.plan, self.mesh, self.limit = plan, mesh, limit
    self.built_of, self.choice_of, self.snap = built_of, choice_of, snap
    self.chunk_size = chunk_size
    self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    self.jobs: dict[int, concurrent.futures.Future] = {}
    self.background: set[int] = set()

  def _job(self, group) -> tuple[Any, list[float], int]:
    built, lanes = self.built_of[group.index], self.choice_of[group.index].lanes
    saved = self.snap.groups.get(group.index)
    timings: list[float] = []
    hits = xla_cache.counts()["hits"]
    data = program_lib.abstract_data(built.dataset, self.mesh)
    chunk = saved["chunk_size"] if saved else self.chunk_size
    # The init at the chunk size asked for compiles while memory planning
    # compiles the period; a plan that picks a smaller chunk compiles its own.
    size = sizing.requested_size(group, self.mesh.devices.size, lanes, chunk)
    program_lib.prefetch_init(
        built, self.mesh, program_lib.abstract_population(self.plan, group, size, self.mesh),
        data, lanes=lanes)
    estimate = sizing.plan_memory(
        self.plan, group, built, self.mesh, lanes=lanes,
        chunk_size=chunk, limit=self.limit, timings=timings)
    program_lib.compile(
        built, self.mesh,
        program_lib.abstract_population(self.plan, group, estimate.chunk_size, self.mesh),
        data, lanes=lanes, timings=timings)
    return estimate, timings, xla_cache.counts()["hits"] - hits

  def submit(self, group) -> None:
    if group.index not in self.jobs:
      self.jobs[group.index] = self.pool.submit(self._job, group)
      if self.jobs and len(self.jobs) > 1:
        self.background.add(group.index)

  def ready(self, index: int) -> bool:
    job = self.jobs.get(index)
    return job is not None and job.done()

  def was_background(self, index: int) -> bool:
    return index in self.background

  def get(self, index: int):
    if index not in self.jobs:
      self.submit(self.plan.groups[index])
    return self.jobs[index].result()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.pool.shutdown(wait=True, cancel_futures=True)


def _trained_like(built, abstract_hp):
  """Shape structs of what :meth:`Population.trained` returns for a chunk."""
  state = jax.eval_shape(built.init, abstract_hp, program_lib.abstract_data(built.dataset))
  return {"params": state.params, "model_state": state.model_state,
          "flags": {"step": state.step, "diverged": state.diverged,
                    "diverged_step": state.diverged_step, "stopped": state.stopped,
                    "stopped_step": state.stopped_step}}


def _finish(pop, record, saver, group: int, steps: int, variants):
  """Records finished variants' results and saves their arrays once."""
  for members, arrays in pop.trained(variants):
    record.final(members, arrays, steps)
    saver.save_done(group, members, arrays, record)


class _Saver:
  """When and what to checkpoint.

  Every process takes part (arrays are gathered from all of them); only the
  primary one has a writer.
  """

  def __init__(self, writer, enabled: bool, snap, every: float, emit):
    self.writer, self.enabled, self.snap, self.every, self.emit = (
        writer, enabled, snap, every, emit)
    self.last_time = time.monotonic()
    self.last: str | None = None

  def due(self) -> bool:
    if not self.enabled:
      return False
    return distributed.agree_any(time.monotonic() - self.last_time >= self.every)

  def _save(self, step: int) -> str | None:
    self.last_time = time.monotonic()
    if self.writer is None:
      return None
    t0 = time.perf_counter()
    self.last = self.writer.save(self.snap)
    self.emit({"event": "checkpoint", "path": self.last, "step": step,
               "seconds": time.perf_counter() - t0})
    return self.last

  def _scheduler(self, scheduler) -> None:
    if hasattr(scheduler, "state_dict"):
      self.snap.extra["scheduler"] = scheduler.state_dict()

  def save_live(self, group, periods, pop, scheduler, step) -> str | None:
    if not self.enabled:
      return None
    self._scheduler(scheduler)
    self.snap.live = {group: {"periods": periods, "chunks": pop.host_arrays()}}
    try:
      return self._save(step)
    finally:
      self.snap.live = {}

  def save_done(self, group, members, arrays, record) -> None:
    for i in members:
      if i is not None:
        self.snap.finals[i] = record.finals[i]
    if self.writer is not None:
      self.writer.save_done(group, members, arrays)

  def save_group(self, scheduler, step) -> None:
    if self.enabled:
      self._scheduler(scheduler)
      self._save(step)
