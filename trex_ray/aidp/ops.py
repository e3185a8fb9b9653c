"""The operator registry of data recipes: each op has a name, typed arguments (a pydantic model with
field descriptions, shown to the Researcher as the catalogue) and an `apply(ds, args, ctx)` that maps a
Ray Data dataset to a new one. Rows flowing through a recipe have the columns `input` and `output`
(the task's fields, renamed by `load`); `format` adds `system` and `user` (the rendered prompt).

Filters compute a statistic and keep or drop on it. Nothing here imports Ray at module import time:
`apply` functions receive a `ray.data.Dataset` and call its methods.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OpArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoadArgs(OpArgs):
    split: Literal["train"] = Field(
        "train", description="Which task split to load. Only 'train' is allowed: val and test never feed training."
    )
    path: str | None = Field(
        None, description="Optional extra JSONL file to load instead of the task split (same field names unless set)."
    )
    input_field: str | None = Field(None, description="Input field in `path` (default: the task's input field).")
    output_field: str | None = Field(None, description="Output field in `path` (default: the task's output field).")


class FormatArgs(OpArgs):
    template: str = Field(
        "{input}", description="User message template; `{input}` is replaced by the example's input text."
    )
    system: str | None = Field(None, description="System prompt; None uses a short neutral one.")

    @model_validator(mode="after")
    def _has_input(self) -> "FormatArgs":
        if "{input}" not in self.template:
            raise ValueError("template must contain the placeholder {input}")
        return self


class LengthFilterArgs(OpArgs):
    min_chars: int = Field(1, ge=0, description="Drop rows whose input or output is shorter than this (characters).")
    max_chars: int | None = Field(None, ge=1, description="Drop rows whose input+output is longer than this.")
    max_tokens: int | None = Field(
        None, ge=8, description="Drop rows whose input+output is longer than this many tokens of the base model."
    )


class DedupExactArgs(OpArgs):
    fields: list[Literal["input", "output"]] = Field(
        default_factory=lambda: ["input", "output"],
        description="Rows with identical values (after whitespace/case normalisation) in these fields are duplicates.",
    )


class SampleArgs(OpArgs):
    n: int | None = Field(None, ge=1, description="Keep at most n rows (uniformly at random).")
    fraction: float | None = Field(None, gt=0, le=1, description="Keep this fraction of rows (uniformly at random).")
    seed: int = Field(0, description="Sampling seed.")

    @model_validator(mode="after")
    def _one_of(self) -> "SampleArgs":
        if (self.n is None) == (self.fraction is None):
            raise ValueError("give exactly one of n or fraction")
        return self


@dataclass(frozen=True)
class OpContext:
    """What an op may read besides its arguments: the task's files and field names, the tokenizer path."""

    train_path: str
    input_field: str
    output_field: str
    tokenizer_path: str | None = None


@dataclass(frozen=True)
class Op:
    name: str
    args: type[OpArgs]
    description: str
    apply: Callable[[Any, Any, OpContext], Any]
    needs_llm: bool = False
    needs_embedding: bool = False
    needs_gpu: bool = False


def _norm(s: str) -> str:
    return " ".join(str(s).split()).lower()


def _read_jsonl_dataset(path: str, input_field: str, output_field: str):
    import ray.data

    ds = ray.data.read_json(path, lines=True)
    return ds.map_batches(
        lambda b: {"input": [str(x) for x in b[input_field]], "output": [str(x) for x in b[output_field]]},
        batch_format="pandas",
    )


def _load(ds, a: LoadArgs, ctx: OpContext):
    if a.path is not None:
        return _read_jsonl_dataset(a.path, a.input_field or ctx.input_field, a.output_field or ctx.output_field)
    return _read_jsonl_dataset(ctx.train_path, ctx.input_field, ctx.output_field)


def _format(ds, a: FormatArgs, ctx: OpContext):
    template, system = a.template, a.system

    def fmt(b):
        b["system"] = [system or ""] * len(b)
        b["user"] = [template.replace("{input}", x) for x in b["input"]]
        return b

    return ds.map_batches(fmt, batch_format="pandas")


def _length_filter(ds, a: LengthFilterArgs, ctx: OpContext):
    tok_path = ctx.tokenizer_path if a.max_tokens is not None else None

    def stat(b):
        b["_chars"] = [len(i) + len(o) for i, o in zip(b["input"], b["output"])]
        b["_short"] = [min(len(i.strip()), len(o.strip())) < a.min_chars for i, o in zip(b["input"], b["output"])]
        if tok_path:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tok_path)
            b["_tokens"] = [len(tok(i + " " + o)["input_ids"]) for i, o in zip(b["input"], b["output"])]
        return b

    def keep(row) -> bool:
        if row["_short"]:
            return False
        if a.max_chars is not None and row["_chars"] > a.max_chars:
            return False
        if tok_path and row["_tokens"] > a.max_tokens:
            return False
        return True

    cols = ["_chars", "_short"] + (["_tokens"] if tok_path else [])
    return ds.map_batches(stat, batch_format="pandas").filter(keep).drop_columns(cols)


def _dedup_exact(ds, a: DedupExactArgs, ctx: OpContext):
    fields = list(a.fields)

    def key(b):
        b["_key"] = [
            hashlib.sha1("\x1f".join(_norm(b[f].iloc[i]) for f in fields).encode()).hexdigest() for i in range(len(b))
        ]
        return b

    def first(g):
        return g.sort_values("_order").head(1)

    def order(b):
        # A deterministic tie-break so the same row survives on every run.
        b["_order"] = [hashlib.sha1((i + "\x1f" + o).encode()).hexdigest() for i, o in zip(b["input"], b["output"])]
        return b

    ds = ds.map_batches(key, batch_format="pandas").map_batches(order, batch_format="pandas")
    return ds.groupby("_key").map_groups(first, batch_format="pandas").drop_columns(["_key", "_order"])


def _sample(ds, a: SampleArgs, ctx: OpContext):
    ds = ds.random_shuffle(seed=a.seed)
    if a.n is not None:
        return ds.limit(a.n)
    n = ds.count()
    return ds.limit(max(1, int(round(n * a.fraction))))


OPS: dict[str, Op] = {
    op.name: op
    for op in [
        Op("load", LoadArgs, "Load the task's train split (or an extra JSONL file) into rows of input/output.", _load),
        Op("format", FormatArgs, "Render each row into the chat prompt: system prompt + user template.", _format),
        Op("length_filter", LengthFilterArgs, "Drop rows that are too short or too long (chars or tokens).", _length_filter),
        Op("dedup_exact", DedupExactArgs, "Drop exact duplicates after whitespace/case normalisation.", _dedup_exact),
        Op("sample", SampleArgs, "Random sample or limit of the rows, seeded.", _sample),
    ]
}


def catalogue() -> list[dict]:
    """The op catalogue for a Researcher: names, descriptions and JSON schemas of the arguments."""
    return [
        {
            "name": op.name,
            "description": op.description,
            "args": op.args.model_json_schema(),
            "needs_llm": op.needs_llm,
            "needs_embedding": op.needs_embedding,
            "needs_gpu": op.needs_gpu,
        }
        for op in OPS.values()
    ]
