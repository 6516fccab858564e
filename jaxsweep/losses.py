"""Losses and metrics by name.

A loss is ``loss(outputs, batch, **hparams) -> scalar``: numeric keyword
arguments (e.g. ``label_smoothing``) are value hyperparameters, traced per
variant. A metric is ``metric(outputs, batch) -> scalar or [B]`` and is
averaged over the test set by the compiled evaluator.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxsweep import errors


def _is_zero(x) -> bool:
  return isinstance(x, (int, float)) and x == 0


def cross_entropy(outputs, batch, *, label_smoothing=0.0):
  """Softmax cross-entropy with integer labels; optional label smoothing.

  Works for any leading axes (e.g. ``[B, T, V]`` logits of a language model).
  """
  logits = outputs.astype(jnp.float32)
  labels = batch["y"]
  if _is_zero(label_smoothing):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  num_classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes),
                                jnp.asarray(label_smoothing, jnp.float32))
  return optax.softmax_cross_entropy(logits, targets).mean()


def mse(outputs, batch):
  """Mean squared error; integer targets are compared as one-hot vectors.

  On classification data this is the "MSE on one-hot targets" loss that is
  classically compared with cross-entropy (applied to softmax outputs).
  """
  y = batch["y"]
  out = outputs.astype(jnp.float32)
  if jnp.issubdtype(y.dtype, jnp.integer):
    out = jax.nn.softmax(out, axis=-1)
    y = jax.nn.one_hot(y, outputs.shape[-1])
  else:
    y = y.reshape(out.shape)
  return jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


def accuracy(outputs, batch):
  """Fraction of examples (or tokens) whose argmax equals the label."""
  return (jnp.argmax(outputs, axis=-1) == batch["y"]).astype(jnp.float32)


def nll(outputs, batch):
  """Per-example negative log-likelihood (natural log), for perplexity."""
  return optax.softmax_cross_entropy_with_integer_labels(
      outputs.astype(jnp.float32), batch["y"])


def rmse_sq(outputs, batch):
  """Squared error per example; averaged then square-rooted into RMSE."""
  y = batch["y"].reshape(outputs.shape)
  return jnp.mean((outputs.astype(jnp.float32) - y) ** 2, axis=-1)


_LOSSES: dict[str, Callable] = {"cross_entropy": cross_entropy, "mse": mse}


def register(name: str):
  """Decorator registering a named loss."""
  def deco(fn):
    _LOSSES[name] = fn
    return fn
  return deco


def names() -> list[str]:
  return sorted(_LOSSES)


def get(name: str) -> Callable:
  if name not in _LOSSES:
    raise errors.unknown_key(str(name), _LOSSES, what="loss")
  return _LOSSES[name]


def named_args(name: str) -> list[str]:
  """Keyword hyperparameters the named loss accepts."""
  return list(inspect.signature(get(name)).parameters)[2:]


def default_metrics(task: str) -> dict[str, Callable]:
  """The metrics reported for a task, evaluated by the compiled eval step."""
  if task == "language_model":
    return {"accuracy": accuracy, "nll": nll}
  if task == "classification":
    return {"accuracy": accuracy}
  return {"mse": rmse_sq}


def derived_metrics(task: str) -> dict[str, Callable[[dict], float]]:
  """Metrics computed from the aggregated ones (``test_loss`` etc.)."""
  if task == "language_model":
    return {"perplexity": lambda m: math.exp(min(m["test_nll"], 700.0)),
            "bits_per_char": lambda m: m["test_nll"] / math.log(2.0)}
  if task == "regression":
    return {"rmse": lambda m: math.sqrt(max(m["test_mse"], 0.0))}
  return {}
