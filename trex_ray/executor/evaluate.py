"""Evaluation: generate (or score options for) a split and grade it.

`evaluate_rows` is what every evaluation in a run goes through: it builds the prompts exactly as training
rendered them, asks the run's evaluation backend (`trex_ray.executor.eval_service.Evaluation`: vLLM
engines or transformers) for greedy answers, or, with `scoring="loglik"`, for the log-likelihood of each
option (the task's labels or a row's own options) and takes the likeliest; then scores them with the
task's metric and keeps the failing examples for the Researcher.
"""

from __future__ import annotations

import time

from trex_ray import prompting
from trex_ray.metrics import score


def torch_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(max(1, int(n)))


def load_model(model_path: str, precision: str = "auto"):
    """(model, tokenizer) for training on the best device: bf16 on GPU and fp32 on CPU (`precision="auto"`),
    or the dtype `precision` names."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from trex_ray.models import local_model

    hf_logging.disable_progress_bar()
    model_path = local_model(model_path)  # a node other than the driver's materialises it itself
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(precision) or (
        torch.bfloat16 if device == "cuda" else torch.float32)
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
    return model, tok


def evaluate_rows(
    ev, model_path: str, adapter_path: str | None, rows: list[dict], *, template: str, system: str | None,
    metric: str, labels: list[str] | None, max_new_tokens: int, batch_size: int, num_bad_cases: int,
    scoring: str = "generate", judge=None, metric_options: dict | None = None,
) -> dict:
    """Score one model (+ adapter) on `rows` ({"input", "output", optional "options"})."""
    t0 = time.time()
    convs = [prompting.messages(template.replace("{input}", r["input"]), system) for r in rows]
    refs = [r["output"] for r in rows]
    extra: dict = {}
    if scoring == "loglik":
        options = [r.get("options") or labels or sorted(set(refs)) for r in rows]
        lls, backend = ev.loglik(model_path, adapter_path, convs, options, batch_size=batch_size)
        preds = [opts[max(range(len(opts)), key=lambda i: ll[i])] for opts, ll in zip(options, lls)]
        tin = tout = 0
    else:
        gen = ev.generate(model_path, adapter_path, convs, max_new_tokens=max_new_tokens, batch_size=batch_size)
        preds, backend, tin, tout = gen.texts, gen.backend, gen.input_tokens, gen.output_tokens
        if gen.extra.get("fallback"):
            extra["fallback"] = gen.extra["fallback"]
    contexts = [r.get("context") for r in rows] if any("context" in r for r in rows) else None
    scored = score(metric, preds, refs, labels, judge=judge, options=metric_options, contexts=contexts)
    worst = sorted(range(len(rows)), key=lambda i: scored.per_example[i])
    bad = [{"input": rows[i]["input"], "expected": refs[i], "got": preds[i], "score": round(scored.per_example[i], 4),
            **({"detail": scored.details[i]} if scored.details and scored.details[i] else {})}
           for i in worst if scored.per_example[i] < 1.0]
    seconds = time.time() - t0
    return {
        "score": scored.score,
        "metric": metric,
        "n": len(rows),
        "backend": backend,
        "scoring": scoring,
        "seconds": round(seconds, 2),
        "input_tokens": tin,
        "output_tokens": tout,
        "tokens_per_s": round(tout / seconds, 1) if seconds > 0 and tout else 0.0,
        "bad_cases": bad[:num_bad_cases],
        "num_bad": len(bad),
        "predictions": preds,
        **extra,
    }
