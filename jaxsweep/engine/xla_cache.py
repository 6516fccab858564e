"""JAX's persistent compilation cache, on by default, with hits counted.

Compiling a group's program takes seconds to minutes; a second run of the
same sweep (or a resumed one, or ``best.yaml``'s single variant with the
same shapes) needs the same programs. :func:`enable` points JAX's persistent
cache at a directory (``$XDG_CACHE_HOME/jaxsweep/xla`` by default, or the
``JAXSWEEP_COMPILE_CACHE`` environment variable; ``off`` disables it) before
the first compilation, and :func:`counts` reports hits and misses, so the
progress can say when a group came from the cache.

The choice is made once per process and kept: the ``jaxsweep`` command makes
it from ``--compile-cache`` at start-up, ``js.run`` on its first call (from
its ``compile_cache=`` argument or the environment), and a later call that
names no directory leaves it as it is (so ``--compile-cache off`` stays off).
A later call that names one (``compile_cache="off"`` or a path) changes it.

The cache holds compiled executables keyed by the program, the compiler
options, the devices and the JAX version; a hit returns the same executable,
so results are unchanged.
"""

from __future__ import annotations

import os
import threading

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "JAXSWEEP_COMPILE_CACHE"
ENV_CACHE_DIR = "JAXSWEEP_CACHE_DIR"
_OFF = ("0", "off", "false", "no", "none")
_HITS = "/jax/compilation_cache/cache_hits"
_MISSES = "/jax/compilation_cache/cache_misses"
_counts = {"hits": 0, "misses": 0}
_lock = threading.Lock()
# "decided": whether jaxsweep chose (directory is then its choice; None: off).
_state = {"listening": False, "directory": None, "decided": False}


def _listen(event: str, **kwargs) -> None:
  del kwargs  # Unused.
  if event in (_HITS, _MISSES):
    with _lock:
      _counts["hits" if event == _HITS else "misses"] += 1


def cache_dir() -> str:
  """Where jaxsweep keeps what it learned about this machine (measured
  layouts, compiled programs): ``JAXSWEEP_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/jaxsweep`` (``~/.cache/jaxsweep``)."""
  explicit = os.environ.get(ENV_CACHE_DIR)
  if explicit:
    return explicit
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "jaxsweep")


def default_directory() -> str:
  return os.path.join(cache_dir(), "xla")


def enable(directory: str | bool | None = None) -> str | None:
  """Turns JAX's persistent compilation cache on or off, once per process.

  Args:
    directory: where to keep compiled programs; ``"off"`` (or ``False``)
      disables the cache. ``None``: keep this process's earlier choice, else
      the ``JAXSWEEP_COMPILE_CACHE`` environment variable, else a directory
      the user configured (``jax_compilation_cache_dir``), else
      :func:`default_directory`.

  Returns:
    The cache directory in use, or ``None`` when disabled.
  """
  if not _state["listening"]:
    jax.monitoring.register_event_listener(_listen)
    _state["listening"] = True
  if directory is None and _state["decided"]:
    return _state["directory"]
  choice = directory
  if choice is None:
    choice = os.environ.get(ENV, "").strip() or jax.config.jax_compilation_cache_dir
  if choice is None or choice is True or choice == "":
    choice = default_directory()
  off = choice is False or str(choice).strip().lower() in _OFF
  chosen = None if off else os.fspath(choice)
  if _state["decided"] and chosen == _state["directory"]:
    return chosen
  _state["decided"] = True
  if chosen is not None:
    os.makedirs(chosen, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", chosen)
    # Every program of a sweep takes a while to compile: cache them all.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_enable_compilation_cache", chosen is not None)
  # JAX decides whether to use its cache at the first compilation and keeps
  # that answer: start it over so that the new choice holds from now on.
  compilation_cache.reset_cache()
  _state["directory"] = chosen
  return chosen


def directory() -> str | None:
  """The cache directory in use, if any."""
  return _state["directory"]


def counts() -> dict[str, int]:
  """Persistent-cache hits and misses so far in this process."""
  with _lock:
    return dict(_counts)
