"""What clusters do to a search, provoked for real on a local Ray cluster with the tiny random model:
training that runs out of memory (a memory cap on the training worker), a loss that becomes NaN (a model
with non-finite weights), a trial that runs past its timeout, and the tree actor's process being killed."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import trex_ray
from tests.conftest import majority_rows, nan_model, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _task(tmp, *, long: bool = False):
    rows = majority_rows(200, 0)
    if long:  # 64 prompts of ~700 tokens: one full batch needs GBs of attention activations
        rows = [{**r, "question": (r["question"] + " ") * 70} for r in rows[:64]]
    paths = {s: write_jsonl(tmp / "data" / f"{s}.jsonl", rows if s == "train" else majority_rows(8, i))
             for i, s in enumerate(("train", "val", "test"))}  # val and test distinct: a search refuses a leak
    return trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer", metric="accuracy",
                                    labels=["yes", "no"], goal="Answer yes or no.", **paths)


def _run_trial(tmp, task, model_path: str, *, memory_limit_gb=None, **train) -> dict:
    import ray

    from trex_ray.executor.eval_service import Evaluation
    from trex_ray.executor.trial import run_trial
    from trex_ray.plan import Plan

    plan = Plan.model_validate({"direction": "test", "recipe": {"ops": [{"load": {}}, {"format": {}}]},
                                "train": {"epochs": 1, **train}, "eval": {"max_new_tokens": 4}})
    info = task.info()
    return ray.get(run_trial.remote(
        node_id=1, plan=plan.model_dump(), parent_adapter=None, task=info, model_path=model_path,
        run_dir=str(tmp / "run"), cache_root=str(tmp / "cache"), baseline_score=0.0,
        ev=Evaluation("transformers", None, False, 1), threads=1, memory_limit_gb=memory_limit_gb))


@pytest.fixture(scope="module")
def tiny():
    from trex_ray.models import resolve_model

    return resolve_model("tiny-random")


def test_out_of_memory_is_retried_in_micro_batches_and_then_trains(tmp_path, tiny):
    task = _task(tmp_path, long=True)
    res = _run_trial(tmp_path, task, tiny, memory_limit_gb=1.0, batch_size=64, max_seq_len=1024)
    assert res["status"] == "ok", res.get("error")
    ts = res["train_stats"]
    assert "allocate" in ts["oom_retry"] or "memory" in ts["oom_retry"].lower()
    assert ts["micro_batch_size"] == 8 and ts["steps"] == 1  # the same optimizer step, in 8 micro-batches
    log = open(tmp_path / "run" / "nodes" / "1" / "logs" / "trial.log").read()
    assert "retrying with micro-batches of 8" in log


def test_out_of_memory_again_after_the_retry_is_a_recorded_failure(tmp_path, tiny):
    task = _task(tmp_path, long=True)
    res = _run_trial(tmp_path, task, tiny, memory_limit_gb=0.05, batch_size=64, max_seq_len=1024)
    assert res["status"] == "failed"
    assert res["error"]["type"] == "out_of_memory" and res["error"]["stage"] == "train"


def test_a_nan_loss_stops_training_and_marks_the_node_diverged(tmp_path, tiny):
    res = _run_trial(tmp_path, _task(tmp_path), nan_model(tiny, tmp_path / "nan-model"), batch_size=8)
    assert res["status"] == "failed"
    assert res["error"]["type"] == "diverged" and "at step 1" in res["error"]["message"]
    # the researcher sees what happened: the failed node's summary names the divergence
    from trex_ray.memory import _brief
    from trex_ray.tree import Node

    node = Node(id=1, parent_id=0, depth=1, plan=None, status="failed", result=res)
    assert _brief(node)["error"].startswith("diverged in train: diverged: the training loss became")


TIMEOUT_RUN = """
import json, sys, time
import ray, trex_ray
from tests.conftest import majority_rows, write_jsonl
from pathlib import Path
tmp = Path(sys.argv[1])
paths = {s: write_jsonl(tmp / "data" / f"{s}.jsonl", majority_rows(200 if s == "train" else 8, i))
         for i, s in enumerate(("train", "val", "test"))}
task = trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer", metric="accuracy",
                                labels=["yes", "no"], goal="Answer yes or no.", **paths)
res = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=2), max_concurrent=1,
                      storage=str(tmp / "runs"), trial_timeout_s=3, progress=False)
held = lambda: ray.cluster_resources()["CPU"] - ray.available_resources().get("CPU", 0)
deadline = time.time() + 60
while held() > 0 and time.time() < deadline:
    time.sleep(1)
# what holds them, if anything does: placement groups, and the tasks and actors still alive
groups = {k: v.get("state") for k, v in ray.util.placement_group_table().items()}
print("RESULT " + json.dumps({"run_dir": res.run_dir, "trials": len(res.nodes) - 1, "held": held(), "groups": groups}))
"""


def test_a_trial_past_its_timeout_is_stopped_recorded_and_its_cpus_freed(tmp_path):
    """In a Ray cluster of its own (a subprocess): what the stopped trials held must all come back."""
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-c", TIMEOUT_RUN, str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert out["trials"] == 2
    events = [json.loads(line) for line in open(os.path.join(out["run_dir"], "journal.jsonl"))]
    finished = [e for e in events if e["type"] == "node_finished" and e["id"] != 0]
    assert [e["result"]["error"]["type"] for e in finished] == ["timeout", "timeout"]
    assert out["held"] == 0, f"{out['held']} CPUs still held a minute after the search; groups: {out['groups']}"


def test_a_killed_tree_actor_is_restarted_from_its_journal_and_the_search_finishes(tmp_path):
    import ray

    from trex_ray.tree_actor import NAMESPACE, tree_actor_name

    task = _task(tmp_path)
    out: dict = {}

    def run():
        out["result"] = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=2),
                                        max_concurrent=1, storage=str(tmp_path / "runs"), run_name="r",
                                        progress=False)

    t = threading.Thread(target=run, daemon=True)  # a search that hangs must not hold the test session open
    t.start()
    journal = tmp_path / "runs" / "r" / "journal.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it once the first trial has finished
        if journal.exists() and any(json.loads(x)["type"] == "node_finished" and json.loads(x)["id"] == 1
                                    for x in journal.read_text().splitlines() if x.strip()):
            break
        time.sleep(0.5)
    ray.kill(ray.get_actor(tree_actor_name(str(tmp_path / "runs" / "r")), namespace=NAMESPACE), no_restart=False)
    t.join(600)
    assert not t.is_alive()
    result = out["result"]
    assert [n.id for n in result.nodes] == [0, 1, 2] and all(n.status in ("ok", "failed") for n in result.nodes)
    events = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    added = [e["id"] for e in events if e["type"] == "node_added"]
    assert added == [0, 1, 2]  # nothing lost, nothing doubled
    assert result.best.test_score is not None  # the search went all the way to the test evaluation
