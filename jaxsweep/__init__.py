"""jaxsweep: train a whole population of hyperparameter variants at once.

Value hyperparameters (learning rate, weight decay, seed, ...) become arrays
with a leading variant axis and ``jax.vmap`` trains all variants in one
compiled program; structural ones (width, depth, activation, ...) split the
sweep into compile groups.

Examples:
  >>> import jaxsweep as js
  >>> "mlp" in js.models.names() and "adam" in js.optim.names()
  True
"""

from jaxsweep import config
from jaxsweep import data
from jaxsweep import distributed
from jaxsweep import engine
from jaxsweep import errors
from jaxsweep import losses
from jaxsweep import memory
from jaxsweep import models
from jaxsweep import optim
from jaxsweep import results
from jaxsweep import sharding
from jaxsweep import space
from jaxsweep import train
from jaxsweep.api import run
from jaxsweep.engine import device_data, stack_hparams
from jaxsweep.errors import ConfigError
from jaxsweep.results import Results
from jaxsweep.train import make_train

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Results",
    "config",
    "data",
    "device_data",
    "distributed",
    "engine",
    "errors",
    "losses",
    "make_train",
    "memory",
    "models",
    "optim",
    "results",
    "run",
    "sharding",
    "space",
    "stack_hparams",
    "train",
]
