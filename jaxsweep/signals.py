"""One process-wide policy for SIGINT and SIGTERM, for the whole life of a run.

A leaf module (standard library only): the CLI installs it first thing
(:func:`install`), before JAX is imported, so that a Ctrl-C at any moment ends
the same way: one line, a consistent run directory, exit status
``128 + signum`` (130 for SIGINT, 143 for SIGTERM).

What a signal does depends on where the process is:

==============================  ==============================================
before :func:`arm`              recorded only (JAX importing: an exception
(start-up, imports)             raised inside an import or a garbage collector
                                callback crashed or was swallowed); acted on
                                at :func:`arm`
inside :func:`critical`         recorded; raised as :class:`Interrupt` when the
(a checkpoint, the results,     outermost block ends (never half a file)
``run.json``, the lock)
inside :func:`deferred`         the first signal is only recorded: the training
(training)                      loop reads :func:`requested` at a period
                                boundary, saves and stops; a second signal
                                raises :class:`Interrupt` at once
anywhere else (planning,        :class:`Interrupt` at once
compiling, optional outputs)
==============================  ==============================================

A signal that lands inside a garbage-collector callback or a finalizer
(where Python would print ``Exception ignored in ...`` and go on) is raised
a moment later, once out of it (``SIGALRM``, 20 ms).

A third signal while a :func:`critical` block holds two back restores the
default action and re-sends itself: the process dies at once (every write is
atomic, and the next run removes what is left of it).

Without :func:`install` (the Python API in a notebook) nothing changes but
inside :func:`deferred`, which installs the policy for its duration (main
thread only) and restores the previous handlers after.

Examples:
  >>> import signal
  >>> with critical():
  ...   pass
  >>> requested() is None
  True
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt(KeyboardInterrupt):
  """A signal stopped the process (a ``KeyboardInterrupt``, so ``except
  Exception`` never swallows it).

  Attributes:
    signum: the signal.
    exit_code: ``128 + signum``: 130 for SIGINT, 143 for SIGTERM.
  """

  def __init__(self, signum: int):
    self.signum = signum
    self.exit_code = 128 + signum
    super().__init__(signal.Signals(signum).name)


class Interrupted(Exception):
  """A signal stopped the sweep at a period boundary (raised by the engine
  after saving; here, beside :class:`Interrupt`, so that code reading a run
  directory can catch it without importing the engine, which imports JAX).

  Attributes:
    signum: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
    exit_code: the conventional exit status, ``128 + signum`` (130, 143).
    step: the step the interrupted chunk had reached.
    saved: the checkpoint written, or ``None`` without a checkpoint directory.
  """

  def __init__(self, signum: int, step: int, saved: str | None):
    self.signum, self.step, self.saved = signum, step, saved
    self.exit_code = 128 + signum
    name = signal.Signals(signum).name
    super().__init__(f"{name} at step {step}: "
                     + (f"the population was saved in {saved}" if saved else
                        "nothing was saved (no checkpoint directory)"))


class _State:
  """The policy's state (one per process)."""

  def __init__(self):
    self.installed = False      # By install(): for the whole process.
    self.armed = True           # False between install() and arm().
    self.previous: dict[int, object] = {}
    self.first: int | None = None   # The first signal received.
    self.count = 0              # Signals received.
    self.critical = 0           # Depth of critical() blocks.
    self.held: int | None = None    # A signal to raise when critical() ends.
    self.held_count = 0
    self.deferring = 0          # Depth of deferred() blocks.


_state = _State()


def _handle(signum, frame) -> None:
  s = _state
  s.count += 1
  if s.first is None:
    s.first = signum
  if not s.armed:
    return  # Start-up: arm() acts on it.
  if s.deferring and s.count == 1:
    return  # Training: the loop reads requested() at its next boundary.
  if s.critical:
    s.held, s.held_count = signum, s.held_count + 1
    if s.held_count >= 3:  # The user insists: the default action, now.
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
    return
  if _unraisable(frame):
    # Python would print "Exception ignored in ..." and go on: raise it a
    # moment later instead, once out of the garbage collector's callback.
    s.held = signum
    _redeliver_soon()
    return
  raise Interrupt(signum)


def _unraisable(frame) -> bool:
  """Whether an exception raised in ``frame`` would be swallowed by Python:
  inside a garbage-collector callback (JAX's ``_xla_gc_callback``) or a
  finalizer."""
  codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
  while frame is not None:
    if frame.f_code in codes or frame.f_code.co_name == "__del__":
      return True
    frame = frame.f_back
  return False


def _redeliver_soon() -> None:
  if hasattr(signal, "setitimer"):
    signal.signal(signal.SIGALRM, _redeliver)
    signal.setitimer(signal.ITIMER_REAL, 0.02)


def _redeliver(signum, frame) -> None:
  del signum  # Unused (SIGALRM).
  s = _state
  if s.held is None or s.critical:
    return  # Raised by critical()'s end instead.
  if _unraisable(frame):
    _redeliver_soon()
    return
  held, s.held, s.held_count = s.held, None, 0
  raise Interrupt(held)


def _main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()


def install(*, armed: bool = False) -> bool:
  """Installs the policy for the rest of the process (idempotent).

  Call it before importing anything slow; until :func:`arm`, signals are
  only recorded.

  Args:
    armed: act on signals at once (no start-up phase).

  Returns:
    Whether the policy is in place (False outside the main thread, where
    Python cannot install signal handlers).
  """
  if not _main_thread():
    return False
  if not _state.installed:
    for s in SIGNALS:
      _state.previous[s] = signal.signal(s, _handle)
    _state.installed = True
    _state.armed = armed
  return True


def installed() -> bool:
  """Whether :func:`install` put the policy in place."""
  return _state.installed


def arm() -> None:
  """Ends the start-up phase: from now on a signal interrupts (see the table).

  Raises:
    Interrupt: when a signal arrived during start-up.
  """
  _state.armed = True
  if _state.first is not None and not _state.deferring:
    raise Interrupt(_state.first)


def disarm() -> None:
  """Back to recording only (the process is about to exit: a signal now
  changes nothing)."""
  _state.armed = False


def uninstall() -> None:
  """Restores the handlers found by :func:`install` and forgets every signal."""
  global _state
  if _state.installed and _main_thread():
    for s, handler in _state.previous.items():
      signal.signal(s, handler)
  _state = _State()


def requested() -> int | None:
  """The first SIGINT/SIGTERM received so far, or None."""
  return _state.first


def check() -> None:
  """Raises :class:`Interrupt` if a signal was received (a safe point to stop).

  For points where no interruption can already be on its way up (e.g. before
  writing results after training): a signal the handler raised inside a
  garbage-collector callback is swallowed by Python, and this stops there.
  """
  if _state.first is not None:
    raise Interrupt(_state.first)


class critical(contextlib.AbstractContextManager):  # pylint: disable=invalid-name
  """Holds signals back while a block writes something that must be whole.

  A checkpoint, the results, ``run.json``, the lock: a signal received inside
  is raised as :class:`Interrupt` when the outermost block ends (unless an
  exception is already leaving it), so nothing is left half-written.
  Re-entrant; a no-op outside the main thread.
  """

  def __enter__(self) -> critical:
    self._on = _main_thread()
    if self._on:
      _state.critical += 1
    return self

  def __exit__(self, exc_type, exc, tb) -> bool:
    if not self._on:
      return False
    _state.critical -= 1
    if _state.critical == 0 and _state.held is not None:
      held, _state.held, _state.held_count = _state.held, None, 0
      if exc_type is None:
        raise Interrupt(held)
    return False


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """Training: the first signal is only recorded (read :func:`requested` at a
  safe point, save, stop); a second one raises :class:`Interrupt`.

  Installs the policy for the block when :func:`install` was not called (the
  Python API), restoring the previous handlers after; a no-op outside the
  main thread.
  """
  if not _main_thread():
    yield
    return
  temporary = not _state.installed
  if temporary:
    install(armed=True)
  _state.deferring += 1
  try:
    yield
  finally:
    _state.deferring -= 1
    if temporary:
      uninstall()


# --------------------------------------------------------------------------
# Test only.

PAUSE_ENV = "JAXSWEEP_TEST_PAUSE_AT"


def pause_for_test(point: str) -> None:
  """Test only: waits at ``point`` when ``JAXSWEEP_TEST_PAUSE_AT=point:MARKER``.

  Creates the file ``MARKER`` (so a test knows the process got there), then
  sleeps up to 60 s or until a signal arrives, so a test can send a signal
  at that moment (``rundir``: the run directory just claimed; ``writing``:
  the results half written; ``extras``: the optional outputs). Unset (every
  real run), it does nothing.
  """
  spec = os.environ.get(PAUSE_ENV)
  if not spec or spec.partition(":")[0] != point:
    return
  marker = spec.partition(":")[2]
  if marker:
    with open(marker, "w", encoding="utf-8") as f:
      f.write(str(os.getpid()))
  count = _state.count
  for _ in range(600):
    if _state.count != count:
      return
    time.sleep(0.1)
