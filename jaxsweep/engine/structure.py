"""Vectorize or group: the planner's choice for each structural key.

A swept structural key (``model.activation``, ``model.features``,
``loss.name``, ``optimizer.name``, ``optimizer.schedule``) can be trained two
ways:

- **grouped**: one compiled program per value, each computing exactly its
  variants' network;
- **vectorized**: one program for all values, each variant selecting its own
  by a traced index (``lax.switch``, which under ``vmap`` computes every
  branch), or, for widths and depths, by masks inside a network padded to
  the widest and deepest option.

Grouping pays a compilation per value; vectorizing pays the extra compute
of the branches or of the padding. :func:`decide` compares the two from
estimates, and :func:`make_plan` applies it to each key the user did not
force (``vectorize=`` forces one way, ``group=`` the other).

The estimates are deliberately simple and deterministic (the same config
always gets the same decision, hence the same bits). A variant-step costs
``6 * batch_size * parameters`` floating-point operations (a dense
network's forward and backward pass) at :attr:`Profile.flops_per_s`. A
compilation costs, on CPU, a time fitted to the size of the program: one
variant's training period is traced and lowered (not compiled) for the
grouped program and for the program with the key vectorized, and its HLO
instructions are priced at :attr:`Profile.compile_s_per_op` over
:attr:`Profile.compile_base_s` (``bench/compile_cost.py --calibrate``
measured both; a switched deep network's branches grow its program, which
the fixed :attr:`Profile.compile_growth` of other platforms misses by about
2x). The HLO does not depend on the machine's load or the compilation
cache's state; nothing is timed at plan time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.keys import Key

# bench/compile_cost.py --calibrate: compile CPU seconds = base + per_op * ops.
CPU_COMPILE_BASE_S = 1.67
CPU_COMPILE_S_PER_OP = 0.337e-3
# bench/compile_cost.py: the digits MLP's init on the mesh, CPU seconds (2026-12-07).
CPU_INIT_COMPILE_S = 1.0


@dataclasses.dataclass(frozen=True)
class Profile:
  """A platform's costs, for the estimates.

  Attributes:
    compile_s: seconds to compile one group's program.
    flops_per_s: floating-point operations per second a population of
      networks large enough to fill the device reaches.
    compile_growth: a vectorized program's compile time grows by this
      fraction per extra option (more branches to compile).
    init_compile_s: what each program's init (compiled beside its period)
      adds to the per-instruction price, which fits the period alone.
    step_overhead_flops: what a variant-step costs beyond its arithmetic
      (small ops, the optimizer's and the guard's elementwise work), in
      floating-point operations at ``flops_per_s``: a step of ``f``
      operations runs at ``flops_per_s * f / (f + step_overhead_flops)``,
      so small networks reach less.
  """

  compile_s: float
  flops_per_s: float
  compile_growth: float = 0.06
  step_overhead_flops: float = 0.0
  compile_base_s: float | None = None
  compile_s_per_op: float | None = None
  init_compile_s: float = 0.0

  def compile_seconds(self, ops: int) -> float:
    """Estimated seconds to compile a group whose training period lowers to
    ``ops`` HLO instructions (one variant, before XLA's passes)."""
    if self.compile_base_s is None or self.compile_s_per_op is None:
      return self.compile_s
    return self.compile_base_s + self.compile_s_per_op * ops


def profile(platform: str | None = None) -> Profile:
  """The cost profile of a platform (default: JAX's default backend).

  CPU: measured on a quiet 2-core AMD EPYC (jax 0.10.2, 2026-12-07,
  ``bench/RESULTS.md``'s targets), in the ``6 * batch * parameters``
  count: 80 GFLOP/s for networks that fill the cores, and 1.05 MFLOP of
  overhead per variant-step (digits MLPs at 64 learning rates: 32-32 at
  batch 32 trained at 30.5 GFLOP/s, 128-128 at batch 128 at 77, the
  384-MLP ablation masked to 4 x 256 at batch 32 at 71). The earlier single
  rate (23 GFLOP/s, measured under load) priced the masked ablation at 2.6x
  its 54 s and grouped it into 16 programs that took 67 s. A compile costs
  ``compile_base_s + compile_s_per_op * HLO instructions`` of the period
  program, a line fitted to the process CPU seconds of XLA's compile of
  MLP periods of depth 1-4, grouped and with a vectorized activation
  (``bench/compile_calibration.json``, 2026-12-07), plus 1.0 s for the
  program's init (``bench/compile_cost.py``'s init on the mesh; with it, the
  ablation's 16 grouped programs are priced at 64 s, measured 67). GPU and TPU: assumed, not measured
  here (a few seconds per compile, ~10 TFLOP/s for small networks); force
  the choice there when it matters. The profile does not read the machine
  (its cores, the compilation cache), so a config gets the same decision,
  hence the same program, on every machine of a platform.
  """
  platform = platform or jax.default_backend()
  if platform == "cpu":
    return Profile(compile_s=4.0, flops_per_s=8e10, step_overhead_flops=1.05e6,
                   init_compile_s=CPU_INIT_COMPILE_S, compile_base_s=CPU_COMPILE_BASE_S,
                   compile_s_per_op=CPU_COMPILE_S_PER_OP)
  if platform == "tpu":
    return Profile(compile_s=8.0, flops_per_s=2e13)
  return Profile(compile_s=3.0, flops_per_s=1e13)


@dataclasses.dataclass(frozen=True)
class KeyPlacement:
  """The decision for one swept structural key.

  Attributes:
    key: the key.
    options: how many values it takes.
    grouped_s: estimated seconds (compilation + training) when grouped.
    vectorized_s: the same when vectorized.
    vectorize: the decision.
    forced: the user's (``vectorize=`` / ``group=``), not the estimate's.
    why: one line: what the vectorized program costs extra, or why the key
      cannot be vectorized.
    programs: (programs compiled when grouped, when vectorized), counting
      the keys decided before this one.
  """

  key: Key
  options: int
  grouped_s: float | None
  vectorized_s: float | None
  vectorize: bool
  forced: bool = False
  why: str = ""
  programs: tuple[int, int] | None = None

  def describe(self) -> str:
    how = "vectorized" if self.vectorize else "grouped"
    if self.forced:
      return f"{how} (forced)"
    if self.grouped_s is None:
      return f"{how} ({self.why})"
    progs = f"{self.programs[0]} -> {self.programs[1]} programs; " if self.programs else ""
    return (f"{how}: {progs}est. {self.grouped_s:.0f} s grouped vs "
            f"{self.vectorized_s:.0f} s vectorized ({self.why})")


def decide(key: Key, *, options: int, programs: int, merged_programs: int, compute_flops: float,
           extra_flops: float, prof: Profile, why: str = "",
           compile_s: tuple[float, float] | None = None) -> KeyPlacement:
  """Vectorize a key or group by it, whichever the estimates say is faster.

  Args:
    key: the key.
    options: its number of values.
    programs: programs compiled when it is grouped.
    merged_programs: programs compiled when it is vectorized.
    compute_flops: the sweep's training compute when grouped (exact).
    extra_flops: what vectorizing adds (switch branches, padded units).
    prof: the platform's costs.
    why: a description of the extra compute, for :attr:`KeyPlacement.why`.
    compile_s: seconds to compile one grouped and one vectorized program
      (:func:`program_ops`, :meth:`Profile.compile_seconds`); default:
      :attr:`Profile.compile_s`, grown by :attr:`Profile.compile_growth` per
      extra option for the vectorized one.

  Examples:
    >>> p = Profile(compile_s=4.0, flops_per_s=1e10)
    >>> k = Key("model", "features")
    >>> decide(k, options=4, programs=4, merged_programs=1, compute_flops=1e10,
    ...        extra_flops=3e10, prof=p).vectorize  # 12 s of compiles saved, 3 s spent.
    True
    >>> decide(k, options=4, programs=4, merged_programs=1, compute_flops=1e12,
    ...        extra_flops=9e12, prof=p).vectorize  # Padding: 900 s for 12 s.
    False
  """
  if compile_s is None:
    compile_s = (prof.compile_s, prof.compile_s * (1 + prof.compile_growth * (options - 1)))
  grouped = programs * compile_s[0] + compute_flops / prof.flops_per_s
  vectorized = (merged_programs * compile_s[1]
                + (compute_flops + extra_flops) / prof.flops_per_s)
  return KeyPlacement(key, options, grouped, vectorized, vectorized <= grouped, why=why,
                programs=(programs, merged_programs))


# Extra compute of a vectorized switch, as a fraction of a variant-step's
# dense compute per extra option: an activation is ~10 flops per unit for
# ~6 * fan_in flops of matmul; a loss is negligible next to the network; an
# optimizer's update is ~20 flops per parameter per step, not per example
# (the fraction is divided by the batch size); a schedule is a scalar.
SWITCH_COST = {"activation": 0.03, "loss": 0.005, "schedule": 0.0}
OPTIMIZER_FLOPS_PER_PARAM = 20.0


def vectorizable(plan: plan_lib.Plan, key: Key) -> bool:
  """Whether every group's components can select ``key`` per variant."""
  values = {keys.freeze(v[key]) for v in plan.variants if key in v}
  if len(values) < 2 or any(isinstance(v, (int, float, bool)) or v is None for v in values):
    return False
  if key.arg == "name":
    return key.slot in plan_lib.CHOOSERS and plan.components.named(key.slot)
  index = plan_lib.index_key(key).arg
  for g in plan.groups:
    sig = g.signature
    if key.slot == "model" and index not in sig.call_args:
      return False
    if key.slot != "model" and index not in sig.accepted.get(key.slot, {}):
      return False
  return True


def make_plan(components: plan_lib.Components, base: Mapping[str, Any],
              points: Sequence[Mapping[str, Any]], *, display: Mapping[str, str] | None = None,
              prof: Profile | None = None) -> plan_lib.Plan:
  """:func:`jaxsweep.engine.plan.make_plan`, with the structural keys decided.

  The public planner (``js.engine.make_plan``): what :func:`jaxsweep.run`
  and the command plan with, so the engine API builds the same programs
  from the same sweep. Keys the user named in ``components.vectorize`` or
  ``components.group`` are forced; with ``components.auto`` (the default),
  every other vectorizable swept key is decided by :func:`decide`
  (switches first, cheapest extra compute first; each decision counts the
  programs left by the ones before). ``Components(auto=False)`` decides
  nothing: every static key not in ``vectorize`` splits compile groups
  (one program per value), as :func:`jaxsweep.engine.plan.make_plan`
  alone does. The returned plan's ``structure`` lists every decision.

  Raises:
    ConfigError: what :func:`jaxsweep.engine.plan.make_plan` raises, and a
      key both forced to vectorize and to group.
  """
  both = components.vectorize & components.group
  if both:
    k = sorted(map(str, both))[0]
    raise errors.ConfigError(f"'{k}' is both vectorized and grouped.", key="vectorize",
                             fix=f"take {k} out of vectorize or out of group")
  plan = plan_lib.make_plan(components, base, points, display=display)
  forced = [KeyPlacement(k, _options(plan, k), None, None, k in components.vectorize,
                         forced=True)
            for k in plan.swept if k in components.vectorize | components.group]
  if not components.auto:
    return dataclasses.replace(plan, structure=tuple(forced))
  candidates = [k for k in plan.swept if k not in components.vectorize
                and k not in components.group and any(k in g.static for g in plan.groups) and vectorizable(plan, k)]
  if not candidates:
    return dataclasses.replace(plan, structure=tuple(forced))
  decided = _decide_all(plan, candidates, prof or profile(), components, base, points)
  chosen = frozenset(c.key for c in decided if c.vectorize)
  if chosen:
    plan = plan_lib.make_plan(
        dataclasses.replace(components, vectorize=components.vectorize | chosen),
        base, points, display=display)
  return dataclasses.replace(plan, structure=tuple(forced) + tuple(decided))


def _options(plan: plan_lib.Plan, key: Key) -> int:
  return len({keys.freeze(v.get(key)) for v in plan.variants})


def _programs(plan: plan_lib.Plan, removed: frozenset[Key]) -> int:
  return len({keys.freeze({k: v for k, v in g.static.items() if k not in removed})
              for g in plan.groups})


def program_ops(plan: plan_lib.Plan, group: plan_lib.Group) -> int:
  """HLO instructions of one variant's training period of ``group``, traced
  and lowered abstractly (nothing compiles): what its compile time grows with."""
  built = program_lib.build(plan, group)
  hp = jax.tree.map(lambda a: a[0], plan_lib.stack_hparams(plan, group, group.members[:1]))
  data = program_lib.abstract_data(built.dataset)
  state = jax.eval_shape(built.program.init, hp, data)
  lowered = jax.jit(built.program.period).lower(
      state, hp, data, jax.ShapeDtypeStruct((), np.int32))
  return hlo_instructions(lowered.as_text(dialect="hlo"))


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?[%\w.\-]+\s*=\s*\S+", re.M)


def hlo_instructions(text: str) -> int:
  """Instructions in an HLO module's text, every computation's."""
  return len(_INSTRUCTION.findall(text))


def _compile_estimates(plan, candidates, prof, components, base, points
                       ) -> dict[Key, tuple[int, int]] | None:
  """key -> (HLO instructions of a grouped program, of the program with the
  key vectorized), or None where the profile has no per-op cost (or a
  program fails to lower: then the fixed estimate holds)."""
  if prof.compile_s_per_op is None:
    return None
  try:
    grouped = program_ops(plan, plan.groups[0])
    out = {}
    for k in candidates:
      merged = plan_lib.make_plan(
          dataclasses.replace(components, vectorize=components.vectorize | {k}), base, points)
      out[k] = (grouped, program_ops(merged, merged.groups[0]))
    return out
  except Exception:  # pylint: disable=broad-except  # The estimate is a fallback's business.
    return None


def _decide_all(plan: plan_lib.Plan, candidates: Sequence[Key], prof: Profile,
                components: plan_lib.Components | None = None, base=None, points=None
                ) -> list[KeyPlacement]:
  params = _params(plan)  # variant -> parameters (its own network).
  step_flops = {i: 6.0 * _train(v, "batch_size") * params[i] for i, v in enumerate(plan.variants)}
  steps = {i: _train(v, "steps") for i, v in enumerate(plan.variants)}
  # Each variant-step's overhead counts once, whatever is vectorized.
  compute = sum((step_flops[i] + prof.step_overhead_flops) * steps[i] for i in step_flops)
  extras: dict[Key, tuple[float, str]] = {}
  for k in candidates:
    try:
      extras[k] = _extra(plan, k, params, step_flops, steps)
    except errors.ConfigError as e:  # The model cannot mask it (e.g. its initializer).
      extras[k] = (float("inf"), f"cannot vectorize: {errors.first_line(e)}")
  finite = [k for k in candidates if extras[k][0] != float("inf")]
  ops = (_compile_estimates(plan, finite, prof, components, base, points)
         if components is not None and finite else None)
  growth = 1.0  # The grouped program's size, with the keys vectorized so far.
  removed: frozenset[Key] = frozenset()
  out = []
  for k in sorted(candidates, key=lambda c: extras[c][0]):
    extra, why = extras[k]
    if extra == float("inf"):
      out.append(KeyPlacement(k, _options(plan, k), None, None, False, why=why))
      continue
    compile_s = None
    if ops is not None:
      grouped_ops, merged_ops = ops[k]
      compile_s = (prof.compile_seconds(round(grouped_ops * growth)) + prof.init_compile_s,
                   prof.compile_seconds(round(merged_ops * growth)) + prof.init_compile_s)
    c = decide(k, options=_options(plan, k), programs=_programs(plan, removed),
               merged_programs=_programs(plan, removed | {k}), compute_flops=compute,
               extra_flops=extra, prof=prof, why=why, compile_s=compile_s)
    if c.vectorize:
      removed |= {k}
      compute += extra
      if ops is not None:
        growth *= ops[k][1] / ops[k][0]
    out.append(c)
  return sorted(out, key=lambda c: plan.swept.index(c.key))


def _train(variant: Mapping[Key, Any], arg: str) -> int:
  value = variant.get(Key("train", arg))
  return int(value) if isinstance(value, (int, np.integer)) and value > 0 else 1


def _extra(plan: plan_lib.Plan, key: Key, params: Mapping[int, int],
           step_flops: Mapping[int, float], steps: Mapping[int, int]) -> tuple[float, str]:
  """(extra flops of vectorizing ``key``, a description)."""
  n = _options(plan, key)
  total = sum(step_flops[i] * steps[i] for i in step_flops)
  if key.slot == "optimizer" and key.arg == "name":
    extra = sum(OPTIMIZER_FLOPS_PER_PARAM * params[i] * steps[i] * (n - 1) for i in params)
    return extra, f"{n} optimizer updates per step"
  if key.slot != "model" or key.arg == "activation":
    frac = SWITCH_COST.get(key.arg if key.arg != "name" else key.slot, 0.03)
    return total * frac * (n - 1), f"{n} branches"
  # A factory argument masked inside one padded network.
  padded = _padded_params(plan, key)
  extra = sum(step_flops[i] * steps[i] * max(padded / params[i] - 1, 0.0) for i in params)
  waste = extra / (total + extra) if total + extra else 0.0
  return extra, f"padding wastes {waste:.0%} of the compute"


def _params(plan: plan_lib.Plan) -> dict[int, int]:
  """Variant -> its own network's parameters, counted once per model (per
  group where a model argument is a forced vectorized choice)."""
  out: dict[int, int] = {}
  by_model: dict[tuple, Any] = {}
  for g in plan.groups:
    mk = keys.freeze(g.static_args("model"))
    n = by_model.get(mk)
    if n is None or isinstance(n, dict):  # A dict holds only its group's members.
      n = by_model[mk] = program_lib.num_params(plan, g, program_lib.build(plan, g))
    out.update(n if isinstance(n, dict) else dict.fromkeys(g.members, n))
  return out


def _padded_params(plan: plan_lib.Plan, key: Key) -> int:
  """Parameters of the network padded to hold every option of ``key``."""
  options = tuple(dict.fromkeys(keys.freeze(v[key]) for v in plan.variants if key in v))
  group = plan.groups[0]
  built = program_lib.build(plan, group)
  static = {k: v for k, v in built.model_args.items() if k != key.arg}
  fns = plan_lib.build_model(plan.components, {**static, key.arg: options})
  x = jax.ShapeDtypeStruct((1, *np.shape(built.dataset.train["x"])[1:]),
                           np.asarray(built.dataset.train["x"]).dtype)
  # The key is made inside the trace: nothing is compiled.
  shapes = jax.eval_shape(lambda x: fns.init(jax.random.key(0), x), x)
  return int(sum(np.prod(s.shape) for s in jax.tree.leaves(shapes["params"])))
