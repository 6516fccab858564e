"""Lanes (issues #23 pt 6, #24 pt 3): a deterministic default, recorded in the
results and the config, and the per-machine measurement read only on request."""

import json

import jax
import pytest
import yaml

import jaxsweep as js
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import sharding
from jaxsweep.engine import strategy
from tests import helpers

TINY = """
data: {name: synthetic, num_train: 64, num_test: 40, num_features: 8, num_classes: 4}
model: {name: mlp, features: [16], activation: relu}
loss: cross_entropy
optimizer: {name: adam, learning_rate: 1.0e-3}
train: {steps: 4, batch_size: 16, eval_every: 2}
sweep:
  optimizer.learning_rate: [1.0e-3, 1.0e-2, 1.0e-1]
"""


def _plan(features, batch, steps=4, variants=2):
  return plan_lib.make_plan(
      plan_lib.Components(model=helpers.mlp, optimizer=helpers.adam,
                          loss=js.losses.cross_entropy, data=helpers.DATA),
      {"train.steps": steps, "train.batch_size": batch, "train.eval_every": steps,
       "model.features": features, "seed": 0},
      [{"optimizer.learning_rate": 10.0 ** -(1 + i / variants)} for i in range(variants)])


def test_forward_flops_counts_the_dense_layers():
  plan = _plan((32, 32), 16)
  # 8 -> 32 -> 32 -> 4 on 16 examples: 2 FLOPs per multiply-add, plus the
  # biases and activations (a few percent).
  matmuls = 2 * 16 * (8 * 32 + 32 * 32 + 32 * 4)
  flops = strategy.forward_flops(plan, plan.groups[0])
  assert matmuls <= flops < 1.2 * matmuls


def test_rule_vectorizes_small_models_that_train_long():
  """Planned only (nothing trains): 64 variants x 10,000 steps."""
  mesh = sharding.make_mesh(jax.devices()[:2])

  def rule(*args, **kw):
    plan = _plan(*args, **kw)
    return strategy.rule(plan, plan.groups[0], mesh)

  small = rule((16,), 16, steps=10_000, variants=64)
  assert (small.lanes, small.source) == (strategy.RULE_SMALL_LANES, "rule")
  assert "MFLOP" in small.detail and "variant-steps" in small.detail
  assert rule((512, 512), 256, steps=10_000, variants=64).lanes == 1  # Fills a core.
  assert rule((16,), 16, steps=100, variants=64).lanes == 1  # Compiling would not pay.
  # Neither the device count nor the chunking enters the rule.
  assert strategy.rule(_plan((16,), 16, steps=10_000, variants=64),
                       _plan((16,), 16, steps=10_000, variants=64).groups[0],
                       sharding.make_mesh()) == small


def test_a_cached_measurement_is_read_only_with_lanes_auto(num_devices):
  """A lanes.json entry for this very program changes nothing by default."""
  plan = _plan((16,), 16)
  [group] = plan.groups
  mesh = sharding.make_mesh()
  sig = strategy.signature(plan, group, mesh)
  strategy.store(sig, 2, {2: 1.0})
  try:
    default = strategy.choose(plan, group, mesh, None)
    auto = strategy.choose(plan, group, mesh, "auto")
  finally:
    strategy.store(sig, 1, {1: 1.0})  # Leave no 2 behind for other tests.
  assert default == strategy.rule(plan, group, mesh) and default.lanes != 2
  assert (auto.lanes, auto.source) == (2, "auto")
  assert strategy.choose(plan, group, mesh, 3) == strategy.LanesChoice(3, "user")
  with pytest.raises(js.ConfigError, match="lanes"):
    strategy.choose(plan, group, mesh, "fast")


def test_lanes_are_recorded_and_a_rerun_of_config_yaml_reproduces_them(tmp_path):
  path = tmp_path / "tiny.yaml"
  path.write_text(TINY)
  first = js.run_config(str(path), out=str(tmp_path / "a"), outputs={"plots": False},
                        progress=False)
  [group] = json.loads((tmp_path / "a" / "results.json").read_text())["groups"]
  assert group["lanes_source"] == "rule" and group["lanes"] == first.groups[0]["lanes"]
  saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
  assert saved["run"]["lanes"] == group["lanes"]
  again = js.run_config(str(tmp_path / "a" / "config.yaml"), progress=False)
  assert again.groups[0]["lanes"] == group["lanes"]
  assert again.groups[0]["lanes_source"] == "user"  # From the config's run: section.
  assert [r["val_objective"] for r in again.rows] == [r["val_objective"] for r in first.rows]
