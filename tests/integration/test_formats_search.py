"""A real search on data as users have it: one alpaca file (no val, no test) and a metric of their own named
`module:function`, which Ray's workers import by that name and call with each row's record; OpenAI chat
conversations; a ShareGPT dataset written by `save_to_disk` (Task.from_hf); a parquet train file with CSV
val and test."""

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


def test_search_on_multi_turn_chat_conversations(tmp_path):
    """OpenAI chat files whose answer depends on an earlier turn: each conversation is one row, trained with
    the loss on every assistant turn, evaluated on its last answer given the turns before it (the prompt
    evaluation sent is exactly the conversation, with the data's own system prompt)."""
    from transformers import AutoTokenizer

    from trex_ray import prompting
    from trex_ray.models import resolve_model

    words = ["apple", "pear", "plum", "fig", "lime", "kiwi"]
    convs = [{"messages": [
        {"role": "system", "content": "You keep track of words."},
        {"role": "user", "content": f"Remember the word {words[i % 6]} (#{i})."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Which word?"},
        {"role": "assistant", "content": words[i % 6]}]} for i in range(48)]
    train = tmp_path / "chats.jsonl"
    train.write_text("".join(json.dumps(c) + "\n" for c in convs))
    task = trex_ray.Task.from_jsonl(name="recall", train=str(train), metric="exact_match")
    assert task.profile()["format"] == "chat"
    r = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=1), max_concurrent=1,
                        storage=str(tmp_path / "runs"), progress=False)
    node = r.node(1)
    assert node.status == "ok", node.result
    lines = [json.loads(x) for x in open(os.path.join(r.run_dir, "data", "train.jsonl"))]
    assert all(x["input"] == "Which word?" and json.loads(x["chat"])["history"][1]["content"] == "Noted." for x in lines)
    # the prepared dataset keeps each row's conversation for the trainer
    import pyarrow.parquet as pq

    prepared = pq.read_table(node.result["artifacts"]["dataset"]).to_pylist()
    assert len(prepared) == len(lines) and all(json.loads(p["chat"])["system"] == "You keep track of words."
                                               for p in prepared)
    assert node.result["train_stats"]["examples"] == len(lines)  # one example per conversation
    tok = AutoTokenizer.from_pretrained(resolve_model("tiny-random"))
    val = task.rows("val")
    sent = sum(len(tok(prompting.render(tok, v["input"], None, v["chat"]), add_special_tokens=False)["input_ids"])
               for v in val)
    assert r.baseline.result["val"]["input_tokens"] == sent
    assert node.result["val"]["input_tokens"] == sent


def test_search_on_a_sharegpt_dataset_saved_with_save_to_disk(tmp_path):
    """Task.from_hf on a `save_to_disk` folder whose rows are ShareGPT conversations, val a slice of its own
    split: read through `datasets`, trained and evaluated like any task."""
    import datasets

    def conv(i):
        word = ["red", "blue", "green", "black"][i % 4]
        return {"conversations": [{"from": "system", "value": "Name colours."},
                                  {"from": "human", "value": f"Colour #{i}: {word}. Say it."},
                                  {"from": "gpt", "value": word}]}

    folder = tmp_path / "colours"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([conv(i) for i in range(40)]),
                          "validation": datasets.Dataset.from_list([conv(100 + i) for i in range(12)])}
                         ).save_to_disk(str(folder))
    task = trex_ray.Task.from_hf(str(folder), splits={"train": "train", "val": "validation[:6]",
                                                      "test": "validation[6:]"}, metric="exact_match")
    assert task.profile()["format"] == "sharegpt" and len(task.rows("val")) == 6
    r = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=1), max_concurrent=1,
                        storage=str(tmp_path / "runs"), progress=False)
    node = r.node(1)
    assert node.status == "ok", node.result
    assert node.result["train_stats"]["examples"] == 40 and node.result["val"]["n"] == 6
    splits = json.load(open(os.path.join(r.run_dir, "splits.json")))
    assert splits["val"]["source"].endswith("[validation[:6]]") and splits["train"]["format"] == "sharegpt"
    assert all(json.loads(x["chat"])["system"] == "Name colours."
               for x in map(json.loads, open(os.path.join(r.run_dir, "data", "train.jsonl"))))


def test_search_on_a_parquet_train_with_csv_val_and_test(tmp_path):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.conftest import majority_rows

    pq.write_table(pa.Table.from_pylist(majority_rows(60, 0)), tmp_path / "train.parquet")
    for i, split in enumerate(("val", "test"), 1):
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["question", "answer"])
            w.writeheader()
            w.writerows(majority_rows(10, i))
    task = trex_ray.Task.from_jsonl(name="mixed-files", train=str(tmp_path / "train.parquet"),
                                    val=str(tmp_path / "val.csv"), test=str(tmp_path / "test.csv"),
                                    input_field="question", output_field="answer", metric="accuracy",
                                    labels=["yes", "no"])
    r = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=1), max_concurrent=1,
                        storage=str(tmp_path / "runs"), progress=False)
    assert [n.status for n in r.nodes] == ["ok", "ok"], r.node(1).result.get("error")
    assert r.node(1).result["train_stats"]["examples"] == 60 and r.node(1).result["val"]["n"] == 10
    assert r.best.test_score is not None
