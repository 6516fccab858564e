"""A user model with mutable state (batch statistics) and dropout.

  python examples/stateful_model.py            # add --smoke for a seconds-long run

Batch-norm statistics live in each variant's run state and dropout draws from
each variant's own key, so seeds give different dropout masks. ``dropout``
is a field of the module (structural: it sizes nothing, but flax's Dropout
branches on it in Python); the learning rate and seed are vectorized.
"""

import sys

import flax.linen as nn
import optax

import jaxsweep as js


class Net(nn.Module):
  dropout: float = 0.1
  num_outputs: int = 10

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = nn.Dense(64)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
    return nn.Dense(self.num_outputs)(x)


def main(smoke: bool = False):
  results = js.run(
      progress=True,  # Progress on stderr while it compiles and trains.
      model=lambda dropout: Net(dropout=dropout),
      optimizer=lambda learning_rate, weight_decay: optax.adamw(
          learning_rate, weight_decay=weight_decay),
      loss=js.losses.cross_entropy,
      data=js.data.load("digits"),
      sweep={"dropout": [0.1], "learning_rate": [1e-3, 1e-2],
             "weight_decay": [0.0, 1e-4], "seed": range(2)},
      steps=4 if smoke else 300, batch_size=32 if smoke else 128)
  print(results)  # The ranked table (one row per configuration when seeds are swept).
  return results


if __name__ == "__main__":
  main(smoke="--smoke" in sys.argv[1:])
