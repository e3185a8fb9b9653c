"""How the first plans are sized: learning rate, LoRA rank and targets, batch, passes and lengths from the
task's profile (rows, token lengths of prompts and answers, label count) and the model's (width,
parameters, linear layers). One rule for every task, written down with its sources in
docs/first-plans.md; nothing here is fitted to a particular task.
"""

from __future__ import annotations

import math

# LoRA learning rate at width 4096 (7B-class models): QLoRA's for 7B/13B, and 10x the 2e-5 of full
# fine-tuning at that size (LoRA's best rate is about 10x full fine-tuning's)
LORA_LR_AT_4096 = 2e-4
LR_RANGE = (5e-5, 2e-2)
RANK = 16
# OpenAI fine-tuning's default passes: 3, raised until 100 examples are seen, lowered to 25,000 seen
EPOCHS, MIN_SEEN, MAX_SEEN, MAX_EPOCHS = 3, 100, 25_000, 25
# in-training val keeps the best point and stops a trial once val stops improving: the passes above are
# a target for a run without that; the cap is this many times them (within MAX_SEEN examples), so a
# trial stops where its val does, not where a fixed count of passes would have
CAP_FACTOR = 2
STEPS_PER_EPOCH = 20  # smallest batch gives at least this many optimizer steps a pass
BATCH_RANGE = (4, 16)
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
CHARS_PER_TOKEN = 3.5  # English text, where no tokenizer was measured
TEMPLATE_TOKENS = 60  # a chat template's own tokens, where not measured


def learning_rate(hidden_size: int | None, params: float | None) -> float:
    """AdamW peak rate for a LoRA adapter: inversely proportional to the model's width (muP), anchored at
    2e-4 for width 4096. Without a known width, it is estimated from the parameter count
    (params ~ 12 * layers * width^2 with about width/64 layers, hence width ~ (16 * params)^(1/3))."""
    d = hidden_size or ((16 * params) ** (1 / 3) if params else 4096)
    lo, hi = LR_RANGE
    return float(f"{min(hi, max(lo, LORA_LR_AT_4096 * 4096 / d)):.2g}")


def epochs_for(rows: int) -> float:
    """Passes over the data: 3, or as many as bring the examples seen into [100, 25000]."""
    e = float(EPOCHS)
    if rows * e < MIN_SEEN:
        e = min(MAX_EPOCHS, math.ceil(MIN_SEEN / max(rows, 1)))
    elif rows * e > MAX_SEEN:
        e = max(1.0, MAX_SEEN / rows)
    return round(e, 1)


def epoch_cap(rows: int, early_stopping: bool = True) -> float:
    """The first plan's epoch cap: `epochs_for`, times `CAP_FACTOR` where in-training val stops the trial
    (up to `MAX_SEEN` examples seen and `MAX_EPOCHS`; never below `epochs_for`)."""
    e = epochs_for(rows)
    if not early_stopping:
        return e
    return round(max(e, min(MAX_EPOCHS, CAP_FACTOR * e, MAX_SEEN / max(rows, 1))), 1)


def batch_for(rows: int) -> int:
    """The largest power of two that still gives `STEPS_PER_EPOCH` optimizer steps a pass, in 4..16."""
    lo, hi = BATCH_RANGE
    b = 1 << max(0, int(math.log2(max(rows, 1) / STEPS_PER_EPOCH)))
    return min(hi, max(lo, b))


def lora_targets(linear_modules: list[str] | None) -> list[str]:
    """Every linear layer of the blocks (attention and MLP), by the names this checkpoint uses; the Llama
    attention names when they are not known."""
    return list(linear_modules) if linear_modules else list(ATTENTION)


def first_settings(profile: dict) -> dict:
    """The starting settings of a task, with a line on each choice (`why`)."""
    train = profile["train"]
    n = train["rows"]
    model = profile.get("model") or {}
    params = model.get("params") or profile.get("model_params")
    tokens = profile.get("tokens")
    if tokens:
        longest = tokens["total"]["p99"]
        answer = tokens["answer"]["max"]
        lengths = f"p99 prompt+answer {longest} tokens, longest answer {answer} tokens (measured)"
    else:  # character counts: an estimate
        longest = int((train["input_chars"]["p95"] + train["output_chars"]["p95"]) / CHARS_PER_TOKEN) + TEMPLATE_TOKENS
        answer = int(train["output_chars"]["max"] / CHARS_PER_TOKEN) + 1
        lengths = f"~{longest} tokens prompt+answer, ~{answer} answer tokens (from characters)"
    limit = min(4096, model.get("max_positions") or 4096)
    seq = min(limit, max(64, 1 << (longest - 1).bit_length()))
    lr = learning_rate(model.get("hidden_size"), params)
    # an LLM-judged metric is not followed in training (each val point would be a judge's run)
    early = profile.get("metric") != "llm_judge"
    epochs, batch = epoch_cap(n, early), batch_for(n)
    cap = profile.get("max_epochs")
    capped = cap is not None and epochs > cap
    epochs = min(epochs, cap) if capped else epochs
    targets = lora_targets(model.get("linear_modules"))
    labels = len(profile.get("label_balance") or {}) or None
    # a labelled task's answers are its labels: a few tokens beyond the longest; free text may run longer
    new_tokens = max(8, min(1024, answer + (4 if labels else max(8, answer // 4))))
    why = [
        f"learning rate {lr:.2g}: 2e-4 x 4096 / width {model.get('hidden_size') or 'estimated'}",
        f"LoRA rank {RANK} on {len(targets)} linear layer kinds ({', '.join(targets)})",
        f"{epochs} epochs of {n} rows{' (the search caps epochs there)' if capped else ''}, batch {batch}: about "
        f"{math.ceil(epochs * n / batch)} steps; " + (f"a cap at {CAP_FACTOR}x the usual passes: in-training val keeps the "
        "best point and stops the trial when val stops improving" if early else "no in-training val (an LLM judge)"),
        f"max_seq_len {seq} and {new_tokens} new tokens: {lengths}" + (f", {labels} labels" if labels else ""),
    ]
    return {"max_seq_len": seq, "max_new_tokens": new_tokens, "epochs": epochs, "batch_size": batch,
            "learning_rate": lr, "lora_r": RANK, "target_modules": targets, "why": why}
