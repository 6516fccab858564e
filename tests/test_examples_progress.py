"""Every example that trains shows progress (issue #26: cnn_ablation ran 9.5
minutes without a line). ``tests/test_api.py`` runs the examples themselves."""

import ast
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
NAMES = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))


def _run_calls(tree):
  for node in ast.walk(tree):
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("run", "run_config")
        and isinstance(node.func.value, ast.Name) and node.func.value.id == "js"):
      yield node


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_show_progress(name):
  with open(os.path.join(EXAMPLES, name)) as f:
    tree = ast.parse(f.read())
  for call in _run_calls(tree):
    progress = [k.value for k in call.keywords if k.arg == "progress"]
    assert progress and isinstance(progress[0], ast.Constant) and progress[0].value is True, (
        f"{name}: js.run(...) without progress=True")
