"""Datasets: in-memory arrays with train, validation and test splits.

* :mod:`~jaxsweep.components.data.dataset`: :class:`Dataset`, ``arrays`` (your
  own arrays), holding out a validation split, the registry and ``load``.
* :mod:`~jaxsweep.components.data.builtin`: ``digits``, ``synthetic``,
  ``regression``, ``text`` (character-level language modelling), ``npz``.
* :mod:`~jaxsweep.components.data.images`: ``mnist``, ``fashion_mnist``,
  ``cifar10``, ``cifar100`` from the files you downloaded (or tfds /
  Hugging Face when installed).
* :mod:`~jaxsweep.components.data.textcls`: ``text_classification`` from a
  CSV, a JSONL file or a folder per class, with a word or character
  tokenizer.
* :mod:`~jaxsweep.components.data.augment`: random crops and flips drawn
  per variant and step inside the compiled training step.

The engine puts the arrays on every device once and passes them to the
compiled program as an un-batched argument, so a population of variants
never copies the data per variant; minibatch indices are drawn inside the
compiled program from each variant's key. The engine loads a registered
dataset with :func:`~jaxsweep.components.data.dataset.load_cached`: the 8
most recently used, each keyed on its arguments and on the files they name
(path, size, modification time), so an edited file is read again;
:func:`~jaxsweep.components.data.dataset.clear_cache` empties it.

Examples:
  >>> import jaxsweep as js
  >>> ds = js.data.load("digits")
  >>> ds.num_train, ds.num_val, ds.num_test
  (1295, 143, 359)
"""

from jaxsweep.components.data import augment
from jaxsweep.components.data import builtin
from jaxsweep.components.data import dataset
from jaxsweep.components.data import images
from jaxsweep.components.data import textcls
from jaxsweep.components.data.augment import with_augment
from jaxsweep.components.data.builtin import NPZ_KEYS
from jaxsweep.components.data.builtin import UNKNOWN_CHAR
from jaxsweep.components.data.builtin import decode
from jaxsweep.components.data.dataset import REGISTRY
from jaxsweep.components.data.dataset import TASKS
from jaxsweep.components.data.dataset import VAL_FRACTION
from jaxsweep.components.data.dataset import Dataset
from jaxsweep.components.data.dataset import arrays
from jaxsweep.components.data.dataset import check_array
from jaxsweep.components.data.dataset import check_finite
from jaxsweep.components.data.dataset import clear_cache
from jaxsweep.components.data.dataset import first_example
from jaxsweep.components.data.dataset import hold_out
from jaxsweep.components.data.dataset import load
from jaxsweep.components.data.dataset import load_cached
from jaxsweep.components.data.dataset import split
from jaxsweep.components.data.textcls import encode_texts

register = REGISTRY.register
names = REGISTRY.names
loader = REGISTRY.get

__all__ = [
    "Dataset", "NPZ_KEYS", "REGISTRY", "TASKS", "UNKNOWN_CHAR", "VAL_FRACTION", "arrays",
    "augment", "builtin", "check_array", "check_finite", "clear_cache", "dataset", "decode",
    "encode_texts",
    "first_example", "hold_out", "images", "load", "load_cached", "loader", "names",
    "register", "split", "textcls", "with_augment",
]
