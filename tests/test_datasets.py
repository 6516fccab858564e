"""Image and text-classification datasets, augmentation and the RNN classifier.

Nothing is downloaded: each test writes small files in the real formats (IDX,
gzipped or not; CIFAR-10/100 binary records; CSV; JSONL; a folder per class)
and reads them back. Compilation dominates on CPU, so the training tests use
tiny images (the IDX loader takes any size), few steps and small models.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pathlib
import subprocess
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsweep as js
from jaxsweep import cli
from jaxsweep import config as config_lib
from jaxsweep import errors
from jaxsweep.components.data import augment as augment_lib
from jaxsweep.components.data import builtin
from jaxsweep.components.data import images
from jaxsweep.engine import train as train_lib

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


# --------------------------------------------------------------------------
# Writers of the real formats.

def write_idx(path, array, gz=False):
  """An IDX file of uint8 (magic 0x0801 for 1-d labels, 0x0803 for 3-d images)."""
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 8, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  data = header + array.tobytes()
  if gz:
    path += ".gz"
    with gzip.open(path, "wb") as f:
      f.write(data)
  else:
    with open(path, "wb") as f:
      f.write(data)
  return path


def digit_images(n, size=8, seed=0):
  """Noisy images whose class c lights the c-th 2x2 block: easy to learn."""
  rng = np.random.default_rng(seed)
  y = np.arange(n) % 10
  rng.shuffle(y)
  x = rng.integers(0, 60, size=(n, size, size))
  for i, c in enumerate(y):
    r, col = divmod(int(c), size // 2)
    x[i, 2 * r:2 * r + 2, 2 * col:2 * col + 2] = 255
  return x.astype(np.uint8), y.astype(np.uint8)


def write_mnist(folder, n_train=200, n_test=60, size=8, gz=True, seed=0):
  os.makedirs(folder, exist_ok=True)
  x, y = digit_images(n_train + n_test, size, seed)
  paths = {}
  for split, sl in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
    paths[f"{split}_images"] = write_idx(
        os.path.join(folder, f"{split}-images-idx3-ubyte"), x[sl], gz)
    paths[f"{split}_labels"] = write_idx(
        os.path.join(folder, f"{split}-labels-idx1-ubyte"), y[sl], gz)
  return x[:n_train], y[:n_train], x[n_train:], y[n_train:], paths


def cifar_records(images_nhwc, labels):
  """CIFAR binary records: label byte(s), then the R, G and B planes."""
  labels = np.asarray(labels, np.uint8).reshape(len(images_nhwc), -1)
  planes = np.asarray(images_nhwc, np.uint8).transpose(0, 3, 1, 2).reshape(len(labels), -1)
  return np.concatenate([labels, planes], axis=1).tobytes()


def write_cifar10(folder, per_batch=4, n_test=6, seed=0):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  n = 5 * per_batch + n_test
  x = rng.integers(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)
  y = (np.arange(n) % 10).astype(np.uint8)
  for i in range(5):
    sl = slice(i * per_batch, (i + 1) * per_batch)
    with open(os.path.join(folder, f"data_batch_{i + 1}.bin"), "wb") as f:
      f.write(cifar_records(x[sl], y[sl]))
  with open(os.path.join(folder, "test_batch.bin"), "wb") as f:
    f.write(cifar_records(x[5 * per_batch:], y[5 * per_batch:]))
  return x, y


def write_cifar100(folder, n_train=30, n_test=8, seed=0):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, size=(n_train + n_test, 32, 32, 3)).astype(np.uint8)
  fine = rng.integers(0, 100, size=n_train + n_test)
  fine[:2] = [0, 99]
  coarse = fine // 5
  labels = np.stack([coarse, fine], axis=1)
  with open(os.path.join(folder, "train.bin"), "wb") as f:
    f.write(cifar_records(x[:n_train], labels[:n_train]))
  with open(os.path.join(folder, "test.bin"), "wb") as f:
    f.write(cifar_records(x[n_train:], labels[n_train:]))
  return x, coarse, fine


# --------------------------------------------------------------------------
# digits: shipped with the package.

def test_shipped_digits_equal_scikit_learns():
  skdatasets = pytest.importorskip("sklearn.datasets")
  images, labels = builtin.digits_arrays()
  bunch = skdatasets.load_digits()
  np.testing.assert_array_equal(images, bunch.images)
  np.testing.assert_array_equal(labels, bunch.target)


def test_loading_digits_imports_no_scikit_learn():
  code = ("import sys, jaxsweep as js; ds = js.data.load('digits'); "
          "print(ds.train['x'].shape, 'sklearn' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True).stdout.split()
  assert out[-1] == "False", out


# --------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX).

@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_round_trip_and_train_statistics(tmp_path, gz):
  x_tr, y_tr, x_te, y_te, paths = write_mnist(str(tmp_path), gz=gz)
  ds = js.data.load("mnist", path=str(tmp_path), val_fraction=0.1, seed=3)
  assert ds.train["x"].shape[1:] == (8, 8, 1) and ds.train["x"].dtype == np.float32
  assert ds.num_train + ds.num_val == 200 and ds.num_val == 20 and ds.num_test == 60
  assert ds.num_classes == 10 and ds.task == "classification"
  np.testing.assert_array_equal(ds.test["y"], y_te)
  assert sorted(ds.info["files"]) == sorted(paths.values())
  # The statistics are those of the training split after validation is held
  # out: the same draw on the raw images gives them back.
  raw_train, _ = js.data.hold_out({"x": x_tr, "y": y_tr.astype(np.int32)}, 0.1, seed=3,
                                  stratify=True)
  pixels = raw_train["x"] / 255.0
  norm = ds.info["normalization"]
  np.testing.assert_allclose(norm["mean"], [pixels.mean()], rtol=1e-5)
  np.testing.assert_allclose(norm["std"], [pixels.std()], rtol=1e-5)
  assert "training" in norm["computed_on"]
  np.testing.assert_allclose(ds.train["x"].mean(), 0.0, atol=1e-5)
  np.testing.assert_allclose(ds.train["x"].std(), 1.0, rtol=1e-4)
  # The test images are transformed with the training statistics, not their own.
  np.testing.assert_allclose(ds.test["x"][..., 0],
                             (x_te / 255.0 - norm["mean"][0]) / norm["std"][0], atol=1e-4)
  # Same format, other dataset: Fashion-MNIST's class names.
  fashion = js.data.load("fashion_mnist", path=str(tmp_path), normalize=False)
  assert fashion.info["labels"][0] == "T-shirt/top"
  np.testing.assert_allclose(fashion.test["x"][..., 0], x_te / 255.0, rtol=1e-6)


def test_idx_errors_name_the_file(tmp_path):
  _, _, _, _, paths = write_mnist(str(tmp_path), gz=False)
  images_path = paths["train_images"]
  data = pathlib.Path(images_path).read_bytes()
  with open(images_path, "wb") as f:
    f.write(data[:-10])  # Truncated.
  with pytest.raises(errors.ConfigError, match="truncated") as e:
    js.data.load("mnist", path=str(tmp_path))
  assert images_path in str(e.value)
  with open(images_path, "wb") as f:  # A labels file where the images should be.
    f.write(pathlib.Path(paths["train_labels"]).read_bytes())
  with pytest.raises(errors.ConfigError, match="magic number 2049 instead of 2051") as e:
    js.data.load("mnist", path=str(tmp_path))
  assert images_path in str(e.value)
  os.remove(images_path)
  with open(images_path + ".gz", "wb") as f:  # Not gzip at all.
    f.write(b"this is not gzip data")
  with pytest.raises(errors.ConfigError, match="cannot read") as e:
    js.data.load("mnist", path=str(tmp_path))
  assert images_path + ".gz" in str(e.value)
  # Images and labels of different lengths.
  x, y = digit_images(30)
  write_idx(images_path, x, gz=True)
  with pytest.raises(errors.ConfigError, match="30 images but .* 200 labels"):
    js.data.load("mnist", path=str(tmp_path))


def test_missing_image_files_say_where_to_put_which_files(tmp_path):
  with pytest.raises(errors.ConfigError) as e:
    js.data.load("mnist", path=str(tmp_path))
  msg = str(e.value)
  for name in images.IDX_FILES.values():
    assert name in msg
  assert str(tmp_path) in msg and "ossci-datasets.s3.amazonaws.com/mnist" in msg
  assert e.value.key == "data.path"
  with pytest.raises(errors.ConfigError, match="does not exist") as e:
    js.data.load("cifar10", path=str(tmp_path / "nowhere"))
  assert "data_batch_1.bin" in str(e.value) and "cifar-10-binary.tar.gz" in str(e.value)
  with pytest.raises(errors.ConfigError, match="set data.path"):
    js.data.load("cifar100")
  with pytest.raises(errors.ConfigError, match="Did you mean 'tfds'"):
    js.data.load("mnist", path=str(tmp_path), source="tfd")


# --------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (binary).

def test_cifar10_binary_round_trip(tmp_path):
  folder = tmp_path / "cifar-10-batches-bin"  # As the archive extracts.
  x, y = write_cifar10(str(folder))
  with open(folder / "batches.meta.txt", "w") as f:
    f.write("\n".join(f"class{i}" for i in range(10)) + "\n\n")
  ds = js.data.load("cifar10", path=str(tmp_path), normalize=False, val_fraction=0.0)
  assert ds.val is None and ds.num_train == 20 and ds.num_test == 6
  # Channel planes become the last axis: pixel values survive exactly.
  np.testing.assert_allclose(ds.train["x"] * 255.0, x[:20], atol=1e-3)
  np.testing.assert_array_equal(ds.train["y"], y[:20])
  np.testing.assert_allclose(ds.test["x"] * 255.0, x[20:], atol=1e-3)
  assert ds.info["labels"][3] == "class3" and len(ds.info["files"]) == 6
  normed = js.data.load("cifar10", path=str(folder), val_fraction=0.0)
  np.testing.assert_allclose(normed.train["x"].mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(normed.info["normalization"]["mean"],
                             (x[:20] / 255.0).mean(axis=(0, 1, 2)), rtol=1e-5)
  assert len(normed.info["normalization"]["std"]) == 3


def test_cifar100_fine_and_coarse_labels(tmp_path):
  x, coarse, fine = write_cifar100(str(tmp_path))
  ds = js.data.load("cifar100", path=str(tmp_path), val_fraction=0.0)
  assert ds.num_classes == 100
  np.testing.assert_array_equal(ds.train["y"], fine[:30])
  ds = js.data.load("cifar100", path=str(tmp_path), label="coarse", val_fraction=0.0)
  assert ds.num_classes == 20
  np.testing.assert_array_equal(ds.test["y"], coarse[30:])
  with pytest.raises(errors.ConfigError, match="Did you mean 'coarse'"):
    js.data.load("cifar100", path=str(tmp_path), label="corse")


def test_cifar_errors_name_the_file(tmp_path):
  write_cifar10(str(tmp_path))
  path = str(tmp_path / "data_batch_3.bin")
  data = pathlib.Path(path).read_bytes()
  with open(path, "wb") as f:
    f.write(data[:-1])
  with pytest.raises(errors.ConfigError, match="not a whole number of 3073-byte") as e:
    js.data.load("cifar10", path=str(tmp_path))
  assert path in str(e.value)
  with open(path, "wb") as f:
    f.write(bytes([12]) + data[1:])  # Label 12 in a 10-class file.
  with pytest.raises(errors.ConfigError, match="label 12 of record 0") as e:
    js.data.load("cifar10", path=str(tmp_path))
  assert path in str(e.value)
  os.remove(str(tmp_path / "test_batch.bin"))
  with pytest.raises(errors.ConfigError, match="lacks test_batch.bin .*binary version"):
    js.data.load("cifar10", path=str(tmp_path))


# --------------------------------------------------------------------------
# Optional sources: a missing library is a ConfigError; the conversion is
# checked against stand-ins with the libraries' documented call shapes.

def test_optional_sources_missing_library_says_pip_install(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # Import fails.
  monkeypatch.setitem(sys.modules, "datasets", None)
  with pytest.raises(errors.ConfigError, match="pip install tensorflow-datasets"):
    js.data.load("mnist", source="tfds")
  with pytest.raises(errors.ConfigError, match="pip install datasets"):
    js.data.load("cifar10", source="huggingface")


def test_optional_sources_convert_to_the_same_dataset(tmp_path, monkeypatch):
  x, y = digit_images(50)
  calls = {}

  def tfds_load(name, *, split, batch_size, **kwargs):
    calls["tfds"] = (name, split, batch_size, kwargs)
    return [{"image": x[:40, ..., None], "label": y[:40]},
            {"image": x[40:, ..., None], "label": y[40:]}]

  fake_tfds = types.SimpleNamespace(load=tfds_load, as_numpy=lambda t: t)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds)
  ds = js.data.load("mnist", source="tfds", path=str(tmp_path))
  assert calls["tfds"] == ("mnist", ["train", "test"], -1, {"data_dir": str(tmp_path)})
  assert ds.train["x"].shape[1:] == (8, 8, 1) and ds.info["source"] == "tfds:mnist"

  class Split:
    def __init__(self, imgs, labels):
      self.column_names = ["img", "label"]
      self.cols = {"img": list(imgs), "label": list(labels)}

    def __getitem__(self, col):
      return self.cols[col]

  rgb = np.repeat(x[..., None], 3, axis=-1)
  fake_hf = types.SimpleNamespace(load_dataset=lambda name, **kw: (
      calls.__setitem__("hf", (name, kw)) or
      {"train": Split(rgb[:40], y[:40]), "test": Split(rgb[40:], y[40:])}))
  monkeypatch.setitem(sys.modules, "datasets", fake_hf)
  ds = js.data.load("cifar10", source="huggingface", source_name="me/tiny", val_fraction=0.0)
  assert calls["hf"] == ("me/tiny", {})
  assert ds.train["x"].shape == (40, 8, 8, 3) and ds.info["source"] == "huggingface:me/tiny"
  np.testing.assert_array_equal(ds.test["y"], y[40:])


# --------------------------------------------------------------------------
# Augmentation.

def _all_crops_and_flips(img, p):
  h, w = img.shape[:2]
  padded = np.pad(img, ((p, p), (p, p), (0, 0)))
  out = []
  for i in range(2 * p + 1):
    for j in range(2 * p + 1):
      crop = padded[i:i + h, j:j + w]
      out += [crop, crop[:, ::-1]]
  return out


def test_augment_function():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 6, 6, 2)), jnp.float32)
  key = jax.random.key(1)
  assert augment_lib.augment(x, key) is x
  assert augment_lib.augment(x, key, crop_padding=0, flip=False) is x
  out = np.asarray(augment_lib.augment(x, key, crop_padding=2, flip=True))
  assert out.shape == x.shape and out.dtype == np.float32
  assert not np.allclose(out, np.asarray(augment_lib.augment(x, jax.random.key(2),
                                                             crop_padding=2, flip=True)))
  for img, aug in zip(np.asarray(x), out, strict=True):  # One crop, maybe mirrored.
    assert any(np.array_equal(aug, c) for c in _all_crops_and_flips(img, 2))
  flips = np.asarray(augment_lib.augment(x, key, flip=True))
  pairs = list(zip(flips, np.asarray(x), strict=True))
  mirrored = np.array([np.array_equal(a, i[:, ::-1]) for a, i in pairs])
  kept = np.array([np.array_equal(a, i) for a, i in pairs])
  assert (mirrored | kept).all() and mirrored.any() and kept.any()
  assert augment_lib.augment(x[..., 0], key, crop_padding=1).shape == (16, 6, 6)


def test_augment_options_are_checked():
  assert augment_lib.check_options({"crop_padding": 0, "flip": False}) is None
  assert augment_lib.check_options({"flip": True}) == {"crop_padding": 0, "flip": True}
  with pytest.raises(errors.ConfigError, match="Did you mean 'flip'"):
    augment_lib.check_options({"flips": True})
  with pytest.raises(errors.ConfigError, match="whole number >= 0"):
    augment_lib.check_options({"crop_padding": -1})
  with pytest.raises(errors.ConfigError, match="true or false"):
    augment_lib.check_options({"flip": "yes"})
  flat = js.data.load("synthetic", num_train=32, num_test=8)
  with pytest.raises(errors.ConfigError, match=r"need images \[N, H, W, C\]"):
    js.data.with_augment(flat, flip=True)


class Probe(nn.Module):
  """Logits = sum(w * x): one SGD step of loss -mean(logits) adds the batch
  mean of x to w, so the trained parameters show the augmented batch."""

  @nn.compact
  def __call__(self, x, *, train=False):
    del train  # Unused.
    w = self.param("w", jax.nn.initializers.zeros, x.shape[1:])
    return jnp.sum(w * x, axis=tuple(range(1, x.ndim)))[:, None] * jnp.ones((1, 2))


def _probe_loss(out, batch):
  del batch  # Unused.
  return -jnp.mean(out)


def _probe_batches(options, seeds, steps=2):
  """The (augmented) training image each variant saw at each step."""
  img = np.arange(5 * 5, dtype=np.float32).reshape(1, 5, 5, 1) + 1.0
  data = {"train": {"x": img, "y": np.zeros(1, np.int32)},
          "test": {"x": img, "y": np.zeros(1, np.int32)}}
  data = jax.tree.map(jnp.asarray, data)
  prog = train_lib.make_train(
      js.models.to_model_fns(Probe()), optax.sgd(1.0), _probe_loss, {},
      train_lib.TrainSettings(steps=steps, batch_size=1, eval_every=1),
      augment=augment_lib.check_options(options))
  hp = {"seed": jnp.asarray(seeds, jnp.uint32)}
  state = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))(hp, data)
  period = jax.jit(jax.vmap(prog.period, in_axes=(0, 0, None)))
  seen, last, evals = [], np.zeros((len(seeds), 5, 5, 1)), []
  for _ in range(steps):
    state, stats = period(state, hp, data)
    w = np.asarray(state.params["w"])
    seen.append(w - last)
    last = w
    evals.append(np.asarray(stats["test_objective"]))
  evaluate = jax.jit(jax.vmap(prog.evaluate, in_axes=(0, 0, None)))
  again = [np.asarray(evaluate(state, hp, data)["test_objective"]) for _ in range(2)]
  return img[0], np.stack(seen, axis=1), evals, again, w  # seen: [V, steps, 5, 5, 1].


def test_augmentation_per_variant_and_step_in_the_compiled_step():
  img, seen, evals, again, w = _probe_batches({"crop_padding": 2, "flip": True},
                                              [0, 1, 2])
  allowed = _all_crops_and_flips(img, 2)
  for v in range(3):
    for s in range(2):
      assert any(np.allclose(seen[v, s], c) for c in allowed), (v, s)
  # Each variant and each step drew its own crop or flip.
  assert not np.allclose(seen[0, 0], seen[0, 1])
  assert not np.allclose(seen[0, 0], seen[1, 0]) or not np.allclose(seen[1, 0], seen[2, 0])
  # Evaluation never augments: the test objective is that of the raw image.
  np.testing.assert_allclose(again[0], -np.sum(w * img, axis=(1, 2, 3)), rtol=1e-5)
  np.testing.assert_array_equal(again[0], again[1])
  # No options: every step sees the raw image.
  img, seen, _, _, _ = _probe_batches({"crop_padding": 0, "flip": False}, [0, 1])
  np.testing.assert_allclose(seen, np.broadcast_to(img, seen.shape))


def test_augment_travels_from_the_dataset_to_the_program():
  img = np.arange(5 * 5, dtype=np.float32).reshape(1, 5, 5, 1) + 1.0
  one = js.data.Dataset(train={"x": img, "y": np.zeros(1, np.int32)},
                        test={"x": img, "y": np.zeros(1, np.int32)}, num_classes=2)
  ds = js.data.with_augment(one, crop_padding=2, flip=True)
  assert ds.info["augment"] == {"crop_padding": 2, "flip": True}
  assert "augment" not in js.data.with_augment(ds, flip=False).info
  res = js.run(model=Probe(), optimizer=optax.sgd, loss=_probe_loss, data=ds,
               sweep={"seed": [0, 1, 2, 3]}, fixed={"learning_rate": 1.0}, steps=1,
               batch_size=1)
  seen = [np.asarray(res.params(i)["w"]) for i in range(4)]  # One step: the batch.
  allowed = _all_crops_and_flips(img[0], 2)
  assert all(any(np.allclose(w, c) for c in allowed) for w in seen)
  assert not all(np.allclose(w, img[0]) for w in seen)
  assert len({w.tobytes() for w in seen}) > 1


# --------------------------------------------------------------------------
# Training end to end: a CNN on MNIST-format files, through js.run and the CLI.

def test_cnn_trains_on_mnist_files_through_run_and_cli(tmp_path, capsys):
  folder = str(tmp_path / "mnist")
  write_mnist(folder, n_train=300, n_test=100)
  ds = js.data.load("mnist", path=folder)
  res = js.run(model=js.models.cnn, optimizer=optax.adam, data=ds,
               fixed={"channels": [8], "head": []}, sweep={"learning_rate": [1e-2, 3e-2]},
               steps=40, batch_size=32, eval_every=40)
  assert min(r["test_accuracy"] for r in res.rows) > 0.5, res.rows  # Chance: 0.1.
  config = tmp_path / "mnist.yaml"
  config.write_text(
      f"data: {{name: mnist, path: {folder}}}\n"
      "model: {name: cnn, channels: [8], head: []}\n"
      "loss: cross_entropy\n"
      "optimizer: {name: adam, learning_rate: 1.0e-2}\n"
      "train: {steps: 40, batch_size: 32, eval_every: 40}\n"
      "sweep: {optimizer.learning_rate: [1.0e-2, 3.0e-2]}\n")
  out = tmp_path / "out"
  assert cli.main(["run", str(config), "--out", str(out), "--quiet"]) == 0
  rows = json.loads((out / "results.json").read_text())["rows"]
  assert len(rows) == 2 and min(r["test_accuracy"] for r in rows) > 0.5, rows


def test_shipped_image_configs_without_files_fail_with_where_to_put_them(
    tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  config = os.path.abspath(os.path.join(CONFIGS, "mnist_cnn.yaml"))
  assert cli.main(["run", config, "--out", str(tmp_path / "o"), "--quiet"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxsweep: error:") and "Traceback" not in err
  assert os.path.join(str(tmp_path), "data", "mnist") in err
  assert "train-images-idx3-ubyte" in err and "t10k-labels-idx1-ubyte" in err
  # With the files where the error says, the configs plan.
  write_mnist(os.path.join(str(tmp_path), "data", "mnist"), n_train=40, n_test=10)
  write_cifar10(os.path.join(str(tmp_path), "data", "cifar10", "cifar-10-batches-bin"))
  for name in ("mnist_cnn", "cifar10_cnn"):
    path = os.path.join(CONFIGS, f"{name}.yaml")
    assert cli.main(["plan", path, "--no-memory"]) == 0, name
    assert "8 variants in 1 compile group" in capsys.readouterr().out, name
    data = dict(config_lib.load(path).raw["data"])
    ds = js.data.load(data.pop("name"), **data)
    assert ds.info.get("augment") == data.get("augment")


# --------------------------------------------------------------------------
# Text classification.

def test_text_classification_csv_jsonl_and_folder(tmp_path):
  rows = [("Great movie, loved it!", "pos"), ("awful; hated it", "neg"),
          ("loved the acting", "pos"), ("hated the plot", "neg"), ("so-so", "meh")] * 4
  csv_path = tmp_path / "reviews.csv"
  csv_path.write_text("review,stars\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows))
  ds = js.data.load("text_classification", path=str(csv_path), text_field="review",
                    label_field="stars", max_length=4, test_fraction=0.25, val_fraction=0.2)
  assert ds.info["labels"] == ["meh", "neg", "pos"] and ds.num_classes == 3
  assert ds.train["x"].dtype == np.int32 and ds.train["x"].shape[1] == 4
  assert ds.num_train + ds.num_val + ds.num_test == 20 and ds.num_test == 5
  assert sorted(ds.test["y"].tolist()) == [0, 1, 1, 2, 2]  # Stratified.
  vocab = ds.info["vocab"]
  assert vocab[:2] == ["<pad>", "<unk>"] and "loved" in vocab and "Great" not in vocab
  assert ds.info["model_args"] == {"vocab_size": len(vocab)}
  so_so = [vocab.index("so"), vocab.index("so"), 0, 0]
  assert so_so in ds.train["x"].tolist()  # Padded with 0.

  jsonl = tmp_path / "train.jsonl"
  jsonl.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n\n"
                           for t, lab in [("a b c d e f", 10), ("b c", 2), ("x c", 2)] * 3))
  test = tmp_path / "test.jsonl"
  test.write_text(json.dumps({"text": "zebra b", "label": 10}) + "\n")
  ds = js.data.load("text_classification", path=str(jsonl), test_path=str(test),
                    val_fraction=0.0, max_length=3, vocab_size=4)
  assert ds.info["labels"] == ["2", "10"]  # Whole numbers sort as numbers.
  assert ds.info["vocab"] == ["<pad>", "<unk>", "c", "b"]  # Capped, by frequency.
  assert ds.train["x"][0].tolist() == [1, 3, 2]  # "a" is past the cap: unknown.
  assert ds.test["x"].tolist() == [[1, 3, 0]] and ds.test["y"].tolist() == [1]

  for label, texts in (("sports", ["goal!", "match"]), ("news", ["vote", "election"])):
    (tmp_path / "corpus" / label).mkdir(parents=True)
    for i, t in enumerate(texts):
      (tmp_path / "corpus" / label / f"{i}.txt").write_text(t)
  ds = js.data.load("text_classification", path=str(tmp_path / "corpus"), tokenizer="char",
                    test_path=str(tmp_path / "corpus"), val_fraction=0.0, max_length=6)
  assert ds.info["labels"] == ["news", "sports"] and ds.num_test == 4
  assert ds.info["tokenizer"] == "char" and "!" in ds.info["vocab"]
  np.testing.assert_array_equal(js.data.encode_texts(["vote"], ds.info), ds.test["x"][:1])


def test_text_classification_errors_name_the_file(tmp_path):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"text": "fine", "label": "a"}\n{"text": "broken", "label": }\n')
  with pytest.raises(errors.ConfigError, match="line 2: not JSON") as e:
    js.data.load("text_classification", path=str(bad))
  assert str(bad) in str(e.value)
  csv_path = tmp_path / "t.csv"
  csv_path.write_text("sentence,label\nhello,a\n")
  with pytest.raises(errors.ConfigError, match="no column 'text'") as e:
    js.data.load("text_classification", path=str(csv_path))
  assert str(csv_path) in str(e.value) and "'sentence'" in str(e.value)
  csv_path.write_text("text,label\nhello,a\nworld,\n")
  with pytest.raises(errors.ConfigError, match="line 3: the label is ''"):
    js.data.load("text_classification", path=str(csv_path))
  csv_path.write_text("text,label\n" + "hello,a\nworld,b\n" * 5)
  test = tmp_path / "test.csv"
  test.write_text("text,label\nhi,c\n")
  with pytest.raises(errors.ConfigError, match="label.*'c'"):
    js.data.load("text_classification", path=str(csv_path), test_path=str(test))
  with pytest.raises(errors.ConfigError, match="does not exist"):
    js.data.load("text_classification", path=str(tmp_path / "missing.csv"))
  with pytest.raises(errors.ConfigError, match="Did you mean 'word'"):
    js.data.load("text_classification", path=str(csv_path), tokenizer="words")
  with pytest.raises(errors.ConfigError, match="test_fraction 0 leaves no test split"):
    js.data.load("text_classification", path=str(csv_path), test_fraction=0.0)


# --------------------------------------------------------------------------
# The RNN classifier.

def _cell_params(cell, i, h):
  if cell == "lstm":
    return 4 * (i * h + h * h + h)
  return 3 * (i * h + h) + 3 * h * h + h  # gru


@pytest.mark.parametrize("cell,layers,bidirectional,pooling", [
    ("lstm", 1, False, "last"), ("gru", 2, True, "mean"), ("lstm", 2, True, "max")])
def test_rnn_classifier_params_and_shape(cell, layers, bidirectional, pooling):
  vocab, embed, hidden, classes = 40, 8, 6, 3
  fns = js.models.to_model_fns(js.models.rnn_classifier(
      vocab_size=vocab, embed_dim=embed, hidden=hidden, layers=layers, cell=cell,
      bidirectional=bidirectional, pooling=pooling, num_outputs=classes))
  x = jnp.zeros((5, 7), jnp.int32)
  variables = jax.eval_shape(fns.init, jax.random.key(0), x)
  n = sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"]))
  dirs = 2 if bidirectional else 1
  expected = vocab * embed + dirs * _cell_params(cell, embed, hidden)
  expected += (layers - 1) * dirs * _cell_params(cell, dirs * hidden, hidden)
  expected += dirs * hidden * classes + classes
  assert n == expected
  out = jax.eval_shape(lambda v, x: fns.apply(v, x, train=False)[0], variables, x)
  assert out.shape == (5, classes)


@pytest.mark.parametrize("bidirectional,pooling", [
    (False, "last"), (True, "last"), (True, "mean"), (True, "max")])
def test_rnn_classifier_ignores_padding(bidirectional, pooling):
  fns = js.models.to_model_fns(js.models.rnn_classifier(
      vocab_size=20, embed_dim=4, hidden=5, num_outputs=2, cell="gru",
      bidirectional=bidirectional, pooling=pooling))
  short = jnp.array([[3, 7, 9], [4, 0, 0]], jnp.int32)
  padded = jnp.pad(short, ((0, 0), (0, 4)))
  rng = np.random.default_rng(0)  # Parameters from numpy: no init to compile.
  v = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype),
                   jax.eval_shape(fns.init, jax.random.key(0), short))

  @jax.jit
  def outputs(v):
    def apply(x):
      return fns.apply(v, jnp.pad(x, ((0, 0), (0, 7 - x.shape[1]))), train=False)[0]
    return (fns.apply(v, short, train=False)[0], apply(padded),
            apply(padded.at[1, 0].set(5)), apply(jnp.zeros((1, 4), jnp.int32)))

  a, b, c, empty = outputs(v)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The last real token's state, not the padding's: another token changes it.
  assert not np.allclose(a[1], c[1])
  # A row of padding only pools to zeros: the output layer's bias.
  np.testing.assert_allclose(empty[0], v["params"]["Dense_0"]["bias"], atol=1e-6)


def _corpus(path, n=180, seed=0):
  rng = np.random.default_rng(seed)
  filler = [f"w{i}" for i in range(30)]
  keywords = {"sport": ["goal", "match", "team"], "tech": ["chip", "code", "robot"],
              "food": ["pasta", "bread", "soup"]}
  lines = []
  for i in range(n):
    label = list(keywords)[i % 3]
    words = list(rng.choice(filler, size=rng.integers(4, 9)))
    words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(keywords[label])))
    lines.append(json.dumps({"text": " ".join(words), "label": label}))
  path.write_text("\n".join(lines) + "\n")


def test_rnn_classifier_trains_above_chance_on_text(tmp_path):
  _corpus(tmp_path / "corpus.jsonl")
  ds = js.data.load("text_classification", path=str(tmp_path / "corpus.jsonl"),
                    max_length=12)
  res = js.run(model=js.models.rnn_classifier, optimizer=optax.adam, data=ds,
               fixed={"embed_dim": 16, "hidden": 16, "pooling": "max"},
               sweep={"learning_rate": [1e-2, 3e-2]}, steps=60, batch_size=32,
               eval_every=60)
  assert min(r["test_accuracy"] for r in res.rows) > 0.6, res.rows  # Chance: 1/3.
  # The vocabulary size came from the data: the embedding has one row per id.
  emb = res.params(0)["Embed_0"]["embedding"]
  assert emb.shape[0] == ds.info["vocab_size"]


def test_shipped_text_config_plans(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  os.makedirs("data")
  _corpus(tmp_path / "corpus.jsonl", n=30)
  lines = [json.loads(s) for s in (tmp_path / "corpus.jsonl").read_text().splitlines()]
  with open("data/text_classification.csv", "w") as f:
    f.write("text,label\n" + "".join(f"{d['text']},{d['label']}\n" for d in lines))
  path = os.path.join(CONFIGS, "text_classification.yaml")
  assert cli.main(["plan", path, "--no-memory"]) == 0
  assert "12 variants in 2 compile group" in capsys.readouterr().out
  data = dict(config_lib.load(path).raw["data"])
  assert js.data.load(data.pop("name"), **data).num_classes == 3
