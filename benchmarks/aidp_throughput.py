"""Rows per second of a typical data recipe: trex-ray's AIDP on Ray Data against the same steps written
with plain `datasets` (`Dataset.filter` / `Dataset.map`), measured side by side in one run.

The recipe, on SST-2's training split (67k sentences) from FT-Bench's data:
    load TSV -> length_filter (non-empty, at most 400 chars) -> regex_filter (drop rows with URLs)
    -> dedup_exact -> decontaminate (exact + MinHash against the dev split) -> format
Both sides call the same row functions (normalisation, MinHash signatures, prompt rendering), so the
ratio measures the execution engines, not two implementations. Ray Data runs each pipeline afresh
(a new cache folder every repeat); `datasets` runs with 1 process and with one per core.

    python benchmarks/aidp_throughput.py            # the full split, 3 repeats
    python benchmarks/aidp_throughput.py --quick    # 5k rows, 1 repeat (a minute)

Data: $FTBENCH_DATA (default ../shared/ftbench_data)/sst2/{train,dev}.tsv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

URL = r"https?://|www\."
SYSTEM = "Classify the sentiment of the sentence: 1 positive, 0 negative."
TEMPLATE = "Sentence: {input}"


def recipe_ops() -> list[dict]:
    return [
        {"load": {}},
        {"length_filter": {"min_chars": 1, "max_chars": 400}},
        {"regex_filter": {"pattern": URL, "action": "drop", "field": "input"}},
        {"dedup_exact": {}},
        {"decontaminate": {}},
        {"format": {"template": TEMPLATE, "system": SYSTEM}},
    ]


def read_tsv(path: str, limit: int | None) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        rows = [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return rows[:limit] if limit else rows


def run_ray(train_tsv: str, eval_jsonl: str, cache: str) -> tuple[int, float]:
    from trex_ray.aidp import pipeline
    from trex_ray.aidp.ops import OpContext
    from trex_ray.plan import parse_recipe

    ctx = OpContext(train_path=train_tsv, input_field="text", output_field="label", eval_paths=(eval_jsonl,))
    t0 = time.perf_counter()
    _, stats = pipeline.run_recipe(parse_recipe(recipe_ops()), ctx, cache)
    return stats["rows"], time.perf_counter() - t0


def run_datasets(train_tsv: str, eval_jsonl: str, num_proc: int | None) -> tuple[int, float]:
    """The same recipe with `datasets`: the per-row functions are trex-ray's own."""
    import datasets
    from datasketch import MinHashLSH

    from trex_ray.aidp.dedup import minhash, norm, read_inputs, row_key

    datasets.disable_progress_bars()
    datasets.disable_caching()
    t0 = time.perf_counter()
    ds = datasets.load_dataset("csv", data_files=train_tsv, delimiter="\t", quoting=csv.QUOTE_NONE, split="train",
                               keep_in_memory=True)
    ds = ds.map(lambda r: {"input": str(r["text"]), "output": str(r["label"])}, remove_columns=ds.column_names,
                num_proc=num_proc)
    ds = ds.filter(lambda r: min(len(r["input"].strip()), len(r["output"].strip())) >= 1
                   and len(r["input"]) + len(r["output"]) <= 400, num_proc=num_proc)
    pattern = re.compile(URL)
    ds = ds.filter(lambda r: not pattern.search(r["input"]), num_proc=num_proc)
    # exact dedup: a key per row (parallel), then the first row of each key (one pass)
    ds = ds.map(lambda r: {"_key": row_key(r, ["input", "output"])}, num_proc=num_proc)
    seen: set = set()
    keep = []
    for i, k in enumerate(ds["_key"]):
        if k not in seen:
            seen.add(k)
            keep.append(i)
    ds = ds.select(keep).remove_columns("_key")
    texts = read_inputs(eval_jsonl, "text")
    exact = {norm(t) for t in texts}
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for i, t in enumerate(texts):
        lsh.insert(str(i), minhash(t, 128))
    ds = ds.filter(lambda r: norm(r["input"]) not in exact and not lsh.query(minhash(r["input"], 128)),
                   num_proc=num_proc)
    ds = ds.map(lambda r: {"system": SYSTEM, "user": TEMPLATE.replace("{input}", r["input"])}, num_proc=num_proc)
    with tempfile.TemporaryDirectory() as d:
        ds.to_parquet(os.path.join(d, "out.parquet"))  # both sides end with the prepared data on disk
    return len(ds), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5k rows, one repeat")
    ap.add_argument("--rows", type=int, default=None, help="use the first N training rows (default: all)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    limit = args.rows or (5000 if args.quick else None)
    repeats = args.repeats or (1 if args.quick else 3)

    data = Path(os.environ.get("FTBENCH_DATA", REPO.parent / "shared" / "ftbench_data")) / "sst2"
    if not (data / "train.tsv").exists():
        print(f"SST-2 not found under {data}; set FTBENCH_DATA to the folder holding ftbench_data/<task>/",
              file=sys.stderr)
        return 2
    from trex_ray.runtime import init_ray, physical_cores

    cores = physical_cores()
    init_ray(None, 1)
    work = Path(tempfile.mkdtemp(prefix="aidp-bench-"))
    rows = read_tsv(str(data / "train.tsv"), limit)
    train = work / "train.tsv"
    with open(train, "w", encoding="utf-8") as f:
        f.write("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows))
    dev = work / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in read_tsv(str(data / "dev.tsv"), None)))

    results: dict[str, list[float]] = {}
    out_rows: dict[str, int] = {}
    sides = [("ray data", lambda i: run_ray(str(train), str(dev), str(work / f"cache{i}"))),
             ("datasets, 1 proc", lambda i: run_datasets(str(train), str(dev), None)),
             (f"datasets, {cores} procs", lambda i: run_datasets(str(train), str(dev), cores))]
    run_ray(str(train), str(dev), str(work / "warmup"))  # workers and imports warm for both sides
    for i in range(repeats):
        for name, fn in sides:  # interleaved, so drift in machine load hits every side alike
            n, secs = fn(i)
            results.setdefault(name, []).append(secs)
            out_rows[name] = n
    if len(set(out_rows.values())) != 1:
        print(f"the sides disagree on the output rows: {out_rows}", file=sys.stderr)
        return 1

    print(f"recipe: {' -> '.join(next(iter(o)) for o in recipe_ops())}")
    print(f"input rows: {len(rows)}   output rows: {next(iter(out_rows.values()))}   repeats: {repeats}   "
          f"cores: {cores}")
    base = statistics.median(results["ray data"])
    print(f"{'engine':<22}{'median s':>10}{'rows/s':>12}{'ray data speed-up':>20}")
    for name, secs in results.items():
        med = statistics.median(secs)
        print(f"{name:<22}{med:>10.2f}{len(rows) / med:>12.0f}{med / base:>19.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
