"""Experiment-tracker logs written after a sweep: TensorBoard event files.

:func:`write_tensorboard` writes one TensorBoard run per variant
(``<log_dir>/<variant>_<id>/``) holding its metrics over the steps of its
history, plus an hparams-plugin session (its swept values and status, and
its final metrics as ``hparam/<metric>``), so TensorBoard's HParams tab lists
the whole sweep as a table and parallel-coordinates view::

  jaxsweep run configs/digits_lr.yaml --tensorboard
  tensorboard --logdir runs/digits_lr/tensorboard

The writer is ``tensorboardX`` when installed (``pip install tensorboardX``),
else the ``tensorboard`` package's own event writer. Logs are written after
training, from the results, so they cost the training loop nothing and can be
(re)made from a saved run with ``jaxsweep report DIR --tensorboard``.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from jaxsweep import results as results_lib

INSTALL_HINT = "pip install tensorboardX"


def tensorboard_backend() -> str | None:
  """``"tensorboardX"``, ``"tensorboard"`` or None, whichever can write."""
  try:
    import tensorboardX  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    return "tensorboardX"
  except ImportError:
    pass
  try:
    # pylint: disable=g-import-not-at-top,unused-import
    from tensorboard.plugins.hparams import summary_v2  # noqa: F401
    from tensorboard.summary.writer import event_file_writer  # noqa: F401
    return "tensorboard"
  except ImportError:
    return None


def hparam_value(value: Any) -> bool | int | float | str:
  """A value the hparams plugin accepts (numbers, strings, bools)."""
  if isinstance(value, (bool, int, float, str)):
    return value
  if value is None:
    return "None"
  if isinstance(value, (list, tuple)):
    return "[" + ",".join(str(v) for v in value) + "]"
  return str(value)


def write_tensorboard(res: results_lib.Results, log_dir: str) -> str | None:
  """Writes TensorBoard event files, one run per variant.

  Rewriting a run's logs (e.g. ``jaxsweep report --tensorboard`` twice)
  replaces its event files rather than adding duplicate points.

  Args:
    res: the results (history and rows).
    log_dir: the directory for the runs (created).

  Returns:
    ``log_dir``, or None when no TensorBoard writer is installed (a message
    on stderr says what to install).
  """
  backend = tensorboard_backend()
  if backend is None:
    print(f"jaxsweep: TensorBoard logs skipped: no writer installed ({INSTALL_HINT})",
          file=sys.stderr)
    return None
  make = _TensorboardXWriter if backend == "tensorboardX" else _TensorboardWriter
  os.makedirs(log_dir, exist_ok=True)
  for row in res.rows:
    run_dir = os.path.join(log_dir, f"{row['variant']:04d}_{row.get('id', 'variant')}")
    for old in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
      os.unlink(old)
    writer = make(run_dir)
    try:
      for entry in res.history.get(row["variant"], []):
        for tag, value in entry.items():
          if tag != "step" and isinstance(value, (int, float)):
            writer.scalar(tag, float(value), int(entry["step"]))
      hparams = {c: hparam_value(row.get(c)) for c in res.swept}
      hparams["status"] = row.get("status", "")
      final = {f"hparam/{m}": float(row[m]) for m in res.metrics
               if isinstance(row.get(m), (int, float))}
      writer.hparams(hparams, final, int(row.get("steps") or 0))
    finally:
      writer.close()
  return log_dir


class _TensorboardXWriter:
  """tensorboardX's SummaryWriter, hparams in the same run as the scalars."""

  def __init__(self, run_dir: str):
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self._writer = tensorboardX.SummaryWriter(logdir=run_dir)

  def scalar(self, tag: str, value: float, step: int) -> None:
    self._writer.add_scalar(tag, value, step)

  def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float],
              step: int) -> None:
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    # SummaryWriter.add_hparams would open a second, timestamp-named run per
    # variant; writing the plugin's three summaries here keeps one run each.
    file_writer = self._writer._get_file_writer()  # pylint: disable=protected-access
    for proto in summary.hparams(dict(hparams), dict(metrics)):
      file_writer.add_summary(proto)
    for tag, value in metrics.items():
      self._writer.add_scalar(tag, value, step)

  def close(self) -> None:
    self._writer.close()


class _TensorboardWriter:
  """The ``tensorboard`` package's event writer (no TensorFlow needed)."""

  def __init__(self, run_dir: str):
    from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
    self._writer = event_file_writer.EventFileWriter(run_dir)

  def _add(self, summary, step: int) -> None:
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def scalar(self, tag: str, value: float, step: int) -> None:
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    self._add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, simple_value=value)]), step)

  def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float],
              step: int) -> None:
    from tensorboard.plugins.hparams import summary_v2  # pylint: disable=g-import-not-at-top
    self._add(summary_v2.hparams_pb(dict(hparams)), 0)
    for tag, value in metrics.items():
      self.scalar(tag, value, step)

  def close(self) -> None:
    self._writer.close()
