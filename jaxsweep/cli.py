"""The ``jaxsweep`` command: a thin layer over the Python API.

  jaxsweep run CONFIG [--out DIR] [key=value | key=v1,v2 ...]
  jaxsweep report DIR [--top K] [--no-aggregate] [--format F] [--no-plots]
  jaxsweep compare DIR1 DIR2 [--target METRIC]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jaxsweep import api
from jaxsweep import config as config_lib
from jaxsweep import errors
from jaxsweep import report
from jaxsweep.engine import distributed
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import sharding


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="jaxsweep",
      description="Train a population of hyperparameter variants in one compiled "
                  "JAX program and print the metrics table.")
  p.add_argument("--devices", type=int, default=None, metavar="N",
                 help="CPU only: number of virtual CPU devices to shard the population "
                      "over (default: one per core; env JAXSWEEP_CPU_DEVICES)")
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
                 help="directory for results.csv/results.json (default: runs/<config name>)")
  r.add_argument("--quiet", "-q", action="store_true", help="no progress output")
  r.add_argument("--top", type=int, default=None,
                 help="show only the best K rows (and K learning curves)")
  r.add_argument("--chunk-size", type=int, default=None,
                 help="at most this many variants per compiled call")
  r.add_argument("--max-variants", type=int, default=None,
                 help="allow sweeps larger than 10,000 variants")
  r.add_argument("--memory-budget", default=None, metavar="SIZE",
                 help="memory the run may use per process, e.g. 2GiB (default: the "
                      "accelerator's memory, or 75%% of free RAM on CPU); groups that do "
                      "not fit run in chunks")
  r.add_argument("--wandb", default=None, metavar="SWEEP.yaml",
                 help="take the sweep from a W&B sweep file (method grid/random) "
                      "instead of the config's sweep section")
  _add_output_flags(r)
  pl = sub.add_parser("plan", help="dry run: variants, compile groups, vectorized vs "
                                   "grouped keys and memory, without training")
  pl.add_argument("config", help="YAML config file")
  pl.add_argument("overrides", nargs="*", help="as for run")
  pl.add_argument("--wandb", default=None, metavar="SWEEP.yaml",
                  help="take the sweep from a W&B sweep file")
  pl.add_argument("--max-variants", type=int, default=None,
                  help="allow sweeps larger than 10,000 variants")
  pl.add_argument("--no-memory", dest="memory", action="store_false",
                  help="skip the memory estimate (it compiles each group's step)")
  pl.add_argument("--memory-budget", default=None, metavar="SIZE",
                  help="plan the chunking for this memory budget, e.g. 2GiB")
  pl.add_argument("--chunk-size", type=int, default=None,
                  help="at most this many variants per compiled call")
  rp = sub.add_parser("report", help="re-render tables and plots of a finished run "
                                     "from its results.json (no training)")
  rp.add_argument("dir", help="the run's output directory (its --out)")
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
                 help="write PNG plots into the output directory (needs matplotlib)")
  p.add_argument("--tensorboard", action="store_true",
                 help="also write TensorBoard event files (needs tensorboardX)")
  p.add_argument("--format", default="auto",
                 choices=("auto", "rich", "plain", "markdown", "csv", "json"),
                 help="console table format (auto: rich in a terminal, else plain; "
                      "csv/json print only the table, for piping)")


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point; returns the process exit code."""
  parser = _parser()
  args, extra = parser.parse_known_args(argv)
  # Overrides may come after options (`run CFG --out D lr=1e-3`): argparse
  # leaves those to us; anything else unknown is a usage error.
  unknown = [a for a in extra if "=" not in a or a.startswith("-")]
  if unknown or (extra and args.command not in ("run", "plan")):
    parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
  if extra:
    args.overrides = list(args.overrides) + extra
  try:
    if args.command in ("run", "plan"):
      # Before anything touches JAX: one virtual device per core on CPU, and
      # joining a multi-process run when launched as one.
      sharding.configure_cpu_devices(args.devices)
      distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    if args.command == "run":
      return _run(args)
    if args.command == "plan":
      return _plan(args)
    if args.command == "report":
      return _report(args)
    if args.command == "compare":
      return _compare(args)
  except errors.ConfigError as e:
    print(f"jaxsweep: error: {e}", file=sys.stderr)
    return 2
  return 1


def _run(args) -> int:
  cfg = config_lib.load(args.config, args.overrides, max_variants=args.max_variants,
                        wandb=args.wandb)
  out = args.out or os.path.join(
      "runs", os.path.splitext(os.path.basename(args.config))[0])
  res = api.run_config(cfg, progress=not args.quiet, chunk_size=args.chunk_size,
                       memory_budget=args.memory_budget)
  if not distributed.is_primary():  # One coordinated table, printed by process 0.
    return 0
  report.write_outputs(res, out, config=cfg.raw, aggregate=args.aggregate,
                       plots=args.plots, tensorboard=args.tensorboard,
                       curves=args.top or report.DEFAULT_CURVES)
  report.render(res, top=args.top, aggregate=args.aggregate, fmt_name=args.format)
  if args.format not in ("csv", "json"):
    print(report.describe_outputs(out))
  return 0


def _plan(args) -> int:
  cfg = config_lib.load(args.config, args.overrides, max_variants=args.max_variants,
                        wandb=args.wandb)
  try:
    plan = plan_lib.make_plan(cfg.components, cfg.base, cfg.points)
    kwargs = {"memory_budget": args.memory_budget or cfg.run.get("memory_budget"),
              "chunk_size": args.chunk_size or cfg.run.get("chunk_size")} if args.memory else {}
    print(report.plan.describe(plan, memory=args.memory, **kwargs))
  except errors.ConfigError as e:
    raise e.with_file(args.config) from None
  return 0


def _report(args) -> int:
  res, config = report.load_run(args.dir)
  if args.target or args.mode:
    res = res.ranked(args.target, args.mode)
  directory = args.dir if os.path.isdir(args.dir) else (os.path.dirname(args.dir) or ".")
  try:
    report.write_derived(res, directory, config=config, aggregate=args.aggregate,
                         plots=args.plots, tensorboard=args.tensorboard,
                         curves=args.top or report.DEFAULT_CURVES)
  except OSError as e:  # A read-only run directory still gets its tables shown.
    print(f"jaxsweep: files not rewritten in {directory}: {e}", file=sys.stderr)
  report.render(res, top=args.top, aggregate=args.aggregate, fmt_name=args.format)
  if args.format not in ("csv", "json"):
    print(report.describe_outputs(directory))
  return 0


def _compare(args) -> int:
  (a, _), (b, _) = report.load_run(args.dirs[0]), report.load_run(args.dirs[1])
  labels = [os.path.basename(os.path.normpath(d)) or d for d in args.dirs]
  if labels[0] == labels[1]:
    labels = list(args.dirs)
  report.render_tables(report.compare_tables(a, b, labels=labels, target=args.target),
                       fmt_name=args.format)
  return 0


if __name__ == "__main__":
  sys.exit(main())
