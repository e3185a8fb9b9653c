"""Row-level building blocks shared by the ops: per-op statistics and fault-tolerant row functions.

Every op's output passes a counter that records its rows out; filters record why they dropped rows.
A row that breaks an op (missing field, bad value, an exception) is dropped with a reason and counted,
never crashes the pipeline. Statistics go to a small Ray actor, so a recipe stays one lazy Ray Data
pipeline and the numbers are complete when it has been materialised.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

COLUMNS = ["input", "output", "chat"]  # what every source yields (`chat`: the conversation before the input)


class OpStats:
    """Counts of one recipe run; lives in a Ray actor (`new_stats_actor`)."""

    def __init__(self) -> None:
        self.rows_out: Counter = Counter()
        self.dropped: dict[int, Counter] = {}
        self.counters: Counter = Counter()  # work done, e.g. rows an op actually processed

    def add(self, index: int, rows_out: int = 0, dropped: dict | None = None, work: dict | None = None) -> None:
        self.rows_out[index] += rows_out
        if dropped:
            self.dropped.setdefault(index, Counter()).update(dropped)
        if work:
            self.counters.update(work)

    def snapshot(self) -> dict:
        return {"rows_out": dict(self.rows_out), "dropped": {k: dict(v) for k, v in self.dropped.items()},
                "work": dict(self.counters)}


def new_stats_actor():
    import ray

    return ray.remote(num_cpus=0)(OpStats).remote()


def record(stats, index: int, rows_out: int = 0, dropped: dict | None = None, work: dict | None = None) -> None:
    if stats is not None and (rows_out or dropped or work):
        import ray

        ray.get(stats.add.remote(index, rows_out, dropped, work))


def counter(stats, index: int) -> Callable:
    def count(batch):
        record(stats, index, rows_out=len(batch))
        return batch

    return count


def filter_rows(ds, stats, index: int, reason: Callable[[dict], str | None], op: str):
    """Keep rows for which `reason(row)` is None; count the others by reason. Errors drop the row."""

    def apply(batch):
        reasons = []
        for row in batch.to_dict("records"):
            try:
                reasons.append(reason(row))
            except Exception as e:  # noqa: BLE001 - a broken row is dropped with its reason
                reasons.append(f"error: {type(e).__name__}")
        keep = [r is None for r in reasons]
        record(stats, index, dropped=Counter(r for r in reasons if r), work={f"{op}:rows": len(batch)})
        return rows_where(batch, keep)

    return ds.map_batches(apply, batch_format="pandas")


def rows_where(batch, mask: list[bool]):
    """The rows of a pandas batch where `mask` is true (`batch[[]]` would select columns, not rows)."""
    return batch.iloc[[i for i, m in enumerate(mask) if m]]


def map_rows(ds, stats, index: int, fn: Callable[[dict], dict[str, Any]], op: str):
    """Apply `fn` to each row (returns new/changed fields); a row that raises is dropped and counted."""

    def apply(batch):
        out, dropped = [], Counter()
        for row in batch.to_dict("records"):
            try:
                out.append({**row, **fn(row)})
            except Exception as e:  # noqa: BLE001
                dropped[f"error: {type(e).__name__}: {str(e)[:60]}"] += 1
        record(stats, index, dropped=dropped, work={f"{op}:rows": len(batch)})
        import pandas as pd

        return pd.DataFrame(out) if out else batch.iloc[0:0]

    return ds.map_batches(apply, batch_format="pandas")


_CACHE: dict = {}


def cached_get(ref):
    """`ray.get` once per worker process for a large read-only object (an index, a keep-set)."""
    key = ref.hex()
    if key not in _CACHE:
        import ray

        _CACHE[key] = ray.get(ref)
    return _CACHE[key]
