"""Which configuration a sweep selects: statuses, ranking, seeds, mean ± std.

A pure-data module below :mod:`jaxsweep.results` (which re-exports its
names): the vocabulary of statuses, the default target, the per-row ranking
(:func:`sort_key`) and the one place seeds are aggregated and a
configuration is selected (:func:`aggregate_rows`).

Selection is on the validation split (``val_*``; the test split only when
the data has none), so the test numbers of the selected configuration are
an unbiased estimate to report (:func:`report_metric`). With seeds swept the
selected configuration is the best *mean* over seeds, ties broken by the
lower std: one lucky seed does not pick it.

Ranking is exact at the precision the metrics have (issue #23): they are
float32 (about 7 significant digits), and a mean over seeds summed in
another order differs in the 8th (44/429 correct gives 0.10256410142 or
0.10256409893). Values within a relative :data:`RANK_RTOL` of each other
tie (:func:`tie_classes`); ties are broken by the lower std (compared the
same way), then by variant order (the order of the sweep, whatever the
layout), and the table marks them (``tie``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxsweep import errors
from jaxsweep import keys

STATUS_OK = "ok"
STATUS_STOPPED = "stopped"    # A scheduler stopped it early (see jaxsweep.engine.execute).
STATUS_UNSTABLE = "unstable"  # Finite, but blew up or ended at chance.
STATUS_DIVERGED = "diverged"  # A non-finite loss or parameter: frozen.
# Ranking: healthy rows first, then these, whatever their metric.
STATUSES = (STATUS_OK, STATUS_STOPPED, STATUS_UNSTABLE, STATUS_DIVERGED)
_STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}

# The default target per task: (metric, "max"/"min"), on the validation split
# (the test split only when there is none).
_TASK_TARGETS = {"classification": ("accuracy", "max"), "language_model": ("nll", "min"),
                 "regression": ("mse", "min")}
_FALLBACKS = (("accuracy", "max"), ("nll", "min"), ("mse", "min"), ("objective", "min"))


def mode_of(metric: str) -> str:
  """Whether a metric is better high (accuracy) or low (everything else)."""
  return "max" if "accuracy" in metric else "min"


def check_mode(mode: str | None) -> None:
  """Refuses a ranking mode other than ``"max"``, ``"min"`` or None (by the target).

  Raises:
    ConfigError: with ``key="mode"``.
  """
  if mode not in (None, "max", "min"):
    raise errors.ConfigError(f"mode must be 'max' or 'min', got {mode!r}.", key="mode",
                             fix="give mode='max' (higher is better) or 'min'")


def default_target(metric_names: Sequence[str], task: str | None = None) -> tuple[str, str]:
  """The metric ranked on by default, and whether higher is better.

  Selection is on validation metrics (``val_*``); the test split is used
  only when the data has no validation split.

  Examples:
    >>> default_target(["test_accuracy", "val_accuracy", "val_nll"], "classification")
    ('val_accuracy', 'max')
    >>> default_target(["test_mse", "test_rmse"], "regression")
    ('test_mse', 'min')
  """
  preferred = (_TASK_TARGETS[task],) if task in _TASK_TARGETS else ()
  for split in ("val", "test"):
    for name, mode in (*preferred, *_FALLBACKS):
      if f"{split}_{name}" in metric_names:
        return f"{split}_{name}", mode
  name = metric_names[0]
  return name, mode_of(name)


def sort_key(row: Mapping[str, Any], target: str, mode: str):
  """Healthy rows first (best ``target`` first), then stopped, unstable and
  diverged ones; NaN or missing values last within their status."""
  value = row.get(target)
  rank = _STATUS_RANK.get(row.get("status"), len(_STATUS_RANK))
  missing = (value is None or isinstance(value, bool)
             or (isinstance(value, float) and math.isnan(value)))
  if missing:
    return (rank, 1, 0.0, row.get("variant", 0))
  return (rank, 0, -value if mode == "max" else value, row.get("variant", 0))


SEED = keys.SEED
# Values this close (relative) rank as equal: float32 metrics carry about 7
# significant digits and their means over seeds differ in the 8th with the
# order of summation (issue #23: 0.10256410142 vs 0.10256409893).
RANK_RTOL = 1e-6
# No absolute tolerance: float32 resolves values near 0 as finely as any
# (an mse of 5e-13 is not a tie with 0).
RANK_ATOL = 0.0


def tie_classes(values: Sequence[float | None], *, rtol: float = RANK_RTOL,
                atol: float = RANK_ATOL) -> list[int]:
  """Rank classes of values, lower first: values within tolerance share one.

  Values are sorted ascending; a class starts at its smallest value and
  takes every next value within ``atol + rtol * |start|`` of that start (so
  a class never spans more than the tolerance, and the classes do not
  depend on the order the values come in). None and NaN share the last class.

  Args:
    values: the values (lower is better: negate a metric to maximise).
    rtol, atol: the relative and absolute tolerance.

  Returns:
    The class of each value (0 is the best), in the order given.

  Examples:
    >>> tie_classes([-0.10256410142, -0.10256409893, -0.2])
    [1, 1, 0]
    >>> tie_classes([0.3, None, 0.1, 0.1])
    [1, 2, 0, 0]
  """
  finite = sorted({float(v) for v in values
                   if v is not None and not math.isnan(float(v))})
  of: dict[float, int] = {}
  klass, start = -1, None
  for v in finite:
    if start is None or v - start > atol + rtol * abs(start):
      klass, start = klass + 1, v
    of[v] = klass
  last = klass + 1
  return [last if v is None or math.isnan(float(v)) else of[float(v)] for v in values]


def rank_rows(rows: Sequence[Mapping[str, Any]], target: str,
              mode: str) -> list[Mapping[str, Any]]:
  """Rows best first, as :func:`sort_key` orders them, with the target
  compared at :data:`RANK_RTOL` (near-equal values fall to variant order)."""
  signed = [None if not _finite(r.get(target)) else
            (-float(r[target]) if mode == "max" else float(r[target])) for r in rows]
  classes = tie_classes(signed)
  order = sorted(range(len(rows)), key=lambda j: (
      sort_key(rows[j], target, mode)[:2], classes[j], rows[j].get("variant", 0)))
  return [rows[j] for j in order]


# Every mean ± std over seeds (aggregated tables, compare, plots) uses the
# sample standard deviation (ddof=1, as pandas' ``std`` and most papers'
# error bars over seeds do); with one healthy seed the spread is unknown, so
# it is None rather than a misleading 0.
DEFAULT_DDOF = 1


def mean_std(values: Sequence[float], *,
             ddof: int = DEFAULT_DDOF) -> tuple[float | None, float | None]:
  """The mean and standard deviation of some values, in float64.

  The one place a spread over seeds is computed: aggregation, ``compare``
  and plots all call it.

  Args:
    values: the (healthy) values.
    ddof: delta degrees of freedom (1: sample std; 0: population).

  Returns:
    ``(mean, std)``: the mean is None for no values, the std for fewer than
    ``ddof + 1``.

  Examples:
    >>> mean, std = mean_std([0.5, 0.7])
    >>> mean, round(std, 4)
    (0.6, 0.1414)
    >>> mean_std([0.5]), mean_std([])
    ((0.5, None), (None, None))
  """
  a = np.asarray(values, dtype=np.float64)
  mean = float(a.mean()) if a.size else None
  std = float(a.std(ddof=ddof)) if a.size > ddof else None
  return mean, std


class SeedStats(NamedTuple):
  """A configuration's value over its seeds (:func:`over_seeds`).

  Attributes:
    mean: the mean of the values that count, or None when none does.
    std: their standard deviation, or None for fewer than ``ddof + 1``.
    n: how many values counted.
  """

  mean: float | None
  std: float | None
  n: int


def over_seeds(values: Iterable[Any], *, ddof: int = DEFAULT_DDOF) -> SeedStats:
  """A configuration's value over its seeds: the one mean over seeds.

  Selection (:func:`aggregate_rows`), the schedulers that rank
  configurations (halving, Hyperband, PBT) and the batched proposals (the
  value a trial reports and is told) all call it, so one configuration has
  one value wherever it is ranked.

  NaN policy: a value that is not a finite number (NaN, inf, None) is left
  out, and the mean is over the seeds that remain; with none left the mean
  is None, which every caller ranks worst (selection sorts it last, the
  schedulers score it ``-inf``, a proposal reports nothing and tells the
  study the trial failed). A seed with a non-finite value diverged (or
  skipped the period because it had): its number says nothing about the
  configuration beyond that, which the status counts carry. Leaving it out
  rather than scoring the configuration ``-inf`` keeps one unlucky seed from
  sinking a configuration whose other seeds trained (selection then ranks
  configurations with a diverged seed below those without, see
  :func:`aggregate_rows`). Callers drop the rows whose finite numbers are
  junk (a diverged row, :func:`has_value`) before calling.

  Args:
    values: one value per seed, in seed order (the order of the sum).
    ddof: delta degrees of freedom of the std (1: sample std; 0: population).

  Returns:
    The mean, std (float64, :func:`mean_std`) and count of the finite values.

  Examples:
    >>> over_seeds([0.5, float("nan"), 0.7, None]).mean
    0.6
    >>> over_seeds([float("nan")])
    SeedStats(mean=None, std=None, n=0)
  """
  finite = [float(v) for v in values if _finite(v)]
  mean, std = mean_std(finite, ddof=ddof)
  return SeedStats(mean, std, len(finite))


def is_healthy(row: Mapping[str, Any], metric: str | None = None) -> bool:
  """Whether a row trained without trouble (``ok``) and, if given, has a finite ``metric``."""
  if row.get("status") != STATUS_OK:
    return False
  return metric is None or _finite(row.get(metric))


def has_value(row: Mapping[str, Any], metric: str) -> bool:
  """Whether a row's ``metric`` is a real outcome: finite and not a diverged row's.

  Unstable and stopped rows have real (if poor) values: they count in means
  over seeds and in plots. A diverged row's metrics are junk (argmax of NaN
  logits scores some accuracy): never used as values.
  """
  return row.get("status") != STATUS_DIVERGED and _finite(row.get(metric))


def _finite(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# At most this many notes (why a variant is unstable, diverged or stopped)
# under a table; the files have all of them.
MAX_NOTES = 8


def notes(rows: Sequence[Mapping[str, Any]], limit: int = MAX_NOTES) -> list[str]:
  """``  variant 6 unstable: the training objective ended at ...``, per row not ``ok``.

  Examples:
    >>> notes([{"variant": 0, "status": "ok"},
    ...        {"variant": 1, "status": "diverged", "note": "a non-finite loss at step 3"}])
    ['  variant 1 diverged: a non-finite loss at step 3']
  """
  out = []
  for r in rows:
    status = r.get("status")
    if status in (None, STATUS_OK):
      continue
    note = r.get("note") or (f"stopped by the scheduler at step {r['stopped_step']}"
                             if r.get("stopped_step") is not None else "")
    out.append(f"  variant {r.get('variant')} {status}" + (f": {note}" if note else ""))
  if len(out) > limit:
    out = out[:limit - 1] + [f"  ... and {len(out) - limit + 1} more (the note column of "
                             "results.csv)"]
  return out


def split_of(metric: str) -> str | None:
  """``val``, ``test``, ``train`` or ``batch`` for a metric of that split, else None."""
  split = metric.partition("_")[0]
  return split if split in ("val", "test", "train", "batch") and "_" in metric else None


def report_metric(target: str) -> str | None:
  """The test counterpart of a validation target: the number to report.

  Examples:
    >>> report_metric("val_accuracy"), report_metric("test_nll"), report_metric("acc")
    ('test_accuracy', 'test_nll', None)
  """
  split, _, name = target.partition("_")
  return f"test_{name}" if split in ("val", "test") and name else None


def varying(settings: Iterable[Mapping[str, Any]], slot: str) -> list[str]:
  """Settings of a component (``"loss"``) whose values differ between variants.

  Args:
    settings: each variant's qualified settings.
    slot: the component (``loss``, ``optimizer``, ...).

  Examples:
    >>> varying([{"loss.name": "cross_entropy", "loss.label_smoothing": 0.0},
    ...          {"loss.name": "cross_entropy", "loss.label_smoothing": 0.1}], "loss")
    ['loss.label_smoothing']
  """
  settings = list(settings)
  names = list(dict.fromkeys(str(k) for s in settings for k in s
                             if k == slot or str(k).startswith(slot + ".")))
  return [k for k in names if len({repr(keys.freeze(s.get(k))) for s in settings}) > 1]


def check_comparable(target: str, settings: Iterable[Mapping[str, Any]]) -> None:
  """Refuses to rank on an objective when the sweep varies the loss.

  ``*_objective`` is each variant's own training loss: with label smoothing
  or the loss itself swept, its values are not comparable between variants.

  Raises:
    ConfigError: naming the varied settings and the metrics to use instead.
  """
  if not (target or "").endswith("objective"):
    return
  varied = varying(settings, "loss")
  if varied:
    split = split_of(target) if split_of(target) in ("val", "test", "train") else "val"
    raise errors.ConfigError(
        f"{target} is each variant's own loss, and the sweep varies the loss "
        f"({', '.join(varied)}): its values are not comparable between variants.",
        key="target", fix=f"rank on a metric that does not depend on the loss: "
                          f"{split}_nll or {split}_accuracy (classification), "
                          f"{split}_mse (regression)")


def aggregate_rows(rows: Sequence[Mapping[str, Any]], *, swept: Sequence[str],
                   metrics: Sequence[str], target: str, mode: str,
                   ddof: int = DEFAULT_DDOF) -> list[dict[str, Any]]:
  """Groups rows that differ only in ``seed``: the configurations, best first.

  The one place seeds are aggregated and a configuration is selected. A
  metric's mean and std are over the seeds with a real value
  (:func:`has_value`, :func:`over_seeds`): unstable and stopped seeds count
  (their metrics are what the configuration does), diverged seeds are left
  out and counted.

  Ranking, best first: configurations with a healthy (ok or stopped) seed and
  no diverged one; then those with a healthy seed and some diverged (their
  mean is over the survivors); then those whose every seed is unstable or
  diverged. Within each, those with an ok seed before those only stopped
  early, then by the mean ``target``, ties by the lower std, then by the
  first variant (sweep order). Means and stds are compared at
  :data:`RANK_RTOL` (:func:`tie_classes`): float noise in the last digits
  of a mean does not decide. The first configuration is ``best`` when it has
  a healthy seed.

  Args:
    rows: per-variant rows.
    swept: the swept columns (``seed`` among them is what is averaged over).
    metrics: the metric columns to aggregate.
    target, mode: ranking metric and ``"max"``/``"min"``.
    ddof: delta degrees of freedom of the std (1: sample std; 0: population).

  Returns:
    One dict per configuration, best first: the swept columns but seed,
    ``best`` (the selected configuration), ``seeds`` (list), ``n``, the
    counts ``ok``, ``stopped``, ``unstable``, ``diverged``, ``status`` (the
    worst of its seeds), ``variants`` (indices), ``params``, and
    ``<metric>_mean``, ``<metric>_std``, ``<metric>_n`` (values used) for
    each metric; a mean with no value and a std with fewer than ``ddof + 1``
    values are None. ``tie`` is ``"="`` when a configuration's target mean
    ties with the one ranked just above it (``"=="`` when its std ties
    too: variant order decided), else ``""``; the first row's
    ``tie_break`` says what put it first when it tied with the second
    (``"lower std"``, ``"variant order"``), else None.

  Examples:
    >>> rows = [{"variant": i, "lr": 0.1, "seed": i, "status": "ok", "acc": a}
    ...         for i, a in enumerate([0.5, 0.7])]
    >>> agg = aggregate_rows(rows, swept=["lr", "seed"], metrics=["acc"],
    ...                      target="acc", mode="max")
    >>> agg[0]["acc_mean"], round(agg[0]["acc_std"], 4), agg[0]["n"], agg[0]["best"]
    (0.6, 0.1414, 2, True)
  """
  config_cols = [c for c in swept if c != SEED]
  groups: dict[tuple, list[Mapping[str, Any]]] = {}
  for r in sorted(rows, key=lambda r: r.get("variant", 0)):
    # PBT's rows carry the values they ended with: ``member`` keeps two
    # members that happen to end alike apart (only a member's seeds merge).
    groups.setdefault((*(keys.freeze(r.get(c)) for c in config_cols), r.get("member")),
                      []).append(r)
  out = []
  for members in groups.values():
    members = sorted(members, key=lambda r: r.get("variant", 0))
    first = members[0]
    row: dict[str, Any] = {c: first.get(c) for c in config_cols}
    row["best"] = False
    row["seeds"] = [r.get(SEED) for r in members]
    row["n"] = len(members)
    for status in STATUSES:
      row[status] = sum(r.get("status") == status for r in members)
    row["status"] = max((r.get("status") for r in members),
                        key=lambda s: _STATUS_RANK.get(s, len(_STATUS_RANK)))
    row["variants"] = [r.get("variant") for r in members]
    row["params"] = first.get("params")
    for m in metrics:
      stats = over_seeds((r.get(m) for r in members if r.get("status") != STATUS_DIVERGED),
                         ddof=ddof)
      row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_n"] = stats
    out.append(row)
  means = tie_classes([None if r[f"{target}_mean"] is None else
                       (-r[f"{target}_mean"] if mode == "max" else r[f"{target}_mean"])
                       for r in out])
  stds = tie_classes([r[f"{target}_std"] for r in out])
  keys_ = [(*_config_key(r, target, mode), means[j], stds[j], r["variants"][0])
           for j, r in enumerate(out)]
  order = sorted(range(len(out)), key=lambda j: keys_[j])
  out, keys_ = [out[j] for j in order], [keys_[j] for j in order]
  for j, row in enumerate(out):
    row["tie"] = ""
    row["tie_break"] = None
    if j and keys_[j][:4] == keys_[j - 1][:4] and row[f"{target}_mean"] is not None:
      row["tie"] = "==" if keys_[j][4] == keys_[j - 1][4] else "="
  if len(out) > 1 and out[1]["tie"]:
    out[0]["tie_break"] = "variant order" if out[1]["tie"] == "==" else "lower std"
  if out and keys_[0][0] < 2:
    out[0]["best"] = True
  return out


def _config_key(row: Mapping[str, Any], target: str, mode: str) -> tuple:
  """The coarse rank of a configuration: health, then whether it has a mean."""
  healthy = row[STATUS_OK] + row[STATUS_STOPPED]
  rank = 2 * (healthy == 0) + (row[STATUS_DIVERGED] > 0)
  return (rank, row[STATUS_OK] == 0, row.get(f"{target}_mean") is None)


def seeds_swept(rows: Sequence[Mapping[str, Any]], swept: Sequence[str]) -> bool:
  """Whether some configuration was trained with more than one seed."""
  if SEED not in swept:
    return False
  config_cols = [c for c in swept if c != SEED]
  configs = [(*(keys.freeze(r.get(c)) for c in config_cols), r.get("member")) for r in rows]
  return len(set(configs)) < len(configs)
