"""Plots of a sweep's results: PNG files rendered off-screen.

:func:`make_plots` writes into a run's directory:

- ``metric_vs_<name>.png`` for each swept hyperparameter with at least two
  values (seed excluded): the target and the other metrics against it, as
  the mean over seeds (and over the other hyperparameters) with a ±1 std
  band, one line per value of a second, categorical hyperparameter; a log
  x-axis for log-scaled sweeps; categorical hyperparameters as points with
  error bars.
- ``learning_curves.png``: train/test loss (and the target) against the step
  for the best variants.
- ``heatmap_<a>__<b>.png`` for each pair of swept hyperparameters: the mean
  target over everything else (seeds included).

Diverged variants are never plotted as values: they are red crosses at the
bottom of the axis (line plots) or in their cell (heatmaps).

matplotlib is optional (``pip install jaxsweep[plots]``) and used without
pyplot (a ``Figure`` on the Agg canvas), so a user's interactive backend is
left alone and nothing opens a window.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxsweep import format as format_lib
from jaxsweep import keys as keys_lib
from jaxsweep import results as results_lib
from jaxsweep import space

# Heatmap axes with more distinct numeric values than this are binned.
_MAX_CELLS = 12
_BINS = 8
# A second hyperparameter splits a line plot into one line per value only
# when it has at most this many values.
_MAX_SERIES = 8
_MAX_METRICS = 3
_warned_missing = False


def available() -> bool:
  """Whether matplotlib can be imported."""
  try:
    import matplotlib  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def make_plots(res: results_lib.Results, out_dir: str, *, sweep: Any = None,
               curves: int = 5) -> list[str]:
  """Writes every plot of a sweep as PNG into ``out_dir``.

  Args:
    res: the results (in memory or loaded from results.json).
    out_dir: the directory to write into.
    sweep: the sweep definition (a config's ``sweep`` section), used to ask
      :func:`jaxsweep.space.is_log_scaled` which axes are logarithmic;
      without it, an axis is logarithmic when its values are positive and
      span more than a decade.
    curves: how many of the best variants the learning curves show.

  Returns:
    The paths written (empty when matplotlib is missing: a one-time message
    on stderr says how to install it).
  """
  global _warned_missing
  if not available():
    if not _warned_missing:
      _warned_missing = True
      print("jaxsweep: plots skipped: matplotlib is not installed "
            "(pip install jaxsweep[plots])", file=sys.stderr)
    return []
  os.makedirs(out_dir, exist_ok=True)
  params = swept_params(res)
  metrics = [res.target] + [m for m in res.metrics if m != res.target]
  metrics = [m for m in metrics if any(m in r for r in res.rows)][:_MAX_METRICS]
  paths = []
  for p in params:
    others = [q for q in params if q != p and not _numeric(res, q)
              and len(_distinct(res, q)) <= _MAX_SERIES]
    fig = _figure(len(metrics) * 4.6, 3.8)
    plot_vs(fig, res, p, metrics, series=others[0] if others else None,
            log=_log_axis(res, p, sweep))
    paths.append(_save(fig, out_dir, f"metric_vs_{_slug(p)}.png"))
  if any(res.history.get(r["variant"]) for r in res.rows):
    keys = _curve_keys(res)
    fig = _figure(len(keys) * 4.6, 3.8)
    plot_curves(fig, res, keys, curves)
    paths.append(_save(fig, out_dir, "learning_curves.png"))
  for a, b in itertools.combinations(params, 2):
    fig = _figure(5.6, 4.4)
    plot_heatmap(fig, res, a, b, sweep=sweep)
    paths.append(_save(fig, out_dir, f"heatmap_{_slug(a)}__{_slug(b)}.png"))
  return paths


# --------------------------------------------------------------------------
# Values.

def _is_number(v) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _distinct(res, col) -> list:
  """Distinct values of a column: numbers ascending (NaN last), else as met."""
  seen = {}
  for r in res.rows:
    seen.setdefault(keys_lib.freeze(r.get(col)), r.get(col))
  values = list(seen.values())
  if values and all(_is_number(v) for v in values):
    values.sort(key=lambda v: (math.isnan(v), v if not math.isnan(v) else 0.0))
  return values


def _numeric(res, col) -> bool:
  values = [r.get(col) for r in res.rows]
  return bool(values) and all(_is_number(v) for v in values)


def swept_params(res: results_lib.Results) -> list[str]:
  """Swept hyperparameters worth an axis: seed excluded, at least 2 values."""
  return [c for c in res.swept if c != results_lib.SEED and len(_distinct(res, c)) >= 2]


def _log_axis(res, col, sweep) -> bool:
  values = [float(v) for v in _distinct(res, col) if _is_number(v) and math.isfinite(v)]
  if len(values) < 2 or min(values) <= 0:
    return False
  if sweep:
    try:
      if space.is_log_scaled(sweep, col):
        return True  # e.g. a log_uniform grid, even one spanning < 1 decade
    except Exception:  # pylint: disable=broad-except
      pass  # A saved sweep that no longer parses: judge by the values.
  return max(values) / min(values) > 10  # Positive and spanning > 1 decade.


def _label(col: str, columns: Sequence[str]) -> str:
  return format_lib.short_names(list(columns)).get(col, col)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample std of a point's values; a lone value has no band (0)."""
  mean, std = results_lib.mean_std(values)
  return mean, 0.0 if std is None else std


# --------------------------------------------------------------------------
# Figures.

def _figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(max(width, 4.6), height), layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _save(fig, out_dir: str, name: str) -> str:
  path = os.path.join(out_dir, name)
  tmp = os.path.join(out_dir, f".tmp-{name}")
  fig.savefig(tmp, dpi=100, format="png")
  os.replace(tmp, path)  # Atomic: a viewer never sees half a PNG.
  return path


def _slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _mark_diverged(ax, xs: Sequence[float], count_hidden: int = 0) -> None:
  """Red crosses at the bottom of the axis (x in data, y in axes units)."""
  if xs:
    ax.plot(xs, [0.0] * len(xs), "x", color="red", markersize=8, mew=2, clip_on=False,
            transform=ax.get_xaxis_transform(), label=f"diverged ({len(xs) + count_hidden})",
            zorder=5)
  elif count_hidden:
    # NaN/inf hyperparameter values have no place on the axis: counted only.
    ax.plot([], [], "x", color="red", label=f"diverged ({count_hidden}, not on axis)")


def plot_vs(fig, res: results_lib.Results, param: str, metrics: Sequence[str], *,
            series: str | None = None, log: bool = False) -> None:
  """Metrics against one hyperparameter; one line per value of ``series``."""
  axes = fig.subplots(1, len(metrics), squeeze=False)[0]
  numeric = _numeric(res, param)
  categories = _distinct(res, param)
  index = {keys_lib.freeze(v): i for i, v in enumerate(categories)}
  series_values = _distinct(res, series) if series else [None]
  width = 0.6 / max(len(series_values), 1)

  def position(v, s):
    if numeric:
      return float(v)
    return index[keys_lib.freeze(v)] + (s - (len(series_values) - 1) / 2) * width

  for ax, metric in zip(axes, metrics):
    for s, sv in enumerate(series_values):
      rows = [r for r in res.rows if series is None
              or keys_lib.freeze(r.get(series)) == keys_lib.freeze(sv)]
      by_x: dict[Any, list[float]] = {}
      xs_of: dict[Any, float] = {}
      for r in rows:
        x = r.get(param)
        if not results_lib.is_healthy(r, metric) or (numeric and not math.isfinite(x)):
          continue
        if log and numeric and x <= 0:
          continue
        k = keys_lib.freeze(x)
        by_x.setdefault(k, []).append(float(r[metric]))
        xs_of[k] = position(x, s)
      if not by_x:
        continue
      keys = sorted(by_x, key=lambda k: xs_of[k])
      xs = np.asarray([xs_of[k] for k in keys])
      stats = np.asarray([_mean_std(by_x[k]) for k in keys])
      color = f"C{s % 10}"
      label = (f"{_label(series, res.swept)}={format_lib.fmt(sv)}" if series else "mean ± std")
      if numeric:
        ax.plot(xs, stats[:, 0], "-o", color=color, markersize=4, label=label)
        ax.fill_between(xs, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1],
                        color=color, alpha=0.2, linewidth=0)
        pts = [(xs_of[k], v) for k in keys for v in by_x[k]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=9, color=color, alpha=0.4,
                   linewidths=0)
      else:
        ax.errorbar(xs, stats[:, 0], yerr=stats[:, 1], fmt="o", color=color, capsize=3,
                    label=label)
    bad = [r for r in res.rows if not results_lib.is_healthy(r, metric)]
    shown, hidden = [], 0
    for r in bad:
      x = r.get(param)
      if numeric and (not math.isfinite(x) or (log and x <= 0)):
        hidden += 1
        continue
      shown.append(position(x, 0) if numeric else float(index[keys_lib.freeze(x)]))
    _mark_diverged(ax, shown, hidden)
    if log and numeric:
      ax.set_xscale("log")
    if not numeric:
      ax.set_xticks(range(len(categories)), [format_lib.fmt(v) for v in categories])
      ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_xlabel(_label(param, res.swept))
    arrow = " (higher is better)" if metric == res.target and res.mode == "max" else (
        " (lower is better)" if metric == res.target else "")
    ax.set_ylabel(metric + arrow)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize="small")
  fig.suptitle(f"metrics vs {_label(param, res.swept)}: mean ± std over seeds"
               + (" and other hyperparameters" if len(swept_params(res)) > 1 else "")
               + ", diverged excluded", fontsize="medium")


def _curve_keys(res) -> list[str]:
  present = {k for entries in res.history.values() for e in entries for k in e}
  keys = [k for k in ("train_loss", "test_loss") if k in present]
  if res.target in present and res.target not in keys:
    keys.append(res.target)
  return keys or sorted(present - {"step"})[:1]


def plot_curves(fig, res: results_lib.Results, keys: Sequence[str], curves: int) -> None:
  """Learning curves of the best ``curves`` healthy variants."""
  from matplotlib.ticker import MaxNLocator  # pylint: disable=g-import-not-at-top
  axes = fig.subplots(1, max(len(keys), 1), squeeze=False)[0]
  top = [r for r in res.table if results_lib.is_healthy(r)][:curves]
  for ax, key in zip(axes, keys):
    for i, r in enumerate(top):
      entries = [e for e in res.history.get(r["variant"], []) if key in e]
      steps = [e["step"] for e in entries]
      values = [np.nan if e[key] is None else e[key] for e in entries]
      ax.plot(steps, values, "-o" if len(steps) <= 20 else "-", markersize=3,
              color=f"C{i % 10}",
              label=f"#{r['variant']} " + format_lib.describe_settings(r, res.swept))
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(key)
    ax.grid(True, alpha=0.3)
    if not top:
      ax.text(0.5, 0.5, "every variant diverged", ha="center", va="center",
              transform=ax.transAxes, color="red")
  if top:
    axes[0].legend(fontsize="small")
  fig.suptitle(f"learning curves of the best {len(top)} variant(s) by {res.target}",
               fontsize="medium")


def _axis_cells(res, col, sweep) -> tuple[list[str], Any]:
  """Tick labels and row -> cell index for one heatmap axis (binned if many)."""
  values = _distinct(res, col)
  finite = [float(v) for v in values if _is_number(v) and math.isfinite(v)]
  if not (_numeric(res, col) and len(finite) > _MAX_CELLS):
    index = {keys_lib.freeze(v): i for i, v in enumerate(values)}
    return [format_lib.fmt(v) for v in values], lambda v: index[keys_lib.freeze(v)]
  log = _log_axis(res, col, sweep)
  lo, hi = min(finite), max(finite)
  edges = (np.geomspace(lo, hi, _BINS + 1) if log else np.linspace(lo, hi, _BINS + 1))
  centers = np.sqrt(edges[:-1] * edges[1:]) if log else (edges[:-1] + edges[1:]) / 2
  labels = [f"~{format_lib.fmt(float(c))}" for c in centers]
  has_bad = len(finite) < len(values)
  if has_bad:
    labels.append("nan/inf")

  def cell(v):
    if not math.isfinite(v):
      return _BINS
    return int(np.clip(np.searchsorted(edges, v, side="right") - 1, 0, _BINS - 1))

  return labels, cell


def plot_heatmap(fig, res: results_lib.Results, a: str, b: str, *, sweep: Any = None) -> None:
  """Mean target over the rest for each (a, b) cell; diverged cells crossed."""
  ax = fig.subplots()
  xl, xcell = _axis_cells(res, a, sweep)
  yl, ycell = _axis_cells(res, b, sweep)
  total = np.zeros((len(yl), len(xl)))
  count = np.zeros((len(yl), len(xl)), dtype=int)
  diverged = np.zeros((len(yl), len(xl)), dtype=int)
  for r in res.rows:
    i, j = ycell(r.get(b)), xcell(r.get(a))
    if results_lib.is_healthy(r, res.target):
      total[i, j] += r[res.target]
      count[i, j] += 1
    elif r.get("status") != results_lib.STATUS_OK:
      diverged[i, j] += 1
  mean = np.full(total.shape, np.nan)
  np.divide(total, count, out=mean, where=count > 0)
  masked = np.ma.masked_invalid(mean)
  if count.any():
    image = ax.imshow(masked, origin="lower", aspect="auto", cmap="viridis",
                      interpolation="nearest")
    arrow = "higher" if res.mode == "max" else "lower"
    fig.colorbar(image, ax=ax, label=f"mean {res.target} ({arrow} is better)")
    if mean.size <= 144:
      lo, hi = np.nanmin(mean), np.nanmax(mean)
      for (i, j), v in np.ndenumerate(mean):
        if count[i, j]:
          light = hi > lo and (v - lo) / (hi - lo) > 0.6
          ax.text(j, i, format_lib.fmt(float(v)), ha="center", va="center", fontsize="x-small",
                  color="black" if light else "white")
  bad = np.argwhere((count == 0) & (diverged > 0))
  if len(bad):  # Explained in the title: a legend box would hide cells.
    ax.plot(bad[:, 1], bad[:, 0], "x", color="red", markersize=12, mew=2)
  ax.set_xticks(range(len(xl)), xl, rotation=45 if len(xl) > 6 else 0)
  ax.set_yticks(range(len(yl)), yl)
  ax.set_xlim(-0.5, len(xl) - 0.5)
  ax.set_ylim(-0.5, len(yl) - 0.5)
  ax.set_xlabel(_label(a, res.swept))
  ax.set_ylabel(_label(b, res.swept))
  ax.set_title(f"mean {res.target} over seeds and other hyperparameters\n"
               "(diverged excluded; red x: every variant in the cell diverged)",
               fontsize="small")
