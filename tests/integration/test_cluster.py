"""A search on Ray clusters, each simulated on this machine in a process of its own
(`ray.cluster_utils.Cluster`, a custom resource `accel` standing in for GPUs):

- a cluster of one CPU and no GPU: the search completes (nothing waits for the CPU a worker holds);
- a worker node is removed mid-training: Ray Train starts the run again on another node; past the
  restarts allowed, the trial is a failure naming the lost workers;
- a search waiting for a node: its demand is visible to the autoscaler (Ray's status API), a node added
  then runs it, and `trex-ray status --address` sees the live search from another driver;
- the driver is SIGKILLed at ten random points (and each resumed driver again): `resume` finishes the
  run, with the finished nodes intact and the trial budget honoured;
- training on a second node started apart (`ray start --address`) in another working directory, the run on
  a storage URI;
- `ray job submit` against a head started with `ray start --head` runs `trex-ray run config.yaml`;
- another cluster's dashboard answering where a dashboard-less local cluster advertises its own: training
  there keeps its workers (Ray Train's placement-group cleaner would ask that dashboard and kill them).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, majority_rows, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = os.path.dirname(sys.executable)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Ray turns token authentication on where a token file exists (~/.ray/auth_token): these throwaway
    # clusters and their clients agree to go without
    # and a node told to stop stops: no drain (up to 30 s) on SIGTERM, meant for Serve replicas on Kubernetes
    return {**env, "PATH": BIN + os.pathsep + env.get("PATH", ""), "PYTHONPATH": str(REPO),
            "RAY_AUTH_MODE": "disabled", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", **extra}


def _py(script: str, *args, timeout: int = 600) -> dict:
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])


NODE_LOSS = r"""
import json, sys, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
import trex_ray
from trex_ray.runtime import init_ray
from trex_ray.models import resolve_model
from trex_ray.executor.eval_service import Evaluation
from trex_ray.executor.trial import run_trial
from trex_ray.plan import Plan
from tests.conftest import write_jsonl

tmp = Path(sys.argv[1])
# a lost node is known lost within a second (the GCS's health checks every 0.5 s, two misses), not Ray's
# default of several seconds: what is tested is what happens next
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "_system_config": {
    "health_check_period_ms": 500, "health_check_failure_threshold": 2}})
nodes = [cluster.add_node(num_cpus=1, resources={"accel": 1})]
init_ray(cluster.address, 1)
rows = [{"question": ("alpha %d " % i) * 120, "answer": "yes" if i % 5 else "no"} for i in range(48)]
paths = {s: write_jsonl(tmp / "data" / f"{s}.jsonl", rows if s == "train" else rows[:8]) for s in ("train", "val", "test")}
task = trex_ray.Task.from_jsonl(name="long", input_field="question", output_field="answer", metric="accuracy",
                                labels=["yes", "no"], **paths)
info = task.info()
# 5 epochs of 5 steps (~8 s of training here): long enough to take the node after the first step
plan = Plan.model_validate({"direction": "t", "recipe": {"ops": [{"load": {}}, {"format": {}}]},
                            "train": {"epochs": 5, "batch_size": 8, "max_seq_len": 1024}, "eval": {"max_new_tokens": 4}})

def trial(nid, retries):
    return run_trial.remote(node_id=nid, plan=plan.model_dump(), parent_adapter=None, task=info,
                            model_path=resolve_model("tiny-random"), run_dir=str(tmp / "run"), cache_root=str(tmp / "cache"),
                            baseline_score=0.0, ev=Evaluation("transformers", None, False, 1), threads=1,
                            train_resources={"accel": 1}, train_retries=retries)

def lose_the_training_node(ref, nid):
    # once the worker is in its loop (its progress file has a line), take its node: the only one with accel
    progress = tmp / "run" / "nodes" / str(nid) / "logs" / "train_progress.jsonl"
    deadline = time.time() + 300
    while not (progress.exists() and progress.read_text().strip()):
        assert time.time() < deadline and not ray.wait([ref], timeout=0)[0], "training never started"
        time.sleep(0.2)
    assert not ray.wait([ref], timeout=0)[0], "training finished before its node could be removed"
    cluster.remove_node(nodes.pop(0), allow_graceful=False)

out = {}
ref = trial(1, retries=1)
nodes.append(cluster.add_node(num_cpus=1, resources={"accel": 1}))  # where the restarted run can go
lose_the_training_node(ref, 1)
out["retried"] = ray.get(ref)
ref = trial(2, retries=0)
lose_the_training_node(ref, 2)
out["failed"] = ray.get(ref)
print("RESULT " + json.dumps(out, default=str))
"""


def test_a_node_lost_mid_training_is_retried_and_past_the_retries_recorded(tmp_path):
    out = _py(NODE_LOSS, tmp_path)
    retried, failed = out["retried"], out["failed"]
    assert retried["status"] == "ok", retried["error"]
    assert os.path.isdir(retried["artifacts"]["adapter"])
    assert failed["status"] == "failed"
    assert failed["error"]["stage"] == "train" and failed["error"]["type"] == "worker_lost", failed["error"]
    assert "train_retries" in failed["error"]["message"]


ONE_CPU = r"""
import json, sys
from pathlib import Path
import ray, trex_ray
from ray.cluster_utils import Cluster
from tests.conftest import majority_rows, write_jsonl

tmp = Path(sys.argv[1])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
paths = {s: write_jsonl(tmp / "data" / f"{s}.jsonl", majority_rows(120 if s == "train" else 8, i))
         for i, s in enumerate(("train", "val", "test"))}
task = trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer", metric="accuracy",
                                labels=["yes", "no"], **paths)
res = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=1), max_concurrent="auto",
                      storage=str(tmp / "runs"), address=cluster.address, progress=False, trial_timeout_s=400)
print("RESULT " + json.dumps({"cpus": ray.cluster_resources()["CPU"], "statuses": [n.status for n in res.nodes]}))
ray.shutdown()
cluster.shutdown()
"""


def test_a_search_on_a_one_cpu_cluster_completes(tmp_path):
    """The training worker holds the only CPU: its data must not wait for one."""
    out = _py(ONE_CPU, tmp_path)
    assert out["cpus"] == 1 and out["statuses"] == ["ok", "ok"]


def _free_ports(n: int) -> list[int]:
    """`n` distinct ports nobody listens on: all held open together while they are picked (one picked at a
    time, the kernel can hand the same port out twice, and `ray start` refuses two components on one port)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@contextlib.contextmanager
def ray_head(*args: str, env: dict | None = None, dashboard_port: int | None = None):
    """`ray start --head --block` in a process group of its own (never `ray stop`, which would stop every
    Ray on the machine); yields the GCS and dashboard addresses once the dashboard answers."""
    import urllib.error
    import urllib.request

    gcs, dash, agent = _free_ports(3)
    dash = dashboard_port or dash
    proc = subprocess.Popen([os.path.join(BIN, "ray"), "start", "--head", "--block", f"--port={gcs}",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                             # not the default 52365: another Ray on this machine (the suite's own) holds it,
                             # and the job server needs this agent
                             f"--dashboard-agent-listen-port={agent}", *args],
                            env=env or _env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"ray start failed: {proc.stderr.read()[-3000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # it answers
                break
            except OSError:
                assert time.time() < deadline, "the Ray head did not come up in 3 minutes"
                time.sleep(1)
        yield f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a `ray start --block` and what it started: SIGTERM to `ray start` (which stops its processes),
    then SIGKILL to whatever of its group is still there."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


AUTOSCALE = r"""
import json, os, subprocess, sys, threading, time
from pathlib import Path
os.environ["RAY_enable_autoscaler_v2"] = "1"  # resource requests go to the GCS, where the status API reads them
import ray, trex_ray
from ray.autoscaler.v2.sdk import get_cluster_status
from ray.cluster_utils import Cluster
from tests.conftest import majority_rows, write_jsonl

tmp = Path(sys.argv[1])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4})
ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
paths = {s: write_jsonl(tmp / "data" / f"{s}.jsonl", majority_rows(160 if s == "train" else 8, i))
         for i, s in enumerate(("train", "val", "test"))}
task = trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer", metric="accuracy",
                                labels=["yes", "no"], **paths)
seen = {"accel_at_start": ray.cluster_resources().get("accel", 0)}

def demands():
    d = get_cluster_status(cluster.address).resource_demands
    return ([c.bundles_by_count for c in d.cluster_constraint_demand],
            [b.bundles_by_count for b in d.placement_group_demand] + [t.bundles_by_count for t in d.ray_task_actor_demand])

def autoscaler():  # what an autoscaler does: read the demand, add a node that meets it
    deadline = time.time() + 120
    while time.time() < deadline:
        constraints, pending = demands()
        if "accel" in str(constraints) and "accel" in str(pending):
            seen["constraints"], seen["pending"] = str(constraints), str(pending)
            break
        time.sleep(0.5)
    p = subprocess.run(["trex-ray", "status", "--address", cluster.address, "--json"], capture_output=True, text=True)
    seen["status"] = json.loads(p.stdout) if p.returncode == 0 else p.stderr[-2000:]
    cluster.add_node(num_cpus=2, resources={"accel": 1})

out = {}
def run():  # the search in a thread: nodes are added from the main thread
    out["res"] = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=1), max_concurrent=1,
                                 storage=str(tmp / "runs"), run_name="auto", train_resources={"accel": 1}, detach=True,
                                 evaluator="transformers", progress=False, address=cluster.address)

t = threading.Thread(target=run, daemon=True)
t.start()
autoscaler()
t.join(timeout=400)
res = out["res"]
left = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("trex-tree:")]
print("RESULT " + json.dumps({**seen, "statuses": [n.status for n in res.nodes if n.id != 0], "actors_left": len(left),
                              "constraints_after": str(demands()[0])}))
"""


def test_a_waiting_trial_is_visible_to_the_autoscaler_and_runs_when_a_node_comes(tmp_path):
    """A search whose training needs `accel`, on a cluster without any: the autoscaler's view (the GCS
    status API) shows the search's standing request and the trial's pending placement group; a node
    added then (as an autoscaler would) runs it. Meanwhile `trex-ray status --address` sees the search."""
    out = _py(AUTOSCALE, tmp_path)
    assert out["accel_at_start"] == 0
    assert "'accel': 1" in out["constraints"] and "'accel': 1" in out["pending"]
    assert out["statuses"] == ["ok"]
    live = out["status"]
    assert isinstance(live, list) and len(live) == 1, live
    assert live[0]["live"] is True and live[0]["run"].endswith("auto") and live[0]["running"][0]["id"] == 1
    assert out["actors_left"] == 0  # a detached tree actor goes when its search ends
    assert "accel" not in out["constraints_after"]  # the request is withdrawn


KILL_DRIVER = r"""
import random, sys, time
import ray, trex_ray
from trex_ray.results import NodeResult

@ray.remote(num_cpus=0, max_retries=0)
def trial(*, node_id, plan, task, baseline_score, **_):
    rng = random.Random(node_id)
    time.sleep(rng.uniform(0.2, 0.8))
    score = rng.random()
    return NodeResult(status="ok", score=score, metric=task["metric"], reward=max(0.0, score - baseline_score),
                      seconds=0.5, accelerator_s=0.5).model_dump()

task = trex_ray.Task.from_jsonl(name="majority", train=sys.argv[2], val=sys.argv[3], test=sys.argv[4],
                                input_field="question", output_field="answer", metric="accuracy", labels=["yes", "no"])
trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=12), max_concurrent=2,
                storage=sys.argv[5], run_name="run", evaluator="transformers", address=sys.argv[1], progress=False,
                executor=trial, resume=sys.argv[6] == "resume")
"""


def _events(path) -> list[dict]:
    out = []
    if os.path.exists(path):
        for line in open(path):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by the kill
                pass
    return out


def test_the_driver_killed_at_ten_random_points_is_resumed_to_the_same_budget(tmp_path):
    """One run, its driver SIGKILLed ten times at random journal positions (the first driver and then
    each resumed one), then resumed to its end: nothing finished is lost or changed, no trial past the
    budget is started, every resume picks up where the last driver died."""
    paths = [write_jsonl(tmp_path / "data" / f"{s}.jsonl", majority_rows(n, i))
             for i, (s, n) in enumerate([("train", 40), ("val", 8), ("test", 8)])]
    storage = tmp_path / "runs"
    journal = storage / "run" / "journal.jsonl"
    rng = random.Random(0)
    kills = []
    with ray_head("--num-cpus=4") as (address, _):
        cmd = [sys.executable, "-c", KILL_DRIVER, address, *paths, str(storage)]
        for i in range(10):
            kill_at = len(_events(journal)) + rng.randint(1, 4)  # a whole run writes about 60 events
            proc = subprocess.Popen([*cmd, "resume" if i else "new"], cwd=REPO, env=_env(), start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 120
            while len(_events(journal)) < kill_at and proc.poll() is None:
                assert time.time() < deadline, f"kill {i}: the run did not get to event {kill_at}"
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.2))
            assert proc.poll() is None, f"kill {i}: the driver ended early:\n{proc.stderr.read()[-3000:]}"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            events = _events(journal)
            kills.append((len(events), {e["id"]: e["result"] for e in events if e["type"] == "node_finished"}))
        done = subprocess.run([*cmd, "resume"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = _events(journal)
    after = {e["id"]: e["result"] for e in events if e["type"] == "node_finished"}
    for n_events, finished in kills:
        assert all(after[i] == r for i, r in finished.items()), f"a node finished before event {n_events} changed"
    assert len({n for _, f in kills for n in f}) >= 2, "no kill came after a finished trial"
    trials = {e["id"] for e in events if e["type"] == "node_added" and e["parent_id"] is not None}
    assert len(trials) == 12 and trials <= set(after), f"{len(trials)} trials for a budget of 12"
    assert sum(e["type"] == "session_started" for e in events) == 11
    assert events[-1]["type"] == "run_finished"
    assert json.load(open(storage / "run" / "result.json"))["spent"]["trials"] == 12


SECOND_NODE = r"""
import json, sys
import ray, trex_ray
from tests.integration.test_train_options import CALLBACKS_PROBE
task = trex_ray.Task.from_jsonl(name="majority", train="data/train.jsonl", val="data/val.jsonl", test="data/test.jsonl",
                                input_field="question", output_field="answer", metric="accuracy", labels=["yes", "no"])
res = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=1), max_concurrent=1,
                      storage=sys.argv[2], run_name="r", train_resources={"accel": 1}, address=sys.argv[1],
                      evaluator="transformers", progress=False)
accel = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("accel")]
node = res.nodes[1]
exec(CALLBACKS_PROBE)
served, callbacks = ray.get(probe.remote())
print("RESULT " + json.dumps({"status": node.status, "error": node.result.get("error"), "accel_nodes": accel,
                              "trained_on": node.result["train_stats"].get("node"), "state_api": served,
                              "callbacks": callbacks}))
"""


def test_training_runs_on_a_second_node_with_its_own_working_directory(tmp_path):
    """The driver (relative paths, its own working directory) on the head; the only node with `accel`
    started apart with `ray start` in another folder and another model cache; the run on a storage URI."""
    driver, node2 = tmp_path / "driver", tmp_path / "node2"
    node2.mkdir()
    for i, s in enumerate(("train", "val", "test")):
        write_jsonl(driver / "data" / f"{s}.jsonl", majority_rows(120 if s == "train" else 8, i))
    uri = f"file://{tmp_path}/remote"
    with ray_head("--num-cpus=3") as (gcs, _):
        worker = subprocess.Popen([os.path.join(BIN, "ray"), "start", f"--address={gcs}", "--num-cpus=2",
                                   '--resources={"accel": 1}', f"--dashboard-agent-listen-port={_free_ports(1)[0]}",
                                   "--block"], cwd=node2,
                                  env=_env(TREX_RAY_CACHE=str(node2 / "cache")), start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc = subprocess.run([sys.executable, "-c", SECOND_NODE, gcs, uri], cwd=driver, capture_output=True,
                                  text=True, timeout=600, env=_env())
        finally:
            _stop(worker)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert out["status"] == "ok", out["error"]
    assert len(out["accel_nodes"]) == 1 and out["trained_on"] == out["accel_nodes"][0]
    # a head started with `ray start` serves the state API: Ray Train keeps its placement-group cleaner there
    assert out["state_api"] is True and "PlacementGroupCleanerCallback" in out["callbacks"]
    assert (tmp_path / "remote" / "r" / "nodes" / "1" / "adapter").is_dir()


def test_ray_job_submit_runs_a_search_on_a_ray_head(tmp_path):
    """The README's command as written, from the repository root: `--working-dir .` uploads the repository
    (what git does not ignore, the example's data with it) and the job runs `trex-ray run examples/clock.yaml`."""
    with ray_head("--num-cpus=4") as (_, dashboard):
        deadline = time.time() + 120
        while True:  # the head's job agent registers a little after the dashboard answers
            sub = subprocess.run([os.path.join(BIN, "ray"), "job", "submit", "--address", dashboard, "--working-dir",
                                  ".", "--", "trex-ray", "run", "examples/clock.yaml", "--storage", str(tmp_path / "runs"),
                                  "--run_name", "job", "--trials", "1", "--max_concurrent", "1",
                                  "--base_model", "tiny-random"],
                                 cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
            if "No available agent" not in sub.stderr + sub.stdout or time.time() > deadline:
                break
            time.sleep(3)
    assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-2000:]
    assert "succeeded" in sub.stdout and "best node" in sub.stdout
    result = json.load(open(tmp_path / "runs" / "job" / "result.json"))
    assert result["spent"]["trials"] == 1
    splits = json.load(open(tmp_path / "runs" / "job" / "splits.json"))
    assert splits["train"]["rows"] == 176 and splits["train"]["source"].endswith("examples/clock-data/train.jsonl")


FOREIGN_DASHBOARD = r"""
import json, os, sys
from pathlib import Path
import pyarrow as pa, pyarrow.parquet as pq
from trex_ray.executor import train as train_mod
from trex_ray.models import resolve_model
from trex_ray.plan import TrainConfig
from trex_ray.runtime import init_ray

tmp = Path(sys.argv[1])
init_ray(None, 1)  # a local cluster of this process's own, as a search starts it: it runs no dashboard
from ray.experimental import internal_kv
os.makedirs(tmp / "data")
pq.write_table(pa.table({"user": [f"{i} plus {i}?" for i in range(64)], "system": ["Answer."] * 64,
                         "output": [str(2 * i) for i in range(64)]}), tmp / "data" / "part.parquet")
out = {"advertised": internal_kv._internal_kv_get("dashboard", namespace="dashboard").decode(),
       "served": train_mod._state_api_served()}
try:  # ~10 s of training, no restart allowed: Ray Train's cleaner checks on the controller every second
    stats = train_mod.fit(data_dir=str(tmp / "data"), model_path=resolve_model("tiny-random"),
                          train_cfg=TrainConfig(epochs=20, batch_size=4).model_dump(), init_adapter=None,
                          node_dir=str(tmp / "node"), threads=1, retries=0)
    out["steps"] = stats["steps"]
except Exception as e:
    out["error"] = f"{type(e).__name__}: {str(e)[:800]}"
print("RESULT " + json.dumps(out))
"""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _a_dashboard_at_8265():
    """A `ray start` head serving its dashboard at 127.0.0.1:8265; or, where that port is taken already, the
    Ray dashboard that holds it (another cluster on this machine: the case under test all the same). A port
    held by a dashboard still starting or stopping (another test's cluster) is waited on for a minute."""
    import urllib.error
    import urllib.request

    deadline = time.time() + 60
    while True:
        if _port_free(8265):
            return ray_head("--num-cpus=1", dashboard_port=8265)
        try:
            json.loads(urllib.request.urlopen("http://127.0.0.1:8265/api/version", timeout=5).read())["session_name"]
            return contextlib.nullcontext()
        except urllib.error.HTTPError:  # a Ray dashboard that wants a token
            return contextlib.nullcontext()
        except (OSError, ValueError, KeyError):
            if time.time() > deadline:
                pytest.skip("127.0.0.1:8265 is held by something other than a Ray dashboard")
            time.sleep(1)


def test_another_clusters_dashboard_at_the_advertised_address_does_not_kill_training(tmp_path):
    """A local cluster runs no dashboard yet advertises Ray's default address, 127.0.0.1:8265, where any other
    Ray on the machine serves its dashboard (a `ray start` head, a test cluster). Ray Train's placement-group
    cleaner asked that dashboard whether the run's controller lived, heard "no such actor" and removed the live
    run's placement group: its worker died ("its placement group was removed"), on the first start and on
    every restart. That dashboard names another session, so the cleaner is left out and the run trains on."""
    with _a_dashboard_at_8265():
        out = _py(FOREIGN_DASHBOARD, tmp_path)
    assert out["advertised"].endswith(":8265")
    assert out["served"] is False  # something answers there, but not as this cluster
    assert out.get("error") is None, out["error"]
    assert out["steps"] == 20 * 16
