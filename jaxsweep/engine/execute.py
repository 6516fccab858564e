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
import jax.numpy as jnp
import numpy as np

from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep.engine import checkpoint as ckpt_lib
from jaxsweep.engine import distributed
from jaxsweep.engine import fingerprint as fingerprint_lib
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
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
      step. A stopped variant skips every later period.
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


@jax.jit
def _stop(state, mask):
  """Marks the variants where ``mask`` is set as stopped at their current step."""
  newly = mask & ~state.stopped
  return state._replace(stopped=state.stopped | mask,
                        stopped_step=jnp.where(newly, state.step, state.stopped_step))


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
  with _SignalGuard() as guard:
    for g_pos, group in enumerate(plan.groups):
      built, estimate = built_of[group.index], estimate_of[group.index]
      settings = built.program.settings
      n, size = len(group.members), estimate.chunk_size
      done = set(snap.groups.setdefault(
          group.index, {"chunk_size": size, "chunks_done": []})["chunks_done"])
      info = {"group": group.index, "variants": n, "chunk_size": size, "lanes": lanes,
              "padding": estimate.padding, "static": group.describe(),
              "dynamic": [plan.column(k) for k in group.traced
                          if k in plan.swept or k in group.choices],
              "compile_seconds": 0.0, "train_seconds": 0.0, **estimate.as_dict()}
      chunks = list(enumerate(range(0, n, size)))
      abstract_hp = program_lib.abstract_population(plan, group, size, mesh)
      if all(c in done for c, _ in chunks):  # Finished before a resume.
        for c, c0 in chunks:
          record.restore_done(reader, group.index, c, group.members[c0:c0 + size],
                              built, abstract_hp)
        record.groups.append(info)
        continue
      # Placed once per dataset, shared by every group that trains on it.
      if id(built.dataset) not in data_of:
        data_of.clear()  # Free the previous dataset's device copies first.
        data_of[id(built.dataset)] = program_lib.device_data(built.dataset, mesh)
      data = data_of[id(built.dataset)]
      train, evaluate_only = (program_lib.train_flag(f, mesh) for f in (True, False))
      emit({"event": "group", **info, "steps": settings.steps,
            "num_groups": len(plan.groups), "dataset": built.dataset.describe()})
      # Every chunk has the same shape (the last one padded): one program.
      compiled = program_lib.compile(built, mesh, abstract_hp, data, lanes=lanes,
                                     timings=timings_of[group.index])
      info["compile_seconds"] = sum(timings_of[group.index])
      if info["compile_seconds"]:
        emit({"event": "compiled", "group": group.index, "seconds": info["compile_seconds"]})
      for c, c0 in chunks:
        members = tuple(group.members[c0:c0 + size])
        if c in done:
          record.restore_done(reader, group.index, c, members, built, abstract_hp)
          continue
        t0 = time.perf_counter()
        state, hp_dev, first = _start_chunk(plan, group, c, members, size, mesh, data,
                                            compiled, reader, snap)
        if first == 0:  # The evaluation at step 0: the baseline of every metric.
          state, stats = compiled.period(state, hp_dev, data, evaluate_only)
          record.period(group.index, members, 0,
                        {k: v[:len(members)] for k, v in sharding.to_host(stats).items()})
        for period in range(first, settings.num_periods):
          state, stats = compiled.period(state, hp_dev, data, train)
          # --- The period boundary. ---
          host = sharding.to_host({"stats": stats, "diverged": state.diverged,
                                   "stopped": state.stopped})
          step = min((period + 1) * settings.eval_every, settings.steps)
          live = len(members)
          halted = host["diverged"][:live] | host["stopped"][:live]
          metrics = {k: v[:live] for k, v in host["stats"].items()}
          record.period(group.index, members, step, metrics)
          elapsed = time.perf_counter() - t0
          emit({"event": "period", "group": group.index, "chunk_start": c0,
                "chunk_variants": live, "group_variants": n, "step": step,
                "steps": settings.steps, "diverged": int(host["diverged"][:live].sum()),
                "variant_steps_per_s": live * step / max(elapsed, 1e-9),
                "elapsed": elapsed})
          decision = scheduler.boundary(
              Boundary(group.index, members, step, settings.steps, metrics, halted))
          if decision.stop:
            mask = np.zeros(size, bool)
            mask[[j for j, i in enumerate(members) if i in decision.stop]] = True
            state = _stop(state, sharding.put_population(mask, mesh))
            halted = halted | mask[:live]
          last = period + 1 == settings.num_periods or halted.all()
          stopping = distributed.agree_any(guard.signum is not None)
          if not last and (stopping or saver.due()):
            saved = saver.save_live(group.index, c, period + 1, state, hp_dev, step)
            if stopping:
              raise Interrupted(guard.signum or signal.SIGTERM, step, saved)
          if last:
            break  # Nothing left to train in this chunk.
        info["train_seconds"] += time.perf_counter() - t0
        trained = ckpt_lib.to_host(checkpoint_arrays(state))
        record.final(members, trained, settings.steps)
        saver.save_done(group.index, c, members, trained, record)
        more = (g_pos, c) != (len(plan.groups) - 1, chunks[-1][0])
        if more and distributed.agree_any(guard.signum is not None):
          raise Interrupted(guard.signum or signal.SIGTERM, settings.steps, saver.last)
      record.groups.append(info)
  seconds = time.perf_counter() - t_start
  emit({"event": "done", "seconds": seconds})
  return record.results(seconds=seconds)


def checkpoint_arrays(state) -> dict:
  """What a finished chunk keeps: trained variables and the status flags."""
  return {"params": state.params, "model_state": state.model_state,
          "flags": {"step": state.step, "diverged": state.diverged,
                    "diverged_step": state.diverged_step, "stopped": state.stopped,
                    "stopped_step": state.stopped_step}}


def _start_chunk(plan, group, c, members, size, mesh, data, compiled, reader, snap):
  """A chunk's initial (or restored) state, its hparams on device, and the
  first period to run."""
  hp = sharding.pad(plan_lib.stack_hparams(plan, group, members), size)
  saved = snap.live.get((group.index, c))
  if saved is None or reader is None:
    hp_dev = sharding.put_population(hp, mesh)
    state = compiled.init(hp_dev, data)
    if len(members) < size:  # Padding slots skip every period.
      mask = np.arange(size) >= len(members)
      state = _stop(state, sharding.put_population(mask, mesh))
    return state, hp_dev, 0
  periods, _ = snap.live.pop((group.index, c))
  abstract = {"state": compiled.state, "hp": hp}
  arrays = reader.live_arrays(group.index, c, ckpt_lib.host_structure(abstract))
  restored = ckpt_lib.from_host(arrays, abstract,
                                lambda t: sharding.put_population(t, mesh))
  return restored["state"], restored["hp"], periods


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

  def save_live(self, group, chunk, periods, state, hp, step) -> str | None:
    if not self.enabled:
      return None
    self.snap.live = {(group, chunk): (periods, ckpt_lib.to_host({"state": state, "hp": hp}))}
    try:
      return self._save(step)
    finally:
      self.snap.live = {}

  def save_done(self, group, chunk, members, trained, record) -> None:
    self.snap.groups[group]["chunks_done"].append(chunk)
    for i in members:
      self.snap.finals[i] = record.finals[i]
    if self.writer is not None:
      self.writer.save_done(group, chunk, trained)
    if self.enabled:
      self._save(record.finals[members[0]]["step"])


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
    self.derived: dict[int, Mapping] = {}   # group -> derived metrics
    self.chance: dict[int, dict] = {}       # group -> chance levels
    self.params: dict[int, int] = {}        # group -> parameters per variant

  def period(self, group: int, members: Sequence[int], step: int,
             metrics: Mapping[str, np.ndarray]) -> None:
    derived = self.derived.get(group, {})
    for j, i in enumerate(members):
      entry = {k: float(v[j]) for k, v in metrics.items()
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

  def final(self, members: Sequence[int], trained, steps: int) -> None:
    """A chunk's last state (host arrays): statuses, steps, trained parameters."""
    flags = trained["flags"]
    for j, i in enumerate(members):
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

  def restore_done(self, reader, group, chunk, members, built, abstract_hp) -> None:
    """A chunk finished before a resume: its trained arrays from the checkpoint."""
    like = jax.eval_shape(lambda hp, data: checkpoint_arrays(built.init(hp, data)),
                          abstract_hp, program_lib.abstract_data(built.dataset))
    arrays = reader.done_arrays(group, chunk, ckpt_lib.host_structure(like))
    for j, i in enumerate(members):
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
        seconds=seconds, metrics=[*metric_keys, f"best_{target}"])


def _best(history: list[dict], metric: str, mode: str) -> tuple[float, int] | None:
  """The best value of ``metric`` over a variant's evaluations, and its step."""
  values = [(e[metric], e["step"]) for e in history
            if e.get(metric) is not None and math.isfinite(e[metric])]
  if not values:
    return None
  pick = max if mode == "max" else min
  return pick(values, key=lambda vs: (vs[0], -vs[1]) if mode == "max" else (vs[0], vs[1]))
