"""Many hosts: one sweep over the devices of every process.

jaxsweep uses JAX's multi-controller model, no scheduler of its own: every
process runs the *same* command, :func:`initialize` joins them into one JAX
runtime, the ``"sweep"`` mesh spans ``jax.devices()`` (all processes'
devices), each process places only the variants its own devices hold, and the
metrics are gathered so that every process holds the whole table. Only
process 0 prints and writes files.

Launching
---------
Run the same command in every process, before JAX computes anything (the
``jaxsweep`` command calls :func:`initialize` at startup; from Python, call
``jaxsweep.distributed.initialize()`` first thing).

Explicitly, with flags or environment variables (any machine, any launcher)::

  # on host 0 (10.0.0.1) and host 1, with the same port:
  jaxsweep run sweep.yaml --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0
  jaxsweep run sweep.yaml --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 1
  # or: JAXSWEEP_COORDINATOR=10.0.0.1:1234 JAXSWEEP_NUM_PROCESSES=2 \\
  #     JAXSWEEP_PROCESS_ID=0 jaxsweep run sweep.yaml

SLURM (one task per node, or one per GPU; JAX reads the ``SLURM_*`` variables
and picks the coordinator and process ids itself)::

  srun --nodes=4 --ntasks-per-node=1 jaxsweep run sweep.yaml --out runs/big

Open MPI: ``mpirun -np 4 jaxsweep run sweep.yaml`` (detected likewise).

Cloud TPU pod slice (one process per TPU VM worker; JAX finds the workers
from the TPU metadata)::

  gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \\
    --command="JAXSWEEP_DISTRIBUTED=auto jaxsweep run sweep.yaml --out runs/big"

On CPU-only hosts, processes talk through gloo (``jax_cpu_collectives_
implementation``), which :func:`initialize` selects; each process can also
split its cores into virtual devices (:func:`jaxsweep.sharding.configure_cpu_devices`).
The population's size is padded to a multiple of the *global* device count.
The output directory only needs to be writable by process 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxsweep import errors
from jaxsweep.engine import sharding

ENV_COORDINATOR = "JAXSWEEP_COORDINATOR"
ENV_NUM_PROCESSES = "JAXSWEEP_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXSWEEP_PROCESS_ID"
# "auto": let jax.distributed.initialize() detect the cluster (TPU pods,
# SLURM, Open MPI, Kubernetes); "0"/"off": never initialise.
ENV_DISTRIBUTED = "JAXSWEEP_DISTRIBUTED"


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
  text = environ.get(name, "").strip()
  if not text:
    return None
  try:
    return int(text)
  except ValueError:
    raise errors.ConfigError(f"{name}={text!r} is not an integer.", key=name) from None


def detected_cluster(environ: Mapping[str, str] | None = None) -> str | None:
  """The multi-process launcher this process runs under, if any.

  Only launchers that started more than one process count: a one-task SLURM
  job stays an ordinary single-process run.
  """
  environ = os.environ if environ is None else environ
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
           "SLURM_LOCALID")
  if all(v in environ for v in slurm) and (_env_int(environ, "SLURM_NTASKS") or 1) > 1:
    return "slurm"
  if ("OMPI_MCA_orte_hnp_uri" in environ
      and (_env_int(environ, "OMPI_COMM_WORLD_SIZE") or 1) > 1):
    return "ompi"
  return None


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, *,
             environ: Mapping[str, str] | None = None) -> dict | None:
  """Resolves how to join a multi-process run (pure; starts nothing).

  Explicit arguments win over ``JAXSWEEP_*`` environment variables.

  Returns:
    ``None`` for a single-process run, ``{}`` to let
    ``jax.distributed.initialize()`` detect the cluster, or the keyword
    arguments ``coordinator_address``, ``num_processes``, ``process_id``.

  Raises:
    ConfigError: for a partial or inconsistent setting.
  """
  environ = os.environ if environ is None else environ
  mode = environ.get(ENV_DISTRIBUTED, "").strip().lower()
  if mode in ("0", "off", "false", "no"):
    return None
  coordinator = coordinator or environ.get(ENV_COORDINATOR, "").strip() or None
  if num_processes is None:
    num_processes = _env_int(environ, ENV_NUM_PROCESSES)
  if process_id is None:
    process_id = _env_int(environ, ENV_PROCESS_ID)
  given = {"coordinator": coordinator, "num_processes": num_processes,
           "process_id": process_id}
  if any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise errors.ConfigError(
          f"a multi-process run needs the coordinator, the number of processes and "
          f"this process's id; {', '.join(missing)} not given.", key=missing[0],
          fix="pass --coordinator HOST:PORT --num-processes N --process-id I (or set "
              f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})")
    if ":" not in coordinator:
      raise errors.ConfigError(f"coordinator {coordinator!r} has no port.",
                               key="coordinator", fix="write it as HOST:PORT, e.g. 10.0.0.1:1234")
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise errors.ConfigError(
          f"process id {process_id} is not in [0, {num_processes}).", key="process_id",
          fix="number the processes 0, 1, ..., num_processes - 1")
    if num_processes == 1:
      return None
    return {"coordinator_address": coordinator, "num_processes": int(num_processes),
            "process_id": int(process_id)}
  if mode in ("1", "auto", "on", "true", "yes") or detected_cluster(environ):
    return {}
  return None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *,
               local_device_ids: Sequence[int] | None = None,
               timeout_s: int = 300) -> bool:
  """Joins this process to a multi-process sweep, if it was launched as one.

  A no-op (returning ``False``) for an ordinary single-process run, so the
  ``jaxsweep`` command calls it unconditionally at startup. Must run before
  any JAX computation.

  Args:
    coordinator: ``HOST:PORT`` of process 0 (``--coordinator`` or
      ``JAXSWEEP_COORDINATOR``).
    num_processes: how many processes (``--num-processes`` or
      ``JAXSWEEP_NUM_PROCESSES``).
    process_id: this process's id in ``[0, num_processes)`` (``--process-id``
      or ``JAXSWEEP_PROCESS_ID``).
    local_device_ids: restrict this process to these local devices.
    timeout_s: how long to wait for the other processes to connect.

  Returns:
    Whether this process is part of a multi-process run.

  Raises:
    ConfigError: for partial settings, or when JAX has already started.
  """
  if jax.distributed.is_initialized():
    return True
  kwargs = settings(coordinator, num_processes, process_id)
  if kwargs is None:
    return False
  if sharding.backend_started():
    raise errors.ConfigError(
        "jaxsweep.distributed.initialize() came after JAX had started computing.",
        key="coordinator",
        fix="call it first thing, before any JAX computation (the jaxsweep command does)")
  if sharding.platform_is_cpu():
    # CPU processes exchange data through gloo (tests/test_distributed.py).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if local_device_ids is not None:
    kwargs["local_device_ids"] = list(local_device_ids)
  jax.distributed.initialize(initialization_timeout=timeout_s, **kwargs)
  return True


def is_primary() -> bool:
  """Whether this process prints and writes files (process 0)."""
  return jax.process_index() == 0


def describe() -> str:
  """E.g. ``process 0 of 2, 2 local / 4 global devices``."""
  return (f"process {jax.process_index()} of {jax.process_count()}, "
          f"{jax.local_device_count()} local / {jax.device_count()} global devices")


def agree_min(value: float) -> float:
  """The smallest ``value`` over all processes (``value`` itself if one).

  Every process must pick the same chunk size, or their compiled programs
  would not match: limits measured per host are agreed on this way.
  """
  if jax.process_count() == 1:
    return value
  gathered = multihost_utils.process_allgather(np.asarray([value], np.float64))
  return float(np.min(gathered))


def agree_any(flag: bool) -> bool:
  """Whether ``flag`` is set in any process (``flag`` itself if one).

  Used at period boundaries so that every process takes part in the same
  checkpoint (a signal or a timer may fire in one process only).
  """
  if jax.process_count() == 1:
    return bool(flag)
  gathered = multihost_utils.process_allgather(np.asarray([flag], np.int32))
  return bool(np.max(gathered))
