"""FT-Bench end to end: `python -m ftbench run` on sst2 in the smoke profile (the packaged SmolLM2-135M,
materialised from its GGUF, local Ray, the offline researcher): one real LoRA trial through the whole
executor must lower its loss and beat the base model on val and test, and the table must report it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FTBENCH_DATA, REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(not (FTBENCH_DATA / "sst2").is_dir(), reason="no FT-Bench sst2 data")]


def test_ftbench_run_on_sst2_smoke_beats_the_base_model_on_test(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "FTBENCH_DATA": str(FTBENCH_DATA)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ftbench", "run", "--task", "sst2", "--profile", "smoke", "--runs", str(runs),
         "--budget-trials", "1", "--max-concurrent", "1", "--run-name", "sst2-smoke",
         # a cost cap (the first plan would go up to 6 epochs, ~8x as long on 2 cores): one epoch already wins
         "--max-epochs", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rec = json.loads((runs / "sst2-smoke" / "ftbench.json").read_text())
    events = [json.loads(line) for line in open(runs / "sst2-smoke" / "journal.jsonl")]
    assert rec["task"] == "sst2" and rec["profile"] == "smoke" and rec["nodes"] == 1
    assert rec["base"] is not None and rec["best"] is not None
    assert rec["best"] > rec["base"], rec  # the fine-tuned model beats the base model on the held-out test split
    assert rec["relative_gain"] == pytest.approx((rec["best"] - rec["base"]) / rec["base"])
    nodes = {e["id"]: e["result"] for e in events if e["type"] == "node_finished"}
    trial = nodes[1]
    assert trial["status"] == "ok", trial.get("error")
    assert trial["train_stats"]["loss_curve"][-1] < trial["train_stats"]["loss_curve"][0]
    plan = next(e["plan"] for e in events if e["type"] == "node_added" and e["id"] == 1)
    assert plan["train"]["epochs"] == 1 and "caps epochs" in plan["rationale"]  # sized within the cap
    # the record says what won and where it ran, for the results table
    assert rec["best_direction"] == plan["direction"] and rec["machine"]["cores"] >= 1 and rec["code"]
    assert rec["best_node"] == 1 and trial["score"] > nodes[0]["score"]  # the gain on val too
    manifest = json.loads((runs / "data" / "sst2-smoke" / "manifest.json").read_text())
    assert manifest["rows"] == {"train": 96, "val": 32, "test": 64}
    # the test split was evaluated exactly twice: the baseline and the best node
    tested = [e for e in events if e["type"] == "test_evaluated"]
    assert sorted(e["id"] for e in tested) == [0, rec["best_node"]] and all(e["result"]["n"] == 64 for e in tested)

    table = subprocess.run([sys.executable, "-m", "ftbench", "table", str(runs)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("| sst2 "))
    assert f"{100 * rec['base']:.1f}" in row and f"{100 * rec['best']:.1f}" in row and "+" in row
    assert "data not available" in table.stdout  # openfindata and gta: reported, not skipped


def test_ftbench_baseline_scores_a_model_on_val_and_test(tmp_path):
    """The base-model command on a context-graded task (EconLogicQA's order metric) with the tiny model."""
    import ftbench

    if not (FTBENCH_DATA / "econlogicqa").is_dir():
        pytest.skip("no econlogicqa data")
    out = ftbench.baseline("econlogicqa", "tiny-random", runs=str(tmp_path), profile="lite", data_dir=str(FTBENCH_DATA),
                           evaluator="transformers")
    assert out["n"] == {"val": 20, "test": 40} and out["metric"] == "ftbench_qa"
    assert all(0.0 <= out["scores"][s] <= 1.0 for s in ("val", "test"))
    saved = json.loads((tmp_path / "baseline-econlogicqa-lite-tiny-random.json").read_text())
    assert saved["scores"] == out["scores"] and saved["backend"] == "transformers"
