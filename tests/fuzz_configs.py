"""Mutation fuzzing of the shipped configs through what ``jaxsweep plan`` does.

Each case is one of the configs in ``configs/`` with one to three mutations
(a value's type changed, a key dropped or misspelt, an extreme number, a
section nested wrongly, an alias or a YAML tag in the text, an override),
drawn with a fixed seed. :func:`run_case` loads it and plans it as the CLI's
``plan`` does (config loading, variants -> groups, the data loaded and one
variant traced abstractly for the memory estimate; nothing trained or
compiled), under a time limit, and classifies the outcome:

* ``error``: a :class:`jaxsweep.errors.ConfigError` (the project's own errors);
* ``ok``: planned;
* ``traceback``: any other exception;
* ``hang``: the time limit passed;
* ``warning``: planned, but with a raw ``RuntimeWarning`` on the way (a
  value silently overflowed or became NaN: an input that was coerced, not
  checked).

Run as a script to print the outcome counts and every traceback or hang::

  python -m tests.fuzz_configs [NUM_CASES] [SEED]
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import os
import random
import signal
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any

import yaml

from jaxsweep import config as config_lib
from jaxsweep import errors
from jaxsweep import report
from jaxsweep.engine import structure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))

EXTREME = [1e308, -1e308, float("nan"), float("inf"), -float("inf"), 2**63, -2**63, 2**31,
           1e-320, -0.0, 1e39, 10**20, 0, -1, 1.5, 6e10, 100_000, 2**24 + 1]
OTHER_TYPES = ["text", "", 3, -1, 0, 1.5, True, False, None, [], {}, "1e-3", [1, "a"],
               {"name": "x"}, [[1]]]
TAGS = ["!!timestamp 2020-01-01", "!!binary aGVsbG8=", "!!set {a: null}", "!!float 1e-3",
        "!!str 5", "!!python/none ''", "!!omap [{a: 1}]", "2024-01-01", "0x10", "1_000"]
OVERRIDES = ["model.features=[1e308]", "loss.label_smoothing=6e10", "seed=[0,-0.0,2]",
             "optimizer.learning_rate=0", "train.batch_size=100000",
             "optimizer.learning_rate={log_uniform: [1e-4, 1e-1], num: 4}",
             "seed=1.5", "train.steps=-1", "model.features=[]", "optimizer.b1=1.0",
             "optimizer.learning_rate=1e-3,1e-3", "data.name=nope", "seed=0,1",
             "optimizer.learning_rate=.nan", "train.eval_every=0", "model.activation=relu,tanh"]


@dataclasses.dataclass
class Case:
  """One fuzz case: a mutated config (as a dict, or as YAML text), overrides."""
  name: str
  raw: dict | None = None
  text: str | None = None
  overrides: tuple[str, ...] = ()


# The outcomes a case must never have.
FAILURES = ("traceback", "hang", "warning")


@dataclasses.dataclass
class Outcome:
  kind: str  # ok | error | traceback | hang | warning
  seconds: float
  detail: str = ""


class _Timeout(BaseException):  # Not an Exception: the code under test cannot catch it.
  pass


def _alarm(signum, frame):
  del signum, frame  # Unused.
  raise _Timeout()


def plan(case: Case, tmp_dir: str) -> str:
  """Loads and plans a case as ``jaxsweep plan`` does; returns its report."""
  path = None
  if case.text is not None:
    path = os.path.join(tmp_dir, "case.yaml")
    with open(path, "w", encoding="utf-8") as f:
      f.write(case.text)
  cfg = config_lib.load(path, list(case.overrides), raw=case.raw)
  p = structure.make_plan(cfg.components, cfg.base, cfg.points)
  return report.plan.describe(p, memory="shapes", memory_budget="8GiB")


def run_case(case: Case, tmp_dir: str, *, limit: float = 30.0) -> Outcome:
  """Plans a case under a time limit and classifies the outcome."""
  old = signal.signal(signal.SIGALRM, _alarm)
  signal.setitimer(signal.ITIMER_REAL, limit)
  t = time.perf_counter()
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always", RuntimeWarning)
      plan(case, tmp_dir)
    raw_numpy = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    kind, detail = ("warning", str(raw_numpy[0].message)) if raw_numpy else ("ok", "")
  except errors.ConfigError as e:
    kind, detail = "error", str(e)
  except _Timeout:
    kind, detail = "hang", f"over {limit} s"
  except Exception:  # pylint: disable=broad-except
    kind, detail = "traceback", traceback.format_exc(limit=-6)
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)
  return Outcome(kind, time.perf_counter() - t, detail)


# --------------------------------------------------------------------------
# Mutations.


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
  """Every path (dict keys and list indices) into a nested config."""
  out = []
  if isinstance(obj, dict):
    items = list(obj.items())
  elif isinstance(obj, list):
    items = list(enumerate(obj))
  else:
    return out
  for k, v in items:
    out.append((*prefix, k))
    out.extend(_paths(v, (*prefix, k)))
  return out


def _parent(obj: Any, path: tuple) -> Any:
  for k in path[:-1]:
    obj = obj[k]
  return obj


def _typo(key: Any, rng: random.Random) -> Any:
  key = str(key)
  how = rng.randrange(5)
  if how == 0 and len(key) > 1:
    i = rng.randrange(len(key))
    return key[:i] + key[i + 1:]
  if how == 1:
    i = rng.randrange(len(key) + 1)
    return key[:i] + rng.choice("aex_.") + key[i:]
  if how == 2:
    return key.upper()
  if how == 3:
    return key.replace("_", "-") if "_" in key else key + "s"
  return rng.choice(["", " ", "1", "a.b.c", "sweep", "seed", "seeds", "product"])


def mutate(raw: dict, rng: random.Random) -> tuple[dict, str]:
  """One mutation of a config dict; returns it and what was done."""
  raw = copy.deepcopy(raw)
  paths = _paths(raw)
  path = rng.choice(paths)
  parent, key = _parent(raw, path), path[-1]
  op = rng.choice(["type", "type", "extreme", "extreme", "drop", "rename", "nest", "move",
                   "add", "swap"])
  where = ".".join(map(str, path))
  if op == "type":
    parent[key] = copy.deepcopy(rng.choice(OTHER_TYPES))
  elif op == "extreme":
    numeric = [p for p in paths if isinstance(_parent(raw, p)[p[-1]], (int, float))
               and not isinstance(_parent(raw, p)[p[-1]], bool)]
    path = rng.choice(numeric or [path])
    parent, key, where = _parent(raw, path), path[-1], ".".join(map(str, path))
    parent[key] = rng.choice(EXTREME)
  elif op == "drop":
    del parent[key]
  elif op == "rename" and isinstance(parent, dict):
    parent[_typo(key, rng)] = parent.pop(key)
  elif op == "nest":
    parent[key] = rng.choice([{"name": parent[key]}, [parent[key]], {"value": parent[key]}])
  elif op == "move" and isinstance(parent, dict) and isinstance(raw, dict):
    value = parent.pop(key)
    target = rng.choice([k for k in raw if isinstance(raw[k], dict)] or [None])
    if target is None:
      raw[key] = value
    else:
      raw[target][key] = value
  elif op == "add" and isinstance(parent, dict):
    parent[_typo(rng.choice(["dropout", "lr", "steps", "features", "seed"]), rng)] = (
        rng.choice(OTHER_TYPES + EXTREME))
  elif op == "swap" and isinstance(raw, dict) and len(raw) > 1:
    a, b = rng.sample(sorted(raw), 2)
    raw[a], raw[b] = raw[b], raw[a]
    where = f"{a}<->{b}"
  else:
    parent[key] = None
  return raw, f"{op} {where}"


def _dump(raw: dict) -> str:
  return yaml.safe_dump(raw, default_flow_style=None, sort_keys=False, allow_unicode=True)


def text_mutation(raw: dict, rng: random.Random) -> tuple[str, str]:
  """A mutation of the YAML text: an alias, an alias bomb or an explicit tag."""
  how = rng.randrange(4)
  if how == 0:  # An alias bomb under a key a config may hold.
    depth = rng.randrange(3, 9)
    lines = ["description:", "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, depth)]
    raw = {k: v for k, v in raw.items() if k != "description"}
    return _dump(raw) + "\n".join(lines) + "\n", f"alias bomb 10**{depth}"
  if how == 1:  # One section is an alias of another.
    sections = [k for k in raw if isinstance(raw[k], dict)]
    if len(sections) >= 2:
      a, b = sorted(rng.sample(sections, 2), key=sections.index)  # The anchor comes first.
      text = _dump(raw).replace(f"\n{a}:", f"\n{a}: &anchor", 1)
      lines = text.splitlines()
      at = next((i for i, line in enumerate(lines) if line.startswith(f"{b}:")), None)
      if at is not None:
        lines[at] = f"{b}: *anchor"
        while at + 1 < len(lines) and lines[at + 1].startswith((" ", "-")):
          del lines[at + 1]
        return "\n".join(lines) + "\n", f"{b} alias of {a}"
  paths = [p for p in _paths(raw) if not isinstance(_parent(raw, p)[p[-1]], (dict, list))]
  path = rng.choice(paths)
  marker = "__FUZZ_TAG__"
  raw = copy.deepcopy(raw)
  _parent(raw, path)[path[-1]] = marker
  tag = rng.choice(TAGS)
  return _dump(raw).replace(f"'{marker}'", tag).replace(marker, tag), (
      f"tag {tag} at {'.'.join(map(str, path))}")


def _bases() -> dict[str, dict]:
  bases = {}
  for path in CONFIGS:
    with open(path, encoding="utf-8") as f:
      bases[os.path.basename(path)] = yaml.safe_load(f)
  return bases


def warm_up(tmp_dir: str) -> dict[str, Outcome]:
  """Plans each shipped config once, unmutated and without a time limit, so
  that loading a dataset the first time (the text corpus: seconds) is not
  counted against a case's limit. Returns the outcomes by file name."""
  return {name: run_case(Case(name, raw=raw), tmp_dir, limit=600)
          for name, raw in _bases().items()}


def make_cases(num: int, seed: int = 0) -> list[Case]:
  """``num`` mutated configs, drawn with ``seed`` (the same list every time)."""
  rng = random.Random(seed)
  bases = _bases()
  cases = []
  names = sorted(bases)
  for i in range(num):
    base_name = names[i % len(names)]
    raw, what = bases[base_name], []
    for _ in range(rng.choice([1, 1, 2, 3])):
      raw, did = mutate(raw, rng)
      what.append(did)
    overrides: tuple[str, ...] = ()
    if rng.random() < 0.15:
      overrides = (rng.choice(OVERRIDES),)
      what.append(f"override {overrides[0]}")
    text = None
    if rng.random() < 0.2:
      text, did = text_mutation(raw, rng)
      what.append(did)
      raw = None
    cases.append(Case(f"{i}:{base_name}: {'; '.join(what)}", raw=raw, text=text,
                      overrides=overrides))
  return cases


def main(argv: list[str]) -> int:
  num = int(argv[0]) if argv else 300
  seed = int(argv[1]) if len(argv) > 1 else 0
  counts: dict[str, int] = {}
  t0 = time.perf_counter()
  with tempfile.TemporaryDirectory() as tmp:
    warm_up(tmp)
    for case in make_cases(num, seed):
      out = run_case(case, tmp)
      counts[out.kind] = counts.get(out.kind, 0) + 1
      if out.kind in FAILURES:
        print(f"--- {out.kind}: {case.name}\n{out.detail}")
  print(counts, f"{time.perf_counter() - t0:.1f} s")
  return 1 if any(counts.get(k) for k in FAILURES) else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
