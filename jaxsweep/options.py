"""How a sweep runs, apart from what it trains: :class:`RunOptions`.

:func:`jaxsweep.run` and :func:`jaxsweep.run_config` take these options as
keywords or as one ``options=RunOptions(...)``; the ``jaxsweep run`` command
builds the same object from its flags (:func:`jaxsweep.cli.run_options`).
Each field is checked when the object is made, so a bad option is refused
before anything loads, plans or trains.

Examples:
  >>> import jaxsweep as js
  >>> opts = js.RunOptions(mode="min", chunk_size=64, checkpoint_every=0)
  >>> opts.lanes is None, opts.resume
  (True, False)
  >>> try:
  ...   js.RunOptions(chunk_size=0)
  ... except js.ConfigError as e:
  ...   print(e.key)
  chunk_size
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from jaxsweep import errors
from jaxsweep import selection
from jaxsweep.engine import execute
from jaxsweep.engine import memory as memory_lib
from jaxsweep.engine import record as record_lib
from jaxsweep.engine import strategy


class _Unset:
  """The default of :func:`jaxsweep.run`'s option keywords: not given."""

  def __repr__(self) -> str:
    return "UNSET"


# A keyword left out (its value comes from ``options=`` or the field's default).
UNSET: Any = _Unset()


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """The options of a run: ranking, search method, layout, memory, files, display.

  Not the components (model, optimizer, loss, data, sweep, metrics, fixed)
  nor the training settings (steps, batch size, evaluation, seed), which say
  *what* trains: these say *how* the population runs and what is written.
  For :func:`jaxsweep.run_config`, a field left at None takes the config's
  value (``target``, ``mode``, ``sweep.method``, ``early_stopping``, the
  ``run:`` section).

  Attributes:
    target: the metric to rank on (default: the validation accuracy, nll or
      mse, by task; ``test_*`` only for data without a validation split). An
      ``*_objective`` is refused when the sweep varies the loss (each
      variant's objective is its own loss).
    mode: ``"max"`` or ``"min"``: whether a higher or lower ``target`` is
      better (default: by the target's name).
    method: how the population is searched: ``None``/``"grid"`` (every
      variant trains to the end), ``"halving"``, ``"hyperband"``, ``"pbt"``,
      ``"replay"``, a mapping with options (``{"name": "halving", "eta": 3,
      "min_steps": 100}``) or a scheduler (:mod:`jaxsweep.engine.schedulers`);
      or Bayesian proposals through Optuna, ``{"name": "tpe" | "gp" | "qmc",
      "samples": 64, "batch": 16, "seed": 0, "storage": URL, "study": NAME,
      "pruner": "median" | "none"}`` (:mod:`jaxsweep.engine.proposals`): the
      sweep's distributions are then sampled, ``batch`` trials a round
      trained as one population; with ``out``, ``resume`` goes on from the
      round a crash interrupted (with ``storage``, run again without
      ``resume``: the study knows its trials).
    early_stopping: ``{"patience": 3, "min_delta": 0.0}``: a variant whose
      validation target has not improved for ``patience`` evaluations stops.
    chunk_size: at most this many variants per compiled call (a positive
      integer; default: the whole group, or what fits in memory).
    lanes: variants each device computes together (vmapped): a positive
      integer, or ``"auto"`` (measured on this machine once and remembered).
      A variant's results depend on this and on nothing else of the layout
      (chunk size, devices, neighbours). Default: a fixed rule from the
      model's size and the platform (1 on CPU for most models, 128 on
      GPU/TPU).
    unstable_factor: a variant whose training objective ends above this
      multiple of its value at step 0 is ``unstable`` (a number above 1;
      default 3; one whose validation metric ends at chance without learning
      is too).
    memory_budget: memory the run may use (``"2GiB"``, bytes); groups that
      would not fit are split into chunks that do (default: the device's
      memory, or 75 % of free RAM on CPU).
    mesh: a ``jax.sharding.Mesh`` with axis ``"sweep"`` (default: all devices).
    out: a directory to write the results files into (nothing is written
      without it). It is checked and locked before training
      (:func:`jaxsweep.report.rundir.prepare`): a file, a path that cannot be
      created or written, a directory in use by another run, or one holding
      another sweep's results or files jaxsweep did not write is refused
      (``ConfigError``, ``key="out"``) before anything trains. The engine's
      checkpoint goes to ``out/checkpoint/``. If writing the files fails
      (disk full, permission), the error is printed and the results are
      still returned.
    resume: continue the run of the same sweep in ``out`` (from its
      checkpoint); a new or empty ``out`` starts from the beginning. Needs
      ``out``.
    overwrite: replace the run in ``out`` (only the files its ``run.json``
      lists are deleted: never files jaxsweep did not write). Needs ``out``.
    checkpoint_every: seconds between checkpoints with ``out`` (a number
      >= 0; 0: at every period boundary; default 300); one is also written
      when a chunk finishes and on SIGINT/SIGTERM.
    outputs: options of :func:`jaxsweep.report.write_outputs` for ``out``
      (``aggregate``, ``plots``, ``tensorboard``, ``curves``).
    progress: ``True`` (the default) shows progress on stderr as the
      command does: a live display in a terminal (with rich), plain lines
      elsewhere (a notebook, a log); ``False`` is silent; a callable
      receives events instead (the engine's, plus ``{"event": "rundir",
      "dir", "resumed"}`` once ``out`` is ready, ``{"event": "results",
      "dir", "results"}`` once the results files are whole (before the
      plots; the command prints its table then) and ``{"event": "outputs",
      "dir", "paths", "error"}`` after its files are written).
    compile_cache: where compiled programs are kept for later runs (a
      directory), or ``"off"``/``False``; ``None``: this process's earlier
      choice, else ``JAXSWEEP_COMPILE_CACHE``, else a directory configured in
      JAX, else ``~/.cache/jaxsweep/xla`` (the command's ``--compile-cache``).
    max_variants: refuse sweeps of more variants than this (a positive
      integer; None: 10,000, or a config's ``run.max_variants``).
    allow_zero_learning_rate: accept a learning rate of 0 (an untrained
      baseline on purpose), refused otherwise; a config says it in its
      ``run:`` section.

  Raises:
    ConfigError: naming the field (``key``) whose value is out of its range.
  """

  target: str | None = None
  mode: str | None = None
  method: Any = None
  early_stopping: Mapping[str, Any] | None = None
  chunk_size: int | None = None
  lanes: int | str | None = None
  unstable_factor: float | None = None
  memory_budget: int | str | None = None
  mesh: Any = None
  out: str | None = None
  resume: bool = False
  overwrite: bool = False
  checkpoint_every: float = execute.CHECKPOINT_EVERY
  outputs: Mapping[str, Any] | None = None
  progress: bool | Callable[[dict], None] = True
  compile_cache: str | bool | None = None
  max_variants: int | None = None
  allow_zero_learning_rate: bool = False

  def __post_init__(self):
    # Each field alone: that resume and overwrite need out is checked when the
    # run starts (the command chooses its default directory after its flags).
    if self.target is not None and not isinstance(self.target, str):
      raise errors.ConfigError(f"target must be a metric's name, got {self.target!r}.",
                               key="target", fix="give e.g. target='val_accuracy'")
    selection.check_mode(self.mode)
    for name in ("chunk_size", "max_variants"):
      _check_positive_int(name, getattr(self, name))
    if self.lanes is not None:
      strategy.check_lanes(self.lanes)
    if self.unstable_factor is not None:
      record_lib.unstable_factor(self.unstable_factor)
    if self.memory_budget is not None:
      memory_lib.parse_bytes(self.memory_budget, key="memory_budget")
    for name in ("resume", "overwrite", "allow_zero_learning_rate"):
      if not isinstance(getattr(self, name), bool):
        raise errors.ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}.",
                                 key=name, fix=f"give {name}=True (or False)")
    every = self.checkpoint_every
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0:
      raise errors.ConfigError(f"checkpoint_every must be a number of seconds >= 0, not "
                               f"{every!r}.", key="checkpoint_every",
                               fix="give e.g. 300, or 0 to save at every period boundary")
    if not (isinstance(self.progress, bool) or callable(self.progress)):
      raise errors.ConfigError(f"progress must be True, False or a callable, got "
                               f"{self.progress!r}.", key="progress",
                               fix="give progress=False for silence, or a function of an "
                                   "event dict")
    if self.outputs is not None and not isinstance(self.outputs, Mapping):
      raise errors.ConfigError(f"outputs must be a mapping, got {self.outputs!r}.",
                               key="outputs", fix="give e.g. outputs={'plots': False}")

  def check_out(self) -> None:
    """Refuses ``resume`` or ``overwrite`` without ``out``.

    Raises:
      ConfigError: with ``key="out"``.
    """
    if self.out is None and (self.resume or self.overwrite):
      raise errors.ConfigError(f"{'resume' if self.resume else 'overwrite'}=True needs out=.",
                               key="out", fix="give out=DIR: the run directory to act on")


FIELDS = tuple(f.name for f in dataclasses.fields(RunOptions))


def _check_positive_int(name: str, value: Any) -> None:
  if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
    raise errors.ConfigError(f"{name} must be a positive integer, got {value!r}.", key=name,
                             fix=f"give e.g. {name}={64 if name == 'chunk_size' else 20_000}")


def _is_default(value: Any, default: Any) -> bool:
  if value is default:
    return True
  try:
    return isinstance(value, bool) == isinstance(default, bool) and bool(value == default)
  except Exception:  # pylint: disable=broad-except  # An object without a plain ==.
    return False


def merge(options: RunOptions | None, given: Mapping[str, Any]) -> RunOptions:
  """``options`` (default: ``RunOptions()``) with the keywords ``given`` filled in.

  A keyword whose value is :data:`UNSET` was not given and is ignored. A
  given keyword fills a field that ``options`` leaves at its default; one
  that ``options`` sets as well is refused, whatever the two values: the
  run would otherwise silently take one of them.

  Args:
    options: the options passed as ``options=``, or None.
    given: field name -> value, as keywords of :func:`jaxsweep.run`.

  Returns:
    The options to run with (checked).

  Raises:
    ConfigError: for a name that is not a field, a value out of its range,
      or a field given both ways (``key``: the field).

  Examples:
    >>> merge(RunOptions(mode="min"), {"chunk_size": 8, "lanes": UNSET}).chunk_size
    8
  """
  if options is not None and not isinstance(options, RunOptions):
    raise errors.ConfigError(f"options must be a js.RunOptions, got {type(options).__name__}.",
                             key="options", fix="give options=js.RunOptions(...)")
  given = {k: v for k, v in given.items() if v is not UNSET}
  for name in given:
    if name not in FIELDS:
      raise errors.unknown_key(name, FIELDS, what="run option")
  if options is None:
    return RunOptions(**given)
  defaults = RunOptions()
  for name in given:
    if not _is_default(getattr(options, name), getattr(defaults, name)):
      raise errors.ConfigError(
          f"{name} is given both as a keyword ({given[name]!r}) and in options= "
          f"({getattr(options, name)!r}).", key=name,
          fix=f"give {name} once: as the keyword, or in js.RunOptions({name}=...)")
  return dataclasses.replace(options, **given) if given else options

