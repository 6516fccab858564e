"""Input checked, not coerced (issue #25, points 9-14; issue #26, point 8).

Each wrong input is one ConfigError naming the key and the fix, raised while
loading or planning, before anything compiles.
"""

import datetime
import os
import warnings

import numpy as np
import pytest
import yaml

import jaxsweep as js
from jaxsweep import cli
from jaxsweep import config as config_lib
from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import report
from jaxsweep import space
from jaxsweep.engine import structure
from jaxsweep.engine import validate
from jaxsweep.space import yaml12

X = np.random.default_rng(0).normal(size=(64, 3))
Y = np.arange(64) % 2


def _one_line_error(exc: pytest.ExceptionInfo, key: str) -> str:
  e = exc.value
  assert e.key == key, str(e)
  assert e.fix, str(e)
  assert len(str(e).splitlines()) == 2, str(e)  # The message, then the fix.
  return str(e)


# --------------------------------------------------------------------------
# (9) Lengths.


@pytest.mark.parametrize("split, kwargs", [
    ("train", {"y_train": Y[:60]}),
    ("test", {"y_test": Y[:9]}),
    ("val", {"x_val": X[:5], "y_val": Y[:4]}),
])
def test_features_and_labels_of_different_lengths(split, kwargs):
  args = {"x_train": X, "y_train": Y, "x_test": X[:10], "y_test": Y[:10], **kwargs}
  with pytest.raises(js.ConfigError) as e:
    js.data.arrays(**args)
  text = _one_line_error(e, f"data.y_{split}")
  n_x, n_y = len(args[f"x_{split}"]), len(args[f"y_{split}"])
  assert f"{n_x} inputs" in text and f"{n_y} targets" in text and split in text


def _npz(path, **arrays):
  base = {"x_train": X, "y_train": Y, "x_test": X[:10], "y_test": Y[:10]}
  np.savez(path, **{**base, **arrays})
  return str(path)


def test_npz_with_mismatched_arrays_says_which(tmp_path):
  path = _npz(tmp_path / "d.npz", y_train=Y[:50])
  with pytest.raises(js.ConfigError) as e:
    js.data.load("npz", path=path)
  text = _one_line_error(e, "data.y_train")
  assert "rejected" not in text and "64 inputs" in text and "50 targets" in text


def test_a_text_file_given_as_npz(tmp_path):
  path = tmp_path / "texts.npz"
  path.write_text("text,label\nhello,1\n")
  with pytest.raises(js.ConfigError) as e:
    js.data.load("npz", path=str(path))
  text = _one_line_error(e, "data.path")
  assert "not an .npz file" in text and "allow_pickle" not in text


# --------------------------------------------------------------------------
# (10) Labels.


def test_int64_labels_beyond_int32_are_refused_not_wrapped():
  y = Y.astype(np.int64)
  y[3] = 2**40  # Would wrap to 0 as int32.
  with pytest.raises(js.ConfigError) as e:
    js.data.arrays(X, y, X[:10], Y[:10])
  text = _one_line_error(e, "data.y_train")
  assert "1099511627776" in text and "example 3" in text


def test_num_classes_from_the_true_values():
  y = Y.astype(np.int64) * 7
  assert js.data.arrays(X, y, X[:10], y[:10]).num_classes == 8


def test_bool_labels_are_refused_unless_the_task_says_how():
  with pytest.raises(js.ConfigError) as e:
    js.data.arrays(X, Y.astype(bool), X[:10], Y[:10].astype(bool))
  text = _one_line_error(e, "data.y_train")
  assert "task='classification'" in text and "task='regression'" in text
  ds = js.data.arrays(X, Y.astype(bool), X[:10], Y[:10].astype(bool), task="classification")
  assert (ds.task, ds.num_classes, ds.train["y"].dtype) == ("classification", 2, np.int32)
  ds = js.data.arrays(X, Y.astype(bool), X[:10], Y[:10].astype(bool), task="regression")
  assert ds.task == "regression" and ds.train["y"].dtype == np.float32


def test_bool_labels_in_an_npz_file(tmp_path):
  path = _npz(tmp_path / "b.npz", y_train=Y.astype(bool), y_test=Y[:10].astype(bool))
  with pytest.raises(js.ConfigError, match="booleans"):
    js.data.load("npz", path=path)
  assert js.data.load("npz", path=path, task="classification").num_classes == 2


# --------------------------------------------------------------------------
# (14) Values beyond float32, a BOM CSV, the CIFAR folder.


def test_float64_inputs_beyond_float32_are_refused_without_a_numpy_warning():
  x = X.copy()
  x[5, 1] = 1e39
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with pytest.raises(js.ConfigError) as e:
      js.data.arrays(x, Y, X[:10], Y[:10])
  assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
  text = _one_line_error(e, "data.x_train")
  assert "1e+39" in text and "float32" in text


def test_a_utf8_bom_csv_is_read(tmp_path):
  path = tmp_path / "t.csv"
  rows = "".join(f"{'good fine great' if i % 2 else 'bad awful poor'} {i},{i % 2}\n"
                 for i in range(40))
  path.write_bytes(("text,label\n" + rows).encode("utf-8-sig"))
  assert path.read_bytes().startswith(b"\xef\xbb\xbf")
  ds = js.data.load("text_classification", path=str(path))
  assert ds.num_classes == 2 and ds.num_train + ds.num_val + ds.num_test == 40


def test_the_cifar_message_says_to_create_the_folder(tmp_path):
  folder = tmp_path / "nowhere" / "cifar10"
  with pytest.raises(js.ConfigError) as e:
    js.data.load("cifar10", path=str(folder))
  assert f"mkdir -p {folder}" in e.value.fix
  os.makedirs(folder)
  with pytest.raises(js.ConfigError) as e:
    js.data.load("cifar10", path=str(folder))
  assert "mkdir" not in e.value.fix


# --------------------------------------------------------------------------
# (11, 13) Hyperparameter values, through load and plan.

BASE = """\
data: {name: synthetic, num_train: 64, num_test: 32}
model: {name: mlp, features: [8]}
optimizer: {name: adam, learning_rate: 0.01}
train: {steps: 4, batch_size: 16, eval_every: 2}
"""


def _plan(tmp_path, text=BASE, overrides=()):
  """What `jaxsweep plan` does (its memory estimate included), raising."""
  path = tmp_path / "c.yaml"
  path.write_text(text)
  cfg = config_lib.load(str(path), overrides)
  plan = structure.make_plan(cfg.components, cfg.base, cfg.points)
  return report.plan.describe(plan, memory="shapes",
                              memory_budget=cfg.run.get("memory_budget"))


@pytest.mark.parametrize("override, key, needle", [
    ("model.features=[1e308]", "model.features", "fits in memory"),
    ("model.features=[100000000000]", "model.features", "fits in memory"),
    ("loss.label_smoothing=6e10", "loss.label_smoothing", "[0, 1)"),
    ("loss.label_smoothing=-0.1", "loss.label_smoothing", "[0, 1)"),
    ("optimizer.b1=1.0", "optimizer.b1", "[0, 1)"),
    ("optimizer.weight_decay=-1", "optimizer.weight_decay", ">= 0"),
    ("optimizer.learning_rate=0", "optimizer.learning_rate", "allow_zero_learning_rate"),
    ("optimizer.learning_rate=1e39", "optimizer.learning_rate", "float32"),
    ("seed=1.5", "seed", "integer"),
    ("seed=-0.0", "seed", "0 (not -0.0)"),
    ("train.batch_size=100000", "train.batch_size", "64 examples"),
])
def test_values_out_of_range_are_refused_in_plan(tmp_path, override, key, needle):
  with pytest.raises(js.ConfigError) as e:
    _plan(tmp_path, overrides=[override])
  text = _one_line_error(e, key)
  assert needle in text


def test_a_wide_model_that_cannot_fit_is_refused_in_plan_with_the_estimate(tmp_path):
  with pytest.raises(js.ConfigError) as e:
    _plan(tmp_path, BASE + "run: {memory_budget: 64MiB}\n",
          overrides=["model.features=[4000, 4000]"])
  assert "does not fit in memory" in str(e.value) and "MiB" in str(e.value)


def test_a_zero_learning_rate_on_purpose(tmp_path):
  assert "1 compile group" in _plan(tmp_path, BASE + "run: {allow_zero_learning_rate: true}\n",
                                    overrides=["optimizer.learning_rate=0"])


def test_seeds_must_be_distinct_integers():
  for sweep in ({"seed": [0, -0.0, 2]}, {"seed": [0, 0.0]}, {"seed": [True]}):
    with pytest.raises(js.ConfigError) as e:
      cfg = config_lib.load(raw={**yaml.safe_load(BASE), "sweep": sweep})
      js.engine.plan.make_plan(cfg.components, cfg.base, cfg.points)
    assert e.value.key == "seed"
  with pytest.raises(js.ConfigError, match="twice"):
    config_lib.load(raw={**yaml.safe_load(BASE), "sweep": {"seed": [0, 0]}})


def test_validate_check_seed():
  validate.check_seed(np.int64(3))
  for bad in (-0.0, 1.5, 2.0, True, -1, 2**32, "0", None):
    with pytest.raises(js.ConfigError):
      validate.check_seed(bad)


@pytest.mark.parametrize("value, what", [
    ("!!timestamp 2020-01-01", "a date"),
    ("!!binary aGVsbG8=", "bytes"),
    ("!!set {1: null}", "a set"),
])
def test_only_plain_scalars_in_a_config_file(tmp_path, value, what):
  path = tmp_path / "c.yaml"
  path.write_text(BASE + f"seed: {value}\n")
  with pytest.raises(js.ConfigError) as e:
    config_lib.load(str(path))
  text = _one_line_error(e, "seed")
  assert what in text and "line 5" in text


def test_an_unquoted_date_is_text_as_in_yaml_1_2(tmp_path):
  path = tmp_path / "c.yaml"
  path.write_text(BASE + "description: 2024-01-01\n")
  cfg = config_lib.load(str(path))
  assert cfg.raw["description"] == "2024-01-01"
  assert "2024-01-01" in yaml.safe_dump(keys.plain(cfg.raw))


def test_only_plain_values_in_a_raw_config():
  raw = {**yaml.safe_load(BASE), "description": {"when": datetime.date(2020, 1, 1)}}
  with pytest.raises(js.ConfigError) as e:
    config_lib.load(raw=raw)
  assert e.value.key == "description.when"


# --------------------------------------------------------------------------
# (12) Alias bombs.


def test_an_alias_bomb_is_refused_at_once(tmp_path):
  lines = ["description:", "  l0: &l0 [a, a, a, a, a, a, a, a, a, a]"]
  lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
  path = tmp_path / "bomb.yaml"
  path.write_text(BASE + "\n".join(lines) + "\n")
  with pytest.raises(js.ConfigError) as e:
    config_lib.load(str(path))
  assert "alias" in str(e.value) and "1,234,567," in str(e.value) and e.value.file


def test_a_few_aliases_are_fine():
  text = "a: &a [1, 2]\nb: *a\nc: {x: *a, y: *a}\n"
  assert space.load_yaml(text)["c"]["y"] == [1, 2]
  with pytest.raises(yaml12.TooLargeError):
    space.load_yaml("a: &a [" + ", ".join(["x"] * 400) + "]\n"
                    "b: &b [" + ", ".join(["*a"] * 400) + "]\n")


# --------------------------------------------------------------------------
# (14) Overrides; W&B imports written back.


def test_a_log_uniform_override_is_a_sweep():
  fixed, sweep = space.parse_overrides(
      ["optimizer.learning_rate={log_uniform: [1e-4, 1e-1], num: 4}"])
  assert not fixed
  lrs = [p["optimizer.learning_rate"] for p in space.expand(sweep)]
  assert len(lrs) == 4 and lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(0.1)
  cfg = config_lib.load(raw=yaml.safe_load(BASE), overrides=[
      "optimizer.learning_rate={log_uniform: [1e-4, 1e-1], num: 4}"])
  assert cfg.raw["sweep"] == {"optimizer.learning_rate": {"log_uniform": [1e-4, 0.1],
                                                          "num": 4}}


W_PARAMS = {"optimizer.learning_rate": {"distribution": "log_uniform_values", "min": 1e-4,
                                        "max": 1e-1},
            "optimizer.b1": {"values": [0.8, 0.9]}}


@pytest.mark.parametrize("wb", [
    {"method": "grid", "parameters": {"optimizer.b1": {"values": [0.8, 0.9]},
                                      "seed": {"values": [0, 1]}}},
    {"method": "random", "run_cap": 4, "parameters": W_PARAMS},
    {"method": "bayes", "run_cap": 4, "parameters": W_PARAMS,
     "metric": {"name": "val_nll", "goal": "minimize"}},
], ids=["grid", "random", "bayes"])
def test_wandb_imports_write_a_config_that_loads_back(tmp_path, wb):
  (tmp_path / "c.yaml").write_text(BASE)
  (tmp_path / "w.yaml").write_text(yaml.safe_dump(wb))
  cfg = config_lib.load(str(tmp_path / "c.yaml"), wandb=str(tmp_path / "w.yaml"))
  text = yaml.safe_dump(keys.plain(cfg.raw), sort_keys=False)  # As config.yaml is written.
  (tmp_path / "config.yaml").write_text(text)
  back = config_lib.load(str(tmp_path / "config.yaml"))
  assert (back.points, back.method, back.search, back.target, back.mode) == (
      cfg.points, cfg.method, cfg.search, cfg.target, cfg.mode)


def test_wandb_bayes_runs_and_its_config_yaml_runs_back(tmp_path, capsys):
  """The crash of issue #26 point 1: a LogUniform in config.yaml after training."""
  (tmp_path / "c.yaml").write_text(BASE)
  (tmp_path / "w.yaml").write_text(yaml.safe_dump(
      {"method": "bayes", "run_cap": 3, "parameters": {"optimizer.learning_rate":
                                                       W_PARAMS["optimizer.learning_rate"]},
       "metric": {"name": "val_nll", "goal": "minimize"}}))
  out = tmp_path / "out"
  assert cli.main(["run", str(tmp_path / "c.yaml"), "--wandb", str(tmp_path / "w.yaml"),
                   "--out", str(out), "--no-plots"]) == 0
  capsys.readouterr()
  written = yaml.safe_load((out / "config.yaml").read_text())
  assert written["sweep"]["optimizer.learning_rate"] == {"log_uniform": [1e-4, 0.1]}
  assert cli.main(["plan", str(out / "config.yaml")]) == 0


# --------------------------------------------------------------------------
# Issue #26, point 8: messages.


def test_seeds_and_seed_say_which_keys_and_what_to_write():
  with pytest.raises(js.ConfigError) as e:
    space.expand({"seeds": 3, "seed": [0, 1]})
  assert e.value.key == "seed" and "'seeds:'" in str(e.value) and "'seed:'" in str(e.value)
  assert "seeds: 3" in e.value.fix and "seed: [0, 1, 2]" in e.value.fix


def test_a_factory_missing_an_argument_says_how_to_pass_it():
  def opt(learning_rate, b1):
    return js.optim.REGISTRY.get("adam")(learning_rate=learning_rate, b1=b1)

  ds = js.data.load("synthetic", num_train=64, num_test=32)
  with pytest.raises(js.ConfigError) as e:
    js.run(js.models.REGISTRY.get("mlp")(features=(8,), num_outputs=4), opt, data=ds,
           sweep={"learning_rate": [1e-3, 1e-2]}, steps=2, batch_size=8, progress=False)
  text = _one_line_error(e, "optimizer.b1")
  assert "fixed={'b1': ...}" in text


def test_rejected_arguments_other_than_missing():
  e = errors.rejected_arguments(TypeError("got an unexpected keyword argument 'x'"),
                                slot="optimizer", accepted=["learning_rate"])
  assert e.key == "optimizer" and e.fix == "it accepts: learning_rate"


@pytest.mark.parametrize("model, data, key", [
    ("{name: mlp, features: [" + ", ".join(["8"] * 2000) + "]}", None, "model.features"),
    ("{name: rnn, layers: 100000}", "{name: text, max_chars: 20000}", "model.layers"),
], ids=["2000 widths", "100000 rnn layers"])
def test_absurd_depths_are_refused(tmp_path, model, data, key):
  text = BASE.replace("{name: mlp, features: [8]}", model)
  if data:
    text = text.replace("{name: synthetic, num_train: 64, num_test: 32}", data)
  with pytest.raises(js.ConfigError) as e:
    _plan(tmp_path, text)
  assert "layers would take hours" in _one_line_error(e, key)
