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


RESEARCHERS = ("heuristic", "auto", "anthropic", "openai", "vllm", "local")


def make_researcher(name: str, *, llm: dict | None = None, task=None, notes_dir: str | None = None,
                    data_dirs: tuple[str, ...] = (), hub: str = "off", papers: str = "off") -> Researcher:
    """`heuristic` (offline), an LLM researcher on `anthropic`, `openai` (any compatible server), a local
    model on `vllm` (a Ray actor, replies constrained to the JSON schemas) or `local` (transformers), or
    `auto`: anthropic when ANTHROPIC_API_KEY is set, else heuristic. `llm` holds the rest of the LLM spec
    (model, base_url, ...; see `trex_ray.llm.LLMSpec`)."""
    import os

    from pydantic import ValidationError

    from trex_ray.errors import ConfigError

    if name not in RESEARCHERS:
        raise ConfigError("researcher", f"unknown researcher {name!r}", f"use one of {', '.join(RESEARCHERS)}")
    if name == "auto":
        from trex_ray.llm.base import KEY_ENV

        name = "anthropic" if os.environ.get((llm or {}).get("api_key_env") or KEY_ENV["anthropic"]) else "heuristic"
    if name == "heuristic":
        from trex_ray.researcher.heuristic import HeuristicResearcher

        return HeuristicResearcher()
    from trex_ray.llm import LLMSpec, make_llm
    from trex_ray.researcher.llm import LLMResearcher
    from trex_ray.researcher.tools import ResearchTools

    try:
        fixed = {"backend": "local", "engine": "vllm"} if name == "vllm" else {"backend": name}
        spec = LLMSpec.model_validate({**(llm or {}), **fixed})
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError("researcher_llm." + ".".join(str(x) for x in err["loc"]), err["msg"],
                          f"fields: {', '.join(LLMSpec.model_fields)}") from None
    tools = ResearchTools(task=task, notes_dir=notes_dir, data_dirs=data_dirs, hub=hub, papers=papers)
    return LLMResearcher(make_llm(spec), tools=tools, max_tokens=spec.max_tokens or 2048)
