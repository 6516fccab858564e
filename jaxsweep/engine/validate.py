"""Checks of hyperparameter values, a group's data and model outputs, before
anything compiles.

:func:`check_values` (called by the planner for every variant): a number
where a component's numeric argument belongs, whole numbers for structural
counts, seeds in ``[0, 2**32)``, no negative learning rate;
:func:`check_learning_rate` (called by :func:`jaxsweep.run` and the config
loader): no learning rate of 0 unless allowed.

:func:`jaxsweep.engine.program.check` calls these for each group, so that a
mistake in the data is one clear error before training rather than a
population of variants that all "diverge at step 0" (or all report ``nan``):

* :func:`check_data`: no NaN or inf in any array of any split; class labels
  are integers in ``[0, num_classes)``.
* :func:`check_targets_fit_loss`: float targets are not given to a loss that
  needs class labels (cross-entropy).
* :func:`check_output_width`: the model's output width (from its abstract
  output shape) is the number of classes.

Every error is a :class:`~jaxsweep.errors.ConfigError` naming the array
(``data.y_train``) or the model setting, what was found and the fix.

Examples:
  >>> import numpy as np, jaxsweep as js
  >>> from jaxsweep.engine import validate
  >>> y = np.arange(4) % 2
  >>> y[1] = 5  # Not one of the 2 classes.
  >>> ds = js.data.Dataset(train={"x": np.zeros((4, 2)), "y": y},
  ...                      test={"x": np.zeros((2, 2)), "y": np.arange(2)}, num_classes=2)
  >>> try:
  ...   validate.check_data(ds)
  ... except js.ConfigError as e:
  ...   print(e.key)
  data.y_train
"""

from __future__ import annotations

import functools
import math
import numbers
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep.components import data as data_lib
from jaxsweep.components import losses as losses_lib
from jaxsweep.components import optim
from jaxsweep.keys import Key

# Datasets whose arrays passed check_data (datasets are immutable).
_CHECKED: weakref.WeakSet = weakref.WeakSet()
# Built-in losses that read the targets as integer class labels.
LABEL_LOSSES = (losses_lib.cross_entropy, losses_lib.nll)
CLASS_TASKS = ("classification", "language_model")


def _splits(ds: data_lib.Dataset):
  for split_name, split in ds.splits():
    for k, a in split.items():
      yield f"{k}_{split_name}", np.asarray(a)


def check_data(ds: data_lib.Dataset) -> None:
  """Checks every array of a dataset once (the result is remembered).

  Raises:
    ConfigError: for NaN or inf in any array, float labels for a
      classification task, or labels outside ``[0, num_classes)``.
  """
  if ds in _CHECKED:
    return
  for name, a in _splits(ds):
    check_finite(a, name)
  if ds.task in CLASS_TASKS:
    check_labels(ds)
  _CHECKED.add(ds)


check_finite = data_lib.check_finite


def check_labels(ds: data_lib.Dataset) -> None:
  """Class labels are integers in ``[0, num_classes)`` in both splits.

  Raises:
    ConfigError: naming the split's label array, the count of bad labels,
      the first one's example and the range found.
  """
  if ds.num_classes is None or int(ds.num_classes) < 1:
    raise errors.ConfigError(
        f"a {ds.task} dataset needs num_classes, got {ds.num_classes!r}.",
        key="data.num_classes", fix="give num_classes (the number of classes or the "
                                    "vocabulary size), or build it with js.data.arrays")
  n = int(ds.num_classes)
  for name, y in _splits(ds):
    if not name.startswith("y_"):
      continue
    if not np.issubdtype(y.dtype, np.integer):
      raise float_labels(y, name, f"task '{ds.task}'")
    bad = (y < 0) | (y >= n)
    if bad.any():
      raise errors.ConfigError(
          f"{int(bad.sum())} of {y.size} labels are outside [0, {n}) (found values from "
          f"{int(y.min())} to {int(y.max())}; first bad one {int(y[bad][0])} at example "
          f"{data_lib.first_example(bad)}).", key=f"data.{name}",
          fix=f"labels must be class indices 0..{n - 1}: remap them (e.g. "
              f"np.unique(y, return_inverse=True)[1]) or give num_classes={int(y.max()) + 1}"
              if int(y.min()) >= 0 else
              f"labels must be class indices 0..{n - 1}: remap them, e.g. "
              "np.unique(y, return_inverse=True)[1] (negative labels are not classes)")


def float_labels(y: np.ndarray, name: str, who: str) -> errors.ConfigError:
  """The error for float targets where class labels are needed."""
  values = ", ".join(repr(float(v)) for v in np.unique(y[np.isfinite(y)])[:4])
  return errors.ConfigError(
      f"the targets are {y.dtype} (values {values}{' ...' if np.unique(y).size > 4 else ''})"
      f" but {who} needs integer class labels.", key=f"data.{name}",
      fix="cast the labels to int (y.astype(np.int32)) for classification; for "
          "real-valued targets use task='regression' with a regression loss (mse)")


def needs_labels(loss: Callable | None) -> str | None:
  """The name of a built-in loss that reads class labels, else None."""
  while isinstance(loss, functools.partial):
    loss = loss.func
  if loss in LABEL_LOSSES:
    return loss.__name__
  names = getattr(loss, "names", ())  # A losses.choice of named losses.
  for n in names if isinstance(names, tuple) else ():
    if losses_lib.REGISTRY.get(n) in LABEL_LOSSES:
      return n
  return None


def check_targets_fit_loss(ds: data_lib.Dataset, loss: Callable | None) -> None:
  """Float targets given to a built-in loss that needs class labels.

  Raises:
    ConfigError: naming ``data.y_train``, the dtype and values found.
  """
  name = needs_labels(loss)
  y = np.asarray(ds.train["y"])
  if name is not None and not np.issubdtype(y.dtype, np.integer):
    raise float_labels(y, "y_train", f"the loss '{name}'")


def check_output_width(out: Any, ds: data_lib.Dataset, *, loss: Callable | None,
                       default_metrics: bool, num_outputs_given: bool) -> None:
  """The model's output width is the number of classes.

  Checked from the abstract output of one batch, for classification and
  language-model data, when a built-in loss or the default metrics read
  the outputs as one logit per class (a custom loss and metrics may use
  another convention).

  Args:
    out: the model's output for one batch (a shape struct).
    ds: the data.
    loss: the group's loss.
    default_metrics: whether the default metrics (accuracy) are reported.
    num_outputs_given: whether the sweep set ``model.num_outputs``.

  Raises:
    ModelError: naming ``model.num_outputs`` (or ``model``), the width found
      and the width needed.
  """
  if ds.task not in CLASS_TASKS or ds.num_classes is None:
    return
  if needs_labels(loss) is None and not default_metrics:
    return
  shape = tuple(getattr(out, "shape", ()))
  y_ndim = np.ndim(ds.train["y"])
  n = int(ds.num_classes)
  if len(shape) != y_ndim + 1 or shape[-1] == n:
    return  # No class axis: the loss's own trace reports the shapes.
  what = "classes" if ds.task == "classification" else "tokens in the vocabulary"
  if num_outputs_given:
    key, fix = "model.num_outputs", (f"set num_outputs to {n}, or leave it out: it is "
                                     "filled from the data")
  else:
    key, fix = "model", f"make the model's last layer {n} wide (one logit per class)"
    if needs_labels(loss) is None:
      fix += "; for another output convention pass your own metrics= as well as the loss"
  effect = (f"labels {shape[-1]} and up have no logit: every variant would diverge at "
            "its first step" if shape[-1] < n else "the extra logits are never a label")
  raise errors.ModelError(
      f"the model outputs {shape[-1]} values per example (shape {shape}) but the data "
      f"has {n} {what}; {effect}.", key=key, fix=fix)


# --------------------------------------------------------------------------
# Hyperparameter values, against the components' signatures.

_INIT_SCALE = Key("model", "init_scale")
# Arguments that take a number even when the factory gives no default.
NUMERIC_ARGS = ("learning_rate", "lr")
# The learning rate refused at 0 (check_learning_rate), qualified.
LEARNING_RATE = "optimizer.learning_rate"
# Arguments that must not be negative.
NON_NEGATIVE_ARGS = ("learning_rate", "lr")
# The ranges of the built-in components' numeric arguments: (slot, arg) ->
# (low, high, low included, high included, why); None is unbounded. NaN
# passes (a poisoned variant diverges and is reported as such).
RANGES = {
    ("loss", "label_smoothing"): (0.0, 1.0, True, False, "a share of the target mass"),
    ("model", "dropout_rate"): (0.0, 1.0, True, False, "the share of units dropped"),
    **{("optimizer", a): (0.0, 1.0, True, False, "a decay rate of a moving average")
       for a in ("b1", "b2", "decay", "momentum")},
    **{("optimizer", a): (0.0, None, True, False, "a size that cannot be negative")
       for a in ("eps", "weight_decay", "grad_clip", "warmup_steps",
                 "initial_accumulator_value")},
    **{("optimizer", a): (0.0, None, False, False, "a number of steps")
       for a in ("decay_steps", "total_steps")},
}
# The largest width or size a model setting may take (16,777,216): a layer
# that wide already needs far more memory than any device has.
MAX_SIZE = 2**24
# Model arguments that count layers, and the most accepted: every layer is
# traced and compiled, so a depth of 10**5 is a hang, not a model.
DEPTH_ARGS = ("layers", "num_layers", "depth")
MAX_DEPTH = 1_000


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _numeric_default(key: Key, accepted: Mapping, call_args: Mapping) -> tuple[bool, Any]:
  """(whether ``key`` takes a number, an example value) from the component's
  signature: a numeric default, or a name in :data:`NUMERIC_ARGS`."""
  if key == _INIT_SCALE:
    return True, 1.0
  if key.slot == "model":
    default = accepted.get("model", {}).get(key.arg, call_args.get(key.arg))
  elif key.slot in ("optimizer", "loss", "data"):
    default = accepted.get(key.slot, {}).get(key.arg)
  else:
    return False, None
  if optim.is_numeric(default):
    return True, default
  return key.slot == "optimizer" and key.arg in NUMERIC_ARGS, 1e-3


def _default_of(key: Key, accepted: Mapping) -> Any:
  return accepted.get(key.slot, {}).get(key.arg)


def _describe(value: Any) -> str:
  if isinstance(value, str):
    return f"the string {value!r}"
  if isinstance(value, (bool, np.bool_)):
    return f"the boolean {str(bool(value)).lower()}"
  if value is None:
    return "null (no value)"
  if isinstance(value, (list, tuple)):
    return f"a list {keys.plain(value)}"
  if _is_number(value):
    return repr(value.item() if hasattr(value, "item") else value)
  return f"{type(value).__name__} {value!r}"


def check_values(settings: Mapping[Key, Any], accepted: Mapping, call_args: Mapping):
  """Refuses a non-number where a component's numeric argument belongs, a
  negative learning rate and a seed that is not a whole number in [0, 2**32).

  A numeric argument is one whose default in the component's signature is a
  number (``accepted``: slot -> argument -> default; ``call_args``: the
  model's traced call arguments and their defaults), or a learning rate.

  Raises:
    ConfigError: naming the key, the value found and the fix.
  """
  for key, value in settings.items():
    if key.is_seed:
      check_seed(value)
      continue
    numeric, example = _numeric_default(key, accepted, call_args)
    if not numeric:
      if (isinstance(_default_of(key, accepted), bool)
          and (isinstance(value, (str, list, tuple)) or value is None)):
        raise errors.ConfigError(f"takes true or false, got {_describe(value)}.",
                                 key=str(key), fix=f"write {key}: true (or false)")
      continue
    whole = key.slot == "data" or (key.slot == "model" and key.arg in accepted.get("model", {}))
    if (whole and isinstance(example, int) and _is_number(value)
        and not float(value).is_integer()):  # A structural count: a whole number.
      raise errors.ConfigError(f"takes a whole number, got {_describe(value)}.", key=str(key),
                               fix=f"give an integer, e.g. {key}: {example}")
    if not _is_number(value):
      if isinstance(value, str) and _as_float(value) is not None:
        fix = f"write the number without quotes: {key}: {_as_float(value)}"
      elif isinstance(value, (list, tuple)):
        fix = (f"give one number; to try several, sweep them (sweep: {{{key}: "
               f"{keys.plain(value)}}})")
      else:
        fix = f"give a number, e.g. {key}: {example}"
      raise errors.ConfigError(f"takes a number, got {_describe(value)}.", key=str(key),
                               fix=fix)
    if key.slot == "optimizer" and key.arg in NON_NEGATIVE_ARGS and value < 0:
      raise errors.ConfigError(
          f"a negative learning rate ({value}) climbs the loss instead of descending it.",
          key=str(key), fix=f"give a positive value, e.g. {key}: {abs(value)}")
    if not (key.slot == "data" and isinstance(value, (int, np.integer))) and _beyond_float32(
        value):
      raise errors.ConfigError(
          f"{value!r} is beyond float32's range (about 3.4e38): hyperparameters are float32 "
          "on the device, where it would be inf.", key=str(key),
          fix=f"give a value of a realistic size, e.g. {key}: {example}")
    check_range(key, value, example)
    if key.slot == "model" and key.arg in DEPTH_ARGS and value > MAX_DEPTH:
      raise errors.ConfigError(
          f"{value:g} layers would take hours to trace and compile (at most {MAX_DEPTH:,}).",
          key=str(key), fix=f"give a realistic depth, e.g. {key}: {example}")
    if key.slot == "model" and whole and isinstance(example, int) and abs(value) > MAX_SIZE:
      raise errors.ConfigError(
          f"{value:g} is beyond any size that fits in memory (at most {MAX_SIZE:,}).",
          key=str(key), fix=f"give a realistic size, e.g. {key}: {example}")


def check_learning_rate(variants: Iterable[Mapping[str, Any]], base: Mapping[str, Any], *,
                        allow_zero: bool = False) -> None:
  """Refuses a learning rate of 0 (``optimizer.learning_rate``) unless allowed.

  A config file (:func:`jaxsweep.config.load`, ``run: {allow_zero_learning_rate:
  true}``) and :func:`jaxsweep.run` (``allow_zero_learning_rate=True``)
  both check here.

  Args:
    variants: each variant's qualified settings (``"optimizer.learning_rate"``).
    base: the settings every variant shares (used where a variant sets none).
    allow_zero: accept it (an untrained baseline on purpose).

  Raises:
    ConfigError: with ``key="optimizer.learning_rate"``.
  """
  if allow_zero:
    return
  for variant in variants:
    lr = variant.get(LEARNING_RATE, base.get(LEARNING_RATE))
    if _is_number(lr) and lr == 0:
      raise errors.ConfigError(
          "a learning rate of 0 never changes the parameters: every variant would end as it "
          "started.", key=LEARNING_RATE,
          fix="give a positive learning rate (e.g. 1.0e-3); to train nothing on purpose (an "
              "untrained baseline) write run: {allow_zero_learning_rate: true} in a config, "
              "or give js.run(..., allow_zero_learning_rate=True)")


def _beyond_float32(value: Any) -> bool:
  try:
    f = float(value)
  except OverflowError:  # An int beyond any float.
    return True
  return math.isfinite(f) and abs(f) > data_lib.dataset.FLOAT32_MAX


def check_seed(value: Any) -> None:
  """A seed is an integer in ``[0, 2**32)``: not a float (``-0.0`` and ``0``
  would be two seeds with one stream), a bool, a date or bytes.

  Raises:
    ConfigError: with key ``seed``.
  """
  integer = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
  if integer and 0 <= value < 2**32:
    return
  if _is_number(value) and float(value).is_integer() and 0 <= value < 2**32:
    fix = f"write the seed as an integer: {int(value)} (not {value!r})"
  else:
    fix = "use seeds like 0, 1, 2 (in a sweep: seed: [0, 1, 2] or seeds: 3)"
  raise errors.ConfigError(f"a seed is an integer in [0, 2**32), got {_describe(value)}.",
                           key="seed", fix=fix)


def check_range(key: Key, value: Any, example: Any = None) -> None:
  """Refuses a built-in argument's value outside its range (:data:`RANGES`).

  Raises:
    ConfigError: naming the key, the value, the range and a value inside it.
  """
  bounds = RANGES.get((key.slot, key.arg))
  if bounds is None or not _is_number(value):
    return
  lo, hi, lo_in, hi_in, why = bounds
  below = lo is not None and (value < lo or (value == lo and not lo_in))
  above = hi is not None and (value > hi or (value == hi and not hi_in))
  if not (below or above):
    return
  text = (f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}" if hi is not None
          else f"{'>=' if lo_in else '>'} {lo:g}")
  good = example if _is_number(example) and example != value else None
  raise errors.ConfigError(
      f"must be {'in ' if hi is not None else ''}{text} ({why}), got {value!r}.",
      key=str(key), fix=f"give a value {'in ' if hi is not None else ''}{text}"
                        + (f", e.g. {key}: {good}" if good is not None else ""))


def check_batch_size(batch_size: int, ds: data_lib.Dataset) -> None:
  """A batch is drawn from the training split: no larger than it.

  Raises:
    ConfigError: with key ``train.batch_size``, naming the split's size.
  """
  if batch_size > ds.num_train:
    raise errors.ConfigError(
        f"{batch_size} is larger than the training split ({ds.num_train} examples of "
        f"{ds.name}); every step would draw most examples several times.",
        key="train.batch_size",
        fix=f"give train.batch_size <= {ds.num_train} (e.g. {min(128, ds.num_train)})")


def _as_float(text: str) -> float | None:
  try:
    return float(text)
  except ValueError:
    return None
