"""JAX's persistent compilation cache, on by default, with hits counted.

Compiling a group's program takes seconds to minutes; a second run of the
same sweep (or a resumed one, or ``best.yaml``'s single variant with the
same shapes) needs the same programs. :func:`enable` points JAX's persistent
cache at a directory (``$XDG_CACHE_HOME/jaxsweep/xla`` by default, or the
``JAXSWEEP_COMPILE_CACHE`` environment variable; ``off`` disables it) before
the first compilation, and :func:`counts` reports hits and misses, so the
progress can say when a group came from the cache.

The cache holds compiled executables keyed by the program, the compiler
options, the devices and the JAX version; a hit returns the same executable,
so results are unchanged.
"""

from __future__ import annotations

import os
import threading

import jax

ENV = "JAXSWEEP_COMPILE_CACHE"
ENV_CACHE_DIR = "JAXSWEEP_CACHE_DIR"
_OFF = ("0", "off", "false", "no", "none")
_HITS = "/jax/compilation_cache/cache_hits"
_MISSES = "/jax/compilation_cache/cache_misses"
_counts = {"hits": 0, "misses": 0}
_lock = threading.Lock()
_state = {"listening": False, "directory": None}


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


def enable(directory: str | None = None) -> str | None:
  """Turns JAX's persistent compilation cache on (unless set up or disabled).

  Args:
    directory: where to keep compiled programs (default: the
      ``JAXSWEEP_COMPILE_CACHE`` environment variable, else
      :func:`default_directory`).

  Returns:
    The cache directory in use, or ``None`` when disabled. A directory the
    user already configured (``jax_compilation_cache_dir``) is kept.
  """
  if not _state["listening"]:
    jax.monitoring.register_event_listener(_listen)
    _state["listening"] = True
  configured = jax.config.jax_compilation_cache_dir
  if configured:
    _state["directory"] = configured
    return configured
  choice = directory or os.environ.get(ENV, "").strip() or default_directory()
  if choice.lower() in _OFF:
    return None
  os.makedirs(choice, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", choice)
  # Every program of a sweep takes a while to compile: cache them all.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  _state["directory"] = choice
  return choice


def directory() -> str | None:
  """The cache directory in use, if any."""
  return _state["directory"]


def counts() -> dict[str, int]:
  """Persistent-cache hits and misses so far in this process."""
  with _lock:
    return dict(_counts)
