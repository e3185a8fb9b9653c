"""The operator registry of data recipes: the one place where ops are registered by name.

Each op has typed arguments (a pydantic model with field descriptions: the catalogue a Researcher plans
with), a kind, what it needs (an LLM, an embedding model, a GPU), and an `apply(ds, args, ctx)` that
maps a Ray Data dataset to a new one. Rows carry `input` and `output` (renamed from the source's
fields by `load`); `format`, always the last op, adds `system` and `user` (the rendered prompt).
Implementations live in sources.py, filters.py, dedup.py, semantic.py (embeddings), select.py and
llm_ops.py (ops that prompt an LLM); nothing here imports Ray.
"""

from __future__ import annotations

from trex_ray.aidp import dedup, filters, llm_ops, select, semantic, sources
from trex_ray.aidp.base import Op, OpArgs, OpContext
from trex_ray.aidp.dedup import DecontaminateArgs, DedupExactArgs, DedupMinhashArgs
from trex_ray.aidp.filters import FormatArgs, LengthFilterArgs, RegexFilterArgs, ScriptFilterArgs
from trex_ray.aidp.llm_ops import LLMJudgeArgs, RewriteArgs, SynthesizeArgs
from trex_ray.aidp.select import LabelBalanceArgs, MixArgs, SampleArgs, StratifiedSampleArgs
from trex_ray.aidp.semantic import DedupSemanticArgs, DiversitySelectArgs
from trex_ray.aidp.sources import LoadArgs

__all__ = ["OPS", "Op", "OpArgs", "OpContext", "catalogue", "FormatArgs", "LoadArgs", "SampleArgs"]

OPS: dict[str, Op] = {
    op.name: op
    for op in [
        Op("load", LoadArgs, "Load rows: the task's train split, a local JSONL/CSV/TSV/parquet file, or an HF dataset.",
           sources.load, kind="source"),
        Op("length_filter", LengthFilterArgs, "Drop empty/near-empty rows and rows too long in chars or tokens.",
           filters.length_filter, kind="filter"),
        Op("regex_filter", RegexFilterArgs, "Keep or drop rows whose input/output matches a regular expression.",
           filters.regex_filter, kind="filter"),
        Op("script_filter", ScriptFilterArgs, "Keep rows written mostly in the allowed Unicode scripts (language filter).",
           filters.script_filter, kind="filter"),
        Op("dedup_exact", DedupExactArgs, "Drop exact duplicates after whitespace/case normalisation.",
           dedup.dedup_exact, kind="dedup", extra={"reason": "exact duplicate"}),
        Op("dedup_minhash", DedupMinhashArgs, "Drop near-duplicates found by MinHash LSH (datasketch).",
           dedup.dedup_minhash, kind="dedup", extra={"reason": "exact duplicate"}),
        Op("dedup_semantic", DedupSemanticArgs,
           "Drop rows whose embedding (all-MiniLM-L6-v2) is within a cosine threshold of an earlier row: paraphrases.",
           semantic.dedup_semantic, kind="dedup", needs_embedding=True, extra={"reason": "exact duplicate"}),
        Op("decontaminate", DecontaminateArgs,
           "Drop training rows that duplicate or nearly duplicate a val/test input (on by default).",
           dedup.decontaminate, kind="dedup"),
        Op("sample", SampleArgs, "Random sample (n rows or a fraction), seeded.", select.sample, kind="select",
           extra={"reason": "not sampled"}),
        Op("stratified_sample", StratifiedSampleArgs, "Sample a fraction of each output label, keeping the label mix.",
           select.stratified_sample, kind="select", extra={"reason": "not sampled"}),
        Op("label_balance", LabelBalanceArgs, "Cap the rows of each output label (balance the labels).",
           select.label_balance, kind="select", extra={"reason": "over the label cap"}),
        Op("mix", MixArgs, "Weighted mixture of the current rows with other sources, to a total size.", select.mix,
           kind="select", extra={"reason": "outside the mixture share"}),
        Op("diversity_select", DiversitySelectArgs,
           "Keep the n most diverse rows: k-center greedy on sentence embeddings (covers rare kinds of input).",
           semantic.diversity_select, kind="select", needs_embedding=True,
           extra={"reason": "not selected for diversity"}),
        Op("synthesize", SynthesizeArgs,
           "Ask the LLM for n new examples written from a few existing ones; unusable generations are dropped.",
           llm_ops.synthesize, kind="generate", needs_llm=True),
        Op("rewrite", RewriteArgs,
           "LLM rewrite: paraphrase inputs, add a short rationale after the answer, or a custom rewrite; as extra "
           "rows or in place.", llm_ops.rewrite, kind="generate", needs_llm=True),
        Op("llm_judge", LLMJudgeArgs, "LLM-as-judge: score each row 1-5 for quality and drop rows under min_score.",
           llm_ops.llm_judge, kind="filter", needs_llm=True),
        Op("format", FormatArgs, "Render each row into the chat prompt (system prompt + user template). Last op.",
           filters.format_rows, kind="transform"),
    ]
}


def catalogue() -> list[dict]:
    """The op catalogue for a Researcher: names, descriptions, JSON schemas of the arguments, needs."""
    return [
        {
            "name": op.name,
            "kind": op.kind,
            "description": op.description,
            "args": op.args.model_json_schema(),
            "needs_llm": op.needs_llm,
            "needs_embedding": op.needs_embedding,
            "needs_gpu": op.needs_gpu,
        }
        for op in OPS.values()
    ]
