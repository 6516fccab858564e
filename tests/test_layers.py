"""The package is a one-way house: every import points down a floor, no
import cycle, and no import inside a function but optional dependencies."""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "jaxsweep")
# Floors, bottom up: a module may import its own floor and those below.
FLOORS = [
    ("jaxsweep.errors", "jaxsweep.signals", "jaxsweep.lazy"),
    ("jaxsweep.keys", "jaxsweep.format"),
    ("jaxsweep.results", "jaxsweep.selection", "jaxsweep.space", "jaxsweep.components",
     "jaxsweep.lineage"),
    ("jaxsweep.engine",),
    ("jaxsweep.options",),
    ("jaxsweep.report",),
    ("jaxsweep.config",),
    ("jaxsweep.api",),
    ("jaxsweep.cli",),
    ("jaxsweep",),
]
# Imported inside functions on purpose: optional or slow to import.
OPTIONAL = ("matplotlib", "pandas", "pyarrow", "rich", "tensorboardX", "tensorboard", "psutil",
            "sklearn", "scipy", "pydoc_data", "optuna", "orbax", "tensorflow_datasets",
            "datasets")
# Core dependencies imported where they are used, to keep every run's start
# short: flax.nnx (0.22 s) by its adapter only.
LAZY = ("flax.nnx",)
# JAX itself, by the one function that unstacks trained parameters: results
# read from disk are rendered without JAX (`jaxsweep report`, issue #24).
LAZY_IN = {"jaxsweep.results": ("jax",)}
# The command line imports the package's own modules inside its commands:
# `jaxsweep --help` and usage errors must answer without importing JAX
# (issue #24; tests/test_startup.py checks sys.modules). Still one way down.
STARTUP = ("jaxsweep.cli",)


def _modules():
  out = {}
  for dirpath, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
        out[rel.removesuffix(".__init__")] = path
  return out


MODULES = _modules()


def _floor(module):
  best = None
  for i, names in enumerate(FLOORS):
    for n in names:
      if (module == n or module.startswith(n + ".")) and (best is None or len(n) > best[1]):
        best = (i, len(n))
  return best[0]


def _imports(path):
  """(top-level jaxsweep imports, imports found inside functions)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read())
  top, nested = set(), []
  for node in ast.walk(tree):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""])
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxsweep"):
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                 else node.module for a in node.names]
      for n in names:
        if n.startswith("jaxsweep"):
          top.add(n)
  for fn in ast.walk(tree):
    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for node in ast.walk(fn):
        if isinstance(node, ast.Import):
          nested += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
          nested.append(node.module or "")
  return top, nested


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
  top, nested = _imports(MODULES[module])
  for target in top:
    assert _floor(target) <= _floor(module), f"{module} imports {target} from a higher floor"
  for target in nested:
    if module in STARTUP and target.startswith("jaxsweep"):
      continue  # Its floor is checked with the top-level ones (ast.walk sees them all).
    assert (target.split(".")[0] in OPTIONAL or target in LAZY
            or target in LAZY_IN.get(module, ())), (
        f"{module} imports {target} inside a function")


def test_no_import_cycle():
  graph = {m: {t for t in _imports(p)[0] if t in MODULES and t != m}
           for m, p in MODULES.items()}
  # A package's __init__ re-exports its submodules: importing the package
  # from one of them would be the cycle.
  state = {}

  def visit(m, stack):
    state[m] = "open"
    for t in graph[m]:
      if state.get(t) == "open":
        raise AssertionError(" -> ".join([*stack, m, t]))
      if t not in state:
        visit(t, [*stack, m])
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [])


def test_modules_stay_small():
  """One concern a module: none grows past ~600 lines."""
  sizes = {}
  for m, p in MODULES.items():
    with open(p, encoding="utf-8") as f:
      sizes[m] = len(f.readlines())
  assert max(sizes.values()) <= 650, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
