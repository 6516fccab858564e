"""The CLI and config path end to end, and the errors users hit first."""

import csv
import json
import os

import numpy as np
import pytest

import jaxsweep as js
from jaxsweep import cli
from jaxsweep import config as config_lib
from tests import helpers

TINY = helpers.TINY_BASE + """\
sweep:
  optimizer.learning_rate: {log_uniform: [1.0e-3, 1.0e-1], num: 3}
  seed: [0, 1]
"""


@pytest.fixture
def tiny_config(tmp_path):
  path = tmp_path / "tiny.yaml"
  path.write_text(TINY)
  return str(path)


def test_cli_run_writes_table_and_files(tiny_config, tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["run", tiny_config, "--out", str(out), "--quiet"]) == 0
  printed = capsys.readouterr().out
  assert "val_accuracy (mean ± std)" in printed and "test_accuracy" in printed
  assert "selected: learning_rate=" in printed and "report test_accuracy = " in printed
  assert "best single run: variant" in printed
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 6
  for col in ("variant", "optimizer.learning_rate", "seed", "status", "diverged_step",
              "val_accuracy", "test_objective", "test_accuracy", "batch_objective"):
    assert col in rows[0]
  assert {r["status"] for r in rows} == {"ok"}
  data = json.loads((out / "results.json").read_text())
  assert len(data["rows"]) == 6 and data["target"] == "val_accuracy"
  assert len(data["history"]["0"]) == 3  # Step 0 and two periods.
  # Sorted best first.
  accs = [float(r["val_accuracy"]) for r in rows]
  assert accs == sorted(accs, reverse=True)


def test_cli_overrides_sweep_and_fix(tiny_config, tmp_path, capsys):
  out = tmp_path / "o"
  code = cli.main(["run", tiny_config, "--out", str(out), "--quiet",
                   "optimizer.learning_rate=0.01,0.02", "seed=3"])
  assert code == 0
  saved = json.loads((out / "results.json").read_text())
  rows = saved["rows"]
  assert sorted(r["optimizer.learning_rate"] for r in rows) == [0.01, 0.02]
  # seed=3 replaced the swept seeds: one value, no longer a column.
  assert len(rows) == 2 and "seed" not in saved["swept"]
  assert [s["seed"] for s in saved["settings"].values()] == [3, 3]
  capsys.readouterr()


def test_config_and_python_api_agree(tiny_config):
  """The config path and the Python API give identical results."""
  cfg_res = js.run_config(tiny_config)
  lrs = np.geomspace(1e-3, 1e-1, 3).tolist()
  api_res = js.run(
      model=lambda features, activation: js.models.mlp(features=features,
                                                       activation=activation, num_outputs=4),
      optimizer=js.optim.adam, loss=js.losses.cross_entropy,
      data=js.data.load("synthetic", num_train=64, num_test=40, num_features=8,
                        num_classes=4),
      sweep={"learning_rate": lrs, "seed": [0, 1]},
      fixed={"features": (16,), "activation": "relu"}, steps=6, batch_size=16,
      eval_every=3)
  assert len(cfg_res.rows) == len(api_res.rows) == 6
  for a, b in zip(cfg_res.rows, api_res.rows):
    assert a["optimizer.learning_rate"] == b["learning_rate"]
    assert a["id"] == b["id"]  # Ids come from the qualified names, whoever names them.
    for k in ("val_objective", "test_objective", "test_accuracy", "batch_objective"):
      assert a[k] == b[k], k


def _error(capsys, argv) -> str:
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return err


def test_error_unknown_config_key(tmp_path, capsys):
  path = tmp_path / "bad.yaml"
  path.write_text(TINY.replace("optimizer: {name: adam,", "optimizer: {name: adam, learnig_rate: 1,"))
  err = _error(capsys, ["run", str(path), "--out", str(tmp_path / "x")])
  assert "optimizer.learnig_rate" in err and "optimizer.learning_rate" in err
  assert str(path) in err
  path.write_text(TINY + "\ntrian: {steps: 3}\n")
  err = _error(capsys, ["run", str(path)])
  assert "trian" in err and "Did you mean 'train'" in err


def test_error_missing_config_file(tmp_path, capsys):
  err = _error(capsys, ["run", str(tmp_path / "nope.yaml")])
  assert "config file not found" in err and "nope.yaml" in err


def test_error_non_positive_log_grid(tmp_path, capsys):
  path = tmp_path / "bad.yaml"
  path.write_text(TINY.replace("[1.0e-3, 1.0e-1]", "[0.0, 1.0e-1]"))
  err = _error(capsys, ["run", str(path)])
  assert "optimizer.learning_rate" in err and "positive" in err


def test_error_npz_missing_array(tmp_path, capsys):
  npz = tmp_path / "d.npz"
  np.savez(npz, x_train=np.zeros((4, 2)), y_train=np.zeros(4, int), x_test=np.zeros((2, 2)))
  path = tmp_path / "bad.yaml"
  path.write_text(TINY.replace(
      "data: {name: synthetic, num_train: 64, num_test: 40, num_features: 8, num_classes: 4}",
      f"data: {{name: npz, path: {npz}}}"))
  err = _error(capsys, ["run", str(path)])
  assert "y_test" in err and "data.path" in err


def test_npz_dataset_roundtrip(tmp_path):
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.normal(size=(20, 3)), "y_train": rng.integers(0, 3, 20),
            "x_test": rng.normal(size=(8, 3)), "y_test": rng.integers(0, 3, 8)}
  np.savez(tmp_path / "d.npz", **arrays)
  ds = js.data.load("npz", path=str(tmp_path / "d.npz"))
  assert ds.task == "classification" and ds.num_classes == 3
  np.testing.assert_array_equal(ds.test["y"], arrays["y_test"])
  with pytest.raises(js.ConfigError, match="file not found"):
    js.data.load("npz", path=str(tmp_path / "missing.npz"))
  (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
  with pytest.raises(js.ConfigError, match="cannot read"):
    js.data.load("npz", path=str(tmp_path / "corrupt.npz"))


def test_default_config_expands_to_48_variants_in_one_group():
  cfg = config_lib.load(os.path.join(os.path.dirname(__file__), "..", "configs",
                                     "digits_lr.yaml"))
  plan = js.engine.make_plan(cfg.components, cfg.base, cfg.points)
  assert plan.num_variants == 48 and len(plan.groups) == 1
  lrs = sorted({v["optimizer.learning_rate"] for v in plan.variants})
  np.testing.assert_allclose(lrs, np.geomspace(1e-4, 1.0, 16), rtol=1e-12)


def test_the_table_prints_once_the_results_are_on_disk_before_the_plots(
    tiny_config, tmp_path, capsys, monkeypatch):
  """Time to the table: the plots (the slowest file) come after it."""
  from jaxsweep.report import outputs  # pylint: disable=g-import-not-at-top
  seen = {}
  write_extras = outputs.write_extras

  def spy(res, staging, **kwargs):
    seen["printed"] = capsys.readouterr().out
    seen["results_csv"] = os.path.exists(tmp_path / "out" / "results.csv")
    return write_extras(res, staging, **kwargs)

  monkeypatch.setattr(outputs, "write_extras", spy)
  assert cli.main(["run", tiny_config, "--out", str(tmp_path / "out"), "--quiet"]) == 0
  assert "val_accuracy (mean ± std)" in seen["printed"] and seen["results_csv"]
  after = capsys.readouterr().out
  assert "val_accuracy (mean ± std)" not in after  # Printed once.
  assert "results in" in after


def test_the_api_reports_the_results_event_before_the_outputs_event(tmp_path):
  events = []
  path = tmp_path / "tiny.yaml"
  path.write_text(TINY)
  js.run_config(str(path), out=str(tmp_path / "out"), progress=events.append)
  kinds = [e["event"] for e in events if e["event"] in ("rundir", "results", "outputs")]
  assert kinds == ["rundir", "results", "outputs"]
  results = next(e for e in events if e["event"] == "results")["results"]
  assert len(results.table) == 6
