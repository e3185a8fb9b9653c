"""`TreeActor`: the search tree as a Ray actor. It owns the `Tree` and the run's journal; every change
is an event that is appended to journal.jsonl first and applied second, so the journal is always at
least as new as the tree. Reads return plain data (node summaries, contexts), never live objects.
"""

from __future__ import annotations

import os
import random
import time

import ray

from trex_ray.journal import Journal, read_events
from trex_ray.memory import build_context
from trex_ray.policies import make_policy
from trex_ray.tree import Tree


class TreeCore:
    """The actor's logic, usable without Ray (tests drive it directly)."""

    def __init__(self, journal_path: str, policy: str = "mcts", seed: int = 0) -> None:
        self.journal = Journal(journal_path)  # repairs a torn tail first, so replay sees what appends extend
        self.tree = Tree.replay(read_events(journal_path))
        self.policy = make_policy(policy)
        self.driver_job = None  # the Ray job of the driver whose session is the latest (status reads it)
        self.live: dict[int, dict] = {}  # trials in flight: stage and progress (not journalled: it is gone
        # when the trial is, and a restarted actor simply waits for the next report)
        # a resumed run continues with a fresh but reproducible stream
        self.rng = random.Random(f"{seed}:{len(self.tree.nodes)}")

    def record(self, event: dict) -> None:
        event = {"ts": time.time(), **event}
        self.journal.append(event)
        self.tree.apply(event)
        if event["type"] == "session_started":
            self.driver_job = event.get("driver_job")
        elif event["type"] in ("node_finished", "node_cancelled"):
            self.live.pop(event["id"], None)

    def progress(self, nid: int, info: dict) -> None:
        """A trial's stage (data / train / eval) and how far it is, reported by the trial as it goes."""
        node = self.tree.nodes.get(nid)
        if node is None or node.status != "running":
            return  # a late report of a trial already finished or stopped
        cur = self.live.get(nid, {})
        if info.get("stage") != cur.get("stage"):
            cur = {"stage_started": time.time()}
        self.live[nid] = {**cur, **info, "ts": time.time()}

    def add_node(self, parent_id: int | None, plan: dict | None, signature: str | None) -> int:
        nid = self.tree.next_id()
        self.record({"type": "node_added", "id": nid, "parent_id": parent_id, "plan": plan, "signature": signature})
        return nid

    def select(self) -> int:
        return self.policy.select(self.tree, self.rng)

    def context(self, parent_id: int) -> dict:
        return build_context(self.tree, parent_id)

    def node(self, nid: int) -> dict:
        n = self.tree.nodes[nid]
        return {**n.summary(), "result": n.result}

    def nodes(self) -> list[dict]:
        return [{**n.summary(), "result": n.result} for n in sorted(self.tree.nodes.values(), key=lambda n: n.id)]

    def summaries(self, finished: bool = False) -> list[dict]:
        return summaries_of(self.tree, finished)

    def state(self) -> dict:
        return {**state_of(self.tree), "driver_job": self.driver_job,
                "live": {nid: dict(v) for nid, v in self.live.items()}}

    def close(self) -> None:
        self.journal.close()


def summaries_of(t: Tree, finished: bool = False) -> list[dict]:
    """What insight distillation and `trex-ray status` read of every node (no plan, no result: at 1000
    nodes the full summaries take ~20 ms to ship); `finished`: ok or failed only."""
    return [{"id": n.id, "parent_id": n.parent_id, "depth": n.depth, "direction": n.direction,
             "status": n.status, "score": n.score, "reward": n.reward}
            for n in sorted(t.nodes.values(), key=lambda n: n.id)
            if not finished or n.status in ("ok", "failed")]


def state_of(t: Tree) -> dict:
    return {
        "num_nodes": len(t.nodes),
        "finished": sum(1 for n in t.nodes.values() if n.status in ("ok", "failed")),
        "trials": t.trials(),
        "running": [n.id for n in t.running()],
        "best": t.best().id if t.nodes and t.root.status == "ok" else None,
        "since_best": t.since_best(),
        "insights": list(t.insights),
        "accelerator_s": sum((n.result or {}).get("accelerator_s", 0.0) for n in t.nodes.values()),
        "llm_usage": dict(t.llm_usage),
    }


# The actor's whole state is rebuilt from the journal by __init__, so a killed actor process is simply
# restarted (and the calls that were in flight retried): the search does not notice beyond the delay.
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class TreeActor(TreeCore):
    pass


NAMESPACE = "trex-ray"  # where tree actors are named, so that another driver (`trex-ray status`) finds them


def tree_actor_name(run_dir: str) -> str:
    """The name of a run's tree actor in its Ray cluster (one live search per run folder)."""
    return f"trex-tree:{os.path.abspath(run_dir)}"


def start_tree(run_dir: str, policy: str, seed: int, detach: bool):
    """The run's tree actor, named for its folder: a detached one outlives its driver (status still answers)."""
    return TreeActor.options(name=tree_actor_name(run_dir), namespace=NAMESPACE,
                             lifetime="detached" if detach else None).remote(
        os.path.join(run_dir, "journal.jsonl"), policy, seed)


def stop_tree(run_dir: str) -> None:
    """Kill the run's tree actor if it is there (never started, or already gone, is fine)."""
    if not ray.is_initialized():
        return
    try:
        ray.kill(ray.get_actor(tree_actor_name(run_dir), namespace=NAMESPACE), no_restart=True)
    except ValueError:
        pass


def take_over(run_dir: str) -> None:
    """A tree actor already named for this run folder: a detached one whose driver died is replaced (the
    journal is as new as it); one whose driver still runs means a second search on the same folder."""
    from trex_ray.errors import ConfigError
    from trex_ray.runtime import driver_alive

    try:
        actor = ray.get_actor(tree_actor_name(run_dir), namespace=NAMESPACE)
    except ValueError:
        return
    try:
        job = ray.get(actor.state.remote(), timeout=30).get("driver_job")
    except Exception:  # noqa: BLE001 - an actor that cannot answer is no search's
        job = None
    if job and job != ray.get_runtime_context().get_job_id() and driver_alive(job):
        raise ConfigError("run", f"a search is running on {run_dir} (driver job {job})",
                          "watch it with trex-ray status / attach, or stop that driver first")
    ray.kill(actor, no_restart=True)
