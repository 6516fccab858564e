"""Placing a population on devices: one mesh axis, ``"sweep"``.

Population arrays (hyperparameters, run state, metrics) carry a leading
variant axis and are sharded along ``"sweep"``; data is replicated. Variants
never interact, so the compiled step needs no collective on that axis. A
population whose size is not a multiple of the device count (or smaller than
two per device) is padded with inert copies of its first variant, which the
engine drops from the results.

On a CPU-only machine, XLA's own threading under-uses the cores for the small
ops of a population step; one virtual CPU device per core lets every core run
its own share of the variants (bench/ENGINE_NOTES.md). Because the
device count is fixed when JAX's backend starts, ask for it first thing::

  import jaxsweep as js
  js.sharding.configure_cpu_devices()   # before any JAX computation
  res = js.run(...)                     # the population spans every core

The ``jaxsweep`` command does this at startup (``--devices N`` or the
``JAXSWEEP_CPU_DEVICES`` environment variable override the core count).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import xla_bridge  # jax 0.10.2: backends_are_initialized (backend_started).
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxsweep import errors

AXIS = "sweep"
ENV_CPU_DEVICES = "JAXSWEEP_CPU_DEVICES"
# Lanes (variants vmapped together) on accelerators, where wide vmaps fill
# the device; on CPU one variant at a time (see default_lanes).
ACCELERATOR_LANES = 128
# Collective ops: none may appear in a compiled population step, because
# variants never interact (tests/test_sharding.py checks the HLO).
COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "collective-permute",
               "reduce-scatter", "collective-broadcast")


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  restore_xla_flags()  # The backend has started: it read them.
  # jax.sharding.Mesh defaults to Auto axes (jax.make_mesh to Explicit): jit
  # propagates the population sharding through the program by itself.
  return Mesh(np.array(devices), (AXIS,))


def population(mesh: Mesh) -> NamedSharding:
  """Sharding of arrays with a leading variant axis."""
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of arrays shared by all variants (the data)."""
  return NamedSharding(mesh, P())


def padded_size(num: int, multiple: int) -> int:
  """Smallest multiple of ``multiple`` that is >= num."""
  return -(-num // multiple) * multiple


def default_lanes(mesh: Mesh) -> int:
  """Variants computed together (vmapped) on each device: the unit of identity.

  Every device computes its share of the population in groups of ``lanes``
  variants, one group after another (``lax.map``), each group vmapped. A
  variant's result then depends only on ``lanes``, never on the chunk size,
  the device count, the population or its neighbours: the compiled per-group
  program is the same whatever the layout.

  On CPU the default is 1: each variant runs as its own plain (unbatched)
  program: on CPU it ran faster than one vmap over the device's whole
  population and as fast as a few lanes (bench/ENGINE_NOTES.md), and it is
  bit-identical across device counts, which batched lanes were not (XLA:CPU
  splits batched matmuls over its threads by the device count). On GPU/TPU wide vmaps fill the device:
  :data:`ACCELERATOR_LANES`.
  """
  return 1 if mesh.devices.flat[0].platform == "cpu" else ACCELERATOR_LANES


def min_local(lanes: int) -> int:
  """Fewest variants a device holds: one, or two groups of several lanes.

  XLA removes a loop that runs once and fuses its body with what surrounds
  it, which changed the last bits of a batched evaluation (XLA:CPU); with
  at least two groups the loop stays, and a
  group whose variants all stopped (padding) is skipped, so it costs nothing.
  """
  return 1 if lanes == 1 else 2 * lanes


def population_size(num: int, num_devices: int, lanes: int = 1) -> int:
  """Slots for ``num`` variants: whole lanes on every device (padded)."""
  return max(padded_size(num, num_devices * lanes), num_devices * min_local(lanes))


def population_map(fn: Callable, mesh: Mesh, *, lanes: int, num_population: int,
                   skip: tuple[Callable, Callable] | None = None) -> Callable:
  """A per-variant function applied to a population sharded over ``mesh``.

  The first ``num_population`` arguments of ``fn`` are per variant (a leading
  variant axis after mapping), the others shared (replicated data). Each
  device takes its slice of the population (``shard_map``: no communication
  between devices) and maps ``fn`` over it in groups of ``lanes`` variants:
  ``lax.map`` over the groups, ``vmap`` within a group (none for one lane).

  Args:
    fn: ``fn(*population_args, *shared_args) -> outputs`` for ONE variant.
    mesh: the population's mesh (axis ``"sweep"``).
    lanes: variants vmapped together; the per-device population must be a
      multiple of it.
    num_population: how many leading arguments carry the variant axis.
    skip: ``(halted, passthrough)``: ``halted(*population_args) -> bool`` for
      one variant and ``passthrough`` with ``fn``'s signature; a group of
      lanes whose variants have all halted runs ``passthrough`` instead of
      ``fn`` (a real branch: the group costs nothing).

  Returns:
    A function of the stacked arguments; every output has the variant axis.
  """

  def local(*args):
    pop, shared = args[:num_population], args[num_population:]
    size = jax.tree.leaves(pop)[0].shape[0]
    if lanes == 1:
      return jax.lax.map(lambda p: fn(*p, *shared), pop)
    groups = jax.tree.map(lambda a: a.reshape((size // lanes, lanes) + a.shape[1:]), pop)
    in_axes = (0,) * num_population + (None,) * len(shared)
    batched = jax.vmap(fn, in_axes=in_axes)
    if skip is None:
      body = lambda p: batched(*p, *shared)
    else:
      halted, passthrough = skip
      idle = jax.vmap(passthrough, in_axes=in_axes)
      body = lambda p: jax.lax.cond(jnp.all(jax.vmap(halted)(*p)),
                                    lambda q: idle(*q, *shared),
                                    lambda q: batched(*q, *shared), p)
    out = jax.lax.map(body, groups)
    return jax.tree.map(lambda a: a.reshape((size,) + a.shape[2:]), out)

  def call(*args):
    specs = (P(AXIS),) * num_population + (P(),) * (len(args) - num_population)
    # check_vma=False: a scan carry that starts as a replicated constant (a
    # zero loss sum) and becomes per-device is fine: nothing is communicated.
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(AXIS),
                         check_vma=False)(*args)

  return call


def pad(tree, size: int):
  """Pads the leading axis of every leaf to ``size`` by repeating row 0.

  Repeating a real variant (rather than zeros) keeps padded variants inert
  and finite: they train a copy of variant 0 and are dropped afterwards.
  """
  def pad_leaf(x):
    x = np.asarray(x)
    n = x.shape[0]
    if n == size:
      return x
    filler = np.repeat(x[:1], size - n, axis=0)
    return np.concatenate([x, filler], axis=0)
  return jax.tree.map(pad_leaf, tree)


def put(tree, sharding: NamedSharding):
  """Places host arrays with ``sharding``; in a multi-process run each
  process fills only the shards its own devices hold."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(
          np.shape(x), sharding, lambda idx, x=x: np.asarray(x)[idx]), tree)


def put_population(tree, mesh: Mesh):
  """Places a stacked pytree with its variant axis split over the mesh."""
  return put(tree, population(mesh))


def put_replicated(tree, mesh: Mesh):
  """Places data once per device, shared by every variant."""
  return put(tree, replicated(mesh))


def to_host(tree):
  """Fetches a (possibly multi-process) population pytree as numpy arrays."""
  if jax.process_count() > 1:
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, jax.device_get(tree))



def local_devices(mesh: Mesh) -> list[jax.Device]:
  """The mesh's devices that this process drives."""
  return [d for d in mesh.devices.flat if d.process_index == jax.process_index()]


def collectives(hlo_text: str) -> dict[str, int]:
  """Counts collective ops in compiled HLO text (``compiled.as_text()``).

  Returns:
    op name -> number of occurrences, only for ops that occur.
  """
  counts = {}
  for op in COLLECTIVES:
    # Match instructions (`= f32[8] all-reduce(`, `all-gather-start(`), not
    # metadata strings that merely mention an op's name.
    n = len(re.findall(rf"\s{op}(?:-start)?\(", hlo_text))
    if n:
      counts[op] = n
  return counts


# --------------------------------------------------------------------------
# Virtual CPU devices: one per core, asked for before the backend starts.

def backend_started() -> bool:
  """Whether JAX's backend has started (then the device count is fixed)."""
  # jax 0.10.2 has no public way to ask whether the backend is up
  # (jax.extend.backend.backends() starts it); jax.distributed.initialize
  # checks the same private flag. Revisit when jax.extend offers one.
  return xla_bridge.backends_are_initialized()


def num_cores() -> int:
  """CPU cores this process may run on (its affinity mask, else all)."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def _accelerator_installed() -> bool:
  """Whether a GPU/TPU plugin is installed, judged without starting JAX."""
  try:
    if list(importlib.metadata.entry_points(group="jax_plugins")):
      return True
  except Exception:  # pylint: disable=broad-except
    pass
  names = ("jax_plugins", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
           "jax_rocm7_plugin", "libtpu")
  for name in names:
    try:
      if importlib.util.find_spec(name) is not None:
        return True
    except (ImportError, ValueError):
      continue
  return False


def platform_is_cpu(environ: Mapping[str, str] | None = None) -> bool:
  """Whether JAX will run on CPU, judged without starting it.

  With ``environ`` given, decides as if that were the environment;
  otherwise reads ``jax_platforms`` (set from ``JAX_PLATFORMS`` or by code).
  """
  if environ is None:
    platforms = jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS", "")
  else:
    platforms = environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip().lower() == "cpu"
  return not _accelerator_installed()


def requested_cpu_devices(n: int | str | None = None, *,
                          environ: Mapping[str, str] | None = None,
                          configured: int | None = None) -> int | None:
  """How many virtual CPU devices :func:`configure_cpu_devices` would ask for.

  Pure (it starts nothing), so the rules can be tested in one process.

  Args:
    n: an explicit count (``--devices N``); wins over everything else.
    environ: the environment (default ``os.environ``).
    configured: the current ``jax_num_cpu_devices`` (default: read it).

  Returns:
    The count to ask for, or ``None`` to leave JAX as the user set it up: the
    platform is not CPU, or ``XLA_FLAGS`` / ``JAX_NUM_CPU_DEVICES`` /
    ``jax_num_cpu_devices`` already choose a count and nothing explicit
    (``n``, ``JAXSWEEP_CPU_DEVICES``) overrides it.

  Raises:
    ConfigError: for a count that is not a positive integer.
  """
  platform_env, environ = environ, os.environ if environ is None else environ
  if n is None and environ.get(ENV_CPU_DEVICES, "").strip():
    n = environ[ENV_CPU_DEVICES].strip()
    key = ENV_CPU_DEVICES
  else:
    key = "devices"
  if n is not None:
    try:
      count = int(n)
    except (TypeError, ValueError):
      count = 0
    if count < 1 or isinstance(n, bool) or (isinstance(n, float) and n != count):
      raise errors.ConfigError(f"the number of CPU devices must be a positive integer, "
                               f"got {n!r}.", key=key,
                               fix=f"e.g. --devices {num_cores()} (one per core)")
    return count if platform_is_cpu(platform_env) else None
  if not platform_is_cpu(platform_env):
    return None
  if ("xla_force_host_platform_device_count" in environ.get("XLA_FLAGS", "")
      or environ.get("JAX_NUM_CPU_DEVICES", "").strip()
      or (jax.config.jax_num_cpu_devices if configured is None else configured) != -1):
    return None  # The user chose; respect it.
  return num_cores()


def configure_cpu_devices(n: int | str | None = None) -> int | None:
  """Asks JAX for ``n`` virtual CPU devices (default: one per core).

  Call it before any JAX computation (the ``jaxsweep`` command calls it at
  startup); a population is then sharded over all cores. Without it, a
  CPU-only run uses one device, i.e. roughly one core's worth of throughput.

  It does nothing when JAX's backend has already started, when the platform
  is not CPU, or when the user chose a count through ``XLA_FLAGS``
  (``--xla_force_host_platform_device_count``), ``JAX_NUM_CPU_DEVICES`` or
  ``jax.config.update("jax_num_cpu_devices", ...)`` — unless ``n`` or the
  ``JAXSWEEP_CPU_DEVICES`` environment variable asks explicitly.

  Args:
    n: the number of CPU devices; ``None`` reads ``JAXSWEEP_CPU_DEVICES``,
      else uses the number of cores.

  Returns:
    The number of CPU devices asked for, or ``None`` if it changed nothing.

  Raises:
    ConfigError: for a count that is not a positive integer.

  Examples:
    >>> from jaxsweep import sharding
    >>> sharding.configure_cpu_devices()  # doctest: +SKIP
    2
  """
  count = requested_cpu_devices(n)
  if count is None:
    return None
  if backend_started():
    if count != jax.local_device_count() and (n is not None or not _told["late"]):
      _told["late"] = True
      logging.getLogger("jaxsweep").warning(
          "jaxsweep: JAX started before jaxsweep could ask for one CPU device per core; "
          "the population runs on %d device(s) of %d cores. Call "
          "jaxsweep.sharding.configure_cpu_devices() first thing (before any JAX "
          "computation) to use them all.", jax.local_device_count(), count)
    return None
  jax.config.update("jax_num_cpu_devices", count)
  one_thread_per_device(count)
  return count


# XLA:CPU runs an op's work on several threads of one pool (Eigen). With one
# virtual device per core the devices already keep every core busy, and
# sharing the pool made a device wait for the other's ops: throughput was
# lower and far more variable (bench/ENGINE_NOTES.md).
ONE_THREAD_FLAG = "--xla_cpu_multi_thread_eigen=false"
_saved_flags: list[str | None] = []  # The user's XLA_FLAGS while ours are set.


def one_thread_per_device(count: int, environ: MutableMapping[str, str] | None = None) -> bool:
  """Adds :data:`ONE_THREAD_FLAG` to ``XLA_FLAGS`` when ``count`` devices cover
  every core (``count >= num_cores()``, at least 2) and the user's XLA_FLAGS
  do not set it already. XLA reads XLA_FLAGS when its backend starts;
  :func:`make_mesh` puts the user's value back after that.

  Returns:
    Whether the flag was added.
  """
  environ = os.environ if environ is None else environ
  flags = environ.get("XLA_FLAGS")
  if count < 2 or count < num_cores() or "xla_cpu_multi_thread_eigen" in (flags or ""):
    return False
  _saved_flags.append(flags)
  environ["XLA_FLAGS"] = f"{flags or ''} {ONE_THREAD_FLAG}".strip()
  return True


def restore_xla_flags(environ: MutableMapping[str, str] | None = None) -> None:
  """Puts back the user's ``XLA_FLAGS`` once the backend has read ours."""
  environ = os.environ if environ is None else environ
  if _saved_flags and backend_started():
    flags = _saved_flags.pop()
    _saved_flags.clear()
    if flags is None:
      environ.pop("XLA_FLAGS", None)
    else:
      environ["XLA_FLAGS"] = flags


# Said once per process: the late-configuration note.
_told = {"late": False}
