"""The structural ablation, end to end: masked vs grouped vs auto vs Optuna.

depth {1, 2, 3, 4} x width {32, 64, 128, 256} x activation {sigmoid, relu,
tanh} x optimizer {sgd, adam} x learning rate (4) = 384 digits MLPs, each
trained for the same steps on the same batches, ranked on the validation
split. Four ways, each in a fresh process, timed from the process start to
the metrics on the host (imports, data, compilation and training included):

* ``masked``: one program; widths and depths masked inside a 4 x 256
  network, activation and optimizer switched per variant
  (``vectorize: [model.features, model.activation, optimizer.name]``);
* ``grouped``: what jaxsweep did before: one program per (features,
  activation, optimizer), 96 programs of 4 learning rates
  (``vectorize: false``);
* ``auto``: the planner's own decision per key (no ``vectorize:`` key);
* ``optuna``: the same 384 configurations as Optuna trials (GridSampler,
  ``n_jobs=2``), each trained alone by a jitted ``lax.scan`` function
  cached per architecture (96 of them), the learning rate a traced argument.

Each runs with a cold and then a warm persistent compilation cache (the
same directory, emptied before the cold run; Optuna's functions get JAX's
persistent cache with the same settings as jaxsweep's).

Run:   python bench/structural.py            (~35 min on a 2-core CPU)
       python bench/structural.py --quick    (a 2 x 2 x 2 x 2 x 2 grid, seconds)
Writes bench/structural.json (``--quick``: only to an ``--out`` given) and prints a
markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  (bench/machine.py)

T0 = time.perf_counter()  # Before the imports: they are part of the end to end.

FULL = {"depths": [1, 2, 3, 4], "widths": [32, 64, 128, 256],
        "activations": ["sigmoid", "relu", "tanh"], "optimizers": ["sgd", "adam"],
        "lrs": [0.003, 0.01, 0.03, 0.1], "steps": 200, "batch_size": 32}
QUICK = {"depths": [1, 2], "widths": [16, 32], "activations": ["relu", "tanh"],
         "optimizers": ["sgd", "adam"], "lrs": [0.01, 0.1], "steps": 20, "batch_size": 32}
METHODS = ("masked", "auto", "grouped", "optuna")
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def cpu_name() -> str:
  return f"{machine.cpu_model()}, {os.cpu_count()} CPUs"


def grid(s: dict) -> list[dict]:
  return [{"features": [w] * d, "activation": a, "optimizer": o, "lr": lr}
          for d, w, a, o, lr in itertools.product(s["depths"], s["widths"], s["activations"],
                                                  s["optimizers"], s["lrs"])]


def _listen_compiles(seen: list):
  import jax  # pylint: disable=g-import-not-at-top

  def listener(event, duration, **kwargs):
    del kwargs
    if event == COMPILE_EVENT:
      seen.append(duration)
  jax.monitoring.register_event_duration_secs_listener(listener)


def run_jaxsweep(method: str, s: dict) -> dict:
  import jaxsweep as js  # pylint: disable=g-import-not-at-top
  from jaxsweep import config as config_lib  # pylint: disable=g-import-not-at-top
  seen: list = []
  _listen_compiles(seen)
  raw = {"data": {"name": "digits"}, "model": {"name": "mlp"}, "optimizer": {"name": "adam"},
         "loss": {"name": "cross_entropy"}, "seed": 0,
         "train": {"steps": s["steps"], "batch_size": s["batch_size"]},
         "sweep": {"model.features": [[w] * d for d in s["depths"] for w in s["widths"]],
                   "model.activation": s["activations"], "optimizer.name": s["optimizers"],
                   "optimizer.learning_rate": s["lrs"]}}
  if method == "masked":
    raw["vectorize"] = ["model.features", "model.activation", "optimizer.name"]
  elif method == "grouped":
    raw["vectorize"] = False
  cfg = config_lib.load(raw=raw)
  res = js.run_config(cfg)
  seconds = time.perf_counter() - T0
  best = res.best
  return {"seconds": seconds, "programs": len(res.groups), "compiles": len(seen),
          "compile_seconds": sum(seen), "variants": len(res.rows),
          "best_val": best["val_accuracy"], "best_test": best["test_accuracy"],
          "best_config": {k: best[k] for k in ("model.features", "model.activation",
                                               "optimizer.name", "optimizer.learning_rate")}}


def run_optuna(s: dict, cache: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import optuna  # pylint: disable=g-import-not-at-top

  import jaxsweep as js  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  seen: list = []
  _listen_compiles(seen)
  ds = js.data.load("digits")
  data = {split: (jnp.asarray(d["x"]), jnp.asarray(d["y"]))
          for split, d in (("train", ds.train), ("val", ds.val), ("test", ds.test))}
  steps, batch = s["steps"], s["batch_size"]
  functions: dict = {}
  locks: dict = {}
  guard = threading.Lock()

  def build(features, activation, opt):
    model = js.models.MLP(features=tuple(features), activation=activation, num_outputs=10)
    tx = optax.inject_hyperparams(getattr(optax, opt))(learning_rate=1e-3)

    def train(lr, key):
      k_init, k_steps = jax.random.split(key)
      params = model.init(k_init, data["train"][0][:1])["params"]
      opt_state = tx.init(params)
      opt_state.hyperparams["learning_rate"] = lr
      x, y = data["train"]

      def step(carry, k):
        p, o = carry
        idx = jax.random.randint(k, (batch,), 0, x.shape[0])

        def loss_fn(q):
          logits = model.apply({"params": q}, x[idx])
          return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()
        grads = jax.grad(loss_fn)(p)
        updates, o = tx.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), None
      (params, _), _ = jax.lax.scan(step, (params, opt_state), jax.random.split(k_steps, steps))

      def acc(split):
        xs, ys = data[split]
        return jnp.mean(jnp.argmax(model.apply({"params": params}, xs), -1) == ys)
      return acc("val"), acc("test")
    return jax.jit(train)

  def function(arch):
    with guard:
      lock = locks.setdefault(arch, threading.Lock())
    with lock:  # Two threads wanting one architecture: compiled once.
      if arch not in functions:
        functions[arch] = build(*arch)
        functions[arch](jnp.float32(1e-3), jax.random.key(0))[0].block_until_ready()
    return functions[arch]

  points = grid(s)

  def objective(trial):
    p = points[trial.suggest_categorical("i", list(range(len(points))))]
    fn = function((tuple(p["features"]), p["activation"], p["optimizer"]))
    val, test = fn(jnp.float32(p["lr"]), jax.random.key(0))
    trial.set_user_attr("test", float(test))
    return float(val)

  optuna.logging.set_verbosity(optuna.logging.WARNING)
  sampler = optuna.samplers.GridSampler({"i": list(range(len(points)))}, seed=0)
  study = optuna.create_study(direction="maximize", sampler=sampler)
  study.optimize(objective, n_trials=len(points), n_jobs=2)
  seconds = time.perf_counter() - T0
  best = study.best_trial
  return {"seconds": seconds, "programs": len(functions), "compiles": len(seen),
          "compile_seconds": sum(seen), "variants": len(study.trials),
          "best_val": best.value, "best_test": best.user_attrs["test"],
          "best_config": points[best.params["i"]]}


def worker(method: str, quick: bool, cache: str) -> None:
  s = QUICK if quick else FULL
  os.environ["JAXSWEEP_COMPILE_CACHE"] = cache
  out = run_optuna(s, cache) if method == "optuna" else run_jaxsweep(method, s)
  print("RESULT " + json.dumps(out))


def table(runs: list[dict]) -> str:
  base = {r["cache"]: r["seconds"] for r in runs if r["method"] == "grouped"}
  lines = ["| method | cache | programs | compile s (sum) | end to end s | vs grouped | "
           "best val acc | its test acc |", "|---|---|---|---|---|---|---|---|"]
  for r in runs:
    ratio = base.get(r["cache"], float("nan")) / r["seconds"]
    lines.append(f"| {r['method']} | {r['cache']} | {r['programs']} | "
                 f"{r['compile_seconds']:.1f} | {r['seconds']:.1f} | {ratio:.2f}x | "
                 f"{r['best_val']:.4f} | {r['best_test']:.4f} |")
  return "\n".join(lines)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="a tiny grid, for CI")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--out", default=None,
                 help="the JSON file (default bench/structural.json; --quick writes one only "
                      "when given)")
  p.add_argument("--worker", help=argparse.SUPPRESS)
  p.add_argument("--cache", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    worker(args.worker, args.quick, args.cache)
    return
  runs = []
  s = QUICK if args.quick else FULL
  load = os.getloadavg()
  for method in args.methods.split(","):
    cache = tempfile.mkdtemp(prefix=f"jaxsweep-bench-{method}-")
    for state in ("cold", "warm"):
      cmd = [sys.executable, __file__, "--worker", method, "--cache", cache]
      out = subprocess.run(cmd + (["--quick"] if args.quick else []), check=True,
                           capture_output=True, text=True).stdout
      result = json.loads(out.rsplit("RESULT ", 1)[1])
      runs.append({"method": method, "cache": state, **result})
      print(f"{method:8s} {state}: {result['seconds']:.1f} s, {result['programs']} programs, "
            f"best val {result['best_val']:.4f}", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
  print(table(runs))
  if args.out or not args.quick:
    args.out = args.out or os.path.join(os.path.dirname(__file__), "structural.json")
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump({"bench": "structural", "settings": s, "variants": len(grid(s)),
                 "cpu": cpu_name(), "load_average_at_start": load, "quick": args.quick,
                 "runs": runs}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
