"""Sizing a group into memory: how many variants a compiled call may hold.

The compiled period's ``memory_analysis()`` (arguments + outputs +
temporaries) grows linearly in the variants per device;
:func:`plan_memory` compiles the requested size (needed anyway) and, only
when it does not fit, more sizes to fit the line
(:func:`jaxsweep.engine.memory.plan_chunks`). :func:`check_fits` refuses a
group that cannot fit before anything compiles; :func:`estimate_memory` is
the dry run of ``jaxsweep plan --measure-memory``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxsweep import errors
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import sharding
from jaxsweep.engine import strategy
from jaxsweep.engine.program import GroupProgram


def _nbytes(tree) -> int:
  total = 0
  for x in jax.tree.leaves(tree):
    try:
      itemsize = np.dtype(x.dtype).itemsize
    except TypeError:
      itemsize = 8  # A typed PRNG key: two uint32 words.
    total += int(np.prod(x.shape)) * itemsize
  return total


def footprint(plan: plan_lib.Plan, group: plan_lib.Group, built: GroupProgram,
              data=None) -> tuple[int, int, int]:
  """What a group holds, from abstract shapes only (``jax.eval_shape``: no compilation).

  Args:
    plan, group, built: the group and its program.
    data: the data as arrays or shape structs (default: shape structs).

  Returns:
    ``(state_bytes, data_bytes, params)``: one variant's training state
    (parameters, optimizer and model state, key), the data (replicated: all
    of it on every device), and one variant's trainable parameters.
  """
  data = program_lib.abstract_data(built.dataset) if data is None else data
  hp1 = jax.tree.map(lambda a: a[0], plan_lib.stack_hparams(plan, group, group.members[:1]))
  plain = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), data)
  state = jax.eval_shape(built.program.init, hp1, plain)
  params = sum(math.prod(int(d) for d in x.shape) for x in jax.tree.leaves(state.params))
  return _nbytes(state), _nbytes(data), params


def plan_memory(plan: plan_lib.Plan, group: plan_lib.Group, built: GroupProgram, mesh,
                data=None, *, lanes: int = 1, chunk_size: int | None = None, limit=None,
                safety: float | None = None, fit: bool = False,
                timings: list[float] | None = None) -> memory_lib.GroupEstimate:
  """Picks a group's chunk size from the memory its compiled step needs.

  Compiles the period step at the requested chunk size (which the run needs
  anyway) and, only when that does not fit ``limit``, at one or two more
  sizes to fit ``bytes(v) = fixed + per_variant * v`` per device
  (:func:`jaxsweep.engine.memory.plan_chunks`).

  Args:
    plan, group, built: the group and its program.
    mesh: the device mesh.
    data: the data as arrays or shape structs (default: shape structs).
    lanes: variants vmapped together on a device: chunks hold whole lanes.
    chunk_size: the requested chunk size (default: the whole group).
    limit: a :class:`jaxsweep.engine.memory.Limit`, or ``None`` for no limit.
    safety: headroom factor (default :data:`jaxsweep.engine.memory.SAFETY`).
    fit: always compile two sizes so the footprint is known (dry runs).
    timings: compile seconds are appended here.

  Raises:
    ConfigError: when not even one variant per device fits.
  """
  data = program_lib.abstract_data(built.dataset, mesh) if data is None else data
  n, ndev = len(group.members), mesh.devices.size
  requested = requested_size(group, ndev, lanes, chunk_size)
  state_bytes, data_bytes, _ = footprint(plan, group, built, data)

  def lower_bound(local):
    return data_bytes + 2 * state_bytes * local  # The state comes in and goes out.

  def measure_at(local):
    hp = program_lib.abstract_population(plan, group, local * ndev, mesh)
    return program_lib.compile(built, mesh, hp, data, lanes=lanes, init=False,
                   timings=timings).memory_bytes

  return memory_lib.plan_chunks(
      measure_at, group=group.index, variants=n, devices=ndev, requested=requested,
      limit=limit, safety=memory_lib.SAFETY if safety is None else safety,
      lower_bound=lower_bound, fit=fit, granularity=lanes)


def requested_size(group: plan_lib.Group, num_devices: int, lanes: int,
                   chunk_size: int | None) -> int:
  """The population size :func:`plan_memory` compiles first: the requested
  chunk (default: the whole group) padded to whole lanes on every device."""
  n = len(group.members)
  return sharding.population_size(min(chunk_size or n, n), num_devices, lanes)


def check_fits(plan: plan_lib.Plan, group: plan_lib.Group, built: GroupProgram, mesh,
               limit, *, lanes: int = 1, safety: float = memory_lib.SAFETY) -> None:
  """Refuses, before anything compiles, a group whose smallest population
  cannot fit: the data plus the run state in and out, for the fewest variants
  a device may hold (a lower bound of what the compiled step needs).

  Raises:
    ConfigError: naming the bytes needed and available.
  """
  if limit is None:
    return
  hp1 = jax.tree.map(lambda a: a[0], plan_lib.stack_hparams(plan, group, group.members[:1]))
  data = program_lib.abstract_data(built.dataset)
  state_bytes = _nbytes(jax.eval_shape(built.program.init, hp1, data))
  least = sharding.min_local(lanes)
  need = (_nbytes(data) + 2 * state_bytes * least) * safety
  if need > limit.per_device:
    raise errors.ConfigError(
        f"compile group {group.index} does not fit in memory: even {least} variant(s) per "
        f"device need at least {memory_lib.format_bytes(need)} per device (the data and the "
        f"run state in and out, x{safety:g} safety margin), but only "
        f"{memory_lib.format_bytes(limit.per_device)} per device is available "
        f"({limit.source}).", key="memory_budget",
        fix="raise memory_budget (--memory-budget) if the machine has more memory; else "
            "shrink the data or the model, or use more devices")


def estimate_memory(plan: plan_lib.Plan, *, mesh=None, memory_budget: Any = None,
                    chunk_size: int | None = None, lanes: int | str | None = None,
                    safety: float = memory_lib.SAFETY,
                    progress: Callable[[plan_lib.Group], None] | None = None
                    ) -> dict[int, memory_lib.GroupEstimate]:
  """Dry run of the execution's memory planning (``jaxsweep plan``).

  Builds and compiles each group's step at two sizes (nothing is trained),
  fits the memory line and picks the chunk size a run with the same
  arguments would pick. Compiled programs are cached, so a run that follows
  in the same process reuses them.

  Returns:
    group index -> :class:`jaxsweep.engine.memory.GroupEstimate`.

  Raises:
    ConfigError: when a group cannot fit even one variant per device.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  limit = memory_lib.available(mesh, memory_budget)
  out = {}
  for group in plan.groups:
    if progress is not None:  # Called with each group before it compiles.
      progress(group)
    built = program_lib.build(plan, group)
    program_lib.check(plan, group, built)
    # The lanes a run would take (the rule unless given), after the check.
    lanes_g = lanes if isinstance(lanes, int) else strategy.choose(plan, group, mesh, lanes).lanes
    out[group.index] = plan_memory(plan, group, built, mesh, lanes=lanes_g,
                                   chunk_size=chunk_size, limit=limit, safety=safety,
                                   fit=True)
  return out
