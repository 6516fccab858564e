"""The Python API runs as the command does (issue #24 pt 5, #23 pt 6): the
same devices, the same progress, the same results bit for bit, for a grid
and for a proposal search; and `--compile-cache off` stays off."""

import json
import os
import re
import subprocess
import sys

import pytest

from jaxsweep.engine import sharding
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = helpers.TINY_BASE + """\
sweep:
  optimizer.learning_rate: [1.0e-3, 1.0e-2, 1.0e-1]
  seed: [0, 1]
"""
# The same sweep through js.run with Python objects (as tests/test_cli.py's
# test_config_and_python_api_agree, whose ids and bits match the config's).
GRID_API = """
import sys
import jaxsweep as js
js.run(model=lambda features, activation: js.models.mlp(
           features=features, activation=activation, num_outputs=4),
       optimizer=js.optim.adam, loss=js.losses.cross_entropy,
       data=js.data.load("synthetic", num_train=64, num_test=40, num_features=8,
                         num_classes=4),
       sweep={"learning_rate": [1.0e-3, 1.0e-2, 1.0e-1], "seed": [0, 1]},
       fixed={"features": (16,), "activation": "relu"}, steps=6, batch_size=16,
       eval_every=3, out=sys.argv[2], outputs={"plots": False})
"""
TPE = GRID.replace("""  optimizer.learning_rate: [1.0e-3, 1.0e-2, 1.0e-1]
  seed: [0, 1]""", """  method: {name: tpe, samples: 4, batch: 2, seed: 0}
  optimizer.learning_rate: {log_uniform: [1.0e-3, 1.0e-1]}""")
TPE_API = """
import sys
import jaxsweep as js
js.run_config(sys.argv[1], out=sys.argv[2], outputs={"plots": False})
"""


def _env(tmp_path, **extra):
  # A user's shell: no device count chosen, the platform's default layout.
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", sharding.ENV_CPU_DEVICES)}
  env.update(helpers.SUBPROCESS_ENV, JAX_PLATFORMS="cpu",
             PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), **extra)
  return env


def _start(argv, env):
  return subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _finish(proc):
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err
  return err


def _devices(stderr: str) -> set[int]:
  """Device counts in the progress lines ("... on N device(s)")."""
  return {int(n) for n in re.findall(r"on (\d+) device\(s\)", stderr)}


@pytest.mark.parametrize("config,script", [(GRID, GRID_API), (TPE, TPE_API)],
                         ids=["grid", "tpe"])
def test_the_api_runs_as_the_command_does(tmp_path, config, script):
  path = tmp_path / "c.yaml"
  path.write_text(config)
  env = _env(tmp_path)
  cli = _start(["-m", "jaxsweep", "run", str(path), "--out", str(tmp_path / "cli"),
                "--no-plots"], env)
  api = _start(["-c", script, str(path), str(tmp_path / "api")], env)
  cli_err, api_err = _finish(cli), _finish(api)
  # Progress by default, on as many devices as the command (one per core).
  assert _devices(cli_err) == _devices(api_err) == {sharding.num_cores()}, (cli_err, api_err)
  rows = [{r["id"]: r for r in json.loads((tmp_path / d / "results.json").read_text())["rows"]}
          for d in ("cli", "api")]
  assert rows[0].keys() == rows[1].keys() and len(rows[0]) in (4, 6)
  for i, row in rows[0].items():
    for k in ("val_objective", "test_objective", "test_accuracy", "batch_objective"):
      assert row[k] == rows[1][i][k], (i, k)


def test_compile_cache_off_stays_off(tmp_path):
  """`--compile-cache off` (and compile_cache="off") leave no cache behind,
  though the environment names none and js.run is called after it."""
  path = tmp_path / "c.yaml"
  path.write_text(GRID.replace("seed: [0, 1]", "seed: [0]"))
  env = _env(tmp_path, JAXSWEEP_CACHE_DIR=str(tmp_path / "cache"))
  env.pop("JAXSWEEP_COMPILE_CACHE")
  cli = _start(["-m", "jaxsweep", "--compile-cache", "off", "run", str(path), "--out",
                str(tmp_path / "cli"), "--no-plots", "--quiet"], env)
  api = _start(["-c", "import sys, jaxsweep as js\n"
                "js.run_config(sys.argv[1], compile_cache='off', progress=False)\n"
                "js.run_config(sys.argv[1], progress=False)  # Still off.\n",
                str(path)], env)
  _finish(cli), _finish(api)
  xla = tmp_path / "cache" / "xla"
  assert not xla.exists() or not os.listdir(xla), os.listdir(xla)
