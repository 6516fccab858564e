"""Throughput: vectorized population vs sequential per-variant scans vs a
naive per-step jitted Python loop, on the digits MLP (64-128-128-10, Adam,
batch 128), in one process.

  python bench/throughput.py [--sizes 1 8 32 128] [--steps 300] [--json FILE]

For each population size N it reports compile time separately from the
steady-state time (after a warm-up call, with block_until_ready), the
variant-steps per second of each method, and the ratios vectorized /
sequential and vectorized / naive. All three train the same variants (same
learning rates and seeds); the vectorized program is jaxsweep's own
``jit(vmap(chunk))`` on one device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsweep as js
from jaxsweep import engine
from jaxsweep import sharding


def cpu_name() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
      if line.startswith("Model name"):
        return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
  except Exception:  # pylint: disable=broad-except
    pass
  return platform.processor() or "unknown CPU"


def build(n: int, steps: int):
  lrs = np.geomspace(1e-4, 1e-1, n).tolist()
  plan = engine.make_plan(
      js.config.registry_components(),
      {"data.name": "digits", "model.name": "mlp", "model.features": (128, 128),
       "optimizer.name": "adam", "train.steps": steps, "train.batch_size": 128,
       "train.eval_every": steps, "seed": 0},
      [{"optimizer.learning_rate": lr, "seed": i} for i, lr in enumerate(lrs)])
  return plan, plan.groups[0], engine.program.build(plan, plan.groups[0])


def bench_vectorized(plan, group, built, mesh):
  hp = sharding.put_population(engine.stack_hparams(plan, group), mesh)
  data = engine.device_data(built.dataset, mesh)
  t0 = time.perf_counter()
  compiled = engine.program.compile(built, mesh, hp, data)
  compile_s = time.perf_counter() - t0
  state = compiled.init(hp, data)
  state, stats = compiled.period(state, hp, data)  # Warm-up.
  jax.block_until_ready(stats)
  state = compiled.init(hp, data)
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  state, stats = compiled.period(state, hp, data)
  jax.block_until_ready(stats)
  return compile_s, time.perf_counter() - t0, np.asarray(stats["test_accuracy"])


def bench_sequential(plan, group, built):
  """One jitted lax.scan per variant, called in a Python loop."""
  hp_all = engine.stack_hparams(plan, group)
  data = engine.device_data(built.dataset)
  init = jax.jit(built.program.init)
  chunk = jax.jit(built.program.period)
  hp0 = jax.tree.map(lambda a: a[0], hp_all)
  t0 = time.perf_counter()
  s = init(hp0, data)
  jax.block_until_ready(chunk(s, hp0, data))
  compile_s = time.perf_counter() - t0  # Includes one run; corrected below.
  accs = []
  t0 = time.perf_counter()
  for i in range(len(group.members)):
    hp = jax.tree.map(lambda a, i=i: a[i], hp_all)
    s = init(hp, data)
    s, stats = chunk(s, hp, data)
    accs.append(float(stats["test_accuracy"]))
  total = time.perf_counter() - t0
  return max(compile_s - total / len(group.members), 0.0), total, np.asarray(accs)


def bench_naive(plan, group, built, steps):
  """The tutorial loop: a jitted train step called from Python each step."""
  model = built.model
  ds = built.dataset
  x, y = jnp.asarray(ds.train["x"]), jnp.asarray(ds.train["y"])

  def make_step(tx):
    @jax.jit
    def step(params, opt_state, idx):
      def loss_fn(p):
        out, _ = model.apply({"params": p}, x[idx], train=True, rng=None)
        return optax.softmax_cross_entropy_with_integer_labels(out, y[idx]).mean()
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss
    return step

  lrs = [plan.variants[i]["optimizer.learning_rate"] for i in group.members]
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  step = make_step(tx)
  rng = np.random.default_rng(0)
  params = model.init(jax.random.key(0), x[:1])["params"]
  t0 = time.perf_counter()
  jax.block_until_ready(step(params, tx.init(params), jnp.asarray(rng.integers(0, len(x), 128))))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for i, lr in enumerate(lrs):
    params = model.init(jax.random.key(i), x[:1])["params"]
    opt_state = tx.init(params)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
    for _ in range(steps):
      idx = jnp.asarray(rng.integers(0, len(x), 128))
      params, opt_state, loss = step(params, opt_state, idx)
    jax.block_until_ready(loss)
  return compile_s, time.perf_counter() - t0


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 128])
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "throughput.json"))
  args = p.parse_args()
  mesh = sharding.make_mesh(jax.devices()[:1])
  machine = f"{cpu_name()}, {jax.devices()[0].platform}, jax {jax.__version__}"
  print(f"machine: {machine}; digits MLP 64-128-128-10, adam, batch 128, {args.steps} steps")
  header = (f"{'N':>4} | {'compile vec s':>13} | {'vectorized':>10} | {'sequential':>10} | "
            f"{'naive loop':>10} | {'vec/seq':>7} | {'vec/naive':>9}")
  print(header)
  print("-" * len(header))
  rows = []
  for n in args.sizes:
    plan, group, built = build(n, args.steps)
    c_vec, t_vec, acc_vec = bench_vectorized(plan, group, built, mesh)
    c_seq, t_seq, acc_seq = bench_sequential(plan, group, built)
    c_naive, t_naive = bench_naive(plan, group, built, args.steps)
    vs = n * args.steps
    row = {"n": n, "steps": args.steps, "compile_vectorized_s": c_vec,
           "compile_sequential_s": c_seq, "compile_naive_s": c_naive,
           "vectorized_s": t_vec, "sequential_s": t_seq, "naive_s": t_naive,
           "vectorized_vsps": vs / t_vec, "sequential_vsps": vs / t_seq,
           "naive_vsps": vs / t_naive, "speedup_vs_sequential": t_seq / t_vec,
           "speedup_vs_naive": t_naive / t_vec,
           "max_abs_acc_diff_vec_vs_seq": float(np.max(np.abs(acc_vec - acc_seq)))}
    rows.append(row)
    print(f"{n:>4} | {c_vec:>13.2f} | {row['vectorized_vsps']:>10,.0f} | "
          f"{row['sequential_vsps']:>10,.0f} | {row['naive_vsps']:>10,.0f} | "
          f"{row['speedup_vs_sequential']:>6.2f}x | {row['speedup_vs_naive']:>8.2f}x", flush=True)
  print("(columns 3-5: variant-steps/s, steady state after compilation)")
  with open(args.json, "w") as f:
    json.dump({"machine": machine, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
