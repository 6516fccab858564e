"""Your own loop: jaxsweep's pure per-variant functions, vmapped by hand.

  python examples/low_level.py            # add --smoke for a seconds-long run

``js.make_train`` returns pure functions for ONE variant; stack the
hyperparameters with a leading variant axis and call ``jax.jit(jax.vmap(...))``
yourself. This is exactly what ``js.run`` does (plus grouping, sharding,
chunking and reports).
"""

import sys

import jax
import jax.numpy as jnp
import optax

import jaxsweep as js


def main(smoke: bool = False):
  data = js.data.load("digits")
  settings = js.engine.TrainSettings(steps=4 if smoke else 300, batch_size=32 if smoke else 128,
                                    eval_every=2 if smoke else 100)
  model = js.models.to_model_fns(js.models.MLP(features=(64,), num_outputs=10))
  tx = js.optim.wrap(optax.adam, {}, {"learning_rate": 1e-3})  # inject_hyperparams, once
  program = js.make_train(model, tx, js.losses.cross_entropy,
                          {"accuracy": js.losses.accuracy}, settings)

  lrs = jnp.array([1e-3, 3e-3, 1e-2], jnp.float32)
  hparams = {"seed": jnp.arange(3, dtype=jnp.uint32),  # [V]
             "optimizer": {"learning_rate": lrs}}       # [V]
  arrays = js.engine.device_data(data)                          # shared by all variants
  init = jax.jit(jax.vmap(program.init, in_axes=(0, None)))
  chunk = jax.jit(jax.vmap(program.period, in_axes=(0, 0, None)))
  state = init(hparams, arrays)
  for _ in range(settings.num_periods):
    state, stats = chunk(state, hparams, arrays)
  for lr, acc in zip(lrs, stats["test_accuracy"]):
    print(f"lr {float(lr):.0e}: test accuracy {float(acc):.3f}")
  return state, stats


if __name__ == "__main__":
  main(smoke="--smoke" in sys.argv[1:])
