"""Deduplication and decontamination.

- `dedup_exact`: one row per normalised (whitespace, case) value of the chosen fields.
- `dedup_minhash`: near-duplicates by MinHash LSH (the `datasketch` library) over word 3-gram shingles
  (character 5-grams for short texts); the first row of each near-duplicate group, in a fixed order,
  survives. Exact duplicates go first.
- `decontaminate`: drop training rows whose input is an exact or near duplicate of a val or test input.
  The Executor appends it to every recipe unless the recipe disables it; drops are in the stats.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field

from trex_ray.aidp.base import OpArgs, OpContext, shuffle_partitions
from trex_ray.aidp.rows import cached_get, filter_rows, record


def norm(s: str) -> str:
    return " ".join(str(s).split()).lower()


def row_key(row: dict, fields: list[str]) -> str:
    """The fields compared, normalised, and a conversation's earlier turns (the same last exchange after
    another conversation is another example)."""
    chat = row.get("chat") or ""
    return hashlib.sha1("\x1f".join([*(norm(row[f]) for f in fields), *([chat] if chat else [])]).encode()).hexdigest()


def shingles(text: str, n: int = 3) -> set[str]:
    words = norm(text).split()
    if len(words) >= n:
        return {" ".join(words[i: i + n]) for i in range(len(words) - n + 1)}
    t = norm(text)
    return {t[i: i + 5] for i in range(max(1, len(t) - 4))}


def minhash(text: str, num_perm: int):
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=1, scheme="affine32")
    m.update_batch([s.encode() for s in shingles(text)])
    return m


class DedupExactArgs(OpArgs):
    fields: list[Literal["input", "output"]] = Field(
        default_factory=lambda: ["input", "output"],
        description="Rows with identical values (after whitespace/case normalisation) in these fields are duplicates.",
    )


def dedup_exact(ds, a: DedupExactArgs, ctx: OpContext):
    fields = list(a.fields)

    def key(b):
        rows = b.to_dict("records")
        b["_key"] = [row_key(r, fields) for r in rows]
        b["_order"] = [row_key(r, ["input", "output"]) for r in rows]  # same survivor on every run
        return b

    def first(part):  # a hash partition holds every row of its keys: keep each key's first row
        return part.sort_values(["_key", "_order"], kind="stable").drop_duplicates("_key").drop(columns=["_key", "_order"])

    # one hash shuffle, then one pass per partition (a per-group UDF would be a Python call per row)
    return (ds.map_batches(key, batch_format="pandas").repartition(shuffle_partitions(), keys=["_key"])
            .map_batches(first, batch_format="pandas", batch_size=None))


class DedupMinhashArgs(OpArgs):
    field: Literal["input", "output", "input+output"] = Field("input", description="Text compared for near-duplicates.")
    threshold: float = Field(0.8, gt=0, lt=1, description="Estimated Jaccard similarity at which rows are near-duplicates.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations (accuracy vs speed).")


def _text(row: dict, field: str) -> str:
    return row["input"] + " " + row["output"] if field == "input+output" else row[field]


def dedup_minhash(ds, a: DedupMinhashArgs, ctx: OpContext):
    import ray
    from datasketch import MinHash, MinHashLSH

    ds = dedup_exact(ds, DedupExactArgs(fields=["input", "output"]), ctx).materialize()  # a barrier: LSH needs every row

    def sign(b):
        rows = b.to_dict("records")
        return {"_key": [row_key(r, ["input", "output"]) for r in rows],
                "_sig": [minhash(_text(r, a.field), a.num_perm).hashvalues.tolist() for r in rows]}

    sigs = sorted(ds.map_batches(sign, batch_format="pandas").take_all(), key=lambda r: r["_key"])
    record(ctx.stats, ctx.index, work={"dedup_minhash:signatures": len(sigs)})
    lsh = MinHashLSH(threshold=a.threshold, num_perm=a.num_perm)
    keep = set()
    for r in sigs:
        m = MinHash(num_perm=a.num_perm, seed=1, hashvalues=r["_sig"], scheme="affine32")
        if lsh.query(m):
            continue
        lsh.insert(r["_key"], m)
        keep.add(r["_key"])
    keep_ref = ray.put(keep)

    def reason(r: dict) -> str | None:
        return None if row_key(r, ["input", "output"]) in cached_get(keep_ref) else "near duplicate"

    return filter_rows(ds, ctx.stats, ctx.index, reason, "dedup_minhash")


class DecontaminateArgs(OpArgs):
    enabled: bool = Field(True, description="Set false to keep rows that duplicate val/test inputs (not advised).")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity at which a row counts as a near duplicate.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")


def read_inputs(path: str, field: str) -> list[str]:
    """The questions of an eval file: each row's input, after its conversation's turns where it has one."""
    from trex_ray.formats import example_text

    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                obj = json.loads(line)
                out.append(example_text({"input": str(obj[field]), "chat": obj.get("chat")}))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return out


def decontaminate(ds, a: DecontaminateArgs, ctx: OpContext):
    import ray
    from datasketch import MinHashLSH

    from trex_ray.formats import example_text

    if not a.enabled or not ctx.eval_paths:
        return ds
    texts = [t for p in ctx.eval_paths for t in read_inputs(p, ctx.input_field)]
    exact = {hashlib.sha1(norm(t).encode()).hexdigest() for t in texts}
    lsh = MinHashLSH(threshold=a.threshold, num_perm=a.num_perm)
    for i, t in enumerate(texts):
        lsh.insert(str(i), minhash(t, a.num_perm))
    index_ref = ray.put((exact, lsh))
    record(ctx.stats, ctx.index, work={"decontaminate:eval_rows": len(texts)})

    def reason(r: dict) -> str | None:
        ex, index = cached_get(index_ref)
        text = example_text(r)
        if hashlib.sha1(norm(text).encode()).hexdigest() in ex:
            return "exact duplicate of a val/test input"
        if index.query(minhash(text, a.num_perm)):
            return "near duplicate of a val/test input"
        return None

    return filter_rows(ds, ctx.stats, ctx.index, reason, "decontaminate")

