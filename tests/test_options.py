"""js.RunOptions: one definition of the run options for js.run, js.run_config
and the command (issue #27)."""

import pytest
import yaml

import jaxsweep as js
from jaxsweep import cli
from jaxsweep import config as config_lib
from jaxsweep import options as options_lib
from jaxsweep import report
from tests import helpers


@pytest.mark.parametrize("field, value", [
    ("target", 3),
    ("mode", "up"),
    ("chunk_size", 0),
    ("lanes", 0),
    ("lanes", "fast"),
    ("unstable_factor", 1),
    ("memory_budget", "lots"),
    ("checkpoint_every", -1),
    ("checkpoint_every", float("nan")),
    ("max_variants", 0),
    ("resume", "yes"),
    ("progress", "loud"),
    ("outputs", ["plots"]),
    ("allow_zero_learning_rate", 1),
])
def test_a_bad_option_is_refused_naming_its_field(field, value):
  with pytest.raises(js.ConfigError) as e:
    js.RunOptions(**{field: value})
  assert e.value.key == field and field in str(e.value)


def test_good_options_are_kept_as_given():
  opts = js.RunOptions(mode="min", lanes="auto", chunk_size=8, unstable_factor=5,
                       memory_budget="2GiB", checkpoint_every=0, max_variants=20_000)
  assert (opts.lanes, opts.chunk_size, opts.checkpoint_every) == ("auto", 8, 0)
  assert js.RunOptions().checkpoint_every == js.api.DEFAULT_CHECKPOINT_EVERY


def test_resume_without_out_is_refused_when_the_run_starts():
  # Not when made: the command chooses its default directory after its flags.
  opts = js.RunOptions(resume=True)
  with pytest.raises(js.ConfigError, match="needs out=") as e:
    opts.check_out()
  assert e.value.key == "out"


def test_run_with_options_equals_run_with_the_same_keywords():
  keywords = dict(chunk_size=1, lanes=1, unstable_factor=5.0, mode="max", progress=False)
  sweep = {"learning_rate": [1e-2, 3e-2]}
  by_keywords = helpers.run(sweep, **keywords)
  by_options = helpers.run(sweep, options=js.RunOptions(**keywords))
  helpers.assert_same_results(by_keywords, by_options)
  # A keyword fills a field the options leave at its default.
  mixed = helpers.run(sweep, options=js.RunOptions(chunk_size=1, lanes=1, unstable_factor=5.0,
                                                   mode="max"), progress=False)
  helpers.assert_same_results(by_keywords, mixed)


def test_an_option_given_both_ways_is_refused_naming_it():
  with pytest.raises(js.ConfigError, match="lanes") as e:
    helpers.run({"learning_rate": [1e-2]}, options=js.RunOptions(lanes=2), lanes=1)
  assert e.value.key == "lanes"
  with pytest.raises(js.ConfigError) as e:
    js.run_config("no-such.yaml", options=js.RunOptions(out="a"), out="b")
  assert e.value.key == "out"
  with pytest.raises(js.ConfigError, match="run option"):
    js.run_config("no-such.yaml", outs="b")


def _zero_lr_error(fn):
  with pytest.raises(js.ConfigError) as e:
    fn()
  assert e.value.key == "optimizer.learning_rate"
  return e.value.detail, e.value.fix


def test_run_refuses_a_zero_learning_rate_as_a_config_does():
  by_run = _zero_lr_error(lambda: helpers.run({"learning_rate": [0.0, 1e-2]}))
  raw = yaml.safe_load(helpers.TINY_BASE + "sweep: {optimizer.learning_rate: [0.0, 1.0e-2]}\n")
  by_config = _zero_lr_error(lambda: config_lib.load(raw=raw))
  assert by_run == by_config and "allow_zero_learning_rate" in by_run[1]
  res = helpers.run({"learning_rate": [0.0, 1e-2]}, allow_zero_learning_rate=True,
                    chunk_size=1, lanes=1, progress=False)
  assert len(res.rows) == 2


def test_a_config_checks_unstable_factor_with_the_runs_rule():
  raw = yaml.safe_load(helpers.TINY_BASE + "run: {unstable_factor: 1}\n")
  with pytest.raises(js.ConfigError) as e:
    config_lib.load(raw=raw)
  assert e.value.key == "run.unstable_factor" and "a number above 1" in str(e.value)
  with pytest.raises(js.ConfigError) as by_run:
    js.RunOptions(unstable_factor=1)
  assert e.value.detail == by_run.value.detail


def _cli_args(*flags):
  parser = cli._parser()  # pylint: disable=protected-access
  return parser.parse_args(["--compile-cache", "off", "run", "c.yaml", *flags])


def test_the_command_builds_the_options_run_takes():
  args = _cli_args("--out", "d", "--resume", "--checkpoint-every", "10", "--chunk-size", "4",
                   "--lanes", "2", "--unstable-factor", "5", "--memory-budget", "2GiB",
                   "--max-variants", "20000", "--no-plots", "--quiet", "--top", "3")
  expected = options_lib.merge(None, dict(
      out="d", resume=True, checkpoint_every=10, chunk_size=4, lanes=2, unstable_factor=5,
      memory_budget="2GiB", max_variants=20_000, compile_cache="off", progress=False,
      outputs={"aggregate": True, "plots": False, "tensorboard": False, "curves": 3}))
  assert cli.run_options(args) == expected
  defaults = cli.run_options(_cli_args())
  assert defaults == js.RunOptions(
      compile_cache="off", outputs={"aggregate": True, "plots": True, "tensorboard": False,
                                    "curves": report.DEFAULT_CURVES})


@pytest.mark.parametrize("flags, shown", [
    (("--checkpoint-every", "-1"), "--checkpoint-every -1"),
    (("--chunk-size", "0"), "--chunk-size 0"),
    (("--unstable-factor", "0.5"), "--unstable-factor 0.5"),
    (("--memory-budget", "lots"), "--memory-budget lots"),
])
def test_the_command_names_the_flag_of_a_bad_option(flags, shown):
  with pytest.raises(js.ConfigError) as e:
    cli.run_options(_cli_args(*flags))
  assert shown in str(e.value)


@pytest.mark.parametrize("lanes,ok", [("auto", True), (8, True), (0, False), ("fast", False),
                                      (True, False)])
def test_a_configs_run_lanes_follows_the_same_rule_as_the_api(lanes, ok):
  """run.lanes takes what js.run(lanes=) and --lanes take: a positive integer or auto."""
  raw = {"data": {"name": "digits"}, "model": {"name": "mlp"},
         "optimizer": {"name": "adam", "learning_rate": 0.01}, "train": {"steps": 10},
         "run": {"lanes": lanes}}
  if ok:
    assert config_lib.load(raw=raw).run["lanes"] == lanes
    js.RunOptions(lanes=lanes)
  else:
    with pytest.raises(js.ConfigError) as e:
      config_lib.load(raw=raw)
    assert e.value.key == "run.lanes"
