"""Models: adapters from user code to pure ``(init, apply)``, and named models.

* :mod:`~jaxsweep.components.models.adapters`: Linen modules, factories,
  ``(init, apply)`` pairs and NNX models as :class:`ModelFns`.
* :mod:`~jaxsweep.components.models.layers`: activations (chosen per
  variant from a tuple of names), initializers, dropout with a traced rate.
* :mod:`~jaxsweep.components.models.masked`: masked width and depth, one
  compiled network padded to the widest variant (``ColumnDense``,
  ``ColumnConv``, ``width_table``, ``mask_init``, ``column_dropout``).
* :mod:`~jaxsweep.components.models.zoo`: ``mlp``, ``cnn``, ``rnn``,
  ``rnn_classifier`` by name.

Examples:
  >>> import jaxsweep as js
  >>> js.models.names()
  ['cnn', 'mlp', 'rnn', 'rnn_classifier']
"""

from jaxsweep.components.models.adapters import ModelFns
from jaxsweep.components.models.adapters import count_params
from jaxsweep.components.models.adapters import from_linen
from jaxsweep.components.models.adapters import from_nnx
from jaxsweep.components.models.adapters import from_pair
from jaxsweep.components.models.adapters import is_factory
from jaxsweep.components.models.adapters import to_model_fns
from jaxsweep.components.models.layers import ACTIVATIONS
from jaxsweep.components.models.layers import INITIALIZERS
from jaxsweep.components.models.layers import Activation
from jaxsweep.components.models.layers import activation
from jaxsweep.components.models.layers import apply_activation
from jaxsweep.components.models.layers import dropout
from jaxsweep.components.models.layers import initializer
from jaxsweep.components.models.layers import orthogonal
from jaxsweep.components.models.layers import switch_index
from jaxsweep.components.models import masked
from jaxsweep.components.models.masked import COLUMN_INITIALIZERS
from jaxsweep.components.models.masked import ColumnConv
from jaxsweep.components.models.masked import ColumnDense
from jaxsweep.components.models.masked import column_dropout
from jaxsweep.components.models.masked import column_init
from jaxsweep.components.models.masked import is_choice
from jaxsweep.components.models.masked import mask_init
from jaxsweep.components.models.masked import width_table
from jaxsweep.components.models.zoo import CELLS
from jaxsweep.components.models.zoo import CNN
from jaxsweep.components.models.zoo import MLP
from jaxsweep.components.models.zoo import POOLINGS
from jaxsweep.components.models.zoo import REGISTRY
from jaxsweep.components.models.zoo import RNN_POOLINGS
from jaxsweep.components.models.zoo import RNNClassifier
from jaxsweep.components.models.zoo import RecurrentLM
from jaxsweep.components.models.zoo import build
from jaxsweep.components.models.zoo import cnn
from jaxsweep.components.models.zoo import mlp
from jaxsweep.components.models.zoo import rnn
from jaxsweep.components.models.zoo import rnn_classifier

register = REGISTRY.register
names = REGISTRY.names
get = REGISTRY.get

__all__ = [
    "ACTIVATIONS", "Activation", "CELLS", "CNN", "COLUMN_INITIALIZERS", "ColumnConv",
    "ColumnDense", "INITIALIZERS", "MLP", "ModelFns", "column_dropout", "column_init",
    "is_choice", "mask_init", "masked", "width_table",
    "POOLINGS", "REGISTRY", "RNNClassifier", "RNN_POOLINGS", "RecurrentLM", "activation",
    "apply_activation", "build", "cnn", "count_params", "dropout", "from_linen", "from_nnx", "from_pair", "get",
    "initializer", "is_factory", "mlp", "names", "orthogonal", "register", "rnn",
    "rnn_classifier", "switch_index", "to_model_fns",
]
