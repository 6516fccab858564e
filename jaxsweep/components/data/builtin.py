"""The built-in datasets: ``digits``, ``synthetic``, ``regression``, ``text``, ``npz``.

Each returns a :class:`~jaxsweep.components.data.dataset.Dataset` with
train, validation and test splits; none needs a download.
"""

from __future__ import annotations

import os

import numpy as np

from jaxsweep import errors
from jaxsweep.components.data import dataset
from jaxsweep.components.data.dataset import Dataset

# The 1,797 8x8 digits of the UCI "Optical Recognition of Handwritten Digits"
# test set (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0), as scikit-learn ships
# them: the same file, byte for byte (one row per image: 64 pixel counts in
# 0..16, then the label). Shipped here so that loading it imports nothing
# (scikit-learn's import alone took 4.4 s of a 43 s sweep).
DIGITS_FILE = os.path.join(os.path.dirname(__file__), "digits.csv.gz")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """The digits as ``(images [1797, 8, 8] float64 in 0..16, labels [1797] int)``,
  in the file's order (the same arrays as ``sklearn.datasets.load_digits()``'s
  ``images`` and ``target``)."""
  try:
    table = np.loadtxt(DIGITS_FILE, delimiter=",")
  except OSError as e:
    raise errors.ConfigError(
        f"the digits data file {DIGITS_FILE} cannot be read: {e}", key="data.name",
        fix="reinstall jaxsweep (the file ships inside the package)") from e
  return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


@dataset.REGISTRY.register("digits")
def digits(*, test_fraction: float = 0.2, val_fraction: float = dataset.VAL_FRACTION,
           seed: int = 0, as_images: bool = False) -> Dataset:
  """The 1,797 8x8 handwritten digits of UCI (as in scikit-learn), 10 classes.

  Pixels are scaled to [0, 1]. ``as_images`` keeps the 8x8x1 image shape for
  convolutional models; otherwise each image is a flat 64-vector.
  ``test_fraction`` of the images are the test split and ``val_fraction`` of
  the rest the validation split (both stratified by class, seeded).
  """
  images, labels = digits_arrays()
  x = (images / 16.0).astype(np.float32)
  x = x[..., None] if as_images else x.reshape(len(x), -1)
  y = labels.astype(np.int32)
  xtr, ytr, xte, yte = dataset.split(x, y, test_fraction=test_fraction, seed=seed)
  return dataset.arrays(xtr, ytr, xte, yte, val_fraction=val_fraction, val_seed=seed,
                        task="classification", num_classes=10, name="digits")


@dataset.REGISTRY.register("synthetic")
def synthetic(*, num_train: int = 256, num_val: int | None = None, num_test: int = 128,
              num_features: int = 16, num_classes: int = 4, noise: float = 0.5,
              seed: int = 0) -> Dataset:
  """Gaussian blobs: a small, fast classification task for tests.

  ``num_val`` examples (default: as many as ``num_test``) are drawn for the
  validation split, independently of the training ones.
  """
  num_val = num_test if num_val is None else num_val
  for k, v in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test),
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
  xva, yva = make(num_val)
  return dataset.arrays(xtr, ytr, xte, yte, x_val=xva, y_val=yva, task="classification",
                        num_classes=num_classes, name="synthetic")


@dataset.REGISTRY.register("regression")
def regression(*, num_train: int = 512, num_val: int | None = None, num_test: int = 256,
               num_features: int = 8, noise: float = 0.1, seed: int = 0) -> Dataset:
  """A synthetic non-linear regression task (targets of shape [1]), for MSE.

  ``num_val`` examples (default: as many as ``num_test``) form the
  validation split.
  """
  num_val = num_test if num_val is None else num_val
  rng = np.random.default_rng(seed)
  w1 = rng.normal(size=(num_features, 16)) / np.sqrt(num_features)
  w2 = rng.normal(size=(16, 1)) / 4.0
  def make(n):
    x = rng.normal(size=(n, num_features))
    y = np.tanh(x @ w1) @ w2 + noise * rng.normal(size=(n, 1))
    return x.astype(np.float32), y.astype(np.float32)
  xtr, ytr = make(num_train)
  xte, yte = make(num_test)
  xva, yva = make(num_val)
  return dataset.arrays(xtr, ytr, xte, yte, x_val=xva, y_val=yva, task="regression",
                        name="regression")


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


@dataset.REGISTRY.register("text")
def text(*, seq_len: int = 32, max_chars: int = 200_000, test_fraction: float = 0.1,
         val_fraction: float = dataset.VAL_FRACTION, stride: int | None = None,
         seed: int = 0) -> Dataset:
  """Character-level language modelling on English prose that ships with Python.

  The corpus is the help text of every topic in the standard library's
  ``pydoc_data.topics`` (about 465k characters on CPython 3.11; the exact
  text depends on the Python version). Topics are concatenated in an order
  drawn from ``seed``, capped at ``max_chars``, and split *contiguously*:
  training text, then ``val_fraction`` of the characters for validation, then
  ``test_fraction`` for test, so no held-out window overlaps a training one.

  The vocabulary is built from the training text; index 0 (``"\ufffd"``)
  stands for any test character never seen in training. Examples are windows
  ``x = ids[t:t+T]``, ``y = ids[t+1:t+T+1]`` (int32 ``[N, T]``): train
  windows start every ``stride`` characters, validation and test windows
  every ``seq_len`` (each held-out character is predicted exactly once).

  Args:
    seq_len: window length T.
    max_chars: cap on the corpus size (characters).
    test_fraction: fraction of the characters held out for test.
    val_fraction: fraction of the characters held out for validation.
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
  for k, v in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
    if not 0.0 < v < 1.0:
      raise errors.ConfigError(f"{k} must be strictly between 0 and 1, got {v}.",
                               key=f"data.{k}", fix=f"use e.g. {k}: 0.1")
  if test_fraction + val_fraction >= 1.0:
    raise errors.ConfigError(
        f"test_fraction + val_fraction = {test_fraction + val_fraction:g} leaves no "
        "training text.", key="data.val_fraction", fix="keep their sum below 1, e.g. 0.1 each")
  corpus = _text_corpus(int(seed))[:int(max_chars)]
  n_train = int(round(len(corpus) * (1.0 - test_fraction - val_fraction)))
  n_val = int(round(len(corpus) * val_fraction))
  train_text = corpus[:n_train]
  val_text = corpus[n_train:n_train + n_val]
  test_text = corpus[n_train + n_val:]
  if min(len(train_text), len(val_text), len(test_text)) <= seq_len:
    raise errors.ConfigError(
        f"max_chars={max_chars} leaves {len(train_text)} train, {len(val_text)} val and "
        f"{len(test_text)} test characters, too few for windows of seq_len={seq_len}.",
        key="data.max_chars", fix="raise max_chars or lower seq_len")
  vocab = UNKNOWN_CHAR + "".join(sorted(set(train_text) - {UNKNOWN_CHAR}))
  lookup = {c: i for i, c in enumerate(vocab)}

  def encode(s: str) -> np.ndarray:
    return np.fromiter((lookup.get(c, 0) for c in s), dtype=np.int32, count=len(s))

  x_train, y_train = _windows(encode(train_text), int(seq_len), int(stride))
  x_val, y_val = _windows(encode(val_text), int(seq_len), int(seq_len))
  x_test, y_test = _windows(encode(test_text), int(seq_len), int(seq_len))
  return dataset.Dataset(
      train={"x": x_train, "y": y_train}, val={"x": x_val, "y": y_val},
      test={"x": x_test, "y": y_test}, task="language_model", num_classes=len(vocab),
      name="text", info={"vocab": vocab, "unknown_index": 0,
                         "source": "pydoc_data.topics", "num_chars": len(corpus)})


def decode(ids, vocab: str) -> str:
  """Token ids back to text with a :func:`text` vocabulary."""
  return "".join(vocab[int(i)] for i in np.ravel(ids))


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataset.REGISTRY.register("npz")
def npz(*, path: str, task: str | None = None, num_classes: int | None = None,
        val_fraction: float = dataset.VAL_FRACTION, seed: int = 0) -> Dataset:
  """A user ``.npz`` file with arrays ``x_train, y_train, x_test, y_test``.

  Optional ``x_val, y_val`` arrays are the validation split; without them
  ``val_fraction`` of the training examples are held out (seeded).
  """
  if not path:
    raise errors.ConfigError("the npz dataset needs a path.", key="data.path",
                             fix="set data: {name: npz, path: FILE.npz}")
  path = os.path.expanduser(str(path))
  if not os.path.exists(path):
    raise errors.ConfigError(f"file not found: {path}", key="data.path",
                             fix="check the path (relative paths start at the "
                                 "current directory)")
  if os.path.isdir(path):
    raise errors.ConfigError(f"{path} is a directory, not an .npz file.", key="data.path",
                             fix="give the path of a file written with numpy.savez")
  try:
    with open(path, "rb") as f:
      magic = f.read(4)
  except OSError as e:
    raise errors.ConfigError(f"cannot read {path}: {e.strerror or e}.", key="data.path",
                             fix="check the path and its permissions") from None
  if magic != b"PK\x03\x04":  # An .npz is a zip archive; numpy would try a pickle.
    raise errors.ConfigError(
        f"cannot read {path} as .npz: it is not an .npz file (it starts with {magic!r}, not "
        "a zip archive's header).", key="data.path",
        fix=f"write it with np.savez({os.path.basename(path)!r}, "
            f"{', '.join(k + '=...' for k in NPZ_KEYS)}); for a CSV of texts use "
            "name: text_classification")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in NPZ_KEYS if k not in f.files]
      if missing:
        raise errors.ConfigError(
            f"{path} has no array(s) {', '.join(missing)} "
            f"(it has: {', '.join(f.files) or 'nothing'}).", key="data.path",
            fix=f"save the file with np.savez(path, {', '.join(k + '=...' for k in NPZ_KEYS)})")
      arrs = {k: f[k] for k in (*NPZ_KEYS, "x_val", "y_val") if k in f.files}
  except errors.ConfigError:
    raise
  except Exception as e:  # zipfile.BadZipFile, ValueError, OSError ...
    raise errors.ConfigError(f"cannot read {path} as .npz: {e}", key="data.path",
                             fix="write it with numpy.savez") from e
  return dataset.arrays(arrs["x_train"], arrs["y_train"], arrs["x_test"], arrs["y_test"],
                        x_val=arrs.get("x_val"), y_val=arrs.get("y_val"),
                        val_fraction=val_fraction, val_seed=seed, task=task,
                        num_classes=num_classes, name=os.path.basename(path))
