"""Tables, seed aggregation, best config, plots, report/compare, TensorBoard.

Most tests build :class:`~jaxsweep.results.Results` by hand (no JAX
compilation); one tiny real sweep, shared by the module, goes through the CLI
for what only a real run can show: best.yaml reproducing the best row bit for
bit, progress on a non-terminal, and ``report`` re-rendering the run's table.
"""

import contextlib
import io
import itertools
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import jaxsweep as js
from jaxsweep import cli
from jaxsweep import config as config_lib
from jaxsweep import report
from jaxsweep import results as results_lib
from jaxsweep.report import plots
from jaxsweep.report import progress
from jaxsweep.report import tensorboard as tensorboard_lib

METRICS = ["val_accuracy", "val_nll", "test_accuracy", "test_nll", "train_nll"]
PNG = b"\x89PNG\r\n\x1a\n"


def make_results(points, *, diverged=(), target="val_accuracy", mode="max"):
  """Results of a made-up sweep: accuracy is a smooth function of the settings.

  Args:
    points: one dict of swept values per variant.
    diverged: indices of variants that diverged (NaN losses, junk accuracy).
  """
  rows, history, settings = [], {}, {}
  for i, p in enumerate(points):
    lr = p.get("learning_rate", 0.1)
    lr = 0.1 if not isinstance(lr, float) or math.isnan(lr) else lr
    acc = 0.9 - 0.1 * abs(math.log10(lr) + 2) + 0.01 * p.get("seed", 0) + 0.003 * i
    acc -= 0.05 * (p.get("activation") == "tanh") + 0.02 * p.get("width", 0) / 64
    bad = i in diverged
    nan = float("nan")
    final = {"val_accuracy": 0.1 if bad else acc, "val_nll": nan if bad else 1 - acc,
             "test_accuracy": 0.1 if bad else acc - 0.01, "test_nll": nan if bad else 1.02 - acc,
             "train_nll": nan if bad else 1.1 - acc}
    rows.append({"variant": i, "id": f"id{i:04d}", **p, "group": 0,
                 "status": "diverged" if bad else "ok",
                 "note": "a non-finite loss or parameter at step 1" if bad else "",
                 "diverged_step": 1 if bad else None, "stopped_step": None, "steps": 4,
                 "params": 100, "seconds": 0.1, **final})
    history[i] = [{"step": 0, **{k: 0.25 if "accuracy" in k else 1.4 for k in final}},
                  {"step": 2, **{k: v * (0.8 if "accuracy" in k else 1.5)
                                 for k, v in final.items()}},
                  {"step": 4, **final}]
    settings[i] = {("seed" if k == "seed" else f"optimizer.{k}"): v for k, v in p.items()}
  return js.Results(rows, history, swept=list(points[0]), target=target, mode=mode,
                    settings=settings, metrics=METRICS, seconds=1.5,
                    groups=[{"group": 0, "variants": len(points)}])


def grid(**axes):
  names = list(axes)
  return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def run_cli(argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main(argv)
  return code, out.getvalue(), err.getvalue()


def pngs(directory):
  return sorted(n for n in os.listdir(directory) if n.endswith(".png"))


def assert_png(path):
  with open(path, "rb") as f:
    head = f.read(8)
  assert head == PNG and os.path.getsize(path) > 1000, path


# --------------------------------------------------------------------------
# Seed aggregation.

def test_aggregate_matches_numpy():
  res = make_results(grid(learning_rate=[0.1, 0.01], seed=[0, 1, 2]), diverged={4})
  agg = res.aggregate()
  # lr 0.01 has the better mean but a diverged seed: it ranks after lr 0.1.
  assert [r["learning_rate"] for r in agg] == [0.1, 0.01]
  assert [r["best"] for r in agg] == [True, False]
  by_lr = {r["learning_rate"]: r for r in agg}
  for lr, r in by_lr.items():
    members = [row for row in res.rows if row["learning_rate"] == lr]
    healthy = [row for row in members if row["status"] == "ok"]
    assert r["n"] == 3 and r["seeds"] == [0, 1, 2]
    assert r["diverged"] == len(members) - len(healthy)
    assert r["variants"] == [row["variant"] for row in members]
    for m in METRICS:
      values = np.array([row[m] for row in healthy])
      assert r[f"{m}_mean"] == pytest.approx(np.mean(values), rel=1e-12, abs=0)
      assert r[f"{m}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12, abs=0)
      assert r[f"{m}_n"] == len(healthy)
  assert by_lr[0.01]["diverged"] == 1  # Variant 4 (lr 0.01, seed 1) is excluded...
  assert by_lr[0.01]["train_nll_mean"] == pytest.approx(  # ...so no NaN leaks in.
      np.mean([1.1 - r["val_accuracy"] for r in res.rows if r["variant"] in (3, 5)]))
  pop = res.aggregate(ddof=0)
  vals = [r["test_accuracy"] for r in res.rows if r["learning_rate"] == 0.1]
  assert {r["learning_rate"]: r for r in pop}[0.1]["test_accuracy_std"] == pytest.approx(
      np.std(vals, ddof=0))


def test_aggregate_edge_cases():
  res = make_results(grid(learning_rate=[0.1, 0.01, float("nan")], seed=[0, 1]),
                     diverged={1, 4, 5})
  agg = {str(r["learning_rate"]): r for r in res.aggregate()}
  assert agg["0.1"]["test_accuracy_std"] is None  # One healthy seed: spread unknown.
  assert agg["nan"]["test_accuracy_mean"] is None and agg["nan"]["status"] == "diverged"
  assert agg["nan"]["diverged"] == 2 and not agg["nan"]["best"]
  assert res.aggregate()[-1]["learning_rate"] != res.aggregate()[-1]["learning_rate"]
  assert res.has_seeds and not make_results(grid(learning_rate=[0.1, 0.01])).has_seeds


def test_aggregated_table_says_what_was_excluded():
  res = make_results(grid(learning_rate=[0.1, 0.01], seed=[0, 1, 2]), diverged={4})
  text = report.format_aggregated(res)
  assert "diverged 1/3" in text and "ok 3/3" in text and "±" in text
  assert "ddof=1" in text and "1 diverged seed(s) are left out of the means" in text
  assert text.splitlines()[0].split()[:2] == ["best", "learning_rate"]
  top = report.format_aggregated(res, top=1).splitlines()
  assert len(top) == 3 + 3 and top[2].startswith("*")  # Header, rule, row, 3 footer lines.


# --------------------------------------------------------------------------
# Tables and files.

def test_table_compact_and_ranked():
  res = make_results(grid(learning_rate=[1e-4, 3e-2], seed=[0]))
  res.swept = ["optimizer.learning_rate", "seed"]
  for r in res.rows:
    r["optimizer.learning_rate"] = r.pop("learning_rate")
  text = report.format_table(res)
  header = text.splitlines()[0]
  assert "learning_rate" in header and "optimizer.learning_rate" not in header
  assert "0.0001" not in text and "1e-04" in text
  assert report.short_names(["optimizer.weight_decay", "loss.weight_decay"]) == {
      "optimizer.weight_decay": "optimizer.weight_decay",
      "loss.weight_decay": "loss.weight_decay"}


def test_repr_is_the_ranked_table_without_report():
  rows = [{"variant": 0, "id": "a", "optimizer.learning_rate": 0.1, "seed": 0, "group": 0,
           "status": "ok", "note": "", "diverged_step": None, "steps": 4, "val_nll": 0.3,
           "val_accuracy": 0.8, "test_accuracy": 0.78},
          {"variant": 1, "id": "b", "optimizer.learning_rate": 1.0, "seed": 0, "group": 0,
           "status": "diverged", "note": "a non-finite loss or parameter at step 2",
           "diverged_step": 2, "steps": 4, "val_nll": float("nan"), "val_accuracy": 0.95,
           "test_accuracy": 0.9},
          {"variant": 2, "id": "c", "optimizer.learning_rate": 0.01, "seed": 0, "group": 0,
           "status": "ok", "note": "", "diverged_step": None, "steps": 4, "val_nll": 0.2,
           "val_accuracy": 0.9, "test_accuracy": 0.88}]
  res = js.Results(rows, {}, swept=["optimizer.learning_rate", "seed"],
                   target="val_accuracy", mode="max",
                   metrics=["val_nll", "val_accuracy", "test_accuracy"])
  assert repr(res) == str(res) == "\n".join([
      "variant  learning_rate  seed  status    val_accuracy  val_nll  |  test_accuracy",
      "-------  -------------  ----  --------  ------------  -------  |  -------------",
      "      2           0.01     0  ok                 0.9      0.2  |           0.88",
      "      0            0.1     0  ok                 0.8      0.3  |           0.78",
      "      1              1     0  diverged          0.95      nan  |            0.9",
      "3 variants, ranked by val_accuracy on the validation split (higher is better); "
      "1 diverged",
      "  variant 1 diverged: a non-finite loss or parameter at step 2",
      "Report the test_accuracy of the selected variant (the first row): the test split "
      "played no part in the selection."])
  assert repr(res) == report.format_table(res)
  healthy = js.Results(rows[::2], {}, swept=["optimizer.learning_rate"],
                       target="val_nll", mode="min", metrics=["val_nll"])
  assert repr(healthy).splitlines()[0].split() == [
      "variant", "learning_rate", "status", "val_nll"]  # No test set, no divider.


def test_report_imports_no_optional_dependency():
  code = ("import sys, jaxsweep.report; "
          "print(sorted(m for m in ('matplotlib', 'pandas', 'pyarrow', 'tensorboardX') "
          "if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.stdout.strip() == "[]"


def test_one_mean_std_convention():
  values = [0.5, 0.7, 0.8]
  assert results_lib.mean_std(values) == (pytest.approx(np.mean(values)),
                                          pytest.approx(np.std(values, ddof=1)))
  assert results_lib.mean_std([0.5]) == (0.5, None)
  assert plots.band([0.5]) == (0.5, None, None, None)  # No band for one value.
  assert plots.band(values)[0] == results_lib.mean_std(values)[0]


def test_write_outputs_writes_every_file(tmp_path):
  res = make_results(grid(learning_rate=[0.1, 0.01], activation=["relu", "tanh"],
                          seed=[0, 1]), diverged={3})
  paths = report.write_outputs(res, str(tmp_path), config={"optimizer": {"name": "sgd"},
                                                           "sweep": {"seed": [0, 1]}})
  for name in ("results.csv", "results.json", "results_aggregated.csv",
               "results_aggregated.json", "results.md", "config.yaml", "best.yaml"):
    assert os.path.getsize(tmp_path / name) > 0, name
  agg = json.loads((tmp_path / "results_aggregated.json").read_text())
  assert agg["ddof"] == 1 and len(agg["rows"]) == 4
  assert agg["rows"] == json.loads(results_lib.rows_to_json(res.aggregate()))
  csv_lines = (tmp_path / "results_aggregated.csv").read_text().splitlines()
  assert len(csv_lines) == 5 and csv_lines[0].startswith("learning_rate,activation,best,n,")
  md = (tmp_path / "results.md").read_text()
  assert md.index("Aggregated over seeds") < md.index("Per variant")
  assert "best.yaml" in md and "![heatmap_learning_rate__activation]" in md
  assert pngs(tmp_path) == sorted(os.path.basename(p) for p in paths["plots"])
  if "parquet" in paths:
    assert os.path.getsize(paths["parquet"]) > 0


def test_parquet_when_pyarrow_installed(tmp_path):
  pd = pytest.importorskip("pandas")
  pytest.importorskip("pyarrow")
  res = make_results(grid(learning_rate=[0.1, 0.01], seed=[0, 1]))
  paths = report.write_outputs(res, str(tmp_path), plots=False)
  assert len(pd.read_parquet(paths["aggregated_parquet"])) == 2
  assert len(pd.read_parquet(paths["parquet"])) == 4


def test_json_round_trip_keeps_nan(tmp_path):
  res = make_results(grid(learning_rate=[0.1, float("nan")], seed=[0]), diverged={1})
  res.to_json(str(tmp_path / "results.json"))
  back = js.Results.from_json(str(tmp_path / "results.json"))
  assert math.isnan(back.rows[1]["learning_rate"]) and math.isnan(back.rows[1]["train_nll"])
  assert math.isnan(back.history[1][1]["train_nll"])
  assert report.format_table(back) == report.format_table(res)
  assert json.loads((tmp_path / "results.json").read_text())["rows"][1]["train_nll"] is None


def test_formats():
  res = make_results(grid(learning_rate=[0.1, 0.01], seed=[0, 1]))
  for name, check in (("markdown", lambda t: t.startswith("| best | learning_rate |")),
                      ("csv", lambda t: t.startswith("learning_rate,best,n,ok,stopped")),
                      ("json", lambda t: len(json.loads(t)) == 2),
                      ("plain", lambda t: "±" in t and "\x1b" not in t),
                      ("auto", lambda t: "\x1b" not in t)):
    out = io.StringIO()
    report.render(res, fmt_name=name, stream=out)
    assert check(out.getvalue()), name
  out = io.StringIO()
  report.render(res, fmt_name="csv", aggregate=False, top=3, stream=out)
  assert len(out.getvalue().splitlines()) == 4 and out.getvalue().startswith("variant,")
  out = io.StringIO()
  report.render(res, fmt_name="rich", stream=out)
  assert "learning_rate" in out.getvalue()


def test_best_config_is_new_and_complete():
  raw = {"loss": "cross_entropy", "optimizer": {"name": "sgd", "learning_rate": 0.1},
         "sweep": {"optimizer.learning_rate": [0.1, 0.3]}}
  cfg = report.best_config(raw, {"optimizer.learning_rate": 0.3, "loss.label_smoothing": 0.1,
                                 "model.features": (8, 8), "seed": 2})
  assert cfg == {"loss": {"name": "cross_entropy", "label_smoothing": 0.1},
                 "optimizer": {"name": "sgd", "learning_rate": 0.3},
                 "model": {"features": [8, 8]}, "seed": 2}
  assert raw["optimizer"]["learning_rate"] == 0.1 and "sweep" in raw


def test_no_best_yaml_when_everything_diverged(tmp_path):
  res = make_results(grid(learning_rate=[0.1, 0.01]), diverged={0, 1})
  paths = report.write_outputs(res, str(tmp_path), config={"optimizer": {"name": "sgd"}})
  assert "best" not in paths and not (tmp_path / "best.yaml").exists()
  assert "learning_curves.png" in pngs(tmp_path)  # Says "every variant diverged".


# --------------------------------------------------------------------------
# Plots.

@pytest.mark.parametrize("points, diverged, expected", [
    (grid(learning_rate=[1e-3, 1e-2, 1e-1], seed=[0, 1]), (),
     ["learning_curves.png", "metric_vs_learning_rate.png"]),
    (grid(learning_rate=[1e-3, 1e-1], width=[16, 32, 64], seed=[0, 1]), {2},
     ["heatmap_learning_rate__width.png", "learning_curves.png",
      "metric_vs_learning_rate.png", "metric_vs_width.png"]),
    (grid(activation=["relu", "tanh", "gelu"], seed=[0, 1]), {0},
     ["learning_curves.png", "metric_vs_activation.png"]),
    (grid(learning_rate=[0.01, 0.1, float("nan")], activation=["relu", "tanh"]), {4, 5},
     ["heatmap_learning_rate__activation.png", "learning_curves.png",
      "metric_vs_activation.png", "metric_vs_learning_rate.png"]),
], ids=["1d", "2d", "categorical", "diverged"])
def test_plot_files(tmp_path, points, diverged, expected):
  res = make_results(points, diverged=set(diverged))
  paths = plots.make_plots(res, str(tmp_path))
  assert pngs(tmp_path) == expected
  for p in paths:
    assert_png(p)


def test_many_values_are_binned_in_heatmaps(tmp_path):
  rng = np.random.default_rng(0)
  points = [{"learning_rate": float(10 ** rng.uniform(-4, 0)),
             "width": int(rng.integers(8, 200))} for _ in range(40)]
  paths = plots.make_plots(make_results(points), str(tmp_path))
  assert "heatmap_learning_rate__width.png" in pngs(tmp_path)
  assert all(os.path.getsize(p) > 1000 for p in paths)


def test_diverged_never_plotted_as_values():
  res = make_results(grid(learning_rate=[1e-3, 1e-2, 1e-1], seed=[0, 1]), diverged={5})
  fig = plots._figure(9, 4)  # pylint: disable=protected-access
  plots.plot_vs(fig, res, "learning_rate", ["val_accuracy"], log=True)
  ax = fig.axes[0]
  assert ax.get_xscale() == "log"
  lines = {line.get_label(): line for line in ax.get_lines()}
  mean = lines["mean"]
  healthy_01 = [r["val_accuracy"] for r in res.rows
                if r["learning_rate"] == 1e-1 and r["status"] == "ok"]
  assert list(mean.get_xdata()) == [1e-3, 1e-2, 1e-1]
  assert mean.get_ydata()[2] == pytest.approx(np.mean(healthy_01))  # Not the junk 0.1.
  cross = lines["diverged (1)"]
  assert list(cross.get_xdata()) == [1e-1] and cross.get_color() == "red"


def test_log_axis_choice():
  res = make_results(grid(learning_rate=[0.2, 0.4, 0.8]))
  assert not plots._log_axis(res, "learning_rate", None)  # pylint: disable=protected-access
  assert plots._log_axis(res, "learning_rate",  # pylint: disable=protected-access
                         {"learning_rate": {"log_uniform": [0.2, 0.8], "num": 3}})
  res = make_results(grid(learning_rate=[1e-4, 1e-2, float("nan")]))
  assert plots._log_axis(res, "learning_rate", None)  # pylint: disable=protected-access


def test_plots_skipped_without_matplotlib(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
  monkeypatch.setattr(plots, "_warned_missing", False)
  res = make_results(grid(learning_rate=[0.1, 0.01]))
  assert plots.make_plots(res, str(tmp_path)) == []
  assert plots.make_plots(res, str(tmp_path)) == []
  err = capsys.readouterr().err
  assert err.count("pip install matplotlib") == 1 and not pngs(tmp_path)


# --------------------------------------------------------------------------
# report and compare from disk.

def test_report_rerenders_from_disk(tmp_path):
  res = make_results(grid(learning_rate=[0.1, 0.01], seed=[0, 1, 2]), diverged={2})
  report.write_outputs(res, str(tmp_path), plots=False)
  expected = io.StringIO()
  report.render(res, stream=expected)
  code, out, err = run_cli(["report", str(tmp_path), "--no-plots"])
  assert code == 0 and out.startswith(expected.getvalue()) and not err
  code, out, _ = run_cli(["report", str(tmp_path), "--no-aggregate", "--top", "2",
                          "--no-plots"])
  # Header, rule, 2 rows, ranking, advice, selected, best single run, files.
  assert out.splitlines()[0].split()[0] == "variant" and len(out.splitlines()) == 9
  code, out, _ = run_cli(["report", str(tmp_path), "--target", "val_nll", "--format",
                          "json", "--no-aggregate", "--no-plots"])
  rows = json.loads(out)
  assert [r["val_nll"] for r in rows] == sorted(r["val_nll"] for r in rows[:-1]) + [
      rows[-1]["val_nll"]]  # Ranked on nll, lowest first; the diverged one last.


@pytest.mark.parametrize("content, needle", [
    (None, "no results directory"),
    ("", "no results file"),
    ("{oops", "not a jaxsweep results file"),
    ("[1, 2]", "not a jaxsweep results file"),
    ('{"rows": [{"x": 1}], "swept": [], "target": "a", "mode": "max"}',
     "not a jaxsweep results file"),
], ids=["missing-dir", "missing-file", "bad-json", "not-object", "bad-rows"])
def test_report_errors_exit_2_without_traceback(tmp_path, content, needle):
  d = str(tmp_path / "run")
  if content is not None:
    os.makedirs(d)
  if content:
    with open(os.path.join(d, "results.json"), "w") as f:
      f.write(content)
  code, out, err = run_cli(["report", d])
  assert code == 2 and needle in err and "Traceback" not in err and "fix:" in err
  code, _, err = run_cli(["compare", d, d])
  assert code == 2 and needle in err


def test_compare(tmp_path):
  a = make_results(grid(learning_rate=[0.1, 0.01], seed=[0, 1]))
  b = make_results(grid(learning_rate=[0.01, 0.001], activation=["relu", "tanh"]),
                   diverged={1})
  report.write_outputs(a, str(tmp_path / "adam"), plots=False)
  report.write_outputs(b, str(tmp_path / "sgd"), plots=False)
  code, out, err = run_cli(["compare", str(tmp_path / "adam"), str(tmp_path / "sgd")])
  assert code == 0, err
  best_table, matched = out.split("\n\n")
  assert "adam" in best_table and "sgd" in best_table
  chosen = a.selected  # a swept seeds: its selection is a mean ± std.
  assert js.report.fmt_mean_std(chosen["test_accuracy_mean"],
                                chosen["test_accuracy_std"]) in best_table
  assert f"{b.best['test_accuracy']:.4g}" in best_table  # b did not: its best variant.
  lines = matched.splitlines()
  assert lines[0].split()[0] == "learning_rate" and "B - A" in lines[0]
  assert "A = adam, B = sgd" in matched
  assert all(len(line) <= 100 for line in out.splitlines())  # Issue #26: it was ~330.
  by_lr = {line.split()[0]: line for line in lines[2:2 + 3]}
  assert set(by_lr) == {"0.001", "0.01", "0.1"}
  assert "1/4" not in by_lr["0.01"] and "1/2" in by_lr["0.01"]  # b's diverged (lr .01, tanh)
  assert by_lr["0.1"].split()[-1] == "-" and by_lr["0.001"].split()[-1] == "-"
  mean_a = np.mean([r["test_accuracy"] for r in a.rows if r["learning_rate"] == 0.01])
  mean_b = np.mean([r["test_accuracy"] for r in b.rows
                    if r["learning_rate"] == 0.01 and r["status"] == "ok"])
  assert by_lr["0.01"].split()[-1] == f"{mean_b - mean_a:+.4g}"


# --------------------------------------------------------------------------
# TensorBoard.

def read_events(run_dir):
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  events = []
  for name in sorted(os.listdir(run_dir)):
    if not name.startswith("events.out.tfevents"):
      continue
    with open(os.path.join(run_dir, name), "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc.
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + length]))
      pos += 12 + length + 4
  return events


def test_tensorboard_one_run_per_variant(tmp_path):
  pytest.importorskip("tensorboardX")
  res = make_results(grid(learning_rate=[0.1, 0.01], seed=[0]), diverged={1})
  for _ in range(2):  # Rewriting replaces the event files, no duplicates.
    paths = report.write_outputs(res, str(tmp_path), plots=False, tensorboard=True)
  runs = sorted(os.listdir(paths["tensorboard"]))
  assert runs == ["0000_id0000", "0001_id0001"]
  events = read_events(os.path.join(paths["tensorboard"], runs[0]))
  scalars = [(v.tag, e.step, v.simple_value) for e in events for v in e.summary.value
             if v.HasField("simple_value")]
  assert ("test_accuracy", 2, pytest.approx(res.history[0][1]["test_accuracy"])) in scalars
  assert sum(tag == "train_nll" for tag, _, _ in scalars) == 3  # Steps 0, 2 and 4.
  assert ("hparam/test_accuracy", 4, pytest.approx(res.rows[0]["test_accuracy"])) in scalars
  tags = {v.tag for e in events for v in e.summary.value}
  assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= tags


def test_tensorboard_missing_says_what_to_install(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(tensorboard_lib, "tensorboard_backend", lambda: None)
  res = make_results(grid(learning_rate=[0.1]))
  assert tensorboard_lib.write_tensorboard(res, str(tmp_path / "tb")) is None
  assert "pip install tensorboardX" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Progress.

EVENTS = [
    {"event": "start", "variants": 6, "groups": 1, "devices": 8},
    {"event": "group", "group": 0, "num_groups": 1, "variants": 6, "steps": 4,
     "chunk_size": 4, "padding": 2, "static": "model.features=(8,)",
     "dynamic": ["learning_rate", "seed"], "lanes": 1, "lanes_source": "default"},
    {"event": "compiled", "group": 0, "seconds": 2.5},
    *[{"event": "period", "group": 0, "chunk_start": c0, "chunk_variants": n,
       "group_variants": 6, "step": step, "steps": 4, "diverged": div,
       "variant_steps_per_s": 400.0, "elapsed": 0.01 * step}
      for c0, n, div in ((0, 4, 1), (4, 2, 1)) for step in (2, 4)],
    {"event": "done", "seconds": 3.0},
]


def test_progress_plain_for_logs():
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream)
  assert not printer.live
  for e in EVENTS:
    printer(e)
  text = stream.getvalue()
  assert "\x1b" not in text and "\r" not in text
  assert len(text.splitlines()) == 5  # start, group, compiled, group end, done.
  assert "compiled in 2.5s" in text and "diverged 2" in text
  assert "2 of 6 variants diverged" in text and "compile 2.5s" in text
  # The mechanics are for -v only (issue #26).
  for word in ("padding", "lanes", "chunk", "vectorized", "traced"):
    assert word not in text
  assert all(len(line) <= progress.WIDTH for line in text.splitlines())


def test_progress_verbose_shows_the_mechanics():
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream, verbose=True)
  for e in EVENTS:
    printer(e)
  text = stream.getvalue()
  assert "padding 2, lanes 1 (default); vectorized: learning_rate, seed" in text


def test_progress_group_line_is_cut_to_the_width():
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream)
  static = ", ".join(f"model.layer_{i}.features={i * 64}" for i in range(12))
  printer(EVENTS[0])
  printer(dict(EVENTS[1], static=static))
  line = stream.getvalue().splitlines()[-1]
  assert len(line) == progress.WIDTH and line.endswith("...")


def test_progress_says_it_is_compiling_with_the_time(monkeypatch):
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream, heartbeat=30.0)
  monkeypatch.setattr(printer, "_sender_busy", lambda: True)  # As if inside the engine.
  printer(dict(EVENTS[0], groups=3))
  printer({"event": "compiling", "group": 1, "num_groups": 3})
  assert stream.getvalue().splitlines()[-1] == "compiling group 2/3 ..."
  t0 = printer._printed  # pylint: disable=protected-access
  printer.tick(t0 + 5)   # Too soon for a plain line.
  assert len(stream.getvalue().splitlines()) == 2
  printer.tick(t0 + 75)
  last = stream.getvalue().splitlines()[-1]
  assert last.startswith("  compiling group 2/3 ... 1m") and "s" in last
  printer.close()


def test_progress_heartbeat_is_silent_outside_the_engine():
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream, heartbeat=0.01)
  printer({"event": "compiling", "group": 0, "num_groups": 1})
  printer.tick(time.monotonic() + 60)  # The sender (this test) is not in jaxsweep.
  assert stream.getvalue().splitlines() == ["compiling group 1/1 ..."]
  printer.close()


def test_progress_plain_lines_and_eta():
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream, min_interval=0.0)
  for e in EVENTS[:4]:
    printer(e)
  line = stream.getvalue().splitlines()[-1]
  # 4 variants x 2 steps done in 0.02 s: 400/s; 24 - 8 left: 0.04 s.
  assert "step 2/4" in line and "variants 1-4/6" in line and "400 variant-steps/s" in line
  assert "ETA <1s" in line and "diverged 1" in line


def test_progress_after_a_resume_shows_the_engines_rate():
  """A resumed group's first period reports step 4 of 4 after 0.01 s: its
  earlier steps were trained by another process and do not count."""
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream, min_interval=0.0)
  for e in EVENTS[:3]:
    printer(e)
  printer({"event": "period", "group": 0, "chunk_start": 0, "chunk_variants": 6,
           "group_variants": 6, "step": 4, "steps": 4, "diverged": 0,
           "variant_steps_per_s": 1200.0, "elapsed": 0.01})
  assert "1,200 variant-steps/s" in stream.getvalue()  # Not 24 / 0.01 = 2,400.


def test_progress_counts_diverged_over_groups():
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream)
  second = [dict(e, group=1, num_groups=2) if e["event"] in ("group", "period") else e
            for e in EVENTS[1:-1]]
  for e in [dict(EVENTS[0], groups=2), *EVENTS[1:-1], *second, EVENTS[-1]]:
    printer(e)
  lines = stream.getvalue().splitlines()
  assert "group 2/2 trained" in lines[-2] and "diverged 2" in lines[-2]
  assert "4 of 6 variants diverged" in lines[-1] and "compile 5.0s" in lines[-1]


def test_progress_rich_live_display():
  pytest.importorskip("rich")
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream, live=True)
  for e in EVENTS:
    printer(e)
  text = stream.getvalue()
  assert "group 1/1" in text and "diverged" in text and "compile 2.5s" in text
  assert not progress._LIVE  # pylint: disable=protected-access
  assert "padding" not in text


def test_progress_rich_shows_compile_time():
  pytest.importorskip("rich")
  stream = io.StringIO()
  printer = report.ProgressPrinter(stream, live=True)
  printer(EVENTS[0])
  printer({"event": "compiling", "group": 0, "num_groups": 1})
  printer._sender_busy = lambda: True  # pylint: disable=protected-access
  printer.tick(printer._phase[1] + 42)  # pylint: disable=protected-access
  assert "compiling... 42s" in stream.getvalue()
  for e in EVENTS[1:]:
    printer(e)
  assert not progress._LIVE  # pylint: disable=protected-access


# --------------------------------------------------------------------------
# One real sweep through the CLI.

TINY = """\
data: {name: synthetic, num_train: 64, num_test: 32}
model: {name: mlp, features: [8]}
optimizer: {name: sgd, learning_rate: 0.1}
train: {steps: 4, batch_size: 16, eval_every: 2}
sweep:
  optimizer.learning_rate: [0.03, 0.3, .nan]
  seed: [0, 1]
"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
  d = tmp_path_factory.mktemp("real")
  (d / "tiny.yaml").write_text(TINY)
  out = str(d / "out")
  code, stdout, stderr = run_cli(["run", str(d / "tiny.yaml"), "--out", out,
                                  "--tensorboard"])
  assert code == 0, stderr
  return {"dir": d, "out": out, "stdout": stdout, "stderr": stderr}


def test_real_run_outputs(real_run):
  out = real_run["out"]
  res = js.Results.from_json(os.path.join(out, "results.json"))
  assert len(res.rows) == 6 and sum(r["status"] == "diverged" for r in res.rows) == 2
  assert pngs(out) == ["learning_curves.png", "metric_vs_optimizer.learning_rate.png"]
  for name in pngs(out):
    assert_png(os.path.join(out, name))
  assert len(os.listdir(os.path.join(out, "tensorboard"))) == 6
  assert "diverged 2/2" in real_run["stdout"]
  assert "selected: learning_rate=" in real_run["stdout"]
  assert "best single run: variant" in real_run["stdout"]


def test_real_run_progress_is_plain_on_non_terminals(real_run):
  err = real_run["stderr"]
  assert "\x1b" not in err and "\r" not in err
  # start, writing to, compiling, group, compiled, trained, done; under load
  # also the heartbeat's lines ("compiling group 1/1 ... 30s").
  events = [line for line in err.splitlines() if not line.startswith("  compiling group")]
  assert len(events) <= 7 and "compiled in" in err and "diverged" in err, err
  assert "compiling group 1/1 ..." in err


def test_best_yaml_reproduces_selected_configuration(real_run):
  """best.yaml is the selected configuration without its seed; each seed reproduces."""
  out = real_run["out"]
  res = js.Results.from_json(os.path.join(out, "results.json"))
  chosen = res.selected
  with open(os.path.join(out, "best.yaml")) as f:
    text = f.read()
  assert "over seeds 0, 1" in text and "jaxsweep run best.yaml seed=0,1" in text
  assert js.report.fmt_mean_std(chosen["test_accuracy_mean"],
                                chosen["test_accuracy_std"]) in text
  cfg = config_lib.load(os.path.join(out, "best.yaml"))
  assert "sweep" not in cfg.raw and "seed" not in cfg.raw and len(cfg.points) == 1
  assert cfg.raw["optimizer"]["learning_rate"] == chosen["optimizer.learning_rate"]
  row = next(r for r in res.rows if r["variant"] == chosen["variants"][1])
  again = js.run_config(config_lib.load(os.path.join(out, "best.yaml"),
                                        [f"seed={row['seed']}"]))
  assert again.rows[0]["status"] == "ok"
  for m in res.metrics:
    assert again.rows[0][m] == row[m], m  # Same seed, same machine: bit-identical.
  assert again.history[0] == res.history[row["variant"]]


def test_report_matches_run_output(real_run):
  code, out, err = run_cli(["report", real_run["out"]])
  assert code == 0, err
  assert out == real_run["stdout"]
  code, out, _ = run_cli(["report", real_run["out"], "--no-aggregate", "--no-plots"])
  assert out.splitlines()[0].split()[:2] == ["variant", "learning_rate"]


def test_quiet_run_prints_only_the_table(real_run):
  # The second run of the same config reuses the compiled program: cheap.
  out = str(real_run["dir"] / "quiet")
  code, stdout, stderr = run_cli(["run", str(real_run["dir"] / "tiny.yaml"), "--out", out,
                                  "--quiet", "--no-plots", "--format", "csv"])
  assert code == 0 and stderr == ""
  lines = stdout.splitlines()
  assert lines[0].startswith("optimizer.learning_rate,best,n,ok,") and len(lines) == 4
  assert not pngs(out) and os.path.exists(os.path.join(out, "results.md"))


# --------------------------------------------------------------------------
# What fits a terminal (issue #26).

class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_terminal_shows_the_rows_that_fit_and_says_where_the_rest_are(monkeypatch):
  monkeypatch.setattr(shutil, "get_terminal_size", lambda: os.terminal_size((100, 30)))
  res = make_results(grid(learning_rate=[0.1, 0.03, 0.01, 0.003, 0.001, 3e-4],
                          activation=["relu", "tanh", "gelu"],
                          width=[16, 32, 64]))  # 54 variants
  stream = _Terminal()
  report.render(res, fmt_name="plain", stream=stream)
  text = stream.getvalue()
  lines = text.splitlines()
  assert len(lines) <= 30
  assert "36 more rows in results.md (or --top K to print more here)" in text
  assert all(len(line) <= 100 for line in lines if not line.startswith(("variant", "---", " ")))
  # A log keeps every row.
  log = io.StringIO()
  report.render(res, fmt_name="plain", stream=log)
  assert "more rows" not in log.getvalue() and len(log.getvalue().splitlines()) > 54


def test_tie_is_stated_with_what_broke_it():
  res = make_results(grid(learning_rate=[0.1, 0.01, 0.001]))
  for r in res.rows:
    r["val_accuracy"] = 1.0
  lines = report.selection_lines(res)
  assert any(line.startswith("tie: 3 variants share val_accuracy = 1 (within a relative "
                             "1e-06); the variant order decided") for line in lines)
  res.rows[1]["val_accuracy"] = 0.5
  res.rows[2]["val_accuracy"] = 0.5
  assert not any(line.startswith("tie:") for line in report.selection_lines(res))


def test_print_results_with_seeds_shows_the_aggregated_table():
  res = make_results(grid(learning_rate=[0.1, 0.01], seed=[0, 1, 2]))
  text = repr(res)
  assert text.startswith("best  learning_rate  seeds  status")
  assert len(text.splitlines()[2:4]) == 2 and "ok 3/3" in text
  assert text.splitlines()[0] == report.format_aggregated(res).splitlines()[0]
  # Without seeds: one row per variant, as before.
  assert repr(make_results(grid(learning_rate=[0.1, 0.01]))).startswith("variant")


def test_aggregate_prints_as_the_console_table_and_is_a_list():
  res = make_results(grid(learning_rate=[0.1, 0.01], seed=[0, 1]))
  agg = res.aggregate()
  assert str(agg) == report.format_aggregated(res)
  assert isinstance(agg, list) and agg[0]["best"] and len(agg) == 2
  assert json.loads(results_lib.rows_to_json(agg))[0]["n"] == 2
  pd = pytest.importorskip("pandas")
  frame = agg.to_pandas()
  assert isinstance(frame, pd.DataFrame) and len(frame) == 2
  assert list(frame.columns) == report.aggregated_columns(res)
