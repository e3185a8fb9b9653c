"""Helpers for the unit tests: small JSONL files, a Tree driven through events (no Ray, no models) and the
benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import json
import os

from trex_ray.tree import Tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def benchmark_script(name: str):
    """benchmarks/<name>.py imported as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


def qa_rows(n: int, start: int = 0, labels: int | None = None) -> list[dict]:
    out = []
    for i in range(start, start + n):
        ans = f"label{i % labels}" if labels else f"{i % 24:02d}:{(i * 5) % 60:02d}"
        out.append({"question": f"what is item number {i}?", "answer": ans})
    return out


def ok(score: float, reward: float = 0.0, **extra) -> dict:
    return {"status": "ok", "score": score, "reward": reward, **extra}


def failed(stage: str = "train", message: str = "boom") -> dict:
    return {"status": "failed", "score": None, "reward": 0.3, "error": {"stage": stage, "message": message}}


class TreeBuilder:
    """Drives a Tree through events only, remembering them for replay."""

    def __init__(self, root_score: float | None = 0.2) -> None:
        self.tree = Tree()
        self.events: list[dict] = []
        self.ts = 1000.0
        self.emit({"type": "node_added", "id": 0, "parent_id": None, "plan": None, "signature": None})
        if root_score is not None:
            self.finish(0, ok(root_score, 0.0))

    def emit(self, ev: dict) -> None:
        self.ts += 1.0
        ev = {"ts": self.ts, **ev}
        self.events.append(ev)
        self.tree.apply(ev)

    def add(self, parent: int, direction: str = "more epochs", sig: str | None = None) -> int:
        nid = self.tree.next_id()
        self.emit({"type": "node_added", "id": nid, "parent_id": parent, "plan": {"direction": direction},
                   "signature": sig or f"sig{nid}"})
        return nid

    def finish(self, nid: int, result: dict) -> None:
        self.emit({"type": "node_finished", "id": nid, "result": result})

    def cancel(self, nid: int) -> None:
        self.emit({"type": "node_cancelled", "id": nid, "reason": "test"})

    def relaunch(self, nid: int) -> None:
        self.emit({"type": "node_relaunched", "id": nid})

    def child(self, parent: int, score: float, reward: float = 0.0, **kw) -> int:
        nid = self.add(parent, **kw)
        self.finish(nid, ok(score, reward))
        return nid


def stats(tree: Tree) -> dict:
    """Every node's statistics, for comparing two trees."""
    return {nid: (n.parent_id, n.depth, n.status, n.visits, round(n.value, 12), n.virtual, n.score, n.reward,
                  tuple(n.children), n.finish_order, n.diagnosis, n.test) for nid, n in sorted(tree.nodes.items())}
