"""The `local` backend: a model on this machine, generating through the evaluation engine
(`trex_ray.executor.evaluate.Generator`), loaded once per backend object."""

from __future__ import annotations

from trex_ray.llm.base import LLMSpec


class LocalLLM:
    def __init__(self, spec: LLMSpec):
        from trex_ray.executor.evaluate import Generator
        from trex_ray.models import resolve_model

        self.spec = spec
        self.name = f"local:{spec.model}"
        self.generator = Generator(resolve_model(spec.model))
        self.usage = {"calls": 0, "input_tokens": 0, "output_tokens": 0}

    def chat(self, conversations, *, max_tokens, temperature=0.0, seed=0):
        texts = [self.generator.render(msgs) for msgs in conversations]
        out, tin, tout = self.generator.generate(texts, max_new_tokens=max_tokens, batch_size=self.spec.batch_size,
                                                 temperature=temperature, seed=seed)
        self.usage["calls"] += len(conversations)
        self.usage["input_tokens"] += tin
        self.usage["output_tokens"] += tout
        return out
