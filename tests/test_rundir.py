"""Output directories: chosen fresh, checked before training, locked, owned.

Most tests use :mod:`jaxsweep.report.rundir` directly with made-up results
(no JAX compilation); the CLI runs share one tiny config, so its program is
compiled once per test process.
"""

import collections
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import jaxsweep as js
from jaxsweep import api
from jaxsweep import cli
from jaxsweep.engine import execute
from jaxsweep.report import runclaim
from jaxsweep.report import rundir
from tests import helpers

TINY = helpers.TINY_BASE + """\
sweep:
  optimizer.learning_rate: [1.0e-3, 1.0e-2]
"""


@pytest.fixture
def work(tmp_path, monkeypatch):
  """A working directory (runs/ goes there) with tiny.yaml in it."""
  monkeypatch.chdir(tmp_path)
  (tmp_path / "tiny.yaml").write_text(TINY)
  return tmp_path


def run_cli(argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main(argv)
  return code, out.getvalue(), err.getvalue()


def snapshot(directory):
  """Every file below ``directory``: relative path -> (mtime_ns, bytes)."""
  out = {}
  for dirpath, _, files in os.walk(directory):
    for f in files:
      path = os.path.join(dirpath, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, directory)] = (os.stat(path).st_mtime_ns, fh.read())
  return out


def fake_results(n=2):
  rows = [{"variant": i, "id": f"id{i}", "learning_rate": 0.1 * (i + 1), "group": 0,
           "status": "ok", "diverged_step": None, "steps": 4,
           "test_accuracy": 0.5 + 0.1 * i, "test_loss": 1.0 - 0.1 * i} for i in range(n)]
  history = {r["variant"]: [{"step": 4, "test_accuracy": r["test_accuracy"],
                             "test_loss": r["test_loss"]}] for r in rows}
  return js.Results(rows, history, swept=["learning_rate"], target="test_accuracy", mode="max",
                    settings={r["variant"]: {"optimizer.learning_rate": r["learning_rate"]}
                              for r in rows},
                    metrics=["test_accuracy", "test_loss"], seconds=1.0,
                    groups=[{"group": 0, "variants": n}])


def listed(directory):
  with open(os.path.join(directory, "results.json")) as f:
    return json.load(f)["outputs"]


def present(directory):
  return sorted(e + "/" if os.path.isdir(os.path.join(directory, e)) else e
                for e in os.listdir(directory))


# --------------------------------------------------------------------------
# Choosing the directory.

def test_default_dir_numbering(tmp_path):
  root = str(tmp_path / "runs")
  assert runclaim.default_dir("configs/digits_lr.yaml", root) == os.path.join(root, "digits_lr")
  assert runclaim.latest_dir("digits_lr", root) is None
  os.makedirs(os.path.join(root, "digits_lr"))  # Empty: still free.
  assert runclaim.default_dir("digits_lr", root) == os.path.join(root, "digits_lr")
  (tmp_path / "runs" / "digits_lr" / "results.csv").write_text("x")
  assert runclaim.default_dir("digits_lr.yaml", root) == os.path.join(root, "digits_lr-2")
  os.makedirs(os.path.join(root, "digits_lr-2", "tensorboard"))
  (tmp_path / "runs" / "digits_lr-3").write_text("a file, not a directory")
  assert runclaim.default_dir("digits_lr", root) == os.path.join(root, "digits_lr-4")
  assert runclaim.latest_dir("digits_lr", root) == os.path.join(root, "digits_lr-2")
  os.makedirs(os.path.join(root, "digits_lr-10", "checkpoint"))
  os.makedirs(os.path.join(root, "digits_lr_other", "x"))
  assert runclaim.latest_dir("digits_lr", root) == os.path.join(root, "digits_lr-10")


def test_second_run_gets_a_fresh_directory(work):
  code, out1, err1 = run_cli(["run", "tiny.yaml", "--no-plots"])
  assert code == 0, err1
  first = os.path.join("runs", "tiny")
  assert f"writing to {first}" in err1 and f"results in {first}" in out1
  before = snapshot(first)
  code, out2, err2 = run_cli(["run", "tiny.yaml", "--no-plots"])
  assert code == 0, err2
  second = os.path.join("runs", "tiny-2")
  assert f"writing to {second}" in err2 and f"results in {second}" in out2
  assert snapshot(first) == before  # The first run is untouched.
  for d in (first, second):
    assert listed(d) == present(d)  # results.json lists exactly what is there.
    manifest = rundir.read_manifest(d)
    assert manifest["status"] == "finished" and not os.path.exists(os.path.join(d, rundir.LOCK))
    assert sorted([*manifest["files"], "run.json"]) == present(d)
  # The same sweep both times; into its own finished directory it is refused.
  assert rundir.read_manifest(first)["sweep_id"] == rundir.read_manifest(second)["sweep_id"]
  code, _, err = run_cli(["run", "tiny.yaml", "--out", first])
  assert code == 2 and "already holds this sweep's finished results" in err
  assert snapshot(first) == before


# --------------------------------------------------------------------------
# --out problems: one line, seconds, before any compilation.

def _not_writable(tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir()
  os.chmod(locked, 0o500)
  if os.access(locked, os.W_OK):
    os.chmod(locked, 0o700)
    pytest.skip("permissions are not enforced (running as root)")
  return locked


@pytest.mark.parametrize("case, needle", [
    ("file", "is a file, not a directory"),
    ("under-file", "is a file"),
    ("not-writable", "permission denied"),
    ("not-writable-parent", "is not writable"),
    ("no-access", "cannot create"),
    ("no-space", "not enough free space"),
    ("other-sweep", "holds another sweep"),
    ("user-config", "holds files jaxsweep did not write (config.yaml)"),
    ("in-use", "in use by another jaxsweep run (pid {pid} on "),
    ("resume-other", "cannot resume"),
])
def test_out_problems_fail_fast_before_compiling(work, monkeypatch, case, needle):
  out = str(work / "out")
  extra = []
  held = None
  if case == "file":
    (work / "out").write_text("mine")
  elif case == "under-file":
    (work / "f.txt").write_text("mine")
    out = str(work / "f.txt" / "sub")
  elif case == "not-writable":
    out = str(_not_writable(work))
  elif case == "not-writable-parent":
    out = str(_not_writable(work) / "sub")
  elif case == "no-access":  # As root, where chmod does not stop writes.
    monkeypatch.setattr(rundir.os, "access", lambda path, mode: False)
  elif case == "no-space":
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: usage(10**12, 10**12, 1000))
  elif case in ("other-sweep", "resume-other"):
    os.makedirs(out)
    (work / "out" / "run.json").write_text(json.dumps(
        {"sweep_id": "0" * 64, "status": "finished", "files": ["results.csv"]}))
    (work / "out" / "results.csv").write_text("old")
    extra = ["--resume"] if case == "resume-other" else []
  elif case == "user-config":
    (work / "config.yaml").write_text("my own config\n")
    out = "."
  elif case == "in-use":
    held = rundir.prepare(out, sweep_id="someone else")
  files_before = snapshot(work)
  try:
    t0 = time.perf_counter()
    with helpers.count_compiles() as compiles:
      code, stdout, err = run_cli(["run", "tiny.yaml", "--out", out, *extra])
    seconds = time.perf_counter() - t0
  finally:
    if held is not None:
      held.close()
    if "not-writable" in case:
      os.chmod(work / "locked", 0o700)
  assert code == 2 and needle.format(pid=os.getpid()) in err, err
  assert "key 'out'" in err and "fix:" in err and "Traceback" not in err
  assert len(err.strip().splitlines()) == 2 and not stdout  # The error and its fix.
  assert seconds < 5 and compiles == []
  if case != "in-use":
    assert snapshot(work) == files_before  # Nothing written, nothing replaced.


def test_python_api_refuses_out_before_training(tmp_path):
  (tmp_path / "f").write_text("x")
  with helpers.count_compiles() as compiles:
    with pytest.raises(js.ConfigError, match="is a file") as e:
      helpers.run({"learning_rate": [0.1]}, out=str(tmp_path / "f"))
    with pytest.raises(js.ConfigError, match="needs out="):
      helpers.run({"learning_rate": [0.1]}, resume=True)
  assert e.value.key == "out" and compiles == []


# --------------------------------------------------------------------------
# Ownership: --overwrite, the user's files.

def _old_sweep(directory, sweep_id="0" * 64):
  os.makedirs(os.path.join(directory, "tensorboard", "0000_x"))
  for name in ("results.csv", "old_plot.png", os.path.join("tensorboard", "0000_x", "ev")):
    with open(os.path.join(directory, name), "w") as f:
      f.write("old sweep")
  with open(os.path.join(directory, "run.json"), "w") as f:
    json.dump({"sweep_id": sweep_id, "status": "finished",
               "files": ["results.csv", "old_plot.png", "tensorboard/", "../escape"]}, f)


def test_overwrite_deletes_only_the_old_sweeps_files(tmp_path):
  d = str(tmp_path / "run")
  _old_sweep(d)
  (tmp_path / "run" / "notes.txt").write_text("my notes")
  (tmp_path / "escape").write_text("outside")
  with pytest.raises(js.ConfigError, match="--overwrite replaces"):
    rundir.prepare(d, sweep_id="new")
  assert os.path.exists(os.path.join(d, "old_plot.png"))
  with rundir.prepare(d, sweep_id="new", overwrite=True) as rd:
    assert sorted(os.listdir(d)) == [rundir.LOCK, "notes.txt", "run.json"]
    rd.write_outputs(fake_results(), config={"optimizer": {"name": "sgd"}}, plots=False)
  assert (tmp_path / "run" / "notes.txt").read_text() == "my notes"
  assert (tmp_path / "escape").read_text() == "outside"  # Never outside the directory.
  assert listed(d) == [e for e in present(d) if e != "notes.txt"]
  assert "old_plot.png" not in present(d) and "best.yaml" in present(d)
  manifest = rundir.read_manifest(d)
  assert manifest["sweep_id"] == "new" and "notes.txt" not in manifest["files"]


def test_user_files_are_never_replaced(tmp_path):
  # A name jaxsweep would write, not written by jaxsweep: refused, even with
  # --overwrite, and nothing of the old sweep is deleted.
  d = str(tmp_path / "run")
  _old_sweep(d)
  (tmp_path / "run" / "best.yaml").write_text("my best")
  for kw in ({}, {"overwrite": True}, {"resume": True}):
    with pytest.raises(js.ConfigError, match=r"did not write \(best.yaml\)"):
      rundir.prepare(d, sweep_id="0" * 64, **kw)
  assert (tmp_path / "run" / "best.yaml").read_text() == "my best"
  assert os.path.exists(os.path.join(d, "old_plot.png"))
  assert not os.path.exists(os.path.join(d, rundir.LOCK))
  # Files of other names are kept beside the run's; the run lists only its own.
  mine = tmp_path / "project"
  mine.mkdir()
  (mine / "train.py").write_text("print('mine')")
  with rundir.prepare(str(mine), sweep_id="s") as rd:
    rd.write_outputs(fake_results(), plots=False)
  assert (mine / "train.py").read_text() == "print('mine')"
  assert listed(str(mine)) == [e for e in present(str(mine)) if e != "train.py"]


def test_failed_run_leaves_nothing_and_releases_the_lock(tmp_path):
  d = str(tmp_path / "new")
  with pytest.raises(RuntimeError):
    with rundir.prepare(d, sweep_id="s"):
      raise RuntimeError("boom")
  assert not os.path.exists(d)
  existing = tmp_path / "empty"
  existing.mkdir()
  with pytest.raises(KeyboardInterrupt):
    with rundir.prepare(str(existing), sweep_id="s"):
      raise KeyboardInterrupt
  assert os.listdir(existing) == []


def test_write_failure_keeps_results_in_memory(work, monkeypatch, capsys):
  def full(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(js.report.outputs, "_write_aggregated", full)
  res = js.run_config("tiny.yaml", out="out")
  assert len(res.rows) == 2  # Returned, not raised.
  err = capsys.readouterr().err
  assert "could not be written to out" in err and "in memory only" in err
  assert "No space left on device" in err and "Traceback" not in err
  assert present("out") == ["checkpoint/", "results.csv", "results.json", "run.json"]
  manifest = rundir.read_manifest("out")
  assert manifest["status"] == "finished" and "No space" in manifest["error"]
  assert "results" in manifest["missing"]
  code, stdout, err = run_cli(["run", "tiny.yaml", "--out", "out2", "--quiet"])
  assert code == 1 and "in memory only" in err and "best: variant" in stdout


def test_a_failure_after_the_results_never_costs_them(work, monkeypatch):
  """issue 26: a config that cannot be dumped, a failing plot: the results are
  written first, the rest each on its own; one line, exit 1."""
  def unrepresentable(*args, **kwargs):
    raise yaml.representer.RepresenterError("cannot represent an object", "LogUniform()")

  def broken_plots(*args, **kwargs):
    raise RuntimeError("no display")

  monkeypatch.setattr(js.report.outputs.yaml, "safe_dump", unrepresentable)
  monkeypatch.setattr(js.report.outputs.plots_lib, "make_plots", broken_plots)
  code, stdout, err = run_cli(["run", "tiny.yaml", "--out", "out", "--quiet"])
  assert code == 1 and "best: variant" in stdout and "Traceback" not in err
  [line] = [ln for ln in err.splitlines() if "not written" in ln]
  assert "config.yaml: RepresenterError" in line and "plots: RuntimeError" in line
  assert "the results are complete" in line
  assert {"results.csv", "results.json", "results.md", "results_aggregated.csv",
          "results_aggregated.json"} <= set(present("out"))
  manifest = rundir.read_manifest("out")
  assert manifest["status"] == "finished" and "RepresenterError" in manifest["error"]
  assert manifest["missing"] == ["config.yaml", "best.yaml", "plots"]
  assert listed("out") == present("out")
  code, _, err = run_cli(["report", "out"])
  assert code == 0 and "incomplete" in err and "plots" in err


# --------------------------------------------------------------------------
# The lock.

HOLD = """\
import sys, time
from jaxsweep.report import rundir
rd = rundir.prepare(sys.argv[1], sweep_id="child")
print("ready", flush=True)
time.sleep(60)
"""


def test_concurrent_writer_refused_then_stale_lock_taken_over(tmp_path, capsys):
  d = str(tmp_path / "run")
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(__file__)),
                                        os.environ.get("PYTHONPATH", "")])}
  child = subprocess.Popen([sys.executable, "-c", HOLD, d], stdout=subprocess.PIPE, text=True,
                           env=env)
  try:
    assert child.stdout.readline().strip() == "ready"
    with pytest.raises(js.ConfigError, match=f"in use by another jaxsweep run "
                                             f"\\(pid {child.pid} on ") as e:
      rundir.prepare(d, sweep_id="child", resume=True)
    assert e.value.key == "out" and rundir.LOCK in e.value.fix
  finally:
    child.send_signal(signal.SIGKILL)  # Dies holding the lock.
    child.wait()
    child.stdout.close()
  assert os.path.exists(os.path.join(d, rundir.LOCK))
  with rundir.prepare(d, sweep_id="child", resume=True) as rd:
    assert rd.resumed  # The killed run was "running": the same sweep goes on.
    with open(os.path.join(d, rundir.LOCK)) as f:
      assert json.load(f)["pid"] == os.getpid()
  assert f"took over the stale lock of {d} (pid {child.pid}" in capsys.readouterr().err
  assert not os.path.exists(os.path.join(d, rundir.LOCK))


def test_lock_of_another_host_or_unreadable_is_respected(tmp_path):
  d = tmp_path / "run"
  d.mkdir()
  (d / rundir.LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "t"}))
  with pytest.raises(js.ConfigError, match="pid 1 on elsewhere"):
    rundir.prepare(str(d), sweep_id="s")
  (d / rundir.LOCK).write_text("")
  with pytest.raises(js.ConfigError, match="unreadable"):
    rundir.prepare(str(d), sweep_id="s")


# --------------------------------------------------------------------------
# Interrupt and resume.

class FakeInterrupted(Exception):
  def __init__(self, signum, step):
    super().__init__(f"signal {signum}")
    self.signum, self.exit_code, self.step = signum, 128 + signum, step


def test_interrupt_then_resume(work, monkeypatch):
  real = execute.execute

  def interrupted(plan, **kwargs):
    ckpt = os.path.join("out", rundir.CHECKPOINT)
    os.makedirs(ckpt, exist_ok=True)
    with open(os.path.join(ckpt, "state"), "w") as f:
      f.write("saved")
    raise FakeInterrupted(signal.SIGTERM, 3)

  monkeypatch.setattr(rundir, "INTERRUPTS", (KeyboardInterrupt, FakeInterrupted))
  monkeypatch.setattr(execute, "execute", interrupted)
  argv = ["run", "tiny.yaml", "--out", "out", "optimizer.learning_rate=0.001,0.02"]
  code, stdout, err = run_cli(argv)
  assert code == 143 and not stdout and "Traceback" not in err
  assert err.strip().splitlines()[-1] == (
      "jaxsweep: interrupted; the population was saved at step 3. Resume with: jaxsweep run "
      "tiny.yaml optimizer.learning_rate=0.001,0.02 --out out --resume")
  manifest = rundir.read_manifest("out")
  assert manifest["status"] == "interrupted" and manifest["files"] == ["checkpoint/"]
  assert not os.path.exists(os.path.join("out", rundir.LOCK))
  code, _, err = run_cli(argv)  # Neither resumed nor overwritten: refused.
  assert code == 2 and "unfinished run of this sweep (interrupted)" in err
  assert "--resume to continue it" in err
  code, _, err = run_cli(["run", "tiny.yaml", "--out", "out", "--resume"])  # Another sweep.
  assert code == 2 and "cannot resume" in err
  monkeypatch.setattr(execute, "execute", real)
  code, _, err = run_cli([*argv, "--resume"])
  assert code == 0, err
  assert "resuming the run in out" in err
  manifest = rundir.read_manifest("out")
  assert manifest["status"] == "finished" and len(manifest["resumed"]) == 1
  assert listed("out") == present("out") and "checkpoint/" in present("out")


def test_keyboard_interrupt_before_anything_saved(work, monkeypatch):
  def stop(plan, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(execute, "execute", stop)
  code, stdout, err = run_cli(["run", "tiny.yaml"])
  assert code == 130 and not stdout and "Traceback" not in err
  assert err.strip().splitlines()[-1] == "jaxsweep: interrupted; nothing was saved."
  assert not os.path.exists(os.path.join("runs", "tiny"))  # Nothing left behind.


def test_overwrite_and_resume_flags(work, capsys):
  with pytest.raises(SystemExit) as e:  # A usage error, from argparse.
    cli.main(["run", "tiny.yaml", "--resume", "--overwrite"])
  assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
  with pytest.raises(js.ConfigError, match="exclude each other"):
    rundir.prepare("x", sweep_id="s", resume=True, overwrite=True)
  code, _, err = run_cli(["run", "tiny.yaml", "--checkpoint-every", "-1"])
  assert code == 2 and "--checkpoint-every -1" in err
  assert api.DEFAULT_CHECKPOINT_EVERY == 300


# --------------------------------------------------------------------------
# report and compare only read.

def test_report_never_modifies_the_run(work):
  code, _, err = run_cli(["run", "tiny.yaml", "--out", "run", "--tensorboard"])
  assert code == 0, err
  assert listed("run") == present("run")  # Plots and tensorboard/ too.
  before = snapshot("run")
  code, out, err = run_cli(["report", "run", "--target", "val_nll"])
  assert code == 0 and not err and "results in run" in out
  code, out, err = run_cli(["compare", "run", "run"])
  assert code == 0, err
  for bad in (["--out", "run"], ["--out", os.path.join("run", "sub")], ["--tensorboard"]):
    code, _, err = run_cli(["report", "run", "--target", "val_nll", *bad])
    assert code == 2 and "key 'out'" in err and "Traceback" not in err, bad
  code, out, err = run_cli(["report", "run", "--target", "val_nll", "--out", "rerank",
                            "--no-plots"])
  assert code == 0, err
  assert snapshot("run") == before  # Not a byte, not an mtime.
  reranked = js.Results.from_json(os.path.join("rerank", "results.json"))
  assert reranked.target == "val_nll" and "results in rerank" in out
  assert listed("rerank") == present("rerank")
  code, _, err = run_cli(["report", "run", "--target", "val_nll", "--out", "rerank"])
  assert code == 2 and "already holds" in err
  code, _, err = run_cli(["report", "run", "--out", "rerank", "--overwrite", "--no-plots"])
  assert code == 0, err
  assert js.Results.from_json(os.path.join("rerank", "results.json")).target == "val_accuracy"
  assert snapshot("run") == before


def test_fingerprint_tells_sweeps_apart(work):
  cfg = js.config.load("tiny.yaml")
  plan = js.engine.make_plan(cfg.components, cfg.base, cfg.points)
  again = js.engine.make_plan(cfg.components, cfg.base, cfg.points)
  other = js.config.load("tiny.yaml", ["train.steps=9"])
  fp = js.engine.fingerprint.fingerprint
  assert fp(plan) == fp(again) != fp(js.engine.make_plan(other.components, other.base,
                                                         other.points))
