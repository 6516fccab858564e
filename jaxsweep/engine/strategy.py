"""How a group's population runs on a device: a fixed rule, or a measurement.

Each device computes its variants in groups of ``lanes`` (vmapped), one group
after another (:func:`jaxsweep.engine.sharding.population_map`). One lane runs
each variant as a plain per-variant program; many lanes make each layer a
batched matmul over the variants. Which is faster depends on the device and
the model: on GPUs and TPUs wide vmaps fill the device; on a CPU, XLA runs
batched small matmuls far below the speed of plain ones, so one lane was
fastest on the machine this was developed on (``bench/RESULTS.md``).

:func:`choose` returns the lanes to use:

* ``lanes=K`` (``--lanes K``, ``run: {lanes: K}``): as given (source ``user``);
* ``None``, the default: :func:`rule`, a fixed function of the model's
  forward FLOPs per training batch and the platform, so the same config
  gives the same lanes (and the same bits) on every run of every machine of
  that platform (source ``rule``);
* ``"auto"`` (``--lanes auto``): the fastest candidate of :func:`measure` on
  this machine, measured once and then read from a per-machine cache, a JSON
  file ``lanes.json`` under ``$XDG_CACHE_HOME/jaxsweep`` (``~/.cache/jaxsweep``)
  or ``JAXSWEEP_CACHE_DIR`` (``jaxsweep bench`` writes it too). Only
  ``"auto"`` reads that cache: a measurement never changes a run that did
  not ask for it (source ``auto``).

A variant's bits depend on the lanes, so the choice and its source are
recorded in every group's info (``results.json``) and as ``run.lanes`` in the
run's ``config.yaml``; a resumed sweep keeps its own (source ``resumed``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence

import jax
import numpy as np

from jaxsweep import errors
from jaxsweep.engine import fingerprint
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import sharding
from jaxsweep.engine import xla_cache

CACHE_FILE = "lanes.json"


def signature(plan: plan_lib.Plan, group: plan_lib.Group, mesh) -> str:
  """What a lanes choice depends on: the group's program
  (:func:`jaxsweep.engine.fingerprint.program_identity`: its structure and
  data shapes, not its values), the device kind and count, and JAX."""
  built = program_lib.build(plan, group)
  desc = {
      "device": f"{mesh.devices.flat[0].platform}:{mesh.devices.flat[0].device_kind}",
      "devices": int(mesh.devices.size), "jax": jax.__version__,
      "program": fingerprint.program_identity(plan, group, built.dataset.train)}
  return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]


def _read() -> dict:
  path = os.path.join(xla_cache.cache_dir(), CACHE_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    return data if isinstance(data, dict) else {}
  except (OSError, ValueError):
    return {}


def cached(sig: str) -> dict | None:
  """The measured choice for a signature: ``{"lanes", "measured", "when"}``."""
  entry = _read().get(sig)
  return entry if isinstance(entry, dict) and isinstance(entry.get("lanes"), int) else None


def store(sig: str, lanes: int, measured: dict[int, float]) -> str:
  """Records a measured choice (atomically); returns the cache file."""
  directory = xla_cache.cache_dir()
  os.makedirs(directory, exist_ok=True)
  data = _read()
  data[sig] = {"lanes": int(lanes), "when": time.strftime("%Y-%m-%d"),
               "measured": {str(k): round(v, 1) for k, v in measured.items()}}
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=1, sort_keys=True)
  path = os.path.join(directory, CACHE_FILE)
  os.replace(tmp, path)
  return path


# Where a group's lanes came from (LanesChoice.source, results.json's lanes_source).
SOURCE_USER = "user"
SOURCE_RULE = "rule"
SOURCE_AUTO = "auto"

# The rule on CPU (see rule()): a variant whose forward pass over one
# training batch costs less than RULE_CPU_FLOPS cannot keep a core busy on
# its own, and RULE_SMALL_LANES of them vmapped together train faster; but
# the vmapped program takes about twice as long to compile, so the group must
# train long enough (RULE_CPU_MIN_WORK variant-steps) to win that back.
# bench/lanes_rule.py, digits MLPs (two hidden layers of width W, batch B),
# 64 variants on 2 virtual devices of a 2-core AMD EPYC under load ~15,
# variant-steps/s at lanes 1 / 8 and compile seconds at lanes 1 / 8:
#   W16  B16   0.05 MFLOP: 26,112 / 21,277 (lanes 4: 31,722); 14 / 28 s
#   W32  B32   0.22 MFLOP: 11,649 / 15,037;                    16 / 31 s
#   W64  B64   1.15 MFLOP:  5,169 /  5,037;                    20 / 30 s
#   W128 B32   1.67 MFLOP:  1,974 /  2,251 (lanes 4: 2,385);   22 / 35 s
#   W128 B128  6.69 MFLOP:  1,349 /    865;                    25 / 33 s
# Lanes win by up to ~1.3x below about 1 MFLOP and lose by 1.5x at 6.7 (a tie
# goes to one lane). On a quiet machine (DESIGN.md: W32 B32, 24,600 / 33,000
# variant-steps/s) 8 lanes save ~10 us per variant-step against ~5 s more
# compilation: even from about 500k variant-steps; bench/sizes.py --quick
# (64 x 200 = 12.8k variant-steps) lost 0.47x to Optuna with 8 lanes, most
# of it compiling.
RULE_CPU_FLOPS = 1e6
RULE_CPU_MIN_WORK = 256_000
RULE_SMALL_LANES = 8


@dataclasses.dataclass(frozen=True)
class LanesChoice:
  """The lanes a group runs with, and why.

  Attributes:
    lanes: variants vmapped together on a device.
    source: ``"user"``, ``"rule"``, ``"auto"`` or ``"resumed"``.
    detail: what the source read (the rule's FLOPs, the measurement's date).
  """

  lanes: int
  source: str
  detail: str = ""

  def describe(self) -> str:
    why = f"{self.source}: {self.detail}" if self.detail else self.source
    return f"{self.lanes} lane{'s' if self.lanes > 1 else ''} ({why})"


def candidates(num_variants: int, num_devices: int, platform: str) -> list[int]:
  """Lanes worth measuring for a population: 1, then powers of two up to the
  variants each device holds (capped at 256)."""
  local = max(1, -(-num_variants // num_devices))
  out, k = [1], 2
  while k <= min(local, 256):
    out.append(k)
    k *= 2 if platform == "cpu" else 4
  return out


@dataclasses.dataclass
class Probe:
  """One measured candidate.

  ``population`` counts the slots computed (the variants padded to whole
  lanes on every device), ``variants`` the real ones: the rate is of real
  variants' training steps, so padding costs a candidate instead of counting
  for it.
  """

  lanes: int
  population: int
  variant_steps_per_s: float
  compile_seconds: float
  bytes_per_variant: float | None
  variants: int
  train_seconds: float  # One timed period's training (evaluation subtracted).


def measure(plan: plan_lib.Plan, group: plan_lib.Group, mesh, *,
            lanes: Sequence[int] | None = None, population: int | None = None,
            steps: int = 20, repeats: int = 3) -> list[Probe]:
  """Times a group's program at each candidate lanes on a short probe.

  The probe is the group's own program with ``steps`` optimisation steps per
  period (a separate compilation for each candidate). After a warm-up call,
  each candidate's training time is its fastest of ``repeats`` periods minus
  its fastest evaluation alone; the rate counts the real variants, not the
  padding that fills the lanes.

  Args:
    plan, group: what runs.
    mesh: the devices.
    lanes: the candidates (default: :func:`candidates`).
    population: variants in the probe (default: the group's, at most 64 per
      device); padded to whole lanes.
    steps: optimisation steps per timed call.
    repeats: timed calls per candidate (the fastest counts).

  Returns:
    One :class:`Probe` per candidate, in the given order.
  """
  ndev = mesh.devices.size
  n = population or min(len(group.members), 64 * ndev)
  lanes = list(lanes or candidates(n, ndev, mesh.devices.flat[0].platform))
  # The group's own variants, with short periods: a plan of its own.
  probe_plan = plan_lib.make_plan(
      plan.components, {},
      [{**{str(k): v for k, v in plan.variants[v].items()},
        "train.steps": steps * 1000, "train.eval_every": steps} for v in group.members])
  [probe_group] = probe_plan.groups
  built = program_lib.build(probe_plan, probe_group)
  data = program_lib.device_data(built.dataset, mesh)
  flag = program_lib.train_flag(True, mesh)
  no_train = program_lib.train_flag(False, mesh)
  out = []
  for k in lanes:
    size = sharding.population_size(n, ndev, k)
    members = [probe_group.members[i % len(probe_group.members)] for i in range(size)]
    hp_dev = sharding.put_population(plan_lib.stack_hparams(probe_plan, probe_group, members),
                                     mesh)
    timings: list[float] = []
    compiled = program_lib.compile(
        built, mesh, program_lib.abstract_population(probe_plan, probe_group, size, mesh),
        data, lanes=k, timings=timings)
    state = compiled.init(hp_dev, data)
    state, stats = compiled.period(state, hp_dev, data, flag)  # Warm-up.
    jax.block_until_ready(stats)
    # Fastest of `repeats` periods, minus the fastest evaluation alone (the
    # same program with train=False): the probe evaluates every `steps`
    # steps, far more often than a run does. As bench/throughput.py does, an
    # evaluation that seems to take over half the period is timing noise (or
    # a bug) and is not subtracted: the rate may be low, never inflated.
    state, period_s = _fastest(compiled.period, state, hp_dev, data, flag, repeats)
    state, eval_s = _fastest(compiled.period, state, hp_dev, data, no_train, repeats)
    seconds = period_s - eval_s if period_s - eval_s >= 0.5 * period_s else period_s
    per_variant = None
    if compiled.memory_bytes is not None:
      per_variant = compiled.memory_bytes * ndev / size
    out.append(Probe(k, size, n * steps / seconds, sum(timings), per_variant,
                     variants=n, train_seconds=seconds))
  return out


def _fastest(period, state, hp, data, flag, repeats: int):
  """Runs ``period`` ``repeats`` times; returns the state and the fastest call's seconds."""
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, stats = period(state, hp, data, flag)
    jax.block_until_ready(stats)
    best = min(best, time.perf_counter() - t0)
  return state, best


def forward_flops(plan: plan_lib.Plan, group: plan_lib.Group) -> float:
  """FLOPs of one variant's forward pass over one training batch.

  XLA's cost analysis of the group's model applied to a batch of the
  training shape, lowered (traced, not compiled: tens of milliseconds), with
  the first member's hyperparameters.
  """
  built = program_lib.build(plan, group)
  x = built.dataset.train["x"]
  batch = jax.ShapeDtypeStruct((built.program.settings.batch_size, *np.shape(x)[1:]),
                               np.asarray(x).dtype)
  hp = jax.tree.map(lambda a: a[0], plan_lib.stack_hparams(plan, group, group.members[:1]))
  model_hp = dict(hp.get("model", {}))
  init_hp = {k: v for k, v in model_hp.items() if k in built.model.init_args}
  variables = jax.eval_shape(
      lambda x: built.model.init(jax.random.key(0), x[:1], **init_hp), batch)

  def forward(variables, x):
    return built.model.apply(variables, x, train=True, rng=jax.random.key(1), **model_hp)[0]

  cost = jax.jit(forward).lower(variables, batch).cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX: one dict per computation.
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def rule(plan: plan_lib.Plan, group: plan_lib.Group, mesh) -> LanesChoice:
  """The default lanes: a fixed function of the model's size and the platform.

  On CPU, :data:`RULE_SMALL_LANES` when the forward pass over one training
  batch costs less than :data:`RULE_CPU_FLOPS` (a small variant leaves a
  core idle between its small ops, and vmapping several fills it) and the
  group trains at least :data:`RULE_CPU_MIN_WORK` variant-steps (enough to
  pay for the vmapped program's longer compilation); else one variant at a
  time. The measured points are beside the constants. On GPU/TPU,
  :data:`jaxsweep.engine.sharding.ACCELERATOR_LANES`.

  The rule reads the group's model, batch, steps and number of variants,
  never the device count, the chunking or a measurement: the same sweep
  gets the same lanes (and bits) on every machine of a platform.
  """
  platform = mesh.devices.flat[0].platform
  if platform != "cpu":
    return LanesChoice(sharding.default_lanes(mesh), SOURCE_RULE, platform)
  work = len(group.members) * program_lib.build(plan, group).program.settings.steps
  if work < RULE_CPU_MIN_WORK:  # Short: the model's cost does not matter (not traced).
    return LanesChoice(1, SOURCE_RULE,
                       f"cpu, {work:,} variant-steps < {RULE_CPU_MIN_WORK:,}")
  try:
    flops = forward_flops(plan, group)
  except Exception:  # pylint: disable=broad-except
    # The check traced the model in eval mode only; a fault of its training
    # mode is the first group's compile to report (as a ModelError naming the
    # user's line), not this estimate's.
    return LanesChoice(1, SOURCE_RULE, "cpu, the model's training pass could not be costed")
  small = flops < RULE_CPU_FLOPS
  lanes = RULE_SMALL_LANES if small else 1
  return LanesChoice(lanes, SOURCE_RULE,
                     f"cpu, forward {flops / 1e6:.3g} MFLOP/batch {'<' if small else '>='} "
                     f"{RULE_CPU_FLOPS / 1e6:g}, {work:,} variant-steps >= "
                     f"{RULE_CPU_MIN_WORK:,}")


def check_lanes(lanes: int | str, *, key: str = "lanes",
                fix: str = "give e.g. lanes=8 (--lanes 8), or 'auto' to measure") -> None:
  """Refuses lanes that are neither a positive integer nor ``"auto"``.

  Raises:
    ConfigError: with ``key`` (``"lanes"``; a config's ``"run.lanes"``).
  """
  if lanes == "auto" or (isinstance(lanes, int) and not isinstance(lanes, bool) and lanes >= 1):
    return
  raise errors.ConfigError(f"lanes must be a positive integer or 'auto', got {lanes!r}.",
                           key=key, fix=fix)


def choose(plan: plan_lib.Plan, group: plan_lib.Group, mesh, lanes: int | str | None
           ) -> LanesChoice:
  """The lanes a group runs with.

  Args:
    lanes: an int (used as given), ``"auto"`` (this machine's cached
      measurement, else measured now and cached), or ``None`` (:func:`rule`;
      no cache is read).

  Raises:
    ConfigError: for anything else.
  """
  if lanes is None:
    return rule(plan, group, mesh)
  check_lanes(lanes)
  if lanes != "auto":
    return LanesChoice(lanes, SOURCE_USER)
  sig = signature(plan, group, mesh)
  entry = cached(sig)
  if entry is not None:
    return LanesChoice(entry["lanes"], SOURCE_AUTO, f"measured {entry['when']}, cached")
  probes = measure(plan, group, mesh)
  best = max(probes, key=lambda p: p.variant_steps_per_s)
  store(sig, best.lanes, {p.lanes: p.variant_steps_per_s for p in probes})
  return LanesChoice(best.lanes, SOURCE_AUTO, "measured now")
