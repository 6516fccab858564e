"""The docstring examples of every module run and say what they show."""

import doctest
import importlib
import inspect
import pkgutil

import pytest

import jaxsweep

MODULES = sorted(m.name for m in pkgutil.walk_packages(jaxsweep.__path__, "jaxsweep."))


def test_modules_are_found():
  assert {"jaxsweep.api", "jaxsweep.engine.train", "jaxsweep.space.grammar",
          "jaxsweep.report.tables"} <= set(MODULES)


@pytest.mark.parametrize("name", ["jaxsweep", *MODULES])
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  if ">>> " in inspect.getsource(module):
    assert result.attempted > 0, f"{name} has examples that doctest does not find"
  assert result.failed == 0
