"""From a task's splits to the JSONL files and `trex_ray.Task` a search runs on, in a profile.

- `full`: the splits as the task's split policy defines them.
- `lite`: for a 2-core CPU and SmolLM2-135M in one to two hours a task: rows whose input+output are longer
  than the task's `lite_max_chars` are dropped, then each split is cut to the task's `lite` sizes (a
  seeded sample), and the train split to `LITE_TRAIN_TOKENS` tokens as SmolLM2-135M trains on them (its
  tokenizer and chat template, the task's system prompt; a seeded subset). Lite scores are for
  development; they are not comparable with full runs.
- `smoke`: lite cut further, to at most `SMOKE` rows per split: a check that a task runs end to end and
  learns, in a few minutes on 2 cores (CI's FT-Bench run). Its scores say little.

The prepared folder holds train/val/test.jsonl and manifest.json (source, policy, row counts, profile).
"""

from __future__ import annotations

import hashlib
import json
import os
import random

from ftbench.tasks import SEED, Splits, TaskSpec, get_spec, load

PROFILES = ("full", "lite", "smoke")
SMOKE = (96, 32, 64)  # at most this many rows per split (train, val, test) in the smoke profile
# The lite train split's size in tokens. Training on CPU is compute-bound: SmolLM2-135M trains about 100-150
# tokens a second on one core (2 trials in flight on 2 cores), and a trial passes over the split up to its
# epoch cap (6 for these sizes), so the time of a task follows its tokens, not its rows. sst2, econlogicqa
# and cs_bench (15-19k tokens) ran in 45-90 min; tomg_bench's 450 rows (76k tokens) trained at 30 s a step,
# 5 hours for its six trials. Measured with the packaged model's tokenizer whatever model a run uses.
LITE_TRAIN_TOKENS = 20_000
LITE_YARDSTICK = "smollm2-135m"


def train_tokens(spec: TaskSpec, rows: list[dict]) -> list[int]:
    """Each row's length in tokens as the lite profile's model trains on it: the templated prompt (the task's
    system prompt and input) and the answer with its end of turn."""
    from trex_ray.models import resolve_model, token_lengths
    from trex_ray.prompting import task_system

    prompts, answers = token_lengths(resolve_model(LITE_YARDSTICK), rows, task_system(spec.goal))
    return [p + a for p, a in zip(prompts, answers)]


def _within_tokens(spec: TaskSpec, rows: list[dict], budget: int) -> list[dict]:
    """`rows` cut to a seeded random subset of at most `budget` tokens (all of them where they fit): rows are
    taken in a seeded order until the next would pass the budget, so long and short rows are kept alike."""
    lengths = train_tokens(spec, rows)
    if sum(lengths) <= budget:
        return rows
    order = list(range(len(rows)))
    random.Random(f"{SEED}:lite-tokens:{spec.id}").shuffle(order)
    kept, total = [], 0
    for i in order:
        if total + lengths[i] > budget:
            break
        kept.append(i)
        total += lengths[i]
    return [rows[i] for i in sorted(kept)]


def apply_profile(spec: TaskSpec, splits: Splits, profile: str) -> Splits:
    if profile not in PROFILES:
        from trex_ray.errors import ConfigError

        raise ConfigError("profile", f"unknown profile {profile!r}", f"use one of: {', '.join(PROFILES)}")
    if profile == "full":
        return splits
    caps = spec.lite if profile == "lite" else tuple(min(a, b) for a, b in zip(spec.lite, SMOKE))
    out = []
    for name, rows, cap in zip(("train", "val", "test"), (splits.train, splits.val, splits.test), caps):
        if spec.lite_max_chars:
            short = [r for r in rows if len(r["input"]) + len(r["output"]) <= spec.lite_max_chars]
            rows = short if len(short) >= min(cap, len(rows)) // 2 else rows  # never starve a split of long rows
        if len(rows) > cap:
            idx = sorted(random.Random(f"{SEED}:lite:{spec.id}:{name}").sample(range(len(rows)), cap))
            rows = [rows[i] for i in idx]
        if profile == "lite" and name == "train":
            rows = _within_tokens(spec, rows, LITE_TRAIN_TOKENS)
        out.append(rows)
    return Splits(*out, source=splits.source, notes=[*splits.notes, f"{profile} profile: at most {caps} rows "
                  f"(train, val, test)" + (f", input+output <= {spec.lite_max_chars} chars" if spec.lite_max_chars else "")
                  + (f", train within {LITE_TRAIN_TOKENS:,} tokens ({LITE_YARDSTICK})" if profile == "lite" else "")])


def prepare(task: str, out_dir: str, *, profile: str = "lite", data_dir: str | None = None):
    """Write the task's splits under `out_dir` and return the `trex_ray.Task` for them."""
    from trex_ray.metrics import get_metric
    from trex_ray.task import Task

    spec = get_spec(task)
    splits = apply_profile(spec, load(task, data_dir), profile)
    os.makedirs(out_dir, exist_ok=True)
    texts = {name: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in getattr(splits, name))
             for name in ("train", "val", "test")}
    digest = hashlib.sha256("".join(texts.values()).encode()).hexdigest()
    manifest = {"task": spec.id, "profile": profile, "source": splits.source, "split_policy": spec.split_policy,
                "notes": splits.notes, "rows": {n: len(getattr(splits, n)) for n in texts}, "metric": spec.metric,
                "metric_options": spec.metric_options, "sha256": digest}
    mpath = os.path.join(out_dir, "manifest.json")
    old = json.load(open(mpath)) if os.path.isfile(mpath) else {}
    files = [os.path.join(out_dir, f"{n}.jsonl") for n in texts]
    if old.get("sha256") != digest or not all(os.path.isfile(f) for f in files):
        # unchanged files are left alone: their size and mtime key trex-ray's prepared-data cache
        for name, text in texts.items():
            path = os.path.join(out_dir, f"{name}.jsonl")
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
        with open(mpath, "w") as f:
            json.dump(manifest, f, indent=1, ensure_ascii=False)
    return Task.from_jsonl(
        name=f"ftbench-{spec.id}" + ("" if profile == "full" else f"-{profile}"), goal=spec.goal,
        train=os.path.join(out_dir, "train.jsonl"), val=os.path.join(out_dir, "val.jsonl"),
        test=os.path.join(out_dir, "test.jsonl"), metric=spec.metric, metric_options=dict(spec.metric_options),
        labels=list(spec.labels) if spec.labels else None,
        context_field="context" if get_metric(spec.metric).context else None,
    )
