"""Checkpoint and resume: nothing a sweep computed is lost.

A sweep killed (SIGKILL), interrupted (SIGINT) or terminated (SIGTERM) in a
subprocess resumes from its last checkpoint to the same table, bit for bit,
as an uninterrupted run; a checkpoint of another sweep, or a corrupt one, is
refused. In-process tests cover crashes at a boundary, chunked groups and a
resume after the end.
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import jaxsweep as js
from jaxsweep import engine
from jaxsweep import errors
from jaxsweep.engine import checkpoint
from tests import helpers

ROOT = os.path.join(os.path.dirname(__file__), "..")
# Many short periods, a checkpoint at each boundary: a signal arrives mid-run.
CONFIG = """
data: {name: synthetic, num_train: 256, num_test: 64, num_features: 8, num_classes: 4}
model: {name: mlp, features: [16]}
optimizer: {name: adam}
train: {steps: 800, batch_size: 16, eval_every: 8}
sweep:
  optimizer.learning_rate: [3.0e-3, 1.0e-2, 3.0e-2, 0.1, 0.3]
"""


def _env():
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES") and not k.startswith("JAXSWEEP_")}
  env["JAX_PLATFORMS"] = "cpu"
  env.update(helpers.SUBPROCESS_ENV)
  return env


def _jaxsweep(tmp_path, out, *flags):
  """``jaxsweep run`` as a user runs it, in its own process."""
  config = tmp_path / "sweep.yaml"
  config.write_text(CONFIG)
  return subprocess.Popen(
      [sys.executable, "-m", "jaxsweep.cli", "--devices", "2", "run", str(config), "--out",
       str(out), "--checkpoint-every", "0", "--no-plots", "--format", "csv", *flags],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
      cwd=os.path.abspath(ROOT))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The same sweep uninterrupted, in this process: on CPU (one lane) a
  variant's bits do not depend on the device count, so the CSV must match."""
  config = tmp_path_factory.mktemp("uninterrupted") / "sweep.yaml"
  config.write_text(CONFIG)
  return _csv_rows(js.run_config(str(config)).to_csv())


def _csv_rows(text):
  """The CSV's rows without the timing columns (the only ones that may differ)."""
  rows = list(csv.DictReader(io.StringIO(text)))
  for r in rows:
    for c in js.results.TIMING_COLUMNS:
      r.pop(c)
  return rows


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_resume_after_a_signal_gives_the_uninterrupted_table(sig, uninterrupted, tmp_path):
  out = tmp_path / "out"
  p = _jaxsweep(tmp_path, out)
  deadline = time.monotonic() + 300
  while not checkpoint.exists(str(out / "checkpoint")):
    assert p.poll() is None, p.communicate()[1]
    assert time.monotonic() < deadline, "no checkpoint appeared"
    time.sleep(0.02)
  assert p.poll() is None, "the sweep finished before the signal: make it longer"
  os.kill(p.pid, sig)
  _, err = p.communicate(timeout=120)
  if sig == signal.SIGKILL:
    assert p.returncode == -signal.SIGKILL
  else:  # Finished the period, saved, said how to resume, in one line.
    assert p.returncode == 128 + sig, err
    assert "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert "saved at step" in line and "--resume" in line
  assert not (out / "results.csv").exists()
  resumed = _jaxsweep(tmp_path, out, "--resume")
  _, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err
  assert "resuming the run in" in err
  assert _csv_rows((out / "results.csv").read_text()) == uninterrupted


# --------------------------------------------------------------------------
# In-process: crashes at a boundary, chunks, refusals.

LRS = [1e-3, 3e-3, 1e-2, 3e-2, 5e-2]


def _plan(lrs=LRS, steps=helpers.STEPS):
  return engine.make_plan(
      engine.Components(model=helpers.mlp, optimizer=helpers.adam,
                        loss=js.losses.cross_entropy, data=helpers.DATA),
      {"train.steps": steps, "train.batch_size": helpers.BATCH, "train.eval_every": 2,
       "train.eval_batch_size": 1024, "model.features": (16,), "seed": 0},
      [{"optimizer.learning_rate": lr, "seed": i % 2} for i, lr in enumerate(lrs)])


class _Crash(Exception):
  pass


class _CrashAt(engine.scheduling.Base):
  """A scheduler that raises at the n-th boundary (like a crash mid-sweep)."""

  def __init__(self, n):
    self.n, self.seen = n, 0

  def boundary(self, b):
    self.seen += 1
    if self.seen == self.n:
      raise _Crash
    return engine.Decision()


_same = helpers.assert_same_results


@pytest.fixture(scope="module")
def reference():
  return engine.execute.execute(_plan())


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_crash_then_resume_equals_uninterrupted(chunk_size, reference, tmp_path):
  """Chunked: 3 chunks of 2 on one device, trained in lockstep (two of them
  parked on the host while the third trains); the reference ran on 8
  devices in one chunk."""
  plan = _plan()
  mesh = engine.sharding.make_mesh(jax.devices()[:1]) if chunk_size else None
  with pytest.raises(_Crash):  # Crashes at the 2nd boundary.
    engine.execute.execute(plan, scheduler=_CrashAt(2), mesh=mesh,
                           chunk_size=chunk_size, checkpoint_dir=str(tmp_path),
                           checkpoint_every=0)
  events = []
  resumed = engine.execute.execute(plan, chunk_size=chunk_size, checkpoint_dir=str(tmp_path),
                                   mesh=mesh, resume=True, callback=events.append)
  _same(resumed, reference)
  start = next(e for e in events if e["event"] == "start")
  assert start["resumed_from"]
  periods = [e for e in events if e["event"] == "period"]
  # Finished chunks are not trained again, and the live chunk goes on from
  # its last saved period.
  assert [e["step"] for e in periods] == [4, 6]


def test_resume_after_the_end_trains_nothing(reference, tmp_path):
  plan = _plan()
  engine.execute.execute(plan, checkpoint_dir=str(tmp_path), checkpoint_every=1e9)
  events = []
  again = engine.execute.execute(plan, checkpoint_dir=str(tmp_path), resume=True,
                                 callback=events.append)
  _same(again, reference)
  assert not any(e["event"] == "period" for e in events)


def test_resume_of_another_sweep_is_refused(tmp_path):
  engine.execute.execute(_plan(LRS[:2]), checkpoint_dir=str(tmp_path), checkpoint_every=1e9)
  with pytest.raises(errors.CheckpointError, match="different sweep"):
    engine.execute.execute(_plan(LRS[:2][::-1]), checkpoint_dir=str(tmp_path), resume=True)


def _crashed_checkpoint(tmp_path):
  with pytest.raises(_Crash):
    engine.execute.execute(_plan(), scheduler=_CrashAt(2), checkpoint_dir=str(tmp_path),
                           checkpoint_every=0)
  name = (tmp_path / checkpoint.LATEST).read_text().strip()
  return tmp_path / name


def test_truncated_checkpoint_is_refused(tmp_path):
  ckpt = _crashed_checkpoint(tmp_path)
  [live] = [f for f in os.listdir(ckpt) if f.startswith("live-")]
  data = (ckpt / live).read_bytes()
  (ckpt / live).write_bytes(data[:len(data) // 2])
  with pytest.raises(errors.CheckpointError, match="corrupt or truncated"):
    engine.execute.execute(_plan(), checkpoint_dir=str(tmp_path), resume=True)


def test_corrupt_manifest_is_refused(tmp_path):
  ckpt = _crashed_checkpoint(tmp_path)
  (ckpt / checkpoint.MANIFEST).write_text('{"format": 1, "fingerp')
  with pytest.raises(errors.CheckpointError, match="manifest is missing or corrupt"):
    engine.execute.execute(_plan(), checkpoint_dir=str(tmp_path), resume=True)


def test_checkpoint_holds_no_pickle_and_names_its_files(tmp_path):
  ckpt = _crashed_checkpoint(tmp_path)
  manifest = json.loads((ckpt / checkpoint.MANIFEST).read_text())
  assert manifest["fingerprint"] == engine.fingerprint.fingerprint(_plan())
  assert manifest["groups"]["0"]["lanes"] == 1
  for name in manifest["files"]:
    with np.load(ckpt / name, allow_pickle=False) as f:  # Raises on any pickled array.
      assert all(f[k].dtype != object for k in f.files)
