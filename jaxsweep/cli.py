"""The ``jaxsweep`` command: a thin layer over the Python API.

  jaxsweep run CONFIG [--out DIR] [key=value | key=v1,v2 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jaxsweep import errors


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="jaxsweep",
      description="Train a population of hyperparameter variants in one compiled "
                  "JAX program and print the metrics table.")
  sub = p.add_subparsers(dest="command", required=True)
  r = sub.add_parser("run", help="run a sweep from a config file")
  r.add_argument("config", help="YAML config file (e.g. configs/digits_lr.yaml)")
  r.add_argument("overrides", nargs="*",
                 help="dotted.key=value (fixed) or dotted.key=v1,v2 (swept)")
  r.add_argument("--out", default=None,
                 help="directory for results.csv/results.json (default: runs/<config name>)")
  r.add_argument("--quiet", "-q", action="store_true", help="no progress output")
  r.add_argument("--top", type=int, default=None, help="show only the best K rows")
  r.add_argument("--chunk-size", type=int, default=None,
                 help="at most this many variants per compiled call")
  r.add_argument("--max-variants", type=int, default=None,
                 help="allow sweeps larger than 10,000 variants")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point; returns the process exit code."""
  args = _parser().parse_args(argv)
  try:
    if args.command == "run":
      return _run(args)
  except errors.ConfigError as e:
    print(f"jaxsweep: error: {e}", file=sys.stderr)
    return 2
  return 1


def _run(args) -> int:
  from jaxsweep import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep import report  # pylint: disable=g-import-not-at-top
  cfg = config_lib.load(args.config, args.overrides, max_variants=args.max_variants)
  out = args.out or os.path.join(
      "runs", os.path.splitext(os.path.basename(args.config))[0])
  res = config_lib.run(cfg, out=out, progress=not args.quiet,
                       chunk_size=args.chunk_size)
  print(report.format_table(res, top=args.top))
  print(report.format_best(res))
  print(f"results: {os.path.join(out, 'results.csv')}, {os.path.join(out, 'results.json')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
