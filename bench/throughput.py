"""Throughput harness (issue 14): jaxsweep vs the ways people train a sweep by hand.

  python bench/throughput.py            # full run: bench/throughput.json, RESULTS.md, PNG
  python bench/throughput.py --quick    # tiny sizes, temp dir, well under a minute (CI)

Workload: the digits MLP (64-W-W-10, W = 128 and a wide W = 512), Adam, batch
128, N learning rates log-spaced in [1e-4, 1e-1], seed = variant index.
Methods, each in its own process(es) so the device count and the whole-process
cost are those a user gets:

* ``jaxsweep``: the engine's own path, a plan from
  ``js.config.registry_components()`` run by ``jaxsweep.engine.execute.execute``
  on one virtual CPU device per core, at ``lanes`` 1 (the CPU default) and
  some vmapped lane counts (8, 32 and N / (2 * cores), the largest without
  padding: each device holds at least two groups of lanes).
* ``sequential``: the careful script: ONE jitted ``lax.scan`` over the steps
  (compiled once, learning rate and seed traced), variants one after another
  in a Python loop; default JAX (one CPU device, XLA's own threads).
* ``naive``: a jitted train step called from Python every step, batches
  drawn on the host (the tutorial loop).
* ``procs``: one process per core, each pinned to its core and running the
  careful script on its share of the variants.
* ``optuna``: the careful objective (compiled once) in ``study.optimize`` with
  ``n_jobs = cores`` threads, the exact learning rates enqueued.

Per (net, N, method): **wall** seconds from spawning the process(es) to the
results being in hand (imports, data loading, compilation, training,
evaluation; interpreter teardown excluded), **compile** seconds alone, and
the **steady-state** variant-steps/s, timed with ``block_until_ready`` in the
fastest of ``STEADY_REPEATS`` passes after the sweep in the same process
(everything compiled and warm): jaxsweep's whole population again (a fresh
population each pass, one period; its evaluation-only
time, measured the same way, is subtracted), or for the per-variant methods
``max(2 per worker, min(N, 16))`` variants (their per-variant cost does not
depend on N). Achieved GFLOP/s use the analytic count of :func:`flops_per_step`
against a 2048x2048 f32 ``jnp.dot`` measured in the same run (all cores, and
one pinned core).

Headline (issue 14): 64 learning rates x 1000 steps (digits MLP 128-128,
Adam, batch 128, eval_every 1000), each method a whole process from the shell
(`jaxsweep run CONFIG` for jaxsweep, its persistent compilation cache off:
a first run, like the baselines'), rounds alternating.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import machine
import throughput_report as report
from throughput_workers import BATCH, STEADY_REPEATS, flops_per_step, learning_rates

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKERS = os.path.join(HERE, "throughput_workers.py")
CHILD_TIMEOUT = 3600
QUIET_LOAD = 1.0


# ==========================================================================
# The parent: spawns children, never imports JAX itself.

def child_env(extra=None) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAXSWEEP_CPU_DEVICES")}
  env["JAX_PLATFORMS"] = "cpu"
  # The checkout this script lives in comes first (not an installed copy).
  env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in
                                               env.get("PYTHONPATH", "").split(os.pathsep) if p])
  env.update(extra or {})
  return env


class Spawned:
  """A child process started now; ``result()`` waits and parses its JSON."""

  def __init__(self, cmd, env=None, cwd=None):
    self.cmd = cmd
    self.err = tempfile.TemporaryFile(mode="w+")
    self.t_spawn = time.time()
    self.t0 = time.perf_counter()
    self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                 env=env or child_env(), cwd=cwd or ROOT)
    self.stdout = ""
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    self.stdout = self.proc.stdout.read()

  def wait(self, timeout=CHILD_TIMEOUT) -> float:
    """Waits for exit; returns seconds from spawn to exit."""
    try:
      self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    self.exit_s = time.perf_counter() - self.t0
    self._reader.join()
    self.err.seek(0)
    self.stderr = self.err.read()
    return self.exit_s

  def result(self) -> dict:
    self.wait()
    for line in reversed(self.stdout.splitlines()):
      if line.startswith("@@RESULT "):
        return json.loads(line[len("@@RESULT "):])
    raise RuntimeError(f"child failed (rc={self.proc.returncode}): {' '.join(self.cmd[:4])}"
                       f"...\n{self.stderr[-4000:]}")


def spawn_child(kind, spec, env=None) -> Spawned:
  return Spawned([sys.executable, WORKERS, json.dumps({"kind": kind, **spec})], env=env)


def cpu_name() -> str:
  return machine.cpu_model()


def num_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def versions() -> dict:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  out = {"python": platform.python_version()}
  for pkg in ("jax", "jaxlib", "flax", "optax", "optuna", "numpy"):
    try:
      out[pkg] = metadata.version(pkg)
    except metadata.PackageNotFoundError:
      out[pkg] = None
  return out


class LoadMonitor:
  """Samples the 1-minute load average every ``every`` seconds."""

  def __init__(self, every=15.0):
    self.every, self.samples = every, []
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self):
    while not self._stop.is_set():
      self.samples.append(round(os.getloadavg()[0], 2))
      self._stop.wait(self.every)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()

  def summary(self) -> dict:
    s = self.samples or [os.getloadavg()[0]]
    return {"min": min(s), "mean": round(sum(s) / len(s), 2), "max": max(s), "samples": len(s)}


def wait_for_quiet(max_wait: float, threshold: float = QUIET_LOAD, every: float = 60.0) -> dict:
  """Waits (up to max_wait s) for the 1-minute load average to drop below threshold."""
  t0 = time.monotonic()
  seen = []
  while True:
    load = os.getloadavg()[0]
    seen.append(round(load, 2))
    if load < threshold:
      return {"quiet": True, "waited_s": round(time.monotonic() - t0), "load": load,
              "checks": seen}
    if time.monotonic() - t0 + every > max_wait:
      return {"quiet": False, "waited_s": round(time.monotonic() - t0), "load": load,
              "checks": seen}
    print(f"load average {load:.2f} >= {threshold}: waiting {every:.0f}s "
          f"({time.monotonic() - t0:.0f}s so far)", flush=True)
    time.sleep(every)


def log(msg):
  print(msg, flush=True)


# ---------------------------------------------------------------- the grid

def jaxsweep_lanes(n: int, cores: int, extra=(8, 32), quick=False) -> list[int]:
  """Lane counts measured at N: 1, the given ones and N / (2 * cores), all
  without padding (every device holds at least two groups of lanes).
  ``quick``: only the largest (one compilation per N)."""
  top = n // (2 * cores)
  if quick:
    return [max(top, 1)]
  lanes = [1] + [k for k in extra if k <= top] + ([top] if top > 1 else [])
  return sorted(set(lanes))


ERRORS: list[str] = []


def _guarded(task):
  """A task's rows; a failed child is logged and recorded, the run goes on."""
  try:
    return task()
  except Exception as e:  # pylint: disable=broad-except
    ERRORS.append(f"{type(e).__name__}: {e}"[-2000:])
    log(f"  FAILED: {ERRORS[-1][:500]}")
    return []


def run_tasks(tasks, parallel: int):
  """Runs ``tasks`` (callables returning rows) one after another, or with
  ``parallel`` > 1 that many at a time (``--quick`` only: its timings are a
  smoke test, not a measurement)."""
  if parallel <= 1:
    return [row for task in tasks for row in _guarded(task)]
  from concurrent.futures import ThreadPoolExecutor  # pylint: disable=g-import-not-at-top
  with ThreadPoolExecutor(parallel) as pool:
    return [row for rows in pool.map(_guarded, tasks) for row in rows]


def grid_tasks(args, cores, widths_steps, sizes_of) -> list:
  """Every (net, N, method) of the grid as tasks. ``--quick`` batches a
  method's jobs into one process (then only the first job's wall is from the
  shell)."""
  tasks = []
  for width, steps in widths_steps:
    sizes = sizes_of[width]
    base = {"width": width, "steps": steps}

    def jobs_for(n):
      return {"lrs": learning_rates(n), "seeds": list(range(n))}

    js_jobs = []  # jaxsweep on all cores: lanes 1 and vmapped.
    for n in sizes:
      for lanes in jaxsweep_lanes(n, cores, quick=args.quick):
        js_jobs.append(({"n": n, "lanes": lanes}, {**jobs_for(n), "lanes": lanes}))
      if args.padding_demo and n == args.padding_demo and width == 128 and cores > 1:
        js_jobs.append(({"n": n, "lanes": n // cores, "note": "padded"},
                        {**jobs_for(n), "lanes": n // cores}))
    per_variant = [("sequential", {}, [({"n": n}, jobs_for(n)) for n in sizes]),
                   ("naive", {}, [({"n": n}, jobs_for(n)) for n in sizes])]
    if args.optuna:
      per_variant.append(("optuna", {"n_jobs": cores}, [({"n": n}, jobs_for(n)) for n in sizes]))
    if args.quick:  # Batched: one process for jaxsweep, one for the per-variant methods.
      tasks.append(lambda base=base, jobs=js_jobs:
                   _grid_child(base, [("jaxsweep", {"devices": cores}, jobs)]))
      tasks.append(lambda base=base, parts=per_variant: _grid_child(base, parts))
      tasks.append(lambda base=base, sizes=sizes: _procs_task(base, sizes, cores))
      continue
    for method, extra, jobs in [("jaxsweep", {"devices": cores}, js_jobs)] + per_variant:
      for job in jobs:
        tasks.append(lambda base=base, method=method, extra=extra, job=job:
                     _grid_child(base, [(method, extra, [job])]))
    for n in sizes:
      tasks.append(lambda base=base, n=n: _procs_task(base, [n], cores))
  return tasks


def _grid_child(base, parts) -> list[dict]:
  """One process running ``parts`` [(method, extra spec, [(row keys, job)])] in
  turn; only its first job's wall time is from the shell."""
  specs = [{"kind": method, **base, **extra, "jobs": [j for _, j in jobs]}
           for method, extra, jobs in parts]
  child = spawn_child("multi", {"parts": specs}) if len(specs) > 1 else spawn_child(
      specs[0].pop("kind"), specs[0])
  res = child.result()
  outs = res["parts"] if len(specs) > 1 else [res]
  rows = []
  for (method, extra, jobs), out in zip(parts, outs, strict=True):
    for (keys, _), job in zip(jobs, out["jobs"], strict=True):
      row = {"width": base["width"], "steps": base["steps"], "method": method, **keys, **job,
             "workers": extra.get("n_jobs", 1), "exit_s": child.exit_s}
      if not rows:
        row["wall_s"] = job["ready"] - child.t_spawn
        row["wall_from_shell"] = True
        row["startup_s"] = out["imported"] - child.t_spawn
      else:
        row["wall_s"] = job["ready"] - job["job_start"]
        row["wall_from_shell"] = False
      finish_row(row)
      rows.append(row)
      log(f"  W={base['width']} {method:<10} N={row['n']}"
          + (f" lanes={row['lanes']}" if "lanes" in row else "") + f": {_brief(row)}")
  return rows


def _procs_task(base, sizes, cores) -> list[dict]:
  rows = run_procs(base, sizes, cores, steady=True)
  for row in rows:
    log(f"  W={base['width']} {'procs':<10} N={row['n']}: {_brief(row)}")
  return rows


def run_procs(base, sizes, cores, *, steady=True, lrs=None, seeds=None) -> list[dict]:
  """One process per core (pinned), each the careful script on its share;
  with several sizes, each process runs its share of each in turn."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  shares_of = {}
  for n in sizes:
    lr_n = learning_rates(n) if lrs is None else lrs
    seed_n = list(range(n)) if seeds is None else seeds
    shares = np.array_split(np.arange(n), cores)
    shares_of[n] = [{"lrs": [lr_n[i] for i in s], "seeds": [seed_n[i] for i in s]}
                    for s in shares]
  used = max(min(cores, n) for n in sizes)
  children = [spawn_child("sequential", {**base, "pin": core, "steady": steady,
                                         "jobs": [shares_of[n][core] for n in sizes]})
              for core in range(used)]
  results = [c.result()["jobs"] for c in children]
  t_spawn = min(c.t_spawn for c in children)
  rows = []
  for pos, n in enumerate(sizes):
    jobs = [r[pos] for r in results if r[pos]["variants"]]
    row = {"width": base["width"], "steps": base["steps"], "method": "procs", "n": n,
           "workers": len(jobs), "wall_from_shell": pos == 0,
           "wall_s": (max(j["ready"] for j in jobs) - t_spawn if pos == 0 else
                      max(j["ready"] for j in jobs) - min(j["job_start"] for j in jobs)),
           "exit_s": max(c.exit_s for c in children),
           "compile_s": statistics.mean(j["compile_s"] for j in jobs),
           "sweep_train_s": max(j["sweep_train_s"] for j in jobs),
           "max_test_accuracy": max(j["max_test_accuracy"] for j in jobs)}
    if steady:
      # The processes' steady passes overlap (each after its own sweep): the
      # sum of their rates.
      row["steady_vsps"] = sum(j["steady_vsps"] for j in jobs)
    finish_row(row)
    rows.append(row)
  return rows


PEAK = {}


def finish_row(row):
  if "steady_vsps" in row:
    row["gflops"] = row["steady_vsps"] * flops_per_step(row["width"]) / 1e9
    if PEAK.get("all"):
      row["pct_peak"] = 100 * row["gflops"] / PEAK["all"]


def _brief(r) -> str:
  s = f"wall {r['wall_s']:.1f}s compile {r.get('compile_s', float('nan')):.1f}s"
  if "steady_vsps" in r:
    s += f" steady {r['steady_vsps']:,.0f} v-steps/s ({r['gflops']:.1f} GFLOP/s)"
  return s


# ---------------------------------------------------------------- headline

HEADLINE_CONFIG = """\
# Written by bench/throughput.py: the issue-14 headline sweep.
data: {{name: digits}}
model: {{name: mlp, features: [128, 128]}}
optimizer: {{name: adam}}
train: {{steps: {steps}, batch_size: {batch}, eval_every: {steps}}}
seed: 0
sweep:
  optimizer.learning_rate: {lrs}
"""


def jaxsweep_command() -> list[str]:
  exe = os.path.join(os.path.dirname(sys.executable), "jaxsweep")
  if os.path.exists(exe):
    return [exe]
  return [sys.executable, "-c", "import sys; from jaxsweep.cli import main; sys.exit(main())"]


def run_headline(args, cores, tmp) -> dict:
  n, steps = args.headline_variants, args.headline_steps
  lrs = learning_rates(n)
  cfg = os.path.join(tmp, "headline.yaml")
  with open(cfg, "w") as f:
    f.write(HEADLINE_CONFIG.format(steps=steps, batch=BATCH, lrs=json.dumps(lrs)))
  base = {"width": 128, "steps": steps}
  methods = ["jaxsweep", "sequential"] + ([] if args.quick else (
      ["optuna"] if args.optuna else []) + ["procs"])

  def one(rnd, method):
    if method == "jaxsweep":
      out_dir = os.path.join(tmp, f"run{rnd}")
      cmd = jaxsweep_command() + ["run", cfg, "--out", out_dir]
      # A first run: jaxsweep's persistent compilation cache (on by default,
      # and warm from any earlier run of this program) is off, as the
      # baselines have none.
      child = Spawned(cmd, env=child_env({"JAXSWEEP_COMPILE_CACHE": "off"}))
      wall = child.wait()
      if child.proc.returncode != 0:
        raise RuntimeError(f"jaxsweep run failed:\n{child.stderr[-4000:]}")
      with open(os.path.join(out_dir, "results.json")) as f:
        saved = json.load(f)
      accs = [r["test_accuracy"] for r in saved["rows"] if r.get("test_accuracy") is not None]
      info = saved["groups"][0]
      run = {"compile_s": info.get("compile_seconds"), "train_s": info.get("train_seconds"),
             "max_test_accuracy": max(accs), "command": " ".join(
                 ["jaxsweep"] + cmd[len(jaxsweep_command()):])}
    elif method == "procs":
      t0 = time.perf_counter()
      r = run_procs(base, [n], cores, steady=False, lrs=lrs, seeds=[0] * n)[0]
      wall = time.perf_counter() - t0  # Every process has exited.
      run = {"compile_s": r["compile_s"], "train_s": r["sweep_train_s"],
             "max_test_accuracy": r["max_test_accuracy"]}
    else:
      extra = {"n_jobs": cores} if method == "optuna" else {}
      child = spawn_child(method, {**base, **extra, "steady": False,
                                   "jobs": [{"lrs": lrs, "seeds": [0] * n}]})
      job = child.result()["jobs"][0]
      wall = child.exit_s
      run = {"compile_s": job["compile_s"], "train_s": job["sweep_train_s"],
             "max_test_accuracy": job["max_test_accuracy"]}
    log(f"  headline round {rnd + 1} {method:<10}: {wall:.1f}s whole process "
        f"(max test acc {run['max_test_accuracy']:.3f})")
    return [{"method": method, "round": rnd, "wall_s": wall, **run}]

  # Rounds alternate the methods; --quick runs its one round concurrently.
  runs = run_tasks([lambda rnd=rnd, m=m: one(rnd, m) for rnd in range(args.rounds)
                    for m in methods], parallel=cores if args.quick else 1)
  summary = {}
  for method in methods:
    walls = [r["wall_s"] for r in runs if r["method"] == method]
    if walls:
      summary[method] = {"mean_wall_s": statistics.mean(walls), "min_wall_s": min(walls),
                         "walls": walls}
  methods = [m for m in methods if m in summary]
  ref = summary.get("jaxsweep", {}).get("mean_wall_s")
  for method in methods:
    summary[method]["vs_jaxsweep"] = summary[method]["mean_wall_s"] / ref if ref else None
  return {"variants": n, "steps": steps, "rounds": args.rounds, "methods": methods,
          "config": HEADLINE_CONFIG.format(steps=steps, batch=BATCH, lrs=f"[... {n} log-spaced "
                                           "learning rates in [1e-4, 1e-1] ...]"),
          "runs": runs, "summary": summary}


# ---------------------------------------------------------------- peak

def measure_peak(args, cores) -> dict:
  n, reps = (1024, 3) if args.quick else (2048, 10)
  every = spawn_child("peak", {"n": n, "reps": reps}).result()
  one = {} if args.quick else spawn_child("peak", {"n": n, "reps": reps, "pin": 0}).result()
  return {"n": n, "reps": reps, "all_cores_gflops": every["gflops"],
          "all_cores_best_gflops": every["best_gflops"],
          "one_core_gflops": one.get("gflops"), "one_core_best_gflops": one.get("best_gflops"),
          "per_core_gflops": every["gflops"] / cores}


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true",
                 help="tiny sizes (N in {1, 8}, 20 steps, one round), written to a temp dir")
  p.add_argument("--out", default=None,
                 help="directory for throughput.json, RESULTS.md and throughput.png "
                      "(default: bench/, or a temp dir with --quick)")
  p.add_argument("--sizes", type=int, nargs="+", default=None)
  p.add_argument("--wide-sizes", type=int, nargs="+", default=None)
  p.add_argument("--steps", type=int, default=None, help="steps for W=128 (default 100)")
  p.add_argument("--wide-steps", type=int, default=None, help="steps for W=512 (default 20)")
  p.add_argument("--headline-variants", type=int, default=None)
  p.add_argument("--headline-steps", type=int, default=None)
  p.add_argument("--rounds", type=int, default=None)
  p.add_argument("--padding-demo", type=int, default=None, metavar="N",
                 help="also run lanes = N / cores at this N (W=128), which pads")
  p.add_argument("--no-optuna", dest="optuna", action="store_false")
  p.add_argument("--no-headline", dest="headline", action="store_false")
  p.add_argument("--from-json", default=None, metavar="JSON",
                 help="only rewrite RESULTS.md and the plot (in --out) from a results file")
  p.add_argument("--wait-quiet", type=float, default=None, metavar="SECONDS",
                 help="wait up to this long for the load average to drop below 1.0 "
                      "(default 1800, 0 with --quick)")
  args = p.parse_args(argv)

  if args.from_json:
    with open(args.from_json) as f:
      result = json.load(f)
    out = args.out or os.path.dirname(os.path.abspath(args.from_json))
    report.plot(result, os.path.join(out, "throughput.png"))
    report.update_results_md(os.path.join(out, "RESULTS.md"), report.markdown(result))
    log(f"rewrote {out}/RESULTS.md and throughput.png from {args.from_json}")
    return 0
  q = args.quick
  args.sizes = args.sizes or ([1, 8] if q else [1, 8, 32, 128, 512])
  args.wide_sizes = args.wide_sizes if args.wide_sizes is not None else (
      [] if q else [1, 8, 32, 128])
  args.steps = args.steps or (20 if q else 100)
  args.wide_steps = args.wide_steps or (20 if q else 20)
  args.headline_variants = args.headline_variants or (8 if q else 64)
  args.headline_steps = args.headline_steps or (20 if q else 1000)
  args.rounds = args.rounds or (1 if q else 2)
  if args.padding_demo is None and not q:
    args.padding_demo = 128
  if args.wait_quiet is None:
    args.wait_quiet = 0 if q else 1800
  if args.optuna:
    try:
      import optuna  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      if not q:
        p.error("optuna is not installed (pip install -e '.[bench]'), or pass --no-optuna")
      log("optuna not installed: skipped")
      args.optuna = False
  out = args.out or (tempfile.mkdtemp(prefix="jaxsweep-bench-") if q else HERE)
  os.makedirs(out, exist_ok=True)
  cores = num_cores()
  t_bench = time.perf_counter()

  quiet = ({"quiet": os.getloadavg()[0] < QUIET_LOAD, "waited_s": 0,
            "load": os.getloadavg()[0], "checks": []}
           if args.wait_quiet <= 0 else wait_for_quiet(args.wait_quiet))
  log(f"{cpu_name()}, {cores} cores; load average {quiet['load']:.2f}; writing to {out}")
  with LoadMonitor() as monitor, tempfile.TemporaryDirectory() as tmp:
    PEAK.clear()
    peak = measure_peak(args, cores)
    PEAK["all"] = peak["all_cores_gflops"]
    log(f"peak: {peak['all_cores_gflops']:.1f} GFLOP/s all cores, "
        f"{peak['one_core_gflops'] or float('nan'):.1f} one core")
    widths_steps = [(128, args.steps)] + ([(512, args.wide_steps)] if args.wide_sizes else [])
    sizes_of = {128: args.sizes, 512: args.wide_sizes}
    grid = run_tasks(grid_tasks(args, cores, widths_steps, sizes_of),
                     parallel=cores if q else 1)
    with open(os.path.join(out, "throughput.partial.json"), "w") as f:
      json.dump({"peak": peak, "grid": grid}, f)
    headline = run_headline(args, cores, tmp) if args.headline else None
  cmd = " ".join(["python bench/throughput.py"] + list(sys.argv[1:] if argv is None else argv))
  result = {
      "meta": {"cpu": cpu_name(), "cores": cores, "versions": versions(),
               "date": datetime.date.today().isoformat(), "quick": q, "command": cmd,
               "argv": sys.argv[1:], "quiet": quiet, "load_during": monitor.summary(),
               "load_samples": monitor.samples, "load_after": round(os.getloadavg()[0], 2),
               "steps_of": {str(w): s for w, s in widths_steps},
               "flops_per_step": {str(w): flops_per_step(w) for w, _ in widths_steps},
               "bench_seconds": time.perf_counter() - t_bench, "errors": ERRORS,
               "steady_repeats": STEADY_REPEATS},
      "peak": peak, "grid": grid, "headline": headline}
  if os.path.exists(os.path.join(out, "throughput.partial.json")):
    os.remove(os.path.join(out, "throughput.partial.json"))
  json_path = os.path.join(out, "throughput.json")
  with open(json_path, "w") as f:
    json.dump(result, f, indent=1)
  png = os.path.join(out, "throughput.png")
  plotted = report.plot(result, png)
  md_path = os.path.join(out, "RESULTS.md")
  if q and not os.path.exists(md_path):
    shutil.copy(os.path.join(HERE, "RESULTS.md"), md_path)
  report.update_results_md(md_path, report.markdown(result))
  log(f"wrote {json_path}, {md_path}" + (f", {png}" if plotted else " (no matplotlib: no plot)")
      + f" in {result['meta']['bench_seconds']:.0f}s")
  if ERRORS:
    log(f"{len(ERRORS)} measurement(s) failed: see meta.errors in {json_path}")
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
