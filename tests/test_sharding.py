"""Sharding the population over devices, chunking, and fitting into memory.

tests/conftest.py gives 8 virtual CPU devices. Every comparison between
layouts is exact (bit for bit): a variant's results must not depend on how the
sweep was sharded or chunked (sharding.population_size explains why each
device holds at least two variants).
"""

import dataclasses
import functools
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsweep as js
from jaxsweep import engine
from jaxsweep import errors
from jaxsweep.engine import memory
from jaxsweep import sharding
from tests import helpers

DATA = js.data.load("synthetic", num_train=64, num_test=32)


def _model(features):
  return js.models.MLP(features=features, num_outputs=4)


def _optimizer(learning_rate):
  return optax.sgd(learning_rate)


def _lrs(num):
  return [round(float(x), 4) for x in np.linspace(0.05, 0.5, num)]


def run(num, **kwargs):
  return js.run(model=_model, optimizer=_optimizer, data=DATA,
                sweep={"learning_rate": _lrs(num)}, fixed={"features": (8,)},
                steps=4, batch_size=16, eval_every=2, **kwargs)


def make_plan(num):
  """The plan :func:`run` executes, for calling the engine directly."""
  spec = engine.Components(model=_model, optimizer=_optimizer, loss=js.losses.cross_entropy,
                     data=DATA)
  base = {"train.steps": 4, "train.batch_size": 16, "train.eval_every": 2,
          "train.eval_batch_size": 1024, "seed": 0, "model.features": (8,)}
  return engine.make_plan(spec, base, [{"optimizer.learning_rate": lr} for lr in _lrs(num)])


assert_same_results = helpers.assert_same_results


_RUNS = {}


def cached_run(num, **kwargs):
  key = (num, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
  if key not in _RUNS:
    _RUNS[key] = run(num, **kwargs)
  return _RUNS[key]


def one_device_mesh():
  return sharding.make_mesh(jax.devices()[:1])


# --------------------------------------------------------------------------
# Devices and padding.

@pytest.mark.parametrize("num", [8, 9, 7])
def test_sharded_equals_unsharded_bit_for_bit(num, num_devices):
  with warnings.catch_warnings():
    # "Some donated buffers were not usable" would mean a copy per chunk.
    warnings.simplefilter("error")
    sharded = cached_run(num)
  single = cached_run(num, mesh=one_device_mesh())
  assert_same_results(sharded, single)
  info = sharded.groups[0]
  assert info["chunk_size"] == sharding.population_size(num, num_devices)
  assert info["chunk_size"] % num_devices == 0
  assert info["padding"] == info["chunk_size"] - num
  assert len(sharded.rows) == num  # Padded variants are dropped.
  assert single.groups[0]["padding"] == 0


def test_population_size():
  assert sharding.population_size(9, 8) == 16
  assert sharding.population_size(17, 8) == 24
  assert sharding.population_size(1, 2) == 2
  assert sharding.population_size(64, 2) == 64
  assert sharding.population_size(9, 2, lanes=4) == 16  # Whole lanes on every device.
  tree = {"a": np.arange(3), "b": {"c": np.ones((3, 2))}}
  padded = sharding.pad(tree, 5)
  np.testing.assert_array_equal(padded["a"], [0, 1, 2, 0, 0])
  assert padded["b"]["c"].shape == (5, 2)


def test_chunked_equals_unchunked_bit_for_bit():
  unchunked = cached_run(9, mesh=one_device_mesh())
  chunked = run(9, mesh=one_device_mesh(), chunk_size=4)
  assert chunked.groups[0]["chunk_size"] == 4
  assert chunked.groups[0]["num_chunks"] == 3
  assert chunked.groups[0]["padding"] == 3
  assert_same_results(chunked, unchunked)


def test_compiled_step_has_no_collectives(num_devices):
  plan = make_plan(9)
  group = plan.groups[0]
  built = engine.program.build(plan, group)
  mesh = sharding.make_mesh()
  size = sharding.population_size(9, num_devices)
  compiled = engine.program.compile(built, mesh,
                                  engine.program.abstract_population(plan, group, size, mesh),
                                  engine.program.abstract_data(built.dataset, mesh))
  for program in (compiled.period, compiled.init):
    text = program.as_text()
    assert sharding.collectives(text) == {}, sharding.collectives(text)

  # The detector does see a collective across the population axis.
  x = jax.device_put(jnp.ones((num_devices, 4)), sharding.population(mesh))
  total = jax.jit(lambda a: a.sum(0), out_shardings=sharding.replicated(mesh))
  assert sharding.collectives(total.lower(x).compile().as_text())


def test_init_compiles_beside_the_period_once(num_devices):
  plan = make_plan(9)
  group = plan.groups[0]
  # A program of its own: build() caches programs with their compiled entries.
  built = dataclasses.replace(engine.program.build(plan, group), compiled={}, pending_init={})
  mesh = sharding.make_mesh()
  data = engine.program.abstract_data(built.dataset, mesh)
  hp = engine.program.abstract_population(
      plan, group, sharding.population_size(9, num_devices), mesh)
  with helpers.count_compiles() as compiles:
    engine.program.prefetch_init(built, mesh, hp, data)
    engine.program.prefetch_init(built, mesh, hp, data)  # Pending already: nothing more.
    assert not compiles and len(built.pending_init) == 1  # Marked: starts with the period.
    entry = engine.program.compile(built, mesh, hp, data)
  assert len(compiles) == 2, compiles  # The period and the init, each once.
  assert entry.init is not None and not built.pending_init
  with helpers.count_compiles() as compiles:
    engine.program.prefetch_init(built, mesh, hp, data)  # Compiled: nothing to do.
    assert engine.program.compile(built, mesh, hp, data) is entry
  assert not compiles and not built.pending_init


def test_progress_events_name_devices_chunks_and_memory(num_devices):
  events = []
  run(9, progress=events.append)
  start = next(e for e in events if e["event"] == "start")
  group = next(e for e in events if e["event"] == "group")
  assert start["devices"] == num_devices and start["processes"] == 1
  assert group["chunk_size"] == sharding.population_size(9, num_devices)
  assert group["padding"] == group["chunk_size"] - 9
  assert group["memory_per_device"] > 0
  assert group["memory_limit_per_device"] > group["memory_per_device"]
  assert "RAM" in group["memory_source"]


# --------------------------------------------------------------------------
# Memory.

@pytest.mark.parametrize("text,expected", [
    ("2GiB", 2 * 2**30), ("512 MiB", 512 * 2**20), ("1.5GB", 1_500_000_000),
    ("100mb", 100_000_000), ("4096", 4096), (4096, 4096), ("3 KiB", 3072),
    ("1e9", 10**9), ("7B", 7)])
def test_parse_bytes(text, expected):
  assert memory.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["2 parsecs", "-1GB", "", "GiB", "0", True, None, [1]])
def test_parse_bytes_errors(text):
  with pytest.raises(errors.ConfigError, match="memory_budget"):
    memory.parse_bytes(text)


def test_format_bytes():
  assert memory.format_bytes(512) == "512 B"
  assert memory.format_bytes(1536) == "1.5 KiB"
  assert memory.format_bytes(3 * 2**30) == "3 GiB"


def test_estimate_predicts_an_unseen_size(num_devices):
  plan = make_plan(40)
  [est] = engine.sizing.estimate_memory(plan, chunk_size=2 * num_devices).values()
  assert set(est.measured) == {2, 4}
  fp = est.footprint
  assert fp.per_variant > 0 and fp.fixed > 0
  # Compile at 5 variants per device, a size the fit never saw.
  group = plan.groups[0]
  built = engine.program.build(plan, group)
  mesh = sharding.make_mesh()
  compiled = engine.program.compile(
      built, mesh, engine.program.abstract_population(plan, group, 5 * num_devices, mesh),
      engine.program.abstract_data(built.dataset, mesh), init=False)
  actual = memory.measure(compiled.period)
  # memory_analysis() is linear in the variants per device (from 2 on; one
  # variant per device needs less): the line fitted at 2 and 4 predicts 5
  # within 1 % (measured here: 0.4 %, 96 bytes of 24 KB).
  assert abs(fp.at(5) - actual) <= 1e-2 * actual, (fp, actual)
  chunks = -(-40 // (2 * num_devices))
  assert est.chunk_size == 2 * num_devices and est.num_chunks == chunks
  assert f"group 0: 40 variants in {chunks} chunk(s)" in est.describe()
  assert est.as_dict()["memory_per_variant"] == round(fp.per_variant)


def test_small_budget_chunks_and_matches_unchunked(num_devices):
  plan = make_plan(40)
  [est] = engine.sizing.estimate_memory(plan).values()
  fp = est.footprint
  # Room for 2.5 variants per device on each of the devices sharing RAM.
  budget = int(num_devices * memory.SAFETY * fp.at(2.5))
  events = []
  chunked = engine.execute.execute(make_plan(40), memory_budget=budget, callback=events.append)
  info = chunked.groups[0]
  assert info["chunk_size"] == 2 * num_devices
  assert info["num_chunks"] == -(-40 // (2 * num_devices))
  assert info["memory_source"].startswith("memory_budget")
  assert info["memory_needed_per_device"] <= budget // num_devices
  unchunked = engine.execute.execute(make_plan(40))
  assert unchunked.groups[0]["num_chunks"] == 1
  assert_same_results(chunked, unchunked)


def test_budget_too_small_fails_before_training():
  events = []
  with pytest.raises(errors.ConfigError) as err:
    engine.execute.execute(make_plan(9), memory_budget="64KiB", callback=events.append)
  text = str(err.value)
  assert "does not fit in memory" in text and "available" in text
  assert "memory_budget" in text
  assert not any(e["event"] == "period" for e in events)


def test_plan_chunks_strategy():
  calls = []

  def measure_at(local):
    calls.append(local)
    return 1000 + 100 * local

  limit = memory.Limit(per_device=int(1.5 * (1000 + 100 * 3)), source="test")
  # Fits as requested: compiled once, at the requested size.
  est = memory.plan_chunks(measure_at, group=0, variants=6, devices=2, requested=6,
                           limit=limit)
  assert calls == [3] and est.chunk_size == 6 and est.footprint is None
  # Does not fit: one more size, then 3 per device, balanced over the chunks.
  calls.clear()
  est = memory.plan_chunks(measure_at, group=0, variants=20, devices=2, requested=20,
                           limit=limit)
  assert calls == [10, 2] and est.footprint == memory.Footprint(1000, 100)
  assert est.chunk_size == 6 and est.num_chunks == 4 and est.padding == 4
  # A cheap lower bound skips compiling a hopeless requested size.
  calls.clear()
  est = memory.plan_chunks(measure_at, group=0, variants=200, devices=2, requested=200,
                           limit=limit, lower_bound=lambda local: 100 * local)
  assert calls == [2, 4] and est.chunk_size == 6
  # No limit known: the request stands.
  est = memory.plan_chunks(lambda local: None, group=0, variants=20, devices=2,
                           requested=20, limit=limit)
  assert est.chunk_size == 20 and est.bytes_per_device is None


def test_available_memory(num_devices):
  mesh = sharding.make_mesh()
  limit = memory.available(mesh, "8GiB")
  assert limit.per_device == 8 * 2**30 // num_devices
  auto = memory.available(mesh)
  assert auto is not None and 0 < auto.per_device
  assert memory.available(one_device_mesh(), "1GiB").per_device == 2**30


# --------------------------------------------------------------------------
# Virtual CPU devices.

def test_requested_cpu_devices_rules(monkeypatch):
  monkeypatch.setattr(sharding, "num_cores", lambda: 6)
  ask = sharding.requested_cpu_devices
  assert ask(environ={"JAX_PLATFORMS": "cpu"}) is None  # conftest set a count.
  ask = functools.partial(sharding.requested_cpu_devices, configured=-1)
  assert ask(environ={"JAX_PLATFORMS": "cpu"}) == 6
  assert ask(environ={"JAX_PLATFORMS": "cpu", "JAXSWEEP_CPU_DEVICES": "3"}) == 3
  assert ask(4, environ={"JAX_PLATFORMS": "cpu", "JAXSWEEP_CPU_DEVICES": "3"}) == 4
  assert ask(environ={"JAX_PLATFORMS": "cpu",
                      "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}) is None
  assert ask(environ={"JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "4"}) is None
  # Explicit requests override the user's XLA flags; other platforms are left alone.
  assert ask(5, environ={"JAX_PLATFORMS": "cpu",
                         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}) == 5
  assert ask(environ={"JAX_PLATFORMS": "cuda"}) is None
  assert ask(2, environ={"JAX_PLATFORMS": "tpu,cpu"}) is None
  for bad in ("0", "two", "-1", "1.5"):
    with pytest.raises(errors.ConfigError, match="positive integer"):
      ask(environ={"JAX_PLATFORMS": "cpu", "JAXSWEEP_CPU_DEVICES": bad})


def test_one_thread_per_op_when_the_devices_cover_the_cores(monkeypatch):
  monkeypatch.setattr(sharding, "num_cores", lambda: 4)
  monkeypatch.setattr(sharding, "backend_started", lambda: True)
  env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
  assert not sharding.one_thread_per_device(3, env)  # Fewer devices: ops keep threads.
  assert not sharding.one_thread_per_device(1, {})
  assert sharding.one_thread_per_device(4, env)
  assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x " + sharding.ONE_THREAD_FLAG
  sharding.restore_xla_flags(env)  # Once the backend has started: put back.
  assert env == {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
  user = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}
  assert not sharding.one_thread_per_device(8, user)  # The user's choice wins.
  env = {}
  assert sharding.one_thread_per_device(4, env) and env["XLA_FLAGS"] == sharding.ONE_THREAD_FLAG
  sharding.restore_xla_flags(env)
  assert env == {}


def test_configure_cpu_devices_is_a_no_op_once_jax_started(num_devices):
  jax.devices()
  assert sharding.configure_cpu_devices(3) is None
  assert jax.device_count() == num_devices


def test_configure_cpu_devices_in_a_fresh_process():
  code = ("import os; from jaxsweep import sharding; import jax; "
          "asked = sharding.configure_cpu_devices(); "
          "flags = os.environ.get('XLA_FLAGS', '-'); mesh = sharding.make_mesh(); "
          "print(asked, jax.device_count(), sharding.num_cores(), flags, "
          "os.environ.get('XLA_FLAGS', '-'))")
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAXSWEEP_CPU_DEVICES")}
  env["JAX_PLATFORMS"] = "cpu"
  procs = [subprocess.Popen([sys.executable, "-c", code], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for e in (env, {**env, "JAXSWEEP_CPU_DEVICES": "3"})]
  outs = []
  for p in procs:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    outs.append(out.split())
  (asked, count, cores, flags, after), (asked3, count3, _, flags3, after3) = outs
  assert asked == count == cores  # One device per core by default.
  assert asked3 == count3 == "3"
  # One thread per op while the backend starts (devices cover the cores),
  # then the user's XLA_FLAGS (none here) are back.
  assert flags == (sharding.ONE_THREAD_FLAG if int(cores) >= 2 else "-")
  assert flags3 == (sharding.ONE_THREAD_FLAG if int(cores) <= 3 else "-")
  assert after == after3 == "-"


# --------------------------------------------------------------------------
# Lanes: the unit of identity.

def test_lanes_fix_the_bits_whatever_the_chunk_size():
  """With 2 lanes a variant's bits depend on nothing else of the layout on
  the same devices; 1 lane (the CPU default) is also device-count free
  (test_sharded_equals_unsharded_bit_for_bit)."""
  mesh = one_device_mesh()
  whole = run(9, lanes=2, mesh=mesh)
  assert whole.groups[0]["lanes"] == 2 and whole.groups[0]["chunk_size"] == 10
  chunked = run(9, lanes=2, mesh=mesh, chunk_size=4)
  assert chunked.groups[0]["chunk_size"] == 4 and chunked.groups[0]["num_chunks"] == 3
  assert_same_results(whole, chunked)
  alone = run(9, lanes=2, mesh=mesh, chunk_size=2)
  assert_same_results(whole, alone)
