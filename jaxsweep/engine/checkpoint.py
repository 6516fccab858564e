"""Checkpoints of a running sweep: saved at period boundaries, verified on load.

A checkpoint directory holds::

  LATEST                 the name of the newest complete checkpoint
  ckpt-000012/           one checkpoint (written under a temporary name, then
    manifest.json        renamed): what was saved, with a sha256 per file
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
intact. Loading checks the fingerprint, the format and every file's
checksum: a checkpoint of another sweep, or a corrupt or truncated one, is
refused with a :class:`~jaxsweep.errors.CheckpointError`, never mixed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from typing import Any

import jax
import numpy as np

from jaxsweep import errors
from jaxsweep.engine import sharding

FORMAT = 2  # 2: several groups live at once (sweep-wide boundaries).
LATEST = "LATEST"
MANIFEST = "manifest.json"


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

  Args:
    directory: the checkpoint directory (created).
    keep: complete checkpoints kept (older ones are deleted after a newer
      one is in place).
  """

  def __init__(self, directory: str, *, keep: int = 1):
    self.directory = directory
    self.keep = max(1, keep)
    os.makedirs(os.path.join(directory, "done"), exist_ok=True)
    self._done: dict[str, dict] = {}
    self._done_count = 0
    self._count = _latest_number(directory)

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
    path = os.path.join(self.directory, "done", f"{name}.npz")
    tmp = path + ".tmp"
    _write(tmp, data)
    os.replace(tmp, path)
    self._done[name] = {"sha256": _sha256(data), "group": group, "members": list(members)}

  def save(self, snap: Snapshot) -> str:
    """Writes a complete checkpoint and points ``LATEST`` at it.

    Returns:
      The checkpoint's directory.
    """
    self._count += 1
    name = f"ckpt-{self._count:06d}"
    tmp = tempfile.mkdtemp(dir=self.directory, prefix=".tmp-ckpt-")
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
    _write(os.path.join(tmp, MANIFEST), _json(manifest).encode())
    final = os.path.join(self.directory, name)
    os.replace(tmp, final)
    _fsync_dir(self.directory)
    _replace_atomically(os.path.join(self.directory, LATEST), name + "\n")
    self._prune(name)
    return final

  def _prune(self, newest: str) -> None:
    names = sorted(n for n in os.listdir(self.directory) if n.startswith("ckpt-"))
    for n in names[:-self.keep]:
      if n != newest:
        shutil.rmtree(os.path.join(self.directory, n), ignore_errors=True)
    for n in os.listdir(self.directory):
      if n.startswith(".tmp-"):
        shutil.rmtree(os.path.join(self.directory, n), ignore_errors=True)


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


def _latest_number(directory: str) -> int:
  nums = [int(n[5:]) for n in os.listdir(directory)
          if n.startswith("ckpt-") and n[5:].isdigit()]
  return max(nums, default=0)


# --------------------------------------------------------------------------
# Loading.

def exists(directory: str | None) -> bool:
  """Whether ``directory`` holds a checkpoint pointer."""
  return bool(directory) and os.path.isfile(os.path.join(directory, LATEST))


def _refuse(directory: str, why: str) -> errors.CheckpointError:
  return errors.CheckpointError(
      f"the checkpoint in {directory} cannot be used: {why}.", key="resume",
      fix="resume with the same config and overrides, or start afresh (--overwrite, or "
          "another --out)")


class Reader:
  """A verified checkpoint: its manifest, with arrays read on demand.

  Raises:
    CheckpointError: for a missing, corrupt, truncated or foreign checkpoint.
  """

  def __init__(self, directory: str, *, fingerprint: str):
    self.directory = directory
    try:
      with open(os.path.join(directory, LATEST)) as f:
        name = f.read().strip()
      self.path = os.path.join(directory, name)
      with open(os.path.join(self.path, MANIFEST), "rb") as f:
        manifest = json.loads(f.read().decode())
    except (OSError, ValueError, UnicodeDecodeError) as e:
      raise _refuse(directory, f"its manifest is missing or corrupt ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
      raise _refuse(directory, f"unknown format {manifest.get('format')!r}"
                    if isinstance(manifest, dict) else "its manifest is not an object")
    if manifest.get("fingerprint") != fingerprint:
      raise _refuse(directory, "it was saved by a different sweep (other variants, "
                               "settings or components)")
    self.manifest = manifest
    for fname, digest in manifest["files"].items():
      self._verify(os.path.join(self.path, fname), digest)
    for name, entry in manifest["done"].items():
      self._verify(os.path.join(directory, "done", f"{name}.npz"), entry["sha256"])

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
    entry = self.manifest["live"][str(group)]["chunks"][chunk]
    return self._arrays(os.path.join(self.path, entry["file"]), like)

  def done_arrays(self, name: str, like) -> Any:
    return self._arrays(os.path.join(self.directory, "done", f"{name}.npz"), like)

  def _arrays(self, path: str, like) -> Any:
    try:
      return _load_npz(path, like)
    except (OSError, ValueError, KeyError) as e:
      raise _refuse(self.directory, f"{os.path.relpath(path, self.directory)} does not "
                                    f"match this sweep's arrays ({e})") from e

