"""The dataset cache (``load_cached``): keyed on the files, bounded, explicit.

A file edited in place within one process is read again (npz, CSV, a folder
per class); the cache keeps at most ``CACHE_SIZE`` datasets and
``clear_cache`` empties it. No JAX compilation here.
"""

import os

import numpy as np
import pytest

import jaxsweep as js
from jaxsweep.components.data import dataset as dataset_lib


@pytest.fixture(autouse=True)
def empty_cache():
  js.data.clear_cache()
  yield
  js.data.clear_cache()


def write_npz(path, n_train, seed):
  rng = np.random.default_rng(seed)
  arrays = {"x_train": rng.normal(size=(n_train, 3)).astype(np.float32), "y_train": rng.integers(0, 3, n_train),
            "x_test": rng.normal(size=(8, 3)), "y_test": np.arange(8) % 3}
  np.savez(path, **arrays)
  return arrays


def write_csv(path, rows):
  path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))


def same_size_edit(path, new_bytes):
  """Rewrites ``path`` with as many bytes and a later mtime (same-second edits too)."""
  st = os.stat(path)
  assert len(new_bytes) == st.st_size
  with open(path, "r+b") as f:  # In place: same inode.
    f.write(new_bytes)
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_npz_edited_in_place_is_read_again(tmp_path):
  path = tmp_path / "d.npz"
  write_npz(path, 20, seed=0)
  first = js.data.load_cached("npz", path=str(path), val_fraction=0.0)
  assert js.data.load_cached("npz", path=str(path), val_fraction=0.0) is first
  arrays = write_npz(path, 30, seed=1)  # Another size.
  second = js.data.load_cached("npz", path=str(path), val_fraction=0.0)
  assert second is not first and second.num_train == 30
  np.testing.assert_array_equal(second.train["x"], arrays["x_train"])
  # Same size, only the bytes and the modification time differ.
  data = bytearray(path.read_bytes())
  arrays["x_train"][0, 0] += 1.0
  np.savez(tmp_path / "other.npz", **arrays)
  edited = (tmp_path / "other.npz").read_bytes()
  assert len(edited) == len(data) and edited != bytes(data)
  same_size_edit(path, edited)
  third = js.data.load_cached("npz", path=str(path), val_fraction=0.0)
  assert third is not second and third.train["x"][0, 0] == arrays["x_train"][0, 0]


def test_csv_edited_in_place_is_read_again(tmp_path):
  path = tmp_path / "t.csv"
  write_csv(path, [("good film", "pos"), ("bad film", "neg")] * 5)
  kwargs = {"path": str(path), "test_fraction": 0.2, "val_fraction": 0.0}
  first = js.data.load_cached("text_classification", **kwargs)
  assert first.info["labels"] == ["neg", "pos"]
  assert js.data.load_cached("text_classification", **kwargs) is first
  write_csv(path, [("good film", "pos"), ("bad film", "neg"), ("so so", "meh")] * 5)
  second = js.data.load_cached("text_classification", **kwargs)
  assert second.info["labels"] == ["meh", "neg", "pos"]
  same_size_edit(path, path.read_bytes().replace(b"meh", b"mid"))
  assert js.data.load_cached("text_classification", **kwargs).info["labels"] == [
      "mid", "neg", "pos"]


def test_folder_gaining_a_file_is_read_again(tmp_path):
  for label in ("neg", "pos"):
    (tmp_path / label).mkdir()
    for i in range(5):
      (tmp_path / label / f"{i}.txt").write_text(f"{label} text {i}")
  kwargs = {"path": str(tmp_path), "test_fraction": 0.2, "val_fraction": 0.0}
  first = js.data.load_cached("text_classification", **kwargs)
  (tmp_path / "pos" / "5.txt").write_text("pos text 5")
  second = js.data.load_cached("text_classification", **kwargs)
  assert second is not first
  assert second.num_train + second.num_test == first.num_train + first.num_test + 1


def test_cache_is_bounded_and_least_recently_used_goes_first():
  size = dataset_lib.CACHE_SIZE
  assert size == 8
  loaded = [js.data.load_cached("synthetic", num_train=32, num_test=8, seed=s)
            for s in range(size)]
  assert len(dataset_lib._CACHE) == size  # pylint: disable=protected-access
  assert js.data.load_cached("synthetic", num_train=32, num_test=8, seed=0) is loaded[0]
  js.data.load_cached("synthetic", num_train=32, num_test=8, seed=size)  # Evicts seed 1.
  assert len(dataset_lib._CACHE) == size  # pylint: disable=protected-access
  assert js.data.load_cached("synthetic", num_train=32, num_test=8, seed=0) is loaded[0]
  assert js.data.load_cached("synthetic", num_train=32, num_test=8, seed=1) is not loaded[1]
  js.data.clear_cache()
  assert not dataset_lib._CACHE  # pylint: disable=protected-access
  assert js.data.load_cached("synthetic", num_train=32, num_test=8, seed=0) is not loaded[0]


def test_a_missing_file_is_an_error_each_time_and_never_cached(tmp_path):
  path = tmp_path / "late.npz"
  with pytest.raises(js.ConfigError, match="file not found"):
    js.data.load_cached("npz", path=str(path))
  write_npz(path, 20, seed=0)
  assert js.data.load_cached("npz", path=str(path)).num_train > 0
