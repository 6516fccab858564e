"""Tiny shared components so tests reuse compiled programs (JAX compile
time dominates the suite): the same factories + shapes hit the engine's
program cache."""

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsweep as js

# The smallest config a CLI test runs: append a `sweep:` (and what else it needs).
TINY_BASE = """\
data: {name: synthetic, num_train: 64, num_test: 40, num_features: 8, num_classes: 4}
model: {name: mlp, features: [16], activation: relu}
loss: cross_entropy
optimizer: {name: adam, learning_rate: 1.0e-3}
train: {steps: 6, batch_size: 16, eval_every: 3}
"""
DATA = js.data.load("synthetic", num_train=64, num_test=40, num_features=8,
                    num_classes=4, seed=0)
STEPS = 6
BATCH = 16
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
# jaxsweep started in a subprocess (examples, the CLI) keeps its compiled
# programs in the session's cache (tests/conftest.py), not the user's.
SUBPROCESS_ENV = {"JAXSWEEP_CACHE_DIR": os.environ["JAXSWEEP_CACHE_DIR"],
                  "JAXSWEEP_COMPILE_CACHE": os.path.join(os.environ["JAXSWEEP_CACHE_DIR"],
                                                         "xla")}


def mlp(features=(16,)):
  return js.models.MLP(features=features, num_outputs=4)


def sgd(learning_rate):
  return optax.sgd(learning_rate)


def adam(learning_rate, b1=0.9):
  return optax.adam(learning_rate, b1=b1)


def run(sweep, *, optimizer=adam, steps=STEPS, eval_every=3, **kw):
  kw.setdefault("fixed", {"features": (16,)})
  return js.run(model=mlp, optimizer=optimizer, loss=js.losses.cross_entropy,
                data=DATA, sweep=sweep, steps=steps, batch_size=BATCH,
                eval_every=eval_every, **kw)


@contextlib.contextmanager
def count_compiles():
  """Counts XLA backend compilations inside the block (a list of durations)."""
  seen = []

  def listener(event, duration, **kwargs):
    del kwargs  # Unused.
    if event == BACKEND_COMPILE:
      seen.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _same(a, b) -> bool:
  if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
    return True  # NaN == NaN here.
  return a == b


def assert_same_results(a, b, *, params=True):
  """Two runs agree bit for bit: rows (but timings), history, trained arrays."""
  timing = js.results.TIMING_COLUMNS
  assert len(a.rows) == len(b.rows)
  for ra, rb in zip(a.rows, b.rows):
    assert ra.keys() == rb.keys()
    diff = {k: (ra[k], rb[k]) for k in ra if k not in timing and not _same(ra[k], rb[k])}
    assert not diff, (ra["variant"], diff)
  assert a.history.keys() == b.history.keys()
  for i in a.history:
    assert len(a.history[i]) == len(b.history[i]), i
    for ea, eb in zip(a.history[i], b.history[i]):
      assert ea.keys() == eb.keys() and all(_same(ea[k], eb[k]) for k in ea), (i, ea, eb)
  if params:
    for i in range(len(a.rows)):
      jax.tree.map(np.testing.assert_array_equal, a.variables(i), b.variables(i))


# A scalar problem whose ranking is known (tests/test_search.py,
# tests/test_proposals.py): one weight w pulled towards SCALAR_TARGET by
# gradient descent from 0; with a learning rate below 0.5 a larger one ends
# closer after any number of steps, above 1 it diverges.
SCALAR_TARGET = 3.0


def scalar_init(key, x):
  del key, x  # Unused.
  return {"w": jnp.zeros((1,))}


def scalar_apply(params, x):
  return jnp.broadcast_to(params["w"], (x.shape[0], 1))


def scalar_loss(out, batch):
  return jnp.mean((out[:, 0] - batch["y"][:, 0]) ** 2)


def scalar_data(noise=0.0, n=64, seed=0, clean_val=False):
  """Train, test and validation splits of the scalar problem: x = 0, y =
  SCALAR_TARGET plus Gaussian noise (none on validation with clean_val)."""
  rng = np.random.default_rng(seed)
  def split(k, noise):
    return (np.zeros((k, 1), np.float32),
            (SCALAR_TARGET + noise * rng.normal(size=(k, 1))).astype(np.float32))
  (x, y), (xt, yt) = split(n, noise), split(n, noise)
  xv, yv = split(n, 0.0 if clean_val else noise)
  return js.data.arrays(x, y, xt, yt, x_val=xv, y_val=yv, task="regression")
