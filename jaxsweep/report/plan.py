"""``jaxsweep plan``: what a sweep will do, without training it.

Prints the number of variants, the compile groups with their sizes, which
swept keys are vectorized (traced, one program) and which are grouped (one
compilation per value), and, when asked, each group's memory estimate and
chunking from the compiled program's ``memory_analysis()``.
"""

from __future__ import annotations

from typing import Any

from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import sizing


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


def describe(plan: plan_lib.Plan, *, memory: bool = False,
             estimates: dict[int, Any] | None = None, **memory_kwargs) -> str:
  """A human-readable dry-run report of a plan.

  Args:
    plan: from :func:`jaxsweep.engine.plan.make_plan`.
    memory: also estimate each group's memory and chunking (compiles each
      group's step at two small sizes; nothing is trained).
    estimates: precomputed group index -> estimate (anything printable).
    **memory_kwargs: passed to :func:`jaxsweep.engine.sizing.estimate_memory`.
  """
  if memory and estimates is None:
    estimates = sizing.estimate_memory(plan, **memory_kwargs)
  lines = [f"{plan.num_variants} variants in {len(plan.groups)} compile group(s) "
           f"({len(plan.groups)} compilation(s))"]
  kinds = classify(plan)
  if kinds:
    width = max(len(plan.column(k)) for k in kinds)
    lines.append("swept keys:")
    for k, kind in kinds.items():
      n = len({repr(v[k]) for v in plan.variants if k in v})
      lines.append(f"  {plan.column(k):<{width}}  {kind:<20} {n} value(s)")
  split = varying_static(plan)
  lines.append("groups:")
  for g in plan.groups:
    what = ", ".join(f"{plan.column(k)}={_short(g.static.get(k))}" for k in split)
    lines.append(f"  [{g.index}] {len(g.members)} variants" + (f"  {what}" if what else ""))
    if estimates and g.index in estimates:
      lines.append(f"      {estimates[g.index]}")
  return "\n".join(lines)


def _short(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, tuple):
    return "[" + ",".join(_short(x) for x in v) + "]"
  return str(v)
