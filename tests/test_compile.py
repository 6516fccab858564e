"""Compile time: the persistent compilation cache, groups compiled one ahead,
and `jaxsweep bench`."""

import collections
import json
import os
import subprocess
import sys

import jax
import pytest

import jaxsweep as js
from jaxsweep.engine import program, sharding, strategy
from tests import helpers

CONFIG = """
data: {name: synthetic, num_train: 64, num_test: 32, num_features: 8, num_classes: 4}
model: {name: mlp, features: [16]}
optimizer: {name: adam}
train: {steps: 4, batch_size: 8, eval_every: 2}
sweep:
  optimizer.learning_rate: [1.0e-3, 1.0e-2]
  model.activation: [relu, tanh]
group: [model.activation]  # Two programs (the planner would switch them in one).
"""


def _cli(tmp_path, *args, cache):
  config = tmp_path / "c.yaml"
  config.write_text(CONFIG)
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  env.update(helpers.SUBPROCESS_ENV, JAX_PLATFORMS="cpu", JAXSWEEP_COMPILE_CACHE=str(cache))
  argv = [a.replace("{config}", str(config)) for a in args]
  return subprocess.run([sys.executable, "-m", "jaxsweep.cli", "--devices", "2", *argv],
                        capture_output=True, text=True, env=env, timeout=600)


def test_a_second_run_hits_the_compilation_cache(tmp_path):
  cache = tmp_path / "xla"
  runs = []
  for name in ("first", "second"):
    p = _cli(tmp_path, "run", "{config}", "--out", str(tmp_path / name), "--no-plots",
             cache=cache)
    assert p.returncode == 0, p.stderr
    runs.append(json.loads((tmp_path / name / "results.json").read_text()))
  first, second = ([g["compile_cache_hits"] for g in r["groups"]] for r in runs)
  assert len(first) == 2  # Two activation groups, compiled one ahead.
  # A fresh cache misses; the second group may reuse the first's init (the
  # activation does not change it). The second run finds both programs of
  # each group (init and period).
  assert first[0] == 0 and second == [2, 2], (first, second)
  assert os.listdir(cache)
  # The same executables: the same results, bit for bit.
  assert [r["val_objective"] for r in runs[0]["rows"]] == [
      r["val_objective"] for r in runs[1]["rows"]]


def test_bench_measures_lanes_against_one_variant_at_a_time(tmp_path):
  p = _cli(tmp_path, "bench", "{config}", "--sizes", "4", "--lanes", "1,2", "--steps", "4",
           "--no-cache", cache="off")
  assert p.returncode == 0, p.stderr
  out = p.stdout
  assert "one variant at a time" in out and "population 4:" in out
  assert "<- fastest" in out and "fastest at the largest size" in out


def test_bench_probe_counts_real_variants_not_the_padding():
  """3 variants on 2 devices fill 4 slots at 1 lane and more at 4 lanes: the
  rate is of the 3 real variants' training steps, the evaluation timed apart."""
  plan = js.engine.make_plan(
      js.engine.Components(model=helpers.mlp, optimizer=helpers.adam,
                           loss=js.losses.cross_entropy, data=helpers.DATA),
      {"train.steps": helpers.STEPS, "train.batch_size": helpers.BATCH,
       "train.eval_every": 3, "model.features": (16,), "seed": 0},
      [{"optimizer.learning_rate": lr} for lr in (1e-3, 1e-2, 1e-1)])
  [group] = plan.groups
  mesh = sharding.make_mesh(jax.devices()[:2])
  probes = strategy.measure(plan, group, mesh, lanes=[1, 4], steps=3, repeats=2)
  slots = [sharding.population_size(3, 2, k) for k in (1, 4)]
  assert slots[0] == 4 and slots[1] > 4
  assert [(p.lanes, p.population, p.variants) for p in probes] == [
      (1, slots[0], 3), (4, slots[1], 3)]
  for p in probes:
    assert p.train_seconds > 0
    assert p.variant_steps_per_s == pytest.approx(3 * 3 / p.train_seconds)


def test_the_program_cache_is_bounded_and_keeps_no_data(monkeypatch):
  """At most CACHE_SIZE programs per process, least recently used dropped,
  and none holds its dataset; the init compiler thread can be shut down."""
  monkeypatch.setattr(program, "_CACHE", collections.OrderedDict())
  monkeypatch.setattr(program, "CACHE_SIZE", 1)
  plans = [js.engine.make_plan(
      js.engine.Components(model=helpers.mlp, optimizer=helpers.adam,
                           loss=js.losses.cross_entropy, data=helpers.DATA),
      {"train.steps": 2, "train.batch_size": helpers.BATCH, "model.features": (width,),
       "seed": 0}, [{"optimizer.learning_rate": 0.1}]) for width in (8, 16)]
  first = program.build(plans[0], plans[0].groups[0])
  assert first.dataset is not None  # The caller gets the data...
  assert program.build(plans[0], plans[0].groups[0]).program is first.program
  program.build(plans[1], plans[1].groups[0])
  assert len(program._CACHE) == 1  # ...the cache keeps only the newest program,
  assert all(p.dataset is None for p in program._CACHE.values())  # without data.
  assert program.build(plans[0], plans[0].groups[0]).program is not first.program
  program.shutdown()
  program.shutdown()  # Idempotent; a later compile starts a new thread.
