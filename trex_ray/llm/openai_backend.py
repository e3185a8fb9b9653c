"""The `openai` backend: any OpenAI-compatible chat-completions server (vLLM's server, Ollama, hosted
APIs) through the official `openai` SDK, by base URL.

- Tool use: function tools; `tool_calls` come back as tool calls, results go back as `tool` messages.
- Structured output: when the caller gives a JSON schema and no tools, `response_format` asks for
  `json_schema` output; a server that rejects it (400) is asked again without it, once, and remembered.
- Retries: the SDK retries 408/409/429/5xx with exponential backoff, `max_retries` times.
The key comes from the environment variable the spec names (OPENAI_API_KEY by default); local servers
that need none get a placeholder.
"""

from __future__ import annotations

import json
import os

from trex_ray.errors import ConfigError
from trex_ray.llm.base import LLMSpec, Reply, ToolCall, add_usage, chat_one_by_one, new_usage


def _client(spec: LLMSpec):
    try:
        import openai
    except ImportError:
        raise ConfigError("researcher", "the openai backend needs the `openai` package",
                          "pip install 'trex-ray[openai]'") from None
    base = spec.base_url or os.environ.get("OPENAI_BASE_URL")
    if not base:
        raise ConfigError("researcher_llm.base_url", "the openai backend needs the server's URL",
                          "set base_url (e.g. http://localhost:8000/v1) or OPENAI_BASE_URL")
    return openai.OpenAI(api_key=os.environ.get(spec.key_env) or "not-needed", base_url=base,
                         max_retries=spec.max_retries, timeout=spec.timeout_s)


def to_wire(system: str, messages: list[dict]) -> list[dict]:
    out: list[dict] = [{"role": "system", "content": system}]
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m["content"]})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            out.append({"role": "assistant", "content": m.get("content") or None, "tool_calls": [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["args"])}} for c in m["tool_calls"]]})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


class OpenAILLM:
    def __init__(self, spec: LLMSpec):
        self.spec = spec
        self.name = f"openai:{spec.model_name}"
        self.client = _client(spec)
        self.usage = new_usage()
        self.structured = True  # set false once the server refuses response_format

    def complete(self, system, messages, *, tools=(), max_tokens=2048, json_schema=None, temperature=0.0):
        import openai

        kw: dict = {}
        if tools:
            kw["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                             "parameters": t.schema}} for t in tools]
        if json_schema is not None:
            system = f"{system}\n\nReply with one JSON object that matches this JSON schema:\n{json.dumps(json_schema)}"
            if not tools and self.structured:
                kw["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "reply", "schema": json_schema}}
        wire = to_wire(system, messages)
        try:
            resp = self.client.chat.completions.create(model=self.spec.model_name, messages=wire,
                                                       max_tokens=max_tokens, temperature=temperature, **kw)
        except openai.BadRequestError:
            if "response_format" not in kw:
                raise
            self.structured = False
            kw.pop("response_format")
            resp = self.client.chat.completions.create(model=self.spec.model_name, messages=wire,
                                                       max_tokens=max_tokens, temperature=temperature, **kw)
        choice = resp.choices[0]
        msg = choice.message
        calls = []
        for c in msg.tool_calls or []:
            try:
                args = json.loads(c.function.arguments or "{}")
            except json.JSONDecodeError:
                args = {"_unparsed": c.function.arguments}
            calls.append(ToolCall(c.id, c.function.name, args if isinstance(args, dict) else {"value": args}))
        u = resp.usage
        usage = add_usage(self.usage, self.spec, input_tokens=getattr(u, "prompt_tokens", 0) or 0,
                          output_tokens=getattr(u, "completion_tokens", 0) or 0)
        stop = {"tool_calls": "tool_use", "length": "max_tokens"}.get(choice.finish_reason or "", "end")
        return Reply(text=msg.content or "", tool_calls=calls, stop=stop, usage=usage)

    def chat(self, conversations, *, max_tokens, temperature=0.0, seed=0):
        return chat_one_by_one(self, conversations, max_tokens=max_tokens, temperature=temperature)
