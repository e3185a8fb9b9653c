"""The search tree: every experiment is a node; the root is the base model (the baseline).

Pure Python, no Ray: the tree changes only through `apply(event)`, with events as plain dicts, so the
same code records a live search (`TreeActor` appends each event to journal.jsonl, then applies it) and
rebuilds one after a crash (`Tree.replay(events)`). Nodes link by id.

Statistics for selection: `visits` and `value` (sum of backpropagated rewards) count finished trials in
a node's subtree, itself included; `virtual` counts trials in flight in the subtree. In-flight trials
act as a virtual loss (a visit with reward 0) so that concurrent selections spread out.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, Iterable

RUNNING, OK, FAILED, CANCELLED = "running", "ok", "failed", "cancelled"


@dataclass
class Node:
    id: int
    parent_id: int | None
    depth: int
    plan: dict | None = None
    signature: str | None = None
    status: str = RUNNING
    score: float | None = None
    reward: float = 0.0
    result: dict | None = None
    diagnosis: str | None = None
    categories: dict | None = None  # the diagnosis's counts of bad-case kinds (wrong format, wrong value, ...)
    visits: int = 0
    value: float = 0.0
    virtual: int = 0
    children: list[int] = field(default_factory=list)
    created_at: float = 0.0
    finished_at: float | None = None
    finish_order: int | None = None
    test: dict | None = None

    @property
    def direction(self) -> str:
        return (self.plan or {}).get("direction", "baseline")

    def summary(self) -> dict:
        """Every field but the result, without copying (a deep copy of 1000 nodes' plans costs milliseconds
        on every call)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "result"}
        d["direction"] = self.direction
        return d


class Tree:
    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.insights: list[str] = []
        self.llm_usage: dict[str, float] = {}  # the researcher's tokens and $, summed over sessions
        self._finished = 0

    # -- mutation: only through events ---------------------------------------------------------
    def apply(self, ev: dict[str, Any]) -> None:
        kind = ev["type"]
        if kind == "node_added":
            self._add(ev)
        elif kind == "node_finished":
            self._finish(ev["id"], ev["result"], ev.get("ts", time.time()))
        elif kind == "node_cancelled":
            self._release(ev["id"], CANCELLED)
        elif kind == "node_relaunched":
            node = self.nodes[ev["id"]]
            assert node.status in (RUNNING, CANCELLED), f"node {node.id} is {node.status}"
            if node.status == CANCELLED:
                node.status = RUNNING
                self._walk_up(node.parent_id, virtual=+1)
        elif kind == "diagnosis":
            self.nodes[ev["id"]].diagnosis = ev["text"]
            self.nodes[ev["id"]].categories = ev.get("categories")  # journals before 0.2 have the text only
        elif kind == "insights":
            self.insights = list(ev["items"])
        elif kind == "test_evaluated":
            self.nodes[ev["id"]].test = ev["result"]
        elif kind == "llm_usage":
            for k, v in ev["usage"].items():
                self.llm_usage[k] = self.llm_usage.get(k, 0) + v
        # other events (run_started, run_finished, ...) carry no tree state

    @classmethod
    def replay(cls, events: Iterable[dict]) -> "Tree":
        tree = cls()
        for ev in events:
            tree.apply(ev)
        return tree

    def _add(self, ev: dict) -> None:
        nid, pid = ev["id"], ev.get("parent_id")
        if nid in self.nodes:
            raise ValueError(f"node {nid} exists")
        depth = 0 if pid is None else self.nodes[pid].depth + 1
        self.nodes[nid] = Node(
            id=nid, parent_id=pid, depth=depth, plan=ev.get("plan"), signature=ev.get("signature"),
            created_at=ev.get("ts", time.time()),
        )
        if pid is not None:
            self.nodes[pid].children.append(nid)
            self._walk_up(pid, virtual=+1)

    def _walk_up(self, nid: int | None, virtual: int = 0, reward: float | None = None) -> None:
        while nid is not None:
            n = self.nodes[nid]
            n.virtual += virtual
            if reward is not None:
                n.visits += 1
                n.value += reward
            nid = n.parent_id

    def _release(self, nid: int, status: str) -> None:
        node = self.nodes[nid]
        if node.status == RUNNING and node.parent_id is not None:
            self._walk_up(node.parent_id, virtual=-1)
        node.status = status

    def _finish(self, nid: int, result: dict, ts: float) -> None:
        node = self.nodes[nid]
        if node.status != RUNNING:
            raise ValueError(f"node {nid} is {node.status}, not running")
        self._release(nid, OK if result.get("status") == OK else FAILED)
        node.result = result
        node.score = result.get("score")
        node.reward = float(result.get("reward") or 0.0) if node.status == OK else 0.0
        node.finished_at = ts
        node.finish_order = self._finished
        self._finished += 1
        self._walk_up(nid, reward=node.reward)

    # -- queries -------------------------------------------------------------------------------
    @property
    def root(self) -> Node:
        return self.nodes[0]

    def next_id(self) -> int:
        return max(self.nodes, default=-1) + 1

    def children(self, nid: int) -> list[Node]:
        return [self.nodes[c] for c in self.nodes[nid].children]

    def ancestors(self, nid: int) -> list[Node]:
        """From the root down to the node's parent."""
        out = []
        pid = self.nodes[nid].parent_id
        while pid is not None:
            out.append(self.nodes[pid])
            pid = self.nodes[pid].parent_id
        return out[::-1]

    def path(self, nid: int) -> list[Node]:
        return self.ancestors(nid) + [self.nodes[nid]]

    def finished(self) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.status in (OK, FAILED)), key=lambda n: n.finish_order or 0)

    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.status == RUNNING]

    def expandable(self) -> list[Node]:
        """Nodes that can be a parent: finished ok (they have a model to start from)."""
        return [n for n in self.nodes.values() if n.status == OK]

    def signatures(self) -> set[str]:
        return {n.signature for n in self.nodes.values() if n.signature and n.status != CANCELLED}

    def trials(self) -> int:
        """Trials launched that count against the budget (all non-root nodes that were not cancelled)."""
        return sum(1 for n in self.nodes.values() if n.parent_id is not None and n.status != CANCELLED)

    def since_best(self) -> int:
        """Trials (ok or failed) that finished after the best node did: how long the search has gone without
        a better val (every finished trial, while none beat the root)."""
        trials = [n for n in self.finished() if n.parent_id is not None]  # in finish order
        best = self.best() if self.nodes and self.root.status == OK else None
        if best is None or best.parent_id is None:
            return len(trials)
        # counted from the first trial to finish with the best score (a lower id finishing later with the
        # same score is no gain)
        first = next(i for i, n in enumerate(trials) if n.status == OK and n.score == best.score)
        return len(trials) - first - 1

    def best(self) -> Node:
        """The finished node with the highest val score; the earliest wins ties (the root if nothing beat it)."""
        ok = [n for n in self.nodes.values() if n.status == OK and n.score is not None]
        return max(ok, key=lambda n: (n.score, -n.id))

    def uct(self, node: Node, c: float) -> float:
        parent = self.nodes[node.parent_id]
        n = node.visits + node.virtual
        big_n = parent.visits + parent.virtual
        if n == 0:
            return math.inf
        return node.value / n + c * math.sqrt(math.log(max(big_n, 1)) / n)
