"""Many processes: one sweep over every process's devices, one table.

Two processes on 127.0.0.1 (gloo CPU collectives), 2 virtual CPU devices
each, run the same sweep (tests/distributed_worker.py); both must hold the
same table, equal bit for bit to a single-process run, and only process 0 may
report progress.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest


import jaxsweep as js

from jaxsweep import distributed
from jaxsweep import errors
from tests import helpers

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
# Loaded by path: whatever pytest's import mode, the worker is not a package.
_spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
distributed_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(distributed_worker)
TIMEOUT_S = 120


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(tmp_path, num_processes=2):
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAXSWEEP_CPU_DEVICES")
         and not k.startswith("JAXSWEEP_")}
  env["JAX_PLATFORMS"] = "cpu"
  env.update(helpers.SUBPROCESS_ENV)
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, WORKER, str(port), str(num_processes), str(i),
       str(tmp_path / f"process{i}.json")],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(num_processes)]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT_S)[0])
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    pytest.fail(f"the {num_processes}-process sweep hung for {TIMEOUT_S}s")
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  failed = [(p.returncode, log) for p, log in zip(procs, logs) if p.returncode != 0]
  if failed:
    text = "\n".join(log for _, log in failed)
    if "gloo" in text.lower() and ("not" in text.lower() or "unavailable" in text.lower()):
      pytest.skip(f"gloo CPU collectives unavailable: {text.strip().splitlines()[-1]}")
    pytest.fail("a process failed:\n" + text[-4000:])
  return [json.loads((tmp_path / f"process{i}.json").read_text())
          for i in range(num_processes)]


def test_two_processes_give_the_single_process_table(tmp_path):
  first, second = _launch(tmp_path)
  for i, out in enumerate((first, second)):
    assert out["joined"] and out["process_index"] == i and out["process_count"] == 2
    assert out["local_devices"] == 2 and out["devices"] == 4
  # One coordinated table: both processes hold all of it, identically (but
  # for the time each measured).
  assert _timeless(first["rows"]) == _timeless(second["rows"])
  assert first["params"] == second["params"]
  assert len(first["rows"]) == len(distributed_worker.LEARNING_RATES)
  group = first["groups"][0]
  assert group["chunk_size"] % 4 == 0 and group["padding"] == group["chunk_size"] - 5
  # Only process 0 reports.
  assert first["events"][0] == "start" and first["events"][-1] == "done"
  assert second["events"] == []

  single = distributed_worker.run_sweep()
  assert _timeless(first["rows"]) == _timeless(json.loads(json.dumps(single.rows)))


def _timeless(rows):
  return [{k: v for k, v in r.items() if k not in js.results.TIMING_COLUMNS} for r in rows]


def test_settings_resolution():
  env = {}
  assert distributed.settings(environ=env) is None
  assert distributed.settings("10.0.0.1:1234", 2, 1, environ=env) == {
      "coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
  from_env = {"JAXSWEEP_COORDINATOR": "h:1", "JAXSWEEP_NUM_PROCESSES": "3",
              "JAXSWEEP_PROCESS_ID": "2"}
  assert distributed.settings(environ=from_env)["process_id"] == 2
  assert distributed.settings(process_id=0, environ=from_env)["process_id"] == 0
  assert distributed.settings("h:1", 1, 0, environ=env) is None  # One process.
  with pytest.raises(errors.ConfigError, match="num_processes, process_id not given"):
    distributed.settings("h:1", environ=env)
  with pytest.raises(errors.ConfigError, match="no port"):
    distributed.settings("h", 2, 0, environ=env)
  with pytest.raises(errors.ConfigError, match="not in"):
    distributed.settings("h:1", 2, 2, environ=env)
  with pytest.raises(errors.ConfigError, match="not an integer"):
    distributed.settings(environ={"JAXSWEEP_NUM_PROCESSES": "two"})
  # Launchers: only multi-task ones count; "auto" defers to JAX's detection.
  slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_PROCID": "0",
           "SLURM_LOCALID": "0"}
  assert distributed.settings(environ={**slurm, "SLURM_NTASKS": "1"}) is None
  assert distributed.settings(environ={**slurm, "SLURM_NTASKS": "2"}) == {}
  assert distributed.settings(environ={"JAXSWEEP_DISTRIBUTED": "auto"}) == {}
  assert distributed.settings(environ={**from_env, "JAXSWEEP_DISTRIBUTED": "off"}) is None


def test_initialize_single_process_is_a_no_op(monkeypatch):
  for name in ("JAXSWEEP_COORDINATOR", "JAXSWEEP_NUM_PROCESSES", "JAXSWEEP_PROCESS_ID",
               "JAXSWEEP_DISTRIBUTED", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize() is False
  assert distributed.is_primary()
  assert distributed.agree_min(3.0) == 3.0
  assert distributed.describe().startswith("process 0 of 1")
