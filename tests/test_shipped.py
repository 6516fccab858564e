"""Every shipped config says what its run does (issue #26, point 4).

Each config in ``configs/`` loads, plans, and ranks on a validation metric
(never on the test split); the compile groups its comments state are the
ones the planner makes.
"""

import glob
import os

import pytest

from jaxsweep import config as config_lib
from jaxsweep.engine import structure

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.yaml")))

# Compile groups (count, variants in each) that a config's comments state.
STATED_GROUPS = {
    "digits_ablation.yaml": (3, 72),
    "digits_cnn.yaml": (2, 6),
    "text_rnn.yaml": (2, 4),
    "digits_lr.yaml": (1, 48),
}


def test_there_are_shipped_configs():
  assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_config_ranks_on_validation_and_plans(path):
  cfg = config_lib.load(path)
  # A stated target is a validation metric; without one, the default is the
  # validation split's, which needs one (val_fraction not 0).
  assert cfg.target is None or cfg.target.startswith("val_"), cfg.target
  assert cfg.base.get("data.val_fraction", 0.1) > 0
  plan = structure.make_plan(cfg.components, cfg.base, cfg.points)
  assert plan.num_variants == len(cfg.points)
  stated = STATED_GROUPS.get(os.path.basename(path))
  if stated is not None:
    count, size = stated
    assert len(plan.groups) == count
    assert {len(g.members) for g in plan.groups} == {size}


def test_group_description_names_only_what_sets_the_group_apart():
  cfg = config_lib.load(os.path.join(os.path.dirname(CONFIGS[0]), "digits_ablation.yaml"))
  plan = structure.make_plan(cfg.components, cfg.base, cfg.points)
  assert [g.describe() for g in plan.groups] == [
      "model.features=(64,)", "model.features=(64, 64)", "model.features=(64, 64, 64)"]
