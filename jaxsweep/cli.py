"""The ``jaxsweep`` command: a thin layer over the Python API.

  jaxsweep run CONFIG [--out DIR] [--resume | --overwrite] [key=value | key=v1,v2 ...]
  jaxsweep report DIR [--top K] [--target T] [--format F] [--out NEW]
  jaxsweep compare DIR1 DIR2 [--target METRIC]

``run`` writes only into its output directory (default: a fresh
``runs/<config name>[-k]``, :mod:`jaxsweep.report.rundir`), checked and
locked before training; ``report`` and ``compare`` only read a run, and
``report`` writes re-rendered files only into a new ``--out NEW``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence

from jaxsweep import errors
from jaxsweep import signals

# The engine, the config loader and the report are imported inside the
# commands that use them, not here: they import JAX (about 2 s), and
# `jaxsweep --help`, `jaxsweep run --help` and usage errors must answer at
# once (issue #24: under 1 s). `errors` is plain Python.

# Seconds between checkpoints (jaxsweep.api.DEFAULT_CHECKPOINT_EVERY, which
# imports the engine; tests/test_startup.py checks that they agree).
DEFAULT_CHECKPOINT_EVERY = 300.0


def _parser() -> argparse.ArgumentParser:
  # Long on purpose: one flat table of every command and flag, in the order
  # `--help` prints them (split, the help order would scatter over helpers).
  p = argparse.ArgumentParser(
      prog="jaxsweep",
      description="Train a population of hyperparameter variants in one compiled "
                  "JAX program and print the metrics table.")
  p.add_argument("--devices", type=int, default=None, metavar="N",
                 help="CPU only: number of virtual CPU devices to shard the population "
                      "over (default: one per core; env JAXSWEEP_CPU_DEVICES)")
  p.add_argument("--compile-cache", default=None, metavar="DIR",
                 help="where compiled programs are kept for later runs (default: "
                      "~/.cache/jaxsweep/xla; env JAXSWEEP_COMPILE_CACHE; 'off' disables it)")
  p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="multi-host: address of process 0 (env JAXSWEEP_COORDINATOR)")
  p.add_argument("--num-processes", type=int, default=None, metavar="N",
                 help="multi-host: number of processes (env JAXSWEEP_NUM_PROCESSES)")
  p.add_argument("--process-id", type=int, default=None, metavar="I",
                 help="multi-host: this process's id (env JAXSWEEP_PROCESS_ID)")
  sub = p.add_subparsers(dest="command", required=True)
  r = sub.add_parser("run", help="run a sweep from a config file")
  r.add_argument("config", help="YAML config file (e.g. configs/digits_lr.yaml)")
  r.add_argument("overrides", nargs="*",
                 help="dotted.key=value (fixed) or dotted.key=v1,v2 (swept)")
  r.add_argument("--out", default=None,
                 help="output directory (default: runs/<config name>, or -2, -3, ... if "
                      "that holds a run); checked and locked before training")
  again = r.add_mutually_exclusive_group()
  again.add_argument("--resume", action="store_true",
                     help="continue the same sweep's run in --out from its checkpoint "
                          "(default --out: the newest runs/<config name>[-k])")
  again.add_argument("--overwrite", action="store_true",
                     help="replace the run in --out: delete the files its run.json lists "
                          "(never files jaxsweep did not write), then run")
  r.add_argument("--checkpoint-every", type=float, default=DEFAULT_CHECKPOINT_EVERY,
                 metavar="SECONDS",
                 help="seconds between checkpoints of the population (default %(default)g; "
                      "0: at every period boundary; also at the end of each chunk and on SIGINT/SIGTERM)")
  r.add_argument("--quiet", "-q", action="store_true", help="no progress output")
  r.add_argument("--verbose", "-v", action="store_true",
                 help="progress also says how each group runs: chunk, padding, lanes, "
                      "vectorized keys")
  r.add_argument("--top", type=int, default=None,
                 help="show only the best K rows (and K learning curves)")
  r.add_argument("--chunk-size", type=int, default=None,
                 help="at most this many variants per compiled call")
  r.add_argument("--unstable-factor", type=float, default=None, metavar="X",
                 help="a variant whose training objective ends above X times its value at "
                      "step 0 is 'unstable' (default 3)")
  r.add_argument("--lanes", type=_lanes, default=None, metavar="K|auto",
                 help="variants each device computes together (vmapped); a variant's "
                      "results depend on this only. Default: a fixed rule from the "
                      "model's size and the platform (recorded in results.json and "
                      "config.yaml); 'auto': measure on this machine once and reuse the "
                      "measurement (kept in ~/.cache/jaxsweep/lanes.json, written by "
                      "`jaxsweep bench` too)")
  r.add_argument("--max-variants", type=int, default=None,
                 help="allow sweeps larger than 10,000 variants")
  r.add_argument("--memory-budget", default=None, metavar="SIZE",
                 help="memory the run may use per process, e.g. 2GiB (default: the "
                      "accelerator's memory, or 75%% of free RAM on CPU); groups that do "
                      "not fit run in chunks")
  r.add_argument("--wandb", default=None, metavar="SWEEP.yaml",
                 help="take the sweep from a W&B sweep file instead of the config's "
                      "sweep section (grid/random variants, bayes as TPE proposals, "
                      "metric as the target, hyperband early_terminate as halving)")
  _add_output_flags(r)
  b = sub.add_parser("bench", help="measure how a config's population runs fastest on "
                                   "this machine (lanes x population size, against one "
                                   "variant at a time) and remember the choice")
  b.add_argument("config", help="YAML config file (its first compile group is measured)")
  b.add_argument("overrides", nargs="*", help="as for run")
  b.add_argument("--steps", type=int, default=20,
                 help="optimisation steps per timed call (default 20)")
  b.add_argument("--sizes", default="8,32,128", metavar="N,N,...",
                 help="population sizes to measure (default 8,32,128)")
  b.add_argument("--lanes", default=None, metavar="K,K,...",
                 help="lanes to measure (default: 1 and powers of two)")
  b.add_argument("--group", type=int, default=0, help="which compile group (default 0)")
  b.add_argument("--no-cache", dest="cache", action="store_false",
                 help="do not remember the fastest lanes for later runs")
  pl = sub.add_parser("plan", help="dry run: variants, compile groups, vectorized vs "
                                   "grouped keys and memory, without training or (by "
                                   "default) compiling")
  pl.add_argument("config", help="YAML config file")
  pl.add_argument("overrides", nargs="*", help="as for run")
  pl.add_argument("--wandb", default=None, metavar="SWEEP.yaml",
                  help="take the sweep from a W&B sweep file")
  pl.add_argument("--max-variants", type=int, default=None,
                  help="allow sweeps larger than 10,000 variants")
  how = pl.add_mutually_exclusive_group()
  how.add_argument("--measure-memory", dest="memory", action="store_const", const="measure",
                   default="shapes",
                   help="measure each group's memory from its compiled step (slow: compiles "
                        "each group at two sizes) and show the chunking a run would pick; "
                        "default: an estimate from abstract shapes, nothing compiled")
  how.add_argument("--no-memory", dest="memory", action="store_const", const=None,
                   help="no memory estimate at all (does not load the data)")
  pl.add_argument("--memory-budget", default=None, metavar="SIZE",
                  help="plan the chunking for this memory budget, e.g. 2GiB")
  pl.add_argument("--chunk-size", type=int, default=None,
                  help="at most this many variants per compiled call")
  rp = sub.add_parser("report", help="re-render the tables of a finished run from its "
                                     "results.json (no training; the run is only read)")
  rp.add_argument("dir", help="the run's output directory (its --out)")
  rp.add_argument("--out", default=None, metavar="NEW",
                  help="write the re-rendered files (results, tables, plots) into this new "
                       "directory; without it nothing is written")
  rp.add_argument("--overwrite", action="store_true",
                  help="replace an earlier report in --out NEW")
  rp.add_argument("--top", type=int, default=None,
                  help="show only the best K rows (and K learning curves)")
  rp.add_argument("--target", default=None, help="rank on another metric")
  rp.add_argument("--mode", choices=("max", "min"), default=None,
                  help="whether higher or lower --target is better")
  _add_output_flags(rp)
  c = sub.add_parser("compare", help="two finished sweeps side by side")
  c.add_argument("dirs", nargs=2, metavar="DIR", help="two runs' output directories")
  c.add_argument("--target", default=None, help="the metric to compare (default: "
                                                "the first run's target)")
  c.add_argument("--format", default="auto", choices=("auto", "rich", "plain", "markdown"),
                 help="table format (auto: rich in a terminal, else plain)")
  return p


def _add_output_flags(p: argparse.ArgumentParser) -> None:
  # Shared by `run` and `report`: both render the same tables and files.
  p.add_argument("--no-aggregate", dest="aggregate", action="store_false",
                 help="show one row per variant instead of merging seeds (mean ± std)")
  p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                 help="write PNG plots into the output directory")
  p.add_argument("--tensorboard", action="store_true",
                 help="also write TensorBoard event files (needs tensorboardX)")
  p.add_argument("--format", default="auto",
                 choices=("auto", "rich", "plain", "markdown", "csv", "json"),
                 help="console table format (auto: rich in a terminal, else plain; "
                      "csv/json print only the table, for piping)")


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point; returns the process exit code."""
  # First of all: SIGINT/SIGTERM end the run the same way at any moment
  # (jaxsweep.signals); until arm() below they are only recorded.
  owner = not signals.installed()
  signals.install()
  try:
    return _main(argv)
  finally:
    if argv is None:  # The process's command: to the exit, a signal changes nothing.
      signals.disarm()
    elif owner:  # Called from Python (tests, a program): its handlers back.
      signals.uninstall()


def _main(argv: Sequence[str] | None) -> int:
  parser = _parser()
  args, extra = parser.parse_known_args(argv)
  # Overrides may come after options (`run CFG --out D lr=1e-3`): argparse
  # leaves those to us; anything else unknown is a usage error.
  unknown = [a for a in extra if "=" not in a or a.startswith("-")]
  if unknown or (extra and args.command not in ("run", "plan")):
    parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
  if extra:
    args.overrides = list(args.overrides) + extra
  # Only now that the arguments are understood (see the note at the top).
  from jaxsweep.report import rundir
  if args.command in ("run", "plan", "bench"):
    # JAX, Flax and Optax import while a signal is only recorded (an exception
    # raised inside an import can crash: signals.py; a Ctrl-C 0.3 s after the
    # start once ended in SIGSEGV under load); arm() acts on it just after.
    from jaxsweep import api  # noqa: F401  # pylint: disable=unused-import
    from jaxsweep.engine import distributed
    from jaxsweep.engine import sharding
    from jaxsweep.engine import xla_cache
  try:
    signals.arm()
    if args.command in ("run", "plan", "bench"):
      # Before anything touches JAX: one virtual device per core on CPU, and
      # joining a multi-process run when launched as one; js.run does the
      # same (jaxsweep.api.configure) and keeps the cache choice made here.
      sharding.configure_cpu_devices(args.devices)
      distributed.initialize(args.coordinator, args.num_processes, args.process_id)
      xla_cache.enable(args.compile_cache)
    if args.command == "run":
      return _run(args)
    if args.command == "plan":
      return _plan(args)
    if args.command == "bench":
      return _bench(args)
    if args.command == "report":
      return _report(args)
    if args.command == "compare":
      return _compare(args)
  except errors.ConfigError as e:
    print(f"jaxsweep: error: {e}", file=sys.stderr)
    return 2
  except rundir.INTERRUPTS as e:  # Before the run's own handler (config, planning).
    print(f"jaxsweep: interrupted ({e or type(e).__name__}).", file=sys.stderr)
    return getattr(e, "exit_code", 130)
  return 1


def _lanes(text: str) -> int | str:
  """``--lanes``: a positive integer or ``auto``."""
  if text.strip().lower() == "auto":
    return "auto"
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer or 'auto'")
  return value


def run_options(args: argparse.Namespace):
  """The :class:`~jaxsweep.options.RunOptions` of ``jaxsweep run``'s flags.

  The one mapping from the command's flags to the options :func:`jaxsweep.run`
  takes as keywords: ``--out``, ``--resume``, ``--overwrite``,
  ``--checkpoint-every``, ``--chunk-size``, ``--lanes``, ``--unstable-factor``,
  ``--memory-budget``, ``--max-variants``, ``--compile-cache``, the output
  flags (``outputs``) and ``--quiet`` (``progress``; :func:`_run` then
  passes its own progress printer). Flags left out are None: the config's
  values, else the defaults.

  Args:
    args: the parsed arguments of ``jaxsweep run``.

  Raises:
    ConfigError: naming the flag and its value, for a value out of range.
  """
  from jaxsweep import options as options_lib
  from jaxsweep import report
  given = dict(
      out=args.out, resume=args.resume, overwrite=args.overwrite,
      checkpoint_every=args.checkpoint_every, chunk_size=args.chunk_size, lanes=args.lanes,
      unstable_factor=args.unstable_factor, memory_budget=args.memory_budget,
      max_variants=args.max_variants, compile_cache=args.compile_cache,
      progress=not args.quiet,
      outputs={"aggregate": args.aggregate, "plots": args.plots,
               "tensorboard": args.tensorboard,
               "curves": report.DEFAULT_CURVES if args.top is None else args.top})
  try:
    return options_lib.RunOptions(**given)
  except errors.ConfigError as e:
    if e.key not in given:
      raise
    flag, value = "--" + e.key.replace("_", "-"), given[e.key]
    shown = format(value, "g") if isinstance(value, float) else value
    raise errors.ConfigError(f"{flag} {shown}: {e.detail}", fix=e.fix) from None


def _run(args) -> int:
  from jaxsweep import api
  from jaxsweep import config as config_lib
  from jaxsweep import report
  from jaxsweep.engine import distributed
  from jaxsweep.report import runclaim
  from jaxsweep.report import rundir
  opts = run_options(args)  # Checked before the config loads.
  cfg = config_lib.load(args.config, args.overrides, max_variants=args.max_variants,
                        wandb=args.wandb)
  if args.out is not None:
    out, chosen = args.out, False
  else:  # --resume/--overwrite act on the newest run of this config.
    latest = runclaim.latest_dir(args.config) if args.resume or args.overwrite else None
    # A fresh directory is claimed at once: simultaneous runs get distinct ones.
    out, chosen = latest or runclaim.claim_default_dir(args.config), True
  def render(res) -> None:  # The table, as soon as the results are on disk.
    report.render(res, top=args.top, aggregate=args.aggregate, fmt_name=args.format)

  watch = _Watch(None if args.quiet else report.ProgressPrinter(verbose=args.verbose),
                 announce=chosen, render=render if distributed.is_primary() else None)
  try:
    res = api.run_config(cfg, options=dataclasses.replace(opts, out=out, progress=watch))
  except rundir.INTERRUPTS as e:
    return _interrupted(e, args, watch.dir or out, watch)
  finally:
    runclaim.release_claim(out)  # Unless the run took it.
  if not distributed.is_primary():  # One coordinated table, printed by process 0.
    return 0
  if not watch.rendered:  # The results could not be written: the table from memory.
    render(res)
  if args.format not in ("csv", "json"):
    print(report.describe_outputs(out))
  return 1 if watch.error else 0


class _Watch:
  """Passes the engine's events to the progress printer; keeps what the CLI reports.

  Attributes:
    dir: the output directory once prepared.
    step: the last period boundary's step.
    error: why the outputs could not be written, or None.
    rendered: whether the table was printed (``render``, called once the
      results are on disk, before the plots are drawn).
  """

  def __init__(self, printer, *, announce: bool, render=None):
    self.printer = printer
    self.announce = announce
    self.render = render
    self.rendered = False
    self.dir: str | None = None
    self.step: int | None = None
    self.error: str | None = None

  def __call__(self, event) -> None:
    kind = event.get("event")
    if kind == "rundir":
      self.dir = event["dir"]
      if self.printer is not None and (self.announce or event["resumed"]):
        verb = "resuming the run in" if event["resumed"] else "writing to"
        print(f"jaxsweep: {verb} {self.dir}", file=sys.stderr, flush=True)
      return
    if kind == "outputs":
      self.error = event["error"]
      return
    if kind == "results":
      if self.render is not None:
        self.render(event["results"])
        self.rendered = True
      return
    if kind == "period":
      self.step = event["step"]
    if self.printer is not None:
      self.printer(event)


def _interrupted(e: BaseException, args, out: str, watch: _Watch) -> int:
  """One line for a stopped run: what was saved and how to go on."""
  from jaxsweep.report import rundir
  again = shlex.join(["jaxsweep", "run", args.config, *args.overrides,
                      *(["--wandb", args.wandb] if args.wandb else []),
                      "--out", out, "--resume"])
  ckpt = rundir.checkpoint_path(out)
  if hasattr(e, "step") and getattr(e, "saved", "") is None:
    # Not checkpointed (a proposal search's rounds): its study keeps the told trials.
    print("jaxsweep: interrupted; no checkpoint was saved.", file=sys.stderr)
    return e.exit_code
  code = getattr(e, "exit_code", 130)
  if hasattr(e, "step"):  # The engine saved the population, then stopped.
    step = e.step or watch.step
    saved = f"the population was saved{f' at step {step}' if step is not None else ''}"
  elif watch.dir is not None and os.path.isdir(ckpt) and os.listdir(ckpt):
    saved = f"the last checkpoint is in {ckpt}"
  else:
    print("jaxsweep: interrupted; nothing was saved.", file=sys.stderr)
    return code
  print(f"jaxsweep: interrupted; {saved}. Resume with: {again}", file=sys.stderr)
  return code


def _ints(text: str, flag: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    values = []
  if not values or any(v < 1 for v in values):
    raise errors.ConfigError(f"{flag} {text!r} is not a list of positive integers.", key=flag,
                             fix=f"write e.g. {flag} 8,32,128")
  return values


def _bench(args) -> int:
  """``jaxsweep bench``: lanes x sizes against one variant at a time."""
  from jaxsweep import config as config_lib
  from jaxsweep.engine import memory as memory_lib
  from jaxsweep.engine import sharding
  from jaxsweep.engine import strategy
  from jaxsweep.engine import structure
  if args.steps < 1:
    raise errors.ConfigError(f"--steps {args.steps} must be positive.", key="steps")
  cfg = config_lib.load(args.config, args.overrides)
  plan = structure.make_plan(cfg.components, cfg.base, cfg.points)
  if not 0 <= args.group < len(plan.groups):
    raise errors.ConfigError(f"there is no group {args.group} ({len(plan.groups)} groups).",
                             key="group", fix=f"use 0..{len(plan.groups) - 1}")
  group = plan.groups[args.group]
  mesh = sharding.make_mesh()
  one = sharding.make_mesh(mesh.devices.flat[:1])
  lanes = _ints(args.lanes, "--lanes") if args.lanes else None
  print(f"jaxsweep bench: group {group.index} ({group.describe()}) on {mesh.devices.size} "
        f"{mesh.devices.flat[0].platform} device(s), {args.steps} steps per call",
        flush=True)
  print("variant-steps/s: the real variants' training steps per second (fastest of 3 "
        "calls, evaluation timed apart and subtracted); slots: the variants padded to "
        "whole lanes on every device, computed but not counted", flush=True)
  # Each measurement compiles before it times: say so, or minutes pass in silence.
  print("one variant at a time: compiling and timing ...", flush=True)
  [seq] = strategy.measure(plan, group, one, lanes=[1], population=1, steps=args.steps)
  print(f"one variant at a time (the sequential path): {seq.variant_steps_per_s:,.0f} "
        f"variant-steps/s", flush=True)
  best = None
  for size in _ints(args.sizes, "--sizes"):
    print(f"population {size}: compiling and timing each lanes setting ...", flush=True)
    probes = strategy.measure(plan, group, mesh, lanes=lanes, population=size,
                              steps=args.steps)
    print(f"\npopulation {size}:")
    print("  lanes  slots  variant-steps/s  vs sequential  compile  memory/variant")
    fastest = max(probes, key=lambda p: p.variant_steps_per_s)
    for p in probes:
      mem = "-" if p.bytes_per_variant is None else memory_lib.format_bytes(p.bytes_per_variant)
      print(f"  {p.lanes:>5}  {p.population:>5}  {p.variant_steps_per_s:>15,.0f}  "
            f"{p.variant_steps_per_s / seq.variant_steps_per_s:>12.2f}x  "
            f"{p.compile_seconds:>6.1f}s  {mem:>14}" + ("  <- fastest" if p is fastest else ""),
            flush=True)
    best = fastest
  print(f"\nfastest at the largest size: {best.lanes} lane(s) "
        f"({best.variant_steps_per_s / seq.variant_steps_per_s:.2f}x one variant at a time)")
  if args.cache:
    path = strategy.store(strategy.signature(plan, group, mesh), best.lanes,
                          {best.lanes: best.variant_steps_per_s})
    print(f"remembered in {path}: runs of this program on this machine with --lanes auto "
          "use it")
  return 0


def _plan(args) -> int:
  from jaxsweep import config as config_lib
  from jaxsweep import report
  from jaxsweep.engine import structure
  cfg = config_lib.load(args.config, args.overrides, max_variants=args.max_variants,
                        wandb=args.wandb)
  try:
    plan = structure.make_plan(cfg.components, cfg.base, cfg.points)
    kwargs = {"memory_budget": (cfg.run.get("memory_budget") if args.memory_budget is None
                                else args.memory_budget),
              "chunk_size": (cfg.run.get("chunk_size") if args.chunk_size is None
                             else args.chunk_size),
              "lanes": cfg.run.get("lanes")} if args.memory else {}
    print(report.plan.describe(plan, memory=args.memory or False,
                               progress=report.plan.stderr_progress, **kwargs))
  except errors.ConfigError as e:
    raise e.with_file(args.config) from None
  return 0


def _report(args) -> int:
  from jaxsweep import report
  from jaxsweep.report import rundir
  res, config = report.load_run(args.dir)
  if args.target or args.mode:
    res = res.ranked(args.target, args.mode)
  directory = args.dir if os.path.isdir(args.dir) else (os.path.dirname(args.dir) or ".")
  error = None
  if args.out is None:
    if args.tensorboard or args.overwrite:
      raise errors.ConfigError(
          "report writes files only into a new directory, never into the run it reads.",
          key="out", fix="add --out NEW (a new directory) for the re-rendered files")
  else:
    if _inside(args.out, directory):
      raise errors.ConfigError(
          f"{args.out} is in the run directory {directory}; report never writes into a "
          "run.", key="out", fix="give --out a new directory outside the run")
    source = _sweep_id(directory)
    with rundir.prepare(args.out, sweep_id=f"report:{source}",
                        overwrite=args.overwrite) as rd:
      rd.write_outputs(res, config=config, aggregate=args.aggregate, plots=args.plots,
                       tensorboard=args.tensorboard, curves=args.top or report.DEFAULT_CURVES)
      error = rd.error
  report.render(res, top=args.top, aggregate=args.aggregate, fmt_name=args.format)
  if args.format not in ("csv", "json"):
    print(report.describe_outputs(args.out or directory))
  return 1 if error else 0


def _inside(path: str, directory: str) -> bool:
  """Whether ``path`` is ``directory`` or below it (links resolved)."""
  path, directory = os.path.realpath(path), os.path.realpath(directory)
  return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _sweep_id(directory: str) -> str:
  from jaxsweep.report import rundir
  try:
    manifest = rundir.read_manifest(directory)
  except errors.ConfigError:
    manifest = None
  return manifest["sweep_id"] if manifest else os.path.realpath(directory)


def _compare(args) -> int:
  from jaxsweep import report
  (a, _), (b, _) = report.load_run(args.dirs[0]), report.load_run(args.dirs[1])
  labels = [os.path.basename(os.path.normpath(d)) or d for d in args.dirs]
  if labels[0] == labels[1]:
    labels = list(args.dirs)
  report.render_tables(report.compare_tables(a, b, labels=labels, target=args.target),
                       fmt_name=args.format)
  return 0


if __name__ == "__main__":
  sys.exit(main())
