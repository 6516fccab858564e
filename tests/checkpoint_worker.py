"""A sweep run as its own process, for the checkpoint tests (tests/test_checkpoint.py).

Usage: python checkpoint_worker.py CHECKPOINT_DIR OUT_CSV [--resume]

It trains a small population for many short periods, saving a checkpoint at
every period boundary, and writes the final table as CSV. SIGINT/SIGTERM end
it with exit code 130/143 after saving (jaxsweep.engine.execute.Interrupted).
"""

import sys

LEARNING_RATES = (3e-3, 1e-2, 3e-2, 0.1, 0.3)
PERIODS = 120


def plan():
  import optax  # pylint: disable=g-import-not-at-top

  import jaxsweep as js  # pylint: disable=g-import-not-at-top
  from jaxsweep import engine  # pylint: disable=g-import-not-at-top
  components = engine.Components(
      model=lambda features: js.models.MLP(features=features, num_outputs=10),
      optimizer=lambda learning_rate: optax.adam(learning_rate),
      loss=js.losses.cross_entropy, data=js.data.load("digits"))
  base = {"train.steps": PERIODS * 10, "train.batch_size": 64, "train.eval_every": 10,
          "train.eval_batch_size": 1024, "model.features": (32,), "seed": 0}
  return engine.make_plan(components, base, [
      {"optimizer.learning_rate": lr, "seed": i % 2} for i, lr in enumerate(LEARNING_RATES)])


def main(argv):
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_num_cpu_devices", 2)
  from jaxsweep.engine import execute  # pylint: disable=g-import-not-at-top
  directory, out = argv[1], argv[2]
  steps = []

  def first_period(event):
    if event["event"] == "period" and not steps:
      steps.append(event["step"])
      print(f"first period ends at step {event['step']}", flush=True)

  try:
    res = execute.execute(plan(), checkpoint_dir=directory, checkpoint_every=0,
                          resume="--resume" in argv, callback=first_period)
  except execute.Interrupted as e:
    print(f"interrupted: {e}", file=sys.stderr, flush=True)
    return e.exit_code
  res.to_csv(out)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
