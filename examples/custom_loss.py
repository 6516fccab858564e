"""A user-defined loss with a swept weight: cross-entropy plus a confidence
penalty (Pereyra et al. 2017), weight ``beta`` traced per variant.

  python examples/custom_loss.py            # add --smoke for a seconds-long run

``beta`` is a keyword argument of the loss, so jaxsweep passes it as a traced
value: all betas x learning rates train in ONE compiled program.
"""

import sys

import jax
import jax.numpy as jnp
import optax

import jaxsweep as js


def penalized_ce(logits, batch, *, beta=0.0):
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
  probs = jax.nn.softmax(logits)
  entropy = -jnp.sum(probs * jax.nn.log_softmax(logits), axis=-1).mean()
  return ce - beta * entropy


def main(smoke: bool = False):
  results = js.run(
      progress=True,  # Progress on stderr while it compiles and trains.
      model=js.models.MLP(features=(64,), num_outputs=10),
      optimizer=lambda learning_rate: optax.adam(learning_rate),
      loss=penalized_ce,
      data=js.data.load("digits"),
      sweep={"beta": [0.0, 0.1, 0.3], "learning_rate": [3e-3, 1e-2]},
      steps=4 if smoke else 300, batch_size=32 if smoke else 128)
  print(results)  # The ranked table (one row per configuration when seeds are swept).
  return results


if __name__ == "__main__":
  main(smoke="--smoke" in sys.argv[1:])
