"""Start-up (issue #24): what `import jaxsweep` and `jaxsweep --help` import.

Checked by the modules a fresh interpreter holds afterwards, not by timing:
JAX takes about 2 s to import, so a command that only prints help or a usage
error must not import it, and `import jaxsweep` loads its public names (and
with them JAX) on first use.
"""

import json
import os
import subprocess
import sys

import pytest

import jaxsweep as js
from jaxsweep import api
from jaxsweep import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Modules no start-up path needs: JAX and friends for help and usage errors;
# the optional or plot-only ones for the whole of `import jaxsweep` + js.run.
JAX = ("jax", "jaxlib", "flax", "optax", "chex", "numpy")
NEVER = ("matplotlib", "scipy", "optuna", "flax.nnx", "pandas", "sklearn", "tensorboardX",
         "orbax.checkpoint")


def _modules_after(code: str) -> set[str]:
  """The modules a fresh interpreter holds after running ``code``."""
  env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  script = (f"import sys\n{code}\n"
            "import json; print(json.dumps(sorted(sys.modules)))")
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=env, timeout=300, cwd=ROOT)
  assert out.returncode == 0, out.stderr
  return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _loaded(modules: set[str], names) -> list[str]:
  return [n for n in names if n in modules]


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["plan", "--help"],
                                  ["report", "--help"], ["run"], ["frobnicate"],
                                  ["run", "c.yaml", "--lanes", "zero"]])
def test_help_and_usage_errors_do_not_import_jax(argv):
  modules = _modules_after(
      "import contextlib, io\n"
      "from jaxsweep import cli\n"
      "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
      "  try:\n"
      f"    cli.main({argv!r})\n"
      "  except SystemExit:\n"
      "    pass")
  assert not _loaded(modules, JAX), _loaded(modules, JAX)


def test_python_m_jaxsweep_prints_help():
  env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  out = subprocess.run([sys.executable, "-m", "jaxsweep", "--help"], capture_output=True,
                       text=True, env=env, timeout=300, cwd=ROOT)
  assert out.returncode == 0 and "usage: jaxsweep" in out.stdout, out.stderr


def test_import_jaxsweep_imports_no_heavy_module():
  modules = _modules_after("import jaxsweep")
  assert not _loaded(modules, JAX + NEVER), _loaded(modules, JAX + NEVER)
  # The public names load what they need, still without the optional ones.
  modules = _modules_after("import jaxsweep as js\n"
                           "js.run, js.run_config, js.models, js.data, js.optim, js.losses, "
                           "js.space, js.report, js.Results, js.engine, js.config")
  assert "jax" in modules
  assert not _loaded(modules, NEVER), _loaded(modules, NEVER)


def test_every_public_name_resolves():
  assert sorted(js.__all__) == sorted(js._LAZY)  # pylint: disable=protected-access
  for name in js.__all__:
    assert getattr(js, name) is not None, name
  assert set(js.__all__) <= set(dir(js))
  assert js.run is api.run and js.Results is js.results.Results
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    js.nope  # noqa: B018


def test_cli_defaults_agree_with_the_api():
  assert cli.DEFAULT_CHECKPOINT_EVERY == api.DEFAULT_CHECKPOINT_EVERY


@pytest.mark.parametrize("text,expected", [("8", 8), ("auto", "auto"), ("AUTO", "auto")])
def test_lanes_option(text, expected):
  args = cli._parser().parse_args(["run", "c.yaml", "--lanes", text])
  assert args.lanes == expected
