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
from jaxsweep.results import Results

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Results",
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
