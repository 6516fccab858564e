"""Fitting any sweep into memory: estimate bytes(V), then split into chunks.

XLA knows, after compiling, how many bytes a program's arguments, outputs and
temporaries take on each device (``compiled.memory_analysis()``). For a
population step these grow exactly linearly in the number of variants per
device (measured on a 2-core CPU: a fit from two sizes predicted V=2048 within
0.1 %; tests/test_sharding.py checks an unseen size), so two
compiled sizes give the whole curve::

  bytes_per_device(v) = fixed + per_variant * v      # v variants per device

``fixed`` is mostly the replicated data; ``per_variant`` the state (params,
optimizer state: in and out) plus the step's temporaries. A group whose
estimate, times a safety factor (measured peak RSS was 1.2-1.6x the estimate),
exceeds the memory available is trained in chunks of variants that fit, all
chunks sharing one compiled program (the last one padded).

Memory available, per device:

* GPU/TPU: the device's ``memory_stats()["bytes_limit"]``, or the user's
  ``memory_budget`` if smaller;
* CPU: ``memory_budget``, else 75 % of the host's available RAM, shared by the
  process's virtual CPU devices.

The cost is small: the program at the requested chunk size is compiled anyway,
and its memory analysis is free; only when it does not fit are one or two
more sizes compiled to fit the line. :func:`jaxsweep.engine.sizing.estimate_memory`
is the dry run used by ``jaxsweep plan``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep.engine import distributed
from jaxsweep.engine import sharding

# Peak RSS measured 1.2-1.6x arguments + outputs + temporaries (2-core CPU).
SAFETY = 1.5
# Share of the host's available RAM a CPU run may plan for by default.
RAM_FRACTION = 0.75

_UNITS = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_bytes(value: Any, *, key: str = "memory_budget") -> int:
  """Parses a memory size: ``"2GiB"``, ``"512 MiB"``, ``"1.5GB"``, ``10**9``.

  Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB,
  GB, TB) powers of 1000; a bare number is bytes. Case does not matter.

  Args:
    value: a string or a number of bytes.
    key: the setting's name, for the error message.

  Returns:
    The size in bytes (positive).

  Raises:
    ConfigError: for anything else.

  Examples:
    >>> parse_bytes("2GiB"), parse_bytes("1.5 GB"), parse_bytes(4096)
    (2147483648, 1500000000, 4096)
  """
  fix = "write a size such as 2GiB, 512MiB, 8GB or a number of bytes"
  if isinstance(value, bool):
    raise errors.ConfigError(f"{value!r} is not a memory size.", key=key, fix=fix)
  if isinstance(value, (int, float, np.integer, np.floating)):
    number, unit = float(value), ""
  elif isinstance(value, str):
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
    if not m:
      raise errors.ConfigError(f"{value!r} is not a memory size.", key=key, fix=fix)
    number, unit = float(m.group(1)), m.group(2).lower()
    if unit not in _UNITS:
      raise errors.ConfigError(
          f"unknown unit {m.group(2)!r} in {value!r}.", key=key,
          fix="use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB "
              "(powers of 1024)")
  else:
    raise errors.ConfigError(f"{value!r} is not a memory size.", key=key, fix=fix)
  size = number * _UNITS[unit]
  if not math.isfinite(size) or size < 1:
    raise errors.ConfigError(f"the memory size must be positive, got {value!r}.",
                             key=key, fix=fix)
  return int(size)


# Shared with the report (a run directory's free space), which reads it
# without importing JAX.
format_bytes = format_lib.format_bytes


@dataclasses.dataclass(frozen=True)
class Footprint:
  """Bytes per device as a line in the variants per device.

  Attributes:
    fixed: bytes per device whatever the population (data, constants).
    per_variant: bytes per variant held on a device.
  """

  fixed: float
  per_variant: float

  def at(self, local_variants: float) -> float:
    """Estimated bytes per device with ``local_variants`` on each device."""
    return self.fixed + self.per_variant * local_variants

  @classmethod
  def fit(cls, points: Mapping[int, float]) -> Footprint:
    """Least-squares line through ``{variants per device: bytes}`` (>= 2 sizes)."""
    xs = np.asarray(sorted(points), np.float64)
    ys = np.asarray([points[int(x)] for x in xs], np.float64)
    if len(xs) < 2:
      raise ValueError(f"need two sizes to fit a line, got {dict(points)}")
    if len(xs) == 2:  # Exact, without least squares' rounding.
      slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
      intercept = ys[0] - slope * xs[0]
    else:
      slope, intercept = np.polyfit(xs, ys, 1)
    slope = max(float(slope), 0.0)
    return cls(fixed=max(float(intercept), 0.0), per_variant=slope)


@dataclasses.dataclass(frozen=True)
class Limit:
  """Memory a run may use on each device.

  Attributes:
    per_device: bytes per device.
    source: where the number comes from, for messages.
  """

  per_device: int
  source: str


@dataclasses.dataclass(frozen=True)
class GroupEstimate:
  """How a compile group will be laid out in memory.

  Attributes:
    group: the group's index in the plan.
    variants: the group's variants (before padding).
    devices: devices in the mesh (the population's granularity).
    chunk_size: variants per compiled call (a multiple of ``devices``).
    num_chunks: compiled calls per eval period.
    padding: padded (inert) variants in all chunks together.
    footprint: bytes per device as a function of variants per device, or
      ``None`` when only one size was compiled (it fit).
    measured: variants per device -> bytes per device from
      ``memory_analysis()`` (arguments + outputs + temporaries).
    bytes_per_device: estimated bytes per device at ``chunk_size``, before
      the safety factor.
    limit: the memory available, or ``None`` when unknown.
    safety: the factor applied to the estimate against ``limit``.
  """

  group: int
  variants: int
  devices: int
  chunk_size: int
  num_chunks: int
  padding: int
  footprint: Footprint | None
  measured: Mapping[int, int]
  bytes_per_device: float | None
  limit: Limit | None
  safety: float = SAFETY

  def as_dict(self) -> dict[str, Any]:
    """Fields for progress events, ``results.json`` and ``jaxsweep plan``."""
    fp = self.footprint
    return {
        "memory_per_device": _round(self.bytes_per_device),
        "memory_needed_per_device": _round(self.bytes_per_device and
                                           self.bytes_per_device * self.safety),
        "memory_fixed_per_device": _round(fp and fp.fixed),
        "memory_per_variant": _round(fp and fp.per_variant),
        "memory_limit_per_device": self.limit and self.limit.per_device,
        "memory_source": self.limit and self.limit.source,
        "num_chunks": self.num_chunks,
    }

  def __str__(self) -> str:
    return self.describe()

  def describe(self) -> str:
    """One line, e.g. for ``jaxsweep plan``."""
    text = (f"group {self.group}: {self.variants} variants in {self.num_chunks} chunk(s) "
            f"of {self.chunk_size} on {self.devices} device(s), padding {self.padding}")
    if self.bytes_per_device is not None:
      text += f"; ~{format_bytes(self.bytes_per_device)}/device"
      if self.footprint is not None:
        text += (f" ({format_bytes(self.footprint.fixed)} fixed + "
                 f"{format_bytes(self.footprint.per_variant)}/variant)")
    if self.limit is not None:
      text += (f", x{self.safety:g} safety vs {format_bytes(self.limit.per_device)}/device "
               f"available ({self.limit.source})")
    return text


def _round(x):
  return None if x is None else int(round(x))


def host_available_bytes() -> int | None:
  """RAM available to new allocations (``MemAvailable``), or ``None``."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    import psutil  # pylint: disable=g-import-not-at-top
    return int(psutil.virtual_memory().available)
  except Exception:  # pylint: disable=broad-except
    return None


def available(mesh, memory_budget: Any = None) -> Limit | None:
  """The memory each device of ``mesh`` may use, agreed by all processes.

  Args:
    mesh: the population's mesh.
    memory_budget: a size (:func:`parse_bytes`): on CPU, the host RAM this
      process may use (shared by its virtual devices); on GPU/TPU, what each
      device may use (capped by the device's own limit).

  Returns:
    A :class:`Limit`, or ``None`` when nothing is known (no budget, and the
    platform reports no memory).
  """
  budget = None if memory_budget is None else parse_bytes(memory_budget)
  local = sharding.local_devices(mesh)
  limit, source = None, None
  if local and local[0].platform == "cpu":
    # Virtual CPU devices share the host's RAM: split the pool between them.
    if budget is not None:
      limit, source = budget // len(local), f"memory_budget {format_bytes(budget)}"
    else:
      ram = host_available_bytes()
      if ram is not None:
        limit = int(ram * RAM_FRACTION) // len(local)
        source = (f"{RAM_FRACTION:.0%} of {format_bytes(ram)} available host RAM"
                  + (f" over {len(local)} CPU devices" if len(local) > 1 else ""))
  elif local:
    limits = [(d.memory_stats() or {}).get("bytes_limit") for d in local]
    if all(limits):
      limit, source = int(min(limits)), f"{local[0].platform} bytes_limit"
    if budget is not None and (limit is None or budget < limit):
      limit, source = budget, f"memory_budget {format_bytes(budget)}"
  # Every process must reach the same chunk size: agree on the smallest.
  agreed = distributed.agree_min(float(limit) if limit is not None else math.inf)
  if not math.isfinite(agreed):
    return None
  if agreed < (limit or math.inf):
    source = f"{source}; smallest over {_process_count()} processes"
  return Limit(int(agreed), source or "another process")


def _process_count() -> int:
  return jax.process_count()


def measure(compiled) -> int | None:
  """Bytes per device of a compiled program: arguments + outputs + temporaries.

  On CPU ``peak_memory_in_bytes`` omits temporaries, so the three parts are
  added; donated arguments are counted in and out, which the safety factor
  was measured with.
  """
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if stats is None:
    return None
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
             + stats.temp_size_in_bytes)


def plan_chunks(measure_at: Callable[[int], int | None], *, group: int, variants: int,
                devices: int, requested: int, limit: Limit | None,
                safety: float = SAFETY,
                lower_bound: Callable[[int], float] | None = None,
                fit: bool = False, granularity: int = 1) -> GroupEstimate:
  """Chooses the chunk size of a group so that it fits ``limit``.

  Compiles as little as possible: the requested size first (it is needed
  anyway) and, only if it does not fit, one or two more sizes for the line.

  Args:
    measure_at: variants per device -> measured bytes per device (compiles
      the chunk program at that size; ``None`` if the backend cannot say).
    group: the group's index (for messages).
    variants: the group's variants.
    devices: devices in the mesh.
    requested: the chunk size asked for (a multiple of ``devices *
      granularity``).
    limit: memory available per device, or ``None``.
    safety: required headroom: ``safety * estimate <= limit``.
    lower_bound: a cheap lower bound on bytes per device (no compile) to skip
      compiling a requested size that cannot fit.
    fit: always measure two sizes, so the footprint is known (dry runs).
    granularity: variants per device come in multiples of this (the lanes
      each device computes together), at least two of them when above 1
      (:func:`jaxsweep.engine.sharding.min_local`).

  Returns:
    A :class:`GroupEstimate`.

  Raises:
    ConfigError: when not even one lane of variants per device fits.
  """
  g = granularity
  least = g if g == 1 else 2 * g
  req_local = requested // devices
  measured: dict[int, int] = {}

  def at(local):
    if local not in measured:
      value = measure_at(local)
      if value is None:
        return None
      measured[local] = value
    return measured[local]

  def fits(nbytes):
    return limit is None or nbytes * safety <= limit.per_device

  hopeless = (limit is not None and lower_bound is not None
              and not fits(lower_bound(req_local)))
  if not hopeless:
    b_req = at(req_local)
    if b_req is None:  # The backend reports nothing: trust the request.
      return _layout(group, variants, devices, requested, None, {}, None, limit, safety)
    if fits(b_req) and not fit:
      return _layout(group, variants, devices, requested, None, measured, b_req, limit,
                     safety)
  # The line needs two sizes; the requested one counts when it was compiled.
  # A single group of lanes per device is left out of the fit: XLA removes
  # the loop over groups then and the program needs less than the line says
  # (so the line errs on the safe side there).
  for s in (2 * g, 4 * g) if g == 1 else (2 * g, 3 * g):
    if len([m for m in measured if m > g]) >= 2:
      break
    if s not in measured and at(s) is None:
      return _layout(group, variants, devices, requested, None, measured,
                     measured.get(req_local), limit, safety)
  footprint = Footprint.fit({m: b for m, b in measured.items() if m > g})
  if limit is None:
    local = req_local
  else:
    room = limit.per_device / safety - footprint.fixed
    local = (int(room // footprint.per_variant) // g * g if footprint.per_variant > 0
             else req_local)
    if local < least:
      one = footprint.at(least)
      what = "one variant" if g == 1 else f"{least} variants (two groups of {g} lanes)"
      raise errors.ConfigError(
          f"compile group {group} does not fit in memory: {what} per device needs "
          f"about {format_bytes(one * safety)} per device ({format_bytes(footprint.fixed)} "
          f"fixed + {format_bytes(footprint.per_variant)} per variant, x{safety:g} safety "
          f"margin), but only {format_bytes(limit.per_device)} per device is available "
          f"({limit.source}).", key="memory_budget",
          fix="raise memory_budget (--memory-budget) if the machine has more memory; "
              "else shrink the data, the model, batch_size or eval_batch_size, or use "
              "more devices")
    local = min(local, req_local)
  chunk = local * devices
  if chunk < requested:
    # Balance the chunks so that the last one is not mostly padding.
    num = _ceil_div(variants, chunk)
    local = max(least, min(local, _ceil_div(_ceil_div(variants, num), devices * g) * g))
    chunk = local * devices
  return _layout(group, variants, devices, chunk, footprint, measured,
                 measured.get(local, footprint.at(local)), limit, safety)


def _ceil_div(a: int, b: int) -> int:
  return -(-a // b)


def _layout(group, variants, devices, chunk, footprint, measured, nbytes, limit,
            safety) -> GroupEstimate:
  num = -(-variants // chunk)
  return GroupEstimate(group=group, variants=variants, devices=devices, chunk_size=chunk,
                       num_chunks=num, padding=num * chunk - variants,
                       footprint=footprint, measured=dict(measured),
                       bytes_per_device=None if nbytes is None else float(nbytes),
                       limit=limit, safety=safety)
