"""Run a recipe as one lazy Ray Data pipeline and cache the result.

The ops are chained lazily (each followed by a row counter) and executed once, materialised to parquet
under `<cache_root>/datasets/<hash>/`, where the hash covers the recipe and its inputs (the train file's
path/size/mtime, extra sources, the eval files used for decontamination, the tokenizer): an identical
recipe in another node or run reuses it and does no work. Ops that need every row at once (MinHash
dedup, label balance) put a barrier in the pipeline. Decontamination against val/test is inserted
before `format` unless the recipe has its own `decontaminate` op. `stats.json` beside the data holds
per-op rows in/out, drop reasons and length histograms, for the node's result and the Researcher.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import replace

from trex_ray.aidp.dedup import DecontaminateArgs
from trex_ray.aidp.llm_ops import spec_of
from trex_ray.aidp.ops import OPS, OpContext
from trex_ray.aidp.recipe import Recipe
from trex_ray.aidp.semantic import EMBEDDING_MODEL

VERSION = 2  # bump when op semantics change, so old cache entries are not reused


EXECUTIONS = 0  # pipelines actually run in this process (cache hits do not count)


class RecipeError(ValueError):
    """The recipe ran but its output is unusable (empty or too small); the message says where rows went."""


def _file_fingerprint(path: str) -> str:
    if not os.path.exists(path):
        return f"{path}:missing"
    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}"


def plan_ops(recipe: Recipe) -> list[tuple[str, object]]:
    ops = recipe.typed()
    if not any(n == "decontaminate" for n, _ in ops):  # just before `format`, which is always last
        ops.insert(len(ops) - 1, ("decontaminate", DecontaminateArgs()))
    return ops


def recipe_hash(recipe: Recipe, ctx: OpContext) -> str:
    files = [a.path for n, a in recipe.typed() if getattr(a, "path", None)]
    files += [s.path for n, a in recipe.typed() if n == "mix" for s in a.sources if s.path]
    body = {
        "recipe": recipe.model_dump(),
        "train": _file_fingerprint(ctx.train_path),
        "files": [_file_fingerprint(p) for p in files],
        "eval": [_file_fingerprint(p) for p in ctx.eval_paths],
        "fields": [ctx.input_field, ctx.output_field],
        "tokenizer": ctx.tokenizer_path if any(getattr(a, "max_tokens", None) for _, a in recipe.typed()) else None,
        "llm": spec_of(ctx) if any(OPS[n].needs_llm for n, _ in recipe.typed()) else None,
        "goal": ctx.goal if any(n == "synthesize" for n, _ in recipe.typed()) else None,
        "embedding": EMBEDDING_MODEL if any(OPS[n].needs_embedding for n, _ in recipe.typed()) else None,
        "version": VERSION,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _histogram(values: list[int], bins: int = 10) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    lo, hi = min(values), max(values)
    width = max(1, -(-(hi - lo + 1) // bins))
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, (v - lo) // width)] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}


def run_recipe(recipe: Recipe, ctx: OpContext, cache_root: str, min_rows: int = 1,
               shared_cache: str | None = None) -> tuple[str, dict]:
    """(directory of the prepared parquet dataset, stats). Does the work only on a cache miss.

    `shared_cache` (a filesystem URI, `<storage URI>/cache`) is the cache every machine of a cluster
    shares: a miss here is looked up there before any work, and a fresh result is copied there."""
    import ray

    from trex_ray.aidp.rows import counter, new_stats_actor

    key = recipe_hash(recipe, ctx)
    final = os.path.join(cache_root, "datasets", key)
    remote = f"{shared_cache.rstrip('/')}/datasets/{key}" if shared_cache else None
    if remote and not os.path.exists(os.path.join(final, "stats.json")):
        _shared("fetch", remote, final)
    if os.path.exists(os.path.join(final, "stats.json")):
        with open(os.path.join(final, "stats.json")) as f:
            stats = json.load(f)
        if stats["rows"] < min_rows:
            raise RecipeError(_too_few(stats, min_rows))
        return os.path.join(final, "data"), {**stats, "cache_hit": True}

    global EXECUTIONS
    EXECUTIONS += 1
    t0 = time.time()
    actor = new_stats_actor()
    ops = plan_ops(recipe)
    ds = None
    for i, (name, args) in enumerate(ops):
        ds = OPS[name].apply(ds, args, replace(ctx, index=i, stats=actor))
        ds = ds.map_batches(counter(actor, i), batch_format="pandas")
    tmp = final + f".tmp-{uuid.uuid4().hex[:8]}"
    ds.write_parquet(os.path.join(tmp, "data"))  # the one execution of the whole pipeline
    snap = ray.get(actor.snapshot.remote())
    ray.kill(actor)

    per_op, rows_in = [], 0
    for i, (name, _) in enumerate(ops):
        out = snap["rows_out"].get(i, 0)
        dropped = dict(snap["dropped"].get(i, {}))
        if OPS[name].kind == "source":
            rows_in = out + sum(dropped.values())
        unexplained = rows_in - out - sum(dropped.values())
        if unexplained > 0:
            reason = OPS[name].extra.get("reason", "dropped")
            dropped[reason] = dropped.get(reason, 0) + unexplained
        per_op.append({"op": name, "position": i, "rows_in": rows_in, "rows_out": out, "dropped": dropped})
        rows_in = out
    n, in_chars, out_chars = _lengths(os.path.join(tmp, "data"))
    stats = {
        "hash": key,
        "rows": n,
        "ops": per_op,
        "input_chars": _histogram(in_chars),
        "output_chars": _histogram(out_chars),
        "work": snap["work"],
        "seconds": round(time.time() - t0, 2),
    }
    with open(os.path.join(tmp, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        os.rename(tmp, final)  # cached even when too small: the same recipe then fails at once
    except OSError:  # another trial won the race with the same recipe: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    if remote:
        _shared("put", final, remote)
    if stats["rows"] < min_rows:
        raise RecipeError(_too_few(stats, min_rows))
    return os.path.join(final, "data"), {**stats, "cache_hit": False}


def _shared(op: str, src: str, dst: str) -> None:
    """Fetch from or put to the shared cache; an unreachable one costs the reuse, never the trial."""
    from trex_ray import storage

    try:
        (storage.fetch_dir if op == "fetch" else storage.put_dir)(src, dst)
    except (OSError, ValueError) as e:  # pyarrow's errors are one or the other
        import logging

        logging.getLogger(__name__).warning("dataset cache %s %s -> %s failed (%s); going on without it",
                                            op, src, dst, e)


def _lengths(data_dir: str) -> tuple[int, list[int], list[int]]:
    """Rows and per-row character lengths of input and output, read back from the written parquet."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    if not os.path.isdir(data_dir) or not os.listdir(data_dir):  # nothing was written: no rows
        os.makedirs(data_dir, exist_ok=True)
        return 0, [], []
    table = pads.dataset(data_dir, format="parquet").to_table(columns=["input", "output"])
    return (table.num_rows, pc.utf8_length(table["input"]).to_pylist(),
            pc.utf8_length(table["output"]).to_pylist())


def _too_few(stats: dict, min_rows: int) -> str:
    steps = []
    for s in stats["ops"]:
        top = sorted(s["dropped"].items(), key=lambda kv: -kv[1])[:2]
        why = f" (dropped {', '.join(f'{n} {r}' for r, n in top)})" if top else ""
        steps.append(f"{s['op']} -> {s['rows_out']}{why}")
    return (f"the recipe left {stats['rows']} rows, fewer than the {min_rows} needed: " + "; ".join(steps)
            + ". Loosen the filter that drops the most rows or add data.")
