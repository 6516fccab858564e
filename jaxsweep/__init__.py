"""jaxsweep: train a whole population of hyperparameter variants at once.

Value hyperparameters (learning rate, weight decay, seed, ...) become arrays
with a leading variant axis and ``jax.vmap`` trains all variants in one
compiled program; structural ones (width, depth, activation, ...) split the
sweep into compile groups.

The public names below are loaded on first use (PEP 562): ``import jaxsweep``
itself imports neither JAX nor Flax, so the ``jaxsweep`` command answers
``--help`` at once, and ``js.run`` pays for JAX only when it is called.

Examples:
  >>> import jaxsweep as js
  >>> "mlp" in js.models.names() and "adam" in js.optim.names()
  True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxsweep import lazy

__version__ = "0.1.0"

# Public name -> (module, attribute or None for the module itself).
_LAZY = {
    "ConfigError": ("jaxsweep.errors", "ConfigError"),
    "Results": ("jaxsweep.results", "Results"),
    "RunOptions": ("jaxsweep.options", "RunOptions"),
    "api": ("jaxsweep.api", None),
    "config": ("jaxsweep.config", None),
    "data": ("jaxsweep.components.data", None),
    "distributed": ("jaxsweep.engine.distributed", None),
    "engine": ("jaxsweep.engine", None),
    "errors": ("jaxsweep.errors", None),
    "keys": ("jaxsweep.keys", None),
    "losses": ("jaxsweep.components.losses", None),
    "make_train": ("jaxsweep.engine.train", "make_train"),
    "models": ("jaxsweep.components.models", None),
    "optim": ("jaxsweep.components.optim", None),
    "report": ("jaxsweep.report", None),
    "results": ("jaxsweep.results", None),
    "run": ("jaxsweep.api", "run"),
    "run_config": ("jaxsweep.api", "run_config"),
    "sharding": ("jaxsweep.engine.sharding", None),
    "space": ("jaxsweep.space", None),
}

__all__ = [
    "ConfigError",
    "Results",
    "RunOptions",
    "api",
    "config",
    "data",
    "distributed",
    "engine",
    "errors",
    "keys",
    "losses",
    "make_train",
    "models",
    "optim",
    "report",
    "results",
    "run",
    "run_config",
    "sharding",
    "space",
]

if TYPE_CHECKING:  # What type checkers and IDEs see: the eager imports.
  from jaxsweep import api
  from jaxsweep import config
  from jaxsweep import engine
  from jaxsweep import errors
  from jaxsweep import keys
  from jaxsweep import report
  from jaxsweep import results
  from jaxsweep import space
  from jaxsweep.api import run
  from jaxsweep.api import run_config
  from jaxsweep.components import data
  from jaxsweep.components import losses
  from jaxsweep.components import models
  from jaxsweep.components import optim
  from jaxsweep.engine import distributed
  from jaxsweep.engine import sharding
  from jaxsweep.engine.train import make_train
  from jaxsweep.errors import ConfigError
  from jaxsweep.options import RunOptions
  from jaxsweep.results import Results


__getattr__, __dir__ = lazy.attach(__name__, _LAZY, __all__)
