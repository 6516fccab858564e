"""The docstring examples of the public modules run and say what they show."""

import doctest
import importlib

import pytest

MODULES = ["jaxsweep", "jaxsweep.api", "jaxsweep.data", "jaxsweep.models",
           "jaxsweep.space.domains", "jaxsweep.space.expansion", "jaxsweep.space.grammar",
           "jaxsweep.space.introspect", "jaxsweep.space.overrides", "jaxsweep.space.wandb",
           "jaxsweep.space.yaml12", "jaxsweep.train"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0, f"{name} lists no examples"
  assert result.failed == 0
