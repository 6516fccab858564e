"""Sweep grammar: which hyperparameter variants a run trains.

A *sweep* maps dotted config paths (``optimizer.learning_rate``, ``seed``) to
the values they take. :func:`expand` turns it into an ordered list of
*variants*, plain dicts ``{path: value}`` whose values are Python scalars,
strings, booleans, ``None`` or tuples (lists become tuples, numpy scalars
become Python ones), so variants are hashable and print cleanly. The same
sweep expands to the same variants, in the same order, on every machine.

Python API::

  from jaxsweep import space
  sweep = space.product({
      "optimizer.learning_rate": space.log_uniform(1e-4, 1.0, num=16),
      "model.activation": ["relu", "tanh"],
  }, space.seeds(3))
  variants = space.expand(sweep)  # 16 * 2 * 3 = 96 dicts

YAML grammar (the ``sweep:`` section of a config; :func:`parse`)::

  sweep:
    optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0], num: 16}  # log grid
    model.activation: [relu, tanh]                    # values (also {values: [..]})
    model.features: [[64], [128, 128]]                # list values -> tuples
    train.steps: 1000                                 # a scalar is one fixed value
    weight: {uniform: [0, 1], samples: 8, seed: 0}    # 8 seeded random draws
    model.depth: {int_uniform: [1, 4]}                # every int 1..4 (or num: N)
    data.name: {choice: [digits, synthetic]}          # like values
    seed: [0, 1, 2]                                   # or  seeds: 3

* Several keys in one mapping form a Cartesian product; the first key varies
  slowest (like ``itertools.product``). ``seed`` (and ``seeds:``) is always
  crossed last, i.e. varies fastest, wherever it is written.
* A value under a key is: a list (values), a scalar (fixed), or a mapping with
  exactly one of ``values``, ``choice``, ``fixed``, ``uniform``,
  ``log_uniform``, ``int_uniform``; distributions take ``[low, high]`` and
  either ``num: N`` (grid with both endpoints, log-spaced for
  ``log_uniform``, rounded and deduplicated for ``int_uniform``) or
  ``samples: N`` (random draws; ``seed`` defaults to one derived from the
  key). ``int_uniform`` with neither means every integer in the range.
* To set a list-valued key to one value, write ``{fixed: [64, 64]}`` or
  ``[[64, 64]]``: a bare list always means "sweep over these values".
* Strings such as ``1e-3`` (which PyYAML reads as text) are read as floats.
* Reserved keys (not config paths):

  - ``product: [sweep, ...]`` -- Cartesian product of sub-sweeps.
  - ``zip: [sweep, ...]`` or ``zip: {key: [..], key: [..]}`` -- lockstep; all
    sides must have the same length.
  - ``chain: [sweep, ...]`` -- concatenation; each branch may set different
    keys, which is one way to write conditional parameters.
  - ``random: {params: {...}, samples: N, seed: 0, method: random}`` -- joint
    random search over every distribution in ``params`` (no ``num``/
    ``samples`` inside); lists inside are sampled as ``choice``, scalars are
    fixed. ``method`` is ``random``, ``sobol`` or ``halton`` (scrambled,
    seeded quasi-random points, via ``scipy.stats.qmc``).
  - ``seeds: N`` (seeds ``0..N-1``) or ``seeds: [list]`` -- the ``seed`` key.
  - ``when: {if: {key: value}, then: sweep}`` (or a list of them), or a
    mapping ``{if: ..., then: ...}`` inside ``product:`` -- a conditional
    sub-sweep crossed only into the variants whose keys match the condition
    (a list of values in the condition means "any of"); the other variants
    simply lack its keys. Conditions test keys set by the rest of the same
    product; a condition that never holds is an error.
  - ``fixed: {key: value, ...}`` -- settings taken literally (lists included).

Conditional example::

  sweep:
    optimizer.name: [sgd, adam]
    optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-1], num: 4}
    when:
      if: {optimizer.name: sgd}
      then: {optimizer.momentum: [0.0, 0.9]}

Command-line overrides (:func:`parse_overrides`) use Hydra's ``key=value``
with ``key=v1,v2,...`` for a product axis; W&B sweep files are read by
:func:`from_wandb` (the variants) and :func:`read_wandb` (method, metric
and early_terminate too).

Modules, each importing only those above it:

* :mod:`~jaxsweep.space.domains` -- what one key takes: values and
  distributions (:class:`Domain`), their checks and value normalization.
* :mod:`~jaxsweep.space.nodes` -- the sweep tree (:class:`Sweep`) and its
  structure: keys, length, crossing order.
* :mod:`~jaxsweep.space.grammar` -- the combinators and dicts -> trees
  (:func:`parse`).
* :mod:`~jaxsweep.space.expansion` -- trees -> variants (:func:`expand`,
  random/Sobol/Halton sampling) and :func:`variant_id`.
* :mod:`~jaxsweep.space.introspect` -- :func:`keys`, :func:`describe`,
  :func:`is_log_scaled`, :func:`is_sampled`.
* :mod:`~jaxsweep.space.unparse` -- trees back to the YAML grammar
  (:func:`unparse`, so a run's ``config.yaml`` holds its whole sweep).
* :mod:`~jaxsweep.space.yaml12`, :mod:`~jaxsweep.space.overrides`,
  :mod:`~jaxsweep.space.wandb` -- YAML 1.2 loading, command-line overrides,
  W&B sweep files.
"""

from jaxsweep.space.domains import (
    Choice,
    Domain,
    Fixed,
    IntUniform,
    LogUniform,
    Uniform,
    Values,
    choice,
    int_uniform,
    log_uniform,
    uniform,
    values,
)
from jaxsweep.space.expansion import DEFAULT_MAX_VARIANTS, expand, variant_id
from jaxsweep.space.grammar import (
    SPECIAL_KEYS,
    chain,
    fixed,
    parse,
    product,
    random,
    seeds,
    when,
    zip,
)
from jaxsweep.space.introspect import describe, is_log_scaled, is_sampled, keys
from jaxsweep.space.nodes import METHODS, Axis, Chain, Product, Random, Sweep, When, Zip
from jaxsweep.space.overrides import parse_overrides
from jaxsweep.space.unparse import plain_sweep, unparse
from jaxsweep.space.wandb import from_wandb, read_wandb
from jaxsweep.space.yaml12 import load_yaml

__all__ = [
    "DEFAULT_MAX_VARIANTS",
    "METHODS",
    "SPECIAL_KEYS",
    "Axis",
    "Chain",
    "Choice",
    "Domain",
    "Fixed",
    "IntUniform",
    "LogUniform",
    "Product",
    "Random",
    "Sweep",
    "Uniform",
    "Values",
    "When",
    "Zip",
    "chain",
    "choice",
    "describe",
    "expand",
    "fixed",
    "from_wandb",
    "int_uniform",
    "is_log_scaled",
    "is_sampled",
    "keys",
    "load_yaml",
    "log_uniform",
    "parse",
    "parse_overrides",
    "plain_sweep",
    "product",
    "random",
    "read_wandb",
    "seeds",
    "uniform",
    "unparse",
    "values",
    "variant_id",
    "when",
    "zip",
]
