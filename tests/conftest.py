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
``SLOW_SECONDS``, or when it uses a module- or session-scoped fixture that
a slow setup paid for (the fixture's cost lands on whichever test sets it
up first). Tests the file does not know (new ones) are fast until the file
is refreshed (``pytest --slow --store-durations``; it merges). Each test
module keeps its cheapest test in the fast tier, so every module is
exercised (``tests/test_tiers.py`` checks it). Naming test files or test ids
on the command line, or ``-m``, selects by those alone: the tier applies to
a run of whole directories.
"""

import json
import os
import shutil
import tempfile

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
  group.addoption("--store-durations", nargs="?", const=DURATIONS, default=None,
                  metavar="PATH", help=f"merge this run's test durations into PATH "
                                       f"(default {DURATIONS})")


def pytest_configure(config):  # The slow marker is declared in pyproject.toml.
  config.stash[_TIMES] = {}


def load_durations(path: str = DURATIONS) -> dict:
  """``{node id: {"seconds", "setup", "fixtures": [module/session fixtures]}}``."""
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _shared_fixtures(item) -> list[str]:
  info = getattr(item, "_fixtureinfo", None)
  if info is None:
    return []
  return sorted(name for name, defs in info.name2fixturedefs.items()
                if defs and defs[-1].scope in ("module", "package", "session"))


def slow_ids(items, durations: dict) -> set[str]:
  """The node ids of ``items`` in the slow tier (see the module docstring)."""
  costly = {f for d in durations.values() if d["setup"] > SLOW_SECONDS for f in d["fixtures"]}
  slow = set()
  for item in items:
    d = durations.get(item.nodeid)
    if (d and d["seconds"] > SLOW_SECONDS) or costly & set(_shared_fixtures(item)):
      slow.add(item.nodeid)
  by_module: dict[str, list] = {}
  for item in items:
    by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
  for module_items in by_module.values():
    if all(i.nodeid in slow for i in module_items):
      cheapest = min(module_items, key=lambda i: (
          bool(costly & set(_shared_fixtures(i))),
          durations.get(i.nodeid, {}).get("seconds", 0.0)))
      slow.discard(cheapest.nodeid)
  return slow


def _whole_directories(config) -> bool:
  args = config.args or [HERE]
  return all(os.path.isdir(a) for a in args) and not config.getoption("markexpr")


def pytest_collection_modifyitems(config, items):
  slow = slow_ids(items, load_durations())
  for item in items:
    if item.nodeid in slow:
      item.add_marker(pytest.mark.slow)
  if config.getoption("slow") or not _whole_directories(config):
    return
  keep = [i for i in items if i.nodeid not in slow]
  config.hook.pytest_deselected(items=[i for i in items if i.nodeid in slow])
  items[:] = keep


_TIMES = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  report = outcome.get_result()
  times = item.config.stash[_TIMES].setdefault(
      item.nodeid, {"seconds": 0.0, "setup": 0.0, "fixtures": _shared_fixtures(item)})
  times["seconds"] += report.duration
  if report.when == "setup":
    times["setup"] = report.duration


def pytest_sessionfinish(session):
  shutil.rmtree(_CACHE, ignore_errors=True)
  path = session.config.getoption("store_durations")
  if not path:
    return
  durations = load_durations(path)
  for nodeid, t in session.config.stash[_TIMES].items():
    durations[nodeid] = {k: round(v, 3) if isinstance(v, float) else v for k, v in t.items()}
  with open(path, "w", encoding="utf-8") as f:  # One test a line, for readable diffs.
    f.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}"
                                for k, v in sorted(durations.items())) + "\n}\n")
