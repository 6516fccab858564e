"""The engine: plan -> program -> execute, each stage taking the previous one's output.

* :mod:`~jaxsweep.engine.plan`: variants -> compile groups; static vs traced
  decided once per group (pure Python). :func:`make_plan` is
  :func:`jaxsweep.engine.structure.make_plan`, what :func:`jaxsweep.run`
  plans with: the planner, then each swept structural key grouped or
  vectorized (``Components(auto=False)``: every static key the user did not
  vectorize groups).
* :mod:`~jaxsweep.engine.program`: one group's per-variant program built,
  checked abstractly and compiled on the mesh.
* :mod:`~jaxsweep.engine.train`: the per-variant functions (``init``,
  ``period``, ``evaluate``), written for ONE variant and vmapped.
* :mod:`~jaxsweep.engine.execute`: the sweep's clock: every group trains to
  each boundary, where a scheduler (:mod:`~jaxsweep.engine.scheduling`) acts.
* :mod:`~jaxsweep.engine.sharding`, :mod:`~jaxsweep.engine.memory`,
  :mod:`~jaxsweep.engine.distributed`: devices, memory and hosts.

The names below are loaded on first use (PEP 562), as in :mod:`jaxsweep`:
importing one JAX-free module of the engine (:mod:`~jaxsweep.engine.ckptdir`,
which a run directory uses) does not import the rest, and with it JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxsweep import lazy

# Public name -> (module, attribute or None for the module itself).
_LAZY = {
    "Boundary": ("jaxsweep.engine.execute", "Boundary"),
    "Components": ("jaxsweep.engine.plan", "Components"),
    "Decision": ("jaxsweep.engine.execute", "Decision"),
    "Grid": ("jaxsweep.engine.execute", "Grid"),
    "RunState": ("jaxsweep.engine.train", "RunState"),
    "Scheduler": ("jaxsweep.engine.execute", "Scheduler"),
    "TrainSettings": ("jaxsweep.engine.train", "TrainSettings"),
    "device_data": ("jaxsweep.engine.program", "device_data"),
    "distributed": ("jaxsweep.engine.distributed", None),
    "execute": ("jaxsweep.engine.execute", None),
    "fingerprint": ("jaxsweep.engine.fingerprint", None),
    "make_plan": ("jaxsweep.engine.structure", "make_plan"),
    "make_train": ("jaxsweep.engine.train", "make_train"),
    "memory": ("jaxsweep.engine.memory", None),
    "plan": ("jaxsweep.engine.plan", None),
    "program": ("jaxsweep.engine.program", None),
    "scheduling": ("jaxsweep.engine.scheduling", None),
    "sharding": ("jaxsweep.engine.sharding", None),
    "sizing": ("jaxsweep.engine.sizing", None),
    "stack_hparams": ("jaxsweep.engine.plan", "stack_hparams"),
    "structure": ("jaxsweep.engine.structure", None),
    "train": ("jaxsweep.engine.train", None),
}

__all__ = [
    "Boundary", "Components", "Decision", "Grid", "RunState", "Scheduler", "TrainSettings",
    "device_data", "distributed", "execute", "fingerprint", "make_plan", "make_train",
    "memory", "plan", "program", "scheduling", "sharding", "sizing", "stack_hparams", "structure",
    "train",
]

if TYPE_CHECKING:  # What type checkers and IDEs see: the eager imports.
  from jaxsweep.engine import distributed
  from jaxsweep.engine import execute
  from jaxsweep.engine import fingerprint
  from jaxsweep.engine import memory
  from jaxsweep.engine import plan
  from jaxsweep.engine import program
  from jaxsweep.engine import scheduling
  from jaxsweep.engine import sharding
  from jaxsweep.engine import sizing
  from jaxsweep.engine import structure
  from jaxsweep.engine import train
  from jaxsweep.engine.execute import Boundary
  from jaxsweep.engine.execute import Decision
  from jaxsweep.engine.execute import Grid
  from jaxsweep.engine.execute import Scheduler
  from jaxsweep.engine.plan import Components
  from jaxsweep.engine.plan import stack_hparams
  from jaxsweep.engine.program import device_data
  from jaxsweep.engine.structure import make_plan
  from jaxsweep.engine.train import RunState
  from jaxsweep.engine.train import TrainSettings
  from jaxsweep.engine.train import make_train


__getattr__, __dir__ = lazy.attach(__name__, _LAZY, __all__)
