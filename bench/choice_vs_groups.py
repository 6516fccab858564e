"""Vectorized choices vs compile groups: activation(4) x loss(2) x lr(4).

The same 32-variant sweep of a digits MLP, trained two ways:

* ``switch``: ONE compiled program; activation and loss are per-variant int
  indices (``lax.switch``, a select under ``vmap``), lr is a [V] array;
* ``groups``: one program per (activation, loss) pair, 8 programs of 4
  learning rates each (what structural keys do without ``vectorize``).

Measured twice: with the low-level API (``jaxsweep.train.make_train`` +
``jax.jit(jax.vmap(...))`` by hand) and, when the engine supports it
(``vectorize`` in ``jaxsweep/engine/plan.py``), through the engine with a config
dict. Compile time is separate from steady-state time (the second full
training of an already compiled program, ``block_until_ready``).

Run:  /work/venv/bin/python bench/choice_vs_groups.py [--steps 200] [--no-engine]
Writes bench/choice_vs_groups.json beside the printed table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxsweep as js
from jaxsweep import data as data_lib
from jaxsweep import losses
from jaxsweep import models
from jaxsweep import optim
from jaxsweep.engine import train as train_lib

import machine  # bench/machine.py

ACTIVATIONS = ("relu", "tanh", "gelu", "elu")
LOSSES = ("cross_entropy", "mse")
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
FEATURES = (64, 64)


def cpu_name() -> str:
  return f"{machine.cpu_model()}, {os.cpu_count()} CPUs"


def _program(activation, loss_fn, settings):
  return train_lib.make_train(
      models.to_model_fns(models.mlp(features=FEATURES, activation=activation)),
      optim.wrap(optim.get("adam"), {}, {"learning_rate": 1e-3}),
      loss_fn, {"accuracy": losses.accuracy}, settings)


def _run_program(prog, hp, data):
  """Compiles init + chunk, then trains twice; returns timings and metrics."""
  hp = jax.tree.map(jnp.asarray, hp)
  t0 = time.perf_counter()
  init_fn = jax.vmap(prog.init, in_axes=(0, None))
  # As the engine does: init runs once, so compile it without XLA's backend
  # optimisations (its unrolled threefry rounds otherwise dominate).
  init = jax.jit(init_fn).lower(hp, data).compile(
      compiler_options={"xla_backend_optimization_level": 0})
  state = jax.eval_shape(init_fn, hp, data)
  chunk = jax.jit(jax.vmap(prog.period, in_axes=(0, 0, None))).lower(state, hp, data).compile()
  compile_s = time.perf_counter() - t0

  def train():
    state = init(hp, data)
    for _ in range(prog.settings.num_chunks):
      state, stats = chunk(state, hp, data)
    return jax.block_until_ready(stats)

  train()  # Warm-up (first execution, allocations).
  t0 = time.perf_counter()
  stats = train()
  return compile_s, time.perf_counter() - t0, jax.tree.map(np.asarray, stats)


def standalone(ds, steps, batch_size):
  settings = train_lib.TrainSettings(steps=steps, batch_size=batch_size, eval_every=steps)
  data = jax.tree.map(jnp.asarray, {"train": dict(ds.train), "test": dict(ds.test)})
  grid = list(itertools.product(range(len(ACTIVATIONS)), range(len(LOSSES)), LRS))
  v = len(grid)

  # One program: indices and lr per variant.
  hp = {"seed": np.zeros(v, np.uint32),
        "optimizer": {"learning_rate": np.array([g[2] for g in grid], np.float32)},
        "loss": {"loss_index": np.array([g[1] for g in grid], np.float32)},
        "model": {"activation_index": np.array([g[0] for g in grid], np.float32)}}
  prog = _program(ACTIVATIONS, losses.choice(LOSSES), settings)
  c_sw, t_sw, stats_sw = _run_program(prog, hp, data)

  # Eight programs of four learning rates.
  c_gr = t_gr = 0.0
  acc_gr = np.zeros(v, np.float32)
  loss_gr = np.zeros(v, np.float32)
  for a, l in itertools.product(range(len(ACTIVATIONS)), range(len(LOSSES))):
    members = [i for i, g in enumerate(grid) if g[0] == a and g[1] == l]
    hp_g = {"seed": np.zeros(len(members), np.uint32),
            "optimizer": {"learning_rate": np.array([grid[i][2] for i in members], np.float32)}}
    prog = _program(ACTIVATIONS[a], losses.get(LOSSES[l]), settings)
    c, t, stats = _run_program(prog, hp_g, data)
    c_gr += c
    t_gr += t
    acc_gr[members] = stats["test_accuracy"]
    loss_gr[members] = stats["test_loss"]
  return {
      "switch": {"programs": 1, "compile_s": c_sw, "train_s": t_sw,
                 "variant_steps_per_s": v * steps / t_sw},
      "groups": {"programs": 8, "compile_s": c_gr, "train_s": t_gr,
                 "variant_steps_per_s": v * steps / t_gr},
      # Same seeds and data order: the two ways train the same variants, up
      # to float summation order (vmap over 32 vs 4 variants), which drifts
      # chaotically over many steps at high learning rates (bench/RESULTS.md).
      "max_abs_diff_test_loss_by_lr": {
          str(lr): float(np.abs(stats_sw["test_loss"] - loss_gr)[
              [i for i, g in enumerate(grid) if g[2] == lr]].max()) for lr in LRS},
      "max_abs_diff_test_accuracy": float(np.abs(stats_sw["test_accuracy"] - acc_gr).max()),
      "best_test_accuracy": float(stats_sw["test_accuracy"].max()),
  }


def engine_side(steps, batch_size):
  from jaxsweep import config  # pylint: disable=g-import-not-at-top
  raw = {
      "seed": 0,
      "data": {"name": "digits"},
      "model": {"name": "mlp", "features": list(FEATURES), "activation": "relu"},
      "loss": "cross_entropy",
      "optimizer": {"name": "adam", "learning_rate": 1e-3},
      "train": {"steps": steps, "batch_size": batch_size, "eval_every": steps},
      "sweep": {"model.activation": list(ACTIVATIONS), "loss.name": list(LOSSES),
                "optimizer.learning_rate": list(LRS)},
  }
  out = {}
  for name, vectorize in (("switch", ["model.activation", "loss.name"]), ("groups", [])):
    cfg = config.load(raw={**raw, "vectorize": vectorize})
    t0 = time.perf_counter()
    res = js.run_config(cfg)
    wall = time.perf_counter() - t0
    out[name] = {"programs": len(res.groups), "wall_s": wall,
                 "compile_s": sum(g.get("compile_seconds", 0.0) for g in res.groups),
                 "train_s": sum(g.get("train_seconds", 0.0) for g in res.groups),
                 "best_test_accuracy": max(r["test_accuracy"] for r in res.rows)}
  return out


def engine_supports_vectorize() -> bool:
  from jaxsweep.engine import plan  # pylint: disable=g-import-not-at-top
  with open(plan.__file__, encoding="utf-8") as f:
    return "vectorize" in f.read()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--no-engine", action="store_true")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                    "choice_vs_groups.json"))
  args = parser.parse_args()
  ds = data_lib.load("digits")
  t0 = time.perf_counter()
  result = {
      "bench": "choice_vs_groups",
      "sweep": {"activation": ACTIVATIONS, "loss": LOSSES, "learning_rate": LRS,
                "variants": len(ACTIVATIONS) * len(LOSSES) * len(LRS)},
      "model": f"mlp features={list(FEATURES)}, adam, digits",
      "steps": args.steps, "batch_size": args.batch_size,
      "cpu": cpu_name(), "devices": [str(d) for d in jax.devices()],
      "jax": jax.__version__,
      "load_average_at_start": os.getloadavg(),
      "threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
      "standalone": standalone(ds, args.steps, args.batch_size),
  }
  if not args.no_engine and engine_supports_vectorize():
    result["engine"] = engine_side(args.steps, args.batch_size)
  result["total_s"] = time.perf_counter() - t0

  print(f"# {result['sweep']['variants']} variants = activation(4) x loss(2) x lr(4), "
        f"{result['model']}, {args.steps} steps x batch {args.batch_size}")
  print(f"# {result['cpu']}; jax {result['jax']}; devices: {len(result['devices'])}")
  print(f"{'path':<12}{'way':<8}{'programs':>9}{'compile s':>11}{'train s':>9}"
        f"{'var-steps/s':>13}")
  for path in ("standalone", "engine"):
    for way in ("switch", "groups"):
      r = result.get(path, {}).get(way)
      if r is None:
        continue
      vps = r.get("variant_steps_per_s",
                  result["sweep"]["variants"] * args.steps / max(r["train_s"], 1e-9))
      print(f"{path:<12}{way:<8}{r['programs']:>9}{r['compile_s']:>11.2f}"
            f"{r['train_s']:>9.2f}{vps:>13.0f}")
  s = result["standalone"]
  diffs = ", ".join(f"lr {k}: {v:.1e}" for k, v in s["max_abs_diff_test_loss_by_lr"].items())
  print(f"# switch vs groups, same variants: max |d test_loss| {diffs}; "
        f"max |d test_accuracy| {s['max_abs_diff_test_accuracy']:.3f}")
  if "engine" in result:
    e = result["engine"]
    print(f"# engine wall: switch {e['switch']['wall_s']:.1f} s, "
          f"groups {e['groups']['wall_s']:.1f} s")
  print(f"# total {result['total_s']:.0f} s; wrote {args.out}")
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)


if __name__ == "__main__":
  main()
