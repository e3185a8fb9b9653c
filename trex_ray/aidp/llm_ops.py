"""Ops that prompt an LLM: synthesise new examples, rewrite existing ones, judge their quality.

They go through the same backend interface as the Researcher (`trex_ray.llm`), batched through Ray: the
backend lives in a Ray Data actor pool (`generate`), loaded once per actor, and each op only builds
prompts before it and parses completions after it. Offline the backend is a local model (by default
the packaged SmolLM2) generating through the evaluation engine. A completion that cannot be used
(unparseable, empty, not matching the required output pattern) drops its row with a counted reason.

- `synthesize`: n new examples, each written from a few seeded examples of the current rows.
- `rewrite`: paraphrase the input, or add a short rationale after the answer (the answer stays on the
  first line, which is what the metrics score), or follow a custom instruction; as extra rows or in place.
- `llm_judge`: a 1-5 quality score per row; rows under `min_score` are dropped.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trex_ray.aidp.base import OpArgs, OpContext
from trex_ray.aidp.rows import COLUMNS, filter_rows, record, rows_where

SYSTEM = "You write and check training data for fine-tuning a language model. Follow the requested format exactly."


class _Generate:
    """Ray Data actor: one LLM backend; completes the `_prompt` column (JSON conversations) into `_gen`."""

    def __init__(self, spec: dict, threads: int | None, max_tokens: int, temperature: float, seed: int):
        from trex_ray.llm import LLMSpec, make_llm
        from trex_ray.modeling import torch_threads

        torch_threads(threads)
        self.llm = make_llm(LLMSpec.model_validate(spec))
        self.kw = {"max_tokens": max_tokens, "temperature": temperature}
        self.seed = seed

    def __call__(self, batch):
        todo = [i for i, c in enumerate(batch["_prompt"]) if c]  # an empty prompt is a row to pass through
        convs = [json.loads(batch["_prompt"].iloc[i]) for i in todo]
        # the sampling seed follows the batch's content, not which actor or when it ran
        seed = self.seed + int(hashlib.sha1("".join(batch["_prompt"]).encode()).hexdigest()[:8], 16)
        gen = [""] * len(batch)
        for i, text in zip(todo, self.llm.chat(convs, seed=seed, **self.kw) if convs else []):
            gen[i] = text
        batch["_gen"] = gen
        return batch


def spec_of(ctx: OpContext) -> dict:
    """The context's LLM spec as plain data (None: the packaged local model)."""
    from trex_ray.llm import LLMSpec

    return LLMSpec.model_validate(ctx.llm or {}).model_dump()


def generate(ds, ctx: OpContext, *, max_tokens: int, temperature: float, seed: int):
    """Complete every row's `_prompt` with the context's LLM, in an actor pool (one actor per model copy)."""
    import ray.data

    spec = spec_of(ctx)
    return ds.map_batches(
        _Generate, batch_format="pandas", batch_size=spec["batch_size"],
        fn_constructor_kwargs={"spec": spec, "threads": ctx.threads, "max_tokens": max_tokens,
                               "temperature": temperature, "seed": seed},
        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1, num_gpus=1 if ctx.use_gpu else 0,
    )


def conversation(user: str) -> str:
    return json.dumps([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])


def example_block(inp: str, out: str) -> str:
    return f"Input: {inp}\nOutput: {out}"


_EXAMPLE = re.compile(r"Input:\s*(?P<input>.+?)\s*\n\s*Output:\s*(?P<output>.+?)\s*(?:\n\s*Input:|$)", re.S)


def parse_example(text: str) -> tuple[str, str] | None:
    m = _EXAMPLE.search(text.replace("**", ""))
    if not m:
        return None
    inp, out = m.group("input").strip(), m.group("output").strip()
    return (inp, out) if inp and out else None


def _valid_regex(v: str | None) -> str | None:
    if v is not None:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
    return v


# ---------------------------------------------------------------- synthesize


class SynthesizeArgs(OpArgs):
    n: int = Field(ge=1, le=100_000, description="New examples to request from the LLM.")
    instruction: str | None = Field(None, description="Extra guidance for the new examples, e.g. 'harder cases'.")
    shots: int = Field(3, ge=1, le=16, description="Existing examples shown in each request.")
    temperature: float = Field(0.8, ge=0, le=2, description="Sampling temperature (0 = greedy).")
    max_new_tokens: int = Field(128, ge=8, le=4096, description="Length limit of each generated example.")
    output_regex: str | None = Field(None, description="A generated output must fully match this pattern, else it is dropped.")
    keep_original: bool = Field(True, description="Keep the current rows and add the new ones (false: new ones only).")
    seed: int = Field(0, description="Seed for the choice of shown examples and for sampling.")

    _check = field_validator("output_regex")(_valid_regex)


def synthesize(ds, a: SynthesizeArgs, ctx: OpContext):
    import ray.data

    ds = ds.materialize()  # the seeds are read from it and it is unioned back: run the upstream ops once
    pool = sorted(((r["input"], r["output"]) for r in ds.random_shuffle(seed=a.seed).limit(512).take_all()))
    if not pool:
        return ds
    rng = random.Random(a.seed)
    goal = f"The task: {ctx.goal.strip()}\n\n" if ctx.goal.strip() else ""
    extra = f"\n{a.instruction.strip()}" if a.instruction else ""
    requests = []
    for j in range(a.n):
        shown = rng.sample(pool, min(a.shots, len(pool)))
        body = "\n\n".join(example_block(i, o) for i, o in shown)
        user = (f"{goal}Here are examples of the task:\n\n{body}\n\nWrite one new example that is different from "
                f"these, in exactly the same format: a line starting with 'Input:' and a line starting with "
                f"'Output:'.{extra}")
        requests.append({"_prompt": conversation(user), "_req": j})
    record(ctx.stats, ctx.index, work={"synthesize:requested": a.n})
    seen = {(i.strip().lower()) for i, _ in pool}
    pattern = re.compile(a.output_regex) if a.output_regex else None
    stats, index = ctx.stats, ctx.index

    def parse(batch):
        inputs, outputs, dropped = [], [], Counter()
        for text in batch["_gen"]:
            ex = parse_example(text)
            if ex is None:
                dropped["unparseable generation"] += 1
            elif pattern is not None and not pattern.fullmatch(ex[1]):
                dropped["output does not match output_regex"] += 1
            elif ex[0].strip().lower() in seen:
                dropped["copy of a shown example"] += 1
            else:
                inputs.append(ex[0])
                outputs.append(ex[1])
        record(stats, index, dropped=dropped, work={"synthesize:generated": len(inputs)})
        return {"input": inputs, "output": outputs, "chat": [""] * len(inputs)}

    new = generate(ray.data.from_items(requests), ctx, max_tokens=a.max_new_tokens, temperature=a.temperature,
                   seed=a.seed).map_batches(parse, batch_format="pandas")
    return ds.select_columns(COLUMNS).union(new) if a.keep_original else new


# ---------------------------------------------------------------- rewrite

REWRITE = {
    "paraphrase": "Rewrite the input below in different words. Keep its meaning and every detail needed to give "
                  "the same answer. Reply with the rewritten input only.",
    "reasoning": "Explain in one or two short sentences why the output is the right answer for the input. "
                 "Reply with the explanation only.",
}


class RewriteArgs(OpArgs):
    style: Literal["paraphrase", "reasoning", "custom"] = Field(
        "paraphrase", description="paraphrase the input; add a short rationale after the answer; or follow `instruction`.")
    instruction: str | None = Field(None, description="For style=custom: how to rewrite `field`.")
    field: Literal["input", "output"] = Field("input", description="For style=custom: the field rewritten.")
    mode: Literal["augment", "replace"] = Field("augment", description="Add rewritten copies, or rewrite rows in place.")
    fraction: float = Field(1.0, gt=0, le=1, description="Fraction of rows rewritten (seeded choice).")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0 = greedy).")
    max_new_tokens: int = Field(96, ge=4, le=4096, description="Length limit of each rewrite.")
    seed: int = Field(0, description="Seed for which rows are rewritten and for sampling.")

    @model_validator(mode="after")
    def _custom(self) -> "RewriteArgs":
        if self.style == "custom" and not (self.instruction or "").strip():
            raise ValueError("style=custom needs an instruction")
        return self


def _chosen(row: dict, fraction: float, seed: int) -> bool:
    h = hashlib.sha1(f"{seed}\x1f{row['input']}\x1f{row['output']}".encode()).hexdigest()
    return int(h[:8], 16) / 0xFFFFFFFF < fraction


def rewrite(ds, a: RewriteArgs, ctx: OpContext):
    field = "output" if a.style == "reasoning" else ("input" if a.style == "paraphrase" else a.field)
    instruction = a.instruction if a.style == "custom" else REWRITE[a.style]
    stats, index = ctx.stats, ctx.index

    def prompts(batch):
        rows = batch.to_dict("records")
        batch["_prompt"] = [conversation(f"{instruction}\n\n{example_block(r['input'], r['output'])}")
                            if _chosen(r, a.fraction, a.seed) else "" for r in rows]
        return batch

    def chosen(batch):
        return rows_where(batch, [_chosen(r, a.fraction, a.seed) for r in batch.to_dict("records")])

    def apply(batch):
        rows, out, failed = batch.to_dict("records"), [], Counter()
        for r in rows:
            text = r["_gen"].strip()
            if a.style != "reasoning":
                text = re.sub(r"^(rewritten )?(input|output)\s*:\s*", "", text, flags=re.I).strip()
            new = dict(r)
            if not text:
                failed["empty rewrite"] += 1
            elif a.style == "reasoning":
                new["output"] = f"{r['output']}\n{' '.join(text.split())}"
            elif " ".join(text.split()).lower() == " ".join(str(r[field]).split()).lower():
                failed["rewrite identical to the original"] += 1
            else:
                new[field] = text
            if new != r or a.mode == "replace":  # in place, a failed rewrite keeps the original row
                out.append(new)
        if a.mode == "augment":
            record(stats, index, dropped=failed, work={"rewrite:rewritten": len(out)})
        else:
            record(stats, index, work={"rewrite:rewritten": len(out) - sum(failed.values()),
                                       **{f"rewrite:kept original ({k})": v for k, v in failed.items()}})
        import pandas as pd

        return pd.DataFrame(out, columns=list(batch.columns)).drop(columns=["_prompt", "_gen"])

    ds = ds.select_columns(COLUMNS)
    if a.mode == "augment":
        ds = ds.materialize()  # read twice (originals + rewrites): run the upstream ops once
        picked = ds.map_batches(chosen, batch_format="pandas")
    else:
        picked = ds
    gen = generate(picked.map_batches(prompts, batch_format="pandas"), ctx, max_tokens=a.max_new_tokens,
                   temperature=a.temperature, seed=a.seed)
    if a.mode == "augment":
        return ds.union(gen.map_batches(apply, batch_format="pandas"))

    # in place: rows not chosen pass through unchanged (their prompt is generated only when chosen)
    def keep_or_apply(batch):
        import pandas as pd

        mask = [bool(p) for p in batch["_prompt"]]
        done = apply(rows_where(batch, mask)) if any(mask) else batch.iloc[0:0].drop(columns=["_prompt", "_gen"])
        rest = rows_where(batch, [not m for m in mask]).drop(columns=["_prompt", "_gen"])
        return pd.concat([rest, done], ignore_index=True)

    return gen.map_batches(keep_or_apply, batch_format="pandas")


# ---------------------------------------------------------------- llm_judge


class LLMJudgeArgs(OpArgs):
    criteria: str = Field("The output is a correct, complete answer to the input, and the input is clear.",
                          description="What a good example is, for the judge.")
    min_score: int = Field(3, ge=1, le=5, description="Rows the judge scores below this (1-5) are dropped.")
    unscored: Literal["keep", "drop"] = Field("keep", description="What to do with rows the judge gave no score.")
    max_new_tokens: int = Field(8, ge=1, le=256, description="Length limit of the judge's reply.")


_SCORE = re.compile(r"(?<!\d)([1-5])(?!\d)")


def judge_score(text: str) -> int | None:
    m = _SCORE.search(text)
    return int(m.group(1)) if m else None


def llm_judge(ds, a: LLMJudgeArgs, ctx: OpContext):
    stats, index = ctx.stats, ctx.index

    def prompts(batch):
        rows = batch.to_dict("records")
        batch["_prompt"] = [conversation(
            f"Rate this training example from 1 (wrong or useless) to 5 (excellent). Criteria: {a.criteria}\n\n"
            f"{example_block(r['input'], r['output'])}\n\nReply with a single digit from 1 to 5.") for r in rows]
        return batch

    def scored(batch):
        scores = [judge_score(t) for t in batch["_gen"]]
        record(stats, index, work=dict(Counter(f"llm_judge:score={'none' if s is None else s}" for s in scores)))
        batch["_score"] = [-1 if s is None else s for s in scores]
        return batch.drop(columns=["_prompt", "_gen"])

    def reason(r: dict) -> str | None:
        if r["_score"] < 0:
            return "judge gave no score" if a.unscored == "drop" else None
        return f"judge score below {a.min_score}" if r["_score"] < a.min_score else None

    ds = generate(ds.select_columns(COLUMNS).map_batches(prompts, batch_format="pandas"), ctx,
                  max_tokens=a.max_new_tokens, temperature=0.0, seed=0).map_batches(scored, batch_format="pandas")
    return filter_rows(ds, ctx.stats, ctx.index, reason, "llm_judge").drop_columns(["_score"])
