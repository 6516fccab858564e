"""What a scheduler sees and answers at a boundary of the sweep's clock.

The sweep has one clock, in optimisation steps. A *boundary* is a step at
which some compile groups end an eval period; every variant of those groups
has trained to exactly that step when its scheduler is asked. A scheduler
that compares variants (successive halving, Hyperband, PBT) is
``sweep_wide``: the engine then advances every group to each boundary in
turn and asks once, with every variant of the sweep in hand, so a decision
never depends on how the planner laid the sweep out in groups or chunks. A
scheduler that judges each variant on its own (early stopping, a replayed
schedule, the plain grid) is not, and its groups may train start to end one
after the other (the same results, fewer swaps).

This module is a leaf: :mod:`jaxsweep.engine.execute` drives it and
:mod:`jaxsweep.engine.schedulers` implements it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np


class Boundary(NamedTuple):
  """The sweep at one step of its clock.

  Attributes:
    step: optimisation steps every variant below has taken.
    variants: plan indices of every variant with a boundary at ``step`` (all
      groups), still in its population, in plan order.
    groups: ``[V]`` the compile group of each variant.
    metrics: metric name -> ``[V]`` values (NaN for a variant that skipped
      the period: diverged or stopped).
    stopped: ``[V]`` whether a variant no longer trains (diverged or stopped).
    final: ``[V]`` whether ``step`` is the variant's last step (its group's
      ``steps``): a decision there changes nothing but the record.
    target: the metric the run ranks on (a scheduler's default).
  """

  step: int
  variants: tuple[int, ...]
  groups: np.ndarray
  metrics: Mapping[str, np.ndarray]
  stopped: np.ndarray
  final: np.ndarray
  target: str | None = None


class Decision(NamedTuple):
  """A scheduler's answer at a boundary (applied: copy, fork, assign, stop).

  Attributes:
    copy: ``{dst: src}``: ``dst`` goes on from ``src``'s run state and
      hyperparameters (population-based training's exploit), keeping its own
      random key; both must be in the same compile group (one program, one
      state structure).
    assign: ``{variant: {"optimizer.learning_rate": 3e-3, ...}}``: new values
      of traced hyperparameters (explore, or a replayed schedule).
    stop: variants to stop now: they are frozen (their parameters no longer
      change) and their rows say ``stopped`` at this step.
    fork: ``{variant: salt}``: the variant's random key becomes
      ``fold_in(key, salt)`` (applied after ``copy``). A copy keeps the
      destination's own key, which comes from its seed alone; two members of
      one seed that copied one partner would draw the same batches from then
      on, so PBT forks each destination with its own index. A replayed
      schedule forks at the same steps with the same salts, which makes the
      replay bit-exact.
  """

  stop: frozenset[int] = frozenset()
  copy: Mapping[int, int] = {}
  assign: Mapping[int, Mapping[str, float]] = {}
  fork: Mapping[int, int] = {}


@runtime_checkable
class Scheduler(Protocol):
  """Decides at each boundary which variants go on.

  Attributes:
    sweep_wide: whether :meth:`boundary` compares variants with each other
      (then every group reaches a step before it is asked).
  """

  sweep_wide: bool

  def start(self, plan: Any, settings: Mapping[int, Any]) -> None:
    """Before anything trains: the plan and each group's settings (``steps``,
    ``eval_every``, ``num_periods``), by group index. Raises ConfigError for
    options that do not fit the sweep."""

  def boundary(self, b: Boundary) -> Decision:
    """The decision at one boundary."""

  def columns(self) -> dict[int, dict[str, Any]]:
    """Per-variant fields added to the results' rows (``rung``, ``bracket``...)."""

  def state_dict(self) -> dict[str, Any]:
    """JSON-friendly state, saved in every checkpoint."""

  def load_state_dict(self, d: Mapping[str, Any]) -> None:
    """Goes on from :meth:`state_dict`'s output (a resumed sweep)."""


class Base:
  """Defaults for every :class:`Scheduler` method: no decision, no columns,
  no state. Subclass it and override what the scheduler does."""

  sweep_wide = False

  def start(self, plan: Any, settings: Mapping[int, Any]) -> None:
    del plan, settings  # Unused.

  def boundary(self, b: Boundary) -> Decision:
    del b  # Unused.
    return Decision()

  def columns(self) -> dict[int, dict[str, Any]]:
    return {}

  def state_dict(self) -> dict[str, Any]:
    return {}

  def load_state_dict(self, d: Mapping[str, Any]) -> None:
    del d  # Unused.


class Grid(Base):
  """The plain sweep: every variant trains to the end."""


def check(scheduler: Any) -> Scheduler:
  """``scheduler`` if it has every :class:`Scheduler` member.

  Raises:
    TypeError: naming the missing members (subclass :class:`Base` for defaults).
  """
  missing = [m for m in ("sweep_wide", "start", "boundary", "columns", "state_dict",
                         "load_state_dict") if not hasattr(scheduler, m)]
  if missing:
    raise TypeError(f"{type(scheduler).__name__} is not a scheduler: it lacks "
                    f"{', '.join(missing)} (subclass jaxsweep.engine.scheduling.Base "
                    "for the defaults)")
  return scheduler

