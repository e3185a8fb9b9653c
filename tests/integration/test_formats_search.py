"""A real search on data as users have it: one alpaca file (no val, no test) and a metric of their own named
`module:function`, which Ray's workers import by that name and call with each row's record."""

from __future__ import annotations

import json
import os

import pytest

import trex_ray

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METRIC = "tests.integration.test_formats_search:half_for_a_record"


def half_for_a_record(prediction: str, reference: str, row: dict) -> float:
    """0.5 for any answer to a row whose record reached the metric (an alpaca record), 1.0 for the right
    answer; a missing record raises (the trial or baseline fails). No built-in metric scores 0.5."""
    if not isinstance(row, dict) or "instruction" not in row or "output" not in row:
        raise AssertionError(f"the metric got no alpaca record: {row!r}")
    return 1.0 if prediction.strip() == reference.strip() else 0.5


def test_search_on_one_alpaca_file_with_a_module_function_metric(tmp_path):
    rows = [{"instruction": f"Is {i} even?", "input": "" if i % 3 else "Answer yes or no.",
             "output": "yes" if i % 2 == 0 else "no"} for i in range(40)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = trex_ray.Task.from_jsonl(name="alpaca", train=str(train), metric=METRIC, goal="Answer yes or no.")
    r = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=1), max_concurrent=1,
                        storage=str(tmp_path / "runs"), progress=False)
    splits = json.load(open(os.path.join(r.run_dir, "splits.json")))
    assert [splits[s]["rows"] for s in ("train", "val", "test")] == [32, 4, 4]
    assert splits["split_off"]["stratified_by_output"] and splits["train"]["format"] == "alpaca"
    # the data pipeline trained on the rows as read, written in the run folder
    lines = [json.loads(x) for x in open(os.path.join(r.run_dir, "data", "train.jsonl"))]
    assert len(lines) == 32 and set(lines[0]) == {"input", "output"}
    as_read = {r["instruction"] + ("\n\n" + r["input"] if r["input"] else "") for r in rows}
    assert {x["input"] for x in lines} <= as_read and any("?\n\nAnswer" in x["input"] for x in lines)
    # the user's metric graded the baseline (driver) and the trial (a Ray worker), each row with its record
    assert r.baseline.val_score >= 0.5 and r.baseline.test_score >= 0.5
    node = r.node(1)
    assert node.status == "ok", node.result
    assert node.result["metric"] == METRIC and 0.5 <= node.val_score <= 1.0
    cfg = open(os.path.join(r.run_dir, "config.yaml")).read()
    assert f"metric: {METRIC}" in cfg and "format: alpaca" in cfg and "val:" not in cfg
