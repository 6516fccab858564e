"""Placing a population on devices: one mesh axis, ``"sweep"``.

Population arrays (hyperparameters, run state, metrics) carry a leading
variant axis and are sharded along ``"sweep"``; data is replicated. Variants
never interact, so the compiled step needs no collective on that axis. A
population whose size is not a multiple of the device count is padded with
inert copies of its first variant, which the engine drops from the results.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "sweep"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  # jax.sharding.Mesh defaults to Auto axes (jax.make_mesh to Explicit): jit
  # propagates the population sharding through the program by itself.
  return Mesh(np.array(devices), (AXIS,))


def population(mesh: Mesh) -> NamedSharding:
  """Sharding of arrays with a leading variant axis."""
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of arrays shared by all variants (the data)."""
  return NamedSharding(mesh, P())


def padded_size(num: int, multiple: int) -> int:
  """Smallest multiple of ``multiple`` that is >= num."""
  return -(-num // multiple) * multiple


def pad(tree, size: int):
  """Pads the leading axis of every leaf to ``size`` by repeating row 0.

  Repeating a real variant (rather than zeros) keeps padded variants inert
  and finite: they train a copy of variant 0 and are dropped afterwards.
  """
  def pad_leaf(x):
    x = np.asarray(x)
    n = x.shape[0]
    if n == size:
      return x
    filler = np.repeat(x[:1], size - n, axis=0)
    return np.concatenate([x, filler], axis=0)
  return jax.tree.map(pad_leaf, tree)


def put_population(tree, mesh: Mesh):
  """Places a stacked pytree with its variant axis split over the mesh."""
  sharding = population(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(
          np.shape(x), sharding, lambda idx, x=x: np.asarray(x)[idx]), tree)


def put_replicated(tree, mesh: Mesh):
  """Places data once per device, shared by every variant."""
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(
          np.shape(x), sharding, lambda idx, x=x: np.asarray(x)[idx]), tree)


def to_host(tree):
  """Fetches a (possibly multi-process) population pytree as numpy arrays."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, jax.device_get(tree))

