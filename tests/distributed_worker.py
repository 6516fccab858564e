"""One process of the two-process sweep in tests/test_distributed.py.

Usage: python distributed_worker.py PORT NUM_PROCESSES PROCESS_ID OUT_JSON

Each process asks for 2 virtual CPU devices, joins the others through
:func:`jaxsweep.distributed.initialize` (gloo on 127.0.0.1), runs the same
tiny sweep and writes what it saw to OUT_JSON. The test imports
:func:`run_sweep` to run the same sweep in one process.
"""

import json
import sys

LEARNING_RATES = (0.05, 0.1, 0.2, 0.3, 0.5)
LOCAL_DEVICES = 2


def run_sweep(**kwargs):
  """The sweep every process runs (and the single-process reference)."""
  import optax  # pylint: disable=g-import-not-at-top

  import jaxsweep as js  # pylint: disable=g-import-not-at-top
  return js.run(
      model=lambda features: js.models.MLP(features=features, num_outputs=4),
      optimizer=lambda learning_rate: optax.sgd(learning_rate),
      data=js.data.load("synthetic", num_train=64, num_test=32),
      sweep={"learning_rate": list(LEARNING_RATES)}, fixed={"features": (8,)},
      steps=4, batch_size=16, eval_every=2, **kwargs)


def main(argv):
  port, num_processes, process_id, out = argv[1], int(argv[2]), int(argv[3]), argv[4]
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_num_cpu_devices", LOCAL_DEVICES)

  from jaxsweep import distributed  # pylint: disable=g-import-not-at-top
  joined = distributed.initialize(coordinator=f"127.0.0.1:{port}",
                                     num_processes=num_processes,
                                     process_id=process_id, timeout_s=60)
  events = []
  res = run_sweep(progress=events.append)
  params = [[float(abs(leaf).sum()) for leaf in jax.tree.leaves(res.params(i))]
            for i in range(len(res.rows))]
  with open(out, "w") as f:
    json.dump({"joined": joined, "process_index": jax.process_index(),
               "process_count": jax.process_count(),
               "local_devices": jax.local_device_count(),
               "devices": jax.device_count(), "rows": res.rows,
               "groups": res.groups, "events": [e["event"] for e in events],
               "params": params}, f)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
