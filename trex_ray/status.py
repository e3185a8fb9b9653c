"""`trex-ray status` and `trex-ray attach`: what a search is doing, seen from another shell.

Two sources give the same snapshot. The run folder's journal (every event is appended as it happens,
so it is live on the machine that holds the folder), or, given a Ray address, the search's tree actor
itself: it is named in the `trex-ray` namespace, so any driver on the cluster can find it, for example
a laptop watching a search that `ray job submit` started on the head node.
"""

from __future__ import annotations

import os
import time

from trex_ray.errors import ConfigError


def snapshot(nodes: list[dict], state: dict, run: str, live: bool, stop_reason: str | None = None) -> dict:
    """The status of one run from its node summaries and the tree state (`TreeCore.summaries/state`);
    trials in flight carry their stage and progress where the tree actor has them (`state["live"]`)."""
    from trex_ray.progress import stage_text

    by_id = {n["id"]: n for n in nodes}
    reports = state.get("live") or {}
    now = time.time()
    root = by_id.get(0)
    best = by_id.get(state.get("best")) if state.get("best") is not None else None
    return {
        "run": run, "live": live, "stop_reason": stop_reason,
        "trials": state["trials"], "finished": max(0, state["finished"] - (1 if root and root["status"] in
                                                                              ("ok", "failed") else 0)),
        "running": [{"id": i, "parent_id": by_id[i]["parent_id"], "direction": by_id[i]["direction"],
                     "stage": reports.get(i, {}).get("stage"), "progress": stage_text(reports.get(i)),
                     "stage_s": round(now - reports[i]["stage_started"], 1) if "stage_started" in reports.get(i, {})
                     else None} for i in state["running"] if i in by_id],
        "failed": sum(1 for n in nodes if n["status"] == "failed" and n["id"] != 0),
        "baseline": root["score"] if root else None,
        "best": {"id": best["id"], "score": best["score"], "direction": best["direction"]} if best else None,
        "accelerator_s": state["accelerator_s"], "llm_usd": state["llm_usage"].get("usd", 0.0),
        "insight": state["insights"][-1] if state["insights"] else None,
    }


def from_journal(run_dir: str) -> dict:
    from trex_ray.journal import read_events
    from trex_ray.tree import Tree
    from trex_ray.tree_actor import state_of, summaries_of

    path = os.path.join(run_dir, "journal.jsonl")
    if not os.path.exists(path):
        raise ConfigError("run", f"{run_dir} is not a run folder (no journal.jsonl)", "give a folder under your storage")
    events = list(read_events(path))
    tree = Tree.replay(events)
    stop = None
    for e in events:  # the last session decides: a resumed run is running again
        if e["type"] == "session_started":
            stop = None
        elif e["type"] == "run_finished":
            stop = e.get("stop_reason") or "done"
    snap = snapshot(summaries_of(tree), state_of(tree), os.path.abspath(run_dir), live=False, stop_reason=stop)
    return _with_published(snap, run_dir) if stop is None else snap


LIVE_FRESH_S = 15.0  # a published state older than this is from a driver that stopped without a word


def _with_published(snap: dict, run_dir: str) -> dict:
    """The journal's snapshot with what the running driver publishes (`progress.LIVE_FILE`): the stage of
    each trial in flight, the budget with its limits. Only a fresh file counts: a driver that was killed
    leaves its last one behind."""
    import json

    from trex_ray.progress import LIVE_FILE

    try:
        with open(os.path.join(run_dir, LIVE_FILE)) as f:
            pub = json.load(f)
    except (OSError, ValueError):
        return snap
    if time.time() - pub.get("ts", 0) > LIVE_FRESH_S:
        return snap
    by_id = {r["id"]: r for r in pub.get("running", [])}
    running = [{**r, **{k: v for k, v in by_id.get(r["id"], {}).items() if v is not None}} for r in snap["running"]]
    return {**snap, "live": True, "running": running, "budget": pub.get("budget")}


def live_searches(address: str) -> dict[str, object]:
    """The tree actors of the searches running on the cluster at `address`, by run folder."""
    import ray

    from trex_ray.tree_actor import NAMESPACE

    _reachable(address)
    if not ray.is_initialized():
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConfigError("address", f"no Ray cluster answers at {address!r} ({str(e).splitlines()[0][:200]})",
                              "give the head's GCS address, e.g. <head>:6379") from None
    out = {}
    for a in ray.util.list_named_actors(all_namespaces=True):
        if a["namespace"] == NAMESPACE and a["name"].startswith("trex-tree:"):
            out[a["name"].split(":", 1)[1]] = ray.get_actor(a["name"], namespace=NAMESPACE)
    return out


def _reachable(address: str) -> None:
    """Fail fast on an address nobody listens at (Ray itself waits a minute or more)."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():
        return  # "auto", ray:// and the like: Ray's own checks
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError("address", f"no Ray cluster answers at {address!r} ({e})",
                          "give the head's GCS address, e.g. <head>:6379") from None


def from_actor(run: str, actor) -> dict:
    import ray

    nodes, state = ray.get([actor.summaries.remote(), actor.state.remote()], timeout=30)
    from trex_ray.runtime import driver_alive

    alive = driver_alive(state.get("driver_job"))
    return {**snapshot(nodes, state, run, live=alive), "orphan": not alive}


def _match(runs: dict, run: str | None) -> dict:
    if run is None:
        return runs
    want = os.path.normpath(run)
    return {k: v for k, v in runs.items() if k == os.path.abspath(want) or k.endswith(os.sep + want)
            or os.path.basename(k) == os.path.basename(want)}


def collect(run: str | None, address: str | None) -> list[dict]:
    """Snapshots of the matching live searches (with an address), else of the run folder's journal."""
    if address:
        found = _match(live_searches(address), run)
        if found:
            return [from_actor(k, a) for k, a in sorted(found.items())]
        if run is None or not os.path.exists(os.path.join(run, "journal.jsonl")):
            return []
    if run is None:
        raise ConfigError("run", "no run folder given", "give a run folder, or --address to list the cluster's searches")
    return [from_journal(run)]


def render(s: dict) -> list[str]:
    if s["live"]:
        where = "running"
    elif s.get("orphan"):
        where = "stopped: its driver is gone (trex-ray resume continues it)"
    elif s["stop_reason"]:
        where = f"finished ({s['stop_reason']})"
    else:
        where = "in progress, or stopped before its end (trex-ray resume continues it)"
    lines = [f"{s['run']}: {where}",
             f"  trials: {s['finished']} finished ({s['failed']} failed), {len(s['running'])} in flight"]
    lines += [f"    node {r['id']} <- {r.get('parent_id')} [{r.get('progress') or 'starting'}"
              + (f", {r['stage_s']:.0f}s" if r.get("stage_s") is not None else "") + f"]: {r['direction']}"
              for r in s["running"]]
    best = s["best"]
    if best is not None and best["id"] != 0:
        lines.append(f"  best: node {best['id']} val {best['score']:.3f} ({best['score'] - s['baseline']:+.3f} vs "
                     f"baseline {s['baseline']:.3f}), {best['direction']}")
    elif s["baseline"] is not None:
        lines.append(f"  best: the baseline, val {s['baseline']:.3f}")
    if s.get("budget"):
        from trex_ray.progress import budget_text

        lines.append(f"  spent: {budget_text(s['budget'])}")
    else:
        lines.append(f"  spent: {s['accelerator_s'] / 3600:.3f} accelerator-h, ${s['llm_usd']:.2f} LLM")
    if s["insight"]:
        lines.append(f"  latest insight: {s['insight']}")
    return lines


def attach(run: str | None, address: str | None, poll_s: float = 2.0, stream=None, max_s: float | None = None) -> dict:
    """Follow one search until it ends: a line whenever a trial finishes or starts; returns the last
    snapshot. Live from the tree actor with an address, else from the run folder's journal."""
    import sys

    stream = stream or sys.stdout
    t0, last, seen = time.time(), None, (None, None)
    while True:
        snaps = collect(run, address)
        if len(snaps) > 1:
            raise ConfigError("run", f"{len(snaps)} searches match", "name one run folder: "
                              + ", ".join(s["run"] for s in snaps))
        if not snaps:  # the actor is gone: the search ended
            if last is not None and os.path.exists(os.path.join(last["run"], "journal.jsonl")):
                last = from_journal(last["run"])
                print("\n".join(render(last)), file=stream, flush=True)
            return last or {}
        s = snaps[0]
        key = (s["finished"], tuple((r["id"], r.get("stage")) for r in s["running"]))
        if key != seen:
            print(f"[{time.strftime('%H:%M:%S')}] " + "\n".join(render(s)), file=stream, flush=True)
            seen = key
        last = s
        if not s["live"] and (s["stop_reason"] or s.get("orphan")):
            return s
        if max_s is not None and time.time() - t0 > max_s:
            return s
        time.sleep(poll_s)
