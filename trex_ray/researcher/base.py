"""The Researcher Protocol, the contract every researcher (offline heuristic, or LLM-backed) keeps.

All inputs and outputs are plain data: a task profile and baseline result in, a brief out; a brief and
a memory context (see `trex_ray.memory`) in, a validated `Plan` out; a node result and its parent's
result in, a diagnosis (text + categories) out; the tree summary in, a list of insights out.
"""

from __future__ import annotations

import random
from typing import Protocol

from trex_ray.plan import Plan


class Researcher(Protocol):
    name: str

    def analyze(self, profile: dict, baseline: dict) -> dict:
        """Requirement analysis: a brief (objective, metric, risks, starting settings)."""
        ...

    def propose(self, brief: dict, context: dict, rng: random.Random) -> Plan:
        """A new plan refining `context['parent']`, not repeating any signature in `context['tried']`."""
        ...

    def diagnose(self, result: dict, parent: dict | None) -> dict:
        """Bad-case analysis of a finished node: {'text': ..., 'categories': {...}}."""
        ...

    def distill(self, nodes: list[dict]) -> list[str]:
        """Insights from the finished nodes so far: what helped, what hurt."""
        ...


def make_researcher(name: str) -> Researcher:
    from trex_ray.errors import ConfigError

    if name == "heuristic":
        from trex_ray.researcher.heuristic import HeuristicResearcher

        return HeuristicResearcher()
    raise ConfigError("researcher", f"unknown researcher {name!r}", "use 'heuristic' (LLM researchers come later)")
