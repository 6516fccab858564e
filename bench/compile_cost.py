"""Where a group's compile time goes, side by side with the plain per-trial program.

  PYTHONPATH=. python bench/compile_cost.py [--config configs/digits_lr.yaml]
      [--repeats 3] [--only NAME,...] [--out bench/compile_cost.json]
  PYTHONPATH=. python bench/compile_cost.py --calibrate   # the planner's estimate

For one compile group (the quick start by default: 48 variants x 300 steps
of the digits MLP) it traces, lowers and compiles each of jaxsweep's
programs (init, the period on the mesh) and a ladder of reduced forms of
the period, each removing one piece (``shard_map``, the lanes loop, the
divergence guards, two of the three evaluation splits, the step-0
evaluation's branch, the evaluation itself), and the plain per-trial
program a careful script compiles (one jitted function: init, a
``lax.scan`` of the same steps, one evaluation on the test split; the
learning rate traced, as bench/throughput_workers.py's Optuna objective).

A last row times the group as the engine compiles it
(``program.compile``: the init compiles on a background thread while the
period compiles), the number a user waits for.

Printed and saved (JSON): per program the trace, lower and compile seconds
(median of ``--repeats``, programs alternated so the machine's load falls
on all alike), the process CPU seconds of the same (``cpu``: what the
compiler did, far less sensitive to other processes' load than wall time),
the number of HLO instructions before and after XLA's passes, and the
ratios to the plain program (wall, CPU, HLO instructions). Op counts do not
depend on the load; wall seconds do (read them side by side only).
The persistent compilation cache is off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput_workers as workers  # noqa: E402  (bench/: the careful per-trial program)

from jaxsweep.engine import sharding  # noqa: E402

DEVICES = 2
ENGINE = "group as the engine compiles it (init overlapped)"


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


_INSTR = re.compile(r"^\s*(?:ROOT\s+)?[%\w.\-]+\s*=\s*\S+", re.M)


def hlo_ops(text: str) -> int:
  """HLO instructions in an HLO module's text (every computation's body)."""
  return len(_INSTR.findall(text))


def measure(jitted, args, *, options=None) -> dict:
  """Trace, lower and compile seconds and HLO sizes of ``jitted(*args)``."""
  c0, t0 = time.process_time(), time.perf_counter()
  traced = jitted.trace(*args)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2, c2 = time.perf_counter(), time.process_time()
  compiled = lowered.compile(**({"compiler_options": options} if options else {}))
  t3 = time.perf_counter()
  return {"trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2,
          "compile_cpu_s": time.process_time() - c2, "trace_lower_cpu_s": c2 - c0,
          "hlo_ops": hlo_ops(lowered.as_text(dialect="hlo")),
          "optimized_ops": hlo_ops(compiled.as_text())}


CALIBRATION = [(depth, vec) for depth in (1, 2, 4) for vec in (False, True)]


def calibration_plan(depth: int, vectorized: bool):
  """Digits MLPs of ``depth`` layers of 64, three activations grouped or vectorized."""
  from jaxsweep import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import plan as plan_lib  # pylint: disable=g-import-not-at-top
  comps = config_lib.registry_components(
      vectorize=["model.activation"] if vectorized else False)
  base = {"data.name": "digits", "model.name": "mlp", "model.features": (64,) * depth,
          "optimizer.name": "adam", "optimizer.learning_rate": 1e-3, "train.steps": 200,
          "train.batch_size": 128, "train.eval_every": 200, "seed": 0}
  return plan_lib.make_plan(comps, base, [{"model.activation": a}
                                          for a in ("relu", "tanh", "gelu")])


def calibrate(repeats: int, out_path: str) -> int:
  """Compile CPU seconds of one variant's period against its HLO instructions;
  fits ``seconds = base + per_op * instructions`` (structure.Profile's)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from jaxsweep.engine import plan as plan_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import program as program_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import structure  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_enable_compilation_cache", False)
  rows = []
  for depth, vec in CALIBRATION:
    plan = calibration_plan(depth, vec)
    group = plan.groups[0]
    built = program_lib.build(plan, group)
    hp = jax.tree.map(lambda a: a[0], plan_lib.stack_hparams(plan, group, group.members[:1]))
    data = program_lib.abstract_data(built.dataset)
    state = jax.eval_shape(built.program.init, hp, data)
    args = (state, hp, data, jax.ShapeDtypeStruct((), np.int32))
    cpu = []
    for _ in range(repeats):
      jax.clear_caches()
      cpu.append(measure(jax.jit(built.program.period), args)["compile_cpu_s"])
    ops = structure.program_ops(plan, group)
    rows.append({"name": f"mlp depth {depth}, activation {'vectorized' if vec else 'grouped'}",
                 "depth": depth, "vectorized": vec, "hlo_ops": ops,
                 "compile_cpu_s": statistics.median(cpu), "runs": cpu})
    print(f"  {rows[-1]['name']}: {ops} HLO instructions, {rows[-1]['compile_cpu_s']:.2f} s CPU",
          file=sys.stderr, flush=True)
  x = np.array([r["hlo_ops"] for r in rows], float)
  y = np.array([r["compile_cpu_s"] for r in rows])
  per_op, base = np.polyfit(x, y, 1)
  for r in rows:
    r["estimate_s"] = structure.profile("cpu").compile_seconds(r["hlo_ops"])
  out = {"cpu": _cpu_name(), "load_avg": os.getloadavg(), "jax": jax.__version__,
         "repeats": repeats, "fit": {"base_s": float(base), "per_op_s": float(per_op)},
         "profile": {"base_s": structure.CPU_COMPILE_BASE_S,
                     "per_op_s": structure.CPU_COMPILE_S_PER_OP}, "programs": rows}
  with open(out_path, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  print(f"fit: {base:.2f} s + {per_op * 1e3:.3f} ms per HLO instruction "
        f"(profile: {structure.CPU_COMPILE_BASE_S} s + "
        f"{structure.CPU_COMPILE_S_PER_OP * 1e3:.3f} ms); wrote {out_path}")
  return 0


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  p.add_argument("--config", default="configs/digits_lr.yaml")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--only", default="", help="comma-separated program names")
  p.add_argument("--out", default="bench/compile_cost.json")
  p.add_argument("--calibrate", action="store_true",
                 help="fit the planner's compile estimate (bench/compile_calibration.json)")
  args = p.parse_args(argv)

  os.environ.setdefault("JAXSWEEP_COMPILE_CACHE", "off")
  sharding.configure_cpu_devices(DEVICES)
  if args.calibrate:
    return calibrate(args.repeats, "bench/compile_calibration.json"
                     if args.out == "bench/compile_cost.json" else args.out)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from jaxsweep import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import program as program_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import structure  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import train as train_lib  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_enable_compilation_cache", False)
  cfg = config_lib.load(args.config)
  plan = structure.make_plan(cfg.components, cfg.base, cfg.points)
  group = plan.groups[0]
  built = program_lib.build(plan, group)
  prog, settings = built.program, built.program.settings
  mesh = sharding.make_mesh()
  size = sharding.population_size(len(group.members), mesh.devices.size, 1)
  hp = program_lib.abstract_population(plan, group, size, mesh)
  data = program_lib.device_data(built.dataset, mesh)
  pop, rep = sharding.population(mesh), sharding.replicated(mesh)
  init_fn = sharding.population_map(prog.init, mesh, lanes=1, num_population=1)
  state = jax.eval_shape(init_fn, hp, data)
  flag = jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)
  hp1 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), hp)
  state1 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state)
  data1 = program_lib.device_data(built.dataset)
  flag1 = jax.ShapeDtypeStruct((), jnp.int32)

  def no_guards(fn):
    """``fn`` traced with the divergence guard on parameters off (the loss's stays)."""
    def wrapped(*a):
      saved = train_lib._all_finite  # pylint: disable=protected-access
      train_lib._all_finite = lambda tree: jnp.array(True)  # pylint: disable=protected-access
      try:
        return fn(*a)
      finally:
        train_lib._all_finite = saved  # pylint: disable=protected-access
    return wrapped

  programs = {}
  # --- jaxsweep's programs, as program.compile builds them.
  period_mesh = sharding.population_map(prog.period, mesh, lanes=1, num_population=2,
                                        skip=(prog.halted, prog.passthrough))
  programs["init (mesh)"] = (
      lambda: jax.jit(init_fn, in_shardings=(pop, rep), out_shardings=pop), (hp, data),
      program_lib._COLD_OPTIONS)  # pylint: disable=protected-access
  programs["period (mesh)"] = (
      lambda: jax.jit(period_mesh, in_shardings=(pop, pop, rep, rep),
                      out_shardings=(pop, pop), donate_argnums=(0,)),
      (state, hp, data, flag), None)
  # --- The ladder: one piece removed at a time, one variant from here on.
  programs["period, lax.map, no shard_map"] = (
      lambda: jax.jit(lambda s, h, d, f: jax.lax.map(lambda q: prog.period(*q, d, f), (s, h))),
      (jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state),
       jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), hp), data1, flag1), None)
  programs["period, one variant"] = (lambda: jax.jit(prog.period), (state1, hp1, data1, flag1),
                                     None)
  programs["period, one variant, train=True static"] = (
      lambda: jax.jit(lambda s, h, d: prog.period(s, h, d, True)), (state1, hp1, data1), None)
  test_only = {k: v for k, v in data1.items() if k in ("train", "test")}
  programs["period, one variant, test split only"] = (
      lambda: jax.jit(prog.period), (state1, hp1, test_only, flag1), None)
  programs["period, one variant, no parameter guards"] = (
      lambda: jax.jit(no_guards(prog.period)), (state1, hp1, data1, flag1), None)
  programs["period, one variant, no evaluation"] = (
      lambda: jax.jit(prog.period), (state1, hp1, {"train": data1["train"]}, flag1), None)
  programs["evaluate only (3 splits)"] = (lambda: jax.jit(prog.evaluate),
                                          (state1, hp1, data1), None)
  programs["init, one variant"] = (lambda: jax.jit(prog.init), (hp1, data1), None)

  # --- The plain per-trial program: init + scan + one evaluation, same model.
  model, steps, batch = built.model, settings.steps, settings.batch_size
  x, y = data1["train"]["x"], data1["train"]["y"]
  xt, yt = data1["test"]["x"], data1["test"]["y"]

  plain = workers.careful_trial(
      lambda key, x: model.init(key, x)["params"],
      lambda params, x, train: model.apply({"params": params}, x, train=train, rng=None)[0],
      steps, batch)

  programs["plain per-trial (init+scan+eval)"] = (
      lambda: jax.jit(plain), (jnp.float32(1e-3), jnp.uint32(0), x, y, xt, yt), None)

  def engine_group():
    """The group as the engine compiles it: ``program.compile`` (the period's
    trace, lowering and compile, the init compiling on a background thread
    meanwhile), from a fresh build; wall and process CPU seconds."""
    program_lib.clear_cache()  # Else build() returns the program compiled last time.
    fresh = program_lib.build(plan, group)
    c0, t0 = time.process_time(), time.perf_counter()
    entry = program_lib.compile(fresh, mesh, hp, data, lanes=1)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"trace_s": 0.0, "lower_s": 0.0, "compile_s": wall, "compile_cpu_s": cpu,
            "trace_lower_cpu_s": 0.0,
            "hlo_ops": 0,  # Not lowered separately here: see the two rows above.
            "optimized_ops": hlo_ops(entry.period.as_text()) + hlo_ops(entry.init.as_text())}

  programs[ENGINE] = (None, None, None)
  only = [s.strip() for s in args.only.split(",") if s.strip()]
  names = [n for n in programs if not only or any(o in n for o in only)]
  runs: dict[str, list[dict]] = {n: [] for n in names}
  for r in range(args.repeats):
    for n in names:
      make, call_args, options = programs[n]
      jax.clear_caches()  # Else a repeat is a hit of JAX's in-memory executable cache.
      runs[n].append(engine_group() if n == ENGINE else
                     measure(make(), call_args, options=options))
      print(f"  [{r + 1}/{args.repeats}] {n}: "
            + (f"{runs[n][-1]['compile_s']:.2f} s" if runs[n] else "n/a"), file=sys.stderr,
            flush=True)

  rows = {}
  for n, rs in runs.items():
    if not rs:
      continue
    row = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    row["hlo_ops"], row["optimized_ops"] = rs[0]["hlo_ops"], rs[0]["optimized_ops"]
    row["total_s"] = row["trace_s"] + row["lower_s"] + row["compile_s"]
    row["total_cpu_s"] = row["trace_lower_cpu_s"] + row["compile_cpu_s"]
    row["repeats"] = len(rs)
    rows[n] = row
  base = rows.get("plain per-trial (init+scan+eval)")
  pair = ("init (mesh)", "period (mesh)")
  print(f"\n{'program':44s} {'trace':>6s} {'lower':>6s} {'compile':>7s} {'cpu':>6s} "
        f"{'total':>6s} {'HLO':>6s} {'opt HLO':>7s} {'x plain':>7s} {'cpu x':>6s} {'ops x':>6s}")
  for n, row in rows.items():
    row["ratio_to_plain"] = row["total_s"] / base["total_s"] if base else float("nan")
    row["cpu_ratio_to_plain"] = row["total_cpu_s"] / base["total_cpu_s"] if base else float("nan")
    row["ops_ratio_to_plain"] = row["hlo_ops"] / base["hlo_ops"] if base else float("nan")
    print(f"{n:44s} {row['trace_s']:6.2f} {row['lower_s']:6.2f} {row['compile_s']:7.2f} "
          f"{row['compile_cpu_s']:6.2f} {row['total_s']:6.2f} {row['hlo_ops']:6d} "
          f"{row['optimized_ops']:7d} {row['ratio_to_plain']:7.2f} "
          f"{row['cpu_ratio_to_plain']:6.2f} {row['ops_ratio_to_plain']:6.2f}")
  summary = {}
  if base and all(n in rows for n in pair):
    tot = lambda k: sum(rows[n][k] for n in pair)
    summary = {"group_total_s": tot("total_s"), "plain_total_s": base["total_s"],
               "group_to_plain": tot("total_s") / base["total_s"],
               "group_cpu_to_plain": tot("total_cpu_s") / base["total_cpu_s"],
               "group_hlo_ops_to_plain": tot("hlo_ops") / base["hlo_ops"],
               "period_cpu_to_plain": rows[pair[1]]["total_cpu_s"] / base["total_cpu_s"]}
    if ENGINE in rows:
      summary["engine_to_plain"] = rows[ENGINE]["total_s"] / base["total_s"]
      summary["engine_cpu_to_plain"] = rows[ENGINE]["total_cpu_s"] / base["total_cpu_s"]
    print(f"\none group (init + period on the mesh) / the plain per-trial program: "
          f"{summary['group_to_plain']:.2f}x wall, {summary['group_cpu_to_plain']:.2f}x CPU "
          f"(the period alone {summary['period_cpu_to_plain']:.2f}x), "
          f"{summary['group_hlo_ops_to_plain']:.2f}x HLO instructions")
    if "engine_to_plain" in summary:
      print(f"as the engine compiles it (init on a background thread): "
            f"{summary['engine_to_plain']:.2f}x wall, {summary['engine_cpu_to_plain']:.2f}x CPU")
  load = os.getloadavg()
  out = {"config": args.config, "variants": len(group.members), "steps": settings.steps,
         "eval_every": settings.eval_every, "devices": DEVICES, "cpu": _cpu_name(),
         "cores": os.cpu_count(), "load_avg": load, "jax": jax.__version__,
         "repeats": args.repeats, "programs": rows, "summary": summary,
         "note": "seconds are medians on a shared machine (load average given); HLO "
                 "instruction counts do not depend on the load"}
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  print(f"cpu: {out['cpu']}, load average {load[0]:.1f}; wrote {args.out}")
  del np
  return 0


if __name__ == "__main__":
  sys.exit(main())
