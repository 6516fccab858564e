"""Lineage: what a scheduler did to a variant (PBT's copies, forks and values).

:attr:`jaxsweep.results.Results.lineage` records, per variant, every copy
(``from``), fork of its random stream (``fork``) and new value (``set``) a
scheduler gave it, with the step. These functions read it back: the
schedule a PBT member's weights followed (which ``method: replay`` retrains
bit for bit) and the member its weights started from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def schedule_of(lineage: Mapping[int, Sequence[Mapping]], variant: int,
                initial: Mapping[int, Mapping[str, float]]) -> list[dict]:
  """The hyperparameter schedule a PBT member followed, ancestors included.

  A member's parameters came from the members it copied; its schedule is
  theirs up to each copy, then its own values.

  Args:
    lineage: ``Results.lineage`` (variant -> copies and values over steps).
    variant: the member.
    initial: variant -> its values at step 0 (its settings).

  Returns:
    ``[{"step": 0, "set": {...}}, {"step": s, "set": {...}, "fork": salt}, ...]``
    (``fork``: where the member's random stream forked, see
    :class:`jaxsweep.engine.scheduling.Decision`).

  Examples:
    >>> lineage = {1: [{"step": 20, "from": 0}, {"step": 20, "set": {"lr": 0.5}}]}
    >>> schedule_of(lineage, 1, {0: {"lr": 0.1}, 1: {"lr": 0.2}})
    [{'step': 0, 'set': {'lr': 0.1}}, {'step': 20, 'set': {'lr': 0.5}}]
  """
  events: list[dict] = []
  current, until = variant, math.inf
  while True:
    own = [e for e in lineage.get(current, []) if e["step"] < until]
    copies = [e for e in own if "from" in e]
    last_copy = copies[-1] if copies else None
    since = last_copy["step"] if last_copy else -1
    events = [{"step": e["step"], "set": dict(e.get("set", {})),
               **({"fork": e["fork"]} if "fork" in e else {})} for e in own
              if ("set" in e or "fork" in e) and e["step"] >= since] + events
    if last_copy is None:
      events.insert(0, {"step": 0, "set": dict(initial[current])})
      break
    current, until = last_copy["from"], last_copy["step"]
  merged: dict[int, dict] = {}
  for e in events:
    entry = merged.setdefault(e["step"], {"step": e["step"], "set": {}})
    entry["set"].update(e["set"])
    if "fork" in e:
      entry["fork"] = e["fork"]
  return [merged[s] for s in sorted(merged)]


def root_of(lineage: Mapping[int, Sequence[Mapping]], variant: int) -> int:
  """The member whose initialisation a PBT member's weights are (follows copies back).

  Its settings are the replayed run's: along a chain of copies every value
  not explored is the root's, and seed ``s`` copies seed ``s``.
  """
  current, until = variant, math.inf
  while True:
    copies = [e for e in lineage.get(current, []) if "from" in e and e["step"] < until]
    if not copies:
      return current
    current, until = copies[-1]["from"], copies[-1]["step"]
