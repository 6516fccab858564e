"""Ablation of a user-defined CNN on digits: activation x batch norm x lr.

  python examples/cnn_ablation.py            # add --smoke for a seconds-long run

The model is plain Flax; its factory arguments (activation, batch_norm) are
structural, so each combination compiles once; the learning rates and seeds
inside each combination train together in one vmapped program.
"""

import sys

import flax.linen as nn
import optax

import jaxsweep as js


class CNN(nn.Module):
  activation: str = "relu"
  batch_norm: bool = False
  num_outputs: int = 10

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    act = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu}[self.activation]
    for channels in (8, 16):
      x = nn.Conv(channels, (3, 3))(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train)(x)
      x = nn.max_pool(act(x), (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_outputs)(act(nn.Dense(32)(x)))


def main(smoke: bool = False):
  data = js.data.load("digits", as_images=True)  # 8x8x1 images
  results = js.run(
      progress=True,  # Progress on stderr while it compiles and trains.
      model=lambda activation, batch_norm: CNN(activation, batch_norm),
      optimizer=lambda learning_rate: optax.adam(learning_rate),
      loss=js.losses.cross_entropy,
      metrics={"accuracy": js.losses.accuracy},
      data=data,
      sweep={"activation": ["relu"] if smoke else ["relu", "tanh"],
             "batch_norm": [False] if smoke else [False, True],
             "learning_rate": js.space.log_uniform(1e-3, 3e-2, num=2 if smoke else 4),
             "seed": range(1 if smoke else 2)},
      steps=8 if smoke else 300, batch_size=32 if smoke else 128,
      eval_every=4 if smoke else 100)
  print(results)  # The ranked table (one row per configuration when seeds are swept).
  print("best:", results.best)
  return results


if __name__ == "__main__":
  main(smoke="--smoke" in sys.argv[1:])
