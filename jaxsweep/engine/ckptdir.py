"""A checkpoint directory's names on disk, and what finds or clears them.

Standard library only: :mod:`jaxsweep.report.rundir` asks whether a run
directory holds a checkpoint and clears what the engine wrote there without
importing the engine's writer and reader (:mod:`jaxsweep.engine.checkpoint`),
which import JAX (issue #24: ``jaxsweep report`` renders a finished run's
table without JAX). The layout itself is described in
:mod:`jaxsweep.engine.checkpoint`.

Examples:
  >>> import tempfile
  >>> with tempfile.TemporaryDirectory() as d:
  ...   exists(d), clear(d), os.path.isdir(d)
  (False, True, False)
"""

from __future__ import annotations

import os
import re
import shutil

LATEST = "LATEST"
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
DONE = "done"
CKPT_NAME = re.compile(r"ckpt-\d{6,}")
DONE_NAME = re.compile(r"g\d+-\d+\.npz(\.tmp)?")


def remove_temporary(directory: str) -> None:
  """Temporary entries of interrupted writes (``.tmp-*``, ``done/*.tmp``)."""
  for n in os.listdir(directory):
    if n.startswith(".tmp-"):
      path = os.path.join(directory, n)
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        _unlink(path)
  done = os.path.join(directory, DONE)
  if os.path.isdir(done):
    for n in os.listdir(done):
      if n.endswith(".tmp") and DONE_NAME.fullmatch(n):
        _unlink(os.path.join(done, n))


def _unlink(path: str) -> None:
  try:
    os.unlink(path)
  except OSError:
    pass


def clear(directory: str) -> bool:
  """Removes what a :class:`~jaxsweep.engine.checkpoint.Writer` wrote in ``directory``, nothing else.

  ``LATEST``, ``ckpt-*/``, ``done/g*-*.npz`` and temporary entries go; a
  file of the user's stays (with the directories holding it).

  Returns:
    Whether the directory is gone (False: something else is in it).
  """
  if not os.path.isdir(directory) or os.path.islink(directory):
    if os.path.lexists(directory):
      os.unlink(directory)
    return True
  remove_temporary(directory)
  for n in os.listdir(directory):
    path = os.path.join(directory, n)
    if n == LATEST and not os.path.isdir(path):
      os.unlink(path)
    elif CKPT_NAME.fullmatch(n) and os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
  done = os.path.join(directory, DONE)
  if os.path.isdir(done) and not os.path.islink(done):
    for n in os.listdir(done):
      if DONE_NAME.fullmatch(n):
        os.unlink(os.path.join(done, n))
    _rmdir(done)
  return _rmdir(directory)


def _rmdir(path: str) -> bool:
  try:
    os.rmdir(path)
  except OSError:
    return False
  return True


def latest_number(directory: str) -> int:
  """The number of the newest ``ckpt-*`` in ``directory`` (0 if none)."""
  nums = [int(n[5:]) for n in os.listdir(directory) if CKPT_NAME.fullmatch(n)]
  return max(nums, default=0)


def exists(directory: str | None) -> bool:
  """Whether ``directory`` holds a checkpoint (``LATEST``, or a ``ckpt-*``)."""
  if not directory or not os.path.isdir(directory):
    return False
  return os.path.isfile(os.path.join(directory, LATEST)) or bool(saved_names(directory))


def saved_names(directory: str) -> list[str]:
  """Checkpoints with a manifest, newest first."""
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  return sorted((n for n in names if CKPT_NAME.fullmatch(n)
                 and os.path.isfile(os.path.join(directory, n, MANIFEST))), reverse=True)
