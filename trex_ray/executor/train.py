"""Fine-tuning: one trial = one Ray Train run of the loop below (transformers + PEFT): a `TorchTrainer`
(DDP) with several workers, a `DataParallelTrainer` with no process group for a lone worker.

The loop is written out in full: read the worker's share of the prepared rows (the recipe's Ray Data
output, one Arrow table in the object store), tokenise with
answer-only labels (prompt tokens are -100), AdamW with linear warm-up/decay, gradient clipping, and
at the end rank 0 saves the LoRA adapter (`save_pretrained`) or the full model plus `train_stats.json`
into a checkpoint that Ray Train persists; the driver copies it into the node folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from trex_ray.modeling import shipping


class TrainingFailed(RuntimeError):
    """A training failure the search knows how to describe; `kind` names it in the node's error."""

    kind = "TrainingFailed"


class Diverged(TrainingFailed):
    """The loss became NaN or infinite."""

    kind = "diverged"


class OutOfMemory(TrainingFailed):
    """Training ran out of (GPU or host) memory."""

    kind = "out_of_memory"


class WorkerLost(TrainingFailed):
    """The training workers died (their node was lost) more often than the run may be restarted."""

    kind = "worker_lost"


_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "outofmemoryerror")


def classify(err: BaseException) -> TrainingFailed | None:
    """The known failure a training worker's exception stands for, if any."""
    text = f"{type(err).__name__}: {err}".lower()
    if isinstance(err, FloatingPointError) or text.startswith("floatingpointerror") or "diverged:" in text:
        return Diverged(str(err))
    if isinstance(err, MemoryError) or any(m in text for m in _OOM_MARKERS):
        return OutOfMemory(f"{type(err).__name__}: {str(err)[:500]}")
    return None


_UNCAPPED: tuple[int, int] | None = None  # this worker's data limit before `_limit_memory`


AUTO_MEMORY_SHARE = 0.8  # of the memory free when a CPU worker starts training, split among the workers beside it
_LIMIT_GB: float | None = None  # the cap this worker trains under (train stats)


def _memory_free_bytes() -> int | None:
    """Memory free to this process: the host's available memory, or less where a cgroup (v2 or v1) limits
    this container (its usage less the page cache it can drop, as the kernel counts it)."""
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    for limit_f, usage_f, stat_f, key in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file")):
        try:
            with open(limit_f) as f:
                limit = f.read().strip()
            if limit == "max" or int(limit) >= 2**60:  # no limit set
                continue
            with open(usage_f) as f:
                used = int(f.read())
            with open(stat_f) as f:
                used -= next((int(line.split()[1]) for line in f if line.split()[0] == key), 0)
            return min(free, int(limit) - used)
        except (OSError, ValueError):
            continue
    return free


def auto_memory_limit_gb(concurrent_workers: int | None, worker_cpus: float = 1.0,
                         node_cpus: float | None = None) -> float | None:
    """The memory a CPU training worker may take beyond what it holds, when the user set none: a share of
    what is free on its node as it starts, split among the training workers that can run there at once (the
    search's trials in flight times their workers, at most as many as the node's CPUs hold). Past it the
    worker's allocations fail and the trial retries in micro-batches, then fails as out_of_memory, which the
    researcher answers with a smaller batch: without it, K trials that together outgrow the host are killed
    by Ray's memory monitor and, as tasks, retried from scratch with no end and no record."""
    if not concurrent_workers:
        return None
    free = _memory_free_bytes()
    if free is None:
        return None
    if node_cpus is None:  # this worker's node, as Ray counts its CPUs
        import ray

        node_cpus = next((n["Resources"].get("CPU", 1.0) for n in ray.nodes()
                          if n["NodeID"] == ray.get_runtime_context().get_node_id()), 1.0)
    beside = max(1, min(concurrent_workers, int(node_cpus // max(worker_cpus, 1e-9))))
    return round(max(0.25, AUTO_MEMORY_SHARE * free / beside / 2**30), 2)


def _limit_memory(gb: float | None) -> None:
    """Cap this worker's data memory at what it holds now plus `gb` GiB (Linux RLIMIT_DATA), so that a
    trial that asks for too much fails with an allocation error instead of taking the machine down."""
    global _UNCAPPED, _LIMIT_GB
    _LIMIT_GB = gb or None
    if not gb:
        return
    import resource

    with open("/proc/self/status") as f:
        held = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
    limit = held + int(gb * 2**30)
    _UNCAPPED = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, _UNCAPPED[1]))


def _lift_memory_limit() -> None:
    """Undo `_limit_memory`: the failure report (a checkpoint, Ray's threads) must not be starved by the cap
    that made the training fail."""
    global _UNCAPPED
    if _UNCAPPED is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, _UNCAPPED)
        _UNCAPPED = None


def lora_targets(model, wanted: list[str]) -> list[str] | str:
    """The plan's LoRA target modules where the model has layers of every one of those names, else PEFT's
    `all-linear` (every linear layer of the blocks, whatever the family calls them): a plan written with one
    family's names (Llama's `q_proj`...) still trains a GPT-2 (fused `c_attn`) or a Phi-3 (fused `qkv_proj`,
    where only `o_proj` would match and the adapter would miss the rest of attention) instead of failing or
    training a sliver."""
    import torch
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}
    return wanted if set(wanted) <= names else "all-linear"


def tokenize_rows(tok, rows: list[dict], max_seq_len: int) -> tuple[list[dict], int]:
    """Prompt and answer tokenised apart and joined, so generation sees exactly the prompt it trained on;
    a conversation's every assistant turn is an answer (the loss on it and its end-of-sequence token),
    the rest of it a prompt (no loss)."""
    from trex_ray import prompting

    out, cut = [], 0
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    for r in rows:
        ids, labels = [], []
        for before, answer in prompting.training_turns(tok, r["user"], r["system"] or None, r["output"], r.get("chat")):
            p = tok(before, add_special_tokens=False)["input_ids"]
            a = tok(answer, add_special_tokens=False)["input_ids"] + eos
            ids += p + a
            labels += [-100] * len(p) + a
        if len(ids) > max_seq_len:
            cut += 1
            ids, labels = ids[:max_seq_len], labels[:max_seq_len]
        if any(x != -100 for x in labels):
            out.append({"input_ids": ids, "labels": labels})
    return out, cut


def pack_examples(examples: list[dict], max_len: int) -> list[dict]:
    """Examples concatenated, in order, into sequences of at most `max_len` tokens; `position_ids` restart at
    each example, which is how the model (transformers' packed-sequence masks) keeps attention within it."""
    packs, cur = [], {"input_ids": [], "labels": [], "position_ids": []}
    for e in examples:
        if cur["input_ids"] and len(cur["input_ids"]) + len(e["input_ids"]) > max_len:
            packs.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        cur["input_ids"] += e["input_ids"]
        cur["labels"] += e["labels"]
        cur["position_ids"] += list(range(len(e["input_ids"])))
    if cur["input_ids"]:
        packs.append(cur)
    return packs


def _collate(batch: list[dict], pad_id: int):
    import torch

    n = max(len(b["input_ids"]) for b in batch)
    if "position_ids" in batch[0]:  # packed: no attention mask (the position ids delimit the examples)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        pos = torch.arange(n).repeat(len(batch), 1)  # the padding is a sequence of its own
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            pos[i, :k] = torch.tensor(b["position_ids"])
            pos[i, k:] = torch.arange(n - k)
        return {"input_ids": ids, "labels": labels, "position_ids": pos}
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, b in enumerate(batch):
        k = len(b["input_ids"])
        ids[i, :k] = torch.tensor(b["input_ids"])
        labels[i, :k] = torch.tensor(b["labels"])
        mask[i, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _collate_flat(batch: list[dict], pad_id: int):
    """Padding-free: the micro-batch as one row, its examples (or packs) end to end, the position ids
    restarting at each (transformers' packed-sequence masks keep attention within an example; the first
    token of each example is a prompt token, labelled -100, so no loss crosses from one to the next).
    `pad_id` is unused (nothing is padded): the signature is `_collate`'s, so the loop takes either."""
    import torch

    ids, labels, pos = [], [], []
    for b in batch:
        ids += b["input_ids"]
        labels += b["labels"]
        pos += b.get("position_ids") or list(range(len(b["input_ids"])))
    return {k: torch.tensor([v], dtype=torch.long) for k, v in
            (("input_ids", ids), ("labels", labels), ("position_ids", pos))}


def apply_liger(model) -> None:
    """Liger's Triton kernels (fused linear cross-entropy, RMSNorm, SwiGLU, RoPE) patched into `model`'s
    family, where Liger supports it; refused, naming the setting and the fix, without CUDA or the package."""
    import torch

    if not torch.cuda.is_available():
        raise ValueError("train.liger needs a CUDA GPU (Liger's kernels are Triton kernels): set train.liger false")
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError as e:
        raise ValueError(f"train.liger needs the liger-kernel package ({e}): pip install 'trex-ray[fast]'") from None
    _apply_liger_kernel_to_instance(model=model)


def train_loop(config: dict) -> None:
    """Runs on each Ray Train worker. A single worker's own failure (out of memory, divergence, a bad
    config) is reported as a result rather than raised: raised, Ray Train would spend its restarts
    (`FailureConfig`, meant for lost workers and nodes) re-running what fails the same way again.
    Several workers raise, so that the others are not left waiting in a collective."""
    import ray.train

    if ray.train.get_context().get_world_size() > 1:
        return _train(config)
    try:
        _train(config)
    except Exception as e:  # noqa: BLE001 - reported to the driver, which raises it there
        _lift_memory_limit()
        failure = {"failed": type(e).__name__, "message": str(e)[:2000], "known": getattr(classify(e), "kind", None)}
        # as a checkpoint: a Ray Train result keeps the metrics that came with its latest checkpoint only
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "failure.json"), "w") as f:
                json.dump(failure, f)
            ray.train.report({"failed": failure["failed"]}, checkpoint=ray.train.Checkpoint.from_directory(d))


def _train(config: dict) -> None:
    """One training worker's run: set up, the loop, then the adapter (or model) and stats saved."""
    run = _setup(config)
    _loop(run, config)
    _save(run, config)


@dataclass
class _Run:
    """What one worker trains with, and its counters as the loop goes."""

    cfg: dict
    model: Any
    tok: Any
    examples: list
    n_examples: int
    cut: int
    warm: str | None
    rank: int
    world: int
    device: Any
    loader: Any
    per_epoch: int
    total_steps: int
    params: list
    opt: Any
    sched: Any
    micro: int
    t0: float
    curve: list = field(default_factory=list)
    step: int = 0
    epoch: int = 0
    tokens: int = 0
    padded: int = 0
    t_loop: float = 0.0
    t_first: float = 0.0
    tokens_first: int = 0
    # in-training val evaluation (config["early"]): every `every` steps; the best checkpoint is kept
    every: int = 0
    val_curve: list = field(default_factory=list)
    best_score: float | None = None
    best_step: int | None = None
    since_best: int = 0
    best_dir: str | None = None
    best_val: dict | None = None  # the kept checkpoint's evaluation, when it covered every val row
    stopped: str | None = None
    eval_s: float = 0.0
    live: Any = None


def _shard(table_ref, rank: int, world: int) -> list[dict]:
    """This worker's rows: every world-th row from its rank on, so every shard samples the whole file
    (prepared data can be ordered, e.g. by label or length). The table is read from the object store,
    which also serves workers on nodes that cannot see the driver's disk.

    Not `TorchTrainer(datasets=...)`: Ray Train would start a split coordinator actor and a streaming
    execution per run, about a second and a process per trial, for data already prepared and small
    enough to hold; the recipe itself runs on Ray Data before this."""
    import pyarrow as pa
    import ray

    table = ray.get(table_ref)
    if world > 1:
        table = table.take(pa.array(range(rank, table.num_rows, world), type=pa.int64()))
    return table.to_pylist()


def _setup(config: dict) -> _Run:
    """The worker's shard tokenised (and packed), the model with its LoRA adapter (new or the parent's),
    the loader, optimizer and schedule."""
    import ray.train
    import torch
    from transformers import get_linear_schedule_with_warmup

    from trex_ray.modeling import load_model, torch_threads

    cfg = config["train"]
    torch_threads(config.get("threads"))
    torch.manual_seed(cfg["seed"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    t0 = time.time()

    if ctx.get_local_rank() == 0:  # once a host: what trials killed on it left behind
        sweep_scratch()
    rows = _shard(config["rows"], rank, world)
    model, tok = load_model(config["model_path"], cfg.get("precision", "auto"), cfg.get("quantization", "none"),
                            bool(cfg.get("gradient_checkpointing")))
    if cfg.get("liger"):  # before the adapter wraps it: the kernels replace the model's own layers
        apply_liger(model)
    _limit_memory(config.get("memory_limit_gb") or auto_memory_limit_gb(config.get("auto_memory_workers")))
    examples, cut = tokenize_rows(tok, rows, cfg["max_seq_len"])
    if not examples:
        raise ValueError(f"no trainable examples after tokenisation: none of the {len(rows)} rows keeps an answer token "
                         f"within max_seq_len {cfg['max_seq_len']} (the prompt fills it); raise train.max_seq_len or "
                         "shorten the prompt template")
    n_examples = len(examples)
    if cfg.get("packing"):
        import random

        random.Random(cfg["seed"]).shuffle(examples)  # packs mix examples; the loader then shuffles the packs
        examples = pack_examples(examples, cfg["max_seq_len"])
    if cfg.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False

    warm = shipping.local(config.get("init_adapter"))  # a cached copy where this node lacks the driver's disk
    if cfg["method"] == "lora":
        from peft import LoraConfig, PeftModel, get_peft_model

        # PEFT keeps an adapter in fp32 over a bf16 model (casting each input up) unless told otherwise
        upcast = cfg.get("lora_dtype", "fp32") == "fp32"
        if warm:
            model = PeftModel.from_pretrained(model, warm, is_trainable=True, autocast_adapter_dtype=upcast)
        else:
            model = get_peft_model(model, LoraConfig(
                r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                target_modules=lora_targets(model, cfg["target_modules"]), task_type="CAUSAL_LM",
            ), autocast_adapter_dtype=upcast)
    model.train()
    if cfg.get("compile"):
        model.compile()  # in place: the module (and what save_pretrained writes) stays the same
    if world > 1:
        model = ray.train.torch.prepare_model(model)

    # an optimizer step sees batch_size examples; after running out of memory they come in micro-batches
    micro = min(cfg["batch_size"], config.get("micro_batch_size") or cfg["batch_size"])
    g = torch.Generator().manual_seed(cfg["seed"])
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(
        examples, batch_size=cfg["batch_size"], shuffle=True, generator=g, collate_fn=lambda b: b,
    )
    # data parallel: every worker takes the same number of steps (a step's gradients are averaged across
    # them, and a worker with a step more would wait forever), so an epoch is the shortest shard's batches
    per_epoch = len(loader) if world == 1 else _all_reduce([len(loader)], device, "min")[0]
    total_steps = max(1, math.ceil(cfg["epochs"] * per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    sched = get_linear_schedule_with_warmup(opt, int(cfg["warmup_ratio"] * total_steps), total_steps)
    run = _Run(cfg=cfg, model=model, tok=tok, examples=examples, n_examples=n_examples, cut=cut, warm=warm,
               rank=rank, world=world, device=device, loader=loader, per_epoch=per_epoch, total_steps=total_steps,
               params=params, opt=opt, sched=sched, micro=micro, t0=t0)
    if config.get("early"):
        # once an epoch, or more often when the run is short of four epochs; at most eight times a run
        run.every = cfg.get("eval_every") or max(math.ceil(total_steps / 8), min(per_epoch, math.ceil(total_steps / 4)))
        run.stopped = "epoch cap"
    return run


def _loop(run: _Run, config: dict) -> None:
    """Optimizer steps until `total_steps`: each over batch_size examples (in micro-batches, gradients
    weighted by answer tokens), progress written and reported, an epoch's end reported to Ray Train."""
    import ray.train
    import torch

    r, model, tok, device = run, run.model, run.tok, run.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if r.rank == 0:  # started: watchers see the step count before the first step ends
        _progress(config.get("progress_path"), step=0, of=r.total_steps)
    reported = 0.0
    collate = _collate_flat if r.cfg.get("padding_free") else _collate
    r.t_loop = time.time()
    r.t_first, r.tokens_first = r.t_loop, 0
    while r.step < r.total_steps:
        for n_batch, examples_step in enumerate(r.loader):
            if n_batch >= r.per_epoch:
                break
            n_tokens = sum(sum(1 for x in e["labels"] if x != -100) for e in examples_step)
            step_loss = 0.0
            starts = range(0, len(examples_step), r.micro)
            for i in starts:
                part = examples_step[i:i + r.micro]
                batch = {k: v.to(device) for k, v in collate(part, tok.pad_token_id).items()}
                r.padded += batch["input_ids"].numel()
                # data parallel: gradients are averaged across workers once per step, at its last micro-batch
                sync = contextlib.nullcontext() if r.world == 1 or i == starts[-1] else model.no_sync()
                with sync:
                    # no KV cache in training: it is never read, and with it the packed-sequence masks are skipped
                    loss = model(**batch, use_cache=False).loss
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"diverged: the training loss became {float(loss)} at step {r.step + 1}")
                    # weight each micro-batch by its answer tokens: the step's loss is the full batch's mean
                    share = sum(1 for e in part for x in e["labels"] if x != -100) / max(1, n_tokens)
                    (loss * share).backward()
                step_loss += float(loss.detach()) * share
                r.tokens += sum(len(e["input_ids"]) for e in part)  # real tokens, padding not counted
            torch.nn.utils.clip_grad_norm_(r.params, 1.0)
            r.opt.step()
            r.sched.step()
            r.opt.zero_grad(set_to_none=True)
            r.curve.append(round(step_loss, 4))
            r.step += 1
            if r.step == 1:  # the first step pays one-time costs (kernel loading, allocator growth): timed apart
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                r.t_first, r.tokens_first = time.time(), r.tokens
            if r.rank == 0 and (r.step == 1 or r.step % 10 == 0 or r.step == r.total_steps):
                _progress(config.get("progress_path"), step=r.step, of=r.total_steps, loss=r.curve[-1])
            if r.rank == 0 and config.get("reporter") is not None and (time.time() - reported > 1
                                                                      or r.step == r.total_steps):
                config["reporter"]("train", step=r.step, steps=r.total_steps, loss=r.curve[-1])
                reported = time.time()
            if r.every and (r.step % r.every == 0 or r.step == r.total_steps) and _val_point(r, config):
                r.total_steps = r.step  # stopped early: the loop ends here
            if r.step >= r.total_steps:
                break
        r.epoch += 1
        if r.step < r.total_steps:
            ray.train.report({"epoch": r.epoch, "step": r.step, "loss": r.curve[-1]})
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _val_point(r: _Run, config: dict) -> bool:
    """Rank 0 scores the model as it is now on the val rows (greedy, the node's metric); a better score
    keeps this checkpoint. Whether to stop (patience spent, or a perfect score), agreed by every worker."""
    early, stop = config["early"], 0
    if r.rank == 0:
        t = time.time()
        out = _score_now(r, config)
        score = float(out["score"])
        r.eval_s += time.time() - t
        r.val_curve.append([r.step, round(score, 4)])
        if r.best_score is None or score > r.best_score:
            r.best_score, r.best_step, r.since_best = score, r.step, 0
            # every val row, the run's engine, metric and decoding: this is the node's val evaluation
            r.best_val = out if early.get("whole") else None
            inner = getattr(r.model, "module", r.model)
            r.best_dir = r.best_dir or _scratch("trex-best-")
            inner.save_pretrained(r.best_dir)
        elif r.best_score > early.get("floor", float("-inf")):
            # patience runs only once the model has beaten where it started (the baseline): a task whose
            # score stays at zero until the answer format is learnt is not stopped before it is
            r.since_best += 1
        if score >= early.get("perfect", 1.0):
            stop, r.stopped = 1, "perfect score"
        elif r.since_best >= early["patience"]:
            stop, r.stopped = 1, "patience"
        if config.get("reporter") is not None:
            config["reporter"]("train", step=r.step, steps=r.total_steps, loss=r.curve[-1], val=round(score, 4),
                               val_step=r.step)
    if r.world > 1:
        stop = _all_reduce([stop], r.device, "sum")[0]
    return bool(stop)


def _score_now(r: _Run, config: dict) -> dict:
    """The val evaluation of the model being trained (`evaluate_rows`' result): in this process
    (transformers, the same rendering and decoding as the run's engines), or, for a LoRA run evaluated by
    vLLM engines, the adapter as saved now through those engines."""
    from trex_ray.executor.evaluate import InProcess, evaluate_rows
    from trex_ray.models import local_model

    early = config["early"]
    inner = getattr(r.model, "module", r.model)
    inner.eval()
    try:
        path = None
        if early.get("ev") is not None and r.cfg["method"] == "lora":
            path = _scratch("trex-eval-")
            inner.save_pretrained(path)
            ev, model, adapter = early["ev"], config["model_path"], shipping.ship(path, always=True)
        else:
            if r.live is None:
                from trex_ray.modeling.engines import HFEngine

                r.live = InProcess(HFEngine.around(inner, local_model(config["model_path"])))
            ev, model, adapter = r.live, None, None
        out = evaluate_rows(ev, model, adapter, early["rows"], template=early["template"], system=early["system"],
                            metric=early["metric"], labels=early.get("labels"), max_new_tokens=early["max_new_tokens"],
                            batch_size=early["batch_size"], num_bad_cases=early.get("num_bad_cases", 0),
                            scoring=early.get("scoring", "generate"), metric_options=early.get("metric_options"))
    finally:
        inner.train()
        if path:  # the adapter went with the request (by value): this step's copy is not kept
            shutil.rmtree(path, ignore_errors=True)
    return out


def _save(run: _Run, config: dict) -> None:
    """The worker's counters summed over workers into the trial's train stats; rank 0 saves the adapter
    (or the full model and tokenizer) and the stats as the run's checkpoint."""
    import ray.train
    import torch

    r, cfg, device = run, run.cfg, run.device
    loop_s = time.time() - r.t_loop
    tokens, padded, n_examples, cut, sequences, tokens_first = (r.tokens, r.padded, r.n_examples, r.cut,
                                                                len(r.examples), r.tokens_first)
    if r.world > 1:  # counts over all workers (each saw its own shard)
        tokens, padded, n_examples, cut, sequences, tokens_first = _all_reduce(
            [tokens, padded, n_examples, cut, sequences, tokens_first], device, "sum")
    first_s = r.t_first - r.t_loop
    steady = round((tokens - tokens_first) / max(loop_s - first_s, 1e-9), 1) if r.step > 1 else None
    stats = {
        "steps": r.step, "epochs": cfg["epochs"], "examples": n_examples, "truncated": cut,
        "loop_seconds": round(loop_s, 3), "tokens_per_s": round(tokens / max(loop_s, 1e-9), 1),
        # after the first step (None with one step): the rate a longer run settles at
        "first_step_seconds": round(first_s, 3), "steady_tokens_per_s": steady,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None,
        "sequences": sequences, "padded_tokens": padded,
        "tokens": tokens, "seconds": round(time.time() - r.t0, 2), "workers": r.world,
        "device": str(device), "final_loss": sum(r.curve[-5:]) / len(r.curve[-5:]),
        "loss_curve": _downsample(r.curve, 100), "warm_start": bool(r.warm),
        "trainable_params": sum(p.numel() for p in r.params), "micro_batch_size": r.micro,
        "memory_limit_gb": _LIMIT_GB,
        "node": ray.get_runtime_context().get_node_id(),
        # in-training val: (step, score) at each evaluation, why training stopped, the step of the kept checkpoint
        "val_curve": r.val_curve, "stopped": r.stopped, "kept_step": r.best_step if r.best_dir else r.step,
        "val_eval_seconds": round(r.eval_s, 2),
        # the kept checkpoint's evaluation over every val row: the trial takes it as the node's val
        "kept_val": r.best_val,
    }
    peft_cfg = getattr(getattr(r.model, "module", r.model), "peft_config", None)
    if peft_cfg:  # the layers LoRA wrapped (the plan's, or all-linear where the model has none of them)
        stats["lora_targets"] = sorted({str(t).rsplit(".", 1)[-1] for t in peft_cfg["default"].target_modules})
    with tempfile.TemporaryDirectory() as d:
        checkpoint = None
        if r.rank == 0:
            inner = getattr(r.model, "module", r.model)
            out = os.path.join(d, "adapter" if cfg["method"] == "lora" else "model")
            if r.best_dir:  # the best checkpoint the in-training evaluations found, not the last
                shutil.copytree(r.best_dir, out)
                shutil.rmtree(r.best_dir, ignore_errors=True)
            else:
                inner.save_pretrained(out)
            if cfg["method"] == "full":
                r.tok.save_pretrained(os.path.join(d, "model"))
            with open(os.path.join(d, "train_stats.json"), "w") as f:
                json.dump(stats, f)
            checkpoint = ray.train.Checkpoint.from_directory(d)
        ray.train.report({"epoch": r.epoch, "step": r.step, "loss": stats["final_loss"]}, checkpoint=checkpoint)


def _all_reduce(values: list[int], device, op: str) -> list[int]:
    """Sum or minimum of each value over the training workers (their process group is up)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return t.tolist()


def _progress(path: str | None, **fields) -> None:
    """Training progress for watchers (a line of JSON per report) in the node's logs folder, where this
    worker can see it (best effort: a worker on another node may not share the disk)."""
    if not path or not os.path.isdir(os.path.dirname(path)):
        return
    try:
        with open(path, "a") as f:
            f.write(json.dumps({"t": round(time.time(), 2), **fields}) + "\n")
    except OSError:
        pass


SCRATCH = re.compile(r"^trex-(?:best|eval)-(\d+)-")


def _scratch(prefix: str) -> str:
    """A temporary folder named after this process, so that a later trial can remove it if this worker is
    killed before it cleans up (`sweep_scratch`)."""
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


def sweep_scratch(where: str | None = None) -> list[str]:
    """Remove the checkpoint and evaluation folders of training workers on this host that are gone (a worker
    killed mid-trial by a lost node, a timeout or the OOM killer never reaches its clean-up). Returns them."""
    where = where or tempfile.gettempdir()
    gone = []
    try:
        names = os.listdir(where)
    except OSError:
        return gone
    for name in names:
        m = SCRATCH.match(name)
        if not m or _alive(int(m.group(1))):
            continue
        shutil.rmtree(os.path.join(where, name), ignore_errors=True)
        gone.append(name)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: str) -> None:
    """Delete a folder, local or at a filesystem URI, if it exists."""
    if "://" not in path:
        shutil.rmtree(path, ignore_errors=True)
        return
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(path)
    if fs.get_file_info(p).type == pafs.FileType.Directory:
        fs.delete_dir(p)


def _died_at_start(err: BaseException) -> BaseException | None:
    """The worker death behind a Ray Train controller error, if that is what it is."""
    cause = getattr(err, "controller_failure", None)
    return cause if cause is not None and _worker_died(cause) else None


def _death(err: BaseException) -> str:
    """A worker's death in a line: the start of Ray's report and, where it gives one, why the process ended
    (which Ray's report puts past where a message is cut)."""
    import re

    text = str(err)
    why = re.search(r"Worker exit detail: ([^\n]*)", text)
    return text[:300] + (f" ... (exit detail: {why.group(1)[:300]})" if why and why.end() > 300 else "")


def _worker_died(err: BaseException) -> bool:
    """A worker that is gone (its process or node died), as opposed to one whose code raised."""
    import ray.exceptions

    if isinstance(err, ray.exceptions.RayActorError):
        return True
    try:  # Ray Train V2 reports a vanished worker as a failed health check
        from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError
    except ImportError:  # pragma: no cover - Train V1
        return False
    return isinstance(err, (WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError))


def worker_resources(use_gpu: bool, extra: dict | None) -> dict | None:
    """A training worker's resource request: a GPU (Ray Train adds it) or one CPU, plus `extra`."""
    base = {} if use_gpu else {"CPU": 1}
    merged = {**base, **(extra or {})}
    return merged or None


def train_bundle(use_gpu: bool, train_resources: dict | None) -> dict:
    """What one trial's training worker asks of the cluster (what Ray Train's ScalingConfig makes of
    `worker_resources`: a GPU is added there): the shape the autoscaler is asked to make room for."""
    return {**({"GPU": 1} if use_gpu else {}), **(worker_resources(use_gpu, train_resources) or {})}


def _downsample(xs: list[float], n: int) -> list[float]:
    if len(xs) <= n:
        return xs
    k = len(xs) / n
    return [round(sum(xs[int(i * k): int((i + 1) * k)]) / max(1, len(xs[int(i * k): int((i + 1) * k)])), 4)
            for i in range(n)]


def dashboard_session(address: str, timeout: float = 2.0) -> str | None:
    """The session a Ray dashboard at `address` (host:port) names for itself, or None where nothing answers
    there as a Ray dashboard. A cluster with token authentication answers only a request that carries the
    token, which is sent where this process has one."""
    import json
    import urllib.request

    headers = {}
    try:
        from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

        headers = get_auth_headers_if_auth_enabled({}) or {}
    except Exception:  # noqa: BLE001 - an older Ray: no token authentication
        pass
    try:
        req = urllib.request.Request(f"http://{address}/api/version", headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read()).get("session_name")
    except (OSError, ValueError, AttributeError):  # nothing there, refused us, or not a Ray dashboard
        return None


_SERVED: set[str] = set()  # the sessions whose own dashboard has answered (in this process)


def _state_api_served() -> bool:
    """Whether this cluster serves Ray's state API: its dashboard answers at the address the cluster
    advertises, and it is this cluster's own. A cluster that runs no dashboard (the local one
    `runtime.init_ray` starts) still advertises the default address, 127.0.0.1:8265, where another cluster
    on the machine (a `ray start` head) may serve its own dashboard. That one does not know this cluster's
    actors: asked by Ray Train's placement-group cleaner whether a live run's controller is alive, it says
    there is no such actor, and the cleaner removes the run's placement group, killing its workers. So the
    answer is yes only when the dashboard names this cluster's session; anything unknown is a no (a cleaner
    left out costs a group left behind by a controller that died, which `release_orphan_placement_groups`
    sweeps on our own cluster; a wrong cleaner kills live runs).

    A yes is kept per session (a cluster's own dashboard stays while the cluster runs); a no is asked again
    at the next trial, since a `ray start` head's dashboard may still be starting when its first trial asks.
    Where nothing listens, asking again costs one refused local connection."""
    from ray.experimental import internal_kv

    try:
        address = internal_kv._internal_kv_get("dashboard", namespace="dashboard")
        session = internal_kv._internal_kv_get("session_name", namespace="session")
    except Exception:  # noqa: BLE001 - not readable: not known to be served
        return False
    if not address or not session:
        return False
    session = session.decode()
    if session not in _SERVED and dashboard_session(address.decode()) == session:
        _SERVED.add(session)
    return session in _SERVED


def _trainer_class(num_workers: int = 1):
    """Ray Train's trainer for a run of `num_workers` workers, less two per-run helpers it starts that a
    trial has no use for.

    Several workers: `TorchTrainer`, whose backend brings up the torch process group that DDP and the
    loop's all-reduces use. A lone worker has nobody to synchronise with: it runs under the plain
    `DataParallelTrainer` (the same controller, worker group, reports, checkpoints and restarts) with
    Ray Train's no-op backend, which keeps torch out of the run's controller process (~1.8 CPU-s of
    imports a trial: the torch backend's config module imports torch wherever it is unpickled) and
    skips a one-process gloo group. On a GPU the lone worker sees only its own device, which is then
    `cuda:0`, the device TorchTrainer would have set.

    The helpers left out:
    - its Ray Data manager, an actor (a process of its own, ~1.4 CPU-s to start) created for every run
      even with no `datasets`: a trial's rows reach its workers as one Arrow table instead (`_shard`);
    - where the cluster serves no state API of its own (`_state_api_served`), its placement-group
      cleaner. Ray Train starts a detached cleaner per run that asks the state API whether the run's
      controller is alive, and at the end of every run waits up to 12 s for it to stop. Where no state
      API is served the cleaner can never clean anything; where a `ray start` cluster once ran on the
      machine it asks that dead cluster and hangs, so every trial ended 12 s late; and where another
      cluster's dashboard answers at the address this cluster advertises, it hears that the controller
      does not exist and removes the live run's placement group, killing its workers. On such clusters
      (the local ones `init_ray` starts) `runtime.release_orphan_placement_groups` does the cleaner's work.
    """
    if num_workers > 1:
        from ray.train.torch import TorchTrainer as base
    else:
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer as base

    unused = {"DatasetsCallback"} | (set() if _state_api_served() else {"PlacementGroupCleanerCallback"})

    class Trainer(base):
        def _create_default_callbacks(self):
            return [c for c in super()._create_default_callbacks() if type(c).__name__ not in unused
                    or (type(c).__name__ == "DatasetsCallback" and self.datasets)]

    return Trainer


def fit(
    *, data_dir: str, model_path: str, train_cfg: dict, init_adapter: str | None, node_dir: str,
    num_workers: int = 1, use_gpu: bool = False, threads: int | None = None, micro_batch_size: int | None = None,
    memory_limit_gb: float | None = None, resources: dict | None = None, retries: int = 1,
    node_uri: str | None = None, reporter=None, early: dict | None = None, concurrent_workers: int | None = None,
) -> dict:
    """Run the training loop under Ray Train; copy the artifact into `node_dir`; return train stats.

    `resources`: what each training worker asks of the cluster beyond its CPU or GPU (a custom resource
    such as an accelerator type). `retries`: how many times a run whose workers died (a lost node) is
    started again before it counts as failed; a run that failed in its own code is not. `reporter(stage, **info)`
    (picklable, see `progress.TrialReporter`) hears the step, steps and loss about once a second. `early`:
    in-training val evaluation and early stopping (`executor.trial.early_stopping`); None trains the plan's
    epochs unchecked. `memory_limit_gb`: the cap on each worker's memory beyond its model; unset on CPU, each
    worker takes a share of its node's free memory (`auto_memory_limit_gb`) given the `concurrent_workers`
    training at once in the search (None: uncapped)."""
    import pyarrow.dataset as pads
    import ray
    import ray.train
    from ray.train import FailureConfig, RunConfig, ScalingConfig

    # same storage + name would make Ray Train resume a stale run: start from an empty one. On a storage
    # URI the workers' checkpoint goes there (nodes without the driver's disk can write it)
    storage = f"{node_uri}/ray_train" if node_uri else os.path.join(node_dir, "ray_train")
    os.makedirs(os.path.join(node_dir, "logs"), exist_ok=True)
    # a lone worker reports its own errors as a result (train_loop), so Ray Train's restarts go to lost
    # workers only. Several workers raise theirs, and Ray Train would restart every failure alike: for
    # them the restarts are made here, after a lost worker only
    ray_restarts = retries if num_workers == 1 else 0

    # read here, into the object store: the workers may be on nodes that cannot see `data_dir`, and no
    # read task has to wait for a CPU (a 1-CPU cluster, where the worker holds the only one)
    rows = ray.put(pads.dataset(data_dir, format="parquet").to_table())

    def trainer():
        _remove(storage)
        return _trainer_class(num_workers)(
            train_loop,
            # the parent's adapter travels with the config, for workers on nodes without this disk
            train_loop_config={"train": train_cfg, "model_path": model_path,
                               "init_adapter": shipping.ship(init_adapter, always=True),
                               "threads": threads, "micro_batch_size": micro_batch_size,
                               "memory_limit_gb": memory_limit_gb, "reporter": reporter, "early": early,
                               "auto_memory_workers": None if use_gpu else concurrent_workers,
                               "rows": rows,
                               "progress_path": os.path.join(node_dir, "logs", "train_progress.jsonl")},
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                         resources_per_worker=worker_resources(use_gpu, resources)),
            run_config=RunConfig(storage_path=storage, name="fit",
                                 failure_config=FailureConfig(max_failures=ray_restarts)),
        )

    attempt = 0
    while True:
        try:
            result = trainer().fit()
            break
        except ray.train.TrainingFailedError as e:
            failures = list((getattr(e, "worker_failures", None) or {}).values())
            # a worker that died while Ray Train launched the group reaches us as the controller's own error,
            # which Ray never retries (its launch call is outside its start-up retries): a lost worker too,
            # with every restart still ours to make
            at_start = _died_at_start(e) if not failures else None
            failures = failures or ([at_start] if at_start is not None else [])
            known = [k for k in map(classify, failures) if k is not None]
            lost = [f for f in failures if _worker_died(f)]
            if lost and not known and attempt < retries - (0 if at_start is not None else ray_restarts):
                attempt += 1
                continue
            if lost and not known:
                raise WorkerLost(f"the training workers died (their node was lost or killed) and {retries} "
                                 f"restart(s) allowed by train_retries did not finish the run: {_death(lost[0])}") from None
            # the workers' own exception, not Ray's wrapper text; with several workers, the one that is a
            # known failure (the others' errors may only echo it, e.g. a peer that left a collective)
            if known:
                raise known[0] from None
            if failures:
                err = failures[0]
                raise RuntimeError(f"{type(err).__name__}: {err}") from None
            k = classify(e)
            if k is not None:
                raise k from None
            raise
    if result.checkpoint is None:
        raise RuntimeError(f"training reported no checkpoint ({result.error})")
    failure = None
    with result.checkpoint.as_directory() as d:
        if os.path.exists(os.path.join(d, "failure.json")):  # the worker's own error, reported (train_loop)
            with open(os.path.join(d, "failure.json")) as f:
                failure = json.load(f)
    if failure is not None:  # read and out of the checkpoint: now its folder can go
        _remove(storage)
        failed, message = failure["failed"], failure["message"]
        known = {"diverged": Diverged, "out_of_memory": OutOfMemory}.get(failure["known"])
        raise known(message if known is Diverged else f"{failed}: {message}") if known else \
            RuntimeError(f"{failed}: {message}")
    with result.checkpoint.as_directory() as d:
        with open(os.path.join(d, "train_stats.json")) as f:
            stats = json.load(f)
        name = "adapter" if train_cfg["method"] == "lora" else "model"
        dst = os.path.join(node_dir, name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(os.path.join(d, name), dst)
    _remove(storage)  # the copy in the node folder is the artifact of record
    stats["artifact"] = dst
    return stats
