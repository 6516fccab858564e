"""Tiny shared components so tests reuse compiled programs (JAX compile
time dominates the suite): the same factories + shapes hit the engine's
program cache."""

import contextlib

import jax
import optax

import jaxsweep as js

DATA = js.data.load("synthetic", num_train=64, num_test=40, num_features=8,
                    num_classes=4, seed=0)
STEPS = 6
BATCH = 16
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


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
