"""Turning results into things people read: tables, files, progress.

Side effects (printing, files) live here and in the CLI only; everything
below the engine is pure.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from jaxsweep import results as results_lib

# Columns never shown in the console table (they are in the files).
_HIDDEN = ("id", "group", "steps")


def fmt(value: Any) -> str:
  """Compact notation: 4 significant digits, scientific when tiny/huge."""
  if value is None:
    return "-"
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, float):
    if math.isnan(value):
      return "nan"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
      return f"{value:.3g}"
    return f"{value:.4g}"
  if isinstance(value, (list, tuple)):
    return "[" + ",".join(fmt(v) for v in value) + "]"
  return str(value)


def table_columns(res: results_lib.Results) -> list[str]:
  cols = ["variant", *res.swept, "status", "diverged_step"]
  metrics = [m for m in res.metrics if m in res.columns()]
  if res.target in metrics:
    metrics.remove(res.target)
    metrics.insert(0, res.target)
  return [c for c in cols + metrics if c not in _HIDDEN]


def format_table(res: results_lib.Results, *, top: int | None = None,
                 columns: Sequence[str] | None = None) -> str:
  """The ranked table as aligned plain text (best first)."""
  rows = res.table[:top] if top else res.table
  cols = list(columns or table_columns(res))
  if not any(r.get("diverged_step") is not None for r in rows) and "diverged_step" in cols:
    cols.remove("diverged_step")
  cells = [[fmt(r.get(c)) for c in cols] for r in rows]
  widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(cols)]
  def line(values):
    return "  ".join(v.rjust(w) if _numeric_col(cols[j], rows) else v.ljust(w)
                     for j, (v, w) in enumerate(zip(values, widths))).rstrip()
  out = [line(cols), line(["-" * w for w in widths])]
  out += [line(r) for r in cells]
  arrow = "higher" if res.mode == "max" else "lower"
  out.append(f"{len(res.rows)} variants, ranked by {res.target} ({arrow} is better)"
             + (f"; {sum(r['status'] != 'ok' for r in res.rows)} diverged"
                if any(r["status"] != "ok" for r in res.rows) else ""))
  return "\n".join(out)


def _numeric_col(col: str, rows) -> bool:
  return any(isinstance(r.get(col), (int, float)) and not isinstance(r.get(col), bool)
             for r in rows)


def format_best(res: results_lib.Results) -> str:
  best = res.best
  parts = [f"{k}={fmt(best[k])}" for k in res.swept if k in best]
  return (f"best: variant {best['variant']} ({', '.join(parts) or 'no swept values'}): "
          f"{res.target} = {fmt(best.get(res.target))}")


def write_outputs(res: results_lib.Results, out_dir: str, *,
                  config: Mapping[str, Any] | None = None) -> dict[str, str]:
  """Writes results.csv and results.json atomically; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {"csv": os.path.join(out_dir, "results.csv"),
           "json": os.path.join(out_dir, "results.json")}
  res.to_csv(paths["csv"])
  res.to_json(paths["json"])
  if config is not None:
    import yaml  # pylint: disable=g-import-not-at-top
    paths["config"] = os.path.join(out_dir, "config.yaml")
    results_lib.atomic_write(paths["config"], yaml.safe_dump(_plain(config), sort_keys=False))
  return paths


def _plain(x):
  if isinstance(x, Mapping):
    return {str(k): _plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  return x


class ProgressPrinter:
  """Line-based progress on stderr: works in terminals, logs and CI alike."""

  def __init__(self, stream=None, min_interval: float = 0.5):
    self.stream = stream or sys.stderr
    self.min_interval = min_interval
    self._last = 0.0

  def __call__(self, event: Mapping[str, Any]) -> None:
    kind = event.get("event")
    if kind == "start":
      self._print(f"jaxsweep: {event['variants']} variants in {event['groups']} "
                  f"compile group(s) on {event['devices']} device(s)")
    elif kind == "group":
      self._print(f"group {event['group'] + 1}/{event['num_groups']}: "
                  f"{event['variants']} variants ({event['static']}); "
                  f"chunk {event['chunk_size']}, padding {event['padding']}; "
                  f"vectorized: {', '.join(event['dynamic']) or '-'}")
    elif kind == "compiled":
      self._print(f"  compiled in {event['seconds']:.1f}s")
    elif kind == "period":
      now = time.monotonic()
      if event["step"] < event["steps"] and now - self._last < self.min_interval:
        return
      self._last = now
      self._print(f"  variants {event['chunk_start'] + 1}-"
                  f"{event['chunk_start'] + event['chunk_variants']}/{event['group_variants']}"
                  f"  step {event['step']}/{event['steps']}"
                  f"  {event['variant_steps_per_s']:,.0f} variant-steps/s"
                  f"  diverged {event['diverged']}")
    elif kind == "done":
      self._print(f"done in {event['seconds']:.1f}s")

  def _print(self, text: str) -> None:
    print(text, file=self.stream, flush=True)
