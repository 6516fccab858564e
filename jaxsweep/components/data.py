"""In-memory datasets, shared by every variant of a sweep.

A :class:`Dataset` holds numpy arrays for a train and a test split, each a dict
with at least ``"x"`` (inputs) and ``"y"`` (targets), leading axis = examples.
The engine puts them on the device once and passes them to the compiled
program as an un-batched argument (``in_axes=None``), so a population of
variants never copies the data per variant. Minibatch indices are drawn inside
the compiled program from each variant's key.

Datasets are looked up by name (``data: {name: digits}`` in a config) through
:func:`load`; register your own with :func:`register`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep.components import registry

TASKS = ("classification", "regression", "language_model")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train and test arrays plus what the task is.

  Attributes:
    train: dict of arrays (``x``, ``y``), leading axis = examples.
    test: dict of arrays with the same keys and trailing shapes.
    task: one of ``classification``, ``regression``, ``language_model``.
    num_classes: number of classes (classification) or vocabulary size
      (language model); ``None`` for regression.
    name: a short name for headers and reports.
    info: free-form metadata (e.g. the vocabulary).
  """

  train: Mapping[str, np.ndarray]
  test: Mapping[str, np.ndarray]
  task: str = "classification"
  num_classes: int | None = None
  name: str = "arrays"
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.task not in TASKS:
      raise errors.ConfigError(
          f"unknown task '{self.task}'.", key="data.task",
          fix=f"use one of: {', '.join(TASKS)}")
    for split_name, split in (("train", self.train), ("test", self.test)):
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
    for k in self.train:
      if k in self.test and np.shape(self.train[k])[1:] != np.shape(self.test[k])[1:]:
        raise errors.ConfigError(
            f"train '{k}' has per-example shape {np.shape(self.train[k])[1:]} "
            f"but test '{k}' has {np.shape(self.test[k])[1:]}.", key="data",
            fix="train and test examples must have the same shape")

  @property
  def num_train(self) -> int:
    return len(self.train["x"])

  @property
  def num_test(self) -> int:
    return len(self.test["x"])

  def describe(self) -> str:
    x = self.train["x"]
    return (f"{self.name}: {self.num_train} train / {self.num_test} test, "
            f"x {tuple(x.shape[1:])} {x.dtype}, task {self.task}"
            + (f", {self.num_classes} classes" if self.num_classes else ""))


def arrays(x_train, y_train, x_test, y_test, *, task: str | None = None,
           num_classes: int | None = None, name: str = "arrays") -> Dataset:
  """Wraps user arrays as a :class:`Dataset`.

  The task is inferred when not given: integer targets mean classification
  (with ``num_classes = max(y) + 1``), float targets mean regression.
  ``uint8`` inputs (raw image pixels) are kept as they are, with a warning
  to scale them (``x / 255.0``).

  Raises:
    ConfigError: for a 0-d or empty array, or one that is not numeric.

  Examples:
    >>> import numpy as np, jaxsweep as js
    >>> ds = js.data.arrays(np.zeros((8, 3)), np.arange(8) % 2,
    ...                     np.zeros((4, 3)), np.arange(4) % 2)
    >>> ds.task, ds.num_classes
    ('classification', 2)
  """
  given = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
  arrs = {k: check_array(v, k) for k, v in given.items()}
  if any(arrs[k].dtype == np.uint8 for k in ("x_train", "x_test")):
    warnings.warn(
        "jaxsweep: the inputs x are uint8 (raw pixels 0..255?); models train badly on "
        "unscaled inputs: normalise them, e.g. js.data.arrays(x_train / 255.0, ...).",
        UserWarning, stacklevel=2)
  y_train, y_test = arrs["y_train"], arrs["y_test"]
  if task is None:
    task = ("classification" if np.issubdtype(y_train.dtype, np.integer)
            else "regression")
  x_train = _as_float_or_int(arrs["x_train"])
  x_test = _as_float_or_int(arrs["x_test"])
  if task in ("classification", "language_model"):
    for k, y in (("y_train", y_train), ("y_test", y_test)):
      bad = np.mod(y, 1) != 0 if not np.issubdtype(y.dtype, np.integer) else None
      if bad is not None and bad.any():
        raise errors.ConfigError(
            f"task='{task}' needs integer class labels, but {k} holds {y.dtype} values "
            f"that are not whole numbers ({int(bad.sum())} of them, first "
            f"{float(y[bad][0])!r} at example {first_example(bad)}).", key=f"data.{k}",
            fix="give class indices 0..num_classes-1 as ints, or use task='regression' "
                "for real-valued targets")
    y_train = y_train.astype(np.int32)
    y_test = y_test.astype(np.int32)
    if num_classes is None:
      num_classes = int(max(y_train.max(), y_test.max())) + 1
  else:
    y_train = y_train.astype(np.float32)
    y_test = y_test.astype(np.float32)
  return Dataset(train={"x": x_train, "y": y_train},
                 test={"x": x_test, "y": y_test},
                 task=task, num_classes=num_classes, name=name)


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
# Registry.

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


_CACHE: dict[tuple, Dataset] = {}


def load_cached(name: str, **kwargs) -> Dataset:
  """Like :func:`load`, memoised on the arguments (datasets are immutable)."""
  key = (name, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
  if name == "npz":  # A file can change between runs: key on its mtime too.
    path = kwargs.get("path")
    key += (os.path.getmtime(path) if path and os.path.exists(path) else None,)
  if key not in _CACHE:
    _CACHE[key] = load(name, **kwargs)
  return _CACHE[key]


@REGISTRY.register("digits")
def digits(*, test_fraction: float = 0.2, seed: int = 0,
           as_images: bool = False) -> Dataset:
  """scikit-learn's 1,797 8x8 handwritten digits, 10 classes.

  Pixels are scaled to [0, 1]. ``as_images`` keeps the 8x8x1 image shape for
  convolutional models; otherwise each image is a flat 64-vector.
  """
  try:
    from sklearn import datasets as skdatasets
  except ImportError as e:  # pragma: no cover - scikit-learn is a dependency.
    raise errors.ConfigError(
        "the digits dataset needs scikit-learn.", key="data.name",
        fix="pip install scikit-learn") from e
  bunch = skdatasets.load_digits()
  x = (bunch.images / 16.0).astype(np.float32)
  x = x[..., None] if as_images else x.reshape(len(x), -1)
  y = bunch.target.astype(np.int32)
  xtr, ytr, xte, yte = split(x, y, test_fraction=test_fraction, seed=seed)
  return arrays(xtr, ytr, xte, yte, task="classification", num_classes=10,
                name="digits")


@REGISTRY.register("synthetic")
def synthetic(*, num_train: int = 256, num_test: int = 128, num_features: int = 16,
              num_classes: int = 4, noise: float = 0.5, seed: int = 0) -> Dataset:
  """Gaussian blobs: a small, fast classification task for tests."""
  for k, v in (("num_train", num_train), ("num_test", num_test),
               ("num_features", num_features), ("num_classes", num_classes)):
    if int(v) < 1:
      raise errors.ConfigError(f"{k} must be >= 1, got {v}.", key=f"data.{k}")
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(num_classes, num_features)).astype(np.float32) * 2.0
  def make(n):
    y = rng.integers(0, num_classes, size=n)
    x = centers[y] + noise * rng.normal(size=(n, num_features))
    return x.astype(np.float32), y.astype(np.int32)
  xtr, ytr = make(num_train)
  xte, yte = make(num_test)
  return arrays(xtr, ytr, xte, yte, task="classification",
                num_classes=num_classes, name="synthetic")


@REGISTRY.register("regression")
def regression(*, num_train: int = 512, num_test: int = 256, num_features: int = 8,
               noise: float = 0.1, seed: int = 0) -> Dataset:
  """A synthetic non-linear regression task (targets of shape [1]), for MSE."""
  rng = np.random.default_rng(seed)
  w1 = rng.normal(size=(num_features, 16)) / np.sqrt(num_features)
  w2 = rng.normal(size=(16, 1)) / 4.0
  def make(n):
    x = rng.normal(size=(n, num_features))
    y = np.tanh(x @ w1) @ w2 + noise * rng.normal(size=(n, 1))
    return x.astype(np.float32), y.astype(np.float32)
  xtr, ytr = make(num_train)
  xte, yte = make(num_test)
  return arrays(xtr, ytr, xte, yte, task="regression", name="regression")


UNKNOWN_CHAR = "\ufffd"


def _text_corpus(seed: int) -> str:
  """The help texts of ``pydoc_data.topics`` in a seeded order of topics."""
  try:
    from pydoc_data import topics as topics_lib  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # pragma: no cover - part of CPython's stdlib.
    raise errors.ConfigError(
        "the text dataset needs the standard library's pydoc_data package, "
        "which this Python lacks.", key="data.name",
        fix="use a full CPython install, or pass your own text with js.data.arrays") from e
  topics = topics_lib.topics
  keys = sorted(topics)
  order = np.random.default_rng(seed).permutation(len(keys))
  return "\n\n".join(topics[keys[i]] for i in order)


def _windows(ids: np.ndarray, seq_len: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
  """(x, y) pairs ``ids[t:t+T]``, ``ids[t+1:t+T+1]`` for t = 0, stride, ..."""
  starts = np.arange(0, len(ids) - seq_len, stride)
  idx = starts[:, None] + np.arange(seq_len)[None, :]
  return ids[idx], ids[idx + 1]


@REGISTRY.register("text")
def text(*, seq_len: int = 32, max_chars: int = 200_000, test_fraction: float = 0.1,
         stride: int | None = None, seed: int = 0) -> Dataset:
  """Character-level language modelling on English prose that ships with Python.

  The corpus is the help text of every topic in the standard library's
  ``pydoc_data.topics`` (about 465k characters on CPython 3.11; the exact
  text depends on the Python version). Topics are concatenated in an order
  drawn from ``seed``, capped at ``max_chars``, and split *contiguously*: the
  first ``1 - test_fraction`` of the characters train, the rest test, so no
  test window overlaps a training one.

  The vocabulary is built from the training text; index 0 (``"\ufffd"``)
  stands for any test character never seen in training. Examples are windows
  ``x = ids[t:t+T]``, ``y = ids[t+1:t+T+1]`` (int32 ``[N, T]``): train
  windows start every ``stride`` characters, test windows every ``seq_len``
  (each test character is predicted exactly once).

  Args:
    seq_len: window length T.
    max_chars: cap on the corpus size (characters).
    test_fraction: fraction of the characters held out.
    stride: distance between training windows (default ``seq_len``; smaller
      values give more, overlapping windows).
    seed: order of the topics, hence which ones are held out.

  Returns:
    A ``language_model`` Dataset; ``num_classes`` is the vocabulary size and
    ``info["vocab"]`` the vocabulary as a string (``vocab[i]`` is token i).

  Examples:
    >>> import jaxsweep as js
    >>> ds = js.data.load("text", seq_len=16, max_chars=5000)
    >>> ds.train["x"].shape[1], ds.task, ds.info["vocab"][0]
    (16, 'language_model', '\ufffd')
  """
  for k, v in (("seq_len", seq_len), ("max_chars", max_chars)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise errors.ConfigError(f"{k} must be a positive integer, got {v!r}.",
                               key=f"data.{k}")
  stride = seq_len if stride is None else stride
  if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
    raise errors.ConfigError(f"stride must be a positive integer, got {stride!r}.",
                             key="data.stride")
  if not 0.0 < test_fraction < 1.0:
    raise errors.ConfigError(
        f"test_fraction must be strictly between 0 and 1, got {test_fraction}.",
        key="data.test_fraction", fix="use e.g. test_fraction: 0.1")
  corpus = _text_corpus(int(seed))[:int(max_chars)]
  n_train = int(round(len(corpus) * (1.0 - test_fraction)))
  train_text, test_text = corpus[:n_train], corpus[n_train:]
  if min(len(train_text), len(test_text)) <= seq_len:
    raise errors.ConfigError(
        f"max_chars={max_chars} leaves {len(train_text)} train and {len(test_text)} "
        f"test characters, too few for windows of seq_len={seq_len}.",
        key="data.max_chars", fix="raise max_chars or lower seq_len")
  vocab = UNKNOWN_CHAR + "".join(sorted(set(train_text) - {UNKNOWN_CHAR}))
  lookup = {c: i for i, c in enumerate(vocab)}

  def encode(s: str) -> np.ndarray:
    return np.fromiter((lookup.get(c, 0) for c in s), dtype=np.int32, count=len(s))

  x_train, y_train = _windows(encode(train_text), int(seq_len), int(stride))
  x_test, y_test = _windows(encode(test_text), int(seq_len), int(seq_len))
  return Dataset(train={"x": x_train, "y": y_train}, test={"x": x_test, "y": y_test},
                 task="language_model", num_classes=len(vocab), name="text",
                 info={"vocab": vocab, "unknown_index": 0,
                       "source": "pydoc_data.topics", "num_chars": len(corpus)})


def decode(ids, vocab: str) -> str:
  """Token ids back to text with a :func:`text` vocabulary."""
  return "".join(vocab[int(i)] for i in np.ravel(ids))


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@REGISTRY.register("npz")
def npz(*, path: str, task: str | None = None,
        num_classes: int | None = None) -> Dataset:
  """A user ``.npz`` file with arrays ``x_train, y_train, x_test, y_test``."""
  if not path:
    raise errors.ConfigError("the npz dataset needs a path.", key="data.path",
                             fix="set data: {name: npz, path: FILE.npz}")
  path = os.path.expanduser(str(path))
  if not os.path.exists(path):
    raise errors.ConfigError(f"file not found: {path}", key="data.path",
                             fix="check the path (relative paths start at the "
                                 "current directory)")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in NPZ_KEYS if k not in f.files]
      if missing:
        raise errors.ConfigError(
            f"{path} has no array(s) {', '.join(missing)} "
            f"(it has: {', '.join(f.files) or 'nothing'}).", key="data.path",
            fix=f"save the file with np.savez(path, {', '.join(k + '=...' for k in NPZ_KEYS)})")
      arrs = {k: f[k] for k in NPZ_KEYS}
  except errors.ConfigError:
    raise
  except Exception as e:  # zipfile.BadZipFile, ValueError, OSError ...
    raise errors.ConfigError(f"cannot read {path} as .npz: {e}", key="data.path",
                             fix="write it with numpy.savez") from e
  return arrays(arrs["x_train"], arrs["y_train"], arrs["x_test"], arrs["y_test"],
                task=task, num_classes=num_classes,
                name=os.path.basename(path))
