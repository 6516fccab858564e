"""Batched Bayesian proposals through Optuna, and W&B sweep files mapped onto
jaxsweep's methods."""

import json
import sys

import numpy as np
import optax
import pytest
import yaml

import jaxsweep as js
from jaxsweep import cli
from jaxsweep import config as config_lib
from jaxsweep import space
from jaxsweep.engine import proposals
from jaxsweep.engine import search_space as search_space_lib
from tests import helpers

optuna = pytest.importorskip("optuna")

# The scalar problem (tests/helpers.py): below 0.5 a larger learning rate
# ends closer to the target, above 1 it diverges.
TARGET = helpers.SCALAR_TARGET
LR = "optimizer.learning_rate"
_init, _apply, _loss = helpers.scalar_init, helpers.scalar_apply, helpers.scalar_loss
_data = helpers.scalar_data


DATA, NOISY = _data(), _data(noise=1.0)


def _search(method, *, sweep=None, data=DATA, steps=30, **kw):
  return js.run(model=(_init, _apply), optimizer=optax.sgd, loss=_loss, data=data,
                sweep=sweep or {"learning_rate": js.space.log_uniform(1e-3, 0.4)},
                steps=steps, batch_size=8, eval_every=10, target="val_objective",
                mode="min", method=method, **kw)


def _study(*enqueued, startup=5):
  """A study whose first trials are the given learning rates (then TPE's);
  ``startup=None``: no pruner."""
  pruner = (optuna.pruners.NopPruner() if startup is None
            else optuna.pruners.MedianPruner(n_startup_trials=startup))
  study = optuna.create_study(direction="minimize", pruner=pruner,
                              sampler=optuna.samplers.TPESampler(seed=0))
  for lr in enqueued:
    study.enqueue_trial({LR: lr})
  return study


def test_rounds_of_batched_trials_are_told_back():
  study = _study(startup=None)
  res = _search({"name": "tpe", "samples": 7, "batch": 3, "study": study})
  assert [r["round"] for r in res.rows] == [0, 0, 0, 1, 1, 1, 2]  # ceil(7 / 3) rounds.
  assert [r["trial"] for r in res.rows] == list(range(7))
  assert [g["round"] for g in res.groups] == [0, 1, 2]
  assert [g["variants"] for g in res.groups] == [3, 3, 1]  # One population a round.
  trials = study.get_trials()
  assert len(trials) == 7
  for row, trial in zip(res.rows, trials):
    assert trial.state == optuna.trial.TrialState.COMPLETE and row["told"] == "complete"
    assert trial.value == row["val_objective"]
    assert trial.params[LR] == row["learning_rate"]
    # Intermediate values at every period boundary.
    assert sorted(trial.intermediate_values) == [10, 20, 30]
    assert trial.intermediate_values[30] == row["val_objective"]
  assert res.best["val_objective"] == study.best_value
  assert res.params(6)["w"].shape == (1,)  # Trained arrays of every round.
  assert set(res.history) == set(range(7))


def test_a_seeded_search_is_reproducible():
  method = {"name": "tpe", "samples": 6, "batch": 3, "seed": 3}
  a, b = _search(method), _search(method)
  helpers.assert_same_results(a, b)
  c = _search({**method, "seed": 4})
  assert [r["learning_rate"] for r in a.rows] != [r["learning_rate"] for r in c.rows]


def test_the_pruner_stops_a_variant_told_pruned():
  # Round 0 completes 0.3 and 0.2; in round 1, 0.01 is worse than their
  # median at step 10 (pruned there) and 0.25 better (trained to the end).
  study = _study(0.3, 0.2, 0.01, 0.25, startup=2)
  res = _search({"name": "tpe", "samples": 4, "batch": 2, "study": study})
  rows = {r["learning_rate"]: r for r in res.rows}
  assert rows[0.01]["status"] == "stopped" and rows[0.01]["stopped_step"] == 10
  assert rows[0.01]["told"] == "pruned" and rows[0.01]["steps"] == 10
  assert {rows[lr]["status"] for lr in (0.3, 0.2, 0.25)} == {"ok"}
  states = {t.params[LR]: t.state for t in study.get_trials()}
  assert states[0.01] == optuna.trial.TrialState.PRUNED
  assert states[0.25] == optuna.trial.TrialState.COMPLETE


def test_no_pruner_trains_every_trial_to_the_end():
  res = _search({"name": "tpe", "samples": 4, "batch": 2, "pruner": "none", "seed": 1})
  assert {r["status"] for r in res.rows} == {"ok"}


def test_seeds_train_every_trial_and_the_mean_is_told():
  study = _study(0.05, 0.2)
  res = _search({"name": "tpe", "samples": 2, "batch": 2, "study": study}, data=NOISY,
                sweep={"learning_rate": js.space.log_uniform(1e-3, 0.4), "seed": [0, 1]})
  assert [(r["trial"], r["seed"]) for r in res.rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
  for trial in study.get_trials():
    values = [r["val_objective"] for r in res.rows if r["trial"] == trial.number]
    assert values[0] != values[1]
    assert trial.value == pytest.approx(np.mean(values), rel=1e-12)
  assert len(res.aggregate()) == 2  # One configuration per trial.


def test_a_diverged_trial_is_told_fail():
  study = _study(0.1, 5.0)
  res = _search({"name": "tpe", "samples": 2, "batch": 2, "study": study},
                sweep={"learning_rate": js.space.log_uniform(1e-3, 10.0)}, steps=90)
  rows = {r["learning_rate"]: r for r in res.rows}
  assert rows[5.0]["status"] == "diverged" and rows[5.0]["told"] == "fail"
  assert rows[0.1]["told"] == "complete"
  states = {t.params[LR]: t.state for t in study.get_trials()}
  assert states[5.0] == optuna.trial.TrialState.FAIL
  assert res.best["learning_rate"] == 0.1


def test_structural_choices_form_groups_in_each_round():
  res = helpers.run({"learning_rate": js.space.log_uniform(1e-3, 0.1),
                     "features": [(8,), (16,)]}, fixed={}, group=["features"],
                    method={"name": "qmc", "samples": 8, "batch": 8, "seed": 0})
  assert {tuple(r["features"]) for r in res.rows} == {(8,), (16,)}
  assert len(res.groups) == 2 and sum(g["variants"] for g in res.groups) == 8
  for r in res.rows:
    assert res.params(r["variant"])["hidden_0"]["kernel"].shape[1] == r["features"][0]


def test_storage_keeps_the_study_and_a_later_run_goes_on(tmp_path):
  url = f"sqlite:///{tmp_path / 'study.db'}"
  method = {"name": "tpe", "samples": 3, "batch": 3, "storage": url, "study": "lr"}
  _search(method)
  second = _search(method)
  assert [r["trial"] for r in second.rows] == [3, 4, 5]
  study = optuna.load_study(study_name="lr", storage=url)
  assert len(study.get_trials()) == 6
  assert study.get_trials()[0].user_attrs["jaxsweep_round"] == 0


TINY = helpers.TINY_BASE + """\
sweep:
  method: {name: tpe, samples: 4, batch: 2, seed: 0}
  optimizer.learning_rate: {log_uniform: [1.0e-3, 1.0e-1]}
  optimizer.b1: [0.8, 0.9]
  seed: [0, 1]
"""


def test_config_run_writes_every_trial(tmp_path, capsys):
  path = tmp_path / "tpe.yaml"
  path.write_text(TINY)
  cfg = config_lib.load(str(path))
  assert cfg.method["name"] == "tpe" and cfg.points == [{}]
  assert [k for k, _ in cfg.search.params] == [LR, "optimizer.b1"]
  out = tmp_path / "out"
  assert cli.main(["run", str(path), "--out", str(out), "--quiet"]) == 0
  assert "selected: " in capsys.readouterr().out  # Two seeds per trial: the mean.
  data = json.loads((out / "results.json").read_text())
  assert len(data["rows"]) == 8  # 4 trials x 2 seeds.
  assert sorted({(r["round"], r["trial"]) for r in data["rows"]}) == [
      (0, 0), (0, 1), (1, 2), (1, 3)]
  assert (out / "best.yaml").exists() and (out / "results_aggregated.csv").exists()
  best = yaml.safe_load((out / "best.yaml").read_text())
  assert "sweep" not in best
  # A finished search resumes to the same rows (its rounds were saved).
  again = js.run_config(cfg, out=str(out), resume=True)
  by_variant = lambda rows: {r["variant"]: r["val_accuracy"] for r in rows}
  assert by_variant(again.rows) == by_variant(data["rows"])


def test_search_space_mapping():
  s = search_space_lib.search_space({
      "lr": {"log_uniform": [1e-4, 1.0]}, "depth": {"int_uniform": [1, 3]},
      "wd": {"uniform": [0.0, 0.1], "num": 3}, "features": [[8], [16, 16]],
      "act": {"choice": ["relu", "tanh"]}, "steps": 10, "seeds": 2})
  params = dict(s.params)
  assert params["lr"] == space.LogUniform(1e-4, 1.0)
  assert params["depth"] == space.IntUniform(1, 3)
  assert params["wd"] == space.Choice((0.0, 0.05, 0.1))  # A grid is categorical.
  assert params["features"] == space.Choice(((8,), (16, 16)))
  assert s.fixed == (("steps", 10),) and s.seeds == (0, 1)
  dists, decode = proposals._distributions(optuna, s)
  assert dists["lr"] == optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
  assert dists["depth"] == optuna.distributions.IntDistribution(1, 3)
  assert decode["features"]["[16,16]"] == (16, 16)
  assert proposals.default_batch(64) == 16 and proposals.options(
      {"name": "tpe", "samples": 64}).rounds == 4


@pytest.mark.parametrize("sweep, key, needle", [
    ({"lr": {"log_uniform": [1e-4, 1.0], "samples": 4}}, "lr", "sampler draws"),
    ({"zip": {"a": [1, 2], "b": [3, 4]}}, "zip", "flat space"),
    ({"lr": 0.1}, "sweep", "every key is fixed"),
    ({"lr": [0.1, 0.2], "seed": {"int_uniform": [0, 3]}}, "seed", "not searched"),
    ({"lr": {"log_uniform": [0.0, 1.0]}}, "lr", "positive"),
])
def test_search_space_errors(sweep, key, needle):
  with pytest.raises(js.ConfigError, match=needle) as e:
    search_space_lib.search_space(sweep)
  assert e.value.key == key


@pytest.mark.parametrize("method, needle", [
    ({"name": "tpe"}, "samples"),
    ({"name": "tpe", "samples": 4, "batchsize": 2}, "batch"),
    ({"name": "tpe", "samples": 4, "pruner": "hyperband"}, "median"),
    ({"name": "tpe", "samples": 0}, "positive"),
    ({"name": "tpe", "samples": 4, "study": "x", "storage": 3}, "URL"),
    ({"name": "tpe", "samples": 4, "study": object()}, "Study"),
])
def test_method_option_errors(method, needle):
  with pytest.raises(js.ConfigError, match=needle):
    proposals.options(method)


def test_missing_optuna_and_torch_are_config_errors(monkeypatch):
  monkeypatch.setitem(sys.modules, "optuna", None)
  with pytest.raises(js.ConfigError, match=r"jaxsweep\[search\]"):
    _search({"name": "tpe", "samples": 2})
  monkeypatch.undo()
  if proposals.importlib.util.find_spec("torch") is None:
    with pytest.raises(js.ConfigError, match="torch"):
      _search({"name": "gp", "samples": 2})


def test_a_proposal_method_is_not_a_scheduler():
  with pytest.raises(js.ConfigError, match="not a scheduler"):
    js.engine.schedulers.make("tpe")


# ----------------------------------------------------------------------------
# W&B sweep files.

BASE = """
data: {name: synthetic, num_train: 64, num_test: 40, num_features: 8, num_classes: 4}
model: {name: mlp, features: [16]}
optimizer: {name: adam}
train: {steps: 90, batch_size: 16, eval_every: 10}
"""
PARAMS = {"optimizer.learning_rate": {"distribution": "log_uniform_values",
                                      "min": 1e-4, "max": 0.1},
          "optimizer.b1": {"values": [0.8, 0.9]}}
GRID = {"optimizer.learning_rate": {"values": [1e-3, 1e-2]}}


def _load(tmp_path, wb, base=BASE):
  (tmp_path / "c.yaml").write_text(base)
  (tmp_path / "w.yaml").write_text(yaml.safe_dump(wb))
  return config_lib.load(str(tmp_path / "c.yaml"), wandb=str(tmp_path / "w.yaml"))


def test_wandb_bayes_is_tpe_and_the_metric_is_the_target(tmp_path):
  cfg = _load(tmp_path, {"method": "bayes", "run_cap": 12, "parameters": PARAMS,
                         "metric": {"name": "val_nll", "goal": "minimize"}})
  assert cfg.method == {"name": "tpe", "samples": 12}
  assert dict(cfg.search.params)["optimizer.b1"] == space.Choice((0.8, 0.9))
  assert (cfg.target, cfg.mode) == ("val_nll", "min")
  cfg = _load(tmp_path, {"method": "random", "run_cap": 3, "parameters": PARAMS,
                         "metric": {"name": "val_accuracy", "goal": "maximize"}})
  assert (cfg.target, cfg.mode, len(cfg.points)) == ("val_accuracy", "max", 3)
  assert _load(tmp_path, {"method": "grid", "parameters": {"seed": {"values": [0, 1]}},
                          "metric": {"name": "val_accuracy"}}).mode is None


@pytest.mark.parametrize("early, expected", [
    # min_iter evaluations of eval_every (10) steps: the first rung.
    ({"type": "hyperband", "min_iter": 3}, {"name": "halving", "eta": 3, "min_steps": 30}),
    ({"type": "hyperband", "min_iter": 2, "eta": 2},
     {"name": "halving", "eta": 2, "min_steps": 20}),
    # W&B's brackets max_iter / eta**s ... max_iter / eta: 1 and 3 iterations.
    ({"type": "hyperband", "max_iter": 9, "s": 2},
     {"name": "halving", "eta": 3, "min_steps": 10, "max_rungs": 2}),
])
def test_wandb_hyperband_is_halving_from_min_iter_times_eval_every(tmp_path, early,
                                                                    expected):
  cfg = _load(tmp_path, {"method": "grid", "parameters": GRID, "early_terminate": early})
  assert cfg.method == expected
  halving = js.engine.schedulers.make(cfg.method)
  first = expected["min_steps"]
  s = min(js.engine.halving.s_max(90 / first, expected["eta"]),
          expected.get("max_rungs", 99))
  rungs = halving.rungs(s, 90, 10)  # The most aggressive bracket's rungs over 90 steps.
  assert rungs[0] == first
  if "max_rungs" in expected:
    assert rungs == [10, 30]


@pytest.mark.parametrize("wb, key, needle", [
    ({"method": "grid", "early_terminate": {"type": "envelope"}}, "early_terminate.type",
     "hyperband"),
    ({"method": "grid", "early_terminate": {"type": "hyperband", "min_iter": 3,
                                            "strict": True}}, "early_terminate.strict",
     "synchronously"),
    ({"method": "grid", "early_terminate": {"type": "hyperband", "max_iter": 27}},
     "early_terminate.s", "needs s"),
    ({"method": "grid", "early_terminate": {"type": "hyperband", "min_iter": 9}},
     "early_terminate.min_iter", "eval_every"),
    ({"method": "bayes", "run_cap": 8, "early_terminate": {"type": "hyperband",
                                                            "min_iter": 3}},
     "early_terminate", "median pruner"),
    ({"method": "bayes"}, "run_cap", "number of runs"),
    ({"method": "grid", "metric": {"name": "val_nll", "target": 0.1}}, "metric.target",
     "remove target"),
    ({"method": "grid", "metric": {"name": "val_nll", "goal": "lower"}}, "metric.goal",
     "maximize"),
])
def test_wandb_refusals_name_the_key(tmp_path, wb, key, needle):
  with pytest.raises(js.ConfigError, match=needle) as e:
    _load(tmp_path, {"parameters": PARAMS if wb["method"] == "bayes" else GRID, **wb})
  assert e.value.key == key and e.value.fix
  assert "w.yaml" in str(e.value)


def test_wandb_metric_that_contradicts_the_config_is_refused(tmp_path):
  with pytest.raises(js.ConfigError, match="metric"):
    _load(tmp_path, {"method": "grid", "parameters": GRID,
                     "metric": {"name": "val_nll", "goal": "minimize"}},
          base=BASE + "target: val_accuracy\n")


def test_from_wandb_refuses_what_a_sweep_cannot_hold():
  with pytest.raises(js.ConfigError, match="read_wandb"):
    space.from_wandb({"method": "bayes", "run_cap": 4, "parameters": PARAMS})


# --------------------------------------------------------------------------
# Issue #23: a budget in variant-steps; a search survives a resume.

@pytest.mark.parametrize("seed", [0, 1])
def test_a_budget_in_variant_steps_is_never_exceeded_and_nearly_spent(seed):
  """Issue #23: the same settings spent 88.8k-107.7k between sampler seeds."""
  res = _search({"name": "tpe", "budget": 200, "batch": 3, "seed": seed})
  spent = sum(r["steps"] for r in res.rows)
  assert 200 - 30 < spent <= 200, spent  # Less than one trial (30 steps) left over.


def test_a_budget_smaller_than_one_trial_is_refused():
  with pytest.raises(js.ConfigError) as e:
    _search({"name": "tpe", "budget": 20})
  assert e.value.key == "sweep.method.budget"
  with pytest.raises(js.ConfigError, match="positive"):
    proposals.options({"name": "tpe", "budget": 0})
  assert proposals.options({"name": "tpe", "budget": 100}).samples is None


class _Crash(Exception):
  pass


def test_a_search_resumed_after_a_crash_equals_an_uninterrupted_one(tmp_path):
  method = {"name": "tpe", "samples": 6, "batch": 3, "seed": 0}
  whole = _search(method, out=str(tmp_path / "whole"), outputs={"plots": False})
  seen = []

  def crash(event):
    seen.append(event)
    if sum(e["event"] == "period" for e in seen) == 4:  # Mid second round.
      raise _Crash

  with pytest.raises(_Crash):
    _search(method, out=str(tmp_path / "cut"), progress=crash, checkpoint_every=0,
            outputs={"plots": False})
  resumed = _search(method, out=str(tmp_path / "cut"), resume=True, outputs={"plots": False})
  helpers.assert_same_results(resumed, whole, params=False)
  assert [r["told"] for r in resumed.rows] == [r["told"] for r in whole.rows]


def test_the_engine_search_resumes_from_its_checkpoint_directory(tmp_path):
  """proposals.search with checkpoint_dir: a crash mid second round, resumed,
  ends as the uninterrupted search (the lead's api passes rd.checkpoint_dir)."""
  components = js.engine.Components(model=(_init, _apply), optimizer=optax.sgd, loss=_loss,
                                    data=DATA)
  base = {"train.steps": 30, "train.batch_size": 8, "train.eval_every": 10,
          "train.eval_batch_size": 1024, "seed": 0}
  space_ = search_space_lib.search_space({LR: js.space.log_uniform(1e-3, 0.4)})
  opts = proposals.options({"name": "tpe", "samples": 6, "batch": 3, "seed": 0})
  kw = dict(target="val_objective", mode="min")
  whole = proposals.search(components, base, space_, opts, **kw)
  seen = []

  def crash(event):
    seen.append(event)
    if sum(e["event"] == "period" for e in seen) == 5:  # Round 1, second boundary.
      raise _Crash

  with pytest.raises(_Crash):
    proposals.search(components, base, space_, opts, callback=crash,
                     checkpoint_dir=str(tmp_path), checkpoint_every=0, **kw)
  resumed = proposals.search(components, base, space_, opts, checkpoint_dir=str(tmp_path),
                             resume=True, checkpoint_every=0, **kw)
  helpers.assert_same_results(resumed, whole, params=False)
  assert [r["told"] for r in resumed.rows] == [r["told"] for r in whole.rows]
