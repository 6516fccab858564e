"""A group's population on the devices, between two period boundaries.

The execution loop (:mod:`jaxsweep.engine.execute`) runs every chunk of a
group for one period, then hands the whole group's metrics to a scheduler,
which may stop variants, copy one variant's state into another (population
based training) or give variants new hyperparameter values. This module
holds the population and applies those decisions:

* **stop**: a variant is frozen (its periods are skipped from then on);
* **copy**: ``dst <- src``: the run state (parameters, model and optimizer
  state, step, status) of ``src`` is gathered into ``dst``'s slot on the
  devices; ``dst`` keeps its own random key;
* **assign**: new values of traced hyperparameters, written into the
  hparams arrays and ``opt_state.hyperparams``;
* **compact**: with several lanes per device (GPU/TPU), the live variants are
  packed into a smaller population, so stopped ones cost nothing; sizes halve,
  so a group compiles at most ``log2`` more programs. With one lane (CPU) a
  stopped variant already costs nothing (a real branch skips it), so nothing
  is compacted or recompiled.

Variants keep their bits through all of this: a variant's results depend on
the number of lanes only (see :func:`jaxsweep.engine.sharding.default_lanes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsweep import keys
from jaxsweep.engine import checkpoint as ckpt_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import sharding
from jaxsweep.engine import train as train_lib


@dataclasses.dataclass
class Chunk:
  """One compiled call's worth of variants.

  Attributes:
    members: the variant in each slot (plan index), ``None`` for padding.
    state: the run state on the devices (``None`` while parked on the host).
    hp: the hparams on the devices (``None`` while parked).
    parked: host arrays of state and hparams while another chunk trains.
  """

  members: list[int | None]
  state: Any = None
  hp: Any = None
  parked: Any = None

  @property
  def size(self) -> int:
    return len(self.members)


@jax.jit
def _stop(state, mask):
  """Marks the variants where ``mask`` is set as stopped at their current step."""
  newly = mask & ~state.stopped
  return state._replace(stopped=state.stopped | mask,
                        stopped_step=jnp.where(newly, state.step, state.stopped_step))


@jax.jit
def _gather(states, hps, sources):
  """Rows ``sources`` of the concatenated chunks, as one population."""
  cat = lambda *xs: jnp.concatenate(xs) if len(xs) > 1 else xs[0]
  state = jax.tree.map(lambda *xs: cat(*xs)[sources], *states)
  hp = jax.tree.map(lambda *xs: cat(*xs)[sources], *hps)
  return state, hp


@jax.jit
def _copy(state, hp, sources):
  """Row ``i`` replaced by row ``sources[i]``: the run state and the hparams,
  but for the variant's own random key and seed."""
  copied = jax.tree.map(lambda a: a[sources], state)._replace(key=state.key)
  new_hp = jax.tree.map(lambda a: a[sources], hp)
  return copied, {**new_hp, "seed": hp["seed"]}


@jax.jit
def _fork(state, seeds, salts, mask):
  """Where ``mask`` is set, the random key becomes ``fold_in(k, salt)``, ``k``
  the key the variant's seed started training with (so the stream after a
  fork depends on the seed and the salt alone, and a replay can fork alike)."""
  def forked(seed, salt):
    return jax.random.fold_in(train_lib.run_key(seed), salt)
  old = jax.random.key_data(state.key)
  new = jax.random.key_data(jax.vmap(forked)(seeds, salts))
  m = mask.reshape(mask.shape + (1,) * (old.ndim - 1))
  return state._replace(key=jax.random.wrap_key_data(
      jnp.where(m, new, old), impl=jax.random.key_impl(state.key)))


@jax.jit
def _assign(state, hp, mask, values):
  """Writes ``values`` (an hparams-shaped tree) where ``mask`` is set."""
  def pick(old, new):
    m = mask.reshape(mask.shape + (1,) * (old.ndim - 1))
    return jnp.where(m, new.astype(old.dtype), old)
  hp = jax.tree.map(pick, hp, values)
  opt_state = state.opt_state
  if values.get("optimizer") and hasattr(opt_state, "hyperparams"):
    hyper = dict(opt_state.hyperparams)
    for k, v in values["optimizer"].items():
      if k in hyper:
        hyper[k] = pick(hyper[k], v)
    opt_state = opt_state._replace(hyperparams=hyper)
  return state._replace(opt_state=opt_state), hp


class Population:
  """A group's variants in chunks on the devices, at a period boundary.

  Args:
    plan, group, built: the group and its program.
    mesh: the devices.
    lanes: variants vmapped together per device.
    data: the group's data on the devices.
    compile_for: ``size -> compiled`` (a :class:`~jaxsweep.engine.program.Compiled`
      for chunks of that size).
  """

  def __init__(self, plan: plan_lib.Plan, group: plan_lib.Group, built, mesh, lanes: int,
               data, compile_for):
    self.plan, self.group, self.built, self.mesh, self.lanes = plan, group, built, mesh, lanes
    self.data, self.compile_for = data, compile_for
    self.chunks: list[Chunk] = []
    self._flags: dict[int, Any] = {}  # Steps -> the period's train argument, placed.

  # ------------------------------------------------------------------ build
  def start(self, variants: Sequence[int], size: int) -> None:
    """Initialises ``variants`` in chunks of ``size`` (the last one padded)."""
    for c0 in range(0, len(variants), size):
      members = list(variants[c0:c0 + size])
      hp = sharding.put_population(
          sharding.pad(plan_lib.stack_hparams(self.plan, self.group, members), size), self.mesh)
      state = self.compile_for(size).init(hp, self.data)
      chunk = Chunk(members + [None] * (size - len(members)), state, hp)
      self._stop_padding(chunk)
      self.chunks.append(chunk)
    self._park_all_but(None)

  def restore(self, entries: Sequence[tuple[Sequence[int | None], Any]]) -> None:
    """Chunks saved by :meth:`host_arrays` (members, host arrays)."""
    for members, arrays in entries:
      state, hp = self._place(arrays, len(members))
      self.chunks.append(Chunk(list(members), state, hp))
    self._park_all_but(None)

  def abstract(self, size: int) -> dict:
    """Shape structs of a chunk's ``{"state", "hp"}`` at ``size`` slots."""
    hp = program_lib.abstract_population(self.plan, self.group, size, self.mesh)
    return {"state": self.compile_for(size).state, "hp": hp}

  def _place(self, arrays, size: int):
    placed = ckpt_lib.from_host(arrays, self.abstract(size),
                                lambda t: sharding.put_population(t, self.mesh))
    return placed["state"], placed["hp"]

  def _stop_padding(self, chunk: Chunk) -> None:
    mask = np.asarray([m is None for m in chunk.members])
    if mask.any():
      chunk.state = _stop(chunk.state, sharding.put_population(mask, self.mesh))

  # ------------------------------------------------------------ memory
  def _park_all_but(self, keep: Chunk | None) -> None:
    """With several chunks, only the one training stays on the devices."""
    if len(self.chunks) < 2:
      return
    for chunk in self.chunks:
      if chunk is not keep and chunk.state is not None:
        chunk.parked = ckpt_lib.to_host({"state": chunk.state, "hp": chunk.hp})
        chunk.state = chunk.hp = None

  def _unpark(self, chunk: Chunk) -> None:
    if chunk.state is None:
      chunk.state, chunk.hp = self._place(chunk.parked, chunk.size)
      chunk.parked = None

  # ------------------------------------------------------------ training
  def _flag(self, steps: int):
    """The period's ``train`` argument for ``steps`` steps, placed once."""
    if steps not in self._flags:
      self._flags[steps] = program_lib.train_flag(int(steps), self.mesh)
    return self._flags[steps]

  @property
  def variants(self) -> list[int]:
    """Every variant still in the population, in slot order."""
    return [m for c in self.chunks for m in c.members if m is not None]

  def run(self, *, steps: int
          ) -> tuple[dict[int, dict], dict[int, tuple[bool, bool]]]:
    """One period of every chunk: ``steps`` steps (at most ``eval_every``; 0:
    the evaluation at step 0), then an evaluation.

    Returns:
      ``(stats, flags)``: variant -> its metrics (floats), and variant ->
      ``(diverged, stopped)``.
    """
    stats, flags = {}, {}
    for chunk in self.chunks:
      self._unpark(chunk)
      compiled = self.compile_for(chunk.size)
      chunk.state, out = compiled.period(chunk.state, chunk.hp, self.data, self._flag(steps))
      host = sharding.to_host({"stats": out, "diverged": chunk.state.diverged,
                               "stopped": chunk.state.stopped})
      for j, v in enumerate(chunk.members):
        if v is not None:
          stats[v] = {k: float(a[j]) for k, a in host["stats"].items()}
          flags[v] = (bool(host["diverged"][j]), bool(host["stopped"][j]))
      self._park_all_but(chunk)
    return stats, flags

  def stop(self, variants: Sequence[int]) -> None:
    targets = set(variants)
    for chunk in self.chunks:
      mask = np.asarray([m in targets for m in chunk.members])
      if mask.any():
        self._unpark(chunk)
        chunk.state = _stop(chunk.state, sharding.put_population(mask, self.mesh))
        self._park_all_but(None)

  def assign(self, values: Mapping[int, Mapping[str, float]]) -> None:
    """New traced values per variant: ``{variant: {"optimizer.learning_rate": v}}``."""
    for chunk in self.chunks:
      rows = [(j, values[m]) for j, m in enumerate(chunk.members) if m in values]
      if not rows:
        continue
      self._unpark(chunk)
      new = jax.tree.map(np.array, sharding.to_host(chunk.hp))
      mask = np.zeros(chunk.size, bool)
      for j, vals in rows:
        mask[j] = True
        for key, v in vals.items():
          path = plan_lib.hparam_path(keys.parse(key))
          target = new
          for p in path[:-1]:
            target = target[p]
          target[path[-1]][j] = v
      chunk.state, chunk.hp = _assign(chunk.state, chunk.hp,
                                      sharding.put_population(mask, self.mesh),
                                      sharding.put_population(new, self.mesh))
      self._park_all_but(None)

  def copy(self, pairs: Mapping[int, int]) -> None:
    """``{dst: src}``: each ``dst`` continues from ``src``'s state (its own key)."""
    if not pairs:
      return
    for chunk in self.chunks:
      self._unpark(chunk)
    where = {m: (c, j) for c, chunk in enumerate(self.chunks)
             for j, m in enumerate(chunk.members) if m is not None}
    if len(self.chunks) == 1:
      chunk = self.chunks[0]
      sources = np.arange(chunk.size)
      for dst, src in pairs.items():
        sources[where[dst][1]] = where[src][1]
      chunk.state, chunk.hp = _copy(chunk.state, chunk.hp,
                                    sharding.put_population(sources, self.mesh))
    else:
      offsets = np.cumsum([0] + [c.size for c in self.chunks])
      states, hps = [ch.state for ch in self.chunks], [ch.hp for ch in self.chunks]
      for c, chunk in enumerate(self.chunks):
        local = [(j, pairs[m]) for j, m in enumerate(chunk.members) if m in pairs]
        if not local:
          continue
        sources = np.arange(chunk.size) + offsets[c]
        for j, src in local:
          sc, sj = where[src]
          sources[j] = offsets[sc] + sj
        state, hp = _gather(states, hps, sharding.put_population(sources, self.mesh))
        chunk.state = state._replace(key=chunk.state.key)
        chunk.hp = {**hp, "seed": chunk.hp["seed"]}
    self._park_all_but(None)

  def fork(self, salts: Mapping[int, int]) -> None:
    """``{variant: salt}``: each variant's random stream forks (:func:`_fork`)."""
    for chunk in self.chunks:
      rows = [(j, salts[m]) for j, m in enumerate(chunk.members) if m in salts]
      if not rows:
        continue
      self._unpark(chunk)
      mask, values = np.zeros(chunk.size, bool), np.zeros(chunk.size, np.uint32)
      for j, salt in rows:
        mask[j], values[j] = True, salt
      chunk.state = _fork(chunk.state, chunk.hp["seed"],
                          sharding.put_population(values, self.mesh),
                          sharding.put_population(mask, self.mesh))
      self._park_all_but(None)

  def park(self) -> None:
    """Every chunk to the host, until the group's next turn (:meth:`run` brings
    each back)."""
    for chunk in self.chunks:
      if chunk.state is not None:
        chunk.parked = ckpt_lib.to_host({"state": chunk.state, "hp": chunk.hp})
        chunk.state = chunk.hp = None

  def compact(self, halted: Mapping[int, bool]) -> list[int]:
    """Packs the live variants into fewer slots (with more than one lane).

    Returns:
      The variants that left the population (their arrays must be fetched
      with :meth:`host_rows` first; this does it and returns them).
    """
    live = [v for v in self.variants if not halted.get(v, False)]
    total = sum(c.size for c in self.chunks)
    size = max(c.size for c in self.chunks)
    target = sharding.population_size(max(len(live), 1), self.mesh.devices.size, self.lanes)
    bucket = size
    while bucket // 2 >= target and bucket // 2 >= sharding.population_size(
        1, self.mesh.devices.size, self.lanes):
      bucket //= 2
    if self.lanes == 1 or (bucket == size and -(-len(live) // size) * size >= total):
      return []
    where = {m: (c, j) for c, chunk in enumerate(self.chunks)
             for j, m in enumerate(chunk.members) if m is not None}
    for chunk in self.chunks:
      self._unpark(chunk)
    offsets = np.cumsum([0] + [c.size for c in self.chunks])
    new_chunks = []
    for c0 in range(0, max(len(live), 1), bucket):
      members = live[c0:c0 + bucket]
      rows = [offsets[where[m][0]] + where[m][1] for m in members]
      rows += [rows[0] if rows else 0] * (bucket - len(members))
      state, hp = _gather([ch.state for ch in self.chunks], [ch.hp for ch in self.chunks],
                          sharding.put_population(np.asarray(rows), self.mesh))
      chunk = Chunk(members + [None] * (bucket - len(members)), state, hp)
      self._stop_padding(chunk)
      new_chunks.append(chunk)
    left = [v for v in self.variants if v not in set(live)]
    self.chunks = new_chunks
    self._park_all_but(None)
    return left

  # ------------------------------------------------------------ results
  def host_arrays(self) -> list[tuple[list[int | None], Any]]:
    """Every chunk's members and host arrays (``{"state", "hp"}``), for a checkpoint."""
    out = []
    for chunk in self.chunks:
      arrays = chunk.parked if chunk.state is None else ckpt_lib.to_host(
          {"state": chunk.state, "hp": chunk.hp})
      out.append((list(chunk.members), arrays))
    return out

  def trained(self, variants: Sequence[int] | None = None) -> list[tuple[list[int], Any]]:
    """Host arrays of trained variables and status flags, per chunk.

    Returns:
      ``[(members, arrays)]`` where ``arrays`` holds ``params``,
      ``model_state`` and ``flags`` of every slot, and ``members`` the variant
      of each slot (``None`` for padding or variants not asked for).
    """
    wanted = set(self.variants if variants is None else variants)
    out = []
    for members, arrays in self.host_arrays():
      if not wanted & set(members):
        continue
      state = arrays["state"]
      out.append(([m if m in wanted else None for m in members],
                   {"params": state.params, "model_state": state.model_state,
                    "flags": {"step": state.step, "diverged": state.diverged,
                              "diverged_step": state.diverged_step,
                              "stopped": state.stopped,
                              "stopped_step": state.stopped_step}}))
    return out

