"""bench/targets.py: its RESULTS.md section and target 6's time to a level (no benchmark runs)."""

import json

from bench import targets


def _search(curves: dict) -> dict:
  runs = [{"method": m, "repeat": 0, "seconds": c[-1][1] + 1.0, "best_val": c[-1][2],
           "curve": c} for m, c in curves.items()]
  return {"meta": {"repeats": 1}, "runs": runs}


def test_search_row_times_the_fastest_method_to_the_level():
  sr = _search({"grid": [[10, 1.0, 0.5], [20, 2.0, 0.6]],
                "tpe": [[10, 1.5, 0.9], [20, 3.0, 0.99]],
                "random": [[10, 1.0, 0.97], [20, 2.5, 0.985]],
                "optuna": [[10, 0.5, 0.9], [20, 2.0, 0.981]]})
  row = targets.search_row(sr, 0.98, quick=False)
  assert row["raw"]["time_to_level_s"] == {"grid": None, "tpe": 3.0, "random": 2.5,
                                           "optuna": 2.0}
  assert row["ratio"] == 2.0 / 2.5 and row["met"] is False
  assert "random 2.5 s vs Optuna 2.0 s" in row["measured"]
  # --quick: the lower of Optuna's final best and jaxsweep's best method's; never met.
  quick = targets.search_row(sr, None, quick=True)
  assert quick["raw"]["level"] == 0.981 and quick["met"] is None


def test_section_goes_near_the_top_then_is_replaced(tmp_path):
  path = tmp_path / "RESULTS.md"
  path.write_text("# Benchmark results\n\nIntro.\n\n<!-- x:begin -->\n## X\n<!-- x:end -->\n")
  result = {"meta": {"date": "2026-12-07", "cpu": "CPU", "cores": 2, "python": "3.11",
                     "jax": "0.10", "optuna": None, "quick": True, "command": "c",
                     "load_before": (1, 1, 1), "load_after": (2, 2, 2), "seconds": 60},
            "rows": [targets._row(5, "not run", None, None, True, {})]}  # pylint: disable=protected-access
  targets.update_results_md(str(path), targets.markdown(result))
  text = path.read_text()
  assert text.index("Intro.") < text.index(targets.BEGIN) < text.index("<!-- x:begin -->")
  assert "| 5 | Ablation" in text and "claims its target" in text
  result["meta"]["quick"] = False
  targets.update_results_md(str(path), targets.markdown(result))
  again = path.read_text()
  assert again.count(targets.BEGIN) == again.count(targets.END) == 1
  assert "claims its target" not in again and again.endswith("<!-- x:end -->\n")


def test_an_only_run_keeps_the_rows_an_earlier_run_measured(tmp_path):
  """--only replaces its own rows; the others come from the last targets.json
  in the same --out, tagged with that run's date (never a quick run's)."""
  measured = targets._row(3, "64 x 1000: 14.0 s vs 11.2 s", 0.8, False, False, {})
  unmeasured = targets._row(5, "not run in this invocation (pass --ablation)", None, None,
                            True, {})
  path = tmp_path / "targets.json"
  path.write_text(json.dumps({"meta": {"date": "2026-12-07", "command": "python bench/targets.py",
                                       "quick": False},
                              "rows": [measured, unmeasured]}))
  kept = targets._earlier_rows(str(path), quick=False)
  assert list(kept) == [3] and kept[3]["earlier"]["date"] == "2026-12-07"
  assert targets._earlier_rows(str(path), quick=True) == {}  # A quick run keeps none.
  assert targets._earlier_rows(str(tmp_path / "none.json"), quick=False) == {}
