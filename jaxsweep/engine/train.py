"""Training for ONE variant, written to be ``vmap``-ed over a population.

:func:`make_train` returns a :class:`Program` of pure functions:

* ``init(hparams, data) -> RunState`` builds a variant's parameters, optimizer
  state (its hyperparameter values written into ``opt_state.hyperparams``)
  and keys from its ``seed``;
* ``period(state, hparams, data, train=True) -> (state, stats)`` runs
  ``eval_every`` optimisation steps in a ``lax.scan`` (none with
  ``train=False``: the evaluation at step 0; the first ``n`` with an integer,
  e.g. an early first evaluation, :meth:`TrainSettings.boundaries`) and
  then evaluates on the training subset, the validation and the test split
  (one forward graph for all three);
* ``evaluate(state, hparams, data) -> metrics``.

The engine maps ``period`` over the population (``vmap`` within a group of
lanes, ``lax.map`` across groups): the data is an un-batched argument shared
by all variants. Everything a run needs lives
in :class:`RunState`, one pytree, so a population can be checkpointed,
resumed, masked, gathered or resized at any period boundary.

Divergence: a step whose loss or new parameters are not finite is discarded
and the variant is frozen from then on (``diverged``/``diverged_step``).
Because variants never interact, a diverged variant leaves the others bit for
bit unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import chex
import jax
import jax.extend.random  # pylint: disable=unused-import  # jax.extend.random.threefry_2x32.
import jax.numpy as jnp
import numpy as np
import optax

from jaxsweep.components import models as models_lib
from jaxsweep.components import optim
from jaxsweep.components.data import augment as augment_lib


class TrainSettings(NamedTuple):
  """Static (compile-time) training settings of a group."""

  steps: int
  batch_size: int
  eval_every: int
  eval_batch_size: int = 1024
  first_eval: int = 0       # An extra evaluation after this many steps (0: none).

  @property
  def num_periods(self) -> int:
    return -(-self.steps // self.eval_every)

  def boundaries(self) -> tuple[int, ...]:
    """The steps after which the population is evaluated, in order.

    ``eval_every, 2 * eval_every, ..., steps``, preceded by ``first_eval``
    when it is set (and below ``eval_every``): the first number comes after
    a few steps instead of a whole period. Period call ``i`` takes
    ``boundaries[i] - boundaries[i - 1]`` steps (``boundaries[-1] = 0``):
    pass that as its ``train`` argument (:func:`steps_of`); no call takes
    more than ``eval_every``, so the same compiled period serves them all.
    """
    ends = [min(p * self.eval_every, self.steps) for p in range(1, self.num_periods + 1)]
    if 0 < self.first_eval < ends[0]:
      ends.insert(0, self.first_eval)
    return tuple(ends)


class RunState(NamedTuple):
  """The whole state of one variant's run (stacked: a leading [V] axis)."""

  step: jax.Array           # [], int32: optimisation steps taken so far
  params: Any
  model_state: Any          # mutable collections, e.g. {"batch_stats": ...}
  opt_state: Any
  key: jax.Array            # typed PRNG key for data order and dropout
  diverged: jax.Array       # [], bool
  diverged_step: jax.Array  # [], int32; -1 while healthy
  stopped: jax.Array        # [], bool: a scheduler stopped it (frozen like a diverged one)
  stopped_step: jax.Array   # [], int32; -1 while training


class Program(NamedTuple):
  """Pure per-variant functions of one compile group."""

  init: Callable[..., RunState]
  period: Callable[..., tuple[RunState, dict]]
  evaluate: Callable[..., dict]
  settings: TrainSettings
  halted: Callable[..., jax.Array]          # (state, hparams) -> bool: no longer trains
  passthrough: Callable[..., tuple[RunState, dict]]  # a halted variant's period


# Data keys evaluated at every period boundary, and their column prefixes.
EVAL_SPLITS = (("train_eval", "train"), ("val", "val"), ("test", "test"))


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def steps_of(train, eval_every: int) -> jax.Array:
  """How many of a period's steps a call takes: ``train`` is a bool (all of
  them, or none: the step-0 evaluation) or a number of steps (clipped to
  ``[0, eval_every]``), a Python value or a scalar array."""
  flag = jnp.asarray(train)
  if flag.dtype == jnp.bool_:
    return jnp.where(flag, eval_every, 0).astype(jnp.int32)
  return jnp.clip(flag.astype(jnp.int32), 0, eval_every)


def _select(pred, on_true, on_false):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def scale_weights(params, scale):
  """Multiplies every weight matrix / kernel / embedding (ndim >= 2) by scale.

  This is the "init scale" hyperparameter: biases and normalisation scales
  are left alone.
  """
  scale = jnp.asarray(scale, jnp.float32)
  return jax.tree.map(
      lambda p: (p * scale).astype(p.dtype) if p.ndim >= 2 else p, params)


def init_keys(seed) -> tuple[jax.Array, jax.Array]:
  """A variant's keys from its seed alone: ``(parameter init, training run)``."""
  return tuple(jax.random.split(jax.random.key(jnp.asarray(seed, jnp.uint32))))


def run_key(seed) -> jax.Array:
  """The key a variant of this seed starts training with (batches, dropout)."""
  return init_keys(seed)[1]


def make_train(model: models_lib.ModelFns,
               opt: optim.Injected | optax.GradientTransformation,
               loss_fn: Callable[..., jax.Array],
               metrics: Mapping[str, Callable[..., jax.Array]],
               settings: TrainSettings,
               augment: Mapping[str, Any] | None = None) -> Program:
  """Builds the pure per-variant training program of a compile group.

  Args:
    model: the model as pure functions (:func:`jaxsweep.models.to_model_fns`).
    opt: the optimizer, built once with :func:`jaxsweep.optim.wrap` (or a
      plain optax transformation: then no value is per variant). Its
      ``update`` receives the batch loss as ``value=`` when it takes extra
      arguments (``optax.GradientTransformationExtraArgs``).
    loss_fn: ``loss(outputs, batch, **hparams["loss"]) -> scalar``.
    metrics: name -> ``metric(outputs, batch) -> scalar or [B]``.
    settings: steps, batch size, eval period.
    augment: options of :func:`jaxsweep.components.data.augment.augment`
      applied to every training batch (never at evaluation), with a key of
      each variant and step; ``None``: no augmentation.

  Returns:
    A :class:`Program`. ``hparams`` is one variant's dict with ``seed``
    (uint32), optional ``init_scale`` and sub-dicts ``optimizer``, ``loss``
    and ``model`` of traced values; ``data`` is ``{"train": batch, "val":
    batch, "test": batch, "train_eval": batch}`` of arrays shared by all
    variants (``train`` is sampled for training; the others are evaluated).

  Examples:
    >>> import jax, jax.numpy as jnp, optax, jaxsweep as js
    >>> ds = js.data.load("synthetic", num_train=64, num_test=32)
    >>> data = js.engine.device_data(ds)
    >>> prog = js.make_train(
    ...     js.models.to_model_fns(js.models.mlp(features=(8,), num_outputs=4)),
    ...     js.optim.wrap(optax.sgd, {}, {"learning_rate": 0.1}),
    ...     js.losses.cross_entropy, {"accuracy": js.losses.accuracy},
    ...     js.engine.TrainSettings(steps=4, batch_size=16, eval_every=2))
    >>> hp = {"seed": jnp.arange(3), "optimizer": {"learning_rate": jnp.array([.1, .2, .3])}}
    >>> state = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))(hp, data)
    >>> state, stats = jax.jit(jax.vmap(prog.period, in_axes=(0, 0, None)))(state, hp, data)
    >>> sorted(stats)  # doctest: +NORMALIZE_WHITESPACE
    ['batch_objective', 'test_accuracy', 'test_objective', 'train_accuracy',
     'train_objective', 'val_accuracy', 'val_objective']
    >>> stats["test_accuracy"].shape
    (3,)
  """
  steps = settings.steps
  init = _make_init(model, opt)
  run_steps = _make_run_steps(model, optim.transformation(opt), loss_fn, settings, augment)
  evaluate = _make_evaluate(model, loss_fn, metrics, settings.eval_batch_size)

  def nan_evaluation(state: RunState, hparams, data) -> dict:
    """evaluate's stats, all NaN (shapes from evaluate alone: tracing them
    through the training step is slow)."""
    return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype),
                        jax.eval_shape(evaluate, state, hparams, data))

  def halted(state: RunState, hparams=None) -> jax.Array:
    del hparams  # Unused.
    return state.diverged | state.stopped | (state.step >= steps)

  def passthrough(state: RunState, hparams, data, train) -> tuple[RunState, dict]:
    """A halted variant's period: its state unchanged, its stats NaN."""
    del train  # Unused.
    return state, {"batch_objective": jnp.full([], jnp.nan, jnp.float32),
                   **nan_evaluation(state, hparams, data)}

  def period(state: RunState, hparams, data, train=True) -> tuple[RunState, dict]:
    """``eval_every`` steps, then the evaluation (``train=False``: only the
    evaluation, the one at step 0; an integer ``n``: the first ``n`` of the
    period's steps, at most ``eval_every``, e.g. a first evaluation after a
    few steps, :meth:`TrainSettings.boundaries`). A variant halted on entry
    (diverged, stopped, padding, or past its last step) keeps its state and
    gets NaN stats.

    Under ``vmap`` a condition on a per-variant value becomes a select that
    computes both branches, and JAX then batches every operand of that
    condition, ``train`` included. So ``train``, the same for all variants,
    decides first, outside any per-variant condition: with ``train=False``
    no training step runs at any number of lanes (nested inside the halted
    condition, the step-0 evaluation would train a whole period and discard
    it whenever lanes > 1). One lane at a time, every
    condition is a real branch and a halted variant costs nothing.
    """
    chex.assert_rank(state.step, 0)
    idle = halted(state)
    zeros = (jnp.zeros([], jnp.float32), jnp.zeros([], jnp.int32))

    limit = steps_of(train, settings.eval_every)

    def train_now(state):
      return jax.lax.cond(idle, lambda s: (s, *zeros),
                          lambda s: run_steps(s, hparams, data, limit), state)

    state, loss_sum, loss_count = jax.lax.cond(limit > 0, train_now, lambda s: (s, *zeros),
                                               state)
    evaluated = jax.lax.cond(idle, lambda s: nan_evaluation(s, hparams, data),
                             lambda s: evaluate(s, hparams, data), state)
    stats = {"batch_objective": jnp.where(loss_count > 0,
                                          loss_sum / jnp.maximum(loss_count, 1), jnp.nan)}
    stats.update(evaluated)
    return state, stats

  return Program(init, period, evaluate, settings, halted, passthrough)


# --------------------------------------------------------------------------
# The pieces of make_train: one variant's init, training steps and evaluation.

def _model_hp(hparams):
  """One variant's traced model arguments."""
  return dict(hparams.get("model", {}))


def _make_init(model: models_lib.ModelFns, opt) -> Callable[..., RunState]:
  """A variant's ``init(hparams, data)``: parameters, optimizer state, keys."""

  def init(hparams, data) -> RunState:
    k_init, k_run = init_keys(hparams["seed"])
    x0 = data["train"]["x"][:1]
    init_kw = {k: v for k, v in _model_hp(hparams).items() if k in model.init_args}
    variables = dict(model.init(k_init, x0, **init_kw))
    params = variables.pop("params")
    if "init_scale" in hparams:
      params = scale_weights(params, hparams["init_scale"])
    opt_state = optim.init_state(opt, params, hparams.get("optimizer", {}))
    return RunState(step=jnp.zeros([], jnp.int32), params=params,
                    model_state=variables, opt_state=opt_state, key=k_run,
                    diverged=jnp.zeros([], bool),
                    diverged_step=jnp.full([], -1, jnp.int32),
                    stopped=jnp.zeros([], bool),
                    stopped_step=jnp.full([], -1, jnp.int32))

  return init


def draws(key, first: jax.Array, count: int, batch_size: int, num_train: int,
          num_keys: int) -> tuple[jax.Array, jax.Array]:
  """Steps ``first .. first + count - 1``'s batch indices and keys.

  Step ``t``'s randomness is the Threefry-2x32 block cipher under the run
  key's words applied to the counters ``(t, j)``: for ``j < batch_size``
  the first output word modulo ``num_train`` is the batch's ``j``-th
  example (drawn with replacement; the modulo's bias is below
  ``num_train / 2**32``), and the next counters' words are the step's
  ``num_keys`` keys (the dropout key, then the augmentation key). So a
  step's draws depend on its run key and step index alone (a resumed or
  replayed variant draws the same ones), and one cipher call serves a whole
  period: fewer instructions to compile than a ``fold_in``, a ``split`` and
  a ``randint`` per step (bench/ENGINE_NOTES.md).

  Args:
    key: the variant's run key (:func:`run_key`).
    first: the first step's index (traced).
    count: how many steps.
    batch_size: examples per step.
    num_train: the training split's size.
    num_keys: keys per step.

  Returns:
    ``(indices [count, batch_size] int32, keys [count, num_keys])``.
  """
  words = jax.random.key_data(key).astype(jnp.uint32)
  impl = jax.random.key_impl(key)
  key_words = words.shape[-1]
  per_key = -(-key_words // 2)  # Counters per key: each gives two words.
  width = batch_size + num_keys * per_key
  steps = (first + jnp.arange(count)).astype(jnp.uint32)
  x0 = jnp.broadcast_to(steps[:, None], (count, width)).ravel()
  x1 = jnp.broadcast_to(jnp.arange(width, dtype=jnp.uint32)[None], (count, width)).ravel()
  out = jax.extend.random.threefry_2x32((words[0], words[1]), jnp.concatenate([x0, x1]))
  y0, y1 = out[:count * width].reshape(count, width), out[count * width:].reshape(count, width)
  idx = (y0[:, :batch_size] % jnp.uint32(num_train)).astype(jnp.int32)
  pairs = jnp.stack([y0[:, batch_size:], y1[:, batch_size:]], -1)  # [count, keys * per_key, 2]
  data = pairs.reshape(count, num_keys, 2 * per_key)[..., :key_words]
  return idx, jax.random.wrap_key_data(data, impl=impl)


def _make_run_steps(model: models_lib.ModelFns, tx, loss_fn: Callable[..., jax.Array],
                    settings: TrainSettings, augment: Mapping[str, Any] | None) -> Callable:
  """A variant's ``run_steps(state, hparams, data, limit)``: up to one
  period's optimisation steps under ``lax.scan`` (:func:`make_train`).

  Long on purpose: the body of one step (batch, loss, gradients, update, the
  divergence guard, skipped steps) reads top to bottom as the step runs; its
  pieces share the closure's model, optimizer and settings.
  """
  steps, batch_size = settings.steps, settings.batch_size

  def extra(loss) -> dict:
    """Optax's extra arguments: the batch loss as ``value=``
    (``optax.contrib.reduce_on_plateau`` reads it; the others ignore it)."""
    if isinstance(tx, optax.GradientTransformationExtraArgs):
      return {"value": loss}
    return {}

  def train_step(hparams, train, limit, carry, xs):
    """One optimisation step; a non-finite result is discarded and freezes.

    A variant that does not train at this step (past its last step, diverged
    or stopped) skips it: one variant at a time (lanes = 1) the branch is
    real and costs nothing; under vmap both branches run and a select keeps
    one, as before. Steps at or past the call's ``limit`` (a period shorter
    than ``eval_every``) are skipped without counting: the next call takes
    them up with the same randomness (drawn per step index).
    """
    state, loss_sum, loss_count = carry
    i, drawn = xs
    within = i < limit
    active = within & (state.step < steps) & ~state.diverged & ~state.stopped

    def skip():
      return state._replace(step=state.step + within.astype(state.step.dtype)), loss_sum, \
          loss_count

    return jax.lax.cond(active, lambda: update(hparams, train, carry, drawn), skip)

  def update(hparams, train, carry, drawn):
    state, loss_sum, loss_count = carry
    idx, k_dropout, k_augment = drawn
    batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), train)
    if augment:
      batch = {**batch, "x": augment_lib.augment(batch["x"], k_augment, **augment)}

    def loss_of(params):
      variables = {"params": params, **state.model_state}
      out, updates = model.apply(variables, batch["x"], train=True,
                                 rng=k_dropout, **_model_hp(hparams))
      return loss_fn(out, batch, **hparams.get("loss", {})), updates

    (loss, updates), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params, **extra(loss))
    params = optax.apply_updates(state.params, param_updates)
    model_state = {**state.model_state, **updates}

    ok = jnp.isfinite(loss) & _all_finite(params) & _all_finite(model_state)
    new_state = RunState(
        step=state.step + 1,
        params=_select(ok, params, state.params),
        model_state=_select(ok, model_state, state.model_state),
        opt_state=_select(ok, opt_state, state.opt_state),
        key=state.key,
        diverged=~ok,
        diverged_step=jnp.where(ok, state.diverged_step, state.step),
        stopped=state.stopped, stopped_step=state.stopped_step)
    loss_sum = loss_sum + jnp.where(ok, loss, 0.0)
    loss_count = loss_count + ok.astype(jnp.int32)
    return new_state, loss_sum, loss_count

  def run_steps(state: RunState, hparams, data, limit):
    """The period's first ``limit`` (at most ``eval_every``) steps: the state,
    the loss sum and count."""
    carry = (state, jnp.zeros([], jnp.float32), jnp.zeros([], jnp.int32))
    train = data["train"]
    index = jnp.arange(settings.eval_every, dtype=state.step.dtype)
    idx, keys = draws(state.key, state.step, settings.eval_every, batch_size,
                      train["x"].shape[0], 2 if augment else 1)
    drawn = (idx, keys[:, 0], keys[:, 1] if augment else None)
    return jax.lax.scan(lambda c, x: (train_step(hparams, train, limit, c, x), None), carry,
                        (index, drawn))[0]

  return run_steps


def _make_evaluate(model: models_lib.ModelFns, loss_fn: Callable[..., jax.Array],
                   metrics: Mapping[str, Callable[..., jax.Array]],
                   eval_batch_size: int) -> Callable[..., dict]:
  """A variant's ``evaluate(state, hparams, data)`` (:func:`make_train`)."""

  def example_stats(out, batch, hparams) -> dict:
    """Objective and metrics of every example of a batch: ``name -> [B]``.

    The loss (a mean over its batch) and metrics that return a scalar are
    computed on one-example batches (``vmap``), so a split's mean is the mean
    over its examples whatever the batching; metrics that return ``[B]`` are
    taken as they are.
    """
    def one(fn):
      def per_example(o, b):
        o, b = jax.tree.map(lambda a: a[None], (o, b))
        return jnp.mean(fn(o, b))
      return jax.vmap(per_example)(out, batch)

    vals = {"objective": one(lambda o, b: loss_fn(o, b, **hparams.get("loss", {})))}
    size = jax.tree.leaves(batch)[0].shape[0]
    for name, fn in metrics.items():
      shape = jax.eval_shape(fn, out, batch).shape
      vals[name] = fn(out, batch) if shape == (size,) else one(fn)
    return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), vals)

  def evaluate(state: RunState, hparams, data) -> dict:
    """Objective and metrics on every evaluation split in ``data``.

    One forward graph serves every split (one graph per split compiles
    slower: bench/ENGINE_NOTES.md): the splits' examples are concatenated,
    cut into ``K`` equal batches of at most ``eval_batch_size`` (the last
    padded with copies of the first example, weighted 0) and evaluated under
    one ``lax.map``; each example adds its values to its split's sums, and a
    split's mean is its sum over its number of examples.

    Returns:
      ``{"<split>_<name>": scalar}`` for split ``train`` (the fixed training
      subset ``data["train_eval"]``), ``val`` and ``test``, where present;
      names are ``objective`` (the training loss in eval mode) and the
      metrics'.
    """
    present = [(key, prefix) for key, prefix in EVAL_SPLITS if key in data]
    if not present:
      return {}
    variables = {"params": state.params, **state.model_state}
    sizes = [jax.tree.leaves(data[key])[0].shape[0] for key, _ in present]
    total = sum(sizes)
    num_batches = -(-total // min(total, eval_batch_size))
    size = -(-total // num_batches)
    pad = num_batches * size - total
    # Which split each slot holds (-1: padding); a constant of the program.
    owner = np.concatenate([np.full(n, j, np.int32) for j, n in enumerate(sizes)]
                           + [np.full(pad, -1, np.int32)]).reshape(num_batches, size)

    def stacked(*leaves):
      cat = jnp.concatenate(leaves + (jnp.repeat(leaves[0][:1], pad, axis=0),) * bool(pad))
      return cat.reshape((num_batches, size) + cat.shape[1:])

    examples = jax.tree.map(stacked, *[data[key] for key, _ in present])

    def batch_sums(args):
      batch, who = args
      out, _ = model.apply(variables, batch["x"], train=False, rng=None, **_model_hp(hparams))
      vals = example_stats(out, batch, hparams)
      mine = who[None, :] == jnp.arange(len(present), dtype=jnp.int32)[:, None]  # [J, B]
      return {k: jnp.sum(jnp.where(mine, v[None, :], 0.0), axis=1) for k, v in vals.items()}

    sums = jax.lax.map(batch_sums, (examples, jnp.asarray(owner)))
    counts = jnp.asarray(sizes, jnp.float32)
    out = {}
    for j, (_, prefix) in enumerate(present):
      out.update({f"{prefix}_{k}": v.sum(0)[j] / counts[j] for k, v in sums.items()})
    return out

  return evaluate
