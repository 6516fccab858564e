"""Results a researcher can trust: selection, comparable metrics, honest plots,
the effective config and a dry run that compiles nothing.

Most tests build :class:`~jaxsweep.results.Results` rows by hand (no JAX);
the config round trip and ``jaxsweep plan`` use a tiny config through the CLI.
"""

import contextlib
import io
import math
import os

import numpy as np
import pytest
import yaml

import jaxsweep as js
from jaxsweep import cli
from jaxsweep import config as config_lib
from jaxsweep import report
from jaxsweep import space
from jaxsweep.report import plots
from tests import helpers

METRICS = ["val_accuracy", "val_nll", "val_objective", "test_accuracy", "test_nll",
           "test_objective", "train_accuracy", "train_objective"]


def make(runs, *, swept=("learning_rate", "seed"), loss=None, splits=("val", "test")):
  """Results from ``(settings, val_accuracy, status)`` triples.

  The test accuracy is the validation one minus 0.05; an unstable run's
  objective is large, a diverged run's metrics are NaN but its accuracy.

  Args:
    runs: one ``(dict of swept values, val accuracy, status)`` per variant.
    swept: the swept columns.
    loss: per variant, its ``loss.*`` settings (default: the same for all).
    splits: the evaluated splits (``("test",)``: data without validation).
  """
  rows, history, settings = [], {}, {}
  for i, (values, acc, status) in enumerate(runs):
    bad = status == "diverged"
    nll = math.nan if bad else (5.0 if status == "unstable" else 1.0 - acc)
    metrics = {}
    for split, shift in (("val", 0.0), ("test", -0.05), ("train", 0.02)):
      if split in splits or split == "train":
        metrics.update({f"{split}_accuracy": acc + shift, f"{split}_nll": nll,
                        f"{split}_objective": nll})
    note = {"unstable": "the training objective ended at 5, 4x its value at step 0",
            "diverged": "a non-finite loss or parameter at step 3"}.get(status, "")
    rows.append({"variant": i, "id": f"id{i}", **values, "group": 0, "status": status,
                 "note": note, "diverged_step": 3 if bad else None, "stopped_step": None,
                 "steps": 8, "params": 212, "seconds": 0.5, **metrics})
    history[i] = [{"step": 0, **{k: 0.25 if "accuracy" in k else 1.4 for k in metrics}},
                  {"step": 8, **metrics}]
    settings[i] = {**{f"optimizer.{k}" if k != "seed" else k: v for k, v in values.items()},
                   "loss.name": "cross_entropy", **(loss[i] if loss else {})}
  metric_names = [m for m in METRICS if any(m in r for r in rows)]
  target = "val_accuracy" if "val" in splits else "test_accuracy"
  return js.Results(rows, history, swept=list(swept), target=target, mode="max",
                    settings=settings, metrics=metric_names, seconds=1.0,
                    groups=[{"group": 0, "variants": len(rows)}])


def seeds_of(lr, accs, statuses=None):
  statuses = statuses or ["ok"] * len(accs)
  return [({"learning_rate": lr, "seed": s}, a, st)
          for s, (a, st) in enumerate(zip(accs, statuses))]


def run_cli(argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main(argv)
  return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------
# Selection robust to seeds.

def test_selection_is_the_best_mean_not_the_best_seed(tmp_path):
  # lr 0.1 has the best single seed (0.95) but a worse mean than lr 0.01.
  res = make(seeds_of(0.1, [0.95, 0.60, 0.62]) + seeds_of(0.01, [0.80, 0.78, 0.79]))
  assert res.table[0]["variant"] == 0  # The best single run...
  chosen = res.selected  # ...is not the selection.
  assert chosen["learning_rate"] == 0.01 and chosen["best"]
  assert chosen["val_accuracy_mean"] == pytest.approx(0.79)
  assert chosen["val_accuracy_std"] == pytest.approx(np.std([0.80, 0.78, 0.79], ddof=1))
  assert res.best["variant"] == 3  # The selected configuration's best seed.
  text = report.format_aggregated(res)
  starred = [line for line in text.splitlines() if line.startswith("*")]
  assert len(starred) == 1 and starred[0].split()[1] == "0.01"
  lines = report.selection_lines(res)
  assert lines[0].startswith("selected: learning_rate=0.01, mean over seeds 0, 1, 2: "
                             "val_accuracy = 0.79 ± 0.01; report test_accuracy = 0.74 ± 0.01")
  assert lines[1].startswith("best single run: variant 0 (learning_rate=0.1, seed=0)")
  assert "not the selection" in lines[1] and not lines[1].startswith("best:")
  # best.yaml: that configuration without the seed, the seeds in a comment.
  config = {"optimizer": {"name": "sgd", "learning_rate": 1.0}, "seed": 7,
            "sweep": {"optimizer.learning_rate": [0.1, 0.01], "seed": [0, 1, 2]}}
  report.write_outputs(res, str(tmp_path), config=config, plots=False)
  text = (tmp_path / "best.yaml").read_text()
  cfg = yaml.safe_load(text)
  assert cfg == {"optimizer": {"name": "sgd", "learning_rate": 0.01},
                 "loss": {"name": "cross_entropy"}}  # No seed, not even the config's.
  assert "over seeds 0, 1, 2" in text and "val_accuracy = 0.79 ± 0.01" in text
  assert "test_accuracy = 0.74 ± 0.01  <- the number to report" in text
  assert "jaxsweep run best.yaml seed=0,1,2" in text


def test_ties_are_broken_by_the_lower_std():
  res = make(seeds_of(0.1, [0.5, 1.0]) + seeds_of(0.01, [0.625, 0.875]))
  agg = res.aggregate()
  assert agg[0]["val_accuracy_mean"] == agg[1]["val_accuracy_mean"] == 0.75
  assert res.selected["learning_rate"] == 0.01  # std 0.18 beats 0.35.


def test_float_noise_in_a_mean_is_a_tie_broken_by_the_lower_std():
  """Issue #23: 44/429 correct averaged in two orders gives 0.10256410142 and
  0.10256409893; the larger std ranked first on the 9th digit."""
  res = make([({"learning_rate": 0.1, "seed": 0}, 0.10256410142 + 0.1, "ok"),
              ({"learning_rate": 0.1, "seed": 1}, 0.10256410142 - 0.1, "ok"),
              ({"learning_rate": 0.01, "seed": 0}, 0.10256409893 + 0.05, "ok"),
              ({"learning_rate": 0.01, "seed": 1}, 0.10256409893 - 0.05, "ok")])
  agg = res.aggregate()
  assert agg[0]["val_accuracy_mean"] < agg[1]["val_accuracy_mean"]  # Lower by float noise...
  assert res.selected["learning_rate"] == 0.01  # ...but the std decides.
  assert [r["tie"] for r in agg] == ["", "="] and agg[0]["tie_break"] == "lower std"
  assert "lower std decided" in res.caption() and "lower std" in res.caption()


def test_exact_ties_fall_to_sweep_order_and_are_marked():
  res = make(seeds_of(0.3, [0.5, 0.7]) + seeds_of(0.1, [0.5, 0.7])
             + seeds_of(0.2, [0.5 + 1e-9, 0.7]))
  agg = res.aggregate()
  assert [r["learning_rate"] for r in agg] == [0.3, 0.1, 0.2]  # Variant order.
  assert [r["tie"] for r in agg] == ["", "==", "=="]
  assert agg[0]["tie_break"] == "variant order"
  # The per-variant table: near-equal targets go in variant order too.
  rows = make([({"learning_rate": 0.3}, 0.10256409893, "ok"),
               ({"learning_rate": 0.1}, 0.10256410142, "ok")], swept=("learning_rate",))
  assert [r["variant"] for r in rows.table] == [0, 1]


def test_tie_classes_do_not_depend_on_the_order_given():
  values = [1.0, 1.0 + 4e-7, 1.0 + 8e-7, 1.0 + 1.2e-6, 2.0]
  classes = js.selection.tie_classes(values)
  assert classes == [0, 0, 0, 1, 2]
  assert js.selection.tie_classes(values[::-1]) == classes[::-1]


def test_unstable_seeds_count_diverged_seeds_do_not():
  res = make(seeds_of(0.1, [0.7, 0.7, 0.4], ["ok", "ok", "unstable"])
             + seeds_of(0.3, [0.9, 0.9, 0.1], ["ok", "ok", "diverged"])
             + seeds_of(1.0, [0.5, 0.5, 0.5], ["unstable"] * 3)
             + seeds_of(0.01, [0.55, 0.56, 0.57]))
  agg = {r["learning_rate"]: r for r in res.aggregate()}
  assert agg[0.1]["val_accuracy_mean"] == pytest.approx(0.6)  # The unstable 0.4 counts.
  assert agg[0.1]["unstable"] == 1 and agg[0.1]["val_accuracy_n"] == 3
  assert agg[0.3]["val_accuracy_mean"] == pytest.approx(0.9)  # The diverged 0.1 does not.
  assert agg[0.3]["diverged"] == 1 and agg[0.3]["val_accuracy_n"] == 2
  # Healthy seeds only first, then those with a diverged seed, then all unstable.
  assert [r["learning_rate"] for r in res.aggregate()] == [0.1, 0.01, 0.3, 1.0]
  assert res.selected["learning_rate"] == 0.1
  text = report.format_aggregated(res)
  for cell in ("unstable 1/3", "diverged 1/3", "unstable 3/3", "ok 3/3"):
    assert cell in text
  assert "3 diverged" not in text and "1 diverged seed(s) are left out" in text


def test_configurations_stopped_early_rank_after_those_trained_in_full():
  res = make(seeds_of(0.1, [0.7, 0.6]) + seeds_of(0.01, [0.9, 0.95], ["stopped"] * 2))
  assert [r["learning_rate"] for r in res.aggregate()] == [0.1, 0.01]
  text = report.format_aggregated(res)
  assert "stopped 2/2" in text and "2 stopped seed(s) count with their metrics" in text


def test_without_seeds_best_is_the_best_row(tmp_path):
  res = make([({"learning_rate": lr}, a, "ok") for lr, a in ((0.1, 0.7), (0.01, 0.8))],
             swept=("learning_rate",))
  assert not res.has_seeds and res.best == res.table[0] == res.rows[1]
  assert res.selected["variants"] == [1]
  assert report.selection_lines(res) == [
      "best: variant 1 (learning_rate=0.01): val_accuracy = 0.8; report test_accuracy = 0.75"]
  report.write_outputs(res, str(tmp_path), config={"optimizer": {"name": "sgd"}}, plots=False)
  assert "jaxsweep run best.yaml\n" in (tmp_path / "best.yaml").read_text()


def test_nothing_selected_when_nothing_trained_well(tmp_path):
  res = make(seeds_of(1.0, [0.5, 0.4], ["unstable", "diverged"]))
  assert res.selected is None
  assert report.selection_lines(res)[0].startswith("nothing selected")
  paths = report.write_outputs(res, str(tmp_path), config={"optimizer": {}}, plots=False)
  assert "best" not in paths


# --------------------------------------------------------------------------
# Val and test column sets, and which number to report.

def test_per_variant_table_has_val_then_test_and_says_what_to_report():
  res = make(seeds_of(0.1, [0.7, 0.6], ["ok", "unstable"]) + seeds_of(1.0, [0.2], ["diverged"]))
  text = report.format_table(res, columns=None)
  header = text.splitlines()[0].split()
  assert header[:4] == ["variant", "learning_rate", "seed", "status"]
  assert header[4:] == ["val_accuracy", "val_nll", "|", "test_accuracy", "test_nll", "|",
                        "params"]  # The objective equals the nll here: not repeated.
  assert "train_accuracy" not in text
  assert "ranked by val_accuracy on the validation split" in text
  assert ("Report the test_accuracy of the selected configuration (the mean over its seeds)"
          in text)
  assert "variant 1 unstable: the training objective ended at 5" in text
  assert "variant 2 diverged: a non-finite loss or parameter at step 3" in text
  assert "1 unstable, 1 diverged" in text


def test_without_validation_the_table_warns_that_it_ranked_on_test():
  res = make([({"learning_rate": lr}, a, "ok") for lr, a in ((0.1, 0.7), (0.01, 0.8))],
             swept=("learning_rate",), splits=("test",))
  assert res.target == "test_accuracy"
  text = report.format_table(res)
  assert "ranked by test_accuracy on the test split" in text
  assert "WARNING: no validation split: ranked on the test split" in text
  assert "optimistic" in text and "Report the" not in text
  md = report.format_markdown_report(res)
  assert "WARNING: no validation split" in md


def test_results_md_explains_val_and_test(tmp_path):
  res = make(seeds_of(0.1, [0.7, 0.6]) + seeds_of(0.01, [0.5, 0.55]))
  report.write_outputs(res, str(tmp_path), plots=False)
  md = (tmp_path / "results.md").read_text()
  assert "use the validation split (val_accuracy), held out of training" in md
  assert "test_accuracy of the selected configuration is the number to report" in md
  assert "`unstable`" in md and "`diverged`" in md


# --------------------------------------------------------------------------
# Comparable metrics.

def test_objective_target_refused_when_the_loss_varies(tmp_path):
  runs = seeds_of(0.1, [0.7, 0.6])
  varied = make(runs, loss=[{"loss.label_smoothing": 0.0}, {"loss.label_smoothing": 0.1}])
  with pytest.raises(js.ConfigError, match="not comparable") as e:
    varied.ranked("val_objective")
  assert "loss.label_smoothing" in str(e.value) and "val_nll" in e.value.fix
  assert varied.ranked("val_nll").target == "val_nll"
  same = make(runs, loss=[{"loss.label_smoothing": 0.1}] * 2)
  assert same.ranked("val_objective").target == "val_objective"
  varied.to_json(str(tmp_path / "results.json"))
  code, _, err = run_cli(["report", str(tmp_path), "--target", "val_objective"])
  assert code == 2 and "key 'target'" in err and "not comparable" in err
  assert "Traceback" not in err and len(err.strip().splitlines()) == 2  # Message, fix.
  code, out, err = run_cli(["report", str(tmp_path), "--target", "val_nll", "--no-plots"])
  assert code == 0, err


def test_objective_target_refused_before_training():
  with helpers.count_compiles() as compiles, pytest.raises(js.ConfigError,
                                                           match="not comparable"):
    helpers.run({"learning_rate": [1e-2], "label_smoothing": [0.0, 0.1]},
                target="val_objective")
  assert compiles == []


# --------------------------------------------------------------------------
# Plots.

def _figure():
  return plots._figure(9, 4)  # pylint: disable=protected-access


def test_bands_stay_inside_the_metric_range():
  # Five or more seeds near 1: a 95 % CI of the mean would pass 1; clipped.
  res = make(seeds_of(0.1, [1.0, 1.0, 1.0, 0.9, 1.0, 1.0])
             + seeds_of(0.01, [0.99, 1.0, 0.8]))
  fig = _figure()
  plots.plot_vs(fig, res, "learning_rate", ["val_accuracy"])
  ax = fig.axes[0]
  [poly] = [c for c in ax.collections if type(c).__name__ in ("PolyCollection",
                                                              "FillBetweenPolyCollection")]
  ys = np.concatenate([p.vertices[:, 1] for p in poly.get_paths()])
  assert ys.min() >= 0.0 and ys.max() <= 1.0 and ys.max() == 1.0
  title = fig.get_suptitle()
  assert "min–max (2-4 runs)" in title and "95% CI of the mean, t (>= 5 runs)" in title
  mean, low, high, kind = plots.band([1.0, 1.0, 1.0, 0.9, 1.0, 1.0], 0.0, 1.0)
  assert kind == "95% CI" and high == 1.0 and low < mean < 1.0
  assert plots.band([0.2, 0.3, 0.4]) == (pytest.approx(0.3), 0.2, 0.4, "min–max")


def test_heatmap_cells_are_labelled_with_the_swept_values():
  runs = [({"learning_rate": lr, "width": w, "seed": 0}, 0.5 + w / 100, "ok")
          for lr in (1e-3, 1e-2, 1e-1) for w in (16, 32)]
  res = make(runs, swept=("learning_rate", "width", "seed"))
  fig = _figure()
  plots.plot_heatmap(fig, res, "learning_rate", "width")
  ax = fig.axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001", "0.01", "0.1"]
  assert [t.get_text() for t in ax.get_yticklabels()] == ["16", "32"]


def sobol_results(with_bad=False):
  sweep = {"random": {"params": {"learning_rate": {"log_uniform": [1e-4, 1.0]},
                                 "weight_decay": {"log_uniform": [1e-6, 1e-2]}},
                      "samples": 32, "method": "sobol", "seed": 0}}
  points = space.expand(sweep)
  runs = []
  for i, p in enumerate(points):
    status = ("unstable" if i == 3 else "diverged" if i == 5 else "ok") if with_bad else "ok"
    runs.append((p, 0.9 - 0.05 * abs(math.log10(p["learning_rate"]) + 2), status))
  return make(runs, swept=("learning_rate", "weight_decay")), sweep, points


def test_random_search_is_binned_by_ranges_and_scattered(tmp_path):
  res, sweep, points = sobol_results()
  swept = {p["learning_rate"] for p in points}
  for definition in (sweep, None):  # From the sweep, or guessed from the values.
    assert plots.is_sampled(res, "learning_rate", definition)
    fig = _figure()
    plots.plot_heatmap(fig, res, "learning_rate", "weight_decay", sweep=definition)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert 2 <= len(labels) <= 8 and all("–" in label for label in labels)
    ends = [float(x) for label in labels for x in label.split("–")]
    assert all(min(abs(e - v) / v for v in swept) < 5e-3 for e in ends)  # Swept values.
  fig = _figure()
  plots.plot_scatter(fig, res, "learning_rate", ["val_accuracy"], log=True)
  ax = fig.axes[0]
  kinds = [type(c).__name__ for c in ax.collections]
  assert "PathCollection" in kinds and not any("Poly" in k for k in kinds)  # No band.
  assert len(ax.collections[0].get_offsets()) == 32
  assert any(line.get_label().startswith("median per bin") for line in ax.get_lines())
  assert not plots.is_sampled(make(seeds_of(0.1, [0.5]) + seeds_of(0.2, [0.6])),
                              "learning_rate")  # A grid.
  paths = plots.make_plots(res, str(tmp_path), sweep=sweep)
  assert sorted(os.path.basename(p) for p in paths) == [
      "heatmap_learning_rate__weight_decay.png", "learning_curves.png",
      "metric_vs_learning_rate.png", "metric_vs_weight_decay.png"]


def test_unstable_and_diverged_markers():
  res = make(seeds_of(0.1, [0.7, 0.6]) + seeds_of(1.0, [0.4, 0.2], ["unstable", "diverged"]))
  fig = _figure()
  plots.plot_vs(fig, res, "learning_rate", ["val_accuracy", "val_nll"], log=True)
  for ax in fig.axes[:2]:
    lines = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
    assert lines["unstable"].get_marker() == "^" and lines["unstable"].get_color() == "orange"
    assert list(lines["unstable"].get_xdata()) == [1.0]
    assert lines["diverged"].get_marker() == "x" and lines["diverged"].get_color() == "red"
  res, _, _ = sobol_results(with_bad=True)
  fig = _figure()
  plots.plot_scatter(fig, res, "learning_rate", ["val_accuracy"], log=True)
  labels = [line.get_label() for line in fig.axes[0].get_lines()]
  assert "unstable (1)" in labels and "diverged (1)" in labels
  fig = _figure()
  plots.plot_heatmap(fig, res, "learning_rate", "weight_decay")
  assert any(line.get_marker() == "^" for line in fig.axes[0].get_lines())


def test_learning_curves_start_at_step_0_with_val_and_train():
  res = make(seeds_of(0.1, [0.7, 0.6]))
  fig = _figure()
  plots.plot_curves(fig, res, ["accuracy", "nll"], curves=2)
  ax = fig.axes[0]
  solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
  dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
  assert len(solid) == len(dashed) == 2
  assert all(line.get_xdata()[0] == 0 for line in solid + dashed)
  assert list(solid[0].get_ydata()) == [0.25, 0.7]  # val_accuracy of the best variant.
  assert "dashed: train" in fig.get_suptitle()


# --------------------------------------------------------------------------
# The effective config, and a dry run that compiles nothing.

TINY = helpers.TINY_BASE + """\
sweep:
  optimizer.learning_rate: [1.0e-3, 1.0e-2]
  seed: [0, 1]
"""


@pytest.fixture
def tiny(tmp_path):
  path = tmp_path / "tiny.yaml"
  path.write_text(TINY)
  return str(path)


def test_config_yaml_expands_to_the_same_variants(tiny, tmp_path):
  out = str(tmp_path / "out")
  # A traced key swept (one compilation) and a structural one fixed.
  overrides = ["optimizer.b1=0.8,0.9", "train.steps=3"]
  code, _, err = run_cli(["run", tiny, "--out", out, "--quiet", "--no-plots", *overrides])
  assert code == 0, err
  saved = config_lib.load(os.path.join(out, "config.yaml"))
  direct = config_lib.load(tiny, overrides)
  assert len(saved.points) == len(direct.points) == 8  # Not the file's 4.
  assert saved.points == direct.points and saved.base == direct.base
  assert saved.raw["train"]["steps"] == 3
  assert saved.raw["sweep"]["optimizer.b1"] == [0.8, 0.9]
  rows = js.Results.from_json(os.path.join(out, "results.json")).rows
  assert len(rows) == 8


@pytest.mark.parametrize("sweep, overrides", [
    ({"optimizer.learning_rate": {"log_uniform": [1e-4, 1.0], "num": 4}, "seeds": 2},
     ["model.activation=relu,tanh"]),
    ({"random": {"params": {"optimizer.learning_rate": {"log_uniform": [1e-4, 1.0]}},
                 "samples": 5, "method": "sobol"}}, ["model.features=[8],[16]"]),
    ({"optimizer.learning_rate": [0.1, 0.3], "seed": [0, 1]}, ["optimizer.learning_rate=0.2"]),
    ({"optimizer.name": ["sgd", "adam"],
      "when": {"if": {"optimizer.name": "sgd"}, "then": {"optimizer.momentum": [0.0, 0.9]}}},
     []),
], ids=["grid+swept", "random+swept", "fixed-wins", "when"])
def test_effective_config_round_trip(sweep, overrides):
  raw = {"data": {"name": "synthetic"}, "model": {"name": "mlp"}, "sweep": sweep}
  cfg = config_lib.load(raw=raw, overrides=overrides)
  again = config_lib.load(raw=yaml.safe_load(yaml.safe_dump(js.keys.plain(cfg.raw), sort_keys=False)))
  assert again.points == cfg.points and again.base == cfg.base


def test_wandb_sweep_is_saved_in_the_grammar(tmp_path):
  (tmp_path / "wb.yaml").write_text(
      "method: random\nrun_cap: 4\nparameters:\n"
      "  optimizer.learning_rate: {distribution: log_uniform_values, min: 1.0e-4, max: 0.1}\n"
      "  model.activation: {values: [relu, tanh]}\n")
  (tmp_path / "c.yaml").write_text("model: {name: mlp}\n")
  cfg = config_lib.load(str(tmp_path / "c.yaml"), wandb=str(tmp_path / "wb.yaml"))
  again = config_lib.load(raw=yaml.safe_load(yaml.safe_dump(js.keys.plain(cfg.raw), sort_keys=False)))
  assert len(cfg.points) == 4 and again.points == cfg.points


def test_unparse_is_the_inverse_of_parse():
  for sweep in ({"a": [1, 2], "b": {"uniform": [0, 1], "samples": 3}, "seeds": 2},
                {"zip": {"a": [1, 2], "b": [3, 4]}, "c": {"fixed": [5, 6]}},
                {"chain": [{"a": [1]}, {"b": {"int_uniform": [1, 3]}}]},
                {"random": {"params": {"x": {"choice": ["p", "q"]}, "y": 3},
                            "samples": 4, "seed": 2, "method": "halton"}}):
    tree = space.parse(sweep)
    text = yaml.safe_dump(space.unparse(tree), sort_keys=False)
    assert space.parse(space.load_yaml(text)) == tree
    assert space.expand(space.load_yaml(text)) == space.expand(sweep)


def test_fixed_override_inside_a_combinator_is_refused():
  raw = {"sweep": {"random": {"params": {"optimizer.learning_rate": {
      "log_uniform": [1e-4, 1.0]}}, "samples": 4}}}
  with pytest.raises(js.ConfigError, match="would be ignored"):
    config_lib.load(raw=raw, overrides=["optimizer.learning_rate=0.1"])


def test_plan_compiles_nothing_by_default(tiny):
  with helpers.count_compiles() as compiles:
    code, out, err = run_cli(["plan", tiny, "model.features=[8],[16]"])
  assert code == 0, err
  assert compiles == []
  # The planner masks the two widths in one program (the padding is cheap).
  assert "jaxsweep plan: group 1/1" in err
  assert "model.features  vectorized: 2 -> 1 programs" in out
  assert "no compilation" in err
  assert "212 parameters" in out and "state" in out and "at least" in out
  code, out, err = run_cli(["plan", tiny, "--no-memory"])
  assert code == 0 and "parameters" not in out and not err


def test_plan_measures_memory_when_asked(tiny, monkeypatch):
  """--measure-memory is the compile-based estimate (stubbed here: it compiles)."""
  calls = []

  def estimate(plan, *, progress=None, **kwargs):
    for group in plan.groups:
      progress(group)
    calls.append(kwargs)
    return {g.index: f"measured group {g.index}" for g in plan.groups}

  monkeypatch.setattr(js.engine.sizing, "estimate_memory", estimate)
  code, out, err = run_cli(["plan", tiny, "--measure-memory", "--chunk-size", "2"])
  assert code == 0, err
  assert calls and calls[0]["chunk_size"] == 2
  assert "group 1/1: 4 variants: compiling the step" in err
  assert "measured group 0" in out and "at least" not in out
