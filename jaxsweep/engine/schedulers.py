"""Schedulers: decisions at the sweep's boundaries, on every variant at once.

Every tuner stops bad trials early, copies good ones or replays what worked;
here the trials are the variants of the sweep, so these decisions are taken
at a boundary of the sweep's clock (:mod:`jaxsweep.engine.scheduling`) with
every variant's validation metric in hand, whichever compile group or chunk
it trains in:

* :class:`~jaxsweep.engine.halving.Halving` (its own module): successive
  halving (Jamieson & Talwalkar 2016), as the inner loop of Hyperband (Li et
  al. 2018): a bracket ``s`` ranks its configurations at rungs
  ``R * eta**(i - s)`` steps and keeps the best ``floor(n_i / eta)``. With
  ``brackets`` it is Hyperband: the population is split into brackets
  ``s = s_max, ..., 0`` in the papers' proportions.
* :class:`~jaxsweep.engine.pbt.PBT` (its own module): population-based
  training (Jaderberg et al. 2017): every ``ready_every`` steps the bottom
  quantile copies the state of a member of the top quantile (exploit) and
  perturbs its hyperparameters (explore).
* :class:`EarlyStopping`: a variant stops when its metric has not improved by
  ``min_delta`` for ``patience`` evaluations.
* :class:`Replay`: applies a recorded hyperparameter schedule (a PBT
  member's) to every variant.
* :class:`Compose`: several of them (stops united).

:func:`make` builds any of them by name; :mod:`jaxsweep.engine.ranking` holds
the ranking they share.

Halving, Hyperband and PBT are ``sweep_wide``: they rank the whole sweep at
once, so the same sweep stops and copies the same configurations whether a
key is grouped or vectorized. Where seeds are swept they rank configurations
by their mean over seeds, and keep or copy whole configurations. Scores are
compared at :data:`jaxsweep.selection.RANK_RTOL`; ties go to sweep order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import lineage as lineage_lib
from jaxsweep.engine import halving
from jaxsweep.engine import pbt
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import ranking
from jaxsweep.engine import scheduling

Boundary = scheduling.Boundary
Decision = scheduling.Decision


class EarlyStopping(scheduling.Base):
  """Stops a variant whose metric has not improved for ``patience`` evaluations.

  Each variant is judged on its own history: not ``sweep_wide``.

  Args:
    patience: evaluations (period boundaries) without improvement allowed.
    min_delta: the least change that counts as an improvement.
    metric, mode: what is watched (default: the run's target).
  """

  name = "early_stopping"

  def __init__(self, *, patience: int = 3, min_delta: float = 0.0,
               metric: str | None = None, mode: str | None = None):
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
      raise errors.ConfigError(f"patience must be a positive integer, got {patience!r}.",
                               key="early_stopping.patience", fix="use e.g. patience: 3")
    if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or min_delta < 0:
      raise errors.ConfigError(f"min_delta must be a number >= 0, got {min_delta!r}.",
                               key="early_stopping.min_delta", fix="use e.g. min_delta: 0.001")
    self.patience, self.min_delta = patience, float(min_delta)
    self.metric, self.mode = metric, mode
    self.best: dict[int, float] = {}
    self.waited: dict[int, int] = {}

  def boundary(self, b: Boundary) -> Decision:
    metric = ranking.metric_of(b, self.metric)
    scores = ranking.score(np.asarray(b.metrics[metric], np.float64),
                           ranking.mode_of(metric, self.mode))
    stop = set()
    for v, s, halted in zip(b.variants, scores, b.stopped, strict=True):
      if halted:
        continue
      s = float(s)
      if v not in self.best or s > self.best[v] + self.min_delta:
        self.best[v], self.waited[v] = max(s, self.best.get(v, -math.inf)), 0
        continue
      self.waited[v] += 1
      if self.waited[v] >= self.patience:
        stop.add(v)
    return Decision(stop=frozenset(stop))

  def state_dict(self) -> dict:
    # JSON has no -inf: a variant with no finite value yet is saved as None.
    return {"best": {str(k): (v if math.isfinite(v) else None) for k, v in self.best.items()},
            "waited": {str(k): v for k, v in self.waited.items()}}

  def load_state_dict(self, d: Mapping) -> None:
    self.best = {int(k): (-math.inf if v is None else float(v))
                 for k, v in d.get("best", {}).items()}
    self.waited = {int(k): int(v) for k, v in d.get("waited", {}).items()}


class Replay(scheduling.Base):
  """Applies a hyperparameter schedule (e.g. a PBT member's) to every variant.

  Args:
    schedule: ``[{"step": s, "set": {key: value}}, ...]`` (as
      :func:`schedule_of` returns); at the boundary at step ``s`` every
      variant's values become the given ones. An entry at step 0 must
      equal the variants' own settings (they are what trains from step 0).
  """

  name = "replay"

  def __init__(self, schedule: Sequence[Mapping[str, Any]]):
    try:
      self.schedule = sorted(({"step": int(e["step"]), "set": {str(k): float(x) for k, x in
                                                               dict(e["set"]).items()},
                               **({"fork": int(e["fork"])} if "fork" in e else {})}
                              for e in schedule), key=lambda e: e["step"])
    except (KeyError, TypeError, ValueError) as e:
      raise errors.ConfigError(f"a schedule is a list of {{step, set}} entries ({e}).",
                               key="sweep.method.schedule",
                               fix="write schedule: [{step: 100, set: "
                                   "{optimizer.learning_rate: 0.01}}]") from None

  def start(self, plan: plan_lib.Plan, settings: Mapping[int, Any]) -> None:
    for g in plan.groups:
      if not g.members:
        continue
      s = settings[g.index]
      for e in self.schedule:
        if e["step"] == 0:
          for v in g.members:
            for k, x in e["set"].items():
              if np.float32(plan.variants[v].get(k, math.nan)) != np.float32(x):
                raise errors.ConfigError(
                    f"the schedule sets {k}={x} at step 0, but variant {v} trains with "
                    f"{plan.variants[v].get(k)!r}.", key="sweep.method.schedule",
                    fix=f"set {k}: {x} in the config (the values at step 0)")
        elif e["step"] % s.eval_every or e["step"] >= s.steps:
          raise errors.ConfigError(
              f"the schedule changes values at step {e['step']}, not a boundary before the "
              f"end (eval_every={s.eval_every}, steps={s.steps}).",
              key="sweep.method.schedule",
              fix=f"replay with train.eval_every dividing {e['step']}")

  def boundary(self, b: Boundary) -> Decision:
    values, salt = {}, None
    for e in self.schedule:
      if e["step"] == b.step and b.step > 0:
        values.update(e["set"])
        salt = e.get("fork", salt)
    live = [v for v, halted in zip(b.variants, b.stopped, strict=True) if not halted]
    return Decision(assign={v: values for v in live} if values else {},
                    fork={v: salt for v in live} if salt is not None else {})


class Compose(scheduling.Base):
  """Several schedulers at once: their stops united (copies and values from
  the first that gives them); sweep-wide when any part is."""

  def __init__(self, *parts):
    self.parts = [scheduling.check(p) for p in parts if p is not None]
    self.sweep_wide = any(p.sweep_wide for p in self.parts)

  def start(self, plan, settings) -> None:
    for p in self.parts:
      p.start(plan, settings)

  def boundary(self, b: Boundary) -> Decision:
    stop, copy, assign, fork = set(), {}, {}, {}
    for p in self.parts:
      d = p.boundary(b)
      stop |= set(d.stop)
      copy = copy or dict(d.copy)
      assign = assign or dict(d.assign)
      fork = fork or dict(d.fork)
    return Decision(stop=frozenset(stop), copy=copy, assign=assign, fork=fork)

  def columns(self) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for p in self.parts:
      for v, fields in p.columns().items():
        out.setdefault(v, {}).update(fields)
    return out

  def state_dict(self) -> dict:
    return {str(i): p.state_dict() for i, p in enumerate(self.parts)}

  def load_state_dict(self, d: Mapping) -> None:
    for i, p in enumerate(self.parts):
      if str(i) in d:
        p.load_state_dict(d[str(i)])


# Lineage helpers live with the results (the report layer reads them there).
schedule_of = lineage_lib.schedule_of
root_of = lineage_lib.root_of


def make(method: Any = None, *, early_stopping: Mapping | None = None):
  """A scheduler from a config's ``sweep.method`` and ``early_stopping``.

  Args:
    method: ``None``/``"grid"``/``"random"`` (no decisions), ``"halving"``,
      ``"hyperband"``, ``"pbt"``, ``"replay"``, a mapping ``{name: ...,
      options}``, or a scheduler object.
    early_stopping: ``{patience, min_delta, metric, mode}`` or ``None``.

  Raises:
    ConfigError: for an unknown method or option.
  """
  options: dict[str, Any] = {}
  if isinstance(method, Mapping):
    options = {k: v for k, v in method.items() if k != "name"}
    method = method.get("name")
  if method is None or isinstance(method, str):
    name = method or "grid"
    factories = {"grid": None, "random": None, "halving": halving.Halving,
                 "hyperband": halving.Halving, "pbt": pbt.PBT, "replay": Replay}
    if name in ("tpe", "gp", "qmc"):
      raise errors.ConfigError(
          f"method {name} proposes variants between rounds: it is not a scheduler.",
          key="sweep.method", fix="give it to js.run(method=...) or a config's sweep.method")
    if name not in factories:
      raise errors.unknown_key("sweep.method", [*factories, "tpe", "gp", "qmc"],
                               what="method", name=str(name))
    if name == "hyperband":
      options.setdefault("brackets", "all")  # Li et al.: every bracket s_max..0.
    scheduler = None
    if factories[name] is not None:
      try:
        scheduler = factories[name](**options)
      except TypeError as e:
        raise errors.ConfigError(f"{name}: {e}", key="sweep.method",
                                 fix="see docs/search.md") from e
  elif options:
    raise errors.ConfigError("options go with a method name, not an object.",
                             key="sweep.method")
  else:
    scheduler = scheduling.check(method)
  stopping = None
  if early_stopping:
    if not isinstance(early_stopping, Mapping):
      raise errors.ConfigError("early_stopping must be a mapping.", key="early_stopping",
                               fix="write early_stopping: {patience: 3, min_delta: 0.001}")
    try:
      stopping = EarlyStopping(**early_stopping)
    except TypeError as e:
      raise errors.ConfigError(f"{e}", key="early_stopping",
                               fix="give patience, min_delta, metric or mode") from e
  if scheduler is None or stopping is None:
    return scheduler or stopping
  return Compose(scheduler, stopping)
