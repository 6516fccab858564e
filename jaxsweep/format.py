"""Cells and aligned plain-text tables, shared by results and report.

A leaf: it imports nothing from jaxsweep, so :mod:`jaxsweep.results` (for
``repr``) and :mod:`jaxsweep.report` (for every table) format values the
same way.

Examples:
  >>> from jaxsweep import format as format_lib
  >>> format_lib.fmt(3.16e-4), format_lib.fmt(0.812345), format_lib.fmt([64, 64])
  ('3.16e-04', '0.8123', '[64,64]')
  >>> format_lib.fmt_mean_std(0.8125, 0.0625)
  '0.8125 ± 0.0625'
  >>> rows = [{"optimizer.learning_rate": 0.1, "status": "ok", "acc": 0.9},
  ...         {"optimizer.learning_rate": 1e-4, "status": "diverged", "acc": None}]
  >>> print(format_lib.text_table(rows, ["optimizer.learning_rate", "status", "acc"],
  ...                             footer="2 variants"))
  learning_rate  status    acc
  -------------  --------  ---
            0.1  ok        0.9
          1e-04  diverged    -
  2 variants
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def fmt(value: Any) -> str:
  """Compact notation: 4 significant digits, scientific when tiny/huge."""
  if value is None:
    return "-"
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, float):
    if math.isnan(value):
      return "nan"
    if math.isinf(value):
      return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
      mantissa, exp = f"{value:.2e}".split("e")  # 1e-04, 3.16e-04: same width
      return f"{mantissa.rstrip('0').rstrip('.')}e{exp}"
    return f"{value:.4g}"
  if isinstance(value, (list, tuple)):
    return "[" + ",".join(fmt(v) for v in value) + "]"
  return str(value)


def format_bytes(num: float | None) -> str:
  """``1536 -> '1.5 KiB'``: binary units, 3 significant digits.

  Examples:
    >>> format_bytes(1536), format_bytes(100), format_bytes(None)
    ('1.5 KiB', '100 B', '?')
  """
  if num is None:
    return "?"
  num = float(num)
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if abs(num) < 1024 or unit == "TiB":
      return f"{num:.0f} {unit}" if unit == "B" else f"{num:.3g} {unit}"
    num /= 1024
  raise AssertionError("unreachable")


def fmt_mean_std(mean: float | None, std: float | None) -> str:
  """``0.8125 ± 0.0625``; the mean alone when the spread is unknown."""
  if mean is None:
    return "-"
  return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def short_names(columns: Sequence[str]) -> dict[str, str]:
  """Compact headers: ``optimizer.learning_rate`` -> ``learning_rate``.

  A dotted name loses its section only when no other column has the same
  tail, so ``optimizer.weight_decay`` and ``loss.weight_decay`` stay apart.

  Examples:
    >>> short_names(["optimizer.learning_rate", "optimizer.name", "seed"])
    {'optimizer.learning_rate': 'learning_rate', 'optimizer.name': 'optimizer.name', 'seed': 'seed'}
  """
  tails: dict[str, int] = {}
  for c in columns:
    tail = c.rsplit(".", 1)[-1]
    tails[tail] = tails.get(tail, 0) + 1
  out = {}
  for c in columns:
    tail = c.rsplit(".", 1)[-1]
    out[c] = tail if tails[tail] == 1 and tail not in ("name",) else c
  return out


def describe_settings(row: Mapping[str, Any], columns: Sequence[str]) -> str:
  """``learning_rate=0.3, seed=1`` for the given columns of a row.

  Examples:
    >>> describe_settings({"optimizer.learning_rate": 0.3, "seed": 1},
    ...                   ["optimizer.learning_rate", "seed"])
    'learning_rate=0.3, seed=1'
  """
  names = short_names(columns)
  return ", ".join(f"{names[c]}={fmt(row[c])}" for c in columns if c in row)


def is_numeric(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
  """Whether a column holds numbers (bools aside): right-aligned in tables."""
  return any(isinstance(r.get(column), (int, float)) and not isinstance(r.get(column), bool)
             for r in rows)


def align(headers: Sequence[str], cells: Sequence[Sequence[str]], right: Sequence[bool],
          footer: str | None = None, *, breaks: Sequence[int] = ()) -> str:
  """Formatted cells as aligned plain text, no control codes (logs, pipes, CI).

  Args:
    headers: column titles.
    cells: rows of already formatted cells.
    right: per column, whether it is right-aligned (numbers).
    footer: lines under the table, if any.
    breaks: indices of columns that start a new set: a ``|`` before them.

  Examples:
    >>> print(align(["a", "b"], [["1", "2"]], [True, True], breaks=[1]))
    a  |  b
    -  |  -
    1  |  2
  """
  widths = [max([len(h)] + [len(row[j]) for row in cells]) for j, h in enumerate(headers)]

  def line(values):
    return "".join(("" if j == 0 else "  |  " if j in breaks else "  ")
                   + (v.rjust(w) if right[j] else v.ljust(w))
                   for j, (v, w) in enumerate(zip(values, widths))).rstrip()

  out = [line(headers), line(["-" * w for w in widths])]
  out += [line(r) for r in cells]
  if footer is not None:
    out.append(footer)
  return "\n".join(out)


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
               names: Mapping[str, str] | None = None, footer: str | None = None,
               breaks: Sequence[int] = ()) -> str:
  """Rows (dicts) as an aligned plain-text table of the given columns.

  Args:
    rows: the rows, in the order shown; a missing cell shows as ``-``.
    columns: the keys to show, in order.
    names: header per column (default: :func:`short_names` of ``columns``).
    footer: lines under the table, if any.
    breaks: indices of columns that start a new set (a ``|`` before them).
  """
  names = short_names(columns) if names is None else names
  return align([names.get(c, c) for c in columns],
               [[fmt(r.get(c)) for c in columns] for r in rows],
               [is_numeric(rows, c) for c in columns], footer, breaks=breaks)
