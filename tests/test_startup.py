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
from jaxsweep.report import rundir

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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished run's directory (run.json, results files), written without training."""
  path = str(tmp_path_factory.mktemp("finished") / "run")
  rows = [{"variant": i, "id": f"id{i}", "optimizer.learning_rate": lr, "group": 0,
           "status": "ok", "note": "", "diverged_step": None, "stopped_step": None,
           "steps": 4, "params": 10, "seconds": 0.1, "val_accuracy": acc,
           "test_accuracy": acc - 0.01}
          for i, (lr, acc) in enumerate([(0.1, 0.8), (0.01, 0.9), (0.001, 0.7)])]
  res = js.Results(rows, {i: [{"step": 4, "val_accuracy": r["val_accuracy"]}]
                          for i, r in enumerate(rows)},
                   swept=["optimizer.learning_rate"], target="val_accuracy", mode="max",
                   metrics=["val_accuracy", "test_accuracy"])
  with rundir.prepare(path, sweep_id="startup-test") as rd:
    rd.write_outputs(res, plots=False)
  assert rundir.read_manifest(path)["status"] == rundir.STATUS_FINISHED
  return path


@pytest.mark.parametrize("command", ["report", "compare"])
def test_report_and_compare_of_a_finished_run_do_not_import_jax(finished_run, command):
  argv = ["report", finished_run] if command == "report" else ["compare", finished_run,
                                                                finished_run]
  modules = _modules_after(
      "import contextlib, io\n"
      "from jaxsweep import cli\n"
      "out = io.StringIO()\n"
      "with contextlib.redirect_stdout(out):\n"
      f"  code = cli.main({argv!r})\n"
      "assert code == 0 and '0.001' in out.getvalue(), (code, out.getvalue())")
  assert not _loaded(modules, JAX[:-1]), _loaded(modules, JAX)  # numpy it may use.
  # The package's JAX-free layers, and none of the engine's JAX modules.
  assert "jaxsweep.report.rundir" in modules and "jaxsweep.results" in modules
  assert "jaxsweep.report.plan" not in modules and "jaxsweep.engine.checkpoint" not in modules


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
