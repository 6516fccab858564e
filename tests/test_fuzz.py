"""Fuzzing of the config loader, the override parser and the YAML text loader:
whatever the input, the answer is a loaded config or a ConfigError that names
its key, never another exception.

Two kinds: the shipped configs mutated with a fixed seed and planned as
``jaxsweep plan`` does, each outcome classified (clean error / planned /
traceback / hang / raw numpy warning), with a corpus of the cases issue #25
found (:mod:`tests.fuzz_configs`); and property-based tests of the loader.

The properties are bounded (a couple of hundred examples each, no deadline)
and derandomized, so a pass in CI stays a pass. To explore new inputs, run
with JAXSWEEP_FUZZ=random (fresh seeds, more examples each run).
"""

import copy
import os
import string

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxsweep import config as config_lib
from jaxsweep import errors
from jaxsweep import space
from jaxsweep.engine import plan as plan_lib
from tests import fuzz_configs

# --------------------------------------------------------------------------
# The shipped configs, mutated, through `jaxsweep plan`.

NUM_MUTATED = 400  # About 17 s on one core, after a warm-up of about 18 s.


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("fuzz-configs"))
  warm = fuzz_configs.warm_up(d)  # The shipped configs plan (or lack their data files).
  assert {k for k, o in warm.items() if o.kind == "ok"} >= {
      "digits_lr.yaml", "digits_ablation.yaml", "digits_cnn.yaml", "digits_random.yaml",
      "text_rnn.yaml"}, {k: o.detail for k, o in warm.items()}
  assert all(o.kind in ("ok", "error") for o in warm.values())
  return d


def test_mutated_shipped_configs_never_traceback_or_hang(fuzz_dir):
  cases = fuzz_configs.make_cases(NUM_MUTATED, seed=0)
  outcomes = [(c, fuzz_configs.run_case(c, fuzz_dir)) for c in cases]
  kinds = [o.kind for _, o in outcomes]
  failed = [f"{o.kind}: {c.name}\n{o.detail}" for c, o in outcomes
            if o.kind in fuzz_configs.FAILURES]
  assert not failed, f"{len(failed)} of {len(cases)} cases failed:\n" + "\n".join(failed[:5])
  # The mutations reach both sides: refused inputs and configs that still plan.
  assert kinds.count("error") > len(cases) // 2 and kinds.count("ok") >= 5
  for c, o in outcomes:
    if o.kind == "error":
      assert "\n  fix: " in o.detail or "key '" in o.detail, (c.name, o.detail)


def test_the_classifier_sees_tracebacks_hangs_and_warnings(fuzz_dir, monkeypatch):
  """A positive control: the fuzz test can fail."""
  case = fuzz_configs.Case("control", raw={"seed": 0})

  def fake_plan(kind):
    def plan(case, tmp_dir):
      del case, tmp_dir  # Unused.
      if kind == "traceback":
        raise KeyError("x")
      if kind == "hang":
        while True:
          pass
      if kind == "warning":
        np.float32(1e39)
      if kind == "error":
        raise errors.ConfigError("no", key="k")
    return plan

  for kind in ("traceback", "hang", "warning", "error", "ok"):
    monkeypatch.setattr(fuzz_configs, "plan", fake_plan(kind))
    assert fuzz_configs.run_case(case, fuzz_dir, limit=0.5).kind == kind


# The cases issue #25 found, as explicit regressions: (name, case, expected
# outcome, the key the error names).
DIGITS = {"data": {"name": "digits", "test_fraction": 0.2, "seed": 0},
          "model": {"name": "mlp", "features": [16], "activation": "relu"},
          "loss": "cross_entropy", "optimizer": {"name": "adam", "learning_rate": 1.0e-3},
          "train": {"steps": 20, "batch_size": 32, "eval_every": 10},
          "sweep": {"optimizer.learning_rate": [1e-3, 1e-2], "seed": [0, 1]}}
DIGITS_YAML = yaml.safe_dump(DIGITS, sort_keys=False)
BOMB = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))
C = fuzz_configs.Case
CORPUS = [
    ("features 1e308", C("f", DIGITS, overrides=("model.features=[1e308]",)), "error",
     "model.features"),
    ("features 1e11", C("f", DIGITS, overrides=("model.features=[100000000000]",)), "error",
     "model.features"),
    ("label smoothing 6e10", C("s", DIGITS, overrides=("loss.label_smoothing=6e10",)),
     "error", "loss.label_smoothing"),
    ("label smoothing 1", C("s", DIGITS, overrides=("loss.label_smoothing=1.0",)), "error",
     "loss.label_smoothing"),
    ("seed -0.0", C("s", {**DIGITS, "sweep": {"seed": [0, -0.0, 2]}}), "error", "seed"),
    ("seed 1.5", C("s", {**DIGITS, "sweep": None, "seed": 1.5}), "error", "seed"),
    ("seed timestamp", C("s", text=DIGITS_YAML.replace("seed:\n  - 0\n  - 1",
                                                       "seed: !!timestamp 2020-01-01")),
     "error", "sweep.seed"),
    ("seed binary", C("s", text=DIGITS_YAML + "seed: !!binary aGVsbG8=\n"), "error", "seed"),
    ("learning rate 0", C("l", DIGITS, overrides=("optimizer.learning_rate=0",)), "error",
     "optimizer.learning_rate"),
    ("learning rate 0, allowed", C("l", {**DIGITS, "run": {"allow_zero_learning_rate": True}},
                                   overrides=("optimizer.learning_rate=0",)), "ok", None),
    ("batch 100000", C("b", DIGITS, overrides=("train.batch_size=100000",)), "error",
     "train.batch_size"),
    ("alias bomb", C("a", text=DIGITS_YAML + "description:\n  l0: &l0 [a, a, a, a, a, a, a, "
                              "a, a, a]\n" + BOMB), "error", None),
    ("log_uniform override", C("o", DIGITS, overrides=(
        "optimizer.learning_rate={log_uniform: [1e-4, 1e-1], num: 4}",)), "ok", None),
    ("seeds and seed", C("s", {**DIGITS, "sweep": {"seeds": 3, "seed": [0, 1]}}), "error",
     "seed"),
    ("lr beyond float32", C("l", DIGITS, overrides=("optimizer.learning_rate=1e39",)),
     "error", "optimizer.learning_rate"),
    ("b1 of 1", C("b", DIGITS, overrides=("optimizer.b1=1.0",)), "error", "optimizer.b1"),
    ("seeds 2**63", C("s", {**DIGITS, "sweep": {"seeds": 2**63}}), "error", "seed"),
    ("override into a list section", C("o", {**DIGITS, "train": [1]},
                                       overrides=("train.steps=5",)), "error", "train"),
]


@pytest.mark.parametrize("name, case, expected, key", CORPUS, ids=[c[0] for c in CORPUS])
def test_issue_corpus(fuzz_dir, name, case, expected, key):
  out = fuzz_configs.run_case(case, fuzz_dir, limit=30)
  assert out.kind == expected, (name, out.detail)
  if expected == "error":
    err_key = out.detail.partition("key '")[2].partition("'")[0] or None
    assert err_key == key, out.detail
    assert "\n  fix: " in out.detail and len(out.detail.splitlines()) == 2, out.detail


# --------------------------------------------------------------------------
# Property-based tests of the loader.

_EXPLORE = os.environ.get("JAXSWEEP_FUZZ") == "random"
FUZZ = settings(max_examples=1000 if _EXPLORE else 200, deadline=None,
                derandomize=not _EXPLORE, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
MAX_VARIANTS = 200  # Big sweeps must be refused, not expanded.

SECTION_ARGS = {
    "data": ["name", "num_train", "num_test", "num_features", "num_classes", "seed",
             "test_fraction", "path", "as_images"],
    "model": ["name", "features", "activation", "num_outputs", "channels", "dropout_rate",
              "init_scale"],
    "optimizer": ["name", "learning_rate", "momentum", "weight_decay", "b1", "schedule"],
    "loss": ["name", "label_smoothing"],
    "train": ["steps", "batch_size", "eval_every", "eval_batch_size"],
}
PATHS = [f"{s}.{a}" for s, args in SECTION_ARGS.items() for a in args] + ["seed"]
WORDS = ["mlp", "cnn", "adam", "sgd", "digits", "synthetic", "relu", "tanh", "cross_entropy",
         "mse", "max", "min", "1e-3", "yes", "no", "null", "", " ", "a.b", ".", "sweep", "nan"]

# Scalars a YAML config can hold (plus a few it cannot, as the API could).
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 20), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS), st.text(max_size=8))
keys_ = st.one_of(
    st.sampled_from([*config_lib.TOP_LEVEL, *space.SPECIAL_KEYS, *PATHS, "num", "samples",
                     "values", "choice", "uniform", "log_uniform", "int_uniform", "params",
                     "method", "if", "then", "chunk_size", "max_variants"]),
    st.text(max_size=10), st.integers(-2, 3))


def _domain(children):
  bounds = st.lists(st.one_of(st.floats(-2, 10), st.integers(-2, 10), scalars),
                    min_size=0, max_size=3)
  opts = st.dictionaries(st.sampled_from(["num", "samples", "seed"]),
                         st.one_of(st.integers(-2, 12), scalars), max_size=2)
  kind = st.sampled_from(["log_uniform", "uniform", "int_uniform", "values", "choice", "fixed"])
  return st.builds(lambda k, b, o: {k: b, **o}, kind, bounds, opts) | st.lists(children,
                                                                               max_size=3)


# Nested dicts/lists/scalars, with sweep specs among them.
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys_, children, max_size=4),
        _domain(children)),
    max_leaves=20)


def _sweep_section():
  axis = st.dictionaries(st.sampled_from(PATHS) | keys_, values, max_size=3)
  special = st.one_of(
      st.builds(lambda n: {"seeds": n}, st.integers(-2, 5) | scalars),
      st.builds(lambda parts: {"product": parts}, st.lists(axis, max_size=3)),
      st.builds(lambda parts: {"chain": parts}, st.lists(axis, max_size=3)),
      st.builds(lambda parts: {"zip": parts}, st.lists(axis, max_size=3) | axis),
      st.builds(lambda p, n, m: {"random": {"params": p, "samples": n, "method": m}},
                axis, st.integers(-1, 6) | scalars, st.sampled_from(["random", "sobol",
                                                                      "halton", "grid"])),
      st.builds(lambda c, t: {"when": {"if": c, "then": t}}, axis, axis),
      st.builds(lambda f: {"fixed": f}, axis))
  return st.one_of(axis, special, values)


def _section(slot):
  return st.one_of(
      st.dictionaries(st.sampled_from(SECTION_ARGS[slot]) | keys_, values, max_size=4),
      values)


# Near-valid configs: each setting mostly a sensible value, sometimes junk,
# so the fuzzer reaches the checks behind the first one.
GOOD = {
    "data": {"name": ["synthetic", "digits", "regression", "text", "npz", "nope"],
             "num_train": [64, 0, -1], "num_test": [40], "num_classes": [4, 1],
             "test_fraction": [0.2, 1.5], "seed": [0], "path": ["missing.npz"],
             "as_images": [True, "yes"]},
    "model": {"name": ["mlp", "cnn", "rnn", "nope"], "features": [[16], [8, 8], [], [0], 16],
              "activation": ["relu", ["relu", "tanh"], "nope"], "num_outputs": [4, 0],
              "dropout_rate": [0.1], "init_scale": [1.0], "batch_norm": [False, "no"],
              "kernel_size": [3], "channels": [[4]], "hidden": [8], "cell": ["lstm", "x"]},
    "optimizer": {"name": ["adam", "sgd", "adamw", "lion", "nope"],
                  "learning_rate": [1e-3, 0.1, 0, "1e-3"], "momentum": [0.9],
                  "weight_decay": [0.0, 1e-4], "schedule": ["cosine", "constant", "x"],
                  "nesterov": [True], "warmup_steps": [2]},
    "loss": {"name": ["cross_entropy", "mse", "nope"], "label_smoothing": [0.1, 0.0]},
    "train": {"steps": [6, 0, 2.5], "batch_size": [16, -1], "eval_every": [3, None],
              "eval_batch_size": [8]},
}


def _good_section(slot):
  return st.fixed_dictionaries({}, optional={
      a: st.one_of(st.sampled_from(v), st.sampled_from(v), st.sampled_from(v), values)
      for a, v in GOOD[slot].items()})


_PATH_VALUES = {f"{s}.{a}": v for s, args in GOOD.items() for a, v in args.items()}
_good_axis = st.sampled_from(sorted(_PATH_VALUES)).flatmap(
    lambda k: st.fixed_dictionaries({k: st.one_of(
        st.lists(st.sampled_from(_PATH_VALUES[k]), min_size=1, max_size=3),
        st.builds(lambda lo, hi, n: {"log_uniform": [lo, hi], "num": n},
                  st.sampled_from([1e-4, 0.0, -1.0, 1.0]), st.sampled_from([1e-1, 1.0]),
                  st.integers(-1, 4)),
        st.builds(lambda lo, hi, n: {"uniform": [lo, hi], "samples": n, "seed": 0},
                  st.sampled_from([0.0, 1.0]), st.sampled_from([0.5, 2.0]),
                  st.integers(0, 3)),
        values)}))
good_sweeps = st.one_of(
    st.lists(_good_axis, max_size=3).map(lambda axes: {k: v for a in axes for k, v in a.items()}),
    st.builds(lambda a, n: {**a, "seeds": n}, _good_axis, st.integers(1, 3)),
    st.builds(lambda a, b: {"chain": [a, b]}, _good_axis, _good_axis),
    st.builds(lambda a, b: {"zip": [a, b]}, _good_axis, _good_axis),
    st.builds(lambda a, c, t: {**a, "when": {"if": c, "then": t}}, _good_axis, _good_axis,
              _good_axis))
near_valid = st.fixed_dictionaries(
    {}, optional={**{slot: _good_section(slot) for slot in GOOD}, "sweep": good_sweeps,
                  "seed": st.sampled_from([0, 1, -1, 1.5, "x"]),
                  "vectorize": st.sampled_from([[], ["model.activation"], ["loss.name"],
                                                "model.activation", ["nope"], [1]]),
                  "run": st.fixed_dictionaries({}, optional={
                      "chunk_size": st.sampled_from([4, 8, 16, 0, "x"]),
                      "max_variants": st.sampled_from([100, 1000, 20000, "x", -1, None]),
                      "memory_budget": st.sampled_from(["1GiB", "512MiB", 10**9, "x", 0])}),
                  "target": st.sampled_from(["test_accuracy", "test_loss", "nope", 3]),
                  "mode": st.sampled_from(["max", "min", None, "x"])})

def _mutate(raw, changes):
  out = copy.deepcopy(raw)
  for path, value in changes:
    slot, _, arg = path.partition(".")
    if isinstance(out.get(slot), dict):
      out[slot][arg] = value
    else:
      out[slot] = {"name": out.get(slot), arg: value}
  return out


_TINY = {"data": {"name": "synthetic", "num_train": 64, "num_test": 40, "num_features": 8,
                  "num_classes": 4},
         "model": {"name": "mlp", "features": [16]}, "loss": "cross_entropy",
         "optimizer": {"name": "adam", "learning_rate": 1e-3},
         "train": {"steps": 6, "batch_size": 16, "eval_every": 3}}
# The tiny config with one to three settings changed (sensible or junk).
mutated = st.builds(
    _mutate, st.just(_TINY),
    st.lists(st.sampled_from(sorted(_PATH_VALUES)).flatmap(
        lambda k: st.tuples(st.just(k), st.one_of(st.sampled_from(_PATH_VALUES[k]),
                                                  values))), min_size=1, max_size=3))

configs = near_valid | mutated | st.fixed_dictionaries(
    {}, optional={
        **{slot: _section(slot) for slot in SECTION_ARGS},
        "seed": values, "sweep": _sweep_section(), "target": values, "mode": values,
        "run": st.dictionaries(st.sampled_from(["chunk_size", "max_variants",
                                                "memory_budget"]) | keys_, values,
                               max_size=2),
        "vectorize": values, "name": values, "description": values,
    }) | st.dictionaries(keys_, values, max_size=4)


def _names(obj, out):
  """Every key and string anywhere in a nested config, as text."""
  if isinstance(obj, dict):
    for k, v in obj.items():
      out.add(str(k))
      _names(v, out)
  elif isinstance(obj, (list, tuple)):
    for v in obj:
      _names(v, out)
  return out


def _assert_names_its_key(e: errors.ConfigError, raw=None, overrides=()):
  msg = str(e)
  assert msg.strip(), "an empty message"
  if e.key:
    return
  candidates = _names(raw or {}, set()) | {o.partition("=")[0].strip() for o in overrides}
  assert any(f"'{c}'" in msg for c in candidates) or e.file, (
      f"ConfigError without a key, naming none: {msg!r}")


@FUZZ
@given(raw=configs)
def test_fuzz_config_dict(raw):
  try:
    cfg = config_lib.load(raw=raw, max_variants=MAX_VARIANTS)
  except errors.ConfigError as e:
    _assert_names_its_key(e, raw)
    return
  assert isinstance(cfg.points, list) and len(cfg.points) <= MAX_VARIANTS


@FUZZ
@given(raw=near_valid | mutated)
def test_fuzz_config_plans(raw):
  """A config that loads also plans (variants -> groups, model built, values
  type-checked) or says why, without training or compiling anything."""
  try:
    cfg = config_lib.load(raw=raw)
    plan_lib.make_plan(cfg.components, cfg.base, cfg.points)
  except errors.ConfigError as e:
    _assert_names_its_key(e, raw)


override_keys = st.one_of(st.sampled_from(PATHS), st.text(string.ascii_letters + "._-+~ ",
                                                          max_size=12))
override_values = st.one_of(
    st.text(string.printable, max_size=16),
    st.lists(st.sampled_from(["1", "1e-3", "-2", "[64,64]", "[", "]", "{a: 1}", "'x'", '"',
                              "relu", "", " ", "null", "true", ".inf", "a: b", "1,2",
                              "{log_uniform: [0.1, 1]}", "&a", "*a", "!!python/none"]),
             max_size=4).map(",".join))
overrides = st.lists(
    st.one_of(st.builds(lambda k, v: f"{k}={v}", override_keys, override_values),
              st.text(string.printable, max_size=20)),
    max_size=4)

BASE = {"data": {"name": "synthetic", "num_train": 64, "num_test": 40},
        "model": {"name": "mlp", "features": [16]}, "loss": "cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 1e-3},
        "train": {"steps": 6, "batch_size": 16},
        "sweep": {"optimizer.learning_rate": [1e-3, 1e-2], "seed": [0, 1]}}


@FUZZ
@given(items=overrides)
def test_fuzz_overrides(items):
  try:
    space.parse_overrides(items)
  except errors.ConfigError as e:
    _assert_names_its_key(e, overrides=items)
  try:
    config_lib.load(raw=BASE, overrides=items, max_variants=MAX_VARIANTS)
  except errors.ConfigError as e:
    _assert_names_its_key(e, BASE, overrides=items)


YAML_CHARS = string.ascii_letters[:6] + string.digits[:4] + " \n\t:-,[]{}&*!|>#'\"%@`?.=~\\"
yaml_texts = st.one_of(
    st.text(YAML_CHARS, max_size=60),
    # A real config with characters inserted or dropped.
    st.builds(lambda text, at, junk, cut: text[:at] + junk + text[at + cut:],
              st.builds(lambda d: yaml.safe_dump(d, default_flow_style=None), configs),
              st.integers(0, 200), st.text(YAML_CHARS, max_size=4), st.integers(0, 3)))
yaml_bytes = st.one_of(yaml_texts.map(lambda t: t.encode("utf-8")),
                       st.binary(max_size=40),
                       st.builds(lambda t, b: t.encode("utf-8") + b, yaml_texts,
                                 st.binary(min_size=1, max_size=3)))


@FUZZ
@given(data=yaml_bytes)
def test_fuzz_yaml_file(data, tmp_path_factory):
  path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
  path.write_bytes(data)
  try:
    config_lib.load(str(path), max_variants=MAX_VARIANTS)
  except errors.ConfigError as e:
    assert e.file == str(path), str(e)
    assert str(e).strip()


@pytest.mark.parametrize("text", ["a: 1\na: 2\n", "&x [*x]\n", "{a: [1, {b: 1, b: 2}]}\n"])
def test_yaml_loader_refuses_before_constructing(text):
  with pytest.raises(yaml.YAMLError):
    space.load_yaml(text)
