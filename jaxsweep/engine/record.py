"""What a sweep produced: history, statuses and the rows of its results.

:class:`Record` gathers every variant's evaluations at period boundaries
and its final state, then builds :class:`~jaxsweep.results.Results`: one row
per variant with its status (``ok``, ``stopped``, ``unstable``,
``diverged``), its final, best and step-0 metrics on every split, its
parameter count and its share of the training time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep.engine import checkpoint as ckpt_lib
from jaxsweep.engine import plan as plan_lib

# A finite run is "unstable" when its training objective ends above this
# multiple of its value at step 0 (or its validation metric at chance).
UNSTABLE_FACTOR = 3.0


def unstable_factor(value: float | None, *, key: str = "unstable_factor",
                    fix: str = "give e.g. unstable_factor=3") -> float:
  """The unstable factor a run uses: ``value``, or :data:`UNSTABLE_FACTOR` for None.

  The one place its default and range live: :func:`jaxsweep.run`, the
  command (:class:`jaxsweep.options.RunOptions`) and a config's ``run:``
  section (:func:`jaxsweep.config.load`) check theirs here and pass them on
  as given (None for the default).

  Args:
    value: the factor, or None.
    key: where it was given, for the error.
    fix: how to write a good one there, for the error.

  Raises:
    ConfigError: for a value that is not a number above 1 (at or below 1 a
      variant that merely did not learn would be unstable).
  """
  if value is None:
    return UNSTABLE_FACTOR
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 1:
    raise errors.ConfigError(f"unstable_factor must be a number above 1, got {value!r}.",
                             key=key, fix=fix)
  return float(value)


# Validation accuracy within this of the majority class's share is chance.
CHANCE_MARGIN = 0.01
# A training objective below this fraction of its step-0 value is learning.
LEARNING = 0.95
# At chance, learning only while the last period took the objective below
# this fraction of its previous value (a slow learning rate on its way down).
STILL_FALLING = 0.99


class Record:
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
    self.params: dict[int, Any] = {}        # group -> parameters per variant (or {variant: n})

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

  def forked(self, salts: Mapping[int, int], step: int) -> None:
    for v, salt in salts.items():
      self.lineage[v].append({"step": step, "fork": int(salt)})

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
    split = target.partition("_")[0]
    prev = history[-2].get("train_objective")
    # Still learning: the objective fell, and (where the validation metric is
    # the majority-class prediction's) is still falling in the last period,
    # not resting where the class frequencies alone put it.
    if start is not None and end is not None and end < LEARNING * start and (
        not _at_chance(last, chance, split)
        or (prev is not None and end < STILL_FALLING * prev)):
      return ""
    for name, worse in (("accuracy", lambda v, c: v <= c + CHANCE_MARGIN),
                        ("nll", lambda v, c: v >= c), ("mse", lambda v, c: v >= c)):
      key = f"{split}_{name}"
      v = last.get(key)
      if key in chance and v is not None and math.isfinite(v) and worse(v, chance[key]):
        return f"{key} ended at {v:.4g}, no better than chance ({chance[key]:.4g})"
    return ""

  def results(self, *, seconds: float, columns: Mapping[int, Mapping] = ()
              ) -> results_lib.Results:
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
      else:
        # A variant stopped early is judged as one trained in full: one that
        # blew up or sits at chance before its stop is unstable, not merely
        # stopped (issue #23); its stopped_step stays.
        note = self._unstable(history, self.chance.get(g, {}), target)
        if note and status == results_lib.STATUS_STOPPED:
          note = f"stopped by the scheduler at step {f['at']}; {note}"
        status = results_lib.STATUS_UNSTABLE if note else status
      row.update({
          "group": g, "status": status, "note": note,
          "diverged_step": f["at"] if f["status"] == results_lib.STATUS_DIVERGED else None,
          "stopped_step": f["at"] if f["status"] == results_lib.STATUS_STOPPED else None,
          "steps": f["step"], "params": _own(self.params.get(g), i), "seconds": share.get(g)})
      row.update(dict(columns).get(i, {}))
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


def _at_chance(last: Mapping[str, float], chance: Mapping[str, float], split: str) -> bool:
  """Whether a classifier's last evaluation is the majority-class prediction's.

  Its accuracy is within :data:`CHANCE_MARGIN` of the majority class's share
  and its nll no better than the labels' entropy (what predicting the class
  frequencies scores): a training objective that fell by learning the class
  frequencies alone is no better than chance (issue #26: breast cancer at lr
  0.1 ended at the majority rate, 0.622, and was ``ok``).
  """
  acc, nll = last.get(f"{split}_accuracy"), last.get(f"{split}_nll")
  c_acc, c_nll = chance.get(f"{split}_accuracy"), chance.get(f"{split}_nll")
  if acc is None or c_acc is None or not math.isfinite(acc) or acc > c_acc + CHANCE_MARGIN:
    return False
  return nll is None or c_nll is None or not math.isfinite(nll) or nll >= LEARNING * c_nll


def _best(history: list[dict], metric: str, mode: str) -> tuple[float, int] | None:
  """The best value of ``metric`` over a variant's evaluations, and its step."""
  values = [(e[metric], e["step"]) for e in history
            if e.get(metric) is not None and math.isfinite(e[metric])]
  if not values:
    return None
  pick = max if mode == "max" else min
  return pick(values, key=lambda vs: (vs[0], -vs[1]) if mode == "max" else (vs[0], vs[1]))


def _own(count, variant: int):
  """A group's parameter count, or a variant's own where they differ."""
  return count.get(variant) if isinstance(count, dict) else count
