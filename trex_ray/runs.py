"""Run folders: creating, finding and reading them back.

    <storage>/<run>/config.yaml  journal.jsonl  brief.json  result.json
    <storage>/<run>/nodes/<id>/plan.json  result.json  adapter/  logs/
    <storage>/cache/datasets/<recipe-hash>/     (shared by all runs under the same storage)

A new run never overwrites an existing one; `resume` reopens it. `load_run` rebuilds the
`SearchResult` from the journal alone.
"""

from __future__ import annotations

import json
import os
import time

import yaml

from trex_ray.budget import Spend
from trex_ray.errors import ConfigError
from trex_ray.journal import read_events
from trex_ray.results import NodeView, SearchResult
from trex_ray.task import Task
from trex_ray.tree import Tree


def cache_root(storage: str) -> str:
    return os.path.join(os.path.abspath(storage), "cache")


def find_latest(storage: str, task_name: str) -> str | None:
    if not os.path.isdir(storage):
        return None
    cands = [os.path.join(storage, d) for d in os.listdir(storage) if d.startswith(task_name + "-")]
    cands = [d for d in cands if os.path.exists(os.path.join(d, "journal.jsonl"))]
    return max(cands, key=os.path.getmtime) if cands else None


def open_run_dir(storage: str, task: Task, run_name: str | None, resume: bool, settings: dict) -> str:
    """The run folder, new (its config.yaml written) or resumed; either way holding `splits.json` and, where
    the task's own files are not what the data pipeline reads, the rows as read in `data/` (`Task.write_data`)."""
    if resume:
        run_dir = os.path.join(storage, run_name) if run_name else find_latest(storage, task.name)
        if not run_dir or not os.path.exists(os.path.join(run_dir, "journal.jsonl")):
            raise ConfigError("resume", f"no run to resume for task {task.name!r} in {storage!r}",
                              "give run_name of an existing run folder, or start a new run without resume")
        task.write_data(os.path.abspath(run_dir))
        return os.path.abspath(run_dir)
    run_name = run_name or f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = os.path.abspath(os.path.join(storage, run_name))
    if os.path.exists(os.path.join(run_dir, "journal.jsonl")):
        raise ConfigError("run_name", f"a run already exists at {run_dir}",
                          "resume it (trex-ray resume / resume=True) or choose another run_name")
    os.makedirs(run_dir, exist_ok=True)
    # the task with absolute paths, then the settings (`SearchSettings.persisted`): what resume reads back
    config = {**task.to_config(), **settings, "storage": os.path.abspath(storage), "run_name": run_name}
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(f"# resume with: trex-ray resume {run_dir}\n")
        yaml.safe_dump(config, f, sort_keys=False)
    task.write_data(run_dir)
    return run_dir


def set_storage(run_dir: str, storage: str) -> None:
    """Record where the run's folder lives (a URI) in its config.yaml, which `trex-ray resume` reads."""
    path = os.path.join(run_dir, "config.yaml")
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    config["storage"] = storage
    with open(path, "w") as f:
        f.write(f"# resume with: trex-ray resume {storage.rstrip('/')}/{os.path.basename(run_dir)}\n")
        yaml.safe_dump(config, f, sort_keys=False)


def spent_so_far(run_dir: str) -> Spend:
    """Wall-clock of earlier sessions (each from its start to its last event) and trials recorded."""
    wall, start, last = 0.0, None, None
    for ev in read_events(os.path.join(run_dir, "journal.jsonl")):
        ts = ev.get("ts")
        if ev["type"] == "session_started":
            if start is not None and last is not None:
                wall += last - start
            start = ts
        last = ts
    if start is not None and last is not None:
        wall += last - start
    return Spend(wall_clock_s=wall)


def load_brief(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, "brief.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def save_brief(run_dir: str, brief: dict) -> None:
    with open(os.path.join(run_dir, "brief.json"), "w") as f:
        json.dump(brief, f, indent=1)


def _view(tree: Tree, nid: int, run_dir: str) -> NodeView:
    n = tree.nodes[nid]
    return NodeView(
        id=n.id, parent_id=n.parent_id, direction=n.direction, status=n.status, val_score=n.score,
        test_score=(n.test or {}).get("score"), plan=n.plan, result=n.result, diagnosis=n.diagnosis,
        path=os.path.join(run_dir, "nodes", str(n.id)),
    )


def local_run_dir(path: str) -> str:
    """A run folder on this machine: `path` itself, or for `<storage URI>/<run>` its local mirror, pulled."""
    from trex_ray.storage import is_uri, prepare

    path = path.rstrip("/")
    if not is_uri(path):
        return path
    storage, _, name = path.rpartition("/")
    try:
        local, name, _ = prepare(storage, name, True, "")
    except ConfigError:
        raise ConfigError("run", f"no run folder at {path}", "give <storage URI>/<run name>, as trex-ray "
                          "status or the run's config.yaml names it") from None
    return os.path.join(local, name)


def load_tree(run_dir: str) -> Tree:
    path = os.path.join(run_dir, "journal.jsonl")
    if not os.path.exists(path):
        raise ConfigError("run", f"{run_dir} is not a run folder (no journal.jsonl)", "give a folder under your storage")
    return Tree.replay(read_events(path))


def load_result(run_dir: str, spent: dict | None = None, stop_reason: str = "") -> SearchResult:
    tree = load_tree(run_dir)
    if 0 not in tree.nodes or tree.root.status != "ok":
        raise ConfigError("run", f"{run_dir} has no finished baseline yet", "resume the run first")
    if spent is None or not stop_reason:
        for ev in read_events(os.path.join(run_dir, "journal.jsonl")):
            if ev["type"] == "run_finished":
                spent, stop_reason = ev.get("spent"), ev.get("stop_reason") or ""
    tested = [n for n in tree.nodes.values() if n.test and n.id != 0]
    best = tested[-1].id if tested else tree.best().id
    return SearchResult(
        run_dir=run_dir, best=_view(tree, best, run_dir), baseline=_view(tree, 0, run_dir),
        nodes=[_view(tree, i, run_dir) for i in sorted(tree.nodes)], insights=list(tree.insights),
        spent=spent or {}, stop_reason=stop_reason,
    )
