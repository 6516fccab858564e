"""Checkpoint and resume: nothing a sweep computed is lost.

A sweep killed (SIGKILL), interrupted (SIGINT) or terminated (SIGTERM) in a
subprocess resumes from its last checkpoint to the same table, bit for bit,
as an uninterrupted run; a checkpoint of another sweep, or a corrupt one, is
refused. In-process tests cover crashes at a boundary, chunked groups and a
resume after the end.
"""

import csv
import errno
import hashlib
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
  with pytest.raises(errors.CheckpointError, match="changed or is corrupt"):
    engine.execute.execute(_plan(), checkpoint_dir=str(tmp_path), resume=True)


def test_checkpoint_holds_no_pickle_and_names_its_files(tmp_path):
  ckpt = _crashed_checkpoint(tmp_path)
  manifest = json.loads((ckpt / checkpoint.MANIFEST).read_text())
  assert manifest["fingerprint"] == engine.fingerprint.fingerprint(_plan())
  assert manifest["groups"]["0"]["lanes"] == 1
  for name in manifest["files"]:
    with np.load(ckpt / name, allow_pickle=False) as f:  # Raises on any pickled array.
      assert all(f[k].dtype != object for k in f.files)


# --------------------------------------------------------------------------
# Checkpoints that verify themselves (issue 25, points 4-7).

def _edit(ckpt, edit, *, resum=True):
  """Edits a checkpoint's manifest by hand; ``resum`` also fixes its checksum
  (an edit made knowingly: only the consistency checks can catch it)."""
  manifest = json.loads((ckpt / checkpoint.MANIFEST).read_text())
  edit(manifest)
  data = json.dumps(manifest).encode()
  (ckpt / checkpoint.MANIFEST).write_bytes(data)
  if resum:
    (ckpt / checkpoint.MANIFEST_SUM).write_text(hashlib.sha256(data).hexdigest() + "\n")


def _resume(tmp_path, **kwargs):
  return engine.execute.execute(_plan(), checkpoint_dir=str(tmp_path), resume=True, **kwargs)


def _set_history_value(m):
  m["history"]["0"][-1]["test_accuracy"] = 0.99


@pytest.mark.parametrize("found, needle", [
    (2, r"written by an earlier jaxsweep \(checkpoint format 2, this one reads 3\), whose "
        "training steps drew other batches"),
    (99, "unknown format 99")])
def test_a_checkpoint_of_another_format_is_refused(found, needle, tmp_path):
  """A run saved before the per-period draws (format 2) would go on with other
  batches: refused, with the way out."""
  ckpt = _crashed_checkpoint(tmp_path)
  _edit(ckpt, lambda m: m.update(format=found))
  with pytest.raises(errors.CheckpointError, match=needle) as e:
    _resume(tmp_path)
  assert "--overwrite" in e.value.fix


def test_a_manifest_edited_by_hand_is_refused(tmp_path):
  """A history value (carried into results.json before) or the periods
  (6 -> 19 gave a "finished" run of 350 steps): the manifest's checksum."""
  ckpt = _crashed_checkpoint(tmp_path)
  _edit(ckpt, _set_history_value, resum=False)
  with pytest.raises(errors.CheckpointError, match="manifest.json was changed or is corrupt"):
    _resume(tmp_path)


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m["live"]["0"].update(periods=m["live"]["0"]["periods"] + 13),
     r"contradicts itself \(group 0 reached 14 period\(s\) but its history holds 1\)"),
    (lambda m: m.update(live=None), "live: expected an object, found NoneType"),
    (lambda m: m.pop("files"), "files: expected an object"),
    (lambda m: m.update(files=["live-g0-0.npz"]), "files: expected an object, found list"),
    (lambda m: m["live"]["0"]["chunks"][0].pop("members"), "expected a listed file and members"),
    (lambda m: m["live"]["0"].update(periods="1"), r"live.0: expected periods"),
    (lambda m: m["groups"]["0"].update(done="no"), "groups.0: expected"),
    (lambda m: m["history"].update({"x": []}), "history: unexpected key 'x'"),
    (lambda m: m["groups"]["0"].update(done=True), "in training but not listed as such"),
], ids=["periods", "live-null", "files-missing", "files-list", "members-missing",
        "periods-text", "done-text", "history-key", "done-but-live"])
def test_a_manifest_that_contradicts_itself_is_refused(edit, needle, tmp_path):
  """Even with its checksum made to match: never KeyError, AttributeError or a
  silently shorter run."""
  ckpt = _crashed_checkpoint(tmp_path)
  _edit(ckpt, edit)
  with pytest.raises(errors.CheckpointError, match=needle):
    _resume(tmp_path)


def test_missing_latest_is_recovered_from_the_newest_complete_checkpoint(reference, tmp_path,
                                                                        capsys):
  ckpt = _crashed_checkpoint(tmp_path)
  (tmp_path / "ckpt-000000").mkdir()  # An older, incomplete one: never chosen.
  os.unlink(tmp_path / checkpoint.LATEST)
  assert checkpoint.exists(str(tmp_path))
  events = []
  _same(_resume(tmp_path, callback=events.append), reference)
  assert "LATEST is missing; going on from " + ckpt.name in capsys.readouterr().err
  assert [e["step"] for e in events if e["event"] == "period"] == [4, 6]  # Not from step 0.


def test_missing_latest_and_no_complete_checkpoint_is_refused(tmp_path):
  ckpt = _crashed_checkpoint(tmp_path)
  os.unlink(tmp_path / checkpoint.LATEST)
  os.unlink(ckpt / checkpoint.MANIFEST_SUM)
  with pytest.raises(errors.CheckpointError, match="LATEST is missing and no ckpt"):
    _resume(tmp_path)


def test_a_file_in_place_of_the_checkpoint_directory_is_one_error(tmp_path):
  (tmp_path / "checkpoint").write_text("not a directory")
  for resume in (False, True):
    with pytest.raises(errors.CheckpointError,
                       match="could not be created in .*checkpoint: .* is not a directory"):
      engine.execute.execute(_plan(LRS[:2]), checkpoint_dir=str(tmp_path / "checkpoint"),
                             resume=resume)
  with pytest.raises(errors.CheckpointError, match="it is not a directory"):
    checkpoint.Reader(str(tmp_path / "checkpoint"), fingerprint="x")


TINY = helpers.TINY_BASE + """\
sweep:
  optimizer.learning_rate: [1.0e-3, 1.0e-2]
"""


@pytest.mark.parametrize("good_writes", [0, 3])
def test_disk_full_while_training_is_one_error_and_the_run_is_marked(good_writes, tmp_path,
                                                                    monkeypatch):
  """Like a full disk at the end: a CheckpointError, nothing temporary left,
  run.json says failed (not running) or, with nothing saved, nothing is left;
  no lock; --resume goes on once there is space."""
  config = tmp_path / "tiny.yaml"
  config.write_text(TINY)
  out = tmp_path / "out"
  real, calls = checkpoint._write, []  # pylint: disable=protected-access

  def full(path, data):
    calls.append(path)
    if len(calls) <= good_writes:  # The first checkpoint (live chunk, manifest, sum).
      return real(path, data)
    with open(path, "wb") as f:
      f.write(data[:10])
    raise OSError(errno.ENOSPC, "No space left on device", path)

  monkeypatch.setattr(checkpoint, "_write", full)
  with pytest.raises(errors.CheckpointError, match="could not be saved in .*: the disk is full"):
    js.run_config(str(config), out=str(out), checkpoint_every=0)
  if good_writes:
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "failed" and "disk is full" in manifest["error"]
    leftovers = [os.path.join(d, f) for d, dirs, files in os.walk(out) for f in dirs + files
                 if f.startswith(".tmp-") or f.endswith(".tmp") or f.startswith(".jaxsweep")]
    assert not leftovers
  else:
    assert not out.exists()
  monkeypatch.undo()
  events = []
  res = js.run_config(str(config), out=str(out), resume=True, progress=events.append)
  assert len(res.rows) == 2
  assert bool(good_writes) == bool(next(e for e in events if e["event"] == "start")
                                   ["resumed_from"])


def test_overwrite_removes_only_what_jaxsweep_wrote(tmp_path):
  """The README: your files are never replaced or deleted, also inside checkpoint/."""
  config = tmp_path / "tiny.yaml"
  config.write_text(TINY)
  out = tmp_path / "out"
  js.run_config(str(config), out=str(out), checkpoint_every=0, outputs={"plots": False})
  assert checkpoint.exists(str(out / "checkpoint"))
  (out / "checkpoint" / "my-notes.txt").write_text("mine")
  (out / "checkpoint" / "done" / "mine.npz").write_text("mine too")
  js.run_config(str(config), out=str(out), overwrite=True, outputs={"plots": False})
  assert (out / "checkpoint" / "my-notes.txt").read_text() == "mine"
  assert (out / "checkpoint" / "done" / "mine.npz").read_text() == "mine too"
  assert checkpoint.clear(str(out / "checkpoint")) is False  # Kept: the user's files.
  assert sorted(os.listdir(out / "checkpoint")) == ["done", "my-notes.txt"]
  assert os.listdir(out / "checkpoint" / "done") == ["mine.npz"]
