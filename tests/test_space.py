"""Tests for jaxsweep.space: pure Python/numpy, no JAX compilation."""

from __future__ import annotations

import doctest
import hashlib
import importlib
import itertools
import json
import math
import pkgutil

import numpy as np
import pytest
import yaml

from jaxsweep import errors
from jaxsweep import space


def _column(variants, key):
  return [v[key] for v in variants]


def _reference_id(d):
  """variant_id written independently: sha1 of canonical JSON, 10 hex."""
  pairs = [[k, list(v) if isinstance(v, tuple) else v]
           for k, v in sorted(d.items())]
  text = json.dumps(pairs, separators=(",", ":"), ensure_ascii=True)
  return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


# ----------------------------------------------------------------------------
# Values and distributions.


def test_docstring_examples_run():
  attempted = 0
  for info in pkgutil.iter_modules(space.__path__):
    result = doctest.testmod(importlib.import_module(f"jaxsweep.space.{info.name}"))
    assert result.failed == 0, info.name
    attempted += result.attempted
  assert attempted > 20


def test_lists_tuples_ranges_and_values_mean_values():
  for spec in ([1, 2, 3], (1, 2, 3), range(1, 4), space.values(1, 2, 3),
               {"values": [1, 2, 3]}, np.array([1, 2, 3])):
    assert _column(space.expand({"a": spec}), "a") == [1, 2, 3]


def test_values_are_plain_python_and_hashable():
  vs = space.expand({"a": [np.float32(0.5), np.int64(3), np.bool_(True)],
                     "model.features": [[64], [128, 128]]})
  assert len(vs) == 6
  assert {type(v["a"]) for v in vs} == {float, int, bool}
  assert _column(vs, "model.features")[:2] == [(64,), (128, 128)]
  assert len({tuple(v.items()) for v in vs}) == 6  # hashable


def test_scalar_and_fixed_are_one_value():
  assert space.expand({"train.steps": 100}) == [{"train.steps": 100}]
  assert space.expand({"f": space.fixed([64, 64])}) == [{"f": (64, 64)}]
  assert space.expand({"f": {"fixed": [64, 64]}}) == [{"f": (64, 64)}]
  assert space.expand({"f": [[64, 64]]}) == [{"f": (64, 64)}]


def test_exponent_strings_are_floats():
  # yaml.safe_load reads 1e-3 as a string (YAML 1.1).
  loaded = yaml.safe_load("sweep: {lr: [1e-3, 1.0e-2], w: {uniform: [1e-3, 1], num: 2}}")
  assert loaded["sweep"]["lr"][0] == "1e-3"
  vs = space.expand(space.parse(loaded["sweep"]))
  assert sorted(set(_column(vs, "lr"))) == [1e-3, 1e-2]
  assert sorted(set(_column(vs, "w"))) == [1e-3, 1.0]


def test_uniform_grid_endpoints():
  got = _column(space.expand({"w": space.uniform(-1, 3, num=5)}), "w")
  assert got == [-1.0, 0.0, 1.0, 2.0, 3.0]


def test_log_uniform_grid_is_geometric_with_exact_endpoints():
  got = _column(space.expand(
      {"lr": {"log_uniform": [1.0e-4, 1.0], "num": 16}}), "lr")
  assert len(got) == 16
  assert got[0] == 1e-4 and got[-1] == 1.0
  ratios = np.array(got[1:]) / np.array(got[:-1])
  np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
  np.testing.assert_allclose(got, np.geomspace(1e-4, 1.0, 16), rtol=1e-12)


def test_int_uniform_all_grid_and_samples():
  assert _column(space.expand({"d": space.int_uniform(1, 4)}), "d") == [1, 2, 3, 4]
  grid = _column(space.expand({"d": space.int_uniform(1, 4, num=10)}), "d")
  assert grid == [1, 2, 3, 4]  # rounded and deduplicated
  grid = _column(space.expand({"d": space.int_uniform(0, 100, num=5)}), "d")
  assert grid == [0, 25, 50, 75, 100]
  draws = _column(space.expand({"d": space.int_uniform(1, 4, samples=400)}), "d")
  assert set(draws) == {1, 2, 3, 4}
  assert all(isinstance(d, int) for d in draws)


def test_choice_alone_lists_options():
  assert _column(space.expand({"a": {"choice": ["x", "y"]}}), "a") == ["x", "y"]


def test_samples_in_bounds_and_log_spread():
  n = 4000
  log = np.array(_column(space.expand(
      {"lr": space.log_uniform(1e-4, 1.0, samples=n, seed=0)}), "lr"))
  lin = np.array(_column(space.expand(
      {"lr": space.uniform(1e-4, 1.0, samples=n, seed=0)}), "lr"))
  assert len(log) == n
  assert log.min() >= 1e-4 and log.max() <= 1.0
  geo_mean = math.sqrt(1e-4 * 1.0)
  assert 0.45 < np.mean(log < geo_mean) < 0.55
  assert np.mean(lin < geo_mean) < 0.05  # what a uniform draw would give
  # Each decade gets about a quarter of the draws.
  per_decade = np.histogram(np.log10(log), bins=[-4, -3, -2, -1, 0])[0] / n
  np.testing.assert_allclose(per_decade, 0.25, atol=0.04)


def test_samples_seeded():
  def draw(seed, key="w"):
    return _column(space.expand(
        {key: space.uniform(0, 1, samples=8, seed=seed)}), key)

  assert draw(0) == draw(0)
  assert draw(0) != draw(1)
  # Without a seed each key gets its own stable stream.
  a = space.expand({"a": space.uniform(0, 1, samples=8)})
  b = space.expand({"b": space.uniform(0, 1, samples=8)})
  assert _column(a, "a") != _column(b, "b")
  assert a == space.expand({"a": space.uniform(0, 1, samples=8)})


# ----------------------------------------------------------------------------
# Combinators.


def test_product_order_matches_itertools():
  sweep = {"a": [1, 2, 3], "b": ["x", "y"], "c": [True, False]}
  got = space.expand(sweep)
  want = [dict(a=a, b=b, c=c) for a, b, c in
          itertools.product([1, 2, 3], ["x", "y"], [True, False])]
  assert got == want
  assert space.expand(space.product({"a": [1, 2, 3]}, {"b": ["x", "y"]},
                                    {"c": [True, False]})) == want


def test_zip_lockstep_list_and_mapping_forms():
  want = [{"a": 1, "b": 10}, {"a": 2, "b": 20}, {"a": 3, "b": 30}]
  assert space.expand(space.zip({"a": [1, 2, 3], "b": [10, 20, 30]})) == want
  assert space.expand(space.zip({"a": [1, 2, 3]}, {"b": [10, 20, 30]})) == want
  assert space.expand({"zip": [{"a": [1, 2, 3]}, {"b": [10, 20, 30]}]}) == want
  assert space.expand({"zip": {"a": [1, 2, 3], "b": [10, 20, 30]}}) == want


def test_zip_with_product_and_random_sides():
  s = space.zip({"a": [1, 2], "b": [3, 4]}, {"c": space.uniform(0, 1, num=4)})
  got = space.expand(s)
  assert len(got) == 4
  assert _column(got, "c") == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_chain_concatenates():
  got = space.expand(space.chain({"a": [1, 2]}, {"b": [3]}, {"a": 9, "b": 9}))
  assert got == [{"a": 1}, {"a": 2}, {"b": 3}, {"a": 9, "b": 9}]


def test_chain_as_conditional_inside_product():
  sweep = {"lr": [0.1, 0.01],
           "chain": [{"opt": "adam"},
                     {"opt": "sgd", "momentum": [0.0, 0.9]}]}
  got = space.expand(sweep)
  assert len(got) == 2 * 3
  assert got[:3] == [{"lr": 0.1, "opt": "adam"},
                     {"lr": 0.1, "opt": "sgd", "momentum": 0.0},
                     {"lr": 0.1, "opt": "sgd", "momentum": 0.9}]


def test_seeds_vary_fastest_wherever_written():
  a = space.expand({"seeds": 3, "lr": [0.1, 0.2]})
  b = space.expand({"seed": [0, 1, 2], "lr": [0.1, 0.2]})
  c = space.expand(space.product(space.seeds([0, 1, 2]), {"lr": [0.1, 0.2]}))
  want = [{"lr": lr, "seed": s} for lr in (0.1, 0.2) for s in range(3)]
  assert a == b == c == want


def test_seeds_crossed_after_conditionals():
  got = space.expand({"seeds": 2, "opt": ["sgd", "adam"],
                      "when": {"if": {"opt": "sgd"}, "then": {"m": [0.0, 0.9]}}})
  assert [tuple(v.values()) for v in got] == [
      ("sgd", 0.0, 0), ("sgd", 0.0, 1), ("sgd", 0.9, 0), ("sgd", 0.9, 1),
      ("adam", 0), ("adam", 1)]


# ----------------------------------------------------------------------------
# Conditionals.


def _check_conditional(got):
  assert len(got) == (2 * 2 + 2) * 2  # (sgd: 2 lrs x 2 momenta, adam: 2 lrs) x 2 seeds
  for v in got:
    if v["optimizer.name"] == "sgd":
      assert v["optimizer.momentum"] in (0.0, 0.9)
    else:
      assert "optimizer.momentum" not in v


def test_when_python_and_yaml_forms_agree():
  py = space.product(
      {"optimizer.name": ["sgd", "adam"], "optimizer.learning_rate": [0.1, 0.01]},
      space.when({"optimizer.name": "sgd"},
                 {"optimizer.momentum": [0.0, 0.9]}),
      space.seeds(2))
  text = """
    optimizer.name: [sgd, adam]
    optimizer.learning_rate: [0.1, 0.01]
    when:
      if: {optimizer.name: sgd}
      then: {optimizer.momentum: [0.0, 0.9]}
    seeds: 2
  """
  listed = """
    product:
      - {optimizer.name: [sgd, adam], optimizer.learning_rate: [0.1, 0.01]}
      - {if: {optimizer.name: sgd}, then: {optimizer.momentum: [0.0, 0.9]}}
      - {seeds: 2}
  """
  got = space.expand(py)
  _check_conditional(got)
  assert space.expand(space.parse(yaml.safe_load(text))) == got
  assert space.expand(space.parse(yaml.safe_load(listed))) == got


def test_alternative_conditions_may_set_the_same_key():
  got = space.expand(space.product(
      {"opt": ["sgd", "nesterov", "adam"]},
      space.when({"opt": "sgd"}, {"momentum": [0.5]}),
      space.when({"opt": ["nesterov"]}, {"momentum": [0.8, 0.9]})))
  assert got == [{"opt": "sgd", "momentum": 0.5},
                 {"opt": "nesterov", "momentum": 0.8},
                 {"opt": "nesterov", "momentum": 0.9},
                 {"opt": "adam"}]


def test_condition_with_list_means_any_of():
  got = space.expand({"opt": ["sgd", "nesterov", "adam"],
                      "when": [{"if": {"opt": ["sgd", "nesterov"]},
                                "then": {"momentum": 0.9}}]})
  assert ["momentum" in v for v in got] == [True, True, False]


def test_nested_conditions_see_the_outer_point():
  got = space.expand(space.product(
      {"a": [1, 2]},
      space.when({"a": 1}, space.product(
          {"b": ["x", "y"]}, space.when({"b": "y"}, {"c": True})))))
  assert got == [{"a": 1, "b": "x"}, {"a": 1, "b": "y", "c": True}, {"a": 2}]


def test_condition_never_holds_or_key_missing():
  with pytest.raises(errors.ConfigError, match="optimizer.name") as e:
    space.expand({"optimizer.name": ["sgd", "adam"],
                  "when": {"if": {"optimizer.name": "sdg"},
                           "then": {"optimizer.momentum": [0.9]}}})
  assert "never holds" in str(e.value)
  with pytest.raises(errors.ConfigError, match="optimizer.nmae"):
    space.expand({"optimizer.name": ["sgd", "adam"],
                  "when": {"if": {"optimizer.nmae": "sgd"},
                           "then": {"optimizer.momentum": [0.9]}}})


# ----------------------------------------------------------------------------
# Random and quasi-random search.


def test_random_joint_samples():
  sweep = space.random({"lr": space.log_uniform(1e-4, 1.0),
                        "w": space.uniform(-1, 1),
                        "d": space.int_uniform(1, 4),
                        "act": ["relu", "tanh"],
                        "c": space.choice(["a", "b", "c"]),
                        "steps": 100}, samples=200, seed=3)
  got = space.expand(sweep)
  assert len(got) == 200
  assert all(list(v) == ["lr", "w", "d", "act", "c", "steps"] for v in got)
  assert all(1e-4 <= v["lr"] <= 1.0 and -1 <= v["w"] <= 1 for v in got)
  assert set(_column(got, "d")) == {1, 2, 3, 4}
  assert set(_column(got, "act")) == {"relu", "tanh"}
  assert set(_column(got, "c")) == {"a", "b", "c"}
  assert set(_column(got, "steps")) == {100}


@pytest.mark.parametrize("method", space.METHODS)
def test_random_seeded_reproducible(method):
  def draw(seed):
    return space.expand(space.random(
        {"a": space.uniform(0, 1), "b": space.log_uniform(1e-3, 1)},
        samples=16, seed=seed, method=method))

  assert draw(0) == draw(0)
  assert draw(0) != draw(1)


@pytest.mark.parametrize("method", ["sobol", "halton"])
def test_quasi_random_has_lower_discrepancy(method):
  from scipy.stats import qmc

  def unit_points(m, seed):
    got = space.expand(space.random(
        {"a": space.uniform(0, 1), "b": space.uniform(0, 1),
         "c": space.uniform(0, 1)}, samples=256, seed=seed, method=m))
    return np.array([[v["a"], v["b"], v["c"]] for v in got])

  for seed in range(3):
    quasi = qmc.discrepancy(unit_points(method, seed))
    plain = qmc.discrepancy(unit_points("random", seed))
    assert quasi < plain / 3


def test_random_maps_unit_cube_through_log():
  got = space.expand(space.random({"lr": space.log_uniform(1e-4, 1.0)},
                                  samples=1024, method="sobol"))
  lr = np.array(_column(got, "lr"))
  assert 0.47 < np.mean(lr < 1e-2) < 0.53


def test_random_yaml_form_matches_python():
  text = """
    random:
      params:
        optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0]}
        model.activation: [relu, tanh]
      samples: 8
      method: halton
      seed: 5
  """
  py = space.random({"optimizer.learning_rate": space.log_uniform(1e-4, 1.0),
                     "model.activation": ["relu", "tanh"]},
                    samples=8, seed=5, method="halton")
  assert space.expand(space.parse(yaml.safe_load(text))) == space.expand(py)


# ----------------------------------------------------------------------------
# YAML, determinism, ids.

_CONFIG = """
sweep:
  optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0], num: 4}
  model.activation: [relu, tanh]
  weight: {uniform: [0, 1], samples: 3, seed: 0}
  model.depth: {int_uniform: [1, 2]}
  model.features: [[64], [128, 128]]
  seed: [0, 1]
"""


def test_yaml_equals_python():
  parsed = space.parse(yaml.safe_load(_CONFIG)["sweep"], file="c.yaml")
  py = space.product({
      "optimizer.learning_rate": space.log_uniform(1e-4, 1.0, num=4),
      "model.activation": space.values("relu", "tanh"),
      "weight": space.uniform(0, 1, samples=3, seed=0),
      "model.depth": space.int_uniform(1, 2),
      "model.features": space.values([64], [128, 128]),
  }, space.seeds(2))
  got = space.expand(parsed)
  assert got == space.expand(py)
  assert len(got) == 4 * 2 * 3 * 2 * 2 * 2
  assert space.keys(parsed) == ["optimizer.learning_rate", "model.activation",
                                "weight", "model.depth", "model.features",
                                "seed"]


def test_expansion_is_deterministic():
  parsed = space.parse(yaml.safe_load(_CONFIG)["sweep"])
  a, b = space.expand(parsed), space.expand(parsed)
  assert a == b
  assert [list(v) for v in a] == [list(v) for v in b]
  assert [space.variant_id(v) for v in a] == [space.variant_id(v) for v in b]


def test_variant_id_stable_and_distinct():
  d = {"optimizer.learning_rate": 1e-3, "model.features": (64, 64),
       "model.activation": "relu", "seed": 0, "flag": True, "x": None}
  assert space.variant_id(d) == _reference_id(d)
  assert len(space.variant_id(d)) == 10
  assert space.variant_id(dict(reversed(list(d.items())))) == space.variant_id(d)
  # Literal from the canonical form, so a change of the id scheme is caught.
  assert space.variant_id({"a": 1}) == hashlib.sha1(b'[["a",1]]').hexdigest()[:10]
  assert space.variant_id({"lr": np.float64(0.1)}) == space.variant_id({"lr": 0.1})
  ids = {space.variant_id({"a": v}) for v in (1, 1.0, True, "1", (1,), None)}
  assert len(ids) == 6
  vs = space.expand(yaml.safe_load(_CONFIG)["sweep"])
  assert len({space.variant_id(v) for v in vs}) == len(vs)
  assert all(space.variant_id(v) == _reference_id(v) for v in vs)


def test_empty_sweep_is_one_unchanged_variant():
  assert space.expand(space.parse(None)) == [{}]
  assert space.expand({}) == [{}]


def test_load_yaml_reads_yaml_1_2_scalars():
  assert space.load_yaml("[1e-3, 1.0e-3, 010, yes, true, .inf]") == [
      1e-3, 1e-3, 10, "yes", True, math.inf]


# ----------------------------------------------------------------------------
# CLI overrides.


def test_overrides_fixed_and_sweep():
  fixed, sweep = space.parse_overrides([
      "optimizer.learning_rate=1e-3,3e-3,1e-2", "model.activation=relu,tanh",
      "train.steps=100", "model.features=[64,64]", "name='a,b'",
      "model.sizes=[8],[16,16]", "flag=true"])
  assert fixed == {"train.steps": 100, "model.features": (64, 64),
                   "name": "a,b", "flag": True}
  assert type(fixed["train.steps"]) is int
  native = space.product({
      "optimizer.learning_rate": [1e-3, 3e-3, 1e-2],
      "model.activation": ["relu", "tanh"],
      "model.sizes": [[8], [16, 16]]})
  assert space.expand(sweep) == space.expand(native)
  assert space.parse_overrides(["a=1"]) == ({"a": 1}, None)


def test_overrides_seed_axis_matches_native():
  _, sweep = space.parse_overrides(["seed=0,1", "lr=0.1,0.2"])
  assert space.expand(sweep) == space.expand({"lr": [0.1, 0.2], "seeds": 2})


@pytest.mark.parametrize("override, key", [
    ("optimizer.learning_rate", "optimizer.learning_rate"),
    ("lr=", "lr"),
    ("lr=1,,2", "lr"),
    ("=3", "=3"),
    ("model.features=[64,64", "model.features"),
    ("+model.depth=3", "+model.depth"),
    ("lr=1,1", "lr"),
])
def test_override_errors(override, key):
  with pytest.raises(errors.ConfigError) as e:
    space.parse_overrides([override])
  assert key in str(e.value)
  assert e.value.fix


def test_override_given_twice():
  with pytest.raises(errors.ConfigError, match="lr"):
    space.parse_overrides(["lr=1", "lr=2"])


# ----------------------------------------------------------------------------
# W&B import.


def test_wandb_grid_matches_native():
  wb = yaml.safe_load("""
    method: grid
    metric: {name: loss, goal: minimize}
    parameters:
      optimizer.learning_rate: {values: [0.001, 0.01]}
      model.activation: {distribution: categorical, values: [relu, tanh]}
      model.depth: {distribution: int_uniform, min: 1, max: 3}
      train.steps: {value: 100}
      optimizer:
        parameters:
          b1: {values: [0.8, 0.9]}
  """)
  native = {"optimizer.learning_rate": [0.001, 0.01],
            "model.activation": ["relu", "tanh"],
            "model.depth": {"int_uniform": [1, 3]},
            "train.steps": 100, "optimizer.b1": [0.8, 0.9]}
  got = space.expand(space.from_wandb(wb))
  assert got == space.expand(native)
  assert len(got) == 2 * 2 * 3 * 2


def test_wandb_random_matches_native():
  wb = {"method": "random", "run_cap": 12, "parameters": {
      "optimizer.learning_rate": {"distribution": "log_uniform_values",
                                  "min": 1e-4, "max": 0.1},
      "weight": {"distribution": "uniform", "min": 0, "max": 1},
      "model.depth": {"min": 1, "max": 4},  # ints: W&B infers int_uniform
      "model.activation": {"values": ["relu", "tanh"]},
      "train.steps": {"value": 50}}}
  native = space.random({
      "optimizer.learning_rate": space.log_uniform(1e-4, 0.1),
      "weight": space.uniform(0, 1), "model.depth": space.int_uniform(1, 4),
      "model.activation": ["relu", "tanh"], "train.steps": 50},
      samples=12, seed=0)
  assert space.expand(space.from_wandb(wb)) == space.expand(native)
  assert len(space.expand(space.from_wandb(wb, samples=5))) == 5


@pytest.mark.parametrize("wb, key, needle", [
    ({"method": "bayes", "parameters": {"lr": {"values": [1]}}}, "method",
     "bayes"),
    ({"method": "grid", "parameters": {
        "lr": {"distribution": "log_uniform", "min": -9, "max": 0}}}, "lr",
     "log_uniform_values"),
    ({"method": "random", "run_cap": 4, "parameters": {
        "lr": {"distribution": "normal", "mu": 0, "sigma": 1}}}, "lr",
     "not support"),
    ({"method": "random", "run_cap": 4, "parameters": {
        "lr": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.1}}},
     "lr", "not support"),
    ({"method": "grid", "parameters": {
        "lr": {"distribution": "uniform", "min": 0.0, "max": 1.0}}}, "lr",
     "int_uniform"),
    ({"method": "random", "parameters": {"lr": {"values": [1, 2]}}},
     "run_cap", "samples"),
    ({"method": "random", "run_cap": 2, "parameters": {
        "act": {"values": ["a", "b"], "probabilities": [0.1, 0.9]}}}, "act",
     "probabilities"),
    ({"method": "grid", "run_cap": 2, "parameters": {
        "lr": {"values": [1, 2, 3]}}}, "run_cap", "grid"),
    ({"method": "grdi", "parameters": {"lr": {"values": [1]}}}, "method",
     "grid"),
])
def test_wandb_errors(wb, key, needle):
  with pytest.raises(errors.ConfigError) as e:
    space.from_wandb(wb, file="sweep.yaml")
  assert key in str(e.value)
  assert needle in str(e.value)
  assert "sweep.yaml" in str(e.value)
  assert e.value.fix


# ----------------------------------------------------------------------------
# Validation errors.

_ERROR_CASES = [
    # (sweep, key that must be named, text that must appear)
    ({"prodcut": [{"a": [1, 2]}]}, "prodcut", "product"),
    ({"zipp": {"a": [1], "b": [2]}}, "zipp", "zip"),
    ({"lr": {"uniform": [0, 1], "num": 0}}, "lr", "num"),
    ({"lr": {"uniform": [0, 1], "num": 2.5}}, "lr", "num"),
    ({"lr": {"uniform": [0, 1], "num": True}}, "lr", "num"),
    ({"lr": {"uniform": ["a", 1], "num": 2}}, "lr", "number"),
    ({"lr": {"uniform": [0, 1, 2], "num": 2}}, "lr", "[low, high]"),
    ({"lr": {"uniform": [1, 1], "num": 2}}, "lr", "low < high"),
    ({"lr": {"uniform": [2, 1], "samples": 2}}, "lr", "low < high"),
    ({"optimizer.learning_rate": {"log_uniform": [0.0, 1.0], "num": 4}},
     "optimizer.learning_rate", "log_uniform needs positive bounds, got 0.0"),
    ({"lr": space.log_uniform(-1, 1, samples=3)}, "lr", "positive"),
    ({"lr": []}, "lr", "empty"),
    ({"lr": {"values": []}}, "lr", "empty"),
    ({"lr": {"choice": []}}, "lr", "empty"),
    ({"model.features": [64, 64]}, "model.features", "fixed"),
    ({"lr": {"uniform": [0, 1], "num": 2, "samples": 3}}, "lr", "not both"),
    ({"lr": {"uniform": [0, 1]}}, "lr", "num= for a grid or samples="),
    ({"lr": space.log_uniform(1e-4, 1)}, "lr", "samples="),
    ({"lr": {"log_uniform": [1e-4, 1], "nmu": 4}}, "lr", "num"),
    ({"lr": {"loguniform": [1e-4, 1], "num": 4}}, "lr", "log_uniform"),
    ({"lr": {"values": [1], "choice": [2]}}, "lr", "one value kind"),
    ({"d": {"int_uniform": [1.5, 4]}}, "d", "integer"),
    ({"d": {"int_uniform": [0, 10 ** 6]}}, "d", "num="),
    ({"lr": {"a": 1}}, "lr", "value kind"),
    ({"lr": [{"a": 1}]}, "lr", "mapping"),
    ({"zip": [{"a": [1, 2, 3]}, {"b": [1, 2]}]}, "b", "3 (a), 2 (b)"),
    ({"a": [1, 2], "product": [{"a": [3]}]}, "a", "two sides"),
    ({"a": [1, 2], "chain": [{"b": 1}, {"a": 3}]}, "a", "two sides"),
    ({"random": {"params": {"lr": {"log_uniform": [1e-4, 1], "num": 4}},
                 "samples": 4}}, "lr", "inside random"),
    ({"random": {"params": {"lr": {"log_uniform": [1e-4, 1]}}}}, "random",
     "samples"),
    ({"random": {"params": {"lr": {"log_uniform": [1e-4, 1]}},
                 "samples": 4, "method": "sobl"}}, "random", "sobol"),
    ({"random": {"params": {"lr": {"log_uniform": [1e-4, 1]}},
                 "sample": 4}}, "random", "samples"),
    ({"random": {"params": {"lr": 0.1}, "samples": 4}}, "random", "nothing"),
    ({"seeds": 0}, "seed", "positive"),
    ({"seeds": [0.5]}, "seed", "integers"),
    ({"when": {"then": {"m": 1}}}, "when", "if"),
    ({"a": [1], "when": {"if": {"a": 1}, "then": {"a": 2}}}, "a", "condition"),
    ({"a": [1], "when": {"if": {"a": 1}, "then": {"m": 1}, "els": {}}},
     "when", "els"),
    ({"then": {"a": 1}, "a": 2}, "when", "if"),
    ({"zip": [{"a": [1]}, {"if": {"a": 1}, "then": {"b": 1}}]}, "b",
     "conditional"),
    ({"num": 4}, "num", "distribution"),
    ({"uniform": [0, 1]}, "uniform", "config key"),
    ({"bad key": 1}, "bad key", "dotted"),
    ({"lr": space.product({"a": [1]})}, "lr", "combinators"),
]


@pytest.mark.parametrize("sweep, key, needle", _ERROR_CASES)
def test_config_errors_name_key_and_fix(sweep, key, needle):
  with pytest.raises(errors.ConfigError) as e:
    space.expand(space.parse(sweep, file="conf.yaml"))
  message = str(e.value)
  assert key in message
  assert needle in message
  assert "conf.yaml" in message
  assert e.value.fix


def test_python_constructor_errors():
  with pytest.raises(errors.ConfigError, match="zip"):
    space.zip({"a": [1, 2]}, {"b": [1, 2, 3]})
  with pytest.raises(errors.ConfigError, match="samples"):
    space.random({"a": space.uniform(0, 1)}, samples=0)
  with pytest.raises(errors.ConfigError, match="'a'"):
    space.product({"a": [1]}, {"a": [2]})
  with pytest.raises(errors.ConfigError, match="no config key"):
    space.expand(space.product(space.values(1, 2)))
  with pytest.raises(errors.ConfigError, match="chain"):
    space.chain()
  with pytest.raises(errors.ConfigError, match="mapping"):
    space.expand([{"a": 1}])


def test_size_guard():
  sweep = {"a": list(range(100)), "b": list(range(101))}
  with pytest.raises(errors.ConfigError, match="10100") as e:
    space.expand(sweep)
  assert "--max-variants" in e.value.fix
  assert len(space.expand(sweep, max_variants=20_000)) == 10_100
  assert len(space.expand(sweep, max_variants=None)) == 10_100
  with pytest.raises(errors.ConfigError, match="max_variants=50"):
    space.expand(space.product(
        {"a": list(range(10))},
        space.when({"a": 3}, {"b": list(range(100))})), max_variants=50)
  with pytest.raises(errors.ConfigError, match="max_variants"):
    space.expand({"lr": space.uniform(0, 1, num=10 ** 9)})


# ----------------------------------------------------------------------------
# Introspection.


def test_describe_keys_and_log_scale():
  sweep = space.parse(yaml.safe_load("""
    optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0], num: 16}
    model.activation: [relu, tanh]
    weight: {uniform: [0, 1], samples: 8, seed: 0}
    model.depth: {int_uniform: [1, 4]}
    optimizer.name: [sgd, adam]
    when: {if: {optimizer.name: sgd}, then: {optimizer.momentum: [0.0, 0.9]}}
    random:
      params: {data.noise: {log_uniform: [1.0e-3, 1.0e-1]}}
      samples: 4
      method: sobol
    seeds: 3
  """))
  d = space.describe(sweep)
  assert d["optimizer.learning_rate"] == "log grid 1e-04..1e+00 (16)"
  assert d["model.activation"] == "values [relu, tanh]"
  assert d["weight"] == "uniform 0..1, 8 samples, seed 0"
  assert d["model.depth"] == "ints 1..4 (4)"
  assert d["optimizer.momentum"] == "values [0, 0.9] if optimizer.name=sgd"
  assert "log-uniform" in d["data.noise"] and "sobol" in d["data.noise"]
  assert d["seed"] == "values [0, 1, 2]"
  assert list(d) == space.keys(sweep)
  assert space.keys(sweep) == [
      "optimizer.learning_rate", "model.activation", "weight", "model.depth",
      "optimizer.name", "data.noise", "optimizer.momentum", "seed"]
  variants = space.expand(sweep, max_variants=None)
  assert set(space.keys(sweep)) == set().union(*variants)
  assert space.is_log_scaled(sweep, "optimizer.learning_rate")
  assert space.is_log_scaled(sweep, "data.noise")
  assert not space.is_log_scaled(sweep, "weight")
  assert not space.is_log_scaled(sweep, "model.activation")
  assert not space.is_log_scaled(sweep, "not.swept")
  assert space.is_log_scaled({"lr": [1e-4, 1e-3, 1e-2]}, "lr")
  assert not space.is_log_scaled({"lr": [0.1, 0.2, 0.3]}, "lr")


def test_python_dict_may_hold_built_combinators():
  r = space.random({"lr": space.log_uniform(1e-4, 1.0)}, samples=3, seed=1)
  got = space.expand({"a": [1, 2], "random": r, "seeds": 2})
  assert got == space.expand(space.product({"a": [1, 2]}, r, space.seeds(2)))
  assert len(got) == 2 * 3 * 2
