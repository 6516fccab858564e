"""In-memory datasets with train, validation and test splits.

A :class:`Dataset` holds numpy arrays for a train, a validation and a test
split, each a dict with at least ``"x"`` (inputs) and ``"y"`` (targets),
leading axis = examples. Variants are selected on the validation split; the
test split is evaluated too, as the number to report for the selected one.
The engine puts them on the device once and passes them to the compiled
program as an un-batched argument (``in_axes=None``), so a population of
variants never copies the data per variant. Minibatch indices are drawn inside
the compiled program from each variant's key.

Datasets are looked up by name (``data: {name: digits}`` in a config) through
:func:`load`; register your own with :func:`register`.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep.components import registry

TASKS = ("classification", "regression", "language_model")


# The share of the training data held out for validation when no validation
# split is given (stratified by class for classification, seeded).
VAL_FRACTION = 0.1


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train, validation and test arrays plus what the task is.

  Attributes:
    train: dict of arrays (``x``, ``y``), leading axis = examples.
    test: dict of arrays with the same keys and trailing shapes.
    task: one of ``classification``, ``regression``, ``language_model``.
    num_classes: number of classes (classification) or vocabulary size
      (language model); ``None`` for regression.
    name: a short name for headers and reports.
    info: free-form metadata (e.g. the vocabulary).
    val: the validation split (same keys), or ``None``: then variants are
      ranked on the test split, which the tables say.
  """

  train: Mapping[str, np.ndarray]
  test: Mapping[str, np.ndarray]
  task: str = "classification"
  num_classes: int | None = None
  name: str = "arrays"
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  val: Mapping[str, np.ndarray] | None = None

  def splits(self) -> list[tuple[str, Mapping[str, np.ndarray]]]:
    """``[(name, arrays)]`` of the splits present: train, val, test."""
    return [(n, s) for n, s in (("train", self.train), ("val", self.val),
                                ("test", self.test)) if s is not None]

  def __post_init__(self):
    if self.task not in TASKS:
      raise errors.ConfigError(
          f"unknown task '{self.task}'.", key="data.task",
          fix=f"use one of: {', '.join(TASKS)}")
    for split_name, split in self.splits():
      for k in ("x", "y"):
        if k not in split:
          raise errors.ConfigError(
              f"the {split_name} split has no '{k}' array.", key="data",
              fix="give both 'x' (inputs) and 'y' (targets) for train and test")
      for k, v in split.items():
        check_array(v, f"{k}_{split_name}")
      n = {k: len(v) for k, v in split.items()}
      if len(set(n.values())) != 1:
        raise errors.ConfigError(
            f"the {split_name} arrays have different lengths {n}.", key="data",
            fix="every array in a split needs the same number of examples")
    for split_name, split in self.splits()[1:]:
      for k in self.train:
        if k in split and np.shape(self.train[k])[1:] != np.shape(split[k])[1:]:
          raise errors.ConfigError(
              f"train '{k}' has per-example shape {np.shape(self.train[k])[1:]} "
              f"but {split_name} '{k}' has {np.shape(split[k])[1:]}.", key="data",
              fix=f"train and {split_name} examples must have the same shape")

  @property
  def num_train(self) -> int:
    return len(self.train["x"])

  @property
  def num_val(self) -> int:
    return 0 if self.val is None else len(self.val["x"])

  @property
  def num_test(self) -> int:
    return len(self.test["x"])

  def describe(self) -> str:
    x = self.train["x"]
    return (f"{self.name}: {self.num_train} train / {self.num_val} val / {self.num_test} "
            f"test, x {tuple(x.shape[1:])} {x.dtype}, task {self.task}"
            + (f", {self.num_classes} classes" if self.num_classes else ""))


def arrays(x_train, y_train, x_test, y_test, *, x_val=None, y_val=None,
           val_fraction: float | None = None, val_seed: int = 0, task: str | None = None,
           num_classes: int | None = None, name: str = "arrays") -> Dataset:
  """Wraps user arrays as a :class:`Dataset` with a validation split.

  The validation split is ``x_val, y_val`` when given; otherwise
  ``val_fraction`` of the training examples (default
  :data:`VAL_FRACTION`, stratified by class for classification, drawn with
  ``val_seed``) are held out of training for it; ``val_fraction=0`` keeps
  them all for training (variants are then ranked on the test split).

  The task is inferred when not given: integer targets mean classification
  (with ``num_classes = max(y) + 1``), float targets mean regression.
  ``uint8`` inputs (raw image pixels) are kept as they are, with a warning
  to scale them (``x / 255.0``).

  Raises:
    ConfigError: for a 0-d or empty array, one that is not numeric, a
      fraction outside [0, 1), or a split too small to hold a validation set.

  Examples:
    >>> import numpy as np, jaxsweep as js
    >>> ds = js.data.arrays(np.zeros((20, 3)), np.arange(20) % 2,
    ...                     np.zeros((4, 3)), np.arange(4) % 2)
    >>> ds.task, ds.num_classes, ds.num_train, ds.num_val
    ('classification', 2, 18, 2)
  """
  given = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
  if (x_val is None) != (y_val is None):
    raise errors.ConfigError("give both x_val and y_val, or neither.",
                             key="data.x_val" if x_val is None else "data.y_val",
                             fix="pass the validation inputs and targets together, or "
                                 "val_fraction=... to hold out part of the training data")
  if x_val is not None:
    given.update(x_val=x_val, y_val=y_val)
  arrs = {k: check_array(v, k) for k, v in given.items()}
  for split_name in ("train", "val", "test"):
    if f"x_{split_name}" in arrs and len(arrs[f"x_{split_name}"]) != len(arrs[f"y_{split_name}"]):
      nx, ny = len(arrs[f"x_{split_name}"]), len(arrs[f"y_{split_name}"])
      raise errors.ConfigError(
          f"the {split_name} split has {nx} inputs (x_{split_name}) but {ny} targets "
          f"(y_{split_name}).", key=f"data.y_{split_name}",
          fix=f"give one target per input: x_{split_name} and y_{split_name} need the same "
              "length (leading axis)")
  for k, a in arrs.items():  # Before a validation split is held out: your indices.
    check_finite(a, k)
    check_float32(a, k)
  ys_bool = [k for k, a in arrs.items() if k.startswith("y_") and a.dtype == np.bool_]
  if ys_bool and task is None:
    raise errors.ConfigError(
        f"{ys_bool[0]} holds booleans: jaxsweep does not guess whether they are 2 classes "
        "or 0/1 regression targets.", key=f"data.{ys_bool[0]}",
        fix="pass task='classification' (False -> class 0, True -> class 1) or "
            "task='regression' (0.0 / 1.0), or cast them yourself (y.astype(np.int32))")
  if any(arrs[k].dtype == np.uint8 for k in ("x_train", "x_test", "x_val") if k in arrs):
    warnings.warn(
        "jaxsweep: the inputs x are uint8 (raw pixels 0..255?); models train badly on "
        "unscaled inputs: normalise them, e.g. js.data.arrays(x_train / 255.0, ...).",
        UserWarning, stacklevel=2)
  if task is None:
    task = ("classification" if np.issubdtype(arrs["y_train"].dtype, np.integer)
            else "regression")
  xs = {k: _as_float_or_int(v) for k, v in arrs.items() if k.startswith("x_")}
  ys = {k: v for k, v in arrs.items() if k.startswith("y_")}
  if task in ("classification", "language_model"):
    for k, y in ys.items():
      bad = np.mod(y, 1) != 0 if not np.issubdtype(y.dtype, np.integer) else None
      if bad is not None and bad.any():
        raise errors.ConfigError(
            f"task='{task}' needs integer class labels, but {k} holds {y.dtype} values "
            f"that are not whole numbers ({int(bad.sum())} of them, first "
            f"{float(y[bad][0])!r} at example {first_example(bad)}).", key=f"data.{k}",
            fix="give class indices 0..num_classes-1 as ints, or use task='regression' "
                "for real-valued targets")
    for k, y in ys.items():
      check_int32(y, k)
    ys = {k: y.astype(np.int32) for k, y in ys.items()}
    if num_classes is None:  # From the values checked above: no wrapped label counts.
      num_classes = int(max(y.max() for y in ys.values())) + 1
  else:
    ys = {k: y.astype(np.float32) for k, y in ys.items()}
  train = {"x": xs["x_train"], "y": ys["y_train"]}
  if "x_val" in xs:
    val = {"x": xs["x_val"], "y": ys["y_val"]}
  else:
    fraction = VAL_FRACTION if val_fraction is None else val_fraction
    train, val = hold_out(train, fraction, seed=val_seed,
                          stratify=task == "classification")
  return Dataset(train=train, test={"x": xs["x_test"], "y": ys["y_test"]}, val=val,
                 task=task, num_classes=num_classes, name=name)


def hold_out(split: Mapping[str, np.ndarray], fraction: float, *, seed: int = 0,
             stratify: bool = False, key: str = "data.val_fraction"
             ) -> tuple[dict, dict | None]:
  """Holds ``fraction`` of a split's examples out, seeded (and stratified).

  Args:
    split: arrays with one row per example (``y`` holds the classes when
      stratifying).
    fraction: in ``[0, 1)``; 0 holds nothing out (returns ``None``).
    seed: the seed of the draw.
    stratify: every class keeps its share of the held-out examples (at
      least one of each class with two or more examples).
    key: the setting named by errors.

  Returns:
    ``(kept, held_out)``, each keeping the examples' original order.

  Raises:
    ConfigError: for a fraction outside ``[0, 1)`` or a split too small.
  """
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
      0.0 <= fraction < 1.0):
    raise errors.ConfigError(f"must be in [0, 1), got {fraction!r}.", key=key,
                             fix="use e.g. 0.1 (0 keeps every example for training)")
  if fraction == 0:
    return dict(split), None
  n = len(split["x"])
  rng = np.random.default_rng(seed)
  if stratify:
    y = np.asarray(split["y"]).reshape(n, -1)[:, 0]
    picked = []
    for c in np.unique(y):
      idx = np.flatnonzero(y == c)
      take = int(round(len(idx) * fraction))
      take = max(take, 1) if len(idx) > 1 else take
      picked.append(rng.permutation(idx)[:take])
    held = np.concatenate(picked)
  else:
    held = rng.permutation(n)[:max(1, int(round(n * fraction)))]
  mask = np.zeros(n, bool)
  mask[held] = True
  if mask.all() or not mask.any():
    raise errors.ConfigError(
        f"holding out {fraction:g} of {n} examples leaves "
        f"{'no training' if mask.all() else 'no validation'} example.", key=key,
        fix="give more training examples, an explicit validation split, or val_fraction=0")
  return ({k: np.asarray(v)[~mask] for k, v in split.items()},
          {k: np.asarray(v)[mask] for k, v in split.items()})


def _as_float_or_int(a: np.ndarray) -> np.ndarray:
  if np.issubdtype(a.dtype, np.integer):
    return a.astype(np.int32)
  return a.astype(np.float32)


def first_example(mask: np.ndarray) -> int:
  """The example (index on the leading axis) of the first True of ``mask``."""
  return int(np.unravel_index(int(np.argmax(mask)), mask.shape)[0])


def check_array(a: Any, name: str) -> np.ndarray:
  """``a`` as a numpy array with one row per example.

  Args:
    a: an array-like.
    name: what it is (``x_train``); the error's key is ``data.<name>``.

  Raises:
    ConfigError: for a 0-d (scalar) or empty array, or one that is not numbers.
  """
  key = f"data.{name}"
  try:
    arr = np.asarray(a)
  except (TypeError, ValueError) as e:
    raise errors.ConfigError(f"cannot read it as an array: {e}", key=key,
                             fix="give a numpy array with one row per example") from None
  if arr.ndim == 0:
    raise errors.ConfigError(
        f"is a 0-d array (a single value {arr.item()!r}), not one row per example.",
        key=key, fix="give an array of shape [num_examples, ...], e.g. np.asarray(values)"
                     "[:, None] for one feature per example")
  if not len(arr):
    raise errors.ConfigError(
        f"is empty (shape {arr.shape}): the split has no examples.", key=key,
        fix="give at least one example in every split (train and test)")
  if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
    raise errors.ConfigError(
        f"holds {arr.dtype} values, not numbers.", key=key,
        fix="convert it to a numeric array (floats for inputs, ints for class labels)")
  return arr


INT32_MAX = int(np.iinfo(np.int32).max)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_int32(y: np.ndarray, name: str) -> None:
  """Refuses labels that would wrap when cast to int32 (2**40 -> 0).

  Raises:
    ConfigError: with key ``data.<name>``, naming the first such label.
  """
  if y.dtype == np.bool_ or not y.size:
    return
  if np.issubdtype(y.dtype, np.integer) and np.iinfo(y.dtype).max <= INT32_MAX and (
      np.iinfo(y.dtype).min >= -INT32_MAX - 1):
    return
  bad = (y > INT32_MAX) | (y < -INT32_MAX - 1)
  if bad.any():
    raise errors.ConfigError(
        f"{int(bad.sum())} label{'s' if bad.sum() > 1 else ''} outside the int32 range "
        f"(first {y[bad][0].item()!r} at example {first_example(bad)}); class labels are "
        "int32 and would wrap around.", key=f"data.{name}",
        fix="give class indices 0..num_classes-1 (remap them, e.g. "
            "np.unique(y, return_inverse=True)[1])")


def check_float32(a: np.ndarray, name: str) -> None:
  """Refuses float values that become inf as float32 (|x| > 3.4e38).

  Raises:
    ConfigError: with key ``data.<name>``, naming the first such value.
  """
  if not np.issubdtype(a.dtype, np.floating) or np.finfo(a.dtype).max <= FLOAT32_MAX:
    return
  bad = np.abs(a) > FLOAT32_MAX
  if bad.any():
    raise errors.ConfigError(
        f"{int(bad.sum())} value{'s' if bad.sum() > 1 else ''} beyond float32's range "
        f"(first {float(a[bad][0])!r} in example {first_example(bad)}); training is in "
        "float32, where they would be inf.", key=f"data.{name}",
        fix="rescale the data (e.g. standardise each feature, or take a log) so values "
            "fit in float32 (|x| < 3.4e38)")


def check_finite(a: np.ndarray, name: str) -> None:
  """Refuses NaN or inf in a float array, with the count and first example.

  Raises:
    ConfigError: with key ``data.<name>``.
  """
  if not np.issubdtype(a.dtype, np.inexact):
    return
  bad = ~np.isfinite(a)
  if not bad.any():
    return
  nan = int(np.isnan(a).sum())
  inf = int(bad.sum()) - nan
  found = " and ".join(p for p in (f"{nan} NaN" if nan else "", f"{inf} inf" if inf else "")
                       if p)
  effect = ("every variant would diverge at its first step" if name.endswith("_train")
            else f"every variant would report a nan {name.rpartition('_')[2]} metric")
  raise errors.ConfigError(
      f"{found} value{'s' if nan + inf > 1 else ''} among {a.size} (first in example "
      f"{first_example(bad)}); {effect}.", key=f"data.{name}",
      fix="drop or fill the non-finite examples before training (keep the rows where "
          "np.isfinite(a).all(axis=1), or a = np.nan_to_num(a))")


def split(x, y, *, test_fraction: float, seed: int, key: str = "data"):
  """A seeded shuffled train/test split of numpy arrays."""
  if not 0.0 < test_fraction < 1.0:
    raise errors.ConfigError(
        f"test_fraction must be strictly between 0 and 1, got {test_fraction}.",
        key=f"{key}.test_fraction", fix="use e.g. test_fraction: 0.2")
  n = len(x)
  perm = np.random.default_rng(seed).permutation(n)
  n_test = max(1, int(round(n * test_fraction)))
  test, train = perm[:n_test], perm[n_test:]
  return x[train], y[train], x[test], y[test]


# --------------------------------------------------------------------------
# Registry (the built-in datasets are in :mod:`jaxsweep.components.data.builtin`).

REGISTRY = registry.Registry("dataset", slot="data", default="digits")
register = REGISTRY.register
names = REGISTRY.names
loader = REGISTRY.get


def load(name: str, **kwargs) -> Dataset:
  """Loads a registered dataset by name; unknown arguments are an error.

  Examples:
    >>> import jaxsweep as js
    >>> js.data.load("synthetic", num_train=64, num_test=32).num_train
    64
  """
  return REGISTRY.build(name, **kwargs)


# The datasets load_cached keeps, least recently used first (see its docstring).
CACHE_SIZE = 8
# A folder argument is checked file by file, up to this many files.
CACHE_MAX_FILES = 10_000
_CACHE: collections.OrderedDict[tuple, Dataset] = collections.OrderedDict()


def load_cached(name: str, **kwargs) -> Dataset:
  """Like :func:`load`, memoised on the arguments and on the files they name.

  The cache is keyed on the arguments and, for every argument named ``path``
  or ending in ``_path`` (``npz``'s file, ``mnist``'s and ``cifar10``'s
  folders, ``text_classification``'s CSV or JSONL file or class folders, and
  a registered dataset's arguments named so), on each file's
  ``(path, size, mtime_ns)``; a folder counts every file below it (its first
  ``CACHE_MAX_FILES`` in sorted order). A file edited in place, replaced,
  added or removed is therefore read again, within one process too.

  It holds the ``CACHE_SIZE`` (8) most recently used datasets: a sweep of
  many data settings keeps memory bounded. :func:`clear_cache` empties it.

  Examples:
    >>> a = load_cached("synthetic", num_train=64, num_test=32)
    >>> a is load_cached("synthetic", num_train=64, num_test=32)
    True
    >>> clear_cache()
    >>> a is load_cached("synthetic", num_train=64, num_test=32)
    False
  """
  key = (name, tuple(sorted((k, repr(v)) for k, v in kwargs.items())),
         tuple(_files_state(v) for k, v in sorted(kwargs.items())
               if k == "path" or k.endswith("_path")))
  if key in _CACHE:
    _CACHE.move_to_end(key)
    return _CACHE[key]
  ds = load(name, **kwargs)
  _CACHE[key] = ds
  while len(_CACHE) > CACHE_SIZE:
    _CACHE.popitem(last=False)
  return ds


def clear_cache() -> None:
  """Forgets every dataset :func:`load_cached` kept (frees their memory)."""
  _CACHE.clear()


def _files_state(path) -> tuple | None:
  """``(path, size, mtime_ns)`` of a file, or of every file below a folder."""
  if not isinstance(path, (str, os.PathLike)):
    return None
  path = os.path.expanduser(os.fspath(path))
  try:
    st = os.stat(path)
  except OSError:
    return (path, None)  # Missing: load() says so (and nothing is cached).
  if not os.path.isdir(path):
    return ((path, st.st_size, st.st_mtime_ns),)
  files = []
  for root, dirs, names in os.walk(path):
    dirs.sort()
    for n in sorted(names):
      if len(files) >= CACHE_MAX_FILES:
        return tuple(files)
      try:
        f = os.path.join(root, n)
        st = os.stat(f)
      except OSError:
        continue
      files.append((f, st.st_size, st.st_mtime_ns))
  return tuple(files)
