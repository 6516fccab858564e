"""Two sweeps side by side (``jaxsweep compare DIR1 DIR2``).

:func:`compare_tables` builds the tables; :func:`jaxsweep.report.tables.render_tables`
prints them. Spreads are the sample std over seeds and unshared columns
(:func:`jaxsweep.results.mean_std`), diverged rows excluded and unstable rows
counted, as in the seed-aggregated table.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

from jaxsweep import errors
from jaxsweep import format as format_lib
from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep.report import tables


def _marginal(res: results_lib.Results, cols: Sequence[str], metric: str):
  """key -> [values, healthy metric values, total, diverged] over the rest."""
  out: dict[tuple, list] = {}
  for r in res.rows:
    key = tuple(keys.freeze(r.get(c)) for c in cols)
    entry = out.setdefault(key, [[r.get(c) for c in cols], [], 0, 0])
    entry[2] += 1
    if results_lib.has_value(r, metric):  # Unstable rows count, as in aggregation.
      entry[1].append(float(r[metric]))
    elif r.get("status") == results_lib.STATUS_DIVERGED:
      entry[3] += 1
  return out


def _sort_value(v: Any):
  if isinstance(v, (int, float)) and not isinstance(v, bool):
    return (0, float("inf") if math.isnan(v) else v, "")
  return (1, 0.0, format_lib.fmt(v))


def _best_table(a: results_lib.Results, b: results_lib.Results, labels: Sequence[str],
                target: str, metrics: Sequence[str]) -> tables.Table:
  """Each sweep's selection: its best variant, or (seeds swept) its selected
  configuration's mean ± std over seeds. The selected settings are lines
  under the table, so that it stays narrow whatever was swept."""
  cells, status, chosen_lines = [], [], []
  for res, label in ((a, labels[0]), (b, labels[1])):
    chosen = res.selected if res.rows and res.has_seeds else None
    if chosen is not None:
      cols = [c for c in res.swept if c != results_lib.SEED]
      settings = (format_lib.describe_settings(chosen, cols) or "-") + f" ({chosen['n']} seeds)"
      values = [format_lib.fmt_mean_std(chosen.get(f"{m}_mean"), chosen.get(f"{m}_std"))
                for m in metrics]
    else:
      best = res.best if res.rows else {}
      settings = format_lib.describe_settings(best, [c for c in res.swept if c in best]) or "-"
      values = [format_lib.fmt(best.get(m)) for m in metrics]
    num_div = sum(r["status"] == results_lib.STATUS_DIVERGED for r in res.rows)
    cells.append([label, str(len(res.rows)), str(num_div),
                  format_lib.fmt(res.seconds) if res.seconds else "-"] + values)
    chosen_lines.append(textwrap.fill(f"{label} selected: {settings}", tables.WIDTH,
                                      subsequent_indent="    "))
    status.append(chosen["status"] if chosen else (res.best.get("status", "") if res.rows
                                                    else ""))
  return tables.Table(
      headers=["sweep", "variants", "diverged", "seconds", *metrics],
      cells=cells, right=[False, True, True, True] + [True] * len(metrics),
      status=status, footer="\n".join(
          [f"each sweep's selection by {target} ({a.better} is better):",
           "its best variant, or the best mean over seeds (mean ± std)", *chosen_lines]))


def _matched_table(a: results_lib.Results, b: results_lib.Results, labels: Sequence[str],
                   target: str, shared: Sequence[str]) -> tables.Table:
  ma, mb = _marginal(a, shared, target), _marginal(b, shared, target)
  order = list(dict.fromkeys([*ma, *mb]))
  order.sort(key=lambda k: [_sort_value(v) for v in (ma.get(k) or mb.get(k))[0]])
  names = format_lib.short_names(shared)
  rows, status = [], []
  for k in order:
    values = (ma.get(k) or mb.get(k))[0]
    row = [format_lib.fmt(v) for v in values]
    means = []
    for m in (ma, mb):
      if k not in m:
        row += ["-", "-"]
        means.append(None)
        continue
      _, vals, total, div = m[k]
      mean, std = results_lib.mean_std(vals)
      means.append(mean)
      row += [format_lib.fmt_mean_std(mean, std), f"{div}/{total}"]
    delta = means[1] - means[0] if None not in means else None
    row.append("-" if delta is None else f"{delta:+.4g}")
    rows.append(row)
    status.append(results_lib.STATUS_OK)
  # A and B stand for the sweeps in the headers (their names can be long
  # paths); the footer says which is which.
  headers = ([names[c] for c in shared] + [f"A {target}", "A div", f"B {target}", "B div",
                                            "B - A"])
  right = [format_lib.is_numeric(a.rows + b.rows, c) for c in shared] + [True] * 5
  footer = (f"A = {labels[0]}, B = {labels[1]}; rows matched on "
            f"{', '.join(names[c] for c in shared)}; {target} mean ± std "
            f"(ddof={results_lib.DEFAULT_DDOF}) over seeds and unshared columns; div: "
            "diverged/total, excluded from the mean; - where a sweep lacks the value")
  return tables.Table(headers=headers, cells=rows, right=right, status=status,
                      footer=textwrap.fill(footer, tables.WIDTH, subsequent_indent="  "))


def compare_tables(a: results_lib.Results, b: results_lib.Results, *,
                   labels: Sequence[str] = ("A", "B"),
                   target: str | None = None) -> list[tables.Table]:
  """Tables comparing two sweeps: best rows, then rows matched on shared columns.

  The first table has each sweep's selection (its swept values and metrics:
  the best variant, or with seeds swept the best mean over seeds, ± std).
  The second groups each sweep's rows by the swept columns both share (seed
  excluded) and shows the target's mean ± std over everything else (seeds
  and unshared columns), diverged rows excluded, with B - A.

  Args:
    a, b: the two sweeps' results.
    labels: their names (e.g. their directories).
    target: the metric to compare (default: A's target).

  Raises:
    ConfigError: when a sweep has no such metric.
  """
  target = target or a.target
  for res, label in ((a, labels[0]), (b, labels[1])):
    if res.rows and target not in res.rows[0]:
      raise errors.ConfigError(f"{label} has no metric '{target}'.", key="target",
                               fix=f"pass --target with one of: {', '.join(res.metrics)}")
  mode = a.mode if target == a.target else None
  a, b = a.ranked(target, mode), b.ranked(target, mode)
  # The target and the number to report beside it: every shared metric made
  # this table ~330 characters wide (issue #26); the run's files have them all.
  report = results_lib.report_metric(target)
  metrics = [target] + [m for m in (report,) if m and m != target
                        and m in a.columns() and m in b.columns()]
  best = _best_table(a, b, labels, target, metrics)
  shared = [c for c in a.swept if c in b.swept and c != results_lib.SEED]
  if not shared:
    return [best]
  return [best, _matched_table(a, b, labels, target, shared)]
