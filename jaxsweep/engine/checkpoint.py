"""Checkpoints of a running sweep: saved at period boundaries, verified on load.

A checkpoint directory holds::

  LATEST                 the name of the newest complete checkpoint
  ckpt-000012/           one checkpoint (written under a temporary name, then
    manifest.json        renamed): what was saved, with a sha256 per file
    manifest.sha256      the sha256 of manifest.json itself
    live-g1-0.npz        the run state of chunk 0 of group 1, in training
  done/g0-3.npz          trained parameters of variants that finished
                         (a group's end, or stopped variants leaving a
                         compacted population), written once

The manifest records the sweep's fingerprint (its variants' settings), the
layout (lanes, chunk size per group), each finished variant's results and
the arrays holding them, the history so far, the periods each live group
reached and each live chunk's variants, and the scheduler's state. Arrays
are numpy ``.npz`` files read with ``allow_pickle=False``; PRNG keys are
stored as their raw ``key_data``. Nothing is pickled.

Writing is atomic: a checkpoint appears under its final name only once all
its files are on disk, and ``LATEST`` is replaced (write + rename) last, so
a crash at any moment (even ``kill -9``) leaves the previous checkpoint
intact. Loading checks the manifest's own checksum, its structure (every
key and type), the fingerprint, the format, every file's checksum and that
the periods each live group reached agree with its history: a checkpoint of
another sweep, or a corrupt, truncated or edited one, is refused with a
one-line :class:`~jaxsweep.errors.CheckpointError`, never mixed in. Without
``LATEST`` (deleted, or lost in a crash) the newest complete ``ckpt-*`` is
used, with a note. A write that fails (disk full, permission) is a
:class:`~jaxsweep.errors.CheckpointError` too, and leaves no temporary
file behind. :func:`clear` removes only what a :class:`Writer` wrote.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np

from jaxsweep import errors
from jaxsweep import signals
from jaxsweep.engine import ckptdir
from jaxsweep.engine import sharding

# 2: several groups live at once (sweep-wide boundaries); 3: a step's batch
# and keys from one Threefry call per period (train.draws): a run saved
# by an earlier format would go on with other draws, so it is refused.
FORMAT = 3
# The directory's names, and what reads or clears it without JAX (a run
# directory, issue #24), live in ckptdir.py.
LATEST = ckptdir.LATEST
MANIFEST = ckptdir.MANIFEST
MANIFEST_SUM = ckptdir.MANIFEST_SUM
DONE = ckptdir.DONE
clear = ckptdir.clear
exists = ckptdir.exists


@dataclasses.dataclass
class Snapshot:
  """Everything a sweep needs to go on from a period boundary.

  Attributes:
    fingerprint: the sweep's fingerprint (:func:`jaxsweep.engine.fingerprint.fingerprint`).
    groups: group index -> ``{"chunk_size": int, "lanes": int, "done": bool}``
      (a variant's bits depend on its group's lanes: a resumed group keeps
      them).
    history: variant index -> its history entries so far.
    finals: variant index -> its final record (finished variants only).
    live: the groups in training: group index -> ``{"periods": periods done,
      "chunks": [(members, host arrays or None), ...]}`` (empty between groups).
    extra: JSON-friendly state of the scheduler and anything else.
  """

  fingerprint: str
  groups: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
  history: dict[int, list[dict]] = dataclasses.field(default_factory=dict)
  finals: dict[int, dict] = dataclasses.field(default_factory=dict)
  live: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------
# Arrays <-> npz bytes (typed PRNG keys as key data).

def _is_key_type(x) -> bool:
  return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_host(tree):
  """A pytree of (possibly sharded, multi-process) arrays as numpy, PRNG keys
  as their ``key_data``."""
  tree = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key_type(x) else x, tree)
  return sharding.to_host(tree)


def host_structure(abstract):
  """Shape structs of :func:`to_host`'s output for an abstract pytree."""
  return jax.eval_shape(
      lambda t: jax.tree.map(lambda x: jax.random.key_data(x) if _is_key_type(x) else x, t),
      abstract)


def from_host(arrays, abstract, put):
  """Inverse of :func:`to_host`: places the arrays with ``put`` and wraps keys.

  Args:
    arrays: host arrays in the structure of :func:`host_structure`.
    abstract: the original abstract pytree (which leaves are PRNG keys).
    put: places a pytree of host arrays on devices.
  """
  placed = put(arrays)
  # jaxsweep makes every key with jax.random.key: the default implementation.
  return jax.tree.map(lambda x, a: jax.random.wrap_key_data(x) if _is_key_type(a) else x,
                      placed, abstract)


def _npz_bytes(tree) -> bytes:
  leaves = jax.tree.leaves(tree)
  buf = io.BytesIO()
  np.savez(buf, **{f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)})
  return buf.getvalue()


def _load_npz(path: str, like) -> Any:
  """Arrays of ``path`` in the structure of ``like`` (shapes and dtypes checked)."""
  leaves, treedef = jax.tree.flatten(like)
  with np.load(path, allow_pickle=False) as f:
    arrays = [f[f"leaf_{i:05d}"] for i in range(len(leaves))]
    if len(f.files) != len(leaves):
      raise ValueError(f"{len(f.files)} arrays, expected {len(leaves)}")
  for got, want in zip(arrays, leaves):
    shape, dtype = tuple(want.shape), np.dtype(want.dtype)
    if got.shape != shape or got.dtype != dtype:
      raise ValueError(f"an array of shape {got.shape} {got.dtype}, expected {shape} {dtype}")
  return jax.tree.unflatten(treedef, arrays)


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _write(path: str, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _replace_atomically(path: str, text: str) -> None:
  directory = os.path.dirname(path)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _json(obj) -> str:
  # Python's JSON keeps NaN and infinities (non-strict), and floats round-trip.
  return json.dumps(obj, allow_nan=True)


# --------------------------------------------------------------------------
# Saving.

class Writer:
  """Saves snapshots of one sweep into ``directory``.

  Every write is held against signals (:func:`jaxsweep.signals.critical`):
  a checkpoint is whole or absent.

  Args:
    directory: the checkpoint directory (created).
    keep: complete checkpoints kept (older ones are deleted after a newer
      one is in place).

  Raises:
    CheckpointError: when the directory cannot be made or written (a file
      in its place, permission, a full disk): one line, no temporary file
      left.
  """

  def __init__(self, directory: str, *, keep: int = 1):
    self.directory = directory
    self.keep = max(1, keep)
    with _writing(directory, "created"):
      _check_directory(directory)
      os.makedirs(os.path.join(directory, DONE), exist_ok=True)
      ckptdir.remove_temporary(directory)  # Left by a process that died while saving.
    self._done: dict[str, dict] = {}
    self._done_count = 0
    self._count = ckptdir.latest_number(directory)

  def keep_done(self, done: dict[str, dict]) -> None:
    """Carries the finished variants of a resumed checkpoint into the next ones."""
    self._done = dict(done)
    self._done_count = max((int(n.rpartition("-")[2]) for n in done), default=0)

  def save_done(self, group: int, members, arrays) -> None:
    """Writes finished variants' trained arrays once (atomically).

    Args:
      group: their group.
      members: the variant of each slot of ``arrays`` (``None``: not saved).
      arrays: host arrays with a leading slot axis.
    """
    self._done_count += 1
    name = f"g{group}-{self._done_count}"
    data = _npz_bytes(arrays)
    path = os.path.join(self.directory, DONE, f"{name}.npz")
    tmp = path + ".tmp"
    with signals.critical(), _writing(self.directory, "saved", cleanup=tmp):
      _write(tmp, data)
      os.replace(tmp, path)
    self._done[name] = {"sha256": _sha256(data), "group": group, "members": list(members)}

  def save(self, snap: Snapshot) -> str:
    """Writes a complete checkpoint and points ``LATEST`` at it.

    Returns:
      The checkpoint's directory.
    """
    with signals.critical():
      tmp = None
      try:
        with _writing(self.directory, "saved"):
          tmp = tempfile.mkdtemp(dir=self.directory, prefix=".tmp-ckpt-")
          return self._save(snap, tmp)
      finally:
        if tmp is not None and os.path.isdir(tmp):
          shutil.rmtree(tmp, ignore_errors=True)

  def _save(self, snap: Snapshot, tmp: str) -> str:
    self._count += 1
    name = f"ckpt-{self._count:06d}"
    files, live = {}, {}
    for g, entry in sorted(snap.live.items()):
      chunks = []
      for c, (members, arrays) in enumerate(entry["chunks"]):
        fname = f"live-g{g}-{c}.npz"
        data = _npz_bytes(arrays)
        _write(os.path.join(tmp, fname), data)
        files[fname] = _sha256(data)
        chunks.append({"file": fname, "members": list(members)})
      live[str(g)] = {"periods": entry["periods"], "chunks": chunks}
    manifest = {
        "format": FORMAT, "fingerprint": snap.fingerprint,
        "saved_at": time.time(),
        "groups": {str(g): v for g, v in snap.groups.items()},
        "history": {str(i): h for i, h in snap.history.items()},
        "finals": {str(i): f for i, f in snap.finals.items()},
        "live": live, "files": files, "done": self._done, "extra": snap.extra}
    data = _json(manifest).encode()
    _write(os.path.join(tmp, MANIFEST), data)
    _write(os.path.join(tmp, MANIFEST_SUM), (_sha256(data) + "\n").encode())
    final = os.path.join(self.directory, name)
    os.replace(tmp, final)
    _fsync_dir(self.directory)
    _replace_atomically(os.path.join(self.directory, LATEST), name + "\n")
    self._prune(name)
    return final

  def _prune(self, newest: str) -> None:
    names = sorted(n for n in os.listdir(self.directory) if ckptdir.CKPT_NAME.fullmatch(n))
    for n in names[:-self.keep]:
      if n != newest:
        shutil.rmtree(os.path.join(self.directory, n), ignore_errors=True)
    ckptdir.remove_temporary(self.directory)


class _writing:  # pylint: disable=invalid-name
  """Turns an ``OSError`` of a checkpoint write into one-line CheckpointError
  (removing ``cleanup`` first: a full disk gets its space back)."""

  def __init__(self, directory: str, what: str, *, cleanup: str | None = None):
    self.directory, self.what, self.cleanup = directory, what, cleanup

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb) -> bool:
    if exc_type is None or not issubclass(exc_type, OSError):
      return False
    if self.cleanup and os.path.lexists(self.cleanup):
      try:
        os.unlink(self.cleanup)
      except OSError:
        pass
    raise _write_error(self.directory, self.what, exc) from None


def _write_error(directory: str, what: str, e: OSError) -> errors.CheckpointError:
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    why = "the disk is full"
    fix = "free some space, then resume (--resume) from the last checkpoint"
  elif e.errno in (errno.ENOTDIR, errno.EEXIST) or (
      os.path.lexists(directory) and not os.path.isdir(directory)):
    why = f"{directory} is not a directory"
    fix = f"move {directory} away (a run keeps its checkpoint there)"
  else:
    why = e.strerror or str(e)
    fix = "check the directory's permissions and space, then resume (--resume)"
  return errors.CheckpointError(f"the checkpoint could not be {what} in {directory}: {why}.",
                                key="checkpoint", fix=fix)


def _check_directory(directory: str) -> None:
  if os.path.lexists(directory) and not os.path.isdir(directory):
    raise OSError(errno.ENOTDIR, "not a directory", directory)


def _fsync_dir(directory: str) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


# --------------------------------------------------------------------------
# Loading.

def _refuse(directory: str, why: str) -> errors.CheckpointError:
  return errors.CheckpointError(
      f"the checkpoint in {directory} cannot be used: {why}.", key="resume",
      fix="resume with the same config and overrides, or start afresh (--overwrite, or "
          "another --out)")


class Reader:
  """A verified checkpoint: its manifest, with arrays read on demand.

  Raises:
    CheckpointError: for a missing, corrupt, truncated, edited or foreign
      checkpoint (one line, naming what is wrong).
  """

  def __init__(self, directory: str, *, fingerprint: str):
    self.directory = directory
    if os.path.lexists(directory) and not os.path.isdir(directory):
      raise _refuse(directory, "it is not a directory")
    try:
      with open(os.path.join(directory, LATEST), encoding="utf-8") as f:
        name = f.read().strip()
    except FileNotFoundError:
      name = self._recover()
    except (OSError, ValueError) as e:
      raise _refuse(directory, f"{LATEST} is unreadable ({errors.first_line(e)})") from None
    if not ckptdir.CKPT_NAME.fullmatch(name):
      raise _refuse(directory, f"{LATEST} names no checkpoint ({name[:40]!r})")
    self.path = os.path.join(directory, name)
    self.manifest = self._load(self.path)
    if self.manifest["fingerprint"] != fingerprint:
      raise _refuse(directory, "it was saved by a different sweep (other variants, "
                               "settings or components)")

  def _recover(self) -> str:
    """The newest complete checkpoint when ``LATEST`` is gone."""
    for name in ckptdir.saved_names(self.directory):
      try:
        self._load(os.path.join(self.directory, name))
      except errors.CheckpointError:
        continue
      print(f"jaxsweep: note: {os.path.join(self.directory, LATEST)} is missing; going on "
            f"from {name}, the newest complete checkpoint.", file=sys.stderr)
      return name
    raise _refuse(self.directory, f"{LATEST} is missing and no ckpt-* in it is complete")

  def _load(self, path: str) -> dict[str, Any]:
    """The manifest of the checkpoint ``path``, every check passed."""
    name = os.path.basename(path)
    try:
      with open(os.path.join(path, MANIFEST), "rb") as f:
        data = f.read()
      with open(os.path.join(path, MANIFEST_SUM), encoding="ascii") as f:
        digest = f.read().strip()
    except (OSError, ValueError) as e:
      raise _refuse(self.directory, f"{name}'s manifest or its checksum is missing "
                                    f"({errors.first_line(e)})") from None
    if _sha256(data) != digest:
      raise _refuse(self.directory, f"{name}/{MANIFEST} was changed or is corrupt (checksum "
                                    "mismatch)")
    try:
      manifest = json.loads(data.decode())
    except (ValueError, UnicodeDecodeError) as e:
      raise _refuse(self.directory, f"{name}/{MANIFEST} is not JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
      raise _refuse(self.directory, _format_problem(manifest))
    problem = _malformed(manifest)
    if problem:
      raise _refuse(self.directory, f"{name}/{MANIFEST} is malformed ({problem})")
    for fname, digest in manifest["files"].items():
      self._verify(os.path.join(path, fname), digest)
    for done_name, entry in manifest["done"].items():
      self._verify(os.path.join(self.directory, DONE, f"{done_name}.npz"), entry["sha256"])
    problem = _inconsistent(manifest)
    if problem:
      raise _refuse(self.directory, f"{name} contradicts itself ({problem})")
    return manifest

  def _verify(self, path: str, digest: str) -> None:
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:
      raise _refuse(self.directory, f"{os.path.relpath(path, self.directory)} is "
                                    f"missing ({e.strerror})") from e
    if _sha256(data) != digest:
      raise _refuse(self.directory, f"{os.path.relpath(path, self.directory)} is "
                                    "corrupt or truncated (checksum mismatch)")

  def snapshot(self) -> Snapshot:
    """The saved snapshot; live chunks' arrays are read with :meth:`live_arrays`."""
    m = self.manifest
    live = {int(g): {"periods": e["periods"],
                     "chunks": [(c["members"], None) for c in e["chunks"]]}
            for g, e in m["live"].items()}
    return Snapshot(
        fingerprint=m["fingerprint"],
        groups={int(g): v for g, v in m["groups"].items()},
        history={int(i): h for i, h in m["history"].items()},
        finals={int(i): f for i, f in m["finals"].items()}, live=live,
        extra=m.get("extra", {}))

  @property
  def done(self) -> dict[str, dict]:
    """Finished variants' array files: name -> ``{"group", "members", "sha256"}``."""
    return self.manifest["done"]

  def live_arrays(self, group: int, chunk: int, like) -> Any:
    """The arrays of a live chunk, in the structure of ``like`` (checked)."""
    try:
      entry = self.manifest["live"][str(group)]["chunks"][chunk]
    except (KeyError, IndexError):
      raise _refuse(self.directory, f"it holds no chunk {chunk} of group {group} in "
                                    "training") from None
    return self._arrays(os.path.join(self.path, entry["file"]), like)

  def done_arrays(self, name: str, like) -> Any:
    """The arrays of finished variants (:attr:`done`), in the structure of ``like``."""
    return self._arrays(os.path.join(self.directory, "done", f"{name}.npz"), like)

  def _arrays(self, path: str, like) -> Any:
    try:
      return _load_npz(path, like)
    except (OSError, ValueError, KeyError) as e:
      raise _refuse(self.directory, f"{os.path.relpath(path, self.directory)} does not "
                                    f"match this sweep's arrays ({e})") from e



# --------------------------------------------------------------------------
# What a manifest must hold.

def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _int_key(k) -> bool:
  return isinstance(k, str) and k.isdigit()


def _format_problem(manifest) -> str:
  """Why a manifest's format cannot be resumed."""
  if not isinstance(manifest, dict):
    return "its manifest is not an object"
  found = manifest.get("format")
  if isinstance(found, int) and not isinstance(found, bool) and 0 < found < FORMAT:
    return (f"it was written by an earlier jaxsweep (checkpoint format {found}, this one "
            f"reads {FORMAT}), whose training steps drew other batches: going on would mix "
            "the two")
  return f"unknown format {found!r}"


def _malformed(m: dict[str, Any]) -> str | None:
  """What is wrong with a manifest's structure (keys and types), or None."""
  def dict_of(key, check_key=_int_key):
    v = m.get(key)
    if not isinstance(v, dict):
      return f"{key}: expected an object, found {type(v).__name__}"
    bad = next((k for k in v if not check_key(k)), None)
    return None if bad is None else f"{key}: unexpected key {bad!r}"

  for key in ("groups", "history", "finals", "live"):
    problem = dict_of(key)
    if problem:
      return problem
  for key in ("files", "done", "extra"):
    problem = dict_of(key, lambda k: isinstance(k, str))
    if problem:
      return problem
  if not isinstance(m.get("fingerprint"), str):
    return "fingerprint: expected a string"
  for g, v in m["groups"].items():
    if not (isinstance(v, dict) and _is_int(v.get("chunk_size")) and _is_int(v.get("lanes"))
            and isinstance(v.get("done"), bool)):
      return f"groups.{g}: expected chunk_size, lanes (integers) and done (true/false)"
  for i, h in m["history"].items():
    if not (isinstance(h, list) and all(isinstance(e, dict) and _is_int(e.get("step"))
                                        for e in h)):
      return f"history.{i}: expected a list of entries with an integer step"
  for i, f in m["finals"].items():
    if not (isinstance(f, dict) and _is_int(f.get("step"))):
      return f"finals.{i}: expected an entry with an integer step"
  for fname, digest in m["files"].items():
    if not (isinstance(digest, str) and re.fullmatch(r"live-g\d+-\d+\.npz", fname)):
      return f"files.{fname}: expected a live-g*-*.npz file and its sha256"
  for name, e in m["done"].items():
    if not (re.fullmatch(r"g\d+-\d+", name) and isinstance(e, dict)
            and isinstance(e.get("sha256"), str) and _is_int(e.get("group"))
            and _members(e.get("members"))):
      return f"done.{name}: expected sha256, group and members"
  for g, e in m["live"].items():
    if not (isinstance(e, dict) and _is_int(e.get("periods")) and e["periods"] >= 0
            and isinstance(e.get("chunks"), list)):
      return f"live.{g}: expected periods (an integer >= 0) and chunks (a list)"
    for c, chunk in enumerate(e["chunks"]):
      if not (isinstance(chunk, dict) and chunk.get("file") in m["files"]
              and _members(chunk.get("members"))):
        return f"live.{g}.chunks.{c}: expected a listed file and members"
  return None


def _members(x) -> bool:
  return isinstance(x, list) and all(v is None or _is_int(v) for v in x)


def _inconsistent(m: dict[str, Any]) -> str | None:
  """Where a well-formed manifest contradicts itself, or None.

  A live group that reached ``periods`` boundaries has evaluated its
  variants ``periods + 1`` times (step 0 included): the variant with the
  longest history has exactly that many entries (a stopped or diverged one
  may have fewer). Its groups are known, not done, and not finished variants.
  """
  for g, e in m["live"].items():
    if g not in m["groups"] or m["groups"][g]["done"]:
      return f"group {g} is in training but not listed as such"
    members = [v for chunk in e["chunks"] for v in chunk["members"] if v is not None]
    if any(str(v) in m["finals"] for v in members):
      return f"a variant of group {g} is both finished and in training"
    lengths = [len(m["history"].get(str(v), ())) for v in members]
    if lengths and max(lengths) != e["periods"] + 1:
      return (f"group {g} reached {e['periods']} period(s) but its history holds "
              f"{max(lengths) - 1}")
  return None
