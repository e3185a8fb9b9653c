"""The `anthropic` backend: Claude through the official `anthropic` SDK (Messages API).

- Tool use: the neutral tool specs become Messages API tools; `tool_use` blocks come back as tool calls,
  tool results go back as `tool_result` blocks in a user turn.
- Prompt caching: the stable prefix (tool definitions and the system prompt) carries a `cache_control`
  breakpoint, so repeated calls of one role pay for it once.
- Retries: the SDK retries 408/409/429/5xx and overload (529) with exponential backoff, `max_retries` times.
- Accounting: input, output, cache-read and cache-write tokens and their $ go into `usage`.
The key is read from the environment variable the spec names (ANTHROPIC_API_KEY by default) when the
client is built; it is never stored anywhere else.
"""

from __future__ import annotations

import json
import os

from trex_ray.errors import ConfigError
from trex_ray.llm.base import LLMSpec, Reply, ToolCall, add_usage, chat_one_by_one, new_usage


def _client(spec: LLMSpec):
    try:
        import anthropic
    except ImportError:
        raise ConfigError("researcher", "the anthropic backend needs the `anthropic` package",
                          "pip install 'trex-ray[anthropic]'") from None
    key = os.environ.get(spec.key_env)
    if not key:
        raise ConfigError("researcher", f"the anthropic backend needs an API key in ${spec.key_env}",
                          f"export {spec.key_env}=... (or use researcher: heuristic)")
    kw = {"base_url": spec.base_url} if spec.base_url else {}
    return anthropic.Anthropic(api_key=key, max_retries=spec.max_retries, timeout=spec.timeout_s, **kw)


def to_wire(messages: list[dict]) -> list[dict]:
    """Neutral messages -> Messages API turns (consecutive tool results share one user turn)."""
    out: list[dict] = []
    for m in messages:
        if m["role"] == "tool":
            block = {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": m["content"]}
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            blocks = [{"type": "text", "text": m["content"]}] if m.get("content") else []
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]}
                       for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


class AnthropicLLM:
    def __init__(self, spec: LLMSpec):
        self.spec = spec
        self.name = f"anthropic:{spec.model_name}"
        self.client = _client(spec)
        self.usage = new_usage()

    def complete(self, system, messages, *, tools=(), max_tokens=2048, json_schema=None):
        wire_tools = [{"name": t.name, "description": t.description, "input_schema": t.schema} for t in tools]
        if wire_tools:  # the breakpoint after the last tool caches tools + system together
            wire_tools[-1]["cache_control"] = {"type": "ephemeral"}
        if json_schema is not None:
            system = f"{system}\n\nReply with one JSON object that matches this JSON schema:\n{json.dumps(json_schema)}"
        kw = {"tools": wire_tools} if wire_tools else {}
        resp = self.client.messages.create(
            model=self.spec.model_name, max_tokens=max_tokens,
            system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            messages=to_wire(messages), **kw,
        )
        text = "".join(b.text for b in resp.content if b.type == "text")
        calls = [ToolCall(b.id, b.name, dict(b.input or {})) for b in resp.content if b.type == "tool_use"]
        u = resp.usage
        usage = add_usage(self.usage, self.spec, input_tokens=u.input_tokens or 0, output_tokens=u.output_tokens or 0,
                          cache_read_tokens=getattr(u, "cache_read_input_tokens", 0) or 0,
                          cache_write_tokens=getattr(u, "cache_creation_input_tokens", 0) or 0)
        stop = {"tool_use": "tool_use", "max_tokens": "max_tokens"}.get(resp.stop_reason or "", "end")
        return Reply(text=text, tool_calls=calls, stop=stop, usage=usage)

    def chat(self, conversations, *, max_tokens, temperature=0.0, seed=0):
        return chat_one_by_one(self, conversations, max_tokens=max_tokens)
