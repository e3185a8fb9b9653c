"""The LLM backend interface.

A backend turns conversations (lists of `{"role", "content"}` messages) into completions, in batches,
and counts the tokens it used. Which backend and model is plain data (`LLMSpec`), so a spec can travel
inside a recipe's context to Ray workers and be part of a cache key; the backend itself is built where
it runs (`make_llm`).
"""

from __future__ import annotations

from typing import Literal, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field


class LLMSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["local"] = Field("local", description="Where the model runs: `local` (this machine, offline).")
    model: str = Field("smollm2-135m", description="Packaged model name, local checkpoint directory or HF id.")
    engine: Literal["transformers"] = Field("transformers", description="Generation engine of the local backend.")
    batch_size: int = Field(16, ge=1, le=1024, description="Conversations generated together.")

    def key(self) -> str:
        """What the backend's outputs depend on, for cache keys."""
        return f"{self.backend}:{self.model}:{self.engine}"


class LLM(Protocol):
    name: str
    usage: dict  # {"calls", "input_tokens", "output_tokens"}, cumulative

    def chat(self, conversations: Sequence[list[dict]], *, max_tokens: int, temperature: float = 0.0,
             seed: int = 0) -> list[str]:
        """One completion per conversation, in order; `temperature` 0 is greedy, sampling is seeded."""
        ...


def make_llm(spec: LLMSpec) -> LLM:
    if spec.backend == "local":
        from trex_ray.llm.local import LocalLLM

        return LocalLLM(spec)
    raise ValueError(f"unknown LLM backend {spec.backend!r}")  # unreachable: LLMSpec validates it
