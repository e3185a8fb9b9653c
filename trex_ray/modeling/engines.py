"""Inference engines: one interface, two implementations.

An engine holds one base model, loaded once, and serves many requests against it; a request may name a
LoRA adapter (a PEFT folder), applied for that request only. Both engines render conversations with the
same chat template and tokenise them the same way (no added special tokens, prompts cut from the left to
fit), so their inputs are identical token for token and their greedy outputs can be compared.

- `VLLMEngine`: a `vllm.LLM` with LoRA enabled; adapters are hot-loaded per request (`LoRARequest`),
  and requests from concurrent callers are merged into one `generate` call (see `_Batcher`).
- `HFEngine`: transformers + PEFT; batched, left-padded generation; an adapter is attached for the
  request and detached after it (no merge, so the base weights stay untouched).

Both also score options by log-likelihood (`loglik`): the sum of the log-probabilities of each option's
tokens after the prompt, for multiple-choice tasks where generating free text is the wrong tool.

Engines are plain classes; `trex_ray.executor.eval_service` runs them as Ray actors.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trex_ray import prompting
from trex_ray.models import remote_code

EVALUATORS = ("auto", "vllm", "transformers")


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken torch means no GPU for us
        return False


LORA_RANKS = (8, 16, 32, 64, 128, 256, 512)  # the max_lora_rank values vLLM accepts


class EngineOptions(BaseModel):
    """Settings of the vLLM evaluation engines (`eval_options`); unset ones take vLLM's or our defaults."""

    model_config = ConfigDict(extra="forbid")

    replicas: int | None = Field(None, ge=1, description="Engines serving the base model (one GPU, or "
                                 "tensor_parallel_size GPUs, each).")
    max_engines: int | None = Field(None, ge=1, description="Full fine-tunes with an engine of their own at once "
                                    "(least recently used stopped first).")
    max_model_len: int | None = Field(None, ge=1, description="Prompt + answer token limit of an engine.")
    tensor_parallel_size: int | None = Field(None, ge=1, description="GPUs per engine.")
    max_loras: int | None = Field(None, ge=1, description="Adapters an engine holds at once.")
    max_lora_rank: int | None = Field(None, description=f"Largest LoRA rank an engine accepts: one of {LORA_RANKS}.")
    dtype: str | None = Field(None, description="Weights' dtype, e.g. bfloat16.")
    kv_cache_gb: float | None = Field(None, gt=0, description="KV cache size on CPU engines, in GB (default 1; "
                                      "VLLM_CPU_KVCACHE_SPACE in the environment wins).")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="Share of a GPU's memory an "
                                                 "engine may take, e.g. 0.85.")

    @field_validator("max_lora_rank")
    @classmethod
    def _rank(cls, v: int | None) -> int | None:
        if v is not None and v not in LORA_RANKS:
            raise ValueError(f"vLLM accepts no rank {v}; use one of {LORA_RANKS}")
        return v

    def as_kwargs(self) -> dict:
        return self.model_dump(exclude_none=True)


@dataclass
class Generation:
    texts: list[str]
    input_tokens: int = 0
    output_tokens: int = 0
    backend: str = ""
    extra: dict = field(default_factory=dict)
    cut: list[bool] = field(default_factory=list)  # per text: stopped by max_new_tokens, not by EOS


def context_limit(model_path: str, requested: int | None, cap: int = 8192) -> int:
    """The prompt + reply token limit: as requested, else the model's own (capped: the KV cache is sized
    for it)."""
    if requested:
        return int(requested)
    import json

    try:
        with open(os.path.join(model_path, "config.json")) as f:
            own = json.load(f).get("max_position_embeddings") or cap
    except OSError:
        own = cap
    return int(min(own, cap))


class _Encoder:
    """Chat rendering + tokenisation shared by both engines."""

    def __init__(self, model_path: str, max_len: int | None):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_path, **remote_code())
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.max_len = context_limit(model_path, max_len)

    def encode(self, conversations: Sequence[list[dict]], room: int) -> list[list[int]]:
        """Token ids of each rendered conversation, keeping the last `max_len - room` tokens."""
        keep = max(1, self.max_len - room)
        out = []
        for msgs in conversations:
            ids = self.tok(prompting.render_messages(self.tok, msgs), add_special_tokens=False)["input_ids"]
            out.append(ids[-keep:])
        return out

    def option_ids(self, option: str) -> list[int]:
        ids = self.tok(option, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError("an empty option cannot be scored by likelihood")
        return ids


class HFEngine:
    """transformers + PEFT. fp32 on CPU, bf16 on GPU (as the trainer)."""

    backend = "transformers"

    def __init__(self, model_path: str, *, max_model_len: int | None = None, threads: int | None = None,
                 dtype: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        from trex_ray.modeling import shipping
        from trex_ray.models import local_model

        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(max(1, int(threads)))
        model_path = local_model(shipping.local(model_path))
        self.model_path = model_path
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        default = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.dtype = getattr(torch, dtype) if dtype else default
        self.enc = _Encoder(model_path, max_model_len)
        self.base = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype, **remote_code()).to(
            self.device).eval()
        self.adapter_loads = 0

    @classmethod
    def around(cls, model, model_path: str, max_model_len: int | None = None) -> "HFEngine":
        """An engine over a model already in memory (a training worker's, adapter attached): the same
        rendering, tokenisation and greedy decoding as a loaded one, without a copy."""
        engine = cls.__new__(cls)
        engine.model_path = model_path
        engine.device = str(next(model.parameters()).device)
        engine.dtype = next(model.parameters()).dtype
        engine.enc = _Encoder(model_path, max_model_len)
        engine.base = model
        engine.adapter_loads = 0
        return engine

    def _with_adapter(self, adapter: str | None):
        """The model to run for a request: the base, or the base wrapped with the adapter (a context)."""
        engine = self

        class _Ctx:
            def __enter__(self):
                if not adapter:
                    return engine.base
                from peft import PeftModel

                from trex_ray.modeling import shipping

                engine.adapter_loads += 1
                self.peft = PeftModel.from_pretrained(engine.base, shipping.local(adapter), is_trainable=False)
                self.peft.to(engine.device).eval()
                return self.peft

            def __exit__(self, *exc):
                if adapter:
                    engine.base = self.peft.unload()  # the LoRA layers out again, weights unmerged
                return False

        return _Ctx()

    def generate(self, conversations: Sequence[list[dict]], adapter: str | None = None, *, max_new_tokens: int,
                 temperature: float = 0.0, seed: int = 0, batch_size: int = 16,
                 json_schema: dict | None = None) -> Generation:
        import torch

        tok = self.enc.tok
        ids = self.enc.encode(conversations, max_new_tokens)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        texts = [""] * len(ids)
        cut = [False] * len(ids)
        tin = tout = 0
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {
            "do_sample": False}
        with self._with_adapter(adapter) as model, torch.inference_mode():
            for b, start in enumerate(range(0, len(order), batch_size)):
                idx = order[start : start + batch_size]
                width = max(len(ids[i]) for i in idx)
                input_ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):  # left padding
                    input_ids[row, width - len(ids[i]):] = torch.tensor(ids[i])
                    mask[row, width - len(ids[i]):] = 1
                if temperature > 0:
                    torch.manual_seed(seed * 100003 + b)
                gen = model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                     max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id, **sampling)
                new = gen[:, width:]
                tin += int(mask.sum())
                for row, i in enumerate(idx):
                    seq = new[row].tolist()
                    n = _until_stop(seq, tok.eos_token_id, tok.pad_token_id)
                    tout += n
                    texts[i] = tok.decode(seq[:n], skip_special_tokens=True).strip()
                    cut[i] = n == max_new_tokens and seq[n - 1] != tok.eos_token_id
        return Generation(texts, tin, tout, self.backend, cut=cut)

    def loglik(self, conversations: Sequence[list[dict]], options: Sequence[Sequence[str]],
               adapter: str | None = None, *, batch_size: int = 16) -> list[list[float]]:
        """Per conversation, the summed log-probability of each option as the answer."""
        import torch

        longest = max((len(self.enc.option_ids(o)) for opts in options for o in opts), default=1)
        prompts = self.enc.encode(conversations, longest)
        seqs = [(ci, oi, p, self.enc.option_ids(o)) for ci, (p, opts) in enumerate(zip(prompts, options))
                for oi, o in enumerate(opts)]
        out = [[0.0] * len(opts) for opts in options]
        pad = self.enc.tok.pad_token_id
        with self._with_adapter(adapter) as model, torch.inference_mode():
            for start in range(0, len(seqs), batch_size):
                chunk = seqs[start : start + batch_size]
                width = max(len(p) + len(o) for _, _, p, o in chunk)
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros_like(input_ids)
                for row, (_, _, p, o) in enumerate(chunk):  # right padding: positions stay aligned
                    input_ids[row, : len(p) + len(o)] = torch.tensor(p + o)
                    mask[row, : len(p) + len(o)] = 1
                logits = model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
                logp = torch.log_softmax(logits.float(), dim=-1).cpu()
                for row, (ci, oi, p, o) in enumerate(chunk):
                    pos = torch.arange(len(p) - 1, len(p) + len(o) - 1)
                    out[ci][oi] = float(logp[row, pos, torch.tensor(o)].sum())
        return out

    def stats(self) -> dict:
        return {"backend": self.backend, "adapter_loads": self.adapter_loads}


def _until_stop(seq: list[int], eos: int | None, pad: int | None) -> int:
    """Generated tokens up to and including the first EOS (padding after an early stop is not output)."""
    for n, t in enumerate(seq):
        if t == eos:
            return n + 1
        if t == pad:
            return n
    return len(seq)


class _Batcher:
    """Merges requests from concurrent callers into one engine call.

    A caller adds its items; if no batch is running it becomes the leader and runs batches until the
    queue is empty, handing every caller its slice; otherwise it waits for a leader to serve it.
    """

    def __init__(self, run):
        self._run = run  # list of items -> list of results, same order
        self._lock = threading.Lock()
        self._pending: list[tuple[list, dict]] = []
        self._running = False
        self.batches = 0
        self.requests = 0

    def submit(self, items: list):
        slot = {"done": threading.Event()}
        with self._lock:
            self._pending.append((items, slot))
            self.requests += 1
            lead = not self._running
            if lead:
                self._running = True
        if lead:
            self._lead()
        slot["done"].wait()
        if "error" in slot:
            raise slot["error"]
        return slot["result"]

    def _lead(self):
        while True:
            with self._lock:
                if not self._pending:
                    self._running = False
                    return
                batch, self._pending = self._pending, []
            self.batches += 1
            flat = [it for items, _ in batch for it in items]
            try:
                results = self._run(flat)
            except Exception as e:  # noqa: BLE001
                if len(batch) == 1:
                    batch[0][1]["error"] = e
                    batch[0][1]["done"].set()
                else:  # one caller's bad request must not fail the others: rerun each caller apart
                    for items, slot in batch:
                        self._serve_alone(items, slot)
                continue
            at = 0
            for items, slot in batch:
                slot["result"] = results[at : at + len(items)]
                at += len(items)
                slot["done"].set()

    def _serve_alone(self, items, slot):
        try:
            slot["result"] = self._run(items)
        except Exception as e:  # noqa: BLE001 - the caller gets its own error
            slot["error"] = e
        slot["done"].set()


class VLLMEngine:
    """A `vllm.LLM` with LoRA enabled. On CPU (vllm-cpu) it runs eagerly with a small KV cache."""

    backend = "vllm"

    def __init__(self, model_path: str, *, max_model_len: int | None = None, enable_lora: bool = True, max_loras: int = 4,
                 max_lora_rank: int = 64, dtype: str | None = None, tensor_parallel_size: int = 1,
                 kv_cache_gb: float = 1.0, gpu_memory_utilization: float = 0.85, seed: int = 0):
        from trex_ray.modeling import shipping
        from trex_ray.models import local_model

        model_path = local_model(shipping.local(model_path))
        gpu = cuda_available()
        if not gpu:
            # the engine core in this process (the actor is the engine's own): a spawned core process
            # re-imports torch and vLLM; an engine started in 17 s here where in-process took 3.4 s
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # compute threads on every core this process may use: vLLM's automatic binding keeps one core
            # back, and a Ray actor inherits OMP_NUM_THREADS=1
            cores = sorted(os.sched_getaffinity(0))
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))
            os.environ["OMP_NUM_THREADS"] = str(len(cores))
        from vllm import LLM

        self.model_path = model_path
        self.enc = _Encoder(model_path, max_model_len)
        kw = dict(model=model_path, max_model_len=self.enc.max_len, seed=seed, tensor_parallel_size=tensor_parallel_size,
                  dtype=dtype or ("bfloat16" if gpu else "float32"))
        kw.update(remote_code())
        if enable_lora:
            kw.update(enable_lora=True, max_loras=max_loras, max_lora_rank=max_lora_rank)
        if gpu:
            kw["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            kw["enforce_eager"] = True
            if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:  # the user's environment decides where it says
                # 1 GB holds ~20k tokens of a 135M model: dozens of evaluation prompts at once. A larger
                # cache costs start-up time: with another engine alive, a 2 GB one took 8-11 s to start
                # here where 1 GB took 3.6 s (first-touch of the pages)
                kw["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
        self.llm = LLM(**kw)
        self.gpu = gpu
        self.enable_lora = enable_lora
        self._lora_ids: dict[str, int] = {}
        self._lora_lock = threading.Lock()
        self._batcher = _Batcher(self._run)

    def _lora(self, adapter: str | None):
        if not adapter:
            return None
        if not self.enable_lora:
            raise ValueError("this engine was started without LoRA; it cannot serve adapters")
        from vllm.lora.request import LoRARequest

        from trex_ray.modeling import shipping

        path = os.path.abspath(shipping.local(adapter))
        with self._lora_lock:  # callers arrive on the actor's threads
            if path not in self._lora_ids:
                self._lora_ids[path] = len(self._lora_ids) + 1
        return LoRARequest(f"a{self._lora_ids[path]}", self._lora_ids[path], path)

    def _run(self, items: list) -> list:
        """One engine call for the batch; prompt-logprob requests with an adapter on CPU go one by one
        (vllm-cpu 0.32 fails on several of them in one step: a shape error in its LoRA logits op)."""
        from vllm.inputs import TokensPrompt

        def call(chunk):
            return self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids, _, _ in chunk],
                                     [sp for _, sp, _ in chunk], lora_request=[lr for _, _, lr in chunk],
                                     use_tqdm=False)

        solo = [not self.gpu and lr is not None and sp.prompt_logprobs is not None for _, sp, lr in items]
        outs: list = [None] * len(items)
        rest = [i for i, s in enumerate(solo) if not s]
        if rest:
            for i, o in zip(rest, call([items[i] for i in rest])):
                outs[i] = o
        for i in (i for i, s in enumerate(solo) if s):
            outs[i] = call([items[i]])[0]
        return outs

    def generate(self, conversations: Sequence[list[dict]], adapter: str | None = None, *, max_new_tokens: int,
                 temperature: float = 0.0, seed: int = 0, batch_size: int = 16,
                 json_schema: dict | None = None) -> Generation:
        from vllm import SamplingParams

        kw = {}
        if json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kw["structured_outputs"] = StructuredOutputsParams(json=json_schema, disable_any_whitespace=True)
        sampling = {"temperature": temperature, "top_p": 0.95, "seed": seed} if temperature > 0 else {
            "temperature": 0.0}
        sp = SamplingParams(max_tokens=max_new_tokens, **sampling, **kw)
        ids = self.enc.encode(conversations, max_new_tokens)
        lora = self._lora(adapter)
        outs = self._batcher.submit([(p, sp, lora) for p in ids])
        texts = [o.outputs[0].text.strip() for o in outs]
        tout = sum(len(o.outputs[0].token_ids) for o in outs)
        return Generation(texts, sum(len(p) for p in ids), tout, self.backend,
                          cut=[o.outputs[0].finish_reason == "length" for o in outs])

    def loglik(self, conversations: Sequence[list[dict]], options: Sequence[Sequence[str]],
               adapter: str | None = None, *, batch_size: int = 16) -> list[list[float]]:
        from vllm import SamplingParams

        longest = max((len(self.enc.option_ids(o)) for opts in options for o in opts), default=1)
        prompts = self.enc.encode(conversations, longest)
        sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        lora = self._lora(adapter)
        seqs = [(ci, oi, p, self.enc.option_ids(o)) for ci, (p, opts) in enumerate(zip(prompts, options))
                for oi, o in enumerate(opts)]
        outs = self._batcher.submit([(p + o, sp, lora) for _, _, p, o in seqs])
        res = [[0.0] * len(opts) for opts in options]
        for (ci, oi, p, o), out in zip(seqs, outs):
            lps = out.prompt_logprobs  # one entry per prompt position (None for the first)
            res[ci][oi] = float(sum(lps[len(p) + k][t].logprob for k, t in enumerate(o)))
        return res

    def stats(self) -> dict:
        return {"backend": self.backend, "adapters": len(self._lora_ids), "batches": self._batcher.batches,
                "requests": self._batcher.requests}


ENGINES = {"vllm": VLLMEngine, "transformers": HFEngine}
