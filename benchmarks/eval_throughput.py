"""Evaluation throughput: the same prompts and LoRA adapter through trex-ray's two inference engines
(vLLM and transformers), measured side by side in one run, and the cost of moving between 8 adapters
(vLLM hot-loads an adapter per request; transformers attaches it to the loaded base, or, as a
per-evaluation task does, reloads base + adapter from disk).

    python benchmarks/eval_throughput.py                 # packaged SmolLM2-135M, 256 prompts
    python benchmarks/eval_throughput.py --quick         # 64 prompts, 16 new tokens
    python benchmarks/eval_throughput.py --model qwen3-1.7b-random   # random weights in Qwen3-1.7B's shape

Both engines get identical token ids (same chat template, same tokenisation) and decode greedily with no
early stop beyond EOS. The adapters are rank-16 LoRA on the attention projections with random weights
(large enough to change the outputs), so a wrong adapter would show. Prints one JSON line per
measurement and a summary with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import random_qwen3  # noqa: E402


def make_adapters(model_path: str, n: int, out: str) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    paths = []
    for i in range(n):
        torch.manual_seed(100 + i)
        m = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                 "o_proj"]))
        for name, p in m.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.05)
        path = os.path.join(out, f"adapter{i}")
        m.save_pretrained(path)
        paths.append(path)
        base = m.unload()
    return paths


def prompts(n: int) -> list[list[dict]]:
    from trex_ray.demo import make_examples

    rows = make_examples(0)
    return [[{"role": "system", "content": "Convert the spoken time to 24-hour HH:MM, then explain."},
             {"role": "user", "content": rows[i % len(rows)]["question"]}] for i in range(n)]


def emit(**kw) -> dict:
    print(json.dumps(kw), flush=True)
    return kw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m", help="packaged name, checkpoint dir, or qwen3-1.7b-random")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--adapters", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64, help="transformers batch size")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.max_new_tokens = 64, 16

    import torch

    from trex_ray.modeling.engines import HFEngine, VLLMEngine, vllm_available
    from trex_ray.models import resolve_model

    tmp = tempfile.mkdtemp(prefix="trex-eval-bench-")
    model = random_qwen3(os.path.join(tmp, "model")) if args.model == "qwen3-1.7b-random" else resolve_model(args.model)
    adapters = make_adapters(model, args.adapters, tmp)
    convs = prompts(args.prompts)
    small = convs[:8]
    device = "cuda" if torch.cuda.is_available() else f"cpu ({len(os.sched_getaffinity(0))} cores)"
    emit(setup={"model": args.model, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
                "adapters": args.adapters, "device": device, "torch": torch.__version__})
    res: dict = {}

    # transformers: one load of the base model, then the same work
    t = time.time()
    hf = HFEngine(model)
    res["hf_load_s"] = time.time() - t
    hf.generate(small, adapters[0], max_new_tokens=4, batch_size=8)  # warm-up
    t = time.time()
    g = hf.generate(convs, adapters[0], max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    dt = time.time() - t
    res["hf_tok_s"] = g.output_tokens / dt
    hf_texts = g.texts
    emit(engine="transformers", seconds=round(dt, 2), output_tokens=g.output_tokens, tokens_per_s=round(res["hf_tok_s"], 1))
    t = time.time()
    for a in adapters:
        hf.generate(small, a, max_new_tokens=8, batch_size=8)
    res["hf_switch_s"] = (time.time() - t) / len(adapters)
    t = time.time()
    for a in adapters[:2]:  # what an evaluation task that loads its own model pays per adapter
        HFEngine(model).generate(small, a, max_new_tokens=8, batch_size=8)
    res["hf_reload_s"] = (time.time() - t) / 2
    emit(engine="transformers", adapter_switch_s=round(res["hf_switch_s"], 3),
         reload_and_switch_s=round(res["hf_reload_s"], 3))
    del hf

    if not vllm_available():
        emit(engine="vllm", skipped="vllm is not installed")
        return
    t = time.time()
    v = VLLMEngine(model, max_loras=min(8, args.adapters), max_lora_rank=16)
    res["vllm_load_s"] = time.time() - t
    v.generate(small, adapters[0], max_new_tokens=4)  # warm-up (loads adapter 0)
    t = time.time()
    g = v.generate(convs, adapters[0], max_new_tokens=args.max_new_tokens)
    dt = time.time() - t
    res["vllm_tok_s"] = g.output_tokens / dt
    same = sum(a == b for a, b in zip(g.texts, hf_texts))
    emit(engine="vllm", seconds=round(dt, 2), output_tokens=g.output_tokens, tokens_per_s=round(res["vllm_tok_s"], 1),
         same_outputs_as_transformers=f"{same}/{len(convs)}")
    t = time.time()
    for a in adapters:
        v.generate(small, a, max_new_tokens=8)
    res["vllm_switch_s"] = (time.time() - t) / len(adapters)
    emit(engine="vllm", adapter_switch_s=round(res["vllm_switch_s"], 3))

    emit(summary={
        "tokens_per_s": {"vllm": round(res["vllm_tok_s"], 1), "transformers": round(res["hf_tok_s"], 1),
                         "ratio_vllm_over_transformers": round(res["vllm_tok_s"] / res["hf_tok_s"], 2)},
        "per_adapter_s (8 prompts x 8 tokens)": {
            "vllm_hot_load": round(res["vllm_switch_s"], 3), "transformers_attach": round(res["hf_switch_s"], 3),
            "transformers_reload": round(res["hf_reload_s"], 3),
            "ratio_reload_over_hot_load": round(res["hf_reload_s"] / res["vllm_switch_s"], 2)},
        "load_s": {"vllm": round(res["vllm_load_s"], 1), "transformers": round(res["hf_load_s"], 1)},
    })


if __name__ == "__main__":
    main()
