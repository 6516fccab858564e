"""The test tiers hold: every test module runs in the fast tier, which stays fast.

The tiers are drawn in ``tests/conftest.py`` from ``tests/durations.json``.
"""

import glob
import os

import pytest

from tests import conftest

FAST_BUDGET_SECONDS = 100.0  # Recorded seconds of the fast tier (a busy 2-core machine).


def _modules():
  return {os.path.relpath(p, os.path.dirname(conftest.HERE))
          for p in glob.glob(os.path.join(conftest.HERE, "test_*.py"))}


def test_every_test_module_has_a_fast_test(request):
  if not conftest.whole_directories(request.config) or request.config.getoption("keyword"):
    pytest.skip("needs a run of the whole tests/ directory")
  fast = {i.nodeid.split("::")[0] for i in request.session.items
          if not i.get_closest_marker("slow")}
  assert fast == _modules(), sorted(_modules() - fast)


def test_recorded_fast_tier_fits_its_budget():
  durations = conftest.load_durations()
  costly = {f for f, seconds in durations["fixtures"].items() if seconds > conftest.SLOW_SECONDS}
  fast = [d["seconds"] for d in durations["tests"].values()
          if d["seconds"] <= conftest.SLOW_SECONDS and not costly & set(d["fixtures"])]
  assert sum(fast) < FAST_BUDGET_SECONDS, sum(fast)


def test_recorded_tests_name_existing_modules():
  """A renamed or deleted file leaves no stale entries behind unnoticed."""
  durations = conftest.load_durations()
  named = [*durations["tests"], *durations["fixtures"]]
  stale = {k.split("::")[0] for k in named} - _modules()
  assert not stale, sorted(stale)
