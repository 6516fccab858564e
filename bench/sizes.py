"""Size sweep (issue #24 pt 3): where vectorizing wins, against Optuna.

For digits MLPs (64 -> W -> W -> 10, Adam) at several (width W, batch B)
points, 64 learning rates x S steps each, side by side in one run:

* **jaxsweep**: ``jaxsweep run`` with its default settings (lanes by the
  default rule, one virtual device per core), as a first run: a fresh
  compilation cache per point. Whole process, from spawn to exit.
* **jaxsweep, 8 lanes** (points whose forward pass is under 1 MFLOP per
  batch): the same with ``--lanes 8``, the vectorized regime the default
  rule picks only for long sweeps of small models on CPU.
* **Optuna, careful**: one jitted ``lax.scan`` per trial compiled once, the
  learning rate traced, ``n_jobs=2`` threads, the 64 rates enqueued (the
  objective of ``bench/throughput_workers.py``, at this point's batch size).
  Whole process, from spawn to exit.
* **batched matmul**: a jitted chain of ``einsum('nbi,nio->nbo')`` over the
  64 variants with the MLP's layer shapes, the variant axis sharded over the
  same virtual devices, in GFLOP/s; the vectorized training step's GFLOP/s
  (``jaxsweep``'s training seconds, its training FLOPs counted as
  ``throughput_workers.flops_per_step``) is reported as a fraction of it.

The two whole-process runs alternate in order from one point to the next.
Writes ``sizes.json`` (every number, the machine, the load) and ``sizes.png``
(the speed-up over Optuna per point, and the step's share of the matmul
rate).

  python bench/sizes.py [--quick] [--out bench/sizes.json]

``--quick``: two points, 200 steps (one to two minutes on a quiet 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]

import machine  # noqa: E402  (bench/machine.py)
import throughput_workers as workers  # noqa: E402  (bench/throughput_workers.py)

NUM_LRS = 64
POINTS = [(16, 16), (32, 32), (64, 64), (128, 128), (256, 128), (512, 256)]
QUICK_POINTS = [(32, 32), (128, 128)]
STEPS, QUICK_STEPS = 1000, 200
CONFIG = """\
data: {{name: digits, test_fraction: 0.2, seed: 0}}
model: {{name: mlp, features: [{width}, {width}], activation: relu}}
loss: cross_entropy
optimizer: {{name: adam, learning_rate: 1.0e-3}}
train: {{steps: {steps}, batch_size: {batch}, eval_every: {steps}}}
sweep:
  optimizer.learning_rate: {{log_uniform: [{lo}, {hi}], num: {n}}}
"""


# --platform: JAX_PLATFORMS of the children ("cuda" on a GPU machine).
PLATFORM = {"name": "cpu"}


def child_env(cache: str) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAXSWEEP_CPU_DEVICES")}
  env.update(JAX_PLATFORMS=PLATFORM["name"], JAXSWEEP_CACHE_DIR=cache,
             JAXSWEEP_COMPILE_CACHE=os.path.join(cache, "xla"),
             PYTHONPATH=os.pathsep.join([ROOT, *filter(None, env.get("PYTHONPATH", "")
                                                       .split(os.pathsep))]))
  return env


def timed(cmd: list[str], env: dict) -> tuple[float, str, str]:
  """Runs a process; returns seconds from spawn to exit, stdout and stderr."""
  t0 = time.perf_counter()
  p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
  seconds = time.perf_counter() - t0
  if p.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd[:4])}... failed:\n{p.stderr[-3000:]}")
  return seconds, p.stdout, p.stderr


def run_jaxsweep(width: int, batch: int, steps: int, tmp: str, lanes: int | None = None
                 ) -> dict:
  d = tempfile.mkdtemp(dir=tmp)
  config = os.path.join(d, "sizes.yaml")
  with open(config, "w") as f:
    f.write(CONFIG.format(width=width, batch=batch, steps=steps, n=NUM_LRS,
                          lo=workers.LR_RANGE[0], hi=workers.LR_RANGE[1]))
  out = os.path.join(d, "run")
  wall, _, _ = timed([sys.executable, "-m", "jaxsweep", "run", config, "--out", out,
                      "--no-plots", "--quiet", "--format", "csv",
                      *(["--lanes", str(lanes)] if lanes else [])], child_env(d))
  with open(os.path.join(out, "results.json")) as f:
    res = json.load(f)
  [group] = res["groups"]
  train_s = group["train_seconds"]
  flops = workers.flops_per_step(width, batch) * NUM_LRS * steps
  return {"wall_s": wall, "compile_s": group["compile_seconds"], "train_s": train_s,
          "lanes": group["lanes"], "lanes_source": group.get("lanes_source"),
          "variant_steps_per_s": NUM_LRS * steps / train_s,
          "train_gflops": flops / train_s / 1e9,
          "max_test_accuracy": max(r["test_accuracy"] for r in res["rows"])}


def run_optuna(width: int, batch: int, steps: int, tmp: str) -> dict:
  spec = {"width": width, "batch": batch, "steps": steps, "n": NUM_LRS, "n_jobs": 2}
  wall, out, _ = timed([sys.executable, __file__, "--child", "optuna", json.dumps(spec)],
                       child_env(tempfile.mkdtemp(dir=tmp)))
  return {"wall_s": wall, **_result(out)}


def run_matmul(width: int, batch: int) -> dict:
  spec = {"width": width, "batch": batch, "n": NUM_LRS}
  _, out, _ = timed([sys.executable, __file__, "--child", "matmul", json.dumps(spec)],
                    child_env(tempfile.mkdtemp()))
  return _result(out)


def _result(stdout: str) -> dict:
  for line in reversed(stdout.splitlines()):
    if line.startswith("@@RESULT "):
      return json.loads(line[len("@@RESULT "):])
  raise RuntimeError(f"no result in:\n{stdout[-2000:]}")


# ==========================================================================
# The children (JAX is imported here, after the parent chose nothing for it).

def child_optuna(spec: dict) -> dict:
  """The careful objective (throughput_workers._careful) at this batch size."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optuna  # pylint: disable=g-import-not-at-top
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  workers.BATCH = spec["batch"]  # _careful samples batches of workers.BATCH.
  fn, data, compile_s = workers._careful(spec["width"], spec["steps"])  # pylint: disable=protected-access
  lrs = workers.learning_rates(spec["n"])

  def objective(trial):
    lr = trial.suggest_float("learning_rate", *workers.LR_RANGE, log=True)
    _, acc = fn(jnp.float32(lr), jnp.uint32(0), *data)
    return float(acc)

  study = optuna.create_study(direction="maximize",
                              sampler=optuna.samplers.RandomSampler(seed=0))
  for lr in lrs:
    study.enqueue_trial({"learning_rate": lr})
  t0 = time.perf_counter()
  study.optimize(objective, n_trials=len(lrs), n_jobs=spec["n_jobs"])
  return {"compile_s": compile_s, "train_s": time.perf_counter() - t0,
          "max_test_accuracy": max(t.value for t in study.trials)}


def child_matmul(spec: dict) -> dict:
  """GFLOP/s of the MLP's layer matmuls for every variant at once."""
  from jaxsweep.engine import sharding  # pylint: disable=g-import-not-at-top
  sharding.configure_cpu_devices()  # The devices jaxsweep runs on.
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  n, b, w = spec["n"], spec["batch"], spec["width"]
  dims = (workers.IN_FEATURES, w, w, workers.CLASSES)
  keys = jax.random.split(jax.random.key(0), len(dims))
  pop = sharding.population(mesh)
  x = jax.device_put(jax.random.normal(keys[0], (n, b, dims[0])), pop)
  ws = [jax.device_put(jax.random.normal(k, (n, i, o)) / i ** 0.5, pop)
        for k, i, o in zip(keys[1:], dims[:-1], dims[1:], strict=True)]

  @jax.jit
  def chain(x, ws):
    for wt in ws:
      x = jnp.einsum("nbi,nio->nbo", x, wt)
    return x

  chain(x, ws).block_until_ready()
  times = []
  for _ in range(max(5, 20_000_000 // max(1, n * b * w * w))):
    t0 = time.perf_counter()
    chain(x, ws).block_until_ready()
    times.append(time.perf_counter() - t0)
  flops = 2 * n * b * sum(i * o for i, o in zip(dims[:-1], dims[1:], strict=True))
  return {"devices": mesh.devices.size, "median_s": statistics.median(times),
          "gflops": flops / statistics.median(times) / 1e9,
          "best_gflops": flops / min(times) / 1e9}


CHILDREN = {"optuna": child_optuna, "matmul": child_matmul}


# ==========================================================================

def plot(report: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = report["rows"]
  labels = [f"W{r['width']}\nB{r['batch']}" for r in rows]
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
  speedup = [r["speedup_vs_optuna"] for r in rows]
  xs = list(range(len(rows)))
  a.bar([x - 0.2 for x in xs], speedup, width=0.4, label="default settings",
        color=["tab:green" if s >= 1 else "tab:red" for s in speedup])
  lanes8 = [(x, r["speedup_lanes8_vs_optuna"]) for x, r in zip(xs, rows, strict=True)
            if "speedup_lanes8_vs_optuna" in r]
  if lanes8:
    a.bar([x + 0.2 for x, _ in lanes8], [v for _, v in lanes8], width=0.4,
          color="tab:olive", label="--lanes 8")
  a.set_xticks(xs, labels)
  a.legend(fontsize=8)
  a.axhline(1.0, color="k", lw=0.8)
  a.axhline(2.0, color="gray", ls="--", lw=0.8)
  a.set_ylabel("Optuna wall / jaxsweep wall (whole process)")
  a.set_title(f"{NUM_LRS} lr x {report['steps']} steps, first run")
  for i, r in enumerate(rows):
    a.annotate(f"lanes {r['jaxsweep']['lanes']}", (i - 0.2, speedup[i]), ha="center",
               va="bottom", fontsize=8)
  b.bar(labels, [r["step_vs_matmul"] for r in rows], color="tab:blue")
  b.set_ylabel("training GFLOP/s / batched-matmul GFLOP/s")
  b.set_title("vectorized step vs jitted batched matmul")
  fig.suptitle(f"{report['cpu']}, load {report['load_before'][0]:.1f}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def main(argv=None) -> int:
  global NUM_LRS  # pylint: disable=global-statement  (--variants, read by the runs)
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="two points, 200 steps")
  p.add_argument("--out", default=os.path.join(HERE, "sizes.json"),
                 help="the JSON file (the PNG goes beside it)")
  p.add_argument("--platform", default="cpu",
                 help="JAX_PLATFORMS of the runs (cpu; cuda on a GPU machine)")
  p.add_argument("--variants", type=int, default=NUM_LRS,
                 help="learning rates per point (default %(default)s; 256 for the GPU target)")
  p.add_argument("--points", nargs="+", default=None, metavar="WxB",
                 help="the (width x batch) points, e.g. 32x32 128x128 (default: all)")
  p.add_argument("--steps", type=int, default=None, help="steps per variant")
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)
  p.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    print("@@RESULT " + json.dumps(CHILDREN[args.child](json.loads(args.spec))), flush=True)
    return 0
  NUM_LRS = args.variants
  PLATFORM["name"] = args.platform
  points = QUICK_POINTS if args.quick else POINTS
  if args.points:
    points = [tuple(int(v) for v in p.split("x")) for p in args.points]
  steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
  report = {"cpu": machine.cpu_model(), "cores": len(os.sched_getaffinity(0)),
            "platform": args.platform,
            "steps": steps, "variants": NUM_LRS, "quick": args.quick,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": os.getloadavg(),
            "rows": []}
  with tempfile.TemporaryDirectory() as tmp:
    for i, (width, batch) in enumerate(points):
      runs = {}
      order = ("jaxsweep", "optuna") if i % 2 == 0 else ("optuna", "jaxsweep")
      for name in order:
        fn = run_jaxsweep if name == "jaxsweep" else run_optuna
        runs[name] = fn(width, batch, steps, tmp)
      forward = 2 * batch * sum(a * b for a, b in zip(
          (workers.IN_FEATURES, width, width), (width, width, workers.CLASSES), strict=True))
      if forward < 1e6:
        runs["jaxsweep_lanes8"] = run_jaxsweep(width, batch, steps, tmp, lanes=8)
      mm = run_matmul(width, batch)
      row = {"width": width, "batch": batch, "order": order,
             "forward_mflop_per_batch": forward / 1e6,
             **runs, "matmul": mm,
             "speedup_vs_optuna": runs["optuna"]["wall_s"] / runs["jaxsweep"]["wall_s"],
             "step_vs_matmul": runs["jaxsweep"]["train_gflops"] / mm["gflops"]}
      if "jaxsweep_lanes8" in runs:
        row["speedup_lanes8_vs_optuna"] = (runs["optuna"]["wall_s"]
                                           / runs["jaxsweep_lanes8"]["wall_s"])
        row["step_lanes8_vs_matmul"] = runs["jaxsweep_lanes8"]["train_gflops"] / mm["gflops"]
      report["rows"].append(row)
      print(f"W{width:<4} B{batch:<4} jaxsweep {runs['jaxsweep']['wall_s']:6.1f}s "
            f"(compile {runs['jaxsweep']['compile_s']:.1f}s, lanes {runs['jaxsweep']['lanes']}, "
            f"{runs['jaxsweep']['variant_steps_per_s']:,.0f} variant-steps/s)  "
            f"optuna {runs['optuna']['wall_s']:6.1f}s  -> {row['speedup_vs_optuna']:.2f}x;  "
            f"step {runs['jaxsweep']['train_gflops']:.1f} GFLOP/s = "
            f"{row['step_vs_matmul']:.0%} of the batched matmul's {mm['gflops']:.1f}",
            flush=True)
      if "jaxsweep_lanes8" in runs:
        r8 = runs["jaxsweep_lanes8"]
        print(f"           --lanes 8 {r8['wall_s']:6.1f}s (compile {r8['compile_s']:.1f}s, "
              f"{r8['variant_steps_per_s']:,.0f} variant-steps/s) -> "
              f"{row['speedup_lanes8_vs_optuna']:.2f}x; step {r8['train_gflops']:.1f} GFLOP/s = "
              f"{row['step_lanes8_vs_matmul']:.0%} of the matmul", flush=True)
  report["load_after"] = os.getloadavg()
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1)
  png = os.path.splitext(args.out)[0] + ".png"
  plot(report, png)
  print(f"wrote {args.out} and {png}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
