"""A real search end to end: local Ray, Ray Data recipe, Ray Train + PEFT LoRA on a tiny random model,
transformers evaluation, the tree as a Ray actor with its journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import trex_ray

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    from tests.conftest import majority_rows, write_jsonl

    paths = {s: write_jsonl(tmp / "data" / f"{s}.jsonl", majority_rows(n, i)) for i, (s, n) in
             enumerate([("train", 160), ("val", 40), ("test", 40)])}
    task = trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer",
                                    metric="accuracy", labels=["yes", "no"], goal="Answer yes or no.", **paths)
    result = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=4), max_concurrent=2,
                             storage=str(tmp / "runs"), seed=1)
    return result


def test_search_records_every_node_in_the_journal(finished_run):
    events = [json.loads(line) for line in open(os.path.join(finished_run.run_dir, "journal.jsonl"))]
    added = [e for e in events if e["type"] == "node_added"]
    finished = [e for e in events if e["type"] == "node_finished"]
    assert [e["id"] for e in added] == list(range(5))  # root + 4 trials
    assert sorted(e["id"] for e in finished) == list(range(5))
    assert all(e["parent_id"] is not None for e in added[1:])
    assert sum(e["type"] == "diagnosis" for e in events) == 4
    assert any(e["type"] == "insights" and e["items"] for e in events)
    assert events[-1]["type"] == "run_finished" and events[-1]["stop_reason"] == "trials"
    # two trials were in flight at once: the second launch came before the first finish
    order = [(e["type"], e.get("id")) for e in events if e["type"] in ("node_added", "node_finished")]
    assert order.index(("node_added", 2)) < order.index(("node_finished", 1))


def test_node_folders_hold_plan_result_and_a_peft_adapter(finished_run):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from trex_ray.models import resolve_model

    ok = [n for n in finished_run.nodes if n.id != 0 and n.status == "ok"]
    assert len(ok) >= 3
    for n in ok:
        assert json.load(open(os.path.join(n.path, "plan.json")))["direction"] == n.direction
        assert json.load(open(os.path.join(n.path, "result.json")))["score"] == n.val_score
        cfg = PeftConfig.from_pretrained(n.adapter)
        assert cfg.r == n.plan["train"]["lora_r"] or n.plan["train"]["warm_start"] == "parent"
    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random"))
    peft_model = PeftModel.from_pretrained(model, ok[0].adapter)
    assert any("lora_A" in name for name, _ in peft_model.named_parameters())


def test_fine_tuning_beats_the_baseline_and_test_is_scored_once(finished_run):
    r = finished_run
    assert r.baseline.val_score < 0.2 and r.baseline.test_score < 0.2
    assert r.best.id != 0
    assert r.best.val_score >= 0.6
    assert r.best.test_score >= 0.6
    tested = [n.id for n in r.nodes if n.test_score is not None]
    assert tested == [0, r.best.id]  # the test split touched the baseline and the best node only
    summary = json.load(open(os.path.join(r.run_dir, "result.json")))
    assert summary["best_node"] == r.best.id and summary["nodes"] == 5
    assert summary["spent"]["trials"] == 4


def test_load_run_and_show_read_the_same_tree(finished_run):
    again = trex_ray.load_run(finished_run.run_dir)
    assert again.best.id == finished_run.best.id
    assert [n.val_score for n in again.nodes] == [n.val_score for n in finished_run.nodes]
    out = subprocess.run([sys.executable, "-m", "trex_ray.cli", "show", finished_run.run_dir], capture_output=True,
                         text=True, check=True).stdout
    header = out.splitlines()[0].split()
    assert header[:5] == ["id", "parent", "depth", "direction", "status"]
    assert "standard LoRA SFT" in out and f"best: node {finished_run.best.id}" in out
