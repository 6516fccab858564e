"""Stable ids: of a program (:func:`program_identity`) and of a sweep (:func:`fingerprint`).

Both are the same in every process (no addresses, no ``id``). A program's
identity says what one compile group's program is: its components, static
settings, traced keys and data shapes, not the variants' values; the lanes
cache (:func:`jaxsweep.engine.strategy.signature`) keys on it. A sweep's
fingerprint covers every variant's values too: checkpoints and run
directories record it, so that ``--resume`` goes on only with the same
sweep. The in-process program cache (:func:`jaxsweep.engine.program.build`)
keys on the same parts, resolved and by object identity where a stable name
would be ambiguous (see there).
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import numpy as np

from jaxsweep import keys
from jaxsweep.components import data as data_lib
from jaxsweep.components import registry
from jaxsweep.engine import plan as plan_lib


def fingerprint(plan: plan_lib.Plan) -> str:
  """A stable id of what a plan trains (64 hex digits), the same in every process.

  Unlike :func:`program_identity` it covers the variants' values (a sweep
  of other learning rates is another sweep, on the same programs). The
  SHA-256 of every variant's sorted qualified settings (in plan order:
  the population's order) and of the components' names: registry names for
  config files (in the settings as ``model.name``...), ``module.qualname``
  of the user's functions and classes, a dataset's description. A run
  directory records it (``run.json``), so ``--resume`` continues only the
  same sweep. Code changes inside a function are not seen; array contents
  of a dataset neither (its name, sizes and shapes are).

  Examples:
    >>> import jaxsweep as js
    >>> from jaxsweep.engine import fingerprint, make_plan
    >>> c = js.engine.Components(model=js.models.MLP, optimizer=js.optim.sgd,
    ...                loss=js.losses.cross_entropy, data=js.data.load("synthetic"))
    >>> base = {"train.steps": 4, "train.batch_size": 8}
    >>> a = fingerprint.fingerprint(make_plan(c, base, [{"optimizer.learning_rate": 0.1}]))
    >>> a == fingerprint.fingerprint(make_plan(c, base, [{"optimizer.learning_rate": 0.1}]))
    True
    >>> a == fingerprint.fingerprint(make_plan(c, base, [{"optimizer.learning_rate": 0.2}]))
    False
  """
  comps = plan.components
  desc = {
      "components": {slot: _stable_name(getattr(comps, slot))
                     for slot in ("model", "optimizer", "loss", "data")},
      "metrics": sorted([str(n), _stable_name(f)] for n, f in (comps.metrics or {}).items()),
      "static": sorted(map(str, comps.static)),
      "vectorize": sorted(map(str, comps.vectorize)),
      "variants": [sorted([str(k), _stable_value(v)] for k, v in variant.items())
                   for variant in plan.variants],
  }
  return _digest(desc)


def program_identity(plan: plan_lib.Plan, group: plan_lib.Group,
                     train_data: dict[str, Any]) -> str:
  """What a group's program is, as a stable id (64 hex digits).

  The SHA-256 of the components' stable names (model, optimizer, loss,
  metrics, data), the group's static settings, the names of its traced
  settings and the shapes and dtypes of its training arrays: everything a
  compiled program depends on but the traced values. Two groups with the
  same identity compile to the same program.

  Args:
    plan: the plan (its components).
    group: one compile group of it.
    train_data: the group's training arrays (``dataset.train``).
  """
  comps = plan.components
  desc = {
      "components": {slot: _stable_name(getattr(comps, slot))
                     for slot in ("model", "optimizer", "loss", "data")},
      "metrics": sorted([str(n), _stable_name(f)] for n, f in (comps.metrics or {}).items()),
      "static": sorted([str(k), repr(keys.freeze(v))] for k, v in group.static.items()),
      "traced": sorted(map(str, group.traced)),
      "data": [[k, list(np.shape(a)), str(np.asarray(a).dtype)]
               for k, a in sorted(train_data.items())],
  }
  return _digest(desc)


def _digest(desc: dict) -> str:
  text = json.dumps(desc, sort_keys=True, separators=(",", ":"), default=repr)
  return hashlib.sha256(text.encode()).hexdigest()


def _stable_name(obj: Any) -> Any:
  """A name of a component that is the same in every process (no addresses)."""
  if obj is None:
    return None
  if isinstance(obj, registry.Registry):
    return f"registry:{obj.kind}"
  if isinstance(obj, data_lib.Dataset):
    return f"dataset:{obj.describe()}:{_stable_value(obj.info.get('augment'))}"
  if isinstance(obj, functools.partial):
    return ["partial", _stable_name(obj.func), [_stable_value(a) for a in obj.args],
            sorted([k, _stable_value(v)] for k, v in obj.keywords.items())]
  if isinstance(obj, (tuple, list)):
    return [_stable_name(o) for o in obj]
  qualname = getattr(obj, "__qualname__", None)
  if isinstance(qualname, str):  # Functions and classes.
    return f"{getattr(obj, '__module__', None)}.{qualname}"
  kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
  text = repr(obj)  # A module instance's fields, unless the repr holds an address.
  return kind if " at 0x" in text else f"{kind}:{text}"


def _stable_value(value: Any) -> Any:
  value = keys.freeze(value)
  if isinstance(value, tuple):
    return [_stable_value(v) for v in value]
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return _stable_name(value)
