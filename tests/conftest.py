"""Test setup: virtual CPU devices, a private cache, and two tiers.

Devices: 3 virtual CPU devices, asked for before JAX starts (as equinox's
tests do). Not 8: on 2 cores, 8 devices put one variant on most devices, so
the tests ran a layout users never do (a device's variant loop of length 1,
which XLA compiles differently) and padded 9 variants to 16 slots, with more
padding than variants. Three, a count that divides none of the usual
population sizes (2, 4, 8, 16), keeps every device holding several real
variants and pads most populations by 1 or 2 slots, so padding is exercised
in most runs without dominating them.

Tiers: a plain ``pytest`` runs the fast tier; ``pytest --slow`` runs every
test. A test is slow when ``tests/durations.json`` records it above
``SLOW_SECONDS``, or when it uses a module- or session-scoped fixture whose
setup is recorded above it (that cost lands on whichever test sets the
fixture up first, so a cheap-looking neighbour would pay it in the fast
tier). A test the file has not timed yet (a new one) is fast until
``pytest --slow --store-durations`` times it; that merges the times into
the file, keeping each test's largest.
Each test module keeps its cheapest test in the fast tier, so every module
runs in it (``tests/test_tiers.py`` checks it). Naming test files or ids on
the command line, or ``-m``, selects by those alone: the tiers apply to runs
of whole directories.
"""

import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

NUM_DEVICES = 3
jax.config.update("jax_num_cpu_devices", NUM_DEVICES)

import pytest  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DURATIONS = os.path.join(HERE, "durations.json")
SLOW_SECONDS = 2.0

# Measured layouts are cached per machine (jaxsweep.engine.strategy): the
# tests read and write their own cache, never the user's, in a directory
# removed when the session ends. Tests in this process compile without a
# persistent cache; the ones that start jaxsweep in subprocesses share one
# for the session (tests/helpers.py: SUBPROCESS_ENV), so a resumed run finds
# its programs compiled, as a user's would.
_CACHE = tempfile.mkdtemp(prefix="jaxsweep-test-cache-")
os.environ["JAXSWEEP_CACHE_DIR"] = _CACHE
os.environ["JAXSWEEP_COMPILE_CACHE"] = "off"


@pytest.fixture(scope="session")
def num_devices():
  return NUM_DEVICES


def pytest_addoption(parser):
  group = parser.getgroup("jaxsweep tiers")
  group.addoption("--slow", action="store_true",
                  help="run the slow tier too (every test)")
  # A flag, not an optional value: `--store-durations tests/x.py::t` would
  # otherwise take the test id for the file to write.
  group.addoption("--store-durations", action="store_const", const=DURATIONS, default=None,
                  help=f"merge this run's test durations into {DURATIONS}")


def pytest_configure(config):  # The slow marker is declared in pyproject.toml.
  config.stash[_TIMES] = {}


def load_durations(path: str = DURATIONS) -> dict:
  """``{"tests": {node id: {"seconds", "fixtures"}}, "fixtures": {fixture: seconds}}``.

  A test's seconds are its setup, call and teardown; its fixtures are the
  module- and session-scoped fixtures of ``tests/`` it uses, each recorded
  with the seconds its setup took.
  """
  if not os.path.exists(path):
    return {"tests": {}, "fixtures": {}}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _shared_fixtures(item) -> list[str]:
  """The module- and session-scoped fixtures of ``tests/`` that ``item`` uses."""
  info = getattr(item, "_fixtureinfo", None)
  if info is None:
    return []
  return sorted(_fixture_id(defs[-1]) for defs in info.name2fixturedefs.values()
                if defs and _shared(defs[-1]))


def _shared(fixturedef) -> bool:
  return fixturedef.scope in ("module", "package", "session") and bool(fixturedef.baseid)


def _fixture_id(fixturedef) -> str:
  return f"{fixturedef.baseid}::{fixturedef.argname}"


def slow_ids(items, durations: dict) -> set[str]:
  """The node ids of ``items`` in the slow tier (see the module docstring)."""
  tests = durations["tests"]
  costly = {f for f, seconds in durations["fixtures"].items() if seconds > SLOW_SECONDS}

  def cost(item):  # (uses a costly fixture, recorded seconds)
    return (bool(costly & set(_shared_fixtures(item))),
            tests.get(item.nodeid, {}).get("seconds", 0.0))

  slow = {i.nodeid for i in items if cost(i)[0] or cost(i)[1] > SLOW_SECONDS}
  by_module: dict[str, list] = {}
  for item in items:
    by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
  for module_items in by_module.values():
    if all(i.nodeid in slow for i in module_items):
      slow.discard(min(module_items, key=cost).nodeid)
  return slow


def whole_directories(config) -> bool:
  """Whether the run names only directories (no files, test ids or ``-m``)."""
  args = config.args or [HERE]
  return all(os.path.isdir(a) for a in args) and not config.getoption("markexpr")


def pytest_collection_modifyitems(config, items):
  slow = slow_ids(items, load_durations())
  for item in items:
    if item.nodeid in slow:
      item.add_marker(pytest.mark.slow)
  if config.getoption("slow") or not whole_directories(config):
    return
  keep = [i for i in items if i.nodeid not in slow]
  config.hook.pytest_deselected(items=[i for i in items if i.nodeid in slow])
  items[:] = keep


_TIMES = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
  start = time.perf_counter()
  yield
  if _shared(fixturedef):
    fixtures = request.config.stash[_TIMES].setdefault("fixtures", {})
    fixtures[_fixture_id(fixturedef)] = round(time.perf_counter() - start, 3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  report = outcome.get_result()
  tests = item.config.stash[_TIMES].setdefault("tests", {})
  entry = tests.setdefault(item.nodeid, {"seconds": 0.0, "fixtures": _shared_fixtures(item)})
  entry["seconds"] = round(entry["seconds"] + report.duration, 3)


def pytest_sessionfinish(session):
  shutil.rmtree(_CACHE, ignore_errors=True)
  path = session.config.getoption("store_durations")
  if not path:
    return
  durations = load_durations(path)
  times = session.config.stash[_TIMES]
  # The largest time seen: in a shuffled order, the test that compiles a
  # program its neighbours share varies from run to run.
  for nodeid, entry in times.get("tests", {}).items():
    old = durations["tests"].get(nodeid, {}).get("seconds", 0.0)
    durations["tests"][nodeid] = {**entry, "seconds": max(old, entry["seconds"])}
  for name, seconds in times.get("fixtures", {}).items():
    durations["fixtures"][name] = max(durations["fixtures"].get(name, 0.0), seconds)
  with open(path, "w", encoding="utf-8") as f:  # One entry a line, for readable diffs.
    f.write("{\n" + ",\n".join(
        f'"{part}": {{\n' + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}"
                                       for k, v in sorted(durations[part].items())) + "\n}"
        for part in ("tests", "fixtures")) + "\n}\n")
