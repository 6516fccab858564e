"""Plots of a sweep's results that do not mislead: PNG files rendered off-screen.

:func:`make_plots` writes into a run's directory:

- ``metric_vs_<name>.png`` for each swept hyperparameter with at least two
  values (seed excluded), on the target (validation) metric and the other
  metrics of its split. A grid: the mean over seeds (and the other
  hyperparameters) with a band, one line per value of a second, categorical
  hyperparameter; categorical values as points with error bars. The band is
  the min–max over the runs at a point when there are 2-4 of them, and the
  95 % confidence interval of the mean (t distribution) for 5 or more; the
  legend says which, and it never leaves the metric's range ([0, 1] for
  accuracies, >= 0 for losses). A random or quasi-random search: every run
  as a point, with a trend (the median per bin), never a line through
  scattered values.
- ``learning_curves.png``: validation (solid) and training (dashed, eval
  mode) metrics against the step, from step 0, for the best variants.
- ``heatmap_<a>__<b>.png`` for each pair of swept hyperparameters: the mean
  target over everything else, cells labelled with the swept values, or with
  the ranges of the swept values they hold when there are many.

Unstable runs are values (their metrics are real outcomes, and count in the
means as in the aggregated table) drawn as orange triangles; diverged runs
are never values: red crosses at the bottom of the axis (line plots) or in
their cell (heatmaps).

matplotlib is used without pyplot (a ``Figure`` on the Agg canvas), so a
user's interactive backend is left alone and nothing opens a window.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxsweep import format as format_lib
from jaxsweep import keys as keys_lib
from jaxsweep import results as results_lib
from jaxsweep import space

# Axes with more distinct numeric values than this are binned (heatmaps)
# and, without a sweep definition, may be taken for random draws.
_MAX_CELLS = 12
_BINS = 8
# A second hyperparameter splits a line plot into one line per value only
# when it has at most this many values.
_MAX_SERIES = 8
_MAX_METRICS = 3
# Bands: min–max over 2-4 runs at a point, a confidence interval from 5 on.
MIN_RUNS_FOR_CI = 5
CONFIDENCE = 0.95
UNSTABLE_STYLE = {"marker": "^", "color": "orange", "markersize": 7}
DIVERGED_STYLE = {"marker": "x", "color": "red", "markersize": 8, "mew": 2}
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
    sweep: the sweep definition (a config's ``sweep`` section): which axes
      are logarithmic (:func:`jaxsweep.space.is_log_scaled`) and which are
      random draws (:func:`jaxsweep.space.is_sampled`). Without it an axis is
      logarithmic when its values are positive and span more than a decade,
      and random when its many values are unevenly spaced and never repeat
      between configurations.
    curves: how many of the best variants the learning curves show.

  Returns:
    The paths written (empty when matplotlib is missing: a one-time message
    on stderr says how to install it).
  """
  global _warned_missing
  if not available():
    if not _warned_missing:
      _warned_missing = True
      print("jaxsweep: plots skipped: matplotlib is not installed (pip install matplotlib)",
            file=sys.stderr)
    return []
  for thread in _preloading:  # matplotlib is not thread-safe: one figure at a time.
    thread.join()
  os.makedirs(out_dir, exist_ok=True)
  params = swept_params(res)
  metrics = plot_metrics(res)
  paths = []
  for p in params:
    log = _log_axis(res, p, sweep)
    fig = _figure(len(metrics) * 4.6, 3.9)
    if is_sampled(res, p, sweep):
      plot_scatter(fig, res, p, metrics, log=log)
    else:
      others = [q for q in params if q != p and not _numeric(res, q)
                and len(_distinct(res, q)) <= _MAX_SERIES]
      plot_vs(fig, res, p, metrics, series=others[0] if others else None, log=log)
    paths.append(_save(fig, out_dir, f"metric_vs_{_slug(p)}.png"))
  if any(res.history.get(r["variant"]) for r in res.rows):
    bases = _curve_bases(res)
    fig = _figure(max(len(bases), 1) * 4.6, 3.9)
    plot_curves(fig, res, bases, curves)
    paths.append(_save(fig, out_dir, "learning_curves.png"))
  for a, b in itertools.combinations(params, 2):
    fig = _figure(5.8, 4.6)
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


def plot_metrics(res: results_lib.Results) -> list[str]:
  """The target, then the other metrics of its split (at most 3)."""
  first = res.metric_sets()[0]
  return [m for m in first if any(m in r for r in res.rows)][:_MAX_METRICS] or [res.target]


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


def is_sampled(res: results_lib.Results, col: str, sweep: Any = None) -> bool:
  """Whether a hyperparameter's values are random draws rather than a grid.

  Asks the sweep definition when there is one; else: numeric, and either
  more than 12 unevenly spaced values, or values that never repeat between
  configurations while other hyperparameters vary too (a joint search).
  """
  if not _numeric(res, col):
    return False
  if sweep:
    try:
      return space.is_sampled(sweep, col)
    except Exception:  # pylint: disable=broad-except
      pass  # A saved sweep that no longer parses: judge by the values.
  values = [float(v) for v in _distinct(res, col) if math.isfinite(v)]
  if len(values) < 3 or _even(values) or (min(values) > 0 and _even(np.log(values))):
    return False
  config_cols = [c for c in res.swept if c != results_lib.SEED]
  configs = {tuple(keys_lib.freeze(r.get(c)) for c in config_cols) for r in res.rows}
  return len(values) > _MAX_CELLS or (len(config_cols) > 1 and len(values) == len(configs))


def _even(values) -> bool:
  steps = np.diff(np.sort(np.asarray(values, np.float64)))
  return bool(len(steps)) and np.allclose(steps, steps[0], rtol=1e-6, atol=0)


def metric_range(metric: str, values: Sequence[float] = ()) -> tuple[float, float]:
  """The values a metric can take: [0, 1] for accuracies, [0, inf) for losses.

  Examples:
    >>> metric_range("val_accuracy"), metric_range("test_nll"), metric_range("val_perplexity")
    ((0.0, 1.0), (0.0, inf), (1.0, inf))
  """
  if "accuracy" in metric:
    return 0.0, 1.0
  if metric.endswith("perplexity"):
    return 1.0, math.inf
  if metric.endswith(("nll", "mse", "rmse", "bits_per_char")):
    return 0.0, math.inf
  # An objective or a metric of one's own: non-negative if every value is.
  return (0.0 if values and min(values) >= 0 else -math.inf), math.inf


def band(values: Sequence[float], lo: float = -math.inf,
         hi: float = math.inf) -> tuple[float, float | None, float | None, str | None]:
  """The mean of a point's values and its band, clipped to ``[lo, hi]``.

  Returns:
    ``(mean, low, high, kind)``: the band is the min–max for 2-4 values, the
    95 % confidence interval of the mean (t distribution, sample std) for 5
    or more; ``kind`` names it (None, with no band, for one value).

  Examples:
    >>> band([0.9, 1.0])
    (0.95, 0.9, 1.0, 'min–max')
    >>> m, low, high, kind = band([0.97, 0.98, 0.99, 1.0, 1.0], 0.0, 1.0)
    >>> round(m, 3), high, kind
    (0.988, 1.0, '95% CI')
  """
  from scipy import special  # pylint: disable=g-import-not-at-top
  mean, std = results_lib.mean_std(values)
  if len(values) < 2:
    return mean, None, None, None
  if len(values) < MIN_RUNS_FOR_CI:
    low, high, kind = min(values), max(values), "min–max"
  else:
    # scipy.special.stdtrit is stats.t.ppf (same values) without the 1 s
    # import of scipy.stats.
    half = float(special.stdtrit(len(values) - 1, 0.5 + CONFIDENCE / 2)) * std / math.sqrt(
        len(values))
    low, high, kind = mean - half, mean + half, f"{CONFIDENCE:.0%} CI"
  return mean, float(np.clip(low, lo, hi)), float(np.clip(high, lo, hi)), kind


def _warm_up() -> None:
  """Imports matplotlib and scipy.special and draws a tiny figure (fonts)."""
  try:
    _figure(1, 1).add_subplot().set_title("0.1")
    from matplotlib.ticker import MaxNLocator  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    from scipy import special  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except Exception:  # pylint: disable=broad-except
    pass  # make_plots says what is wrong, in the main thread.


_preloading: list[threading.Thread] = []


def preload() -> None:
  """Starts importing what :func:`make_plots` needs, in a background thread.

  The imports and matplotlib's first figure take 2-3 s; started when a sweep
  begins, they overlap its compilation (which releases the GIL) instead of
  adding to the time after training. :func:`make_plots` waits for it.
  """
  if not _preloading and available():
    thread = threading.Thread(target=_warm_up, name="jaxsweep-plots-preload", daemon=True)
    thread.start()
    _preloading.append(thread)


def _band_text(kinds) -> str:
  kinds = sorted(k for k in kinds if k)
  text = {"min–max": "min–max (2-4 runs)",
          f"{CONFIDENCE:.0%} CI": f"{CONFIDENCE:.0%} CI of the mean, t (>= 5 runs)"}
  return " / ".join(text[k] for k in kinds)


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


def _label(col: str, columns: Sequence[str]) -> str:
  return format_lib.short_names(list(columns)).get(col, col)


def _ylabel(res, metric) -> str:
  if metric != res.target:
    return metric
  return f"{metric} ({res.better} is better)"


def _mark_diverged(ax, xs: Sequence[float], count_hidden: int = 0) -> None:
  """Red crosses at the bottom of the axis (x in data, y in axes units)."""
  if xs:
    ax.plot(xs, [0.0] * len(xs), linestyle="none", clip_on=False, zorder=5,
            transform=ax.get_xaxis_transform(), label=f"diverged ({len(xs) + count_hidden})",
            **DIVERGED_STYLE)
  elif count_hidden:
    # NaN/inf hyperparameter values have no place on the axis: counted only.
    ax.plot([], [], linestyle="none", label=f"diverged ({count_hidden}, not on axis)",
            **DIVERGED_STYLE)


def _mark_unstable(ax, xs, ys) -> None:
  if len(xs):
    ax.plot(xs, ys, linestyle="none", label=f"unstable ({len(xs)})", zorder=4,
            **UNSTABLE_STYLE)


def _finish(ax, res, metric, values) -> None:
  """Labels, grid, legend; a log y-axis for a loss spanning > 2 decades."""
  lo, hi = metric_range(metric, values)
  positive = [v for v in values if v > 0]
  if lo >= 0 and hi == math.inf and positive and max(positive) / min(positive) > 100:
    ax.set_yscale("log")
  ax.set_ylabel(_ylabel(res, metric))
  ax.grid(True, alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize="small")


def _x_ok(x, numeric: bool, log: bool) -> bool:
  return not numeric or (math.isfinite(x) and (x > 0 or not log))


def plot_vs(fig, res: results_lib.Results, param: str, metrics: Sequence[str], *,
            series: str | None = None, log: bool = False) -> None:
  """Metrics against a grid hyperparameter: mean and band; one line per ``series`` value."""
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

  kinds = set()
  for ax, metric in zip(axes, metrics):
    lo, hi = metric_range(metric, [r[metric] for r in res.rows
                                   if results_lib.has_value(r, metric)])
    plotted, unstable = [], ([], [])
    for s, sv in enumerate(series_values):
      by_x: dict[Any, list[float]] = {}
      xs_of: dict[Any, float] = {}
      for r in res.rows:
        if series is not None and keys_lib.freeze(r.get(series)) != keys_lib.freeze(sv):
          continue
        x = r.get(param)
        if not results_lib.has_value(r, metric) or not _x_ok(x, numeric, log):
          continue
        k = keys_lib.freeze(x)
        by_x.setdefault(k, []).append(float(r[metric]))
        xs_of[k] = position(x, s)
        plotted.append(float(r[metric]))
        if r.get("status") == results_lib.STATUS_UNSTABLE:
          unstable[0].append(xs_of[k])
          unstable[1].append(float(r[metric]))
      if not by_x:
        continue
      order = sorted(by_x, key=lambda k: xs_of[k])
      xs = np.asarray([xs_of[k] for k in order])
      stats = [band(by_x[k], lo, hi) for k in order]
      kinds.update(b[3] for b in stats)
      mean = np.asarray([b[0] for b in stats])
      low = np.asarray([np.nan if b[1] is None else b[1] for b in stats])
      high = np.asarray([np.nan if b[2] is None else b[2] for b in stats])
      color = f"C{s % 10}"
      label = f"{_label(series, res.swept)}={format_lib.fmt(sv)}" if series else "mean"
      if numeric:
        ax.plot(xs, mean, "-o", color=color, markersize=4, label=label)
        ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)
        pts = [(xs_of[k], v) for k in order for v in by_x[k]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=9, color=color, alpha=0.4,
                   linewidths=0)
      else:
        err = np.stack([np.where(np.isnan(low), 0.0, mean - low),
                        np.where(np.isnan(high), 0.0, high - mean)])
        ax.errorbar(xs, mean, yerr=err, fmt="o", color=color, capsize=3, label=label)
    _mark_unstable(ax, *unstable)
    shown, hidden = [], 0
    for r in res.rows:
      if r.get("status") != results_lib.STATUS_DIVERGED:
        continue
      x = r.get(param)
      if not _x_ok(x, numeric, log):
        hidden += 1
      else:
        shown.append(position(x, 0) if numeric else float(index[keys_lib.freeze(x)]))
    _mark_diverged(ax, shown, hidden)
    if log and numeric:
      ax.set_xscale("log")
    if not numeric:
      ax.set_xticks(range(len(categories)), [format_lib.fmt(v) for v in categories])
      ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_xlabel(_label(param, res.swept))
    _finish(ax, res, metric, plotted)
  over = "seeds" + (" and other hyperparameters" if len(swept_params(res)) > 1 else "")
  band_text = _band_text(kinds)
  fig.suptitle(f"{_label(param, res.swept)}: mean over {over}"
               + (f"; band: {band_text}" if band_text else "")
               + "\nunstable runs count in the mean (orange), diverged are left out (red x)",
               fontsize="medium")


def plot_scatter(fig, res: results_lib.Results, param: str, metrics: Sequence[str], *,
                 log: bool = False) -> None:
  """Metrics against a randomly drawn hyperparameter: every run, and the median per bin."""
  axes = fig.subplots(1, len(metrics), squeeze=False)[0]
  for ax, metric in zip(axes, metrics):
    runs = [r for r in res.rows if results_lib.has_value(r, metric)
            and _x_ok(r.get(param), True, log)]
    healthy = [r for r in runs if r.get("status") != results_lib.STATUS_UNSTABLE]
    shaky = [r for r in runs if r.get("status") == results_lib.STATUS_UNSTABLE]
    if healthy:
      ax.scatter([r[param] for r in healthy], [r[metric] for r in healthy], s=14,
                 color="C0", alpha=0.7, linewidths=0, label=f"runs ({len(healthy)})")
    _mark_unstable(ax, [r[param] for r in shaky], [r[metric] for r in shaky])
    if len(runs) >= 4:
      xs = np.asarray([float(r[param]) for r in runs])
      ys = np.asarray([float(r[metric]) for r in runs])
      edges = _edges(xs, log)
      which = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, len(edges) - 2)
      tx, ty = [], []
      for b in range(len(edges) - 1):
        if (which == b).any():
          tx.append(float(np.median(xs[which == b])))
          ty.append(float(np.median(ys[which == b])))
      ax.plot(tx, ty, "-", color="black", linewidth=1.5,
              label=f"median per bin ({len(edges) - 1} bins)")
    diverged = [r for r in res.rows if r.get("status") == results_lib.STATUS_DIVERGED]
    shown = [float(r[param]) for r in diverged if _x_ok(r.get(param), True, log)]
    _mark_diverged(ax, shown, len(diverged) - len(shown))
    if log:
      ax.set_xscale("log")
    ax.set_xlabel(_label(param, res.swept))
    _finish(ax, res, metric, [float(r[metric]) for r in runs])
  fig.suptitle(f"{_label(param, res.swept)} (random search): every run, trend = median "
               "per bin\nunstable runs in orange, diverged as red x (not values)",
               fontsize="medium")


def _edges(values, log: bool) -> np.ndarray:
  lo, hi = float(np.min(values)), float(np.max(values))
  if hi <= lo:
    return np.asarray([lo, lo + 1.0])
  return np.geomspace(lo, hi, _BINS + 1) if log and lo > 0 else np.linspace(lo, hi, _BINS + 1)


def _curve_bases(res) -> list[str]:
  """The learning curves' panels: the target's metric, then nll or the objective."""
  present = {k for entries in res.history.values() for e in entries for k in e}
  base = res.target.partition("_")[2] if results_lib.split_of(res.target) else res.target
  split = results_lib.split_of(res.target) or "val"
  out = []
  for name in (base, "nll", "objective"):
    key = f"{split}_{name}" if results_lib.split_of(res.target) else name
    if key in present and name not in out and not (name == "objective" and "nll" in out):
      out.append(name)
  return out[:2]


def plot_curves(fig, res: results_lib.Results, bases: Sequence[str], curves: int) -> None:
  """Learning curves from step 0 of the best ``curves`` healthy variants.

  Solid: the target's split (validation); dashed: the training subset in
  eval mode, same colour.
  """
  from matplotlib.ticker import MaxNLocator  # pylint: disable=g-import-not-at-top
  axes = fig.subplots(1, max(len(bases), 1), squeeze=False)[0]
  top = [r for r in res.table if results_lib.is_healthy(r)][:curves]
  split = results_lib.split_of(res.target)
  for ax, base in zip(axes, bases):
    for i, r in enumerate(top):
      entries = res.history.get(r["variant"], [])
      for prefix, style in ((split, "-"), ("train", "--")):
        key = f"{prefix}_{base}" if split else base
        points = [(e["step"], np.nan if e.get(key) is None else e[key]) for e in entries
                  if key in e]
        if not points or (prefix == "train" and not split):
          continue
        ax.plot([p[0] for p in points], [p[1] for p in points], style,
                marker="o" if len(points) <= 20 else None, markersize=3, color=f"C{i % 10}",
                label=(f"#{r['variant']} " + format_lib.describe_settings(r, res.swept)
                       if style == "-" else None))
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{base} ({split} solid, train dashed)" if split else base)
    ax.grid(True, alpha=0.3)
    if not top:
      ax.text(0.5, 0.5, "no variant trained without trouble", ha="center", va="center",
              transform=ax.transAxes, color="red")
  if top:
    axes[0].legend(fontsize="small")
  fig.suptitle(f"learning curves of the best {len(top)} variant(s) by {res.target}, from "
               f"step 0\nsolid: {split or 'metric'}"
               + (", dashed: train (eval mode)" if split else ""), fontsize="medium")


def _axis_cells(res, col, sweep) -> tuple[list[str], Any]:
  """Tick labels and value -> cell index for one heatmap axis.

  Up to 12 values: one cell each, labelled with the value. More: up to 8
  bins (log-spaced on a log axis), labelled with the range of the swept
  values each holds (the smallest and the largest, to 3 significant digits);
  empty bins are dropped, non-finite values get a cell.
  """
  values = _distinct(res, col)
  finite = [float(v) for v in values if _is_number(v) and math.isfinite(v)]
  if not (_numeric(res, col) and len(finite) > _MAX_CELLS):
    index = {keys_lib.freeze(v): i for i, v in enumerate(values)}
    return [format_lib.fmt(v) for v in values], lambda v: index[keys_lib.freeze(v)]
  edges = _edges(np.asarray(finite), _log_axis(res, col, sweep))
  which = np.clip(np.searchsorted(edges, finite, side="right") - 1, 0, len(edges) - 2)
  used = sorted(set(which.tolist()))
  labels = []
  for b in used:
    inside = [v for v, w in zip(finite, which) if w == b]
    lo, hi = min(inside), max(inside)
    labels.append(_short(lo) if lo == hi else f"{_short(lo)}–{_short(hi)}")
  cell_of = {b: i for i, b in enumerate(used)}
  if len(finite) < len(values):
    labels.append("nan/inf")

  def cell(v):
    if not math.isfinite(v):
      return len(used)
    b = int(np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2))
    return cell_of[b]

  return labels, cell


def _short(v: float) -> str:
  """3 significant digits: a bin's range label stays short (``0.00323–0.00965``)."""
  return f"{v:.3g}"


def plot_heatmap(fig, res: results_lib.Results, a: str, b: str, *, sweep: Any = None) -> None:
  """Mean target over the rest for each (a, b) cell; unstable cells marked, diverged crossed."""
  ax = fig.subplots()
  xl, xcell = _axis_cells(res, a, sweep)
  yl, ycell = _axis_cells(res, b, sweep)
  total = np.zeros((len(yl), len(xl)))
  count = np.zeros((len(yl), len(xl)), dtype=int)
  diverged = np.zeros((len(yl), len(xl)), dtype=int)
  unstable = np.zeros((len(yl), len(xl)), dtype=int)
  for r in res.rows:
    i, j = ycell(r.get(b)), xcell(r.get(a))
    if results_lib.has_value(r, res.target):
      total[i, j] += r[res.target]
      count[i, j] += 1
      unstable[i, j] += r.get("status") == results_lib.STATUS_UNSTABLE
    elif r.get("status") == results_lib.STATUS_DIVERGED:
      diverged[i, j] += 1
  mean = np.full(total.shape, np.nan)
  np.divide(total, count, out=mean, where=count > 0)
  if count.any():
    image = ax.imshow(np.ma.masked_invalid(mean), origin="lower", aspect="auto",
                      cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=f"mean {res.target} ({res.better} is better)")
    if mean.size <= 144:
      lo, hi = np.nanmin(mean), np.nanmax(mean)
      for (i, j), v in np.ndenumerate(mean):
        if count[i, j]:
          light = hi > lo and (v - lo) / (hi - lo) > 0.6
          ax.text(j, i, format_lib.fmt(float(v)), ha="center", va="center", fontsize="x-small",
                  color="black" if light else "white")
  shaky = np.argwhere(unstable > 0)
  if len(shaky):
    ax.plot(shaky[:, 1] - 0.3, shaky[:, 0] + 0.3, linestyle="none", **UNSTABLE_STYLE)
  bad = np.argwhere((count == 0) & (diverged > 0))
  if len(bad):  # Explained in the title: a legend box would hide cells.
    ax.plot(bad[:, 1], bad[:, 0], linestyle="none", **{**DIVERGED_STYLE, "markersize": 12})
  ax.set_xticks(range(len(xl)), xl, rotation=45 if len(xl) > 6 or len(max(xl, key=len)) > 8
                else 0, ha="right" if len(xl) > 6 else "center")
  ax.set_yticks(range(len(yl)), yl)
  ax.set_xlim(-0.5, len(xl) - 0.5)
  ax.set_ylim(-0.5, len(yl) - 0.5)
  ax.set_xlabel(_label(a, res.swept))
  ax.set_ylabel(_label(b, res.swept))
  ax.set_title(f"mean {res.target} over seeds and other hyperparameters\n(orange: a cell with "
               "unstable runs, counted; red x: every run in the cell diverged)",
               fontsize="small")
