"""Image datasets read from files you downloaded: MNIST, Fashion-MNIST, CIFAR.

Nothing is downloaded here: ``data: {name: mnist, path: data/mnist}`` reads
the files from that folder, and when they are missing the error says which
files to put where and the official address to get them from.

* ``mnist``, ``fashion_mnist``: the four IDX files
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), gzipped
  (``.gz``) or not, any image size.
* ``cifar10``: the *binary* version, ``data_batch_1.bin`` ..
  ``data_batch_5.bin`` and ``test_batch.bin``.
* ``cifar100``: the binary version, ``train.bin`` and ``test.bin``, with the
  ``fine`` (100) or ``coarse`` (20) labels.

The files are parsed with numpy (no pickle) and checked: a wrong magic
number, a truncated file or a label out of range is a ConfigError naming the
file. ``source: tfds`` or ``source: huggingface`` loads the same data through
``tensorflow_datasets`` or Hugging Face ``datasets`` when installed (their
caches and download rules apply; ``path`` is then their cache folder).

Images are float32 ``[N, H, W, C]``. ``val_fraction`` of the training images
are held out for validation (stratified, seeded); then each channel is
normalised with the mean and standard deviation of the remaining *training*
images (pixels scaled to [0, 1] first), stated in ``info["normalization"]``.
``augment: {crop_padding: 4, flip: true}`` asks the training step for random
crops and flips (:mod:`jaxsweep.components.data.augment`).
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from jaxsweep import errors
from jaxsweep.components.data import augment as augment_lib
from jaxsweep.components.data import dataset
from jaxsweep.components.data.dataset import Dataset

SOURCES = ("files", "tfds", "huggingface")
IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803 (uint8, 3-d), 0x0801 (uint8, 1-d).
IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
CIFAR_PIXELS = 32 * 32 * 3
CIFAR10_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
CIFAR100_FILES = ("train.bin", "test.bin")

# name -> (title, where to get it, class names, tfds name, (hub name, image column)).
IMAGE_SETS = {
    "mnist": (
        "MNIST", "https://ossci-datasets.s3.amazonaws.com/mnist/ (a mirror of "
        "http://yann.lecun.com/exdb/mnist/)", [str(i) for i in range(10)], "mnist",
        ("ylecun/mnist", "image")),
    "fashion_mnist": (
        "Fashion-MNIST", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
        "(see https://github.com/zalandoresearch/fashion-mnist)",
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
         "Sneaker", "Bag", "Ankle boot"], "fashion_mnist",
        ("zalando-datasets/fashion_mnist", "image")),
    "cifar10": (
        "CIFAR-10", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"], "cifar10", ("uoft-cs/cifar10", "img")),
    "cifar100": (
        "CIFAR-100", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", None,
        "cifar100", ("uoft-cs/cifar100", "img")),
}


# --------------------------------------------------------------------------
# File formats.

def read_bytes(path: str) -> bytes:
  """A file's bytes, gunzipped when its name ends in ``.gz``.

  Raises:
    ConfigError: naming the file when it cannot be read or unzipped.
  """
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise errors.ConfigError(
        f"cannot read {path}: {type(e).__name__}: {e} (truncated or not gzip?)",
        key="data.path", fix="download the file again") from None


def read_idx(path: str, kind: str) -> np.ndarray:
  """Parses an IDX file of unsigned bytes (the MNIST format) with numpy.

  Args:
    path: the file (``.gz`` is gunzipped).
    kind: ``images`` (3-d, magic 2051) or ``labels`` (1-d, magic 2049).

  Returns:
    uint8 ``[N, rows, cols]`` images or ``[N]`` labels.

  Raises:
    ConfigError: naming the file for a wrong magic number or a size that
      does not match its header (truncated, or extra bytes).
  """
  data = read_bytes(path)
  magic = IDX_MAGIC[kind]
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  fix = "download the file again (and check it is the right one of the four)"
  if len(data) < header or int.from_bytes(data[:4], "big") != magic:
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    raise errors.ConfigError(
        f"{path} is not an IDX file of {kind}: magic number {found} instead of {magic}.",
        key="data.path", fix=fix)
  dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  size = int(np.prod(dims))
  if len(data) != header + size:
    what = "truncated" if len(data) < header + size else "longer than its header says"
    raise errors.ConfigError(
        f"{path} is {what}: {len(data) - header} bytes of data for {' x '.join(map(str, dims))} "
        f"= {size}.", key="data.path", fix=fix)
  return np.frombuffer(data, np.uint8, count=size, offset=header).reshape(dims)


def read_cifar(path: str, label_bytes: int, num_classes: tuple[int, ...]
               ) -> tuple[np.ndarray, np.ndarray]:
  """Parses a CIFAR binary file: records of label byte(s) then 32x32x3 pixels.

  Args:
    path: a ``.bin`` file.
    label_bytes: 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine).
    num_classes: the number of classes of each label byte.

  Returns:
    uint8 images ``[N, 32, 32, 3]`` and uint8 labels ``[N, label_bytes]``.

  Raises:
    ConfigError: naming the file for a size that is not whole records or a
      label out of range.
  """
  data = read_bytes(path)
  record = label_bytes + CIFAR_PIXELS
  if not data or len(data) % record:
    raise errors.ConfigError(
        f"{path} has {len(data)} bytes, not a whole number of {record}-byte records "
        f"({label_bytes} label byte{'s' if label_bytes > 1 else ''} + 32x32x3 pixels): "
        "truncated, or not the binary version.", key="data.path",
        fix="download and extract the binary version again")
  rows = np.frombuffer(data, np.uint8).reshape(-1, record)
  labels = rows[:, :label_bytes]
  for i, k in enumerate(num_classes):
    bad = labels[:, i] >= k
    if bad.any():
      raise errors.ConfigError(
          f"{path}: label {int(labels[bad, i][0])} of record {int(np.argmax(bad))} is not "
          f"below {k}: not a CIFAR-{'10' if label_bytes == 1 else '100'} binary file.",
          key="data.path", fix="check that the file belongs to this dataset")
  images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels


def find_file(folder: str, stem: str) -> str | None:
  """``folder/stem`` or ``folder/stem.gz`` (also ``-idx`` spelt ``.idx``)."""
  for name in (stem, stem.replace("-idx", ".idx")):
    for candidate in (name, name + ".gz"):
      if os.path.isfile(os.path.join(folder, candidate)):
        return os.path.join(folder, candidate)
  return None


def _folder(path: str | None, name: str, files: tuple[str, ...]) -> str:
  if path is None or path == "":
    title, url = IMAGE_SETS[name][:2]
    raise errors.ConfigError(
        f"the {name} dataset needs the folder of its files: set data.path (e.g. "
        f"data: {{name: {name}, path: data/{name}}}) and put {', '.join(files)} there.",
        key="data.path", fix=f"get the {title} files from {url}")
  return os.path.abspath(os.path.expanduser(str(path)))


def _missing(name: str, folder: str, missing: list[str], note: str = "") -> errors.ConfigError:
  title, url = IMAGE_SETS[name][:2]
  where = (f"{folder} lacks" if os.path.isdir(folder)
           else f"{folder} does not exist; it should hold")
  if url.endswith(".tar.gz"):
    archive = url.rpartition("/")[2]
    get = f"download {url} and extract it there (tar xzf {archive} -C {folder})"
  else:
    get = f"download them from {url} into {folder}"
  if not os.path.isdir(folder):
    get = f"create the folder (mkdir -p {folder}), then {get}"
  return errors.ConfigError(
      f"{where} {', '.join(missing)} for the {title} dataset{note}.", key="data.path",
      fix=f"{get}, or set data.path to the folder that holds them")


def _read_mnist_files(name: str, path: str | None):
  folder = _folder(path, name, tuple(f + "[.gz]" for f in IDX_FILES.values()))
  found = {k: find_file(folder, stem) for k, stem in IDX_FILES.items()}
  missing = [IDX_FILES[k] + "[.gz]" for k, p in found.items() if p is None]
  if missing:
    raise _missing(name, folder, missing, " (gzipped or not)")
  arrays = {k: read_idx(p, k.rpartition("_")[2]) for k, p in found.items()}
  for split in ("train", "test"):
    n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
    if n_img != n_lab:
      raise errors.ConfigError(
          f"{found[f'{split}_images']} holds {n_img} images but "
          f"{found[f'{split}_labels']} {n_lab} labels.", key="data.path",
          fix="use the images and labels files of the same release")
    bad = arrays[f"{split}_labels"] >= 10
    if bad.any():
      raise errors.ConfigError(
          f"{found[f'{split}_labels']}: label {int(arrays[f'{split}_labels'][bad][0])} is "
          "not one of the 10 classes.", key="data.path",
          fix="check that it is a labels file of this dataset")
  return (arrays["train_images"][..., None], arrays["train_labels"],
          arrays["test_images"][..., None], arrays["test_labels"], sorted(found.values()))


def _read_cifar_files(name: str, path: str | None, label: str):
  files = CIFAR10_FILES if name == "cifar10" else CIFAR100_FILES
  folder = _folder(path, name, files)
  sub = os.path.join(folder, "cifar-10-batches-bin" if name == "cifar10" else "cifar-100-binary")
  if not os.path.isfile(os.path.join(folder, files[0])) and os.path.isdir(sub):
    folder = sub  # The folder the archive extracts to.
  missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
  if missing:
    raise _missing(name, folder, missing, " (the binary version, not the python one)")
  paths = [os.path.join(folder, f) for f in files]
  if name == "cifar10":
    parts = [read_cifar(p, 1, (10,)) for p in paths]
    which = 0
  else:
    parts = [read_cifar(p, 2, (20, 100)) for p in paths]
    which = 0 if label == "coarse" else 1
  x_train = np.concatenate([x for x, _ in parts[:-1]])
  y_train = np.concatenate([y[:, which] for _, y in parts[:-1]])
  x_test, y_test = parts[-1][0], parts[-1][1][:, which]
  return x_train, y_train, x_test, y_test, paths, _label_names(folder, name, label)


def _label_names(folder: str, name: str, label: str) -> list[str] | None:
  meta = {"cifar10": "batches.meta.txt", "cifar100": f"{label}_label_names.txt"}[name]
  try:
    with open(os.path.join(folder, meta), encoding="utf-8") as f:
      names = [line.strip() for line in f if line.strip()]
  except OSError:
    return IMAGE_SETS[name][2]
  return names


# --------------------------------------------------------------------------
# Optional sources: tensorflow_datasets and Hugging Face datasets.

def _from_tfds(tfds_name: str, path: str | None, label_key: str):
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.ConfigError(
        "source: tfds needs tensorflow_datasets, which is not installed.",
        key="data.source", fix="pip install tensorflow-datasets (or use source: files "
                               "with the downloaded files)") from None
  kwargs = {} if path is None else {"data_dir": os.path.expanduser(str(path))}
  try:
    train, test = tfds.as_numpy(tfds.load(tfds_name, split=["train", "test"], batch_size=-1,
                                          **kwargs))
  except Exception as e:  # Not found, no network, ...: tfds's own message.
    raise errors.ConfigError(
        f"tensorflow_datasets could not load '{tfds_name}': {type(e).__name__}: "
        f"{errors.first_line(e)}", key="data.source",
        fix="check the name and its cache folder (data.path), or use source: files") from e
  return (np.asarray(train["image"]), np.asarray(train[label_key]),
          np.asarray(test["image"]), np.asarray(test[label_key]))


def _from_huggingface(hub_name: str, path: str | None, image_key: str, label_key: str):
  try:
    import datasets as hf_datasets  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.ConfigError(
        "source: huggingface needs the datasets library, which is not installed.",
        key="data.source", fix="pip install datasets (or use source: files with the "
                               "downloaded files)") from None
  kwargs = {} if path is None else {"cache_dir": os.path.expanduser(str(path))}
  try:
    splits = hf_datasets.load_dataset(hub_name, **kwargs)
    out = []
    for split in ("train", "test"):
      part = splits[split]
      columns = list(part.column_names)
      image_col = image_key if image_key in columns else next(
          (c for c in ("image", "img") if c in columns), image_key)
      images = np.stack([np.asarray(im, np.uint8) for im in part[image_col]])
      out += [images, np.asarray(part[label_key])]
  except Exception as e:  # Not found, no network, another layout: its message.
    raise errors.ConfigError(
        f"Hugging Face datasets could not load '{hub_name}': {type(e).__name__}: "
        f"{errors.first_line(e)}", key="data.source",
        fix="check the name (data.source_name) and the cache folder (data.path), or use "
            "source: files") from e
  return tuple(out)


# --------------------------------------------------------------------------
# Building the dataset.

def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of uint8 images scaled to [0, 1].

  Accumulated in float64 over chunks, so a large uint8 array is never
  copied whole as floats.
  """
  total = np.zeros(x.shape[-1])
  squares = np.zeros(x.shape[-1])
  for i in range(0, len(x), chunk):
    part = x[i:i + chunk].astype(np.float64) / 255.0
    total += part.sum(axis=(0, 1, 2))
    squares += np.square(part).sum(axis=(0, 1, 2))
  count = len(x) * x.shape[1] * x.shape[2]
  mean = total / count
  std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
  return mean, np.where(std > 1e-8, std, 1.0)


def image_dataset(name: str, x_train, y_train, x_test, y_test, *, num_classes: int,
                  labels, val_fraction: float, seed: int, normalize: bool, augment,
                  info) -> Dataset:
  """Holds out validation, normalises with training statistics, checks augment.

  Args:
    name: the dataset's name.
    x_train, y_train, x_test, y_test: uint8 images ``[N, H, W, C]`` (a
      missing channel axis is added) and integer labels.
    num_classes: the number of classes.
    labels: class names (``labels[i]`` is class i) or ``None``.
    val_fraction: share of the training images held out (stratified, seeded).
    seed: the seed of that draw.
    normalize: per-channel standardisation with the training split's
      statistics; ``False`` only scales pixels to [0, 1].
    augment: augmentation options (see :mod:`.augment`) or ``None``.
    info: more metadata (source, files).

  Returns:
    A classification Dataset of float32 images.
  """
  x_train, x_test = (np.asarray(x) for x in (x_train, x_test))
  x_train, x_test = (x[..., None] if x.ndim == 3 else x for x in (x_train, x_test))
  options = augment_lib.check_options(augment)
  augment_lib.check_images(x_train, options)
  train = {"x": x_train, "y": np.asarray(y_train).astype(np.int32).reshape(-1)}
  train, val = dataset.hold_out(train, val_fraction, seed=seed, stratify=True)
  if normalize:
    mean, std = channel_stats(train["x"])
    norm = {"mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std],
            "computed_on": f"the {len(train['x'])} training images (after holding out "
                           "validation), pixels scaled to [0, 1]"}
  else:
    mean, std = np.zeros(x_train.shape[-1]), np.ones(x_train.shape[-1])
    norm = {"scale": "pixels / 255"}
  scale = (1.0 / (255.0 * std)).astype(np.float32)
  shift = (mean / std).astype(np.float32)

  def transform(split):
    if split is None:
      return None
    x = np.array(split["x"], np.float32)  # One float copy, transformed in place.
    x *= scale
    x -= shift
    return {"x": x, "y": np.asarray(split["y"]).astype(np.int32).reshape(-1)}

  meta = {**info, "normalization": norm, "labels": labels}
  if options:
    meta["augment"] = options
  return Dataset(train=transform(train), val=transform(val),
                 test=transform({"x": x_test, "y": y_test}), task="classification",
                 num_classes=num_classes, name=name, info=meta)


def _load(name: str, *, path, source, source_name, label, val_fraction, seed, normalize,
          augment) -> Dataset:
  if source not in SOURCES:
    raise errors.unknown_key("data.source", SOURCES, what="source", name=str(source))
  if label not in ("fine", "coarse"):
    raise errors.unknown_key("data.label", ("fine", "coarse"), what="label", name=str(label))
  num_classes = 20 if (name == "cifar100" and label == "coarse") else (
      100 if name == "cifar100" else 10)
  labels = IMAGE_SETS[name][2]
  if source == "files":
    if name in ("mnist", "fashion_mnist"):
      x_train, y_train, x_test, y_test, files = _read_mnist_files(name, path)
    else:
      x_train, y_train, x_test, y_test, files, labels = _read_cifar_files(name, path, label)
    info = {"source": "files", "files": files}
  else:
    cifar100_key = "coarse_label" if label == "coarse" else (
        "label" if source == "tfds" else "fine_label")
    label_key = cifar100_key if name == "cifar100" else "label"
    if source == "tfds":
      remote = source_name or IMAGE_SETS[name][3]
      x_train, y_train, x_test, y_test = _from_tfds(remote, path, label_key)
    else:
      remote = source_name or IMAGE_SETS[name][4][0]
      x_train, y_train, x_test, y_test = _from_huggingface(
          remote, path, IMAGE_SETS[name][4][1], label_key)
    info = {"source": f"{source}:{remote}"}
    for split, y in (("train", y_train), ("test", y_test)):
      if np.asarray(y).size and (np.min(y) < 0 or np.max(y) >= num_classes):
        raise errors.ConfigError(
            f"{source} '{remote}' has {split} labels outside 0..{num_classes - 1}.",
            key="data.source_name", fix=f"give a {IMAGE_SETS[name][0]} dataset")
  return image_dataset(name, x_train, y_train, x_test, y_test, num_classes=num_classes,
                       labels=labels, val_fraction=val_fraction, seed=seed,
                       normalize=bool(normalize), augment=augment, info=info)


@dataset.REGISTRY.register("mnist")
def mnist(*, path: str | None = None, source: str = "files", source_name: str | None = None,
          val_fraction: float = dataset.VAL_FRACTION, seed: int = 0, normalize: bool = True,
          augment: dict | None = None) -> Dataset:
  """MNIST handwritten digits (60,000 + 10,000 images 28x28x1, 10 classes).

  Args:
    path: the folder of the four IDX files (``source: files``), or the cache
      folder of tfds / Hugging Face.
    source: ``files``, ``tfds`` or ``huggingface``.
    source_name: the dataset's name in tfds or on the Hub (default
      ``mnist`` / ``ylecun/mnist``).
    val_fraction: share of the training images held out for validation.
    seed: the seed of the validation draw.
    normalize: standardise each channel with the training statistics.
    augment: ``{crop_padding: int, flip: bool}`` for training batches.
  """
  return _load("mnist", path=path, source=source, source_name=source_name, label="fine",
               val_fraction=val_fraction, seed=seed, normalize=normalize, augment=augment)


@dataset.REGISTRY.register("fashion_mnist")
def fashion_mnist(*, path: str | None = None, source: str = "files",
                  source_name: str | None = None, val_fraction: float = dataset.VAL_FRACTION,
                  seed: int = 0, normalize: bool = True, augment: dict | None = None
                  ) -> Dataset:
  """Fashion-MNIST (Zalando's clothes, in MNIST's IDX format), as :func:`mnist`."""
  return _load("fashion_mnist", path=path, source=source, source_name=source_name,
               label="fine", val_fraction=val_fraction, seed=seed, normalize=normalize,
               augment=augment)


@dataset.REGISTRY.register("cifar10")
def cifar10(*, path: str | None = None, source: str = "files", source_name: str | None = None,
            val_fraction: float = dataset.VAL_FRACTION, seed: int = 0, normalize: bool = True,
            augment: dict | None = None) -> Dataset:
  """CIFAR-10 (50,000 + 10,000 colour images 32x32x3, 10 classes).

  ``path`` holds ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
  ``test_batch.bin`` (or the ``cifar-10-batches-bin`` folder the archive
  extracts to). Other arguments as :func:`mnist`.
  """
  return _load("cifar10", path=path, source=source, source_name=source_name, label="fine",
               val_fraction=val_fraction, seed=seed, normalize=normalize, augment=augment)


@dataset.REGISTRY.register("cifar100")
def cifar100(*, path: str | None = None, label: str = "fine", source: str = "files",
             source_name: str | None = None, val_fraction: float = dataset.VAL_FRACTION,
             seed: int = 0, normalize: bool = True, augment: dict | None = None) -> Dataset:
  """CIFAR-100 (50,000 + 10,000 images 32x32x3), ``fine`` (100) or ``coarse`` (20) labels.

  ``path`` holds ``train.bin`` and ``test.bin`` (or the ``cifar-100-binary``
  folder the archive extracts to). Other arguments as :func:`mnist`.
  """
  return _load("cifar100", path=path, source=source, source_name=source_name, label=label,
               val_fraction=val_fraction, seed=seed, normalize=normalize, augment=augment)
