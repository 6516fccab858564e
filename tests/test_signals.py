"""Every signal at every moment (issue 25, points 1-3 and 8).

The policy of :mod:`jaxsweep.signals` is tested in small subprocesses that
load the module by its path (standard library only: no JAX, fast). Then
``jaxsweep run`` in its own process is stopped at several moments (while
importing, right after its run directory is claimed, while writing the
results, while writing the optional files: the test-only hook
``JAXSWEEP_TEST_PAUSE_AT`` waits there): each time one line, exit 130/143, a
consistent directory (no lock, no temporary file, ``run.json`` says
interrupted and what is missing), and ``--resume`` completes. Four runs
started together without ``--out`` each take their own directory.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from jaxsweep import signals
from jaxsweep.report import outputs
from jaxsweep.report import runclaim
from jaxsweep.report import rundir
from tests import helpers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SIGNALS_PY = os.path.join(ROOT, "jaxsweep", "signals.py")
TINY = helpers.TINY_BASE + """\
sweep:
  optimizer.learning_rate: [1.0e-3, 1.0e-2]
"""
LOAD = f"""\
import importlib.util, os, signal, sys, time
spec = importlib.util.spec_from_file_location("jsig", {SIGNALS_PY!r})
s = importlib.util.module_from_spec(spec)
spec.loader.exec_module(s)
def kill(sig):
  os.kill(os.getpid(), sig)
  time.sleep(0.05)  # The handler runs at the next bytecode.
"""


def _env(**extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES") and not k.startswith("JAXSWEEP_")}
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env.update(helpers.SUBPROCESS_ENV)
  env.update(extra)
  return env


def _script(body):
  p = subprocess.run([sys.executable, "-c", LOAD + textwrap.dedent(body)], capture_output=True,
                     text=True, timeout=120, env=_env())
  return p.returncode, p.stdout.split(), p.stderr


# --------------------------------------------------------------------------
# The policy.

def test_start_up_records_and_arm_acts():
  code, out, err = _script("""
      s.install()
      kill(signal.SIGINT)
      print("recorded", s.requested())
      try:
        s.arm()
      except s.Interrupt as e:
        print("arm", e.exit_code, isinstance(e, KeyboardInterrupt))
      """)
  assert (code, out, err) == (0, ["recorded", "2", "arm", "130", "True"], "")


def test_critical_holds_a_signal_until_the_block_is_whole():
  code, out, err = _script("""
      s.install(armed=True)
      try:
        with s.critical():
          with s.critical():
            kill(signal.SIGTERM)
            print("inner")
          print("outer")
      except s.Interrupt as e:
        print("raised", e.exit_code)
      try:
        with s.critical():
          kill(signal.SIGINT)
          raise ValueError("already leaving")
      except ValueError:
        print("kept")
      """)
  assert (code, out, err) == (0, ["inner", "outer", "raised", "143", "kept"], "")


def test_training_records_the_first_signal_and_stops_at_the_second():
  code, out, err = _script("""
      s.install(armed=True)
      try:
        with s.deferred():
          kill(signal.SIGINT)
          print("first", s.requested())
          with s.critical():  # A checkpoint being written.
            kill(signal.SIGINT)
            print("saving")
          print("unreached")
      except s.Interrupt as e:
        print("second", e.exit_code)
      """)
  assert (code, out, err) == (0, ["first", "2", "saving", "second", "130"], "")


def test_deferred_without_install_restores_the_previous_handlers():
  code, out, err = _script("""
      before = signal.getsignal(signal.SIGINT)
      with s.deferred():
        kill(signal.SIGTERM)
        print("recorded", s.requested())
      print(signal.getsignal(signal.SIGINT) is before, s.requested())
      """)
  assert (code, out, err) == (0, ["recorded", "15", "True", "None"], "")


def test_a_third_signal_inside_a_critical_block_ends_the_process():
  code, out, _ = _script("""
      s.install(armed=True)
      with s.critical():
        kill(signal.SIGTERM)
        kill(signal.SIGTERM)
        print("held")
        kill(signal.SIGTERM)
        print("unreached")
      """)
  assert code == -signal.SIGTERM and out == ["held"]


def test_a_signal_inside_a_garbage_collector_callback_is_not_swallowed():
  """issue 25.3: ``Exception ignored in _xla_gc_callback``, then the sweep ran
  to the end: the interrupt is raised once out of the callback."""
  code, out, err = _script("""
      import gc, threading
      busy = []
      def callback(phase, info):
        if busy and phase == "start":
          time.sleep(0.5)  # The signal arrives here.
      gc.callbacks.append(callback)
      s.install(armed=True)
      threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
      try:
        busy.append(1)
        gc.collect()
        busy.clear()
        time.sleep(2)
        print("swallowed")
      except s.Interrupt as e:
        print("interrupted", e.exit_code)
      """)
  assert (code, out) == (0, ["interrupted", "130"]), err
  assert "Exception ignored" not in err


def test_a_signal_while_jax_imports_is_acted_on_after_the_import():
  """issue 25.3: Ctrl-C while JAX imported gave tracebacks, a swallowed
  interrupt (``Exception ignored in _xla_gc_callback``), SIGSEGV, SIGABRT."""
  code, out, err = _script("""
      import threading
      s.install()
      for t in (0.05, 0.4, 0.9):
        threading.Timer(t, os.kill, (os.getpid(), signal.SIGINT)).start()
      import jax, jax.numpy as jnp
      time.sleep(1.0)
      print("imported", float(jnp.ones(2).sum()))
      try:
        s.arm()
      except s.Interrupt as e:
        print("interrupted", e.exit_code)
        sys.exit(e.exit_code)
      """)
  assert code == 130, err
  assert out == ["imported", "2.0", "interrupted", "130"]
  assert "Traceback" not in err and "Exception ignored" not in err


# --------------------------------------------------------------------------
# `jaxsweep run` stopped at each moment.

def _start(work, *args, pause=None, devices="1"):
  extra = {}
  marker = work / "paused"
  if marker.exists():
    marker.unlink()
  if pause:
    extra[signals.PAUSE_ENV] = f"{pause}:{marker}"
  return subprocess.Popen(
      [sys.executable, "-m", "jaxsweep", "--devices", devices, "run", "tiny.yaml", "--quiet",
       "--no-plots", "--format", "csv", *args],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**extra), cwd=work)


def _wait_for(p, marker, timeout=240):
  deadline = time.monotonic() + timeout
  while not marker.exists():
    assert p.poll() is None, p.communicate()
    assert time.monotonic() < deadline, "the run never reached the pause"
    time.sleep(0.05)


def _leftovers(directory):
  return sorted(os.path.relpath(os.path.join(d, f), directory)
                for d, dirs, files in os.walk(directory) for f in dirs + files
                if f.startswith((".tmp-", rundir.LOCK)) or f.endswith(".tmp"))


@pytest.fixture
def work(tmp_path):
  (tmp_path / "tiny.yaml").write_text(TINY)
  return tmp_path


def _one_line(err):
  assert "Traceback" not in err and "Exception ignored" not in err, err
  lines = [ln for ln in err.splitlines() if ln.strip()]
  assert len(lines) == 1, err
  return lines[0]


@pytest.fixture(scope="module")
def cli_imports_jax():
  """Whether ``import jaxsweep.cli`` imports JAX (before main can install
  the policy): the light-import CLI of issue 24 makes it False."""
  p = subprocess.run([sys.executable, "-c", "import sys, jaxsweep.cli; print('jax' in "
                      "sys.modules)"], capture_output=True, text=True, env=_env(), timeout=120)
  return p.stdout.strip() == "True"


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_ctrl_c_while_the_command_starts(delay, work, cli_imports_jax):
  if cli_imports_jax:
    pytest.skip("import jaxsweep.cli imports JAX before main() installs the policy; "
                "passes once the CLI imports lightly (issue 24)")
  p = _start(work, "--out", "out")
  time.sleep(delay)
  p.send_signal(signal.SIGINT)
  _, err = p.communicate(timeout=240)
  assert p.returncode == 130, err
  assert "interrupted" in _one_line(err)
  assert not (work / "out").exists() or not _leftovers(work / "out")


def test_sigterm_right_after_the_run_directory_appears(work):
  """issue 25.1: the default action killed the process there (lock and
  temporary files left, run.json `running`)."""
  p = _start(work, pause="rundir")
  _wait_for(p, work / "paused")
  assert (work / "runs" / "tiny" / rundir.LOCK).exists()
  p.send_signal(signal.SIGTERM)
  _, err = p.communicate(timeout=120)
  assert p.returncode == 143, err
  assert _one_line(err) == "jaxsweep: interrupted; nothing was saved."
  assert not (work / "runs" / "tiny").exists()  # Nothing was written: nothing left.
  p = _start(work, "--resume")
  _, err = p.communicate(timeout=240)
  assert p.returncode == 0, err
  assert rundir.read_manifest(str(work / "runs" / "tiny"))["status"] == "finished"


@pytest.mark.parametrize("moment, sig", [("writing", signal.SIGINT),
                                         ("extras", signal.SIGTERM)])
def test_a_signal_while_the_results_are_written(moment, sig, work):
  """issue 25.1-2: the results are whole or absent, the directory says it is
  incomplete (run.json, `jaxsweep report`), and --resume completes it."""
  out = work / "out"
  (out / ".tmp-1234run.json").parent.mkdir()
  (out / ".tmp-1234run.json").write_text("{")  # Left by a process killed long ago.
  p = _start(work, "--out", "out", pause=moment)
  _wait_for(p, work / "paused")
  assert not (out / ".tmp-1234run.json").exists()  # Cleaned by the next run.
  p.send_signal(sig)
  _, err = p.communicate(timeout=120)
  assert p.returncode == 128 + sig, err
  line = _one_line(err)
  assert line.startswith("jaxsweep: interrupted; the last checkpoint is in ") and "--resume" in line
  manifest = rundir.read_manifest(str(out))
  assert manifest["status"] == "interrupted"
  assert manifest["missing"] == list(outputs.EXTRAS)
  assert not _leftovers(out)
  names = set(os.listdir(out))
  assert {"results.csv", "results.json", "results_aggregated.csv", "results.md"} <= names
  assert not {"config.yaml", "best.yaml"} & names
  with open(out / "results.json") as f:
    assert len(json.load(f)["rows"]) == 2
  report = subprocess.run([sys.executable, "-m", "jaxsweep", "report", "out", "--format",
                           "plain"], capture_output=True, text=True, env=_env(), cwd=work,
                          timeout=240)
  assert report.returncode == 0, report.stderr
  assert "is incomplete (run interrupted; not written: config.yaml" in report.stderr
  p = _start(work, "--out", "out", "--resume")
  _, err = p.communicate(timeout=240)
  assert p.returncode == 0, err
  manifest = rundir.read_manifest(str(out))
  assert manifest["status"] == "finished" and manifest["missing"] == []
  assert {"config.yaml", "best.yaml"} <= set(os.listdir(out)) and not _leftovers(out)


# --------------------------------------------------------------------------
# Run directories under concurrency (issue 25.8).

def test_simultaneous_claims_take_distinct_directories(tmp_path):
  root = str(tmp_path / "runs")
  os.makedirs(os.path.join(root, "tiny"))  # An empty one: taken by exactly one.
  barrier, got = threading.Barrier(8), []

  def claim():
    barrier.wait()
    got.append(runclaim.claim_default_dir("tiny.yaml", root))

  threads = [threading.Thread(target=claim) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert sorted(os.path.basename(p) for p in got) == sorted(
      ["tiny"] + [f"tiny-{k}" for k in range(2, 9)])
  for path in got:
    runclaim.release_claim(path)
  assert os.listdir(root) == []  # Released claims leave nothing.


def test_four_runs_started_together_each_take_their_own_directory(work):
  """issue 25.8: one ran, three failed "in use by another run"."""
  procs = [_start(work) for _ in range(4)]
  results = [p.communicate(timeout=400) for p in procs]
  assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
  assert sorted(os.listdir(work / "runs")) == ["tiny", "tiny-2", "tiny-3", "tiny-4"]
  for name in os.listdir(work / "runs"):
    assert rundir.read_manifest(str(work / "runs" / name))["status"] == "finished"
