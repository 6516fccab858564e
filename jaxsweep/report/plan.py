"""``jaxsweep plan``: what a sweep will do, without training it.

Prints the number of variants, the compile groups with their sizes, which
swept keys are vectorized (traced, one program) and which are grouped (one
compilation per value), and each group's memory:

- by default, from abstract shapes only (``jax.eval_shape``: nothing is
  compiled, seconds for any sweep): the state of one variant, the data, and
  the least a chunk needs per device (the state in and out, plus the data);
- with ``measure=True`` (``--measure-memory``), from each group's compiled
  step (``memory_analysis()``, temporaries included) and the chunking a run
  would pick: what :func:`jaxsweep.engine.sizing.estimate_memory` does,
  compiling each group at two sizes.

A progress line per group goes to ``progress`` (stderr in the CLI) while it
works.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import program
from jaxsweep.engine import sharding
from jaxsweep.engine import sizing
from jaxsweep.engine import strategy


def classify(plan: plan_lib.Plan) -> dict[plan_lib.Key, str]:
  """Swept key -> ``vectorized``, ``vectorized (choice)`` or ``grouped``."""
  out = {}
  for k in plan.swept:
    if any(k in g.choices for g in plan.groups):
      out[k] = "vectorized (choice)"
    elif all(k not in g.static for g in plan.groups):
      out[k] = "vectorized"
    else:
      out[k] = "grouped"
  return out


def varying_static(plan: plan_lib.Plan) -> list[plan_lib.Key]:
  """Static keys whose value differs between groups (what splits them)."""
  keys: list[str] = []
  for g in plan.groups:
    for k in g.static:
      if k not in keys:
        keys.append(k)
  return [k for k in keys
          if len({repr(g.static.get(k)) for g in plan.groups}) > 1]


def shape_estimates(plan: plan_lib.Plan, *, mesh=None, memory_budget: Any = None,
                    chunk_size: int | None = None, lanes: int | None = None,
                    progress: Callable[[str], None] | None = None) -> dict[int, str]:
  """Each group's memory from abstract shapes: no XLA compilation.

  Builds each group's program (the data is loaded), checks it by tracing
  one variant abstractly (as a run does before training) and measures the
  state of one variant with ``jax.eval_shape``.

  Args:
    plan: the plan.
    mesh: the device mesh (default: every device).
    memory_budget: the budget a run would get (``--memory-budget``).
    chunk_size: the requested chunk size (default: the whole group).
    lanes: variants vmapped together per device (default: what a run takes,
      :func:`jaxsweep.engine.strategy.choose`).
    progress: called with a line as each group starts.

  Returns:
    group index -> one line: parameters and state per variant, the data, the
    least a chunk needs per device, and the memory available.

  Raises:
    ConfigError: what a run would raise before training (bad data, a model
      that does not fit the loss).
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  given = lanes
  limit = memory_lib.available(mesh, memory_budget)
  ndev = mesh.devices.size
  out = {}
  for i, group in enumerate(plan.groups):
    if progress is not None:
      progress(f"group {i + 1}/{len(plan.groups)}: {len(group.members)} variants: loading "
               "the data, tracing shapes (no compilation)")
    built = program.build(plan, group)
    program.check(plan, group, built)
    # The lanes a run would take (the rule unless given), after the check.
    lanes = given if isinstance(given, int) else strategy.choose(plan, group, mesh, given).lanes
    state, data, params = sizing.footprint(plan, group, built)
    sizing.check_fits(plan, group, built, mesh, limit, lanes=lanes)  # As a run would.
    n = len(group.members)
    chunk = sharding.population_size(min(chunk_size or n, n), ndev, lanes)
    least = data + 2 * state * (chunk // ndev)  # The state comes in and goes out.
    fmt = memory_lib.format_bytes
    text = (f"{params:,} parameters; state {fmt(state)}/variant; data {fmt(data)} on each "
            f"device\n      at least {fmt(least)}/device for a chunk of {chunk} on {ndev} "
            f"device(s), lanes {lanes} (state in and out + data; the step's temporaries are "
            "not counted: --measure-memory compiles for them)")
    if limit is not None:
      text += f"; {fmt(limit.per_device)}/device available ({limit.source})"
      if least * memory_lib.SAFETY > limit.per_device:
        text += "; does not fit: a run splits it into smaller chunks"
    out[group.index] = text
  return out


def measured_estimates(plan: plan_lib.Plan, *, progress: Callable[[str], None] | None = None,
                       **memory_kwargs) -> dict[int, Any]:
  """Each group's memory from its compiled step (slow: compiles each group twice).

  Args:
    plan: the plan.
    progress: called with a line as each group starts.
    **memory_kwargs: passed to :func:`jaxsweep.engine.sizing.estimate_memory`.
  """
  def announce(group):
    if progress is not None:
      progress(f"group {group.index + 1}/{len(plan.groups)}: "
               f"{len(group.members)} variants: compiling the step at two sizes to measure "
               "its memory")

  return sizing.estimate_memory(plan, progress=announce, **memory_kwargs)


def describe(plan: plan_lib.Plan, *, memory: bool | str = False,
             estimates: dict[int, Any] | None = None,
             progress: Callable[[str], None] | None = None, **memory_kwargs) -> str:
  """A human-readable dry-run report of a plan.

  Args:
    plan: from :func:`jaxsweep.engine.plan.make_plan`.
    memory: ``False``: no memory; ``"shapes"``: from abstract shapes, nothing
      compiled (:func:`shape_estimates`); ``"measure"`` (or ``True``): from
      each group's compiled step (:func:`measured_estimates`).
    estimates: precomputed group index -> estimate (anything printable).
    progress: called with a line as each group starts (e.g. printing to
      stderr).
    **memory_kwargs: ``mesh``, ``memory_budget``, ``chunk_size``, ``lanes``.
  """
  if memory and estimates is None:
    if memory == "shapes":
      estimates = shape_estimates(plan, progress=progress, **memory_kwargs)
    else:
      estimates = measured_estimates(plan, progress=progress, **memory_kwargs)
  lines = [f"{plan.num_variants} variants in {len(plan.groups)} compile group(s) "
           f"({len(plan.groups)} compilation(s))"]
  kinds = classify(plan)
  if kinds:
    width = max(len(plan.column(k)) for k in kinds)
    lines.append("swept keys:")
    for k, kind in kinds.items():
      n = len({repr(v[k]) for v in plan.variants if k in v})
      lines.append(f"  {plan.column(k):<{width}}  {kind:<20} {n} value(s)")
  if plan.structure:
    lines.append("structural keys (vectorized: one program, padded or switched compute; "
                 "grouped: one program per value, exact compute; decided in turn, cheapest "
                 "extra compute first; force with vectorize: / group:):")
    width = max(len(plan.column(c.key)) for c in plan.structure)
    for c in plan.structure:
      lines.append(f"  {plan.column(c.key):<{width}}  {c.describe()}")
  split = varying_static(plan)
  lines.append("groups:")
  for g in plan.groups:
    what = ", ".join(f"{plan.column(k)}={_short(g.static.get(k))}" for k in split)
    lines.append(f"  [{g.index}] {len(g.members)} variants" + (f"  {what}" if what else ""))
    if estimates and g.index in estimates:
      lines.append(f"      {estimates[g.index]}")
  return "\n".join(lines)


def stderr_progress(line: str) -> None:
  """Prints a progress line of ``jaxsweep plan`` to stderr."""
  print(f"jaxsweep plan: {line}", file=sys.stderr, flush=True)


def _short(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, tuple):
    return "[" + ",".join(_short(x) for x in v) + "]"
  return str(v)
