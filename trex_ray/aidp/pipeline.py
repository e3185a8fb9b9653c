"""Run a recipe as a Ray Data pipeline and cache the result.

The output is materialised once to parquet under `<cache_root>/datasets/<hash>/`, where the hash covers
the recipe and its inputs (the train file's path/size/mtime, extra files, the tokenizer); an identical
recipe in another node or run reuses it. Per-op row counts are recorded in `stats.json` beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid

from trex_ray.aidp.ops import OPS, OpContext
from trex_ray.plan import Recipe


def _file_fingerprint(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}"


def recipe_hash(recipe: Recipe, ctx: OpContext) -> str:
    extra = [a.path for n, a in recipe.typed() if n == "load" and getattr(a, "path", None)]
    body = {
        "recipe": recipe.model_dump(),
        "train": _file_fingerprint(ctx.train_path),
        "extra": [_file_fingerprint(p) for p in extra],
        "fields": [ctx.input_field, ctx.output_field],
        "tokenizer": ctx.tokenizer_path if any(n == "length_filter" for n, _ in recipe.typed()) else None,
        "version": 1,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]


def run_recipe(recipe: Recipe, ctx: OpContext, cache_root: str) -> tuple[str, dict]:
    """(directory of the prepared parquet dataset, stats). Runs only on a cache miss."""
    import ray.data

    key = recipe_hash(recipe, ctx)
    final = os.path.join(cache_root, "datasets", key)
    stats_path = os.path.join(final, "stats.json")
    if os.path.exists(stats_path):
        with open(stats_path) as f:
            stats = json.load(f)
        return os.path.join(final, "data"), {**stats, "cache_hit": True}

    t0 = time.time()
    ds = None
    per_op = []
    for i, (name, args) in enumerate(recipe.typed()):
        rows_in = per_op[-1]["rows_out"] if per_op else 0
        ds = OPS[name].apply(ds, args, ctx).materialize()
        rows_out = ds.count()
        per_op.append({"op": name, "position": i, "rows_in": rows_in, "rows_out": rows_out})
    if ds.count() == 0:
        raise ValueError("the recipe left no training rows: " + ", ".join(f"{s['op']}->{s['rows_out']}" for s in per_op))
    tmp = final + f".tmp-{uuid.uuid4().hex[:8]}"
    ds.write_parquet(os.path.join(tmp, "data"))
    lengths = ds.map_batches(
        lambda b: {"n": [len(i) + len(o) for i, o in zip(b["input"], b["output"])]}, batch_format="pandas"
    ).take_all()
    chars = sorted(r["n"] for r in lengths)
    stats = {
        "hash": key,
        "rows": len(chars),
        "ops": per_op,
        "chars_p50": chars[len(chars) // 2],
        "chars_max": chars[-1],
        "seconds": round(time.time() - t0, 2),
    }
    with open(os.path.join(tmp, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:  # another trial won the race with the same recipe: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(final, "data"), {**stats, "cache_hit": False}
