"""The points behind the default lanes rule (jaxsweep.engine.strategy.rule).

For MLPs on the digits data (64 inputs, 10 classes) at several widths and
batch sizes, times one population of 64 learning rates at each candidate
lanes with ``strategy.measure`` (the same probe as ``jaxsweep bench``: the
group's real program, fastest of 3 periods, evaluation subtracted) on one
virtual CPU device per core, and prints the forward FLOPs per training batch
that the rule reads next to the fastest lanes.

  python bench/lanes_rule.py [--out bench/lanes_rule.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jaxsweep as js
from jaxsweep.engine import sharding

sharding.configure_cpu_devices()

import jax  # noqa: E402  (after the device count is set)
import optax  # noqa: E402

from jaxsweep.engine import plan as plan_lib  # noqa: E402
from jaxsweep.engine import strategy  # noqa: E402

POINTS = [(16, 16), (32, 32), (64, 64), (128, 32), (128, 128), (256, 128), (512, 256)]
QUICK = [(32, 32), (128, 128)]


def _mlp(features):
  return js.models.MLP(features=features, num_outputs=10)


def _adam(learning_rate):
  return optax.adam(learning_rate)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default=None)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--lanes", default="1,4,8,16")
  p.add_argument("--steps", type=int, default=50)
  args = p.parse_args()
  lanes = [int(k) for k in args.lanes.split(",")]
  mesh = sharding.make_mesh()
  data = js.data.load("digits")
  rows = []
  for width, batch in QUICK if args.quick else POINTS:
    comps = plan_lib.Components(model=_mlp, optimizer=_adam, loss=js.losses.cross_entropy,
                                data=data)
    plan = plan_lib.make_plan(
        comps, {"train.steps": 1000, "train.batch_size": batch, "train.eval_every": 1000,
                "model.features": (width, width), "seed": 0},
        [{"optimizer.learning_rate": float(lr)}
         for lr in jax.numpy.geomspace(1e-4, 1e-1, 64)])
    [group] = plan.groups
    flops = strategy.forward_flops(plan, group)
    probes = strategy.measure(plan, group, mesh, lanes=lanes, steps=args.steps)
    rates = {pr.lanes: round(pr.variant_steps_per_s) for pr in probes}
    compile_s = {pr.lanes: round(pr.compile_seconds, 2) for pr in probes}
    best = max(rates, key=rates.get)
    rule = strategy.rule(plan, group, mesh).lanes
    row = {"width": width, "batch": batch, "forward_flops": flops, "rates": rates,
           "compile_seconds": compile_s, "fastest": best, "rule": rule}
    rows.append(row)
    print(json.dumps(row), flush=True)
    if args.out:  # After every point: a partial run keeps what it measured.
      with open(args.out, "w") as f:
        json.dump({"cpu": _cpu(), "devices": mesh.devices.size, "when": time.ctime(),
                   "load": os.getloadavg(), "rows": rows}, f, indent=1)


def _cpu() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


if __name__ == "__main__":
  main()
