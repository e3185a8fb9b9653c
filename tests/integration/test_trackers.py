"""A search seen where users look: a real MLflow tracking server started here on localhost (a SQLite store),
TensorBoard event files read back with TensorBoard's own reader, Weights & Biases in offline mode. A tracker
that fails (the server stopped mid-search) is reported once and loses the search nothing."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import trex_ray

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = os.path.dirname(sys.executable)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(tmp_path):
    port = _port()
    proc = subprocess.Popen([os.path.join(BIN, "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db", "--default-artifact-root",
                             f"{tmp_path}/artifacts", "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        try:
            urllib.request.urlopen(uri + "/health", timeout=2)
            return proc, uri
        except OSError:
            assert time.time() < deadline, "the MLflow server did not come up in 2 minutes"
            time.sleep(0.5)


def _stop(proc) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


def test_a_search_in_mlflow_tensorboard_and_wandb(majority_task, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    proc, uri = _server(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from tests.unit.test_callbacks import Recorder

    seen = Recorder()
    try:
        res = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=2), max_concurrent=1,
                              storage=str(tmp_path / "runs"), run_name="tracked", progress=False,
                              callbacks=["mlflow", "tensorboard", "wandb", seen])
        # a trial's live training reports reach the callbacks while it trains: before its node_finished
        order = [(e["type"], e.get("id")) for e in seen.events]
        for i, e in enumerate(seen.events):
            if e["type"] == "training_progress":
                assert ("node_finished", e["id"]) in order[i + 1:], order
                assert 1 <= e["step"] <= res.node(e["id"]).result["train_stats"]["steps"]
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("trex-ray/majority")
        runs = client.search_runs([exp.experiment_id])
        parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
        nodes = {r.data.tags["trex_ray.node"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
        assert parent.info.run_name == "tracked" and parent.info.status == "FINISHED"
        assert set(nodes) == {"0", "1", "2"}
        one = nodes["1"]
        plan = res.node(1).plan
        assert one.data.params["train.learning_rate"] == str(plan["train"]["learning_rate"])
        assert one.data.tags["direction"] == plan["direction"] and one.data.tags["parent"] == "0"
        assert one.data.tags["status"] == "ok" and one.data.metrics["val_score"] == pytest.approx(res.node(1).val_score)
        # the loss by optimizer step (some points logged live as it trained, the rest when it finished: once each)
        loss = client.get_metric_history(one.info.run_id, "train_loss")
        ts = res.node(1).result["train_stats"]
        assert sorted(m.step for m in loss) == list(range(1, ts["steps"] + 1)) == list(range(1, len(ts["loss_curve"]) + 1))
        assert {m.step: m.value for m in loss}[ts["steps"]] == pytest.approx(ts["loss_curve"][-1])
        val = client.get_metric_history(one.info.run_id, "val_curve")
        assert sorted((m.step, m.value) for m in val) == [tuple(p) for p in ts["val_curve"]] and val
        best = res.best
        assert parent.data.tags["best_node"] == str(best.id)
        assert parent.data.metrics["best_test"] == pytest.approx(best.test_score)
        assert nodes[str(best.id)].data.metrics["test_score"] == pytest.approx(best.test_score)
        if best.id != 0:  # the best node's adapter, as an artifact of the search's run
            files = [f.path for f in client.list_artifacts(parent.info.run_id, f"best_node_{best.id}_adapter")]
            assert any(f.endswith("adapter_config.json") for f in files), files
    finally:
        _stop(proc)
    # TensorBoard: the run folder's event files, read with TensorBoard's reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(res.run_dir, "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"search/best_val_so_far", "node_1/train_loss", "node_2/train_loss"} <= set(tags)
    assert [e.step for e in acc.Scalars("search/best_val_so_far")] == [1, 2]
    assert acc.Scalars("search/best_val_so_far")[-1].value == pytest.approx(max(n.val_score for n in res.nodes[1:]))
    # W&B offline: the run's record file holds each node's metrics (history items: the key, then its JSON value)
    records = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(res.run_dir, "wandb")) for f in fs
               if f.endswith(".wandb")]
    assert len(records) == 1, os.listdir(os.path.join(res.run_dir, "wandb"))
    data = open(records[0], "rb").read()

    def logged(key: str) -> set:  # each value as the history and the summary recorded it
        out = set()
        for m in re.finditer(re.escape(key.encode()) + rb"\x82\x01", data):
            n = data[m.end()]  # the value's length (one byte: short values)
            out.add(json.loads(data[m.end() + 1:m.end() + 1 + n]))
        return out

    assert logged("node_1/val_score") == {res.node(1).val_score}  # JSON keeps a float exactly
    assert logged("node_2/val_score") == {res.node(2).val_score}
    assert logged("trials_finished") == {1, 2}


def test_a_tracker_whose_server_stops_mid_search_loses_nothing(majority_task, tmp_path, monkeypatch, caplog):
    proc, uri = _server(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a down server answers fast
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    from trex_ray.callbacks import Callback

    class StopTheServer(Callback):  # the server goes down once the first trial has finished
        name = "stopper"

        def on_event(self, event, run):
            if event.get("type") == "node_finished" and event.get("id") == 1 and proc.poll() is None:
                _stop(proc)

    try:
        res = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=2), max_concurrent=1,
                              storage=str(tmp_path / "runs"), progress=False, callbacks=[StopTheServer(), "mlflow"])
    finally:
        if proc.poll() is None:
            _stop(proc)
    # the trial after the stop still runs and is recorded; the tracker's many failing calls for it are said once
    assert [n.id for n in res.nodes] == [0, 1, 2] and all(n.status == "ok" for n in res.nodes)
    assert res.best.test_score is not None
    said = [r for r in caplog.records if "mlflow stopped receiving" in r.getMessage()]
    assert len(said) == 1  # reported once, then left alone
