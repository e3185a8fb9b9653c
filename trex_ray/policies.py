"""Selection policies: which node to refine next. One Protocol, several implementations, the same
budget accounting for all, so they can be compared. Randomness comes in as a seeded `random.Random`.

- `mcts` (default): descend from the root by UCT over finished children; progressive widening lets a
  node take another child while it has fewer than ceil(pw_c * N**pw_alpha), N counting in-flight trials.
- `greedy`: the best node by val score.
- `sequential`: the most recently finished good node (a chain of refinements).
- `random`: any finished good node, uniformly.
"""

from __future__ import annotations

import math
import random
from typing import Protocol

from trex_ray.tree import Tree


class SelectionPolicy(Protocol):
    name: str

    def select(self, tree: Tree, rng: random.Random) -> int: ...


class MCTSPolicy:
    name = "mcts"

    def __init__(self, c: float = 1.0, pw_c: float = 1.0, pw_alpha: float = 0.5) -> None:
        self.c, self.pw_c, self.pw_alpha = c, pw_c, pw_alpha

    def select(self, tree: Tree, rng: random.Random) -> int:
        node = tree.root
        while True:
            kids = [k for k in tree.children(node.id) if k.status != "cancelled"]
            allowed = math.ceil(self.pw_c * max(1, node.visits + node.virtual) ** self.pw_alpha)
            good = [k for k in kids if k.status == "ok"]
            if len(kids) < allowed or not good:
                return node.id
            scores = [tree.uct(k, self.c) for k in good]
            top = max(scores)
            node = rng.choice([k for k, s in zip(good, scores) if s == top])


class GreedyPolicy:
    name = "greedy"

    def select(self, tree: Tree, rng: random.Random) -> int:
        return tree.best().id


class SequentialPolicy:
    name = "sequential"

    def select(self, tree: Tree, rng: random.Random) -> int:
        ok = [n for n in tree.finished() if n.status == "ok"]
        return ok[-1].id if ok else tree.root.id


class RandomPolicy:
    name = "random"

    def select(self, tree: Tree, rng: random.Random) -> int:
        return rng.choice(sorted(tree.expandable(), key=lambda n: n.id)).id


POLICIES = {p.name: p for p in (MCTSPolicy, GreedyPolicy, SequentialPolicy, RandomPolicy)}


def make_policy(name: str) -> SelectionPolicy:
    from trex_ray.errors import ConfigError

    if name not in POLICIES:
        raise ConfigError("policy", f"unknown policy {name!r}", f"use one of: {', '.join(POLICIES)}")
    return POLICIES[name]()
