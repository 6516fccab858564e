"""The lock of a run directory: one writer at a time.

``DIR/.jaxsweep.lock`` is created with ``O_CREAT|O_EXCL`` and holds the
writer's pid, host and start time. A second writer is refused, naming the
first; a lock whose process is gone (same host) is stale and taken over,
with a note on stderr. A lock of another host, or one that cannot be read,
is respected: the message says which file to delete if its run is gone.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any

from jaxsweep import errors
from jaxsweep import results as results_lib

LOCK = ".jaxsweep.lock"


def acquire(directory: str) -> Lock:
  """Locks ``directory`` (which must exist) for this process.

  Raises:
    ConfigError: (``key="out"``) when another live run holds it, naming its
      pid and host, or when the lock file cannot be created.
  """
  return Lock.acquire(directory)


class Lock:
  """``DIR/.jaxsweep.lock``: one writer per directory."""

  def __init__(self, path: str, info: Mapping[str, Any]):
    self.path = path
    self.info = dict(info)

  @classmethod
  def acquire(cls, directory: str) -> Lock:
    """See :func:`acquire`."""
    path = os.path.join(directory, LOCK)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
    text = json.dumps(info)
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      holder = _read_lock(path)
      if holder is None or _alive(holder):
        raise _in_use(directory, path, holder) from None
      cls._take_over(directory, path, holder, text)
      return cls(path, info)
    except OSError as e:
      raise _os_error(path, e) from None
    with os.fdopen(fd, "w") as f:
      f.write(text)
    return cls(path, info)

  @staticmethod
  def _take_over(directory: str, path: str, holder: Mapping[str, Any], text: str) -> None:
    # Two processes may both find the lock stale: the one that creates the
    # guard replaces the lock, the other is refused.
    guard = path + ".takeover"
    try:
      fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      raise _in_use(directory, path, _read_lock(path)) from None
    except OSError as e:
      raise _os_error(guard, e) from None
    try:
      if _read_lock(path) != holder:
        raise _in_use(directory, path, _read_lock(path))
      results_lib.atomic_write(path, text)
    finally:
      os.close(fd)
      os.unlink(guard)
    print(f"jaxsweep: note: took over the stale lock of {directory} (pid {holder.get('pid')} "
          f"on {holder.get('host')}, started {holder.get('started', '?')}, is gone).",
          file=sys.stderr)

  def release(self) -> None:
    """Removes the lock if it is still this one's."""
    if _read_lock(self.path) == self.info:
      try:
        os.unlink(self.path)
      except OSError:
        pass  # Already gone.


def _read_lock(path: str) -> dict[str, Any] | None:
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  except (OSError, ValueError):
    return None
  return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def _alive(holder: Mapping[str, Any]) -> bool:
  """Whether the lock's process may still run (another host: assume so)."""
  if holder.get("host") != socket.gethostname():
    return True
  try:
    os.kill(holder["pid"], 0)
  except ProcessLookupError:
    return False
  except OSError as e:
    return e.errno != errno.ESRCH  # EPERM: someone else's process, alive.
  return True


def _in_use(directory: str, path: str, holder: Mapping[str, Any] | None) -> errors.ConfigError:
  who = (f"pid {holder['pid']} on {holder.get('host', '?')}, since {holder.get('started', '?')}"
         if holder else "its lock file is being written or unreadable")
  return errors.ConfigError(f"{directory} is in use by another jaxsweep run ({who}).",
                            key="out",
                            fix=f"wait for it, or give another --out; if that run is gone, "
                                f"delete {path}")


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _os_error(path: str, e: OSError) -> errors.ConfigError:
  return errors.ConfigError(f"cannot create {path}: {e.strerror or e}.", key="out",
                            fix="give a directory you can write to")
