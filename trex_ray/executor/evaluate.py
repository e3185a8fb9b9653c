"""Evaluation: generate answers for a split and score them.

`Evaluator` is the interface (a later backend serves it from vLLM actors); `TransformersEvaluator`
is the reference: base model + optional PEFT adapter, batched left-padded greedy generation.
`evaluate_rows` adds the metric, per-example details and a sample of bad cases.
"""

from __future__ import annotations

import time
from typing import Protocol, Sequence

from trex_ray import prompting
from trex_ray.metrics import score_all


class Evaluator(Protocol):
    name: str

    def generate(
        self, model_path: str, adapter_path: str | None, prompts: Sequence[tuple[str, str | None]],
        max_new_tokens: int, batch_size: int,
    ) -> list[str]:
        """Greedy completions for (user message, system prompt) pairs, in order."""
        ...


def torch_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(max(1, int(n)))


def load_model(model_path: str, adapter_path: str | None, for_training: bool = False):
    """(model, tokenizer) on the best device: bf16 on GPU, fp32 on CPU; the adapter merged in for eval."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path, is_trainable=for_training)
        if not for_training:
            model = model.merge_and_unload()
    return model, tok


class Generator:
    """A model loaded once (base + optional adapter) that completes rendered prompts in batches:
    greedy, or seeded sampling. Shared by evaluation and the local LLM backend."""

    def __init__(self, model_path: str, adapter_path: str | None = None):
        self.model, self.tok = load_model(model_path, adapter_path)
        self.model.eval()
        self.tok.padding_side = "left"

    def render(self, msgs: list[dict]) -> str:
        return prompting.render_messages(self.tok, msgs)

    def generate(self, texts: Sequence[str], *, max_new_tokens: int, batch_size: int, temperature: float = 0.0,
                 seed: int = 0) -> tuple[list[str], int, int]:
        """(completions in order, prompt tokens, generated tokens)."""
        import torch

        tok, model = self.tok, self.model
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[str] = [""] * len(texts)
        tin = tout = 0
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {
            "do_sample": False}
        with torch.inference_mode():
            for b, start in enumerate(range(0, len(order), batch_size)):
                idx = order[start : start + batch_size]
                enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = enc.to(model.device)
                if temperature > 0:
                    torch.manual_seed(seed * 100003 + b)
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id, **sampling)
                new = gen[:, enc["input_ids"].shape[1] :]
                tin += int(enc["attention_mask"].sum())
                tout += int((new != tok.pad_token_id).sum())  # padding after an early stop is not output
                for i, seq in zip(idx, new):
                    out[i] = tok.decode(seq, skip_special_tokens=True).strip()
        return out, tin, tout


class TransformersEvaluator:
    name = "transformers"

    def generate(self, model_path, adapter_path, prompts, max_new_tokens, batch_size):
        gen = Generator(model_path, adapter_path)
        texts = [prompting.render(gen.tok, user, system) for user, system in prompts]
        return gen.generate(texts, max_new_tokens=max_new_tokens, batch_size=batch_size)[0]


EVALUATORS = {"transformers": TransformersEvaluator}


def evaluate_rows(
    evaluator: Evaluator, model_path: str, adapter_path: str | None, rows: list[dict], *, template: str,
    system: str | None, metric: str, labels: list[str] | None, max_new_tokens: int, batch_size: int,
    num_bad_cases: int,
) -> dict:
    t0 = time.time()
    prompts = [(template.replace("{input}", r["input"]), system) for r in rows]
    preds = evaluator.generate(model_path, adapter_path, prompts, max_new_tokens, batch_size)
    scores = score_all(metric, preds, [r["output"] for r in rows], labels)
    bad = [
        {"input": r["input"], "expected": r["output"], "got": p}
        for r, p, s in zip(rows, preds, scores) if s < 1.0
    ]
    return {
        "score": sum(scores) / len(scores),
        "metric": metric,
        "n": len(rows),
        "backend": evaluator.name,
        "seconds": round(time.time() - t0, 2),
        "bad_cases": bad[:num_bad_cases],
        "num_bad": len(bad),
        "predictions": preds,
    }
