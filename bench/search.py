"""Search methods on one budget: best validation accuracy vs compute and time.

  python bench/search.py [--quick] [--repeats 3] [--out bench/search]

The digits MLP (64-128-128-10, AdamW, batch 128, 300 steps, validation every
50) searched over the same space by every method:

  optimizer.learning_rate  log-uniform 1e-4 .. 1
  optimizer.weight_decay   log-uniform 1e-6 .. 1e-1
  optimizer.b1             uniform     0.5 .. 0.99

with a budget of 64 full trainings (19,200 variant-steps):

* grid: 4 x 4 x 4 points; random: 64 draws; PBT: 64 members (every 50 steps
  the bottom quarter copies the top quarter, values x0.8/x1.2 or resampled);
* halving (eta 3, first rung at 50 steps) and Hyperband (all brackets): as
  many random configurations as their schedule trains within the budget;
* tpe: jaxsweep's batched TPE (64 trials, 4 rounds of 16, median pruner);
* optuna: Optuna the usual way, one trial at a time (64 trials, n_jobs=2,
  TPESampler, MedianPruner), the objective a jitted ``lax.scan`` of 50 steps
  of one variant between reports (compiled once, hyperparameters traced).

Each (method, repeat) runs in a fresh process (so each pays its own
compilation) with 2 virtual CPU devices for jaxsweep; repeat r seeds the
search (draws, samplers), the model seed is 0 everywhere. The best
configuration of a run is the one its method ranks first on final
validation accuracy; its test accuracy is reported beside. Curves: the best
validation accuracy evaluated so far against variant-steps spent and wall
seconds (jaxsweep: at each period boundary; optuna: at each report).

Writes ``OUT.json`` (every run, with its curve), ``OUT.md`` (the table) and
``OUT.png`` (the curves).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np

import machine  # bench/machine.py

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

METHODS = ("grid", "random", "halving", "hyperband", "pbt", "tpe", "optuna")
SPACE = {"optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0]},
         "optimizer.weight_decay": {"log_uniform": [1.0e-6, 1.0e-1]},
         "optimizer.b1": {"uniform": [0.5, 0.99]}}
FULL = {"steps": 300, "eval_every": 50, "configs": 64, "grid": 4, "batch": 16}
QUICK = {"steps": 40, "eval_every": 10, "configs": 8, "grid": 2, "batch": 4}


def cpu_name() -> str:
  return f"{machine.cpu_model()} ({os.cpu_count()} cores)"


def base_config(s: dict) -> dict:
  return {"data": {"name": "digits", "test_fraction": 0.2, "seed": 0},
          "model": {"name": "mlp", "features": [128, 128], "activation": "relu"},
          "loss": "cross_entropy", "optimizer": {"name": "adamw"},
          "train": {"steps": s["steps"], "batch_size": 128, "eval_every": s["eval_every"]},
          "target": "val_accuracy", "mode": "max"}


def halving_configs(s: dict, brackets: int | str | None) -> int:
  """The most configurations the schedule trains within the budget: the
  scheduler's own count (``Halving.budget``) on a stand-in plan of ``n``
  configurations, one seed each."""
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import halving  # pylint: disable=g-import-not-at-top
  budget, steps, period = s["configs"] * s["steps"], s["steps"], s["eval_every"]
  settings = {0: SimpleNamespace(steps=steps, eval_every=period,
                                 num_periods=-(-steps // period))}

  def cost(n):
    plan = SimpleNamespace(
        variants=[{"optimizer.learning_rate": float(i), "seed": 0} for i in range(n)],
        groups=[SimpleNamespace(index=0, members=list(range(n)))], num_variants=n)
    h = halving.Halving(eta=3, min_steps=period, brackets=brackets)
    h.start(plan, settings)
    return h.budget()

  n = s["configs"]
  while cost(n + 1) <= budget:
    n += 1
  return n


def sweep_of(method: str, repeat: int, s: dict) -> dict:
  """The config's sweep section for a jaxsweep method."""
  if method == "grid":
    k = s["grid"]
    return {"optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0], "num": k},
            "optimizer.weight_decay": {"log_uniform": [1.0e-6, 1.0e-1], "num": k},
            "optimizer.b1": {"uniform": [0.5, 0.99], "num": k}}
  if method == "tpe":
    return {"method": {"name": "tpe", "samples": s["configs"], "batch": s["batch"],
                       "seed": repeat}, **SPACE}
  n = {"halving": lambda: halving_configs(s, None),
       "hyperband": lambda: halving_configs(s, "all")}.get(method, lambda: s["configs"])()
  sweep = {"random": {"params": SPACE, "samples": n, "seed": repeat}}
  if method == "halving":
    sweep["method"] = {"name": "halving", "eta": 3, "min_steps": s["eval_every"]}
  elif method == "hyperband":
    sweep["method"] = {"name": "hyperband", "eta": 3, "min_steps": s["eval_every"],
                       "seed": repeat}
  elif method == "pbt":
    sweep["method"] = {"name": "pbt", "ready_every": s["eval_every"], "quantile": 0.25,
                       "resample_probability": 0.25, "seed": repeat}
  return sweep


def run_jaxsweep(method: str, repeat: int, s: dict) -> dict:
  import jaxsweep as js  # pylint: disable=g-import-not-at-top
  js.sharding.configure_cpu_devices(2)
  cfg = js.config.load(raw={**base_config(s), "sweep": sweep_of(method, repeat, s)})
  marks, state = [], {"round": 0}
  t0 = time.perf_counter()

  def watch(event):
    if event["event"] == "round":
      state["round"] = event["round"]
    elif event["event"] == "period":
      marks.append((time.perf_counter() - t0, state["round"], event["step"]))

  res = js.run_config(cfg, progress=watch)
  seconds = time.perf_counter() - t0
  rows = res.rows
  round_of = {r["variant"]: r.get("round", 0) for r in rows}
  spent_before = {}
  for r in sorted(set(round_of.values())):
    spent_before[r] = sum(x["steps"] for x in rows if round_of[x["variant"]] < r)
  curve = []
  for t, rnd, step in marks:
    used = spent_before[rnd] + sum(min(step, x["steps"]) for x in rows
                                   if round_of[x["variant"]] == rnd)
    seen = [e["val_accuracy"] for v, h in res.history.items() for e in h
            if e["step"] > 0 and (round_of[v] < rnd or (round_of[v] == rnd
                                                        and e["step"] <= step))]
    curve.append([used, t, max(seen) if seen else None])
  best = res.best
  return {"configs": len({x["id"] for x in rows}), "variant_steps": sum(x["steps"] for x in rows),
          "seconds": seconds,
          "compile_seconds": sum(g.get("compile_seconds", 0.0) for g in res.groups),
          "best_val": best["val_accuracy"], "best_test": best["test_accuracy"],
          "best_config": {k: best.get(k) for k in SPACE},
          "curve": curve}


def run_optuna(repeat: int, s: dict) -> dict:
  """Optuna the usual way: one variant per trial, n_jobs=2, median pruning."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import optuna  # pylint: disable=g-import-not-at-top

  import jaxsweep as js  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  ds = js.data.load("digits", test_fraction=0.2, seed=0)
  data = {split: (jnp.asarray(d["x"]), jnp.asarray(d["y"]))
          for split, d in (("train", ds.train), ("val", ds.val), ("test", ds.test))}
  model = js.models.MLP(features=(128, 128), num_outputs=10)
  tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, b1=0.9, weight_decay=1e-4)
  steps, every = s["steps"], s["eval_every"]

  def init(key, hp):
    params = model.init(key, data["train"][0][:1])["params"]
    opt_state = tx.init(params)
    opt_state.hyperparams.update(hp)  # Traced values: one compiled program.
    return params, opt_state

  def chunk(params, opt_state, key, x, y):
    def step(carry, k):
      p, o = carry
      idx = jax.random.randint(k, (128,), 0, x.shape[0])
      def loss_fn(q):
        logits = model.apply({"params": q}, x[idx])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()
      loss, grads = jax.value_and_grad(loss_fn)(p)
      updates, o = tx.update(grads, o, p)
      return (optax.apply_updates(p, updates), o), loss
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state),
                                               jax.random.split(key, every))
    return params, opt_state, losses[-1]

  def accuracy(params, x, y):
    return jnp.mean(jnp.argmax(model.apply({"params": params}, x), -1) == y)

  hp0 = {k: jnp.asarray(v, jnp.float32) for k, v in
         {"learning_rate": 1e-3, "b1": 0.9, "weight_decay": 1e-4}.items()}
  key0 = jax.random.PRNGKey(0)
  c0 = time.perf_counter()
  p0, o0 = jax.jit(init)(key0, hp0)
  init_c = jax.jit(init).lower(key0, hp0).compile()
  chunk_c = jax.jit(chunk, donate_argnums=(0, 1)).lower(p0, o0, key0, *data["train"]).compile()
  acc_c = jax.jit(accuracy).lower(p0, *data["val"]).compile()
  test_c = jax.jit(accuracy).lower(p0, *data["test"]).compile()
  compile_seconds = time.perf_counter() - c0
  lock = threading.Lock()
  log, spent = [], [0]

  def objective(trial):
    hp = {"learning_rate": trial.suggest_float("optimizer.learning_rate", 1e-4, 1.0, log=True),
          "weight_decay": trial.suggest_float("optimizer.weight_decay", 1e-6, 1e-1, log=True),
          "b1": trial.suggest_float("optimizer.b1", 0.5, 0.99)}
    params, opt_state = init_c(key0, {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()})
    key = jax.random.PRNGKey(1)
    value = math.nan
    for done in range(every, steps + 1, every):
      key, sub = jax.random.split(key)
      params, opt_state, loss = chunk_c(params, opt_state, sub, *data["train"])
      if not math.isfinite(float(loss)):
        return math.nan  # Diverged: Optuna marks the trial FAIL.
      value = float(acc_c(params, *data["val"]))
      with lock:
        spent[0] += every
        log.append((spent[0], time.perf_counter() - t0, value))
      trial.report(value, done)
      if done < steps and trial.should_prune():
        raise optuna.TrialPruned()
    trial.set_user_attr("test_accuracy", float(test_c(params, *data["test"])))
    return value

  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(direction="maximize",
                              sampler=optuna.samplers.TPESampler(seed=repeat),
                              pruner=optuna.pruners.MedianPruner())
  study.optimize(objective, n_trials=s["configs"], n_jobs=2)
  seconds = time.perf_counter() - t0
  best = study.best_trial
  curve, top = [], -math.inf
  for used, t, v in sorted(log):
    top = max(top, v)
    curve.append([used, t, top])
  return {"configs": len(study.trials), "variant_steps": spent[0], "seconds": seconds,
          "compile_seconds": compile_seconds, "best_val": best.value,
          "best_test": best.user_attrs["test_accuracy"], "best_config": best.params,
          "curve": curve}


def one(method: str, repeat: int, quick: bool) -> dict:
  s = QUICK if quick else FULL
  out = run_optuna(repeat, s) if method == "optuna" else run_jaxsweep(method, repeat, s)
  return {"method": method, "repeat": repeat, **out}


def table(runs: list[dict]) -> str:
  lines = ["| method | configurations | variant-steps | wall s | compile s | best val acc "
           "| test acc of best |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for m in METHODS:
    rs = [r for r in runs if r["method"] == m]
    if not rs:
      continue

    def ms(key, fmt, rs=rs):
      a = np.asarray([r[key] for r in rs], np.float64)
      return fmt.format(a.mean()) + (f" ± {fmt.format(a.std(ddof=1))}" if len(a) > 1 else "")

    lines.append(f"| {m} | {ms('configs', '{:.0f}')} | {ms('variant_steps', '{:,.0f}')} | "
                 f"{ms('seconds', '{:.1f}')} | {ms('compile_seconds', '{:.1f}')} | "
                 f"{ms('best_val', '{:.4f}')} | {ms('best_test', '{:.4f}')} |")
  return "\n".join(lines)


def plot(runs: list[dict], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  colors = plt.get_cmap("tab10")
  for i, m in enumerate(METHODS):
    for j, r in enumerate(x for x in runs if x["method"] == m):
      pts = [p for p in r["curve"] if p[2] is not None]
      if not pts:
        continue
      c = np.asarray(pts, np.float64)
      label = m if j == 0 else None
      axes[0].step(c[:, 0], c[:, 2], where="post", color=colors(i), alpha=0.8, label=label)
      axes[1].step(c[:, 1], c[:, 2], where="post", color=colors(i), alpha=0.8, label=label)
  for ax, xl in zip(axes, ("variant-steps spent", "wall seconds (compilation included)")):
    ax.set_xlabel(xl)
    ax.set_ylabel("best validation accuracy so far")
    ax.set_ylim(0.85, 1.0)
    ax.grid(alpha=0.3)
  axes[0].legend(loc="lower right")
  fig.suptitle("digits MLP, AdamW: lr x weight decay x b1, 64 trainings of budget")
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true", help="a tiny budget, to check the script")
  ap.add_argument("--repeats", type=int, default=None, help="searches per method (3; quick 1)")
  ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
  ap.add_argument("--out", default=os.path.join(HERE, "search"),
                  help="writes OUT.json, OUT.md, OUT.png")
  ap.add_argument("--one", nargs=2, metavar=("METHOD", "REPEAT"), help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.one:
    print(json.dumps(one(args.one[0], int(args.one[1]), args.quick)))
    return
  repeats = args.repeats or (1 if args.quick else 3)
  load = os.getloadavg()
  runs = []
  for repeat in range(repeats):
    for m in args.methods:
      cmd = [sys.executable, os.path.abspath(__file__), "--one", m, str(repeat)]
      out = subprocess.run(cmd + (["--quick"] if args.quick else []), check=True,
                           capture_output=True, text=True).stdout
      runs.append(json.loads(out.strip().splitlines()[-1]))
      r = runs[-1]
      print(f"{m:10s} repeat {repeat}: {r['variant_steps']:>7,} variant-steps "
            f"{r['seconds']:6.1f}s  best val {r['best_val']:.4f} test {r['best_test']:.4f}",
            flush=True)
  import jax  # pylint: disable=g-import-not-at-top
  meta = {"cpu": cpu_name(), "jax": jax.__version__, "quick": args.quick,
          "repeats": repeats, "load_before": load, "load_after": os.getloadavg(),
          "settings": QUICK if args.quick else FULL}
  with open(args.out + ".json", "w") as f:
    json.dump({"meta": meta, "runs": runs}, f, indent=1)
  text = (f"Machine: {meta['cpu']}, jax {meta['jax']}; load average before "
          f"{load[0]:.2f}, after {meta['load_after'][0]:.2f}; {repeats} repeat(s), "
          "mean ± std.\n\n" + table(runs) + "\n")
  with open(args.out + ".md", "w") as f:
    f.write(text)
  plot(runs, args.out + ".png")
  print(text)


if __name__ == "__main__":
  main()
