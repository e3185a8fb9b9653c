"""Kill the driver with SIGKILL in the middle of a search, then resume: completed nodes are kept as
they were (not re-trained), trials that were in flight run again, and the budget counts what was spent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import majority_rows, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRIVER = """
import sys, trex_ray
task = trex_ray.Task.from_jsonl(name="majority", train=sys.argv[1], val=sys.argv[2], test=sys.argv[3],
                                input_field="question", output_field="answer", metric="accuracy", labels=["yes", "no"])
trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=5), max_concurrent=2,
                storage=sys.argv[4], run_name="killed", seed=3)
"""


def _events(path):
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_resume_after_sigkill_keeps_completed_nodes(tmp_path):
    paths = [write_jsonl(tmp_path / "data" / f"{s}.jsonl", majority_rows(n, i))
             for i, (s, n) in enumerate([("train", 120), ("val", 30), ("test", 30)])]
    storage = tmp_path / "runs"
    journal = storage / "killed" / "journal.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *paths, str(storage)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    try:
        # kill once a trial has finished and others are in flight
        while time.time() < deadline:
            evs = _events(journal)
            done = {e["id"] for e in evs if e["type"] == "node_finished"}
            added = {e["id"] for e in evs if e["type"] == "node_added"}
            if len(done) >= 2 and added - done:
                break
            assert proc.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("no trial finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(3)  # let the killed driver's Ray processes go

    before = _events(journal)
    done_before = {e["id"]: e["result"] for e in before if e["type"] == "node_finished"}
    in_flight = {e["id"] for e in before if e["type"] == "node_added"} - set(done_before)
    assert in_flight, "the kill should have caught trials in flight"
    adapters = {nid: os.path.join(r["artifacts"]["adapter"], "adapter_model.safetensors")
                for nid, r in done_before.items() if r.get("artifacts", {}).get("adapter")}
    mtimes = {nid: os.path.getmtime(p) for nid, p in adapters.items()}

    out = subprocess.run([sys.executable, "-m", "trex_ray.cli", "resume", str(storage / "killed")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]

    after = _events(journal)
    finished = {}
    for e in after:
        if e["type"] == "node_finished":
            assert e["id"] not in finished, f"node {e['id']} finished twice"
            finished[e["id"]] = e["result"]
    for nid, res in done_before.items():  # completed nodes intact, not re-trained
        assert finished[nid] == res
    for nid, p in adapters.items():
        assert os.path.getmtime(p) == mtimes[nid]
    relaunched = {e["id"] for e in after if e["type"] == "node_relaunched"}
    assert relaunched == in_flight  # what was in flight ran again
    assert in_flight <= set(finished)
    trials = {e["id"] for e in after if e["type"] == "node_added" and e["parent_id"] is not None}
    assert len(trials) == 5  # the budget counted the trials of the killed session
    assert set(finished) == trials | {0}
    summary = json.load(open(storage / "killed" / "result.json"))
    assert summary["spent"]["trials"] == 5 and summary["nodes"] == 6
    assert sum(e["type"] == "session_started" for e in after) == 2
