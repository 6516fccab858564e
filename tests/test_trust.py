"""Results a researcher can trust: selection on validation, honest statuses,
comparable metrics checked against numpy, the evaluation at step 0."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp

import jaxsweep as js
from jaxsweep.engine import program
from tests import helpers


def test_ranking_follows_validation_not_test():
  """Validation and test disagree by construction: test labels are the
  training rule flipped, so the variant that learns best on validation is
  the worst on test. The best row is the best on validation."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 8)).astype(np.float32)
  rule = lambda a: (a[:, 0] > 0).astype(np.int32)
  x_val = rng.normal(size=(64, 8)).astype(np.float32)
  x_test = rng.normal(size=(64, 8)).astype(np.float32)
  data = js.data.arrays(x, rule(x), x_test, 1 - rule(x_test), x_val=x_val, y_val=rule(x_val))
  res = js.run(model=lambda features: js.models.MLP(features=features, num_outputs=2),
               optimizer=helpers.sgd, data=data, fixed={"features": (16,)},
               sweep={"learning_rate": [1e-3, 0.3]}, steps=30, batch_size=16)
  assert res.target == "val_accuracy"
  by_val = max(res.rows, key=lambda r: r["val_accuracy"])
  by_test = max(res.rows, key=lambda r: r["test_accuracy"])
  assert by_val["variant"] != by_test["variant"]
  assert res.best["variant"] == by_val["variant"]


@pytest.fixture(scope="module")
def digits_sgd():
  """Plain SGD on digits at sane and absurd learning rates."""
  return js.run_config("configs/digits_lr.yaml", [
      "optimizer.name=sgd", "optimizer.learning_rate=0.1,10,100", "seed=0",
      "train.steps=60", "train.eval_every=20"])


def test_exploding_sgd_is_never_ok(digits_sgd):
  rows = {r["optimizer.learning_rate"]: r for r in digits_sgd.rows}
  assert rows[0.1]["status"] == "ok" and rows[0.1]["note"] == ""
  for lr in (10, 100):
    assert rows[lr]["status"] in ("unstable", "diverged"), rows[lr]
    assert rows[lr]["note"]  # Says why.
  # Never ranked above a healthy variant.
  assert digits_sgd.table[0]["optimizer.learning_rate"] == 0.1


def _logits(res, i, x):
  model = js.models.mlp(features=(128, 128), num_outputs=10)
  return np.asarray(model.apply(res.variables(i), jnp.asarray(x)), np.float64)


def test_nll_and_accuracy_equal_a_numpy_reference(digits_sgd):
  ds = js.data.load("digits")
  i = next(r["variant"] for r in digits_sgd.rows if r["status"] == "ok")
  row = digits_sgd.rows[i]
  for split, arrays in (("val", ds.val), ("test", ds.test)):
    logits = _logits(digits_sgd, i, arrays["x"])
    y = arrays["y"]
    nll = np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(y)), y])
    acc = np.mean(np.argmax(logits, 1) == y)
    assert row[f"{split}_nll"] == pytest.approx(nll, rel=1e-5)
    assert row[f"{split}_accuracy"] == pytest.approx(acc, abs=1e-6)
  # The training metrics are in eval mode, on a fixed subset of the training data.
  subset = program.data_tree(ds)["train_eval"]
  logits = _logits(digits_sgd, i, subset["x"])
  y = subset["y"]
  nll = np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(y)), y])
  assert row["train_nll"] == pytest.approx(nll, rel=1e-5)


def test_step_0_metrics_are_the_untrained_model():
  """The first history entry evaluates the initial parameters (flax init
  with the variant's init key), before any step."""
  res = helpers.run([{"learning_rate": 0.05, "seed": 3}])
  first = res.history[0][0]
  assert first["step"] == 0 and "batch_objective" not in first
  k_init, _ = jax.random.split(jax.random.key(np.uint32(3)))
  k_params, k_dropout = jax.random.split(k_init)
  x = jnp.asarray(helpers.DATA.train["x"][:1])
  module = helpers.mlp()
  variables = module.init({"params": k_params, "dropout": k_dropout}, x)
  logits = np.asarray(module.apply(variables, jnp.asarray(helpers.DATA.val["x"])), np.float64)
  y = helpers.DATA.val["y"]
  nll = np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(y)), y])
  assert first["val_nll"] == pytest.approx(nll, rel=1e-5)
  assert first["val_objective"] == first["val_nll"]  # Cross-entropy without smoothing.
  assert first["val_accuracy"] == pytest.approx(np.mean(np.argmax(logits, 1) == y), abs=1e-6)


def test_best_over_training_and_its_step(digits_sgd):
  for r in digits_sgd.rows:
    values = [(e["val_accuracy"], e["step"]) for e in digits_sgd.history[r["variant"]]
              if np.isfinite(e["val_accuracy"])]
    best = max(v for v, _ in values)
    assert r["best_val_accuracy"] == best
    assert r["best_step"] == min(s for v, s in values if v == best)


def test_label_smoothing_changes_the_objective_not_the_nll_scale():
  """With label smoothing the objective is another quantity; nll stays the
  cross-entropy of the softmax, comparable across the sweep."""
  res = helpers.run({"label_smoothing": [0.0, 0.3], "learning_rate": [3e-2]},
                    optimizer=lambda learning_rate: optax.adam(learning_rate))
  plain, smooth = res.rows
  assert plain["val_objective"] == pytest.approx(plain["val_nll"])
  assert smooth["val_objective"] != pytest.approx(smooth["val_nll"], rel=1e-3)
