"""Turning results into things people read: tables, files, plots, progress.

The report only reads :class:`jaxsweep.results.Results`; every option is an
explicit argument. Side effects (printing, files) live here and in the CLI
only; everything below the engine is pure.

==================================  ==========================================
:mod:`jaxsweep.report.console`      terminal, rich or not, console formats
:mod:`jaxsweep.report.tables`       per-variant and seed-aggregated tables,
                                    plain/markdown/rich rendering
:mod:`jaxsweep.report.compare`      two sweeps side by side
:mod:`jaxsweep.report.outputs`      a run's files (results, best.yaml,
                                    results.md) and reading them back
:mod:`jaxsweep.report.rundir`       a run's directory: chosen, checked,
                                    owned (its manifest, run.json)
:mod:`jaxsweep.report.runlock`      one writer per run directory
:mod:`jaxsweep.report.plots`        PNG plots (matplotlib)
:mod:`jaxsweep.report.tensorboard`  TensorBoard event files (optional)
:mod:`jaxsweep.report.progress`     progress while a sweep trains
:mod:`jaxsweep.report.plan`         ``jaxsweep plan``: a sweep described
                                    without training it
==================================  ==========================================

Cells are formatted by :mod:`jaxsweep.format` (shared with ``repr`` of
results). matplotlib, pandas, pyarrow, rich and tensorboardX are imported
only by the functions that use them. Reading and rendering a finished run
imports no JAX (issue #24): :mod:`~jaxsweep.report.plan`, the one module here
that needs the engine, is loaded on first use of ``report.plan`` (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxsweep import lazy
from jaxsweep.format import describe_settings, fmt, fmt_mean_std, short_names
from jaxsweep.report import compare
from jaxsweep.report import console
from jaxsweep.report import outputs
from jaxsweep.report import plots
from jaxsweep.report import progress
from jaxsweep.report import rundir
from jaxsweep.report import runlock
from jaxsweep.report import tables
from jaxsweep.report import tensorboard
from jaxsweep.report.compare import compare_tables
from jaxsweep.report.console import FORMATS
from jaxsweep.report.outputs import (
    DEFAULT_CURVES,
    best_config,
    describe_outputs,
    format_markdown_report,
    load_run,
    write_best_config,
    write_derived,
    write_outputs,
)
from jaxsweep.report.plots import make_plots
from jaxsweep.report.progress import ProgressPrinter
from jaxsweep.report.tables import (
    Table,
    aggregated_columns,
    aggregated_table,
    format_aggregated,
    format_best,
    format_best_aggregated,
    format_table,
    per_variant_table,
    render,
    render_tables,
    seed_status,
    selection_lines,
    to_markdown,
    to_plain,
    to_rich,
    use_aggregated,
)
from jaxsweep.report.tensorboard import write_tensorboard

__all__ = [
    "DEFAULT_CURVES",
    "FORMATS",
    "ProgressPrinter",
    "Table",
    "aggregated_columns",
    "aggregated_table",
    "best_config",
    "compare",
    "compare_tables",
    "console",
    "describe_outputs",
    "describe_settings",
    "fmt",
    "fmt_mean_std",
    "format_aggregated",
    "format_best",
    "format_best_aggregated",
    "format_markdown_report",
    "format_table",
    "load_run",
    "make_plots",
    "outputs",
    "plan",
    "per_variant_table",
    "plots",
    "progress",
    "render",
    "render_tables",
    "rundir",
    "runlock",
    "seed_status",
    "selection_lines",
    "short_names",
    "tables",
    "tensorboard",
    "to_markdown",
    "to_plain",
    "to_rich",
    "use_aggregated",
    "write_best_config",
    "write_derived",
    "write_outputs",
    "write_tensorboard",
]

if TYPE_CHECKING:  # What type checkers and IDEs see: the eager import.
  from jaxsweep.report import plan


__getattr__, __dir__ = lazy.attach(__name__, {"plan": ("jaxsweep.report.plan", None)}, __all__)
