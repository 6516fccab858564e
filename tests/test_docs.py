"""The docstring examples of the public modules run and say what they show."""

import doctest
import importlib

import pytest

MODULES = ["jaxsweep", "jaxsweep.api", "jaxsweep.data", "jaxsweep.format", "jaxsweep.models",
           "jaxsweep.report.outputs", "jaxsweep.report.progress", "jaxsweep.report.tables",
           "jaxsweep.results", "jaxsweep.space", "jaxsweep.train"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
