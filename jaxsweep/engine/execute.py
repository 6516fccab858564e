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

import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep.engine import checkpoint as ckpt_lib
from jaxsweep.engine import distributed
from jaxsweep.engine import fingerprint as fingerprint_lib
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import population as population_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import sharding

# Seconds between checkpoints by default (at the next period boundary).
CHECKPOINT_EVERY = 300.0
# A finite run is "unstable" when its training objective ends above this
# multiple of its value at step 0 (or its validation metric at chance).
UNSTABLE_FACTOR = 3.0
# Validation accuracy within this of the majority class's share is chance.
CHANCE_MARGIN = 0.01
# A training objective below this fraction of its step-0 value is learning.
LEARNING = 0.95


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


def execute(plan: plan_lib.Plan, *, mesh=None, lanes: int | None = None,
            chunk_size: int | None = None, memory_budget: int | str | None = None,
            scheduler: Scheduler | None = None,
            callback: Callable[[dict], None] | None = None,
            checkpoint_dir: str | None = None,
            checkpoint_every: float = CHECKPOINT_EVERY,
            resume: bool = False,
            unstable_factor: float = UNSTABLE_FACTOR) -> results_lib.Results:
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
      results depend on it and on nothing else of the layout. Default:
      :func:`jaxsweep.engine.sharding.default_lanes` (1 on CPU).
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
  snap = reader.snapshot() if reader else ckpt_lib.Snapshot(fingerprint, 0)
  # A resumed sweep keeps the layout it started with: its bits depend on it.
  lanes = snap.lanes or (sharding.default_lanes(mesh) if lanes is None else int(lanes))
  snap.lanes = lanes
  writer = ckpt_lib.Writer(checkpoint_dir) if checkpoint_dir and primary else None
  saver = _Saver(writer, bool(checkpoint_dir), snap, checkpoint_every, emit)
  t_start = time.perf_counter()
  limit = memory_lib.available(mesh, memory_budget)
  emit({"event": "start", "variants": plan.num_variants, "groups": len(plan.groups),
        "devices": mesh.devices.size, "processes": jax.process_count(), "lanes": lanes,
        "memory_limit_per_device": limit and limit.per_device,
        "memory_source": limit and limit.source,
        "resumed_from": reader.path if reader else None})
  # Build, check and size every group first: errors come before any training.
  built_of, estimate_of, timings_of = {}, {}, {}
  for group in plan.groups:
    built = built_of[group.index] = program_lib.build(plan, group)
    program_lib.check(plan, group, built)
    timings_of[group.index] = []
    saved = snap.groups.get(group.index)
    estimate_of[group.index] = program_lib.plan_memory(
        plan, group, built, mesh, lanes=lanes,
        chunk_size=saved["chunk_size"] if saved else chunk_size, limit=limit,
        timings=timings_of[group.index])
  tasks = {built.dataset.task for built in built_of.values()}
  record = _Record(plan, snap, task=tasks.pop() if len(tasks) == 1 else None,
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
  with _SignalGuard() as guard:
    for g_pos, group in enumerate(plan.groups):
      built, estimate = built_of[group.index], estimate_of[group.index]
      settings = built.program.settings
      n, size = len(group.members), estimate.chunk_size
      saved = snap.groups.setdefault(group.index, {"chunk_size": size, "done": False})
      info = {"group": group.index, "variants": n, "chunk_size": size, "lanes": lanes,
              "padding": estimate.padding, "static": group.describe(),
              "dynamic": [plan.column(k) for k in group.traced
                          if k in plan.swept or k in group.choices],
              "compile_seconds": 0.0, "train_seconds": 0.0, **estimate.as_dict()}
      if saved["done"]:  # Finished before a resume.
        record.groups.append(info)
        continue
      # Placed once per dataset, shared by every group that trains on it.
      if id(built.dataset) not in data_of:
        data_of.clear()  # Free the previous dataset's device copies first.
        data_of[id(built.dataset)] = program_lib.device_data(built.dataset, mesh)
      data = data_of[id(built.dataset)]
      emit({"event": "group", **info, "steps": settings.steps,
            "num_groups": len(plan.groups), "dataset": built.dataset.describe()})
      timings = timings_of[group.index]
      compiled_n = len(timings)

      def compile_for(chunk, built=built, group=group, data=data, timings=timings):
        return program_lib.compile(
            built, mesh, program_lib.abstract_population(plan, group, chunk, mesh), data,
            lanes=lanes, timings=timings)

      compile_for(size)
      info["compile_seconds"] = sum(timings)
      if len(timings) > compiled_n:
        emit({"event": "compiled", "group": group.index, "seconds": info["compile_seconds"]})
      pop = population_lib.Population(plan, group, built, mesh, lanes, data, compile_for)
      t0 = time.perf_counter()
      live = snap.live if snap.live and snap.live["group"] == group.index else None
      if live is None:
        pop.start([m for m in group.members if m not in record.finals], size)
        stats, _ = pop.run(train=False)  # The evaluation at step 0.
        record.period(group.index, stats, 0)
        first = 0
      else:
        pop.restore([(members, reader.live_arrays(c, ckpt_lib.host_structure(
            pop.abstract(len(members))))) for c, (members, _) in enumerate(live["chunks"])])
        first = live["periods"]
      snap.live = None
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
            np.asarray([halted[v] for v in variants])))
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
      saver.save_group(scheduler, settings.steps)
      record.groups.append(info)
      more = g_pos != len(plan.groups) - 1
      if more and distributed.agree_any(guard.signum is not None):
        raise Interrupted(guard.signum or signal.SIGTERM, settings.steps, saver.last)
  seconds = time.perf_counter() - t_start
  emit({"event": "done", "seconds": seconds})
  return record.results(seconds=seconds)


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
    self.snap.live = {"group": group, "periods": periods, "chunks": pop.host_arrays()}
    try:
      return self._save(step)
    finally:
      self.snap.live = None

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


class _Record:
  """What the run produced, gathered at period boundaries and chunk ends."""

  def __init__(self, plan: plan_lib.Plan, snap: ckpt_lib.Snapshot, *, task: str | None,
               unstable_factor: float):
    self.plan = plan
    self.task = task
    self.unstable_factor = unstable_factor
    self.history = snap.history
    for i in range(plan.num_variants):
      self.history.setdefault(i, [])
    self.finals = snap.finals
    self.states: dict[int, tuple[Any, int]] = {}
    self.groups: list[dict] = []
    # Copies and new values a scheduler gave each variant (JSON: str keys).
    self.lineage = {int(k): v for k, v in snap.extra.get("lineage", {}).items()}
    for i in range(plan.num_variants):
      self.lineage.setdefault(i, [])
    snap.extra["lineage"] = self.lineage
    self.derived: dict[int, Mapping] = {}   # group -> derived metrics
    self.chance: dict[int, dict] = {}       # group -> chance levels
    self.params: dict[int, int] = {}        # group -> parameters per variant

  def period(self, group: int, stats: Mapping[int, Mapping[str, float]], step: int) -> None:
    """One evaluation of every variant in ``stats`` (variant -> metrics)."""
    derived = self.derived.get(group, {})
    for i, values in stats.items():
      entry = {k: v for k, v in values.items()
               if not (step == 0 and k == "batch_objective")}  # No batch at step 0.
      if all(math.isnan(v) for v in entry.values()):
        continue  # It skipped this period (it stopped or diverged before).
      for key, value in list(entry.items()):
        split, _, name = key.partition("_")
        for new, (source, fn) in derived.items():
          if name == source:
            try:
              entry[f"{split}_{new}"] = float(fn(value))
            except (ValueError, OverflowError):
              entry[f"{split}_{new}"] = math.nan
      self.history[i].append({"step": step, **entry})

  def copied(self, pairs: Mapping[int, int], step: int) -> None:
    for dst, src in pairs.items():
      self.lineage[dst].append({"step": step, "from": int(src)})

  def assigned(self, values: Mapping[int, Mapping[str, float]], step: int) -> None:
    for i, vals in values.items():
      self.lineage[i].append({"step": step, "set": {k: float(v) for k, v in vals.items()}})

  def final(self, members: Sequence[int | None], trained, steps: int) -> None:
    """Finished variants' host arrays: statuses, steps, trained parameters."""
    flags = trained["flags"]
    for j, i in enumerate(members):
      if i is None:
        continue
      if bool(flags["diverged"][j]):
        status, at = results_lib.STATUS_DIVERGED, int(flags["diverged_step"][j])
      elif bool(flags["stopped"][j]):
        status, at = results_lib.STATUS_STOPPED, int(flags["stopped_step"][j])
      else:
        status, at = results_lib.STATUS_OK, None
      # Steps whose updates were applied: a diverging step is discarded.
      trained_steps = at if at is not None else int(min(flags["step"][j], steps))
      self.finals[i] = {"status": status, "at": at, "step": trained_steps}
      self.states[i] = (trained, j)

  def restore(self, members: Sequence[int | None], arrays) -> None:
    """Variants that finished before a resume: their arrays from the checkpoint."""
    for j, i in enumerate(members):
      if i is not None:
        self.states[i] = (arrays, j)

  def _unstable(self, history: list[dict], chance: Mapping[str, float], target: str) -> str:
    """Why a finite run is not healthy, or ''.

    Unstable when its training objective (eval mode, on the training
    subset) ends above ``unstable_factor`` times its value at step 0, or when
    it did not learn: its validation metric ends no better than the best
    constant prediction while its training objective did not fall (a slow
    learning rate still on its way down is not unstable).
    """
    if len(history) < 2:
      return ""
    first, last = history[0], history[-1]
    start, end = first.get("train_objective"), last.get("train_objective")
    if start is not None and end is not None and start > 0 and (
        end > self.unstable_factor * start or not math.isfinite(end)):
      return (f"the training objective ended at {end:.4g}, {end / start:.3g}x its value "
              "at step 0")
    if start is not None and end is not None and end < LEARNING * start:
      return ""
    split = target.partition("_")[0]
    for name, worse in (("accuracy", lambda v, c: v <= c + CHANCE_MARGIN),
                        ("nll", lambda v, c: v >= c), ("mse", lambda v, c: v >= c)):
      key = f"{split}_{name}"
      v = last.get(key)
      if key in chance and v is not None and math.isfinite(v) and worse(v, chance[key]):
        return f"{key} ended at {v:.4g}, no better than chance ({chance[key]:.4g})"
    return ""

  def results(self, *, seconds: float) -> results_lib.Results:
    plan = self.plan
    metric_keys = list(dict.fromkeys(k for entries in self.history.values()
                                     for e in entries for k in e if k != "step"))
    order = {"val": 0, "test": 1, "train": 2, "batch": 3}
    metric_keys.sort(key=lambda k: order.get(k.partition("_")[0], 4))
    target, mode = results_lib.default_target(metric_keys, self.task)
    group_of = {i: g.index for g in plan.groups for i in g.members}
    share = {g["group"]: g["train_seconds"] / max(g["variants"], 1) for g in self.groups}
    rows = []
    for i, settings in enumerate(plan.variants):
      f, history = self.finals[i], self.history[i]
      last = history[-1] if history else {}
      g = group_of[i]
      row: dict[str, Any] = {"variant": i, "id": plan.ids[i]}
      for k in plan.swept:
        row[plan.column(k)] = keys.plain(settings.get(k))
      status, note = f["status"], ""
      if status == results_lib.STATUS_DIVERGED:
        note = f"a non-finite loss or parameter at step {f['at']}"
      elif status == results_lib.STATUS_OK:
        note = self._unstable(history, self.chance.get(g, {}), target)
        status = results_lib.STATUS_UNSTABLE if note else status
      row.update({
          "group": g, "status": status, "note": note,
          "diverged_step": f["at"] if f["status"] == results_lib.STATUS_DIVERGED else None,
          "stopped_step": f["at"] if f["status"] == results_lib.STATUS_STOPPED else None,
          "steps": f["step"], "params": self.params.get(g), "seconds": share.get(g)})
      for k in metric_keys:
        row[k] = last.get(k)
      best = _best(history, target, mode)
      row[f"best_{target}"], row["best_step"] = best if best else (None, None)
      rows.append(row)
    settings = {i: {str(k): keys.plain(v) for k, v in s.items()}
                for i, s in enumerate(plan.variants)}
    return results_lib.Results(
        rows, self.history, swept=[plan.column(k) for k in plan.swept], target=target,
        mode=mode, groups=self.groups, settings=settings, states=self.states,
        seconds=seconds, metrics=[*metric_keys, f"best_{target}"],
        lineage={i: v for i, v in self.lineage.items() if v})


def _best(history: list[dict], metric: str, mode: str) -> tuple[float, int] | None:
  """The best value of ``metric`` over a variant's evaluations, and its step."""
  values = [(e[metric], e["step"]) for e in history
            if e.get(metric) is not None and math.isfinite(e[metric])]
  if not values:
    return None
  pick = max if mode == "max" else min
  return pick(values, key=lambda vs: (vs[0], -vs[1]) if mode == "max" else (vs[0], vs[1]))
