"""Choosing a new run's directory: ``runs/<config name>[-k]``, named and claimed.

:func:`default_dir` names the first free ``root/<name>[-k]`` (so a rerun never
lands on an earlier one), :func:`latest_dir` the newest taken one (what
``--resume`` acts on), and :func:`claim_default_dir` takes one atomically
(``os.mkdir``, then its lock) so runs started together each get their own;
:func:`jaxsweep.report.rundir.prepare` then uses the claim (:func:`take`) or
:func:`release_claim` gives it back.
"""

from __future__ import annotations

import os
import re

from jaxsweep import errors
from jaxsweep import signals
from jaxsweep.report import runlock

DEFAULT_ROOT = "runs"
LOCK = runlock.LOCK


def config_name(config_path_or_name: str) -> str:
  """``configs/digits_lr.yaml`` -> ``digits_lr``.

  Examples:
    >>> config_name("configs/digits_lr.yaml"), config_name("lr")
    ('digits_lr', 'lr')
  """
  base = os.path.basename(os.path.normpath(str(config_path_or_name)))
  return os.path.splitext(base)[0] or "sweep"


def default_dir(config_path_or_name: str, root: str = DEFAULT_ROOT) -> str:
  """A directory for a new run that never lands on an earlier one.

  ``root/<name>`` if it does not exist or is empty, else the first of
  ``root/<name>-2``, ``-3``, ... that does not exist or is empty. Nothing is
  created.

  Examples:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> first = default_dir("configs/lr.yaml", root)
    >>> os.path.relpath(first, root)
    'lr'
    >>> os.makedirs(os.path.join(first, "tensorboard"))
    >>> os.path.relpath(default_dir("lr", root), root)
    'lr-2'
  """
  name = config_name(config_path_or_name)
  k = 1
  while True:
    path = os.path.join(root, name if k == 1 else f"{name}-{k}")
    if _free(path):
      return path
    k += 1


def latest_dir(config_path_or_name: str, root: str = DEFAULT_ROOT) -> str | None:
  """The newest non-empty ``root/<name>[-k]`` (highest k), or None.

  ``jaxsweep run CONFIG --resume`` (or ``--overwrite``) without ``--out``
  acts on this directory.
  """
  name = config_name(config_path_or_name)
  try:
    entries = os.listdir(root)
  except OSError:
    return None
  pattern = re.compile(re.escape(name) + r"(?:-(\d+))?")
  found = []
  for entry in entries:
    m = pattern.fullmatch(entry)
    path = os.path.join(root, entry)
    if m and os.path.isdir(path) and not _free(path):
      found.append((int(m.group(1) or 1), path))
  return max(found)[1] if found else None


# Directories taken by claim_default_dir, locked, until prepare() uses them.
_claims: dict[str, runlock.Lock] = {}


def take(path: str) -> runlock.Lock | None:
  """The lock :func:`claim_default_dir` holds on ``path``, handed over (None if none)."""
  return _claims.pop(os.path.abspath(path), None)


def claim_default_dir(config_path_or_name: str, root: str = DEFAULT_ROOT) -> str:
  """:func:`default_dir`, taken atomically: simultaneous runs get distinct ones.

  Each candidate ``root/<name>[-k]`` is claimed by creating it (``os.mkdir``)
  or, when it exists and is empty, by its lock; the first claim that holds
  wins and the others go on to the next ``k``. The directory stays locked
  for this process until :func:`~jaxsweep.report.rundir.prepare` (which
  uses the lock) or :func:`release_claim`.

  Returns:
    The directory (the path :func:`default_dir` would name if nothing were
    running; where ``root`` cannot be created, that path unclaimed, for
    :func:`~jaxsweep.report.rundir.prepare` to report).
  """
  name = config_name(config_path_or_name)
  try:
    os.makedirs(root, exist_ok=True)
  except OSError:
    return default_dir(config_path_or_name, root)
  k = 1
  while True:
    path = os.path.join(root, name if k == 1 else f"{name}-{k}")
    with signals.critical():
      lock = _try_claim(path)
      if isinstance(lock, runlock.Lock):
        _claims[os.path.abspath(path)] = lock
        return path
    if lock is False:
      return path
    k += 1


def _try_claim(path: str) -> runlock.Lock | bool | None:
  """The lock of ``path`` if this process took it fresh; None if taken;
  False if it cannot be created (prepare reports why)."""
  try:
    os.mkdir(path)
  except FileExistsError:
    if not _free(path):
      return None
  except OSError:
    return False
  try:
    lock = runlock.acquire(path)
  except errors.ConfigError:
    return None  # Another run claimed it first.
  try:
    if set(os.listdir(path)) - {LOCK}:  # Written into before our lock: not free.
      lock.release()
      return None
  except OSError:
    lock.release()
    return None
  return lock


def release_claim(path: str) -> None:
  """Gives back a directory :func:`claim_default_dir` took and
  :func:`~jaxsweep.report.rundir.prepare` did not use (removed if still empty)."""
  lock = _claims.pop(os.path.abspath(path), None)
  if lock is not None:
    lock.release()
    remove_empty(path)


def _free(path: str) -> bool:
  """Whether a new run may take ``path``: missing, or an empty directory."""
  if not os.path.lexists(path):
    return True
  try:
    return os.path.isdir(path) and not os.listdir(path)
  except OSError:
    return False


def remove_empty(path: str) -> None:
  try:
    os.rmdir(path)
  except OSError:
    pass  # Not empty, or already gone: leave it.
