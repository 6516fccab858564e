"""One sweep's output directory: chosen, checked, locked and owned before training.

:func:`prepare` is called before anything trains (by the CLI and by
``js.run(..., out=DIR)``), so a bad ``--out`` costs seconds, not a sweep:

* the path is checked: not a file, not under a file, writable, with free
  space for the outputs (each problem a one-line
  :class:`~jaxsweep.errors.ConfigError` with ``key="out"``);
* a lock file (``.jaxsweep.lock``: pid and host, created with
  ``O_CREAT|O_EXCL``) refuses a second concurrent writer, naming the first;
  a stale lock (its process gone, same host) is taken over with a note;
* a manifest (``run.json``: sweep id, start and end time, status
  ``running``/``finished``/``interrupted``/``failed``, the files written)
  says which files belong to the run.

What a directory may hold:

==============================  ============================================
nothing (or it does not exist)  a fresh run
this sweep's ``run.json``       refused; ``resume=True`` continues it (its
                                ``checkpoint/``), ``overwrite=True`` starts
                                it over
another sweep's ``run.json``    refused; ``overwrite=True`` deletes the files
                                that manifest lists (only those) first;
                                ``resume=True`` is refused
files jaxsweep did not write    kept, never replaced: a name jaxsweep could
                                write (``results*``, ``config.yaml``,
                                ``best.yaml``, ``*.png``, ``tensorboard``,
                                ``checkpoint``, ``run.json``) is refused
                                before training, even with ``overwrite``
==============================  ============================================

At the end :meth:`RunDir.write_outputs` writes the results first (whole,
signals held back), then the optional files each on its own, removes files
an earlier attempt of the same sweep wrote that this one did not, and lists
in ``results.json`` (``"outputs"``) and ``run.json`` (``"files"``) exactly
the entries present; ``run.json``'s ``"missing"`` names what is not written
yet (a directory whose ``missing`` is not empty, or whose status is not
``finished``, is incomplete: ``jaxsweep report`` says so). A failure to
write (disk full, permission, a config that cannot be dumped) is reported
on stderr and in ``run.json``'s ``"error"``, not raised: the caller still
has the results in memory. :func:`~jaxsweep.report.runclaim.default_dir`
names ``runs/<config name>``, or ``-2``, ``-3``... so a rerun never lands on
an earlier one; :func:`~jaxsweep.report.runclaim.claim_default_dir` takes it
atomically (``os.mkdir``, then its lock), so runs started together each get
their own. Preparing, writing and closing
hold signals back (:func:`jaxsweep.signals.critical`): an interrupted run
leaves no lock and no temporary file, and ``run.json`` says ``interrupted``;
temporary files a killed process left (``.tmp-*``) are removed by the next
run of the directory.
"""

from __future__ import annotations

import datetime
import errno
import fnmatch
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import results as results_lib
from jaxsweep import signals
from jaxsweep.engine import ckptdir
from jaxsweep.report import outputs
from jaxsweep.report import runclaim
from jaxsweep.report import runlock

MANIFEST = "run.json"
LOCK = runlock.LOCK
CHECKPOINT = "checkpoint"
STATUS_RUNNING, STATUS_FINISHED = "running", "finished"
STATUS_INTERRUPTED, STATUS_FAILED = "interrupted", "failed"
# What a run may write: an entry of these names that the run did not write
# is the user's, and a directory holding one is refused.
OUTPUT_NAMES = ("results*.csv", "results*.json", "results*.parquet", "results*.md",
                "config.yaml", "best.yaml", "*.png", "tensorboard", CHECKPOINT, MANIFEST,
                LOCK + "*", ".tmp-*")
# Free space asked beyond the estimate (plots, best.yaml, rounding).
MARGIN_BYTES = 8 * 2**20
# Outputs are written here, then moved into the directory.
_STAGING = ".tmp-outputs"
# A KeyboardInterrupt, or the engine's Interrupted (a signal stopped the run
# after saving it; defined in signals.py), marks a run interrupted, not failed.
INTERRUPTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, signals.Interrupted)


# --------------------------------------------------------------------------
# The checkpoint (the directory is chosen in runclaim.py).

def checkpoint_path(path: str) -> str:
  """Where a run directory keeps its checkpoint (the engine writes it)."""
  return os.path.join(path, CHECKPOINT)


# --------------------------------------------------------------------------
# The manifest.

def read_manifest(path: str) -> dict[str, Any] | None:
  """A run directory's ``run.json``, or None when it has none.

  Raises:
    ConfigError: for a ``run.json`` that is not a jaxsweep manifest.
  """
  file = os.path.join(path, MANIFEST)
  if not os.path.isfile(file):
    return None
  try:
    with open(file, encoding="utf-8") as f:
      manifest = json.load(f)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sweep_id"), str):
      raise ValueError("no sweep_id")
  except (OSError, ValueError) as e:
    raise errors.ConfigError(
        f"{file} is not a readable jaxsweep manifest ({errors.first_line(e)}).", key="out",
        fix=f"give another --out, or delete {file} if {path} holds no run you want "
            "to keep") from None
  manifest["files"] = [f for f in manifest.get("files") or () if _entry_name(f)]
  return manifest


def _entry_name(name: Any) -> bool:
  """Whether a manifest entry is a plain name inside the directory (never outside)."""
  if not isinstance(name, str):
    return False
  bare = name[:-1] if name.endswith("/") else name
  return bool(bare) and bare not in (".", "..") and "/" not in bare and os.sep not in bare


def _bare(name: str) -> str:
  return name[:-1] if name.endswith("/") else name


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _short(sweep_id: str | None) -> str:
  return (sweep_id or "?")[:12]


# --------------------------------------------------------------------------
# Preparing a directory.

def prepare(path: str, *, sweep_id: str, resume: bool = False, overwrite: bool = False,
            estimate_bytes: int = 0) -> RunDir:
  """Checks, locks and claims a run's output directory, before any training.

  Args:
    path: the directory (created if missing, with its parents).
    sweep_id: what the run trains (:func:`jaxsweep.engine.fingerprint.fingerprint`).
    resume: continue the same sweep's run in ``path`` (its checkpoint);
      a new or empty directory starts from the beginning.
    overwrite: delete the files of the run in ``path`` (only the files its
      manifest lists) and start over.
    estimate_bytes: about how much the run will write; the disk must have
      that much free plus a margin.

  Returns:
    The locked :class:`RunDir`; use it as a context manager (or call
    :meth:`RunDir.close`) so the lock is released however the run ends.

  Raises:
    ConfigError: (``key="out"``) for a file, a path under a file, a
      directory that is not writable or lacks space, one in use by another
      run, or holding another sweep or files jaxsweep did not write.
  """
  if resume and overwrite:
    raise errors.ConfigError(
        "resume and overwrite exclude each other.", key="out",
        fix="--resume continues the sweep in the directory, --overwrite starts it over")
  rd = None
  try:
    with signals.critical():  # A signal now is acted on once the claim is whole.
      rd = _prepare(path, sweep_id, resume=resume, overwrite=overwrite,
                    estimate_bytes=estimate_bytes)
    signals.pause_for_test("rundir")
  except signals.Interrupt:
    if rd is not None:
      rd.close(STATUS_INTERRUPTED)
    raise
  return rd


def _prepare(path: str, sweep_id: str, *, resume: bool, overwrite: bool,
             estimate_bytes: int) -> RunDir:
  lock = runclaim.take(path)
  created = lock is not None or not os.path.isdir(path)
  _check_path(path, estimate_bytes)
  if lock is None:
    try:
      os.makedirs(path, exist_ok=True)
    except OSError as e:
      raise _os_error(path, e) from None
  try:
    if lock is None:
      lock = runlock.acquire(path)
    rd = RunDir(path, sweep_id, lock=lock, created=created)
    try:
      rd._claim(resume=resume, overwrite=overwrite)  # pylint: disable=protected-access
    except OSError as e:  # run.json or a deletion: a full disk, a permission.
      raise _os_error(path, e) from None
  except BaseException:
    if lock is not None:
      lock.release()
    if created:
      runclaim.remove_empty(path)
    raise
  return rd


def _check_path(path: str, estimate_bytes: int) -> None:
  """A file, a file above, no permission, no space: each a one-line error."""
  if os.path.lexists(path) and not os.path.isdir(path):
    raise errors.ConfigError(f"{path} is a file, not a directory.", key="out",
                             fix="give a directory (it is created if missing)")
  existing = os.path.abspath(path)
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise errors.ConfigError(f"cannot create {path}: {existing} is a file.", key="out",
                             fix="give a directory whose parents are directories")
  if not os.access(existing, os.W_OK | os.X_OK):
    detail = (f"cannot write into {path}: permission denied." if os.path.isdir(path)
              else f"cannot create {path}: {existing} is not writable.")
    raise errors.ConfigError(detail, key="out", fix="give a directory you can write to")
  try:
    free = shutil.disk_usage(existing).free
  except OSError:
    return  # Unknown: the writes themselves will tell.
  need = int(estimate_bytes) + int(estimate_bytes) // 10 + MARGIN_BYTES
  if free < need:
    raise errors.ConfigError(
        f"not enough free space for {path}: {format_lib.format_bytes(free)} free, about "
        f"{format_lib.format_bytes(need)} needed.", key="out",
        fix="free some space, or give an --out on another disk")


def _os_error(path: str, e: OSError) -> errors.ConfigError:
  return errors.ConfigError(f"cannot create {path}: {e.strerror or e}.", key="out",
                            fix="give a directory you can write to")


# --------------------------------------------------------------------------
# The directory.

class RunDir:
  """A locked output directory of one sweep (from :func:`prepare`).

  Attributes:
    path: the directory.
    sweep_id: the sweep's fingerprint.
    resumed: whether the run continues an earlier run of the same sweep in
      this directory (its checkpoint, if the engine saved one).
    created: whether :func:`prepare` created the directory.
    status: ``running`` until :meth:`close`.
    error: why writing the outputs failed, or None.
  """

  def __init__(self, path: str, sweep_id: str, *, lock: runlock.Lock, created: bool):
    self.path = path
    self.sweep_id = sweep_id
    self.created = created
    self.resumed = False
    self.status = STATUS_RUNNING
    self.error: str | None = None
    self._lock = lock
    self._foreign: set[str] = set()   # Entries that are not the run's: kept.
    self._earlier: set[str] = set()   # Entries an earlier attempt wrote (resume).
    self._manifest: dict[str, Any] = {}
    self._closed = False

  def __repr__(self) -> str:
    return f"RunDir({self.path!r}, sweep {_short(self.sweep_id)}, {self.status})"

  @property
  def checkpoint_dir(self) -> str:
    """``DIR/checkpoint``: the engine's checkpoint of the population."""
    return checkpoint_path(self.path)

  @property
  def manifest(self) -> dict[str, Any]:
    """The current ``run.json`` (a copy)."""
    return dict(self._manifest)

  def __enter__(self) -> RunDir:
    return self

  def __exit__(self, exc_type, exc, tb) -> bool:
    if exc is None:
      status = STATUS_FINISHED
    elif isinstance(exc, INTERRUPTS):
      status = STATUS_INTERRUPTED
    else:
      status = STATUS_FAILED
      self.error = self.error or f"{type(exc).__name__}: {errors.first_line(exc)}"
    self.close(status)
    return False

  # ------------------------------------------------------------------ claim
  def _claim(self, *, resume: bool, overwrite: bool) -> None:
    """Decides what the directory holds (see the module docstring)."""
    old = read_manifest(self.path)
    owned = {_bare(f) for f in old["files"]} | {MANIFEST} if old else set()
    entries = set(os.listdir(self.path)) - {LOCK}
    self._foreign = {e for e in entries if e not in owned and not _internal(e)}
    clashes = sorted(e for e in self._foreign if _output_name(e))
    if clashes:
      shown = ", ".join(clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5
                                       else "")
      raise errors.ConfigError(
          f"{self.path} holds files jaxsweep did not write ({shown}); it never replaces "
          "them.", key="out",
          fix="give a new or empty --out directory (the default runs/<config name> "
              "picks one), or move those files away")
    manifest = {"sweep_id": self.sweep_id, "status": STATUS_RUNNING, "started": _now(),
                "ended": None, "host": socket.gethostname(), "pid": os.getpid(),
                # The engine may write the checkpoint at any time: the run's.
                "files": [CHECKPOINT + "/"]}
    if old is None:
      if resume:
        print(f"jaxsweep: note: nothing to resume in {self.path}; the sweep starts from "
              "the beginning.", file=sys.stderr)
    elif old["sweep_id"] != self.sweep_id:
      what = (f"another sweep (id {_short(old['sweep_id'])}, {old.get('status', '?')}, "
              f"started {old.get('started', '?')}; this sweep is {_short(self.sweep_id)})")
      if resume:
        raise errors.ConfigError(
            f"cannot resume: {self.path} holds {what}.", key="out",
            fix="resume with the same config and overrides as that run, --overwrite to "
                "replace it, or give another --out")
      if not overwrite:
        raise errors.ConfigError(
            f"{self.path} holds {what}.", key="out",
            fix="--overwrite replaces that sweep's files (yours are kept), or give another "
                "--out (the default runs/<config name> picks a fresh one)")
      self._delete([*old["files"], MANIFEST])
    elif overwrite:
      self._delete([*old["files"], MANIFEST])
    elif resume:
      self.resumed = True
      self._earlier = {_bare(f) for f in old["files"]}
      manifest.update(started=old.get("started"),
                      files=sorted({*old["files"], CHECKPOINT + "/"}),
                      resumed=[*old.get("resumed", ()), _now()])
    else:
      status = old.get("status")
      if status == STATUS_FINISHED:
        detail = "already holds this sweep's finished results"
        fix = ("--overwrite to run it again, or give another --out (the default "
               "runs/<config name> picks a fresh one)")
      else:
        detail = f"holds an unfinished run of this sweep ({status})"
        fix = "--resume to continue it, or --overwrite to start it over"
      raise errors.ConfigError(f"{self.path} {detail}.", key="out", fix=fix)
    for entry in entries:  # Left by a run that died while writing (.tmp-outputs too).
      if entry.startswith(".tmp-"):
        _remove(os.path.join(self.path, entry))
    self._manifest = manifest
    self._write_manifest()

  def _delete(self, names) -> None:
    """Deletes entries of the run's directory (names a manifest lists, only)."""
    for name in names:
      target = os.path.join(self.path, _bare(name))
      if _bare(name) == CHECKPOINT:  # Only what the engine wrote: a user's file stays.
        ckptdir.clear(target)
      elif os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
      elif os.path.lexists(target):
        os.unlink(target)

  # ----------------------------------------------------------------- write
  def owned(self) -> list[str]:
    """The run's entries present now (directories with a trailing ``/``), sorted.

    Everything in the directory but the user's files, the manifest, the lock
    and temporary files.
    """
    out = []
    for e in os.listdir(self.path):
      if e in self._foreign or e in (MANIFEST, LOCK) or _internal(e):
        continue
      out.append(e + "/" if os.path.isdir(os.path.join(self.path, e)) else e)
    return sorted(out)

  def write_outputs(self, res: results_lib.Results, *, config: Mapping[str, Any] | None = None,
                    aggregate: bool = True, plots: bool = True, tensorboard: bool = False,
                    curves: int = outputs.DEFAULT_CURVES,
                    on_results: Callable[[], None] | None = None) -> dict[str, Any] | None:
    """Writes the run's files; a failure is reported on stderr, never raised.

    Arguments as for :func:`jaxsweep.report.outputs.write_outputs`. Two steps,
    each written into ``DIR/.tmp-outputs/``, listed in ``run.json``, then
    moved into place together:

    1. the results (:func:`jaxsweep.report.outputs.write_results`), with
       signals held back (:func:`jaxsweep.signals.critical`): they are whole
       or absent;
    2. the optional files (config.yaml, best.yaml, parquet, plots,
       tensorboard, results.md with its plots), each on its own: a failure
       (a config that cannot be dumped, a plot, a full disk) is one line on
       stderr and ``run.json``'s ``"error"``, never the results' loss; a
       signal stops them (nothing half-written is moved in).

    ``on_results`` is called between the two (the results are on disk, whole),
    so the command prints its table before the plots are drawn.

    Until both are done ``run.json`` lists under ``"missing"`` the steps
    not yet written (``"results"`` and the names of
    :data:`jaxsweep.report.outputs.EXTRAS`): a directory whose ``missing`` is
    not empty is incomplete, and ``jaxsweep report`` says so. Files an
    earlier attempt of this sweep wrote that this one does not (e.g. a plot
    of another name) are removed, and ``results.json`` lists the entries
    present (``"outputs"``).

    Returns:
      The paths by kind, or None when the results could not be written (see
      :attr:`error`).

    Raises:
      KeyboardInterrupt: (:class:`jaxsweep.signals.Interrupt`) a signal
        received meanwhile, once the results are whole.
    """
    staging = os.path.join(self.path, _STAGING)
    paths: dict[str, Any] | None = None
    failed: dict[str, str] = {}
    with signals.critical():
      try:
        self._manifest["missing"] = ["results", *outputs.EXTRAS]
        self._write_manifest()
        _remove(staging)
        try:
          paths = outputs.write_results(res, staging, aggregate=aggregate)
          signals.pause_for_test("writing")
        finally:  # What was written in full goes in place, even after a failure.
          written = set(self._move_in(staging))
        self._manifest["missing"].remove("results")
        self._list_outputs(res)
      except OSError as e:
        self.error = f"{type(e).__name__}: {e}"
        print(f"jaxsweep: error: the results could not be written to {self.path} "
              f"({self.error}); they are in memory only (files written: "
              f"{', '.join(self.owned()) or 'none'}).", file=sys.stderr)
        self._record_quietly()
        return None
    missing = self._manifest["missing"]

    def on_error(name: str, e: Exception) -> None:
      failed[name] = f"{type(e).__name__}: {errors.first_line(e)}"

    if on_results is not None:
      on_results()
    try:
      signals.pause_for_test("extras")
      paths.update(outputs.write_extras(
          res, staging, config=config, aggregate=aggregate, plots=plots,
          tensorboard=tensorboard, curves=curves, on_error=on_error, on_done=missing.remove))
    except BaseException:
      with signals.critical():
        _remove(staging)  # Possibly half-written: not moved in.
        self._record_quietly()
      raise
    with signals.critical():
      try:
        written |= set(self._move_in(staging))
        self._delete(sorted(self._earlier - {_bare(e) for e in written} - {CHECKPOINT, MANIFEST}))
        self._earlier = set()
        self._list_outputs(res)
      except OSError as e:
        failed.setdefault("move", f"{type(e).__name__}: {e}")
      if failed:
        self.error = "; ".join(f"{k}: {v}" for k, v in failed.items())
        print(f"jaxsweep: error: not written to {self.path}: {self.error}; the results are "
              f"complete ({', '.join(self.owned())}).", file=sys.stderr)
      self._record_quietly()
    return {k: _relocate(v, staging, self.path) for k, v in paths.items()}

  def _record_quietly(self) -> None:
    """Writes run.json as it stands; a failure here is told by close()."""
    try:
      if self.error:
        self._manifest["error"] = self.error
      self._write_manifest()
    except OSError:
      pass

  def _move_in(self, staging: str) -> list[str]:
    """Moves the staged entries into the directory, listing them first."""
    if not os.path.isdir(staging):
      return []
    staged = sorted(e + "/" if os.path.isdir(os.path.join(staging, e)) else e
                    for e in os.listdir(staging) if not _internal(e))
    self._manifest["files"] = sorted(set(self._manifest.get("files", ())) | set(staged))
    self._write_manifest()
    for entry in staged:
      name = _bare(entry)
      source, target = os.path.join(staging, name), os.path.join(self.path, name)
      if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
      elif os.path.lexists(target) and os.path.isdir(source):
        os.unlink(target)
      os.replace(source, target)
    shutil.rmtree(staging)
    return staged

  def _list_outputs(self, res: results_lib.Results) -> None:
    """Rewrites results.json with ``"outputs"``: the entries present."""
    file = os.path.join(self.path, "results.json")
    if not os.path.isfile(file):
      return
    d = res.to_dict()
    d["outputs"] = sorted([*self.owned(), MANIFEST])
    results_lib.atomic_write(file, results_lib.rows_to_json(d))

  # ----------------------------------------------------------------- close
  def close(self, status: str = STATUS_FINISHED) -> None:
    """Records how the run ended in ``run.json`` and releases the lock.

    A run that failed or was interrupted before writing anything (no
    checkpoint, no file) leaves nothing behind: not even the directory, if
    :func:`prepare` created it.
    """
    with signals.critical():
      self._close(status)

  def _close(self, status: str) -> None:
    if self._closed:
      return
    self._closed = True
    self.status = status
    try:
      ckpt = self.checkpoint_dir
      if os.path.isdir(ckpt) and not ckptdir.exists(ckpt):
        ckptdir.clear(ckpt)  # Nothing saved (a user's file in it stays).
      files = self.owned()
      if status != STATUS_FINISHED and not files and not self.resumed:
        os.unlink(os.path.join(self.path, MANIFEST))
        if self.created:
          self._lock.release()
          runclaim.remove_empty(self.path)
        return
      self._manifest.update(status=status, ended=_now(), files=files)
      if self.error:
        self._manifest["error"] = self.error
      self._write_manifest()
    except OSError as e:
      print(f"jaxsweep: {os.path.join(self.path, MANIFEST)} not updated ({e}).",
            file=sys.stderr)
    finally:
      self._lock.release()

  def _write_manifest(self) -> None:
    path, text = os.path.join(self.path, MANIFEST), json.dumps(self._manifest, indent=1) + "\n"
    try:
      results_lib.atomic_write(path, text)
    except OSError as e:
      if e.errno != errno.ENOSPC or not os.path.isfile(path):
        raise
      with open(path, "w", encoding="utf-8") as f:  # A full disk: in place, not lost.
        f.write(text)


def _relocate(value: Any, staging: str, path: str) -> Any:
  if isinstance(value, list):
    return [_relocate(v, staging, path) for v in value]
  return os.path.join(path, os.path.relpath(value, staging))


def _remove(path: str) -> None:
  """Removes a file or a directory tree, if present."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    try:
      os.unlink(path)
    except OSError:
      pass


def _internal(name: str) -> bool:
  """The lock's guard and temporary files of atomic writes: never listed."""
  return name.startswith(".tmp-") or name.startswith(LOCK)


def _output_name(name: str) -> bool:
  return any(fnmatch.fnmatchcase(name, p) for p in OUTPUT_NAMES)
