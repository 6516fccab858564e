"""Every bad input is answered before training: one ConfigError (or
ModelError) naming the key, what was found and the fix; exit code 2 and no
traceback from the CLI. One test per check (docs/checks.md lists them under
"Checks before training").

Checks that run before anything compiles are asserted with a compile
counter: zero XLA backend compilations happened before the error.
"""

import os

import flax.linen as nn
import numpy as np
import optax
import pytest

import jaxsweep as js
from jaxsweep import cli
from tests import helpers

D = helpers.DATA
X, Y, XT, YT = D.train["x"], D.train["y"], D.test["x"], D.test["y"]

TINY = """\
data: {name: synthetic, num_train: 64, num_test: 40, num_features: 8, num_classes: 4}
model: {name: mlp, features: [16]}
loss: cross_entropy
optimizer: {name: adam, learning_rate: 1.0e-3}
train: {steps: 6, batch_size: 16, eval_every: 3}
"""


def _refused(fn, key, fix_word, *, error=js.ConfigError, before_compile=True):
  """Runs fn, expects `error` naming `key` and `fix_word`; returns the message."""
  with helpers.count_compiles() as compiles, pytest.raises(error) as e:
    fn()
  msg = str(e.value)
  assert e.value.key == key, msg
  assert fix_word in msg, msg
  if before_compile:
    assert not compiles, f"{len(compiles)} compilations before the error: {msg}"
  return msg


def _run_data(data=D, *, loss=js.losses.cross_entropy, sweep=None, **kw):
  """helpers.run with any data and loss (same shapes: compiled programs are shared)."""
  kw.setdefault("fixed", {"features": (16,)})
  return js.run(model=helpers.mlp, optimizer=helpers.adam, loss=loss, data=data,
                sweep=sweep or {"learning_rate": [1e-2]}, steps=helpers.STEPS,
                batch_size=helpers.BATCH, eval_every=3, **kw)


def _cli_refused(tmp_path, capsys, content, key, fix_word, *, overrides=(), name="c.yaml"):
  """Writes a config (text or bytes), runs `jaxsweep run`: exit 2, no traceback."""
  path = tmp_path / name
  if isinstance(content, bytes):
    path.write_bytes(content)
  elif content is not None:
    path.write_text(content)
  with helpers.count_compiles() as compiles:
    code = cli.main(["run", str(path), "--quiet", "--out", str(tmp_path / "out"),
                     *overrides])
  err = capsys.readouterr().err
  assert code == 2, err
  assert err.startswith("jaxsweep: error: ") and "Traceback" not in err, err
  assert f"key '{key}'" in err or key is None, err
  assert fix_word in err, err
  assert not compiles, err
  return err


# --------------------------------------------------------------------------
# 1. Data.

def test_labels_above_num_classes():
  y = Y.copy()
  y[3] = 7
  msg = _refused(lambda: _run_data(js.data.arrays(X, y, XT, YT, num_classes=4)),
                 "data.y_train", "num_classes")
  assert "outside [0, 4)" in msg and "example 3" in msg and "from 0 to 7" in msg


def test_negative_labels():
  y = Y.copy()
  y[5] = -1
  msg = _refused(lambda: _run_data(js.data.arrays(X, y, XT, YT)), "data.y_train", "remap")
  assert "first bad one -1 at example 5" in msg


def test_model_output_width_is_not_num_classes():
  msg = _refused(lambda: js.run(
      model=lambda: js.models.MLP(features=(16,), num_outputs=3), optimizer=helpers.adam,
      loss=js.losses.cross_entropy, data=D, sweep={"learning_rate": [1e-2]},
      steps=helpers.STEPS, batch_size=helpers.BATCH), "model", "4 wide",
      error=js.errors.ModelError)
  assert "outputs 3 values per example" in msg and "4 classes" in msg


def test_model_num_outputs_set_wrong_in_a_config(tmp_path, capsys):
  err = _cli_refused(tmp_path, capsys, TINY, "model.num_outputs", "leave it out",
                     overrides=["model.num_outputs=3"])
  assert "outputs 3 values" in err


def test_nan_in_train_inputs():
  x = X.copy()
  x[2, 1] = np.nan
  msg = _refused(lambda: _run_data(js.data.arrays(x, Y, XT, YT)), "data.x_train",
                 "np.nan_to_num")
  assert "1 NaN value" in msg and "example 2" in msg and "diverge" in msg


def test_inf_in_test_inputs():
  xt = XT.copy()
  xt[4, 0] = np.inf
  xt[6, 0] = -np.inf
  msg = _refused(lambda: _run_data(js.data.arrays(X, Y, xt, YT)), "data.x_test", "drop")
  assert "2 inf values" in msg and "example 4" in msg and "nan test metric" in msg


def test_nan_in_regression_targets():
  ds = js.data.load("regression", num_train=32, num_test=16)
  y = ds.train["y"].copy()
  y[9] = np.nan
  # Refused where the arrays are given, with the example's index in them.
  msg = _refused(lambda: js.data.arrays(ds.train["x"], y, ds.test["x"], ds.test["y"]),
                 "data.y_train", "nan_to_num")
  assert "example 9" in msg


def test_float_labels_for_cross_entropy():
  msg = _refused(lambda: _run_data(js.data.arrays(X, Y.astype(np.float32), XT,
                                                  YT.astype(np.float32))),
                 "data.y_train", "astype(np.int32)")
  assert "float32" in msg and "cross_entropy" in msg and "task='regression'" in msg


def test_fractional_labels_with_task_classification():
  y = Y.astype(np.float32)
  y[1] = 0.5
  msg = _refused(lambda: js.data.arrays(X, y, XT, YT, task="classification"),
                 "data.y_train", "task='regression'")
  assert "not whole numbers" in msg and "example 1" in msg


def test_empty_test_split():
  msg = _refused(lambda: _run_data(js.data.arrays(X, Y, XT[:0], YT[:0])), "data.x_test",
                 "at least one example")
  assert "is empty" in msg


def test_zero_d_array():
  _refused(lambda: _run_data(js.data.arrays(np.float32(1.0), Y, XT, YT)), "data.x_train",
           "[num_examples, ...]")


def test_uint8_inputs_warn_to_normalise_and_keep_the_data():
  x8, xt8 = (X * 10).astype(np.uint8), (XT * 10).astype(np.uint8)
  with pytest.warns(UserWarning, match=r"uint8.*x_train / 255\.0") as record:
    ds = js.data.arrays(x8, Y, xt8, YT, val_fraction=0)
  assert len(record) == 1  # Once, not once per array.
  np.testing.assert_array_equal(ds.train["x"], x8)
  assert js.data.load("digits").train["x"].max() <= 1.0  # Built-in images are scaled.


# --------------------------------------------------------------------------
# 2. Hyperparameter types.

@pytest.mark.parametrize("value, found, fix", [
    ("abc", "the string 'abc'", "e.g. optimizer.learning_rate: 0.001"),
    (True, "the boolean true", "give a number"),
    ([0.1], "a list [0.1]", "sweep them"),
    (None, "null", "give a number"),
], ids=["string", "bool", "list", "null"])
def test_learning_rate_not_a_number(value, found, fix):
  msg = _refused(lambda: helpers.run({"learning_rate": [value]}),
                 "optimizer.learning_rate", fix)
  assert f"takes a number, got {found}" in msg


@pytest.mark.parametrize("value, fix", [
    ("true", "give a number"), ("'1e-2'", "without quotes: optimizer.learning_rate: 0.01")])
def test_learning_rate_not_a_number_in_a_config(tmp_path, capsys, value, fix):
  _cli_refused(tmp_path, capsys, TINY.replace("learning_rate: 1.0e-3", f"learning_rate: {value}"),
               "optimizer.learning_rate", fix)


def test_negative_learning_rate():
  msg = _refused(lambda: helpers.run({"learning_rate": [1e-2, -0.1]}),
                 "optimizer.learning_rate", "positive")
  assert "-0.1" in msg


def test_loss_and_model_call_arguments_not_numbers():
  _refused(lambda: helpers.run({"learning_rate": [1e-2], "dropout_rate": ["0.1"]}),
           "model.dropout_rate", "without quotes")

  def loss(out, batch, weight=1.0):
    return js.losses.cross_entropy(out, batch) * weight

  _refused(lambda: _run_data(loss=loss, sweep={"learning_rate": [1e-2], "weight": [[1.0, 2.0]]}),
           "loss.weight", "sweep them")


def test_features_not_a_list_of_ints(tmp_path, capsys):
  _cli_refused(tmp_path, capsys, TINY.replace("features: [16]", "features: abc"),
               "model.features", "list of positive integers")
  msg = _refused(lambda: js.run(model=js.models.mlp, optimizer=helpers.adam, data=D,
                                sweep={"learning_rate": [1e-2], "features": [[16, 2.5]]},
                                steps=helpers.STEPS, batch_size=helpers.BATCH),
                 "model.features", "e.g. features: [64, 64]")
  assert "2.5" in msg


@pytest.mark.parametrize("seed", [1.5, -1, "0"])
def test_seed_not_a_whole_number_in_range(seed):
  _refused(lambda: helpers.run({"learning_rate": [1e-2], "seed": [seed]}), "seed",
           "seeds like 0, 1, 2")


def test_bool_argument_given_a_string(tmp_path, capsys):
  # YAML 1.2 reads `no` as text: bool("no") would silently be True.
  _cli_refused(tmp_path, capsys, TINY.replace("features: [16]", "features: [16], batch_norm: no"),
               "model.batch_norm", "true (or false)")


def test_structural_count_not_a_whole_number(tmp_path, capsys):
  _cli_refused(tmp_path, capsys, TINY, "data.num_train", "give an integer",
               overrides=["data.num_train=64.5"])


# --------------------------------------------------------------------------
# 3. Config files and API mistakes.

def test_config_not_utf8(tmp_path, capsys):
  err = _cli_refused(tmp_path, capsys, TINY.encode() + b"name: caf\xe9\n", None, "UTF-8")
  assert "not UTF-8 text (byte 0xe9 on line 6)" in err


def test_config_path_is_a_directory(tmp_path, capsys):
  (tmp_path / "run1").mkdir()
  (tmp_path / "run1" / "config.yaml").write_text(TINY)
  err = _cli_refused(tmp_path, capsys, None, None, os.path.join("run1", "config.yaml"),
                     name="run1")
  assert "is a directory" in err


def test_duplicate_key_in_a_mapping(tmp_path, capsys):
  text = TINY.replace("learning_rate: 1.0e-3}", "learning_rate: 1.0e-3}\noptimizer: sgd")
  err = _cli_refused(tmp_path, capsys, text, "optimizer", "keep one")
  assert "given twice (lines 4 and 5)" in err and "only the last" in err
  nested = TINY.replace("features: [16]", "features: [16], features: [8]")
  err = _cli_refused(tmp_path, capsys, nested, "model.features", "keep one")


def test_duplicate_key_in_an_override(tmp_path, capsys):
  _cli_refused(tmp_path, capsys, TINY, "model.features", "quote",
               overrides=["model.features={a: 1, a: 2}"])


def test_yaml_nested_too_deep_or_cyclic(tmp_path, capsys):
  err = _cli_refused(tmp_path, capsys, TINY + "sweep: {model.features: " + "[" * 500
                     + "]" * 500 + "}\n", None, "fix:")
  assert "nested more than 64 levels" in err
  err = _cli_refused(tmp_path, capsys, TINY + "description: &a [*a]\n", None, "fix:")
  assert "cyclic" in err


def test_run_options_checked_on_load(tmp_path, capsys):
  _cli_refused(tmp_path, capsys, TINY + "run: {max_variants: lots}\n", "run.max_variants",
               "positive integer")
  _cli_refused(tmp_path, capsys, TINY + "run: {memory_budget: big}\n", "run.memory_budget",
               "2GiB")


def test_required_dataset_argument_missing(tmp_path, capsys):
  _cli_refused(tmp_path, capsys, TINY.replace("name: synthetic, num_train: 64, num_test: 40, "
                                              "num_features: 8, num_classes: 4", "name: npz"),
               "data.path", "path: ...")


def test_unknown_component_name_names_its_key(tmp_path, capsys):
  err = _cli_refused(tmp_path, capsys, TINY.replace("name: mlp", "name: mpl"), "model.name",
                     "use one of: cnn, mlp, rnn")
  assert "unknown model 'mpl'. Did you mean 'mlp'?" in err


def test_empty_sweep_list():
  _refused(lambda: helpers.run([]), "sweep", "sweep=None")


# --------------------------------------------------------------------------
# 4. Honest messages: an exception in the user's code is shown as itself.

def test_key_error_in_loss_is_shown_as_itself():
  def loss(out, batch):
    return js.losses.cross_entropy(out, batch) + batch["mask"].sum()

  msg = _refused(lambda: _run_data(loss=loss), "loss", "line named",
                 error=js.errors.ModelError)
  assert "the loss raised KeyError: 'mask'" in msg
  assert "in loss (" in msg and "test_validation.py" in msg
  assert "do not fit" not in msg


def test_attribute_error_in_metric_is_shown_as_itself():
  def top2(out, batch):
    return out.topk(2)

  msg = _refused(lambda: helpers.run({"learning_rate": [1e-2]}, metrics={"top2": top2}),
                 "metrics", "line named", error=js.errors.ModelError)
  assert "metric 'top2' raised AttributeError" in msg and "in top2 (" in msg
  assert "do not fit" not in msg


class _Scaled(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(x) * scale  # noqa: F821 (the user's mistake)


def test_name_error_in_model_is_shown_as_itself():
  msg = _refused(lambda: js.run(model=_Scaled(), optimizer=helpers.adam, data=D,
                                sweep={"learning_rate": [1e-2]}, steps=helpers.STEPS,
                                batch_size=helpers.BATCH), "model", "line named",
                 error=js.errors.ModelError)
  assert "NameError: name 'scale' is not defined" in msg and "in __call__ (" in msg


class _BrokenWhenTraining(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(4)(x)
    if train:  # Only the training step sees this line, not the check's apply.
      x = x * noise  # noqa: F821 (the user's mistake)
    return x


@pytest.mark.parametrize("groups", [1, 2])
def test_error_only_in_training_mode_is_shown_as_itself(groups):
  # The first group's period is traced by its compile rather than by the
  # check (one trace, not two): the error is the same, still before any
  # backend compile, whichever group raises it.
  sweep = {"learning_rate": [1e-2]}
  if groups == 2:
    sweep["batch_size"] = [helpers.BATCH, 2 * helpers.BATCH]
  msg = _refused(lambda: js.run(model=_BrokenWhenTraining(), optimizer=helpers.adam, data=D,
                                sweep=sweep, steps=helpers.STEPS,
                                batch_size=helpers.BATCH), "model", "line named",
                 error=js.errors.ModelError)
  assert "the training step raised NameError: name 'noise' is not defined" in msg, msg
  assert "in __call__ (" in msg and "test_validation.py" in msg, msg


def test_loss_returning_per_example_values():
  def loss(out, batch):
    return optax.softmax_cross_entropy_with_integer_labels(out, batch["y"])

  msg = _refused(lambda: _run_data(loss=loss), "loss", ".mean()", error=js.errors.ModelError)
  assert "(16,)" in msg and "not a scalar" in msg


def test_real_shape_mismatch_still_names_both_shapes():
  msg = _refused(lambda: js.run(
      model=lambda: js.models.MLP(features=(8,), num_outputs=3), optimizer=helpers.sgd,
      loss=js.losses.mse, data=js.data.load("regression", num_train=32, num_test=16),
      sweep={"learning_rate": [0.1]}, steps=2, batch_size=8), "loss", "num_outputs",
      error=js.errors.ModelError)
  assert "do not fit the loss" in msg and "(8, 3)" in msg and "(8, 1)" in msg
