"""LLM backends: one interface (`LLM.chat`) shared by the Researcher and the data ops that generate or
judge text. `make_llm(LLMSpec)` builds one; `local` runs a model on this machine through the evaluation
engine, so everything that needs an LLM also works offline.
"""

from __future__ import annotations

from typing import Any

from trex_ray.llm.base import LLM, LLMSpec

__all__ = ["LLM", "LLMSpec", "make_llm"]


def make_llm(spec: LLMSpec | dict[str, Any]) -> LLM:
    """The backend a spec names, built here (where it runs): specs travel as plain data."""
    spec = LLMSpec.model_validate(spec)
    if spec.backend == "local":
        from trex_ray.llm.local import LocalLLM

        return LocalLLM(spec)
    if spec.backend == "anthropic":
        from trex_ray.llm.anthropic_backend import AnthropicLLM

        return AnthropicLLM(spec)
    from trex_ray.llm.openai_backend import OpenAILLM

    return OpenAILLM(spec)
