"""Data research end to end: a small task and a data catalogue on disk (`TREX_RAY_DATA_DIRS`) with a related
dataset and an unrelated one. The offline search finds the related one, tries it (the `mix` op on Ray Data,
then decontamination against val and test), and the node, the brief and the report say where the data
came from and under which license."""

from __future__ import annotations

import json
import os

import pytest

import trex_ray
from tests.conftest import majority_rows, write_jsonl
from tests.unit.test_research import catalogue_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_offline_search_mixes_in_a_related_local_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("TREX_RAY_DATA_DIRS", str(catalogue_dir(tmp_path / "catalogue")))
    paths = {s: write_jsonl(tmp_path / "data" / f"{s}.jsonl", majority_rows(n, i))
             for i, (s, n) in enumerate([("train", 40), ("val", 16), ("test", 16)])}
    task = trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer", metric="accuracy",
                                    labels=["yes", "no"], goal="Answer yes or no.", **paths)
    res = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=2), max_concurrent=1,
                          storage=str(tmp_path / "runs"), progress=False, research={"hub": "off", "papers": "off"})
    brief = json.load(open(os.path.join(res.run_dir, "brief.json")))
    assert brief["related_data"][0]["name"] == "majority-more" and brief["research"]["local_found"] == 2
    mixed = [n for n in res.nodes if n.direction == "add related data"]
    assert len(mixed) == 1, [n.direction for n in res.nodes]
    node = mixed[0]
    assert node.status == "ok", node.result.get("error")
    source = next(o for o in node.plan["recipe"]["ops"] if o["op"] == "mix")["args"]["sources"][0]
    assert source["name"] == "majority-more" and source["license"] == "CC-BY-4.0"
    ops = {o["op"]: o for o in node.result["data_stats"]["ops"]}
    assert ops["mix"]["rows_in"] == 40 and ops["mix"]["rows_out"] == 40 + 60  # the task's rows and all 60 found
    deco = ops["decontaminate"]
    assert deco["rows_in"] == 100 and deco["rows_out"] == deco["rows_in"] - sum(deco["dropped"].values())
    assert node.result["data_stats"]["rows"] == deco["rows_out"]
    # the report says what research found, and the node's plan names the source and its license
    from trex_ray.report import run_data

    data = run_data(res.run_dir)
    assert data["research"]["related"][0]["name"] == "majority-more"
    assert data["research"]["related"][0]["license"] == "CC-BY-4.0"
    rows = {r[0]: r[1] for r in next(n for n in data["nodes"] if n["id"] == node.id)["plan"]}
    assert any(k.endswith("license") and v == "CC-BY-4.0" for k, v in rows.items()), rows
