"""Losses and metrics by name.

A loss is ``loss(outputs, batch, **hparams) -> scalar``: numeric keyword
arguments (e.g. ``label_smoothing``) are value hyperparameters, traced per
variant. A metric is ``metric(outputs, batch) -> scalar or [B]`` and is
averaged over each evaluated split by the compiled evaluator;
:func:`derived_metrics` turns the averages into perplexity, bits per
character and RMSE.

:func:`choice` combines named losses into one whose traced ``loss_index``
selects the loss per variant (``lax.switch``), for loss sweeps that share one
compiled program.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxsweep import errors
from jaxsweep.components import registry


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

  Float targets (regression): the mean over every element, so that
  ``sqrt(objective)`` is the reported RMSE whatever the target width.
  Integer targets (classification, language model): the squared distance
  between the softmax of the outputs and the one-hot target, summed over
  classes and averaged over examples (the Brier score, the "MSE on one-hot
  targets" classically compared with cross-entropy).
  """
  y = batch["y"]
  out = outputs.astype(jnp.float32)
  if jnp.issubdtype(y.dtype, jnp.integer):
    probs = jax.nn.softmax(out, axis=-1)
    return jnp.mean(jnp.sum((probs - jax.nn.one_hot(y, out.shape[-1])) ** 2, axis=-1))
  return jnp.mean((out - y.reshape(out.shape)) ** 2)


def accuracy(outputs, batch):
  """Fraction of examples (or tokens) whose argmax equals the label."""
  return (jnp.argmax(outputs, axis=-1) == batch["y"]).astype(jnp.float32)


def nll(outputs, batch):
  """Per-example negative log-likelihood (natural log), for perplexity."""
  return optax.softmax_cross_entropy_with_integer_labels(
      outputs.astype(jnp.float32), batch["y"])


def rmse_sq(outputs, batch):
  """Squared error per example (mean over target elements).

  The evaluator averages it over each split into ``<split>_mse``;
  :func:`derived_metrics` reports ``rmse = sqrt(mse)``.
  """
  out = outputs.astype(jnp.float32)
  y = batch["y"].reshape(out.shape)
  return jnp.mean((out - y) ** 2, axis=tuple(range(1, out.ndim)))


REGISTRY = registry.Registry("loss", default="cross_entropy")
REGISTRY.register("cross_entropy")(cross_entropy)
REGISTRY.register("mse")(mse)
register = REGISTRY.register
names = REGISTRY.names
get = REGISTRY.get


def named_args(name: str) -> list[str]:
  """Keyword hyperparameters the named loss accepts."""
  return list(inspect.signature(get(name)).parameters)[2:]


def choice(names: tuple[str, ...] | list[str]) -> Callable:
  """A loss that evaluates one of several named losses, picked per variant.

  The returned ``fn(outputs, batch, *, loss_index=0, **hparams)`` applies
  ``lax.switch`` on the (traced) ``loss_index``: under ``vmap`` this is a
  select over all candidates, so variants with different losses share one
  compiled program. Each hyperparameter goes to the candidates that accept
  it (``label_smoothing`` to ``cross_entropy`` only). The signature lists
  ``loss_index`` and every candidate's hyperparameters with their defaults,
  so the engine sees them as loss arguments.

  Args:
    names: registered loss names; ``loss_index = i`` selects ``names[i]``
      (a float index is rounded; out-of-range indices are clamped).

  Returns:
    The loss function.

  Raises:
    ConfigError: for an empty list or an unknown name.

  Examples:
    >>> import jax.numpy as jnp, jaxsweep as js
    >>> loss = js.losses.choice(("cross_entropy", "mse"))
    >>> out, batch = jnp.zeros((2, 4)), {"y": jnp.array([0, 1])}
    >>> bool(loss(out, batch, loss_index=1) == js.losses.mse(out, batch))
    True
  """
  names = (names,) if isinstance(names, str) else tuple(names)
  if not names:
    raise errors.ConfigError("the loss choice is empty.", key="loss.name",
                             fix="give at least one loss name")
  fns = [get(n) for n in names]
  accepts = [set(named_args(n)) for n in names]
  params = [inspect.Parameter("outputs", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("batch", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("loss_index", inspect.Parameter.KEYWORD_ONLY, default=0)]
  seen = {"outputs", "batch", "loss_index"}
  for n in names:
    for p in list(inspect.signature(get(n)).parameters.values())[2:]:
      if p.name not in seen and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        seen.add(p.name)
        params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

  def loss(outputs, batch, *, loss_index=0, **hparams):
    unknown = set(hparams) - set().union(*accepts)
    if unknown:
      raise errors.unknown_key(f"loss.{sorted(unknown)[0]}",
                               [f"loss.{a}" for a in sorted(set().union(*accepts))],
                               what="loss argument")
    branches = [functools.partial(fn, **{k: v for k, v in hparams.items() if k in acc})
                for fn, acc in zip(fns, accepts)]
    if len(branches) == 1:
      return branches[0](outputs, batch)
    # Every branch must return the same dtype for lax.switch.
    branches = [lambda o, b, f=f: jnp.asarray(f(o, b), jnp.float32) for f in branches]
    index = jnp.asarray(loss_index)
    if not jnp.issubdtype(index.dtype, jnp.integer):
      index = jnp.round(index)  # The engine stacks dynamic values as float32.
    return jax.lax.switch(index.astype(jnp.int32), branches, outputs, batch)

  loss.__signature__ = inspect.Signature(params)
  loss.__name__ = "choice_" + "_".join(map(str, names))
  loss.__qualname__ = loss.__name__
  loss.__doc__ = f"One of {list(names)}, picked by the traced ``loss_index``."
  loss.names = names
  return loss


def default_metrics(task: str) -> dict[str, Callable]:
  """The metrics reported for a task, beside the objective, on every split.

  Classification and language models get ``accuracy`` and ``nll`` (the
  cross-entropy of the softmax of the outputs, whatever loss is trained, so
  that sweeps over losses or label smoothing compare on the same scale);
  regression gets ``mse``.
  """
  if task in ("classification", "language_model"):
    return {"accuracy": accuracy, "nll": nll}
  return {"mse": rmse_sq}


def derived_metrics(task: str) -> dict[str, tuple[str, Callable[[float], float]]]:
  """Metrics computed on the host from an evaluated one.

  Returns:
    name -> ``(source metric, fn)``: for every split, ``<split>_<name> =
    fn(<split>_<source>)`` (perplexity and bits per character from ``nll``,
    RMSE from ``mse``).
  """
  if task == "language_model":
    return {"perplexity": ("nll", lambda v: math.exp(min(v, 700.0))),
            "bits_per_char": ("nll", lambda v: v / math.log(2.0))}
  if task == "regression":
    return {"rmse": ("mse", lambda v: math.sqrt(max(v, 0.0)))}
  return {}
