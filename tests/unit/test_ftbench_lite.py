"""benchmarks/ftbench_lite.py: which tasks a resumed measurement runs, continues or skips, and the table it
rebuilds from its committed cells."""

from __future__ import annotations

import json
import os

from .helpers import benchmark_script

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ftbench")


def _record(run_dir, task, best):
    os.makedirs(run_dir, exist_ok=True)
    rec = {"task": task, "metric": "accuracy", "profile": "lite", "model": "smollm2-135m", "budget_trials": 6,
           "seed": 0, "base": 0.5, "best": best, "best_val": best, "relative_gain": (best - 0.5) / 0.5, "nodes": 6,
           "best_direction": "more epochs", "spent": {"accelerator_s": 900.0, "wall_clock_s": 1200.0},
           "machine": {"cpu": "AMD EPYC", "cores": 2, "gpu": None}, "code": "abc1234", "run_dir": str(run_dir)}
    with open(os.path.join(run_dir, "ftbench.json"), "w") as f:
        json.dump(rec, f)
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        json.dump({"best": {"id": 3}}, f)
    return rec


def test_a_resumed_measurement_skips_kept_tasks_continues_started_ones_and_keeps_finished_ones(tmp_path):
    bench = benchmark_script("ftbench_lite")
    runs, cells = tmp_path / "runs", tmp_path / "out.cells"
    _record(cells / "sst2-lite-s0", "sst2", 0.8)                     # kept: done
    _record(runs / "hoc-lite-s0", "hoc", 0.6)                        # finished, not kept yet
    os.makedirs(runs / "hoc-lite-s0" / "nodes" / "1" / "adapter")
    os.makedirs(runs / "lawbench-lite-s0")
    (runs / "lawbench-lite-s0" / "journal.jsonl").write_text("{}\n")  # interrupted: continue it
    got = bench.plan(["sst2", "hoc", "lawbench", "cs_bench"], str(runs), str(cells), "lite", 0)
    assert got == [("sst2", "done"), ("hoc", "copy"), ("lawbench", "resume"), ("cs_bench", "start")]
    # another seed is another run
    assert bench.plan(["sst2"], str(runs), str(cells), "lite", 1) == [("sst2", "start")]

    kept = bench.keep(str(runs / "hoc-lite-s0"), str(cells))
    assert sorted(os.listdir(kept)) == ["ftbench.json", "result.json"]  # the record, not the adapters
    assert bench.plan(["hoc"], str(runs), str(cells), "lite", 0) == [("hoc", "done")]

    text = bench.write_table(str(cells), str(tmp_path / "out"), FIXTURES, "lite")
    rows = {r["task"]: r for r in json.loads((tmp_path / "out.json").read_text())}
    assert rows["sst2"]["best"] == 0.8 and rows["hoc"]["best"] == 0.6 and rows["hoc"]["code"] == "abc1234"
    assert rows["lawbench"]["status"] in ("not run", "data not available")
    assert (tmp_path / "out.md").read_text().strip() == text and "| hoc |" in text
