"""Training throughput of the executor's own training code (`executor.train.fit`: Ray Train + transformers +
PEFT), on one device, for LoRA and full fine-tuning of a random-weight model of Qwen3-1.7B's shape:

- tokens/s (real tokens, padding not counted) over the training loop after its first step (model start-up
  and the first step's one-time costs, such as loading kernels and growing the allocator, excluded; the
  first step's seconds and the rate with it are kept too);
- model FLOPs utilisation (MFU): model FLOPs per token x tokens/s, over the peak this device reached in a
  large matmul measured in the same run (not a datasheet number);
- peak device memory (GPU);
- each with and without sequence packing, bf16 (vs fp32) and gradient checkpointing (`grid`,
  `one-at-a-time`), or each speed lever alone and all together (`levers`): the LoRA adapter in bf16
  (PEFT keeps it fp32), padding-free micro-batches (one row, position ids restarting at each example),
  Liger kernels (CUDA), `torch.compile`, a micro-batch twice as large;
- with `--baseline hf-trainer`, the same rows trained by plain transformers `Trainer` (+ PEFT for LoRA),
  as a user would write it, in the same run: the reference the executor's loop has to beat.

    python benchmarks/train_throughput.py             # Qwen3-1.7B shape, seq 1024, every combination (GPU)
    python benchmarks/train_throughput.py --plan one-at-a-time   # per method: the plain run, then each option alone
    python benchmarks/train_throughput.py --plan levers --baseline hf-trainer   # the speed levers against Trainer
    python benchmarks/train_throughput.py --quick     # a tiny model of the same layout, a few steps (CPU is fine)

Model FLOPs per token (PaLM's accounting; recomputation by gradient checkpointing is not counted, so it
shows as lower MFU): full fine-tuning 6N + 12·L·d·s, LoRA 4N + 12·L·d·s (frozen weights need no weight
gradients), N = the weights of every matmul (LM head included), L layers, d hidden size, s the mean example
length (packed examples attend only within themselves). Synthetic rows have lengths spread over the
sequence limit, so padding costs what it costs on real data. Prints one line per setting and the ratios
against the first; writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SHAPES, code_version, random_qwen3, save_json  # noqa: E402

WORDS = ("the of and to in is was for on that with as by at from his an were are which this be or has had not "
         "but one all their they first new more two after who its also time may been other would into over "
         "only years most some these many such state three about up city where can world year under").split()


def synthetic_rows(n: int, max_words: int, seed: int = 0) -> list[dict]:
    """Prompt/answer rows whose lengths spread from short to the limit (as real data does)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        total = max(8, int(rng.betavariate(1.5, 2.5) * max_words))
        a = max(2, total // rng.randint(3, 6))
        rows.append({"system": "Continue the text.", "user": " ".join(rng.choices(WORDS, k=total - a)),
                     "output": " ".join(rng.choices(WORDS, k=a))})
    return rows


def measured_peak(device: str, dtype, n: int, reps: int) -> float:
    """FLOP/s of an n x n matmul in `dtype` on `device`: the device's practical peak."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


LEVERS = ("lora_dtype", "padding_free", "liger", "compile", "batch_x2")  # the speed levers, off by default
LEVER_ON = {"lora_dtype": "model", "padding_free": True, "liger": True, "compile": True, "batch_x2": True}


def plan_settings(plan: str, gpu: bool = True) -> list[dict]:
    """The runs of a plan, in order. grid: every combination of method x precision x packing x checkpointing;
    one-at-a-time: per method the plain bf16 run, then packing and checkpointing each alone, then fp32 (bf16
    first: it is what a GPU run uses, and a run cut short keeps it); levers: per method the plain bf16 run,
    each speed lever alone, all of them together, then fp32 once (Liger only where there is a GPU; the
    adapter's dtype for LoRA only); quick: every option at least once, in three runs (plain LoRA, full, every
    option and the levers a CPU has on LoRA)."""
    if plan == "levers":
        runs = []
        for m in ("lora", "full"):
            plain = dict(method=m, packing=False, precision="bf16", gradient_checkpointing=False)
            levers = [k for k in LEVERS if (m == "lora" or k != "lora_dtype") and (gpu or k != "liger")]
            runs += [plain] + [dict(plain, **{k: LEVER_ON[k]}) for k in levers]
            runs.append(dict(plain, **{k: LEVER_ON[k] for k in levers}))
        return runs + [dict(method=m, packing=False, precision="fp32", gradient_checkpointing=False)
                       for m in ("lora", "full")]
    if plan == "grid":
        return [dict(method=m, packing=p, precision=pr, gradient_checkpointing=gc)
                for m, pr, p, gc in itertools.product(("lora", "full"), ("bf16", "fp32"), (False, True), (False, True))]
    plain = dict(packing=False, precision="bf16", gradient_checkpointing=False)
    if plan == "one-at-a-time":
        return ([dict(plain, method=m, **flip) for m in ("lora", "full")
                 for flip in ({}, {"packing": True}, {"gradient_checkpointing": True})]
                + [dict(plain, method=m, precision="fp32") for m in ("lora", "full")])
    if plan == "quick":
        return [dict(plain, method="lora"), dict(plain, method="full"),
                dict(method="lora", packing=True, precision="fp32", gradient_checkpointing=True, lora_dtype="model",
                     padding_free=True, batch_x2=True)]
    raise ValueError(f"plan: unknown {plan!r}; use grid, one-at-a-time, levers or quick")


def hf_trainer_run(model_path: str, rows: list[dict], s: dict, batch: int, seq: int, lr: float, targets: list[str],
                   out_dir: str) -> dict:
    """The same rows trained the way a transformers user writes it: `Trainer` (+ PEFT's `get_peft_model` for
    LoRA), `DataCollatorForSeq2Seq` padding each batch, one epoch, in this process. The examples are the
    executor's own tokenisation (the same prompt/answer tokens and labels), so the token counts match."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from trex_ray.executor.train import tokenize_rows
    from trex_ray.modeling import load_model

    gpu = torch.cuda.is_available()
    model, tok = load_model(model_path, s["precision"])
    examples, _ = tokenize_rows(tok, rows, seq)
    if s["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM"))
    pad = DataCollatorForSeq2Seq(tok, padding=True)
    seen: list[tuple[int, int]] = []  # (real tokens, padded tokens) of each batch, in order

    def collate(features):
        out = pad([dict(f) for f in features])
        seen.append((sum(len(f["input_ids"]) for f in features), out["input_ids"].numel()))
        return out

    class Clock(TrainerCallback):
        def __init__(self):
            self.t = []

        def on_step_end(self, args, state, control, **kw):
            if gpu:
                torch.cuda.synchronize()
            self.t.append(time.perf_counter())

    clock = Clock()
    args = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=batch, num_train_epochs=1,
                             learning_rate=lr, lr_scheduler_type="linear", warmup_steps=0.05, max_grad_norm=1.0,
                             bf16=s["precision"] == "bf16" and gpu, save_strategy="no", report_to=[],
                             logging_strategy="no", dataloader_num_workers=0, remove_unused_columns=False,
                             use_cpu=not gpu, disable_tqdm=True, seed=0)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate, callbacks=[clock])
    t0 = time.perf_counter()
    trainer.train()
    steps = len(clock.t)
    tokens = sum(n for n, _ in seen[:steps])
    steady = (tokens - seen[0][0]) / (clock.t[-1] - clock.t[0]) if steps > 1 else None
    return {"tokens": tokens, "padded_tokens": sum(p for _, p in seen[:steps]), "examples": len(examples),
            "steps": steps, "loop_seconds": clock.t[-1] - t0 if steps else 0.0,
            "first_step_seconds": clock.t[0] - t0 if steps else None,
            "tokens_per_s": tokens / (clock.t[-1] - t0) if steps else 0.0, "steady_tokens_per_s": steady,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if gpu else None,
            "final_loss": float(trainer.state.log_history[-1].get("train_loss", float("nan")))
            if trainer.state.log_history else float("nan")}


def matmul_params(model_path: str) -> tuple[int, int, int]:
    """(weights of every matmul incl. the LM head, layers, hidden size), from the model's config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return n, cfg.num_hidden_layers, cfg.hidden_size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, a few steps: checks the script works")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None,
                    help="model shape (default: qwen3-1.7b; tiny with --quick)")
    ap.add_argument("--seq", type=int, default=None, help="max_seq_len (default 1024; 128 with --quick)")
    ap.add_argument("--rows", type=int, default=None, help="training rows (default 512; 48 with --quick)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--plan", choices=("grid", "one-at-a-time", "levers"), default="grid",
                    help="grid: every combination of method x precision x packing x checkpointing (16 runs); one-at-a-time:"
                         " per method the plain bf16 run, then packing, checkpointing and fp32 each alone (8 runs); "
                         "levers: per method the plain bf16 run, each speed lever alone and all together, fp32 once")
    ap.add_argument("--baseline", choices=("none", "hf-trainer"), default="none",
                    help="hf-trainer: also train the same rows with plain transformers Trainer (+ PEFT), per method, "
                         "right after that method's first run (on by default with --quick)")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/train_throughput-<device>.json)")
    args = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from trex_ray.executor import train as train_mod
    from trex_ray.plan import TrainConfig
    from trex_ray.runtime import init_ray

    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    name = torch.cuda.get_device_name(0) if gpu else f"CPU ({os.cpu_count()} logical cores)"
    shape = args.shape or ("tiny" if args.quick else "qwen3-1.7b")
    seq = args.seq or (128 if args.quick else 1024)
    n_rows = args.rows or (48 if args.quick else 512)
    init_ray(None, 1)
    tmp = tempfile.mkdtemp(prefix="trex-train-bench-")
    model = random_qwen3(os.path.join(tmp, "model"), shape)
    rows = synthetic_rows(n_rows, max_words=int(seq / 1.6))
    os.makedirs(os.path.join(tmp, "data"))
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(tmp, "data", "part.parquet"))
    n_params, layers, hidden = matmul_params(model)

    peaks = {}
    sizes = ((8192,) if not args.quick else (4096,)) if gpu else (256, 512, 1024)
    for prec, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        peaks[prec] = max(measured_peak(device, dtype, n, reps=20 if gpu else 5) for n in sizes)
    if not gpu:  # a CPU without bf16 units computes bf16 through fp32 (its bf16 matmul can be 100x slower than
        # the bf16 layers of a model, which take other paths): its peak for bf16 work is the fp32 one
        peaks["bf16"] = max(peaks["bf16"], peaks["fp32"])
    print(f"device: {name}; measured matmul peak: bf16 {peaks['bf16'] / 1e12:.1f} TFLOP/s, "
          f"fp32 {peaks['fp32'] / 1e12:.1f} TFLOP/s; model {shape}: {n_params / 1e9:.3f} B matmul weights")

    plan = "quick" if args.quick else args.plan
    settings = plan_settings(plan, gpu)
    if args.quick or args.baseline == "hf-trainer":  # after each method's first run
        for m in ("full", "lora"):
            first = next((i for i, s in enumerate(settings) if s["method"] == m), None)
            if first is not None:
                settings.insert(first + 1, dict(settings[first], baseline="hf-trainer"))
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"train_throughput-{'quick-' if args.quick else ''}{device}.json")
    record = {"device": name, "date": time.strftime("%Y-%m-%d"), "shape": shape, "max_seq_len": seq, "rows": n_rows,
              "batch_size": args.batch, "plan": plan, "baseline": "hf-trainer" if args.quick else args.baseline,
              "code": code_version(),
              "matmul_weights": n_params, "peak_flops": peaks, "torch": torch.__version__, "results": []}
    results = record["results"]
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    for i, s in enumerate(settings):
        started = time.time()
        batch = args.batch * (2 if s.get("batch_x2") else 1)
        lr = 1e-4 if s["method"] == "full" else 1e-3
        cfg = TrainConfig(epochs=1, batch_size=batch, learning_rate=lr, max_seq_len=seq, lora_r=16, lora_alpha=32,
                          target_modules=targets,
                          **{k: v for k, v in s.items() if k not in ("batch_x2", "baseline")}).model_dump()
        try:
            if s.get("baseline") == "hf-trainer":
                st = hf_trainer_run(model, rows, s, batch, seq, lr, targets, os.path.join(tmp, f"run{i}"))
            else:
                st = train_mod.fit(data_dir=os.path.join(tmp, "data"), model_path=model, train_cfg=cfg,
                                   init_adapter=None, node_dir=os.path.join(tmp, f"run{i}"), use_gpu=gpu,
                                   threads=None if gpu else os.cpu_count())
        except Exception as e:  # noqa: BLE001 - an out-of-memory setting is a result too
            results.append({**s, "error": f"{type(e).__name__}: {str(e)[:200]}"})
            print(f"{_label(s):40s} failed: {results[-1]['error']}", flush=True)
            save_json(record, out)
            continue
        finally:  # a full fine-tune leaves a whole model behind: free the disk for the next setting
            shutil.rmtree(os.path.join(tmp, f"run{i}"), ignore_errors=True)
        mean_len = st["tokens"] / max(1, st["examples"])
        flops_tok = (6 if s["method"] == "full" else 4) * n_params + 12 * layers * hidden * mean_len
        rate = st["steady_tokens_per_s"] or st["tokens_per_s"]  # after the first step, when there are more
        mfu = flops_tok * rate / peaks[s["precision"]]
        results.append({**s, "tokens_per_s": rate, "tokens_per_s_with_first_step": st["tokens_per_s"],
                        "first_step_seconds": st["first_step_seconds"], "mfu": round(mfu, 4),
                        "peak_memory_gb": st["peak_memory_gb"],
                        "loop_seconds": st["loop_seconds"], "steps": st["steps"], "tokens": st["tokens"],
                        "padding_share": round(1 - st["tokens"] / max(1, st["padded_tokens"]), 3),
                        "final_loss": round(st["final_loss"], 4), "wall_seconds": round(time.time() - started, 1)})
        r = results[-1]
        mem = f"{r['peak_memory_gb']:.1f} GB" if r["peak_memory_gb"] is not None else "-"
        print(f"{_label(s):40s} {r['tokens_per_s']:>10.0f} tok/s  MFU {100 * r['mfu']:5.1f}%  peak {mem:>8s}  "
              f"padding {100 * r['padding_share']:4.1f}%  first step {r['first_step_seconds']:.1f} s  "
              f"loss {r['final_loss']}  ({r['wall_seconds']:.0f} s)", flush=True)
        save_json(record, out)  # after every setting: a run cut short keeps what it measured

    ok = [r for r in results if "error" not in r]
    if ok:
        ref = ok[0]
        print(f"\nratios of tokens/s against {_label(ref)}:")
        for r in ok[1:]:
            print(f"  {_label(r):40s} x{r['tokens_per_s'] / ref['tokens_per_s']:.2f}")
        for m in ("lora", "full"):  # each executor setting against plain Trainer on the same rows
            base = next((r for r in ok if r["method"] == m and r.get("baseline")), None)
            if base:
                print(f"\nratios of tokens/s against {_label(base)}:")
                for r in ok:
                    if r["method"] == m and not r.get("baseline"):
                        print(f"  {_label(r):40s} x{r['tokens_per_s'] / base['tokens_per_s']:.2f}")
    save_json(record, out)
    print(f"written: {out}")
    return 0 if ok else 1


def _label(s: dict) -> str:
    if s.get("baseline"):
        return f"{s['method']:4s} {s['precision']} {s['baseline']}"
    return (f"{s['method']:4s} {s['precision']}" + (" packed" if s["packing"] else "")
            + (" ckpt" if s["gradient_checkpointing"] else "")
            + (" adapter-in-model-dtype" if s.get("lora_dtype") == "model" else "")
            + (" pad-free" if s.get("padding_free") else "")
            + (" liger" if s.get("liger") else "") + (" compile" if s.get("compile") else "")
            + (" batch-x2" if s.get("batch_x2") else ""))


if __name__ == "__main__":
    sys.exit(main())
