"""What a new user meets in the first hour (issue #26): honest flags and names."""

import types

import pytest

from jaxsweep import errors
from jaxsweep import results as results_lib
from jaxsweep.engine import record as record_lib

# Breast cancer's validation split: the majority class's share and the
# labels' entropy (what predicting the class frequencies scores).
CHANCE = {"val_accuracy": 0.622, "val_nll": 0.663}


def _unstable(history):
  fake = types.SimpleNamespace(unstable_factor=3.0)
  return record_lib.Record._unstable(fake, history, CHANCE, "val_accuracy")


def test_majority_class_rate_is_chance_even_when_the_objective_fell():
  # Learning the class frequencies lowers the training objective (0.69 ->
  # 0.66) without learning anything else: no better than chance.
  history = [{"step": 0, "train_objective": 0.70, "val_accuracy": 0.40, "val_nll": 0.70},
             {"step": 100, "train_objective": 0.656, "val_accuracy": 0.622, "val_nll": 0.663},
             {"step": 200, "train_objective": 0.659, "val_accuracy": 0.622, "val_nll": 0.662},
             {"step": 300, "train_objective": 0.655, "val_accuracy": 0.622, "val_nll": 0.662}]
  note = _unstable(history)
  assert "no better than chance (0.622)" in note


def test_a_slow_learner_still_on_its_way_down_is_not_flagged():
  history = [{"step": 0, "train_objective": 0.90, "val_accuracy": 0.40, "val_nll": 0.90},
             {"step": 3, "train_objective": 0.85, "val_accuracy": 0.45, "val_nll": 0.85},
             {"step": 6, "train_objective": 0.80, "val_accuracy": 0.50, "val_nll": 0.80}]
  assert _unstable(history) == ""


def test_a_run_that_learns_beyond_the_class_frequencies_is_ok():
  history = [{"step": 0, "train_objective": 0.70, "val_accuracy": 0.40, "val_nll": 0.70},
             {"step": 300, "train_objective": 0.20, "val_accuracy": 0.95, "val_nll": 0.15}]
  assert _unstable(history) == ""


def _lm_results():
  rows = [{"variant": i, "lr": lr, "status": "ok", "val_bits_per_char": v, "val_nll": v,
           "test_bits_per_char": t, "best_val_nll": v, "best_step": 2}
          for i, (lr, v, t) in enumerate([(0.1, 2.0, 2.1), (0.01, 2.5, 2.4)])]
  history = {i: [{"step": 1, "val_bits_per_char": r["val_bits_per_char"] + 1,
                  "val_nll": 9.0, "test_bits_per_char": r["test_bits_per_char"] + 1},
                 {"step": 2, "val_bits_per_char": r["val_bits_per_char"],
                  "val_nll": r["val_nll"], "test_bits_per_char": r["test_bits_per_char"]}]
             for i, r in enumerate(rows)}
  return results_lib.Results(
      rows, history, swept=["lr"], target="val_nll", mode="min",
      metrics=["val_bits_per_char", "val_nll", "test_bits_per_char", "best_val_nll"])


def test_best_column_is_named_after_the_target_ranked_on():
  res = _lm_results().ranked("val_bits_per_char", "min")
  assert "best_val_nll" not in res.columns()
  assert [r["best_val_bits_per_char"] for r in res.rows] == [2.0, 2.5]
  assert res.metrics[-1] == "best_val_bits_per_char"


def test_unknown_target_names_the_metric_a_loss_is_reported_as():
  with pytest.raises(errors.ConfigError) as e:
    _lm_results().ranked("val_loss")
  assert "did you mean val_nll" in str(e.value.fix)
