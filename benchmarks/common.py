"""Shared by the benchmark scripts: random-weight models of a real model's shape, and result files."""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ftbench.bench import code_version  # noqa: E402,F401 - the benchmarks' records name their commit alike

# Qwen3-1.7B's published architecture; "tiny" keeps its layout at a size a CPU trains in seconds
SHAPES = {
    "qwen3-1.7b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128),
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16),
}


def random_qwen3(out: str, shape: str = "qwen3-1.7b") -> str:
    """A Qwen3 model of `shape` with random weights and the small offline tokenizer (ids < 1024), saved to
    `out`; returns `out`."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from trex_ray.models import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = Qwen3Config(**SHAPES[shape], max_position_embeddings=4096, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def machine_speed(size: int = 512, reps: int = 7) -> dict:
    """The host (CPU model, cores, GPU if any) and how fast one CPU thread multiplies fp32 matrices now
    (GFLOP/s, the median of `reps` timings). Accelerator seconds measured on two machines compare only when
    this rate agrees: the same trials have been seen to run 1.5-1.8x apart on machines reporting the same CPU
    model. Measured once, before a run: a machine that slows down during a run is not caught."""
    import statistics

    import torch

    from ftbench.bench import machine

    host = machine()  # torch is loaded here, so it names the GPU where there is one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(8):
                a @ b
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    gflops = 8 * 2 * size ** 3 / statistics.median(times) / 1e9
    return {**host, "gflops_1thread": round(gflops, 1)}


def same_speed(a: dict | None, b: dict | None, tolerance: float = 0.15) -> bool:
    """Whether two `machine_speed` records describe machines whose seconds compare (an unknown one never does)."""
    if not a or not b:
        return False
    ga, gb = a.get("gflops_1thread") or 0.0, b.get("gflops_1thread") or 0.0
    return (a.get("cpu"), a.get("gpu")) == (b.get("cpu"), b.get("gpu")) and ga > 0 and gb > 0 \
        and max(ga, gb) / min(ga, gb) <= 1 + tolerance


def save_json(obj, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"written": time.strftime("%Y-%m-%d %H:%M:%S"), **obj}, f, indent=1, default=str)
    return path
