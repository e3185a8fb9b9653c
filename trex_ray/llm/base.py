"""The LLM backend interface.

Two ways to use a backend, both counting tokens and dollars in `usage`:
- `chat(conversations, ...)`: many plain conversations at once (data ops: synthesise, rewrite, judge).
- `complete(system, messages, tools=..., json_schema=...)`: one agent turn, which may call tools (the
  Researcher). Messages use one neutral layout that each backend converts to its wire format:
  `{"role": "user", "content": str}`, `{"role": "assistant", "content": str, "tool_calls": [...]}`,
  `{"role": "tool", "tool_call_id": str, "name": str, "content": str}`.

Which backend and model is plain data (`LLMSpec`), so a spec can travel to Ray workers and be part of a
cache key; the backend itself is built where it runs (`make_llm`). API keys are never part of a spec:
a spec names the environment variable that holds the key.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field

# $ per million tokens (input, output) when the spec does not set prices; cache reads cost 10% of input,
# cache writes 125% (Anthropic's published multipliers)
DEFAULT_PRICES = {"anthropic": (3.0, 15.0), "openai": (0.0, 0.0), "local": (0.0, 0.0)}
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "default", "local": "smollm2-135m"}
KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "local": ""}


class LLMSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["local", "anthropic", "openai"] = Field(
        "local", description="local (this machine, offline), anthropic (Messages API), openai (any "
        "OpenAI-compatible chat-completions server).")
    model: str | None = Field(None, description="Model name; local: packaged name, checkpoint dir or HF id.")
    engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="Generation engine of the local backend: transformers (in process) or vllm (a "
        "Ray actor; JSON replies constrained to the schema).")
    max_model_len: int | None = Field(None, ge=64, le=1_000_000, description="Prompt + reply token limit (local; "
                                      "default: the model's, at most 8192); longer prompts keep their end.")
    max_tokens: int | None = Field(None, ge=16, le=100_000, description="Reply token limit of the Researcher's turns "
                                   "(default 2048).")
    batch_size: int = Field(16, ge=1, le=1024, description="Conversations generated together (local).")
    base_url: str | None = Field(None, description="Server URL (openai: required unless OPENAI_BASE_URL is set; "
                                 "anthropic: optional).")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the API key.")
    max_retries: int = Field(4, ge=0, le=20, description="Retries with backoff on 429, 5xx and overload.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    price_in: float | None = Field(None, ge=0, description="$ per million input tokens (for the LLM budget).")
    price_out: float | None = Field(None, ge=0, description="$ per million output tokens.")

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODELS[self.backend]

    @property
    def key_env(self) -> str:
        return self.api_key_env or KEY_ENV[self.backend]

    def key(self) -> str:
        """What the backend's outputs depend on, for cache keys."""
        return f"{self.backend}:{self.model_name}:{self.engine}"

    def cost(self, usage: dict) -> float:
        pin, pout = DEFAULT_PRICES[self.backend]
        pin = self.price_in if self.price_in is not None else pin
        pout = self.price_out if self.price_out is not None else pout
        billed_in = (usage.get("input_tokens", 0) + 0.1 * usage.get("cache_read_tokens", 0)
                     + 1.25 * usage.get("cache_write_tokens", 0))
        return (billed_in * pin + usage.get("output_tokens", 0) * pout) / 1e6


@dataclass
class ToolCall:
    id: str
    name: str
    args: dict


@dataclass
class Reply:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop: str = "end"  # end | tool_use | max_tokens
    usage: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    schema: dict  # JSON schema of the arguments


def new_usage() -> dict:
    return {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
            "usd": 0.0}


_USAGE_LOCK = threading.Lock()  # a backend may be called from several threads (the search's researcher)


def add_usage(total: dict, spec: LLMSpec, calls: int = 1, **tokens: int) -> dict:
    """Add one request's tokens (and their $) to a running total; returns the request's own usage."""
    one = {**new_usage(), "calls": calls, **tokens}
    one["usd"] = spec.cost(one)
    with _USAGE_LOCK:
        for k, v in one.items():
            total[k] = total.get(k, 0) + v
    return one


def chat_one_by_one(llm, conversations: Sequence[list[dict]], **kw) -> list[str]:
    """`chat` for request/response backends: each conversation as one `complete` call, its system
    messages joined into the system prompt."""
    out = []
    for conv in conversations:
        system = "\n".join(m["content"] for m in conv if m["role"] == "system")
        out.append(llm.complete(system, [m for m in conv if m["role"] != "system"], **kw).text)
    return out


class LLM(Protocol):
    name: str
    usage: dict  # cumulative, see new_usage()

    def chat(self, conversations: Sequence[list[dict]], *, max_tokens: int, temperature: float = 0.0,
             seed: int = 0) -> list[str]:
        """One completion per conversation, in order; `temperature` 0 is greedy, sampling is seeded."""
        ...

    def complete(self, system: str, messages: list[dict], *, tools: Sequence[Tool] = (), max_tokens: int = 2048,
                 json_schema: dict | None = None) -> Reply:
        """One turn of an agent conversation; `json_schema` asks for JSON output where the server supports it."""
        ...

