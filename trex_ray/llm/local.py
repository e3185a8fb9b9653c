"""The `local` backend: a model on this machine, generating through the evaluation engine
(`trex_ray.executor.evaluate.Generator`), loaded once per backend object. It has no tool use: an agent
turn is a plain generation (the Researcher then asks for JSON in the prompt)."""

from __future__ import annotations

from trex_ray.llm.base import LLMSpec, Reply, add_usage, new_usage


class LocalLLM:
    def __init__(self, spec: LLMSpec):
        from trex_ray.executor.evaluate import Generator
        from trex_ray.models import resolve_model

        self.spec = spec
        self.name = f"local:{spec.model_name}"
        self.generator = Generator(resolve_model(spec.model_name))
        self.usage = new_usage()

    def chat(self, conversations, *, max_tokens, temperature=0.0, seed=0):
        texts = [self.generator.render(msgs) for msgs in conversations]
        out, tin, tout = self.generator.generate(texts, max_new_tokens=max_tokens, batch_size=self.spec.batch_size,
                                                 temperature=temperature, seed=seed)
        add_usage(self.usage, self.spec, calls=len(conversations), input_tokens=tin, output_tokens=tout)
        return out

    def complete(self, system, messages, *, tools=(), max_tokens=2048, json_schema=None):
        msgs = [{"role": "system", "content": system}]
        for m in messages:  # tool results become user turns: a local model has no tool protocol
            role = "user" if m["role"] == "tool" else m["role"]
            msgs.append({"role": role, "content": m["content"]})
        text, tin, tout = self.generator.generate([self.generator.render(msgs)], max_new_tokens=max_tokens,
                                                  batch_size=1)
        return Reply(text=text[0], usage=add_usage(self.usage, self.spec, input_tokens=tin, output_tokens=tout))
