"""The planner's choice between vectorizing a structural key and grouping by
it (jaxsweep.engine.structure): estimates, forcing, and the plan it gives."""

import pytest

from bench import structural
import jaxsweep as js
from jaxsweep import errors
from jaxsweep.components import losses as losses_lib
from jaxsweep.components import optim
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import structure
from jaxsweep.keys import Key
from jaxsweep.report import plan as plan_report
from tests import helpers

FEATURES = Key("model", "features")
ACTIVATION = Key("model", "activation")
OPTIMIZER = Key("optimizer", "name")
PROFILE = structure.Profile(compile_s=4.0, flops_per_s=2.3e10)


def _plan(sweep, *, steps=10, prof=PROFILE, **components):
  comps = plan_lib.Components(model=js.models.REGISTRY,
                              optimizer=optim.REGISTRY, loss=losses_lib.REGISTRY,
                              data=helpers.DATA, **components)
  base = {"model.name": "mlp", "optimizer.name": "adam", "optimizer.learning_rate": 0.01,
          "train.steps": steps, "train.batch_size": helpers.BATCH, "seed": 0}
  points = [dict(zip(sweep, values)) for values in _product(list(sweep.values()))]
  return structure.make_plan(comps, base, points, prof=prof)


def _product(lists):
  if not lists:
    return [()]
  return [(v, *rest) for v in lists[0] for rest in _product(lists[1:])]


def _choice(plan, key):
  return next(c for c in plan.structure if c.key == key)


def test_decide_compares_compiles_saved_with_compute_added():
  grouped = structure.decide(FEATURES, options=3, programs=3, merged_programs=1,
                             compute_flops=2.3e10, extra_flops=2.3e10 * 100, prof=PROFILE)
  assert not grouped.vectorize  # 100 s of padding for 8 s of compiles.
  assert grouped.grouped_s == pytest.approx(3 * 4.0 + 1.0)
  assert grouped.vectorized_s == pytest.approx(4.0 * 1.12 + 101.0)
  cheap = structure.decide(FEATURES, options=3, programs=3, merged_programs=1,
                           compute_flops=2.3e10, extra_flops=2.3e10, prof=PROFILE)
  assert cheap.vectorize and cheap.programs == (3, 1)


def test_short_sweeps_vectorize_every_structural_key():
  plan = _plan({"model.features": [(8,), (16, 16)], "model.activation": ["relu", "tanh"],
                "optimizer.name": ["sgd", "adam"]})
  assert len(plan.groups) == 1
  assert all(c.vectorize and not c.forced for c in plan.structure)
  assert set(plan.groups[0].choices) == {FEATURES, ACTIVATION, OPTIMIZER}
  text = plan_report.describe(plan)
  assert "model.features    vectorized: 2 -> 1 programs" in text
  assert "padding wastes" in text


def test_groups_when_padding_wastes_most_of_the_compute():
  # A tiny network next to a wide one, trained long: the padding would cost
  # far more than the second compilation saves.
  plan = _plan({"model.features": [(4,), (512, 512, 512)],
                "model.activation": ["relu", "tanh"]}, steps=20_000)
  features = _choice(plan, FEATURES)
  assert not features.vectorize and features.vectorized_s > features.grouped_s
  # Half the variants are the wide network: their padding is the other half.
  assert "padding wastes 50%" in features.why
  assert _choice(plan, ACTIVATION).vectorize  # The switch stays cheap.
  assert len(plan.groups) == 2 and all(FEATURES in g.static for g in plan.groups)


def test_the_user_forces_either_way():
  forced = _plan({"model.features": [(4,), (512, 512, 512)],
                  "model.activation": ["relu", "tanh"]}, steps=200_000,
                 vectorize=frozenset({FEATURES}), group=frozenset({ACTIVATION}))
  assert _choice(forced, FEATURES).describe() == "vectorized (forced)"
  assert _choice(forced, ACTIVATION).describe() == "grouped (forced)"
  assert len(forced.groups) == 2 and all(g.choices.keys() == {FEATURES} for g in forced.groups)
  off = _plan({"model.activation": ["relu", "tanh"]}, auto=False)
  assert len(off.groups) == 2 and off.structure == ()
  with pytest.raises(errors.ConfigError, match="both vectorized and grouped"):
    _plan({"model.activation": ["relu", "tanh"]}, vectorize=frozenset({ACTIVATION}),
          group=frozenset({ACTIVATION}))


def test_a_model_that_cannot_mask_is_grouped_with_the_reason():
  plan = _plan({"model.features": [(8,), (16,)], "model.kernel_init": ["orthogonal"]})
  features = _choice(plan, FEATURES)
  assert not features.vectorize and "kernel_init" in features.why
  assert len(plan.groups) == 2


def test_config_keys_vectorize_and_group(tmp_path):
  from jaxsweep import config as config_lib  # noqa: PLC0415  # The face, tested here.
  comps = config_lib.registry_components(["model.features"], ["loss.name"])
  assert comps.vectorize == {FEATURES} and comps.group == {Key("loss", "name")} and comps.auto
  assert not config_lib.registry_components(False).auto
  with pytest.raises(errors.ConfigError, match="not a structural choice") as e:
    config_lib.registry_components((), ["optimizer.learning_rate"])
  assert e.value.key == "group"


def test_parameter_counts_are_each_variants_own_across_groups():
  # A forced width choice in two optimizer groups: every variant counts its
  # own network, in either group.
  plan = _plan({"model.features": [(8,), (16, 16)], "optimizer.name": ["sgd", "adam"]},
               vectorize=frozenset({FEATURES}), group=frozenset({OPTIMIZER}))
  assert len(plan.groups) == 2
  counts = structure._params(plan)  # pylint: disable=protected-access
  own = {(8,): 8 * 8 + 8 + 8 * 4 + 4, (16, 16): 8 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4}
  assert counts == {i: own[tuple(v[FEATURES])] for i, v in enumerate(plan.variants)}


def test_the_public_make_plan_is_what_run_plans_with():
  """js.engine.make_plan decides structural keys as js.run does; auto=False groups all."""
  assert js.engine.make_plan is structure.make_plan
  sweep = {"model.activation": ["relu", "tanh"]}
  assert len(_plan(sweep).groups) == 1  # Vectorized, as js.run would.
  grouped = _plan(sweep, auto=False)
  assert len(grouped.groups) == 2 and not grouped.structure


def test_the_384_mlp_ablation_is_one_masked_program():
  """bench/structural.py's ablation (depth 1-4 x width 32-256 x activation x
  optimizer x 4 learning rates, batch 32, 200 steps): measured cold on the
  project's 2-core CPU (bench/RESULTS.md, 2026-12-07), one masked program
  took 54 s and the widths grouped into 16 programs 67 s. The CPU profile
  (a per-step overhead: small networks reach less of the peak) picks the
  masked one; the single rate it replaced picked the 16 programs."""
  s = structural.FULL
  sweep = {"model.features": [[w] * d for d in s["depths"] for w in s["widths"]],
           "model.activation": s["activations"], "optimizer.name": s["optimizers"],
           "optimizer.learning_rate": s["lrs"]}
  cfg = js.config.load(raw={"data": {"name": "digits"}, "model": {"name": "mlp"},
                            "optimizer": {"name": "adam"}, "loss": {"name": "cross_entropy"},
                            "seed": 0, "sweep": sweep,
                            "train": {"steps": s["steps"], "batch_size": s["batch_size"]}})
  plan = structure.make_plan(cfg.components, cfg.base, cfg.points)
  assert len(plan.variants) == 384 and len(plan.groups) == 1
