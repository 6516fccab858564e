"""The pieces a sweep is made of: models, losses, optimizers and data.

Each kind has one :class:`~jaxsweep.components.registry.Registry` of the
names config files use (``model: {name: mlp}``); the Python API also takes
the user's own Flax modules, Optax factories, loss functions and arrays.
"""

from jaxsweep.components import data
from jaxsweep.components import losses
from jaxsweep.components import models
from jaxsweep.components import optim
from jaxsweep.components import registry

__all__ = ["data", "losses", "models", "optim", "registry"]
