"""Type aliases shared across jaxsweep (as optax/_src/base.py and chex do)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

Array = jax.Array
PyTree = Any
Params = PyTree
Variables = Mapping[str, PyTree]  # Flax collections: {"params": ..., "batch_stats": ...}
PRNGKey = jax.Array               # a typed key from jax.random.key
Batch = Mapping[str, Array]       # {"x": inputs, "y": targets}, leading axis = examples
HParams = Mapping[str, Any]       # one variant's hyperparameters (scalars)
LossFn = Callable[..., Array]     # (outputs, batch, **hparams) -> scalar
MetricFn = Callable[[Array, Batch], Array]  # (outputs, batch) -> scalar or [B]
