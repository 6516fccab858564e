"""Progress of a sweep while it trains, from the engine's events.

:class:`ProgressPrinter` is the callback ``jaxsweep.run(progress=True)`` and
``jaxsweep run`` pass to the engine: a rich live display in a terminal with
rich installed, else plain lines (few of them in a log or CI). It says what
it is doing while nothing else happens (compiling a group, a long period)
with the time elapsed, and keeps the mechanics (chunk, padding, lanes,
vectorized keys) for ``verbose``. rich is optional and imported only by the
live display.

Examples:
  >>> import io
  >>> from jaxsweep.report import progress
  >>> stream = io.StringIO()
  >>> printer = progress.ProgressPrinter(stream)
  >>> printer({"event": "start", "variants": 6, "groups": 1, "devices": 8})
  >>> print(stream.getvalue().strip())
  jaxsweep: 6 variants in 1 compile group(s) on 8 device(s)
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import textwrap
import threading
import time
from collections.abc import Mapping
from typing import Any

from jaxsweep.report import console

# Lines of the normal progress are cut to this many characters.
WIDTH = 100
_THIS_FILE = os.path.abspath(__file__)
_PACKAGE = os.path.dirname(os.path.dirname(_THIS_FILE)) + os.sep


def _duration(seconds: float | None) -> str:
  if seconds is None or not math.isfinite(seconds):
    return "?"
  if seconds < 1:
    return "<1s"
  if seconds < 60:
    return f"{seconds:.0f}s"
  if seconds < 3600:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
  return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class _Tracker:
  """Running totals of a sweep from the engine's events."""

  def __init__(self):
    self.variants = self.num_groups = 0
    self.group: dict[str, Any] = {}
    self.compiling: dict[str, Any] = {}   # the "compiling" event, until its group starts
    self.chunk_diverged: dict[int, int] = {}
    self.finished_seconds = 0.0   # training seconds of finished chunks
    self.current_elapsed = 0.0
    self.done = 0                 # variant-steps done in the current group
    self.engine_rate: float | None = None  # the engine's: variants that trained, this process
    self.diverged_total = 0       # in finished groups
    self.train_total = 0.0        # training seconds of finished chunks, all groups
    self.compile_seconds = 0.0
    self.group_compile: float | None = None
    self.last_period: dict[str, Any] = {}

  def update(self, event: Mapping[str, Any]) -> None:
    kind = event.get("event")
    if kind == "start":
      self.__init__()
      self.variants, self.num_groups = event["variants"], event["groups"]
    elif kind == "compiling":
      self.compiling = dict(event)
    elif kind == "group":
      self.compiling = {}
      self.diverged_total += self.diverged
      self.group = dict(event)
      self.chunk_diverged, self.finished_seconds, self.current_elapsed = {}, 0.0, 0.0
      self.done, self.group_compile, self.engine_rate = 0, None, None
    elif kind == "compiled":
      self.group_compile = event["seconds"]
      self.compile_seconds += event["seconds"]
    elif kind == "period":
      self.last_period = dict(event)
      self.engine_rate = event.get("variant_steps_per_s")
      self.chunk_diverged[event["chunk_start"]] = event["diverged"]
      self.done = (event["chunk_start"] * event["steps"]
                   + event["chunk_variants"] * event["step"])
      self.current_elapsed = event["elapsed"]
      if event["step"] >= event["steps"]:
        self.finished_seconds += event["elapsed"]
        self.train_total += event["elapsed"]
        self.current_elapsed = 0.0

  @property
  def diverged(self) -> int:
    return sum(self.chunk_diverged.values())

  @property
  def total(self) -> int:
    return self.group.get("variants", 0) * self.group.get("steps", 0)

  @property
  def rate(self) -> float | None:
    """Variant-steps per second: the engine's count when it sends one (only
    the variants that trained, in this process: a resumed run's earlier steps
    and stopped variants do not count), else steps over elapsed seconds."""
    if self.engine_rate:
      return self.engine_rate
    seconds = self.finished_seconds + self.current_elapsed
    return self.done / seconds if seconds > 0 and self.done else None

  @property
  def eta(self) -> float | None:
    rate = self.rate
    return (self.total - self.done) / rate if rate else None

  @property
  def group_done(self) -> bool:
    p = self.last_period
    return bool(p) and p["step"] >= p["steps"] and (
        p["chunk_start"] + p["chunk_variants"] >= p["group_variants"])

  def done_line(self) -> str:
    # Compile time is shown on its own: the engine may compile before its
    # "start" event, so the event's total seconds need not include it.
    return f"training {self.train_total:.1f}s, compile {self.compile_seconds:.1f}s"

  def group_label(self, *, compiling: bool = False) -> str:
    """``group 2/3``: the group training, or (``compiling``) the one compiling."""
    g = self.compiling if compiling and self.compiling else self.group
    return f"group {g.get('group', 0) + 1}/{g.get('num_groups', self.num_groups or 1)}"

  def status_line(self, *, markup: bool = False) -> str:
    p = self.last_period
    rate = self.rate
    chunked = p["chunk_variants"] < p["group_variants"]
    div = f"diverged {self.diverged}"
    if markup and self.diverged:
      div = f"[red]{div}[/]"
    return (f"step {p['step']}/{p['steps']}  "
            + (f"variants {p['chunk_start'] + 1}-{p['chunk_start'] + p['chunk_variants']}"
               f"/{p['group_variants']}  " if chunked else "")
            + f"{rate or 0:,.0f} variant-steps/s  ETA {_duration(self.eta)}  {div}")


class ProgressPrinter:
  """Progress of a sweep on stderr, from the engine's events.

  In a terminal with rich installed: a live bar per compile group (steps,
  variant-steps/s, ETA, diverged so far; compile time on its own). Otherwise
  plain lines without control codes: in a terminal at most one progress line
  per ``min_interval`` seconds; in a log or CI (stderr not a terminal) only a
  few lines per group (start, compile time, end) plus one line per
  ``min_interval`` (30 s) of long training.

  While the engine is busy without an event (compiling a group, a long
  period), a background thread says so with the time elapsed: the live
  display each second, plain lines after ``heartbeat`` seconds without one.
  It speaks only while the thread that sent the events is inside jaxsweep,
  so a run that raised leaves no voice behind.

  Args:
    stream: where to print (default: ``sys.stderr``).
    min_interval: seconds between progress lines (default: 1 in a terminal,
      30 otherwise).
    live: force the rich live display on or off (default: a terminal and
      rich installed).
    verbose: also print how each group runs (chunk, padding, lanes,
      vectorized keys) and its whole description (``jaxsweep run -v``).
    heartbeat: seconds without a line before a plain "still compiling" line
      (default: 10 in a terminal, 30 otherwise); 0 turns the thread off.
  """

  def __init__(self, stream=None, min_interval: float | None = None, *,
               live: bool | None = None, verbose: bool = False,
               heartbeat: float | None = None):
    self.stream = stream if stream is not None else sys.stderr
    tty = console.isatty(self.stream)
    self.min_interval = min_interval if min_interval is not None else (1.0 if tty else 30.0)
    self.live = (tty and console.has_rich()) if live is None else live
    self.verbose = verbose
    self.heartbeat = heartbeat if heartbeat is not None else (10.0 if tty else 30.0)
    self._tracker = _Tracker()
    self._rich: _RichProgress | None = None
    self._last = 0.0
    self._lock = threading.RLock()
    self._phase: tuple[str, float] | None = None  # ("compiling"|"training", since)
    self._printed = time.monotonic()              # when the last line was printed
    self._sender: int | None = None               # the thread that sends events
    self._thread: threading.Thread | None = None
    self._stop = threading.Event()

  def __call__(self, event: Mapping[str, Any]) -> None:
    with self._lock:
      self._sender = threading.get_ident()
      self._tracker.update(event)
      self._update_phase(event)
      if self.live:
        if self._rich is None or event.get("event") == "start":
          if self._rich is not None:
            self._rich.close()
          self._rich = _RichProgress(self.stream, verbose=self.verbose)
        self._rich.handle(event, self._tracker)
      else:
        self._plain(event)
    if event.get("event") == "done":
      self.close()
    elif self._phase is not None:
      self._start_thread()

  def _update_phase(self, event: Mapping[str, Any]) -> None:
    kind, now = event.get("event"), time.monotonic()
    if kind == "compiling":
      self._phase = ("compiling", now)
    elif kind == "group" and (self._phase is None or self._phase[0] != "compiling"):
      self._phase = ("training", now)
    elif kind == "compiled":
      self._phase = ("training", now)
    elif kind == "done":
      self._phase = None

  def phase_line(self, now: float | None = None) -> str | None:
    """What the sweep is doing now and for how long, or None between runs."""
    if self._phase is None:
      return None
    what, since = self._phase
    elapsed = _duration((time.monotonic() if now is None else now) - since)
    t = self._tracker
    if what == "compiling":
      return f"compiling {t.group_label(compiling=True)} ... {elapsed}"
    p = t.last_period
    if p and p.get("group") == t.group.get("group"):
      return f"{t.group_label()} training: step {p['step']}/{p['steps']}, {elapsed} so far"
    return f"{t.group_label()} training: first evaluation period, {elapsed} so far"

  def tick(self, now: float | None = None) -> None:
    """Says what the sweep is doing when nothing was printed for a while."""
    with self._lock:
      now = time.monotonic() if now is None else now
      line = self.phase_line(now)
      if line is None or not self._sender_busy():
        return
      if self.live:
        if self._rich is not None:
          self._rich.tick(_duration(now - self._phase[1]), self._phase[0])
      elif self.heartbeat and now - self._printed >= self.heartbeat:
        self._print(f"  {line}")

  def close(self) -> None:
    """Stops the heartbeat thread (the ``done`` event does it too)."""
    self._stop.set()
    thread, self._thread = self._thread, None
    if thread is not None and thread is not threading.current_thread():
      thread.join(timeout=2.0)

  def _sender_busy(self) -> bool:
    # The heartbeat speaks for the engine only while it works: the sending
    # thread's stack is inside jaxsweep (not back in the user's code after
    # the run returned or raised).
    frame = sys._current_frames().get(self._sender)  # pylint: disable=protected-access
    while frame is not None:
      name = os.path.abspath(frame.f_code.co_filename)
      if name.startswith(_PACKAGE) and name != _THIS_FILE:
        return True
      frame = frame.f_back
    return False

  def _start_thread(self) -> None:
    if self._thread is not None or not (self.heartbeat or self.live):
      return
    self._stop = threading.Event()
    stop = self._stop
    interval = 1.0 if self.live else max(min(self.heartbeat, 5.0), 0.05)

    def beat():
      while not stop.wait(interval):
        self.tick()

    self._thread = threading.Thread(target=beat, name="jaxsweep-progress", daemon=True)
    self._thread.start()

  def _plain(self, event: Mapping[str, Any]) -> None:
    t = self._tracker
    kind = event.get("event")
    if kind == "start":
      self._print(f"jaxsweep: {event['variants']} variants in {event['groups']} "
                  f"compile group(s) on {event['devices']} device(s)")
    elif kind == "compiling":
      self._print(f"compiling {t.group_label(compiling=True)} ...")
    elif kind == "group":
      self._last = time.monotonic()
      self._print(group_line(event, t.group_label(), verbose=self.verbose))
      if self.verbose:
        self._print(mechanics_line(event))
    elif kind == "compiled":
      self._print(f"  {t.group_label()} compiled in {event['seconds']:.1f}s")
    elif kind == "period":
      if t.group_done:
        rate = t.rate
        self._print(f"  {t.group_label()} trained in {t.finished_seconds:.1f}s "
                    f"({rate or 0:,.0f} variant-steps/s); diverged {t.diverged}")
        return
      now = time.monotonic()
      if now - self._last < self.min_interval:
        return
      self._last = now
      self._print(f"  {t.group_label()}  {t.status_line()}")
    elif kind == "done":
      div = t.diverged_total + t.diverged
      self._print(f"done: {t.done_line()}"
                  + (f"; {div} of {t.variants} variants diverged" if div else ""))

  def _print(self, text: str) -> None:
    self._printed = time.monotonic()
    print(text, file=self.stream, flush=True)


def group_line(event: Mapping[str, Any], label: str, *, verbose: bool = False) -> str:
  """``group 2/3: 72 variants x 300 steps, model.features=[64,64]``.

  Cut to :data:`WIDTH` characters unless ``verbose``; the files and
  ``jaxsweep plan`` have the whole description.
  """
  line = f"{label}: {event['variants']} variants x {event['steps']} steps"
  if event.get("static"):
    line += f", {event['static']}"
  if not verbose and len(line) > WIDTH:
    line = line[:WIDTH - 3] + "..."
  return line


def mechanics_line(event: Mapping[str, Any]) -> str:
  """How a group runs (``-v``): chunk, padding, lanes, vectorized keys, wrapped."""
  text = (f"chunk {event['chunk_size']}, padding {event['padding']}{_lanes(event)}; "
          f"vectorized: {', '.join(event['dynamic']) or '-'}")
  return textwrap.fill(text, WIDTH, initial_indent="  ", subsequent_indent="    ")


_LIVE: list[_RichProgress] = []


@atexit.register
def _close_live() -> None:
  # A run that raised mid-sweep leaves its live display open: restore the
  # terminal (cursor) on the way out.
  for live in list(_LIVE):
    live.close()


class _RichProgress:
  """The rich live display; refreshed on events only (no background thread)."""

  def __init__(self, stream, *, verbose: bool = False):
    from rich.console import Console  # pylint: disable=g-import-not-at-top
    from rich.progress import BarColumn, Progress, TextColumn  # pylint: disable=g-import-not-at-top
    from rich.table import Column  # pylint: disable=g-import-not-at-top
    self.console = Console(file=stream, force_terminal=True)
    self.progress = Progress(
        TextColumn("{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=20), TextColumn("{task.fields[info]}"),
        console=self.console, auto_refresh=False, redirect_stdout=False,
        redirect_stderr=False)
    self.task = None
    self.task_group = None
    self.started = False
    self.verbose = verbose

  def handle(self, event: Mapping[str, Any], t: _Tracker) -> None:
    kind = event.get("event")
    if kind == "start":
      self.console.print(f"[bold]jaxsweep[/]: {event['variants']} variants in "
                         f"{event['groups']} compile group(s) on {event['devices']} device(s)",
                         highlight=False)
      self.progress.start()
      self.started = True
      _LIVE.append(self)
    elif kind == "compiling":
      self.task = self.progress.add_task(t.group_label(compiling=True), total=1,
                                         info="compiling...")
      self.task_group = event.get("group")
    elif kind == "group":
      self.progress.console.print(group_line(event, t.group_label(), verbose=self.verbose),
                                  highlight=False, markup=False)
      if self.verbose:
        self.progress.console.print(f"[dim]{mechanics_line(event)}[/]", highlight=False)
      if self.task is None or self.task_group != event.get("group"):
        self.task = self.progress.add_task(t.group_label(), total=max(t.total, 1),
                                           info="preparing...")
        self.task_group = event.get("group")
      else:
        self.progress.update(self.task, description=t.group_label(), total=max(t.total, 1))
    elif kind == "compiled" and self.task is not None:
      self.progress.update(self.task, info=f"compiled in {event['seconds']:.1f}s")
    elif kind == "period" and self.task is not None:
      info = (t.status_line(markup=True)
              + (f"  [dim]compile {t.group_compile:.1f}s[/]" if t.group_compile else ""))
      self.progress.update(self.task, completed=t.done, info=info)
    elif kind == "done":
      self.task = None
      self.close()
      div = t.diverged_total + t.diverged
      self.console.print(f"done: {t.done_line()}"
                         + (f"; [red]{div} of {t.variants} variants diverged[/]" if div else ""),
                         highlight=False)
      return
    if self.started:
      self.progress.refresh()

  def tick(self, elapsed: str, phase: str) -> None:
    """Shows the time spent compiling; refreshes the display."""
    if self.task is None or not self.started:
      return
    if phase == "compiling":
      self.progress.update(self.task, info=f"compiling... {elapsed}")
    self.progress.refresh()

  def close(self) -> None:
    if self.started:
      self.started = False
      self.progress.stop()
    if self in _LIVE:
      _LIVE.remove(self)


def _lanes(event: Mapping[str, Any]) -> str:
  """``, lanes 8 (measured)``: how the group's variants share a device."""
  if event.get("lanes") is None:
    return ""
  source = event.get("lanes_source")
  return f", lanes {event['lanes']}" + (f" ({source})" if source else "")
