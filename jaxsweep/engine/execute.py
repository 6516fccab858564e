"""Execution: the sweep's clock, from the first boundary to the last.

The third stage of the engine. Every group of the plan is built and checked
(:mod:`jaxsweep.engine.program`) before anything trains; then::

  prepare    resume, lanes, memory; the scheduler starts on the whole plan
  repeat:
    for each group with a boundary at the next step of the clock:
      open       compile (in the background one group ahead), initialise or
                 restore its population, evaluate at step 0
      advance    one period: ``eval_every`` steps and an evaluation, every
                 chunk of the population, compiled, on every device
    decide     the scheduler sees every variant at that step (Boundary) and
               answers: stop, copy, fork, assign (Decision)
    settle     stopped variants leave; a group that has finished records it
    persist    checkpoint when due, at a group's end, or on a signal

A *period* is a slice of training time; a *chunk* is a slice of a group's
population. With a ``sweep_wide`` scheduler (halving, Hyperband, PBT) the
clock is shared: every group reaches a step before the scheduler is asked,
so what it decides never depends on how the planner split the sweep into
groups. Otherwise groups run start to end one after the other (the same
results, fewer swaps). See :mod:`jaxsweep.engine.scheduling`.

SIGINT and SIGTERM (:mod:`jaxsweep.signals`): the current period finishes,
the sweep is saved (with a checkpoint directory) and :class:`Interrupted`
is raised; a second signal stops at once.

Events (dicts with an ``"event"`` key: ``start``, ``compiling``, ``group``,
``compiled``, ``period``, ``checkpoint``, ``done``) go to a callback;
printing them is the report layer's job (:class:`jaxsweep.report.ProgressPrinter`).
"""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxsweep import results as results_lib
from jaxsweep import signals
from jaxsweep.engine import checkpoint as ckpt_lib
from jaxsweep.engine import distributed, scheduling, sharding, sizing, strategy, xla_cache
from jaxsweep.engine import fingerprint as fingerprint_lib
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import population as population_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import record as record_lib

# Seconds between checkpoints by default (at the next period boundary).
CHECKPOINT_EVERY = 300.0
# The protocol lives in a leaf module; these names are the engine's public ones.
Boundary = scheduling.Boundary
Decision = scheduling.Decision
Grid = scheduling.Grid
Scheduler = scheduling.Scheduler


# Raised at a period boundary after saving; defined in the JAX-free leaf
# module so that reading a run directory needs no engine (issue #24).
Interrupted = signals.Interrupted


def execute(plan: plan_lib.Plan, *, mesh=None, lanes: int | str | None = None,
            chunk_size: int | None = None, memory_budget: int | str | None = None,
            scheduler: Scheduler | None = None,
            callback: Callable[[dict], None] | None = None,
            checkpoint_dir: str | None = None,
            checkpoint_every: float = CHECKPOINT_EVERY,
            resume: bool = False, unstable_factor: float | None = None,
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
      :mod:`jaxsweep.engine.strategy`), or ``None``: a fixed rule from the
      model's forward FLOPs (:func:`jaxsweep.engine.strategy.rule`). The
      choice and its source are in each group's info (``Results.groups``).
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
      ends no better than chance). Default (None):
      :data:`jaxsweep.engine.record.UNSTABLE_FACTOR`.
    target, mode: the metric the results are ranked on, and whether higher
      is better (default: the task's validation metric); schedulers decide on
      it unless told otherwise.

  Raises:
    ConfigError: for a group that does not fit even one lane per device, or
      an ``unstable_factor`` not above 1.
    CheckpointError: for a checkpoint of another sweep, or a corrupt one.
    Interrupted: when SIGINT/SIGTERM stopped the run (after saving).
  """
  unstable_factor = record_lib.unstable_factor(unstable_factor)
  mesh = sharding.make_mesh() if mesh is None else mesh
  scheduler = scheduling.check(Grid() if scheduler is None else scheduler)
  primary = jax.process_index() == 0
  # One table, printed once: the other processes stay silent.
  emit = (callback if callback is not None and primary else (lambda event: None))
  t_start = time.perf_counter()
  # --- Prepare: resume, layout, memory; every group built and checked. ---
  fingerprint = fingerprint_lib.fingerprint(plan)
  reader = (ckpt_lib.Reader(checkpoint_dir, fingerprint=fingerprint)
            if resume and ckpt_lib.exists(checkpoint_dir) else None)
  snap = reader.snapshot() if reader else ckpt_lib.Snapshot(fingerprint)
  groups = [_Group(plan, g, snap) for g in plan.groups]
  pending = [gr for gr in groups if not gr.done]
  # Build and check every group first (abstractly: nothing compiles), so that
  # errors come before any training, and before the lanes rule traces the
  # model. The first group to train compiles next: its compile traces the
  # training period before anything else (and reports its errors as check()
  # does), so check() leaves that trace out for it.
  built_of = {}
  for gr in groups:
    built_of[gr.index] = gr.built = program_lib.build(plan, gr.group)
    program_lib.check(plan, gr.group, gr.built,
                      period=not pending or gr is not pending[0])
  choice_of = _choose_lanes(plan, groups, snap, mesh, lanes)
  limit = memory_lib.available(mesh, memory_budget)
  for gr in groups:
    sizing.check_fits(plan, gr.group, gr.built, mesh, limit, lanes=gr.choice.lanes)
  writer = ckpt_lib.Writer(checkpoint_dir) if checkpoint_dir and primary else None
  saver = _Saver(writer, bool(checkpoint_dir), snap, checkpoint_every, emit)
  emit({"event": "start", "variants": plan.num_variants, "groups": len(plan.groups),
        "devices": mesh.devices.size, "processes": jax.process_count(),
        "lanes": sorted({c.lanes for c in choice_of.values()}),
        "memory_limit_per_device": limit and limit.per_device,
        "memory_source": limit and limit.source,
        "sweep_wide": scheduler.sweep_wide,
        "resumed_from": reader.path if reader else None})
  scheduler.start(plan, {gr.index: gr.settings for gr in groups})
  if "scheduler" in snap.extra:
    scheduler.load_state_dict(snap.extra["scheduler"])
  compiler = _Compiler(plan, mesh, limit, built_of, choice_of, snap, chunk_size)
  # The compiling thread is shut down however this ends (an error restoring
  # a checkpoint too): a failed run does not wait for a compile nobody needs.
  with compiler:
    if pending:
      compiler.submit(pending[0].group)
    record = _make_record(plan, snap, built_of, unstable_factor)
    if reader is not None:
      _restore_done(reader, writer, record, plan, built_of, mesh)
    for gr in groups:
      if gr.done:  # Finished before a resume.
        record.groups.append(snap.extra["group_info"][str(gr.index)])
    ctx = _Context(plan, mesh, emit, record, saver, compiler, reader, snap, pending)
    snap.live = {}  # Read by the groups; a checkpoint writes what is live then.
    # --- The clock: train to each boundary, decide, persist. ---
    with signals.deferred():
      for gr in pending:
        if gr.resumed is not None:  # Live when saved: back on the devices first.
          gr.open(ctx)
      while True:
        at = _next_boundary(pending, scheduler.sweep_wide)
        if not at:
          break
        step = at[0].next_step
        for gr in at:
          if gr.pop is None:
            gr.open(ctx)
          gr.advance(ctx)
        decision = scheduler.boundary(_boundary(at, step, target, record.task))
        _apply(decision, at, record, step)
        for gr in at:
          gr.settle(ctx)
        ctx.park_between_turns()
        more = any(not gr.done for gr in pending)
        stopping = more and distributed.agree_any(signals.requested() is not None)
        # A finished group is saved at once (a crash later costs none of it).
        if stopping or any(gr.done for gr in at) or (more and saver.due()):
          saved_to = saver.save(scheduler, step, [gr for gr in pending if gr.live])
          if stopping:
            raise Interrupted(signals.requested() or signal.SIGTERM, step, saved_to)
  seconds = time.perf_counter() - t_start
  emit({"event": "done", "seconds": seconds})
  record.groups.sort(key=lambda info: info["group"])
  res = record.results(seconds=seconds, columns=scheduler.columns())
  return res if target is None and mode is None else res.ranked(target, mode)


class _Context:
  """What every group's steps share within one :func:`execute` call."""

  def __init__(self, plan, mesh, emit, record, saver, compiler, reader, snap, pending):
    self.plan, self.mesh, self.emit, self.record = plan, mesh, emit, record
    self.saver, self.compiler, self.reader, self.snap = saver, compiler, reader, snap
    self.pending: list[_Group] = pending
    self._placed: dict[int, Any] = {}

  def data(self, dataset) -> Any:
    """The dataset on the devices, placed once and shared by its groups."""
    if id(dataset) not in self._placed:
      if not any(gr.live and gr.built.dataset is not dataset for gr in self.pending):
        self._placed.clear()  # Free the device copies nothing live trains on.
      self._placed[id(dataset)] = program_lib.device_data(dataset, self.mesh)
    return self._placed[id(dataset)]

  def park_between_turns(self) -> None:
    """With several groups live at once on an accelerator, each waits its turn
    on the host (each was sized to fit the devices alone)."""
    live = [gr for gr in self.pending if gr.live]
    if len(live) > 1 and self.mesh.devices.flat[0].platform != "cpu":
      for gr in live:
        gr.pop.park()


def _next_boundary(pending: list[_Group], sweep_wide: bool) -> list[_Group]:
  """The groups that train to the next boundary of the clock.

  A sweep-wide scheduler sees every group at each step: the earliest next
  boundary of any group, with every group that has it. Otherwise groups run
  start to end one after the other (the same results, fewer swaps).
  """
  live = [gr for gr in pending if not gr.done]
  if not live:
    return []
  if not sweep_wide:
    return [live[0]]
  step = min(gr.next_step for gr in live)
  return [gr for gr in live if gr.next_step == step]


def _boundary(at: list[_Group], step: int, target: str | None,
              task: str | None) -> scheduling.Boundary:
  """What the scheduler sees: every variant of the groups at ``step``."""
  rows = sorted((v, gr) for gr in at for v in gr.pop.variants)
  variants = tuple(v for v, _ in rows)
  names = list(dict.fromkeys(k for v, gr in rows for k in gr.stats[v]))
  metrics = {k: np.asarray([gr.stats[v].get(k, np.nan) for v, gr in rows], np.float64)
             for k in names}
  return scheduling.Boundary(
      step=step, variants=variants,
      groups=np.asarray([gr.index for _, gr in rows], np.int64),
      metrics=metrics, stopped=np.asarray([gr.halted[v] for v, gr in rows], bool),
      final=np.asarray([step >= gr.settings.steps for _, gr in rows], bool),
      target=target or results_lib.default_target(names, task)[0])


def _apply(decision: scheduling.Decision, at: list[_Group], record: record_lib.Record,
           step: int) -> None:
  """Applies a decision to the groups it names (copies only within a group)."""
  group_of = {v: gr for gr in at for v in gr.pop.variants}
  unknown = sorted({*decision.stop, *decision.copy, *decision.copy.values(),
                    *decision.assign, *decision.fork} - set(group_of))
  if unknown:
    raise ValueError(f"the scheduler named variants {unknown} that are not at step {step}")
  across = {d: s for d, s in decision.copy.items() if group_of[d] is not group_of[s]}
  if across:
    raise ValueError(f"the scheduler copied across compile groups ({across}): a copy "
                     "needs the same program; pick partners within b.groups")
  for gr in at:
    mine = set(gr.pop.variants)
    copy = {d: s for d, s in decision.copy.items() if d in mine}
    if copy:
      gr.pop.copy(copy)
      record.copied(copy, step)
    fork = {v: salt for v, salt in decision.fork.items() if v in mine}
    if fork:
      gr.pop.fork(fork)
      record.forked(fork, step)
    assign = {v: vals for v, vals in decision.assign.items() if v in mine}
    if assign:
      gr.pop.assign(assign)
      record.assigned(assign, step)
    stop = sorted(v for v in decision.stop if v in mine)
    if stop:
      gr.pop.stop(stop)
      gr.halted.update({v: True for v in stop})


class _Group:
  """One compile group's training on the sweep's clock.

  Opened (compiled, initialised or restored, evaluated at step 0) when it
  first trains; advanced one period at a time; settled after each decision
  (stopped variants leave, a finished group records its results).
  """

  def __init__(self, plan: plan_lib.Plan, group: plan_lib.Group, snap: ckpt_lib.Snapshot):
    self.plan, self.group = plan, group
    self.choice: strategy.LanesChoice | None = None  # Lanes, chosen once every group is checked.
    self.index = group.index
    self.built = None
    saved = snap.groups.get(group.index, {})
    self.done = bool(saved.get("done"))
    self.resumed = snap.live.get(group.index)      # Its population in a checkpoint.
    self.periods = self.resumed["periods"] if self.resumed else 0  # Trained so far.
    self.pop: population_lib.Population | None = None
    self.info: dict[str, Any] = {}
    self.stats: dict[int, dict] = {}      # The last period's metrics per variant.
    self.halted: dict[int, bool] = {}     # Diverged or stopped, per live variant.
    self.train_seconds = 0.0
    self.variant_steps = 0                # Trained in this process (for throughput).
    self.first = self.periods             # The period this process started from.

  @property
  def settings(self):
    return self.built.program.settings

  @property
  def live(self) -> bool:
    return self.pop is not None and not self.done

  def step_at(self, periods: int) -> int:
    """The step after ``periods`` calls of the period (``TrainSettings.boundaries``:
    with ``first_eval``, the first call takes only that many steps)."""
    return self.settings.boundaries()[periods - 1] if periods else 0

  @property
  def next_step(self) -> int:
    return self.step_at(self.periods + 1)

  def open(self, ctx: _Context) -> None:
    """Compiles (or collects the background compile), then starts the population."""
    plan, group, mesh = ctx.plan, self.group, ctx.mesh
    if not ctx.compiler.ready(self.index):
      ctx.emit({"event": "compiling", "group": self.index, "num_groups": len(plan.groups)})
    estimate, timings, hits = ctx.compiler.get(self.index)
    later = [gr for gr in ctx.pending if gr.index > self.index and gr.pop is None]
    if later:  # Compiled in the background while this group trains.
      ctx.compiler.submit(later[0].group)
    size, lanes = estimate.chunk_size, self.choice.lanes
    ctx.snap.groups.setdefault(self.index, {"chunk_size": size, "done": False, "lanes": lanes})
    n = len(group.members)
    self.info = {"group": self.index, "variants": n, "chunk_size": size, "lanes": lanes,
                 "lanes_source": self.choice.source, "lanes_detail": self.choice.detail,
                 "padding": estimate.padding, "static": group.describe(),
                 "dynamic": [plan.column(k) for k in group.traced
                             if k in plan.swept or k in group.choices],
                 "compile_seconds": 0.0, "compile_cache_hits": hits, "train_seconds": 0.0,
                 **estimate.as_dict()}
    data = ctx.data(self.built.dataset)
    ctx.emit({"event": "group", **self.info, "steps": self.settings.steps,
              "num_groups": len(plan.groups), "dataset": self.built.dataset.describe()})

    def compile_for(chunk, built=self.built):
      return program_lib.compile(
          built, mesh, program_lib.abstract_population(plan, group, chunk, mesh), data,
          lanes=lanes, timings=timings)

    compile_for(size)
    self.info["compile_seconds"] = sum(timings)
    if timings:
      ctx.emit({"event": "compiled", "group": self.index,
                "seconds": self.info["compile_seconds"], "cache_hits": hits,
                "background": ctx.compiler.was_background(self.index)})
    self.pop = population_lib.Population(plan, group, self.built, mesh, lanes, data,
                                         compile_for)
    t0 = time.perf_counter()
    live, self.resumed = self.resumed, None
    if live is None:
      self.pop.start([m for m in group.members if m not in ctx.record.finals], size)
      stats, flags = self.pop.run(steps=0)  # The evaluation at step 0.
      ctx.record.period(self.index, stats, 0)
    else:
      self.pop.restore([
          (members, ctx.reader.live_arrays(self.index, c, ckpt_lib.host_structure(
              self.pop.abstract(len(members)))))
          for c, (members, _) in enumerate(live["chunks"])])
      flags = {v: (False, False) for v in self.pop.variants}
    self.halted = {v: d or st for v, (d, st) in flags.items()}
    self.train_seconds += time.perf_counter() - t0

  def advance(self, ctx: _Context) -> None:
    """Trains every live variant of the group for one period."""
    t0 = time.perf_counter()
    before = self.step_at(self.periods)
    running = sum(not h for h in self.halted.values())
    step = self.step_at(self.periods + 1)
    self.stats, flags = self.pop.run(steps=step - before)
    self.periods += 1
    self.halted = {v: d or st for v, (d, st) in flags.items()}
    ctx.record.period(self.index, self.stats, step)
    self.train_seconds += time.perf_counter() - t0
    # Only the variants that trained count (a stopped one skips its period).
    self.variant_steps += running * (step - before)
    n = len(self.group.members)
    ctx.emit({"event": "period", "group": self.index, "chunk_start": 0,
              "chunk_variants": n, "group_variants": n, "running": running,
              "step": step, "steps": self.settings.steps,
              "diverged": sum(d for d, _ in flags.values()),
              "variant_steps_per_s": self.variant_steps / max(self.train_seconds, 1e-9),
              "elapsed": self.train_seconds})

  def settle(self, ctx: _Context) -> None:
    """After the decision: variants that left are recorded; a group with
    nothing left to train finishes."""
    t0 = time.perf_counter()
    left = self.pop.compact(self.halted)
    if left:
      _finish(self.pop, ctx.record, ctx.saver, self.index, self.settings.steps, left)
    if (self.periods < len(self.settings.boundaries())
        and not all(self.halted.values())):
      self.train_seconds += time.perf_counter() - t0
      return
    _finish(self.pop, ctx.record, ctx.saver, self.index, self.settings.steps,
            self.pop.variants)
    self.train_seconds += time.perf_counter() - t0
    self.info["train_seconds"] = self.train_seconds
    self.info["variant_steps"] = sum(ctx.record.finals[i]["step"] for i in self.group.members)
    ctx.snap.groups[self.index]["done"] = self.done = True
    ctx.snap.extra.setdefault("group_info", {})[str(self.index)] = self.info
    ctx.record.groups.append(self.info)
    self.pop = None  # Frees the group's device memory.


def _choose_lanes(plan, groups, snap, mesh, lanes) -> dict[int, strategy.LanesChoice]:
  """Each group's lanes; a resumed sweep keeps the layout it started with
  (its bits depend on it)."""
  for gr in groups:
    saved = snap.groups.get(gr.index)
    gr.choice = (strategy.LanesChoice(saved["lanes"], "resumed") if saved
                 else strategy.choose(plan, gr.group, mesh, lanes))
  return {gr.index: gr.choice for gr in groups}


def _make_record(plan, snap, built_of, unstable_factor) -> record_lib.Record:
  tasks = {built.dataset.task for built in built_of.values()}
  record = record_lib.Record(plan, snap, task=tasks.pop() if len(tasks) == 1 else None,
                             unstable_factor=unstable_factor)
  for group in plan.groups:
    built = built_of[group.index]
    record.derived[group.index] = built.derived
    record.chance[group.index] = program_lib.chance_levels(built.dataset)
    record.params[group.index] = program_lib.num_params(plan, group, built)
  return record


def _restore_done(reader, writer, record, plan, built_of, mesh) -> None:
  """Variants that finished before a resume: their arrays, read back."""
  if writer is not None:
    writer.keep_done(reader.done)
  for name, entry in reader.done.items():
    g = entry["group"]
    record.restore(entry["members"], reader.done_arrays(
        name, ckpt_lib.host_structure(_trained_like(
            built_of[g], program_lib.abstract_population(
                plan, plan.groups[g], len(entry["members"]), mesh)))))


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

  def save(self, scheduler, step: int, live) -> str | None:
    """A checkpoint of the whole sweep: the scheduler, and every live group's
    population at its last boundary (``live``: groups with ``pop`` and ``periods``)."""
    if not self.enabled:
      return None
    self.snap.extra["scheduler"] = scheduler.state_dict()
    self.snap.live = {gr.index: {"periods": gr.periods, "chunks": gr.pop.host_arrays()}
                      for gr in live}
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
