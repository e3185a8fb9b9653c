"""AIDP ops backed by models, for real: semantic dedup and diversity selection with the packaged
all-MiniLM-L6-v2, the LLM ops on the packaged SmolLM2 through the local backend, the local backend
itself, and the HF export."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import write_jsonl
from trex_ray.aidp import pipeline
from trex_ray.aidp.ops import OpContext
from trex_ray.plan import parse_recipe

pytestmark = pytest.mark.integration

PARAPHRASES = [
    "How do I reset my password?", "What is the way to reset my password?", "How can I change my forgotten password?",
    "What is the capital city of France?", "Which city is the capital of France?",
    "Convert 7 pm to 24-hour time.", "How many legs does a spider have?", "The stock market fell sharply today.",
]


def _run(tmp_path, rows, ops, **ctx_kw):
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    ctx = OpContext(train_path=train, input_field="q", output_field="a", threads=1, **ctx_kw)
    out, stats = pipeline.run_recipe(parse_recipe([{"load": {}}, *ops, {"format": {}}]), ctx, str(tmp_path / "c"))
    return pd.read_parquet(out), stats


def test_semantic_dedup_drops_paraphrases_that_minhash_keeps(tmp_path):
    rows = [{"q": q, "a": str(i)} for i, q in enumerate(PARAPHRASES)]
    df, stats = _run(tmp_path, rows, [{"dedup_minhash": {"threshold": 0.5}}, {"dedup_semantic": {"threshold": 0.85}}])
    ops = {s["op"]: s for s in stats["ops"]}
    assert ops["dedup_minhash"]["rows_out"] == 8  # different words: not near-duplicates for MinHash
    assert ops["dedup_semantic"]["dropped"] == {"semantic duplicate": 3}
    kept = set(df["input"])
    assert len(kept) == 5
    assert len(kept & set(PARAPHRASES[:3])) == 1 and len(kept & set(PARAPHRASES[3:5])) == 1
    assert set(PARAPHRASES[5:]) <= kept
    assert stats["work"]["dedup_semantic:embedded"] == 8


def test_diversity_select_covers_rare_inputs(tmp_path):
    common = [{"q": f"What time is {h} o'clock in the evening?", "a": f"{h + 12}:00"} for h in range(1, 11)]
    rare = [{"q": q, "a": "x"} for q in PARAPHRASES[5:]]
    df, stats = _run(tmp_path, common + rare, [{"diversity_select": {"n": 4}}])
    assert len(df) == 4
    assert set(r["q"] for r in rare) <= set(df["input"])  # all three unlike inputs, one of the ten alike
    sel = next(s for s in stats["ops"] if s["op"] == "diversity_select")
    assert sel["dropped"] == {"not selected for diversity": 9}


def test_local_llm_backend_batches_counts_tokens_and_seeds_sampling():
    from trex_ray.llm import LLMSpec, make_llm

    llm = make_llm(LLMSpec(model="tiny-random", batch_size=2))
    convs = [[{"role": "user", "content": f"count to {i}"}] for i in range(3)]
    greedy = llm.chat(convs, max_tokens=6)
    assert len(greedy) == 3 and all(isinstance(t, str) for t in greedy)
    assert llm.chat(convs, max_tokens=6) == greedy
    a = llm.chat(convs, max_tokens=12, temperature=1.0, seed=1)
    assert llm.chat(convs, max_tokens=12, temperature=1.0, seed=1) == a
    assert llm.chat(convs, max_tokens=12, temperature=1.0, seed=2) != a
    assert llm.usage["calls"] == 15 and llm.usage["input_tokens"] > 0 and llm.usage["output_tokens"] > 0


CLOCK = [{"q": f"What is {h} o'clock in the evening in 24-hour time?", "a": f"{h + 12}:00"} for h in range(1, 11)]


@pytest.mark.slow
def test_llm_ops_on_the_packaged_smollm2(tmp_path):
    ops = [
        {"synthesize": {"n": 4, "max_new_tokens": 48, "seed": 1}},
        {"rewrite": {"style": "reasoning", "mode": "replace", "fraction": 0.5, "max_new_tokens": 32}},
        {"llm_judge": {"unscored": "keep"}},
    ]
    ctx = {"goal": "Convert the spoken time to 24-hour HH:MM.", "llm": {"model": "smollm2-135m", "batch_size": 8}}
    df, stats = _run(tmp_path, CLOCK, ops, **ctx)
    per = {s["op"]: s for s in stats["ops"]}
    work = stats["work"]
    syn = per["synthesize"]
    assert work["synthesize:requested"] == 4
    assert work["synthesize:generated"] + sum(syn["dropped"].values()) == 4  # every request accounted for
    assert syn["rows_out"] == 10 + work["synthesize:generated"]
    # rewrite in place keeps every row; a rationale goes after the answer, so the first line is unchanged
    assert per["rewrite"]["rows_out"] == syn["rows_out"]
    answers = {r["q"]: r["a"] for r in CLOCK}
    rewritten = [o for i, o in zip(df["input"], df["output"]) if i in answers and "\n" in o]
    assert rewritten, "SmolLM2 wrote no rationale for any row"
    for i, o in zip(df["input"], df["output"]):
        if i in answers:
            assert o.split("\n")[0] == answers[i]
    # the judge saw every row once; rows it could not score are kept and counted
    scores = {k: v for k, v in work.items() if k.startswith("llm_judge:score=")}
    assert sum(scores.values()) == per["llm_judge"]["rows_in"]
    assert per["llm_judge"]["rows_in"] - per["llm_judge"]["rows_out"] == sum(per["llm_judge"]["dropped"].values())
    # the same recipe again, elsewhere: the same rows (seeded generation)
    df2, _ = _run(tmp_path / "again", CLOCK, ops, **ctx)
    key = ["input", "output"]
    assert df.sort_values(key).reset_index(drop=True).equals(df2.sort_values(key).reset_index(drop=True))


def test_export_to_hf_datasets_round_trips(tmp_path):
    import datasets

    from trex_ray.aidp.export import export

    rows = [{"q": f"question {i}", "a": f"answer {i}"} for i in range(12)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    ctx = OpContext(train_path=train, input_field="q", output_field="a")
    out, _ = pipeline.run_recipe(parse_recipe([{"load": {}}, {"format": {"system": "Be brief."}}]), ctx,
                                 str(tmp_path / "c"))
    ds = datasets.load_from_disk(export(out, str(tmp_path / "hf"), "hf"))
    assert len(ds) == 12 and {"prompt", "completion", "messages", "input", "output"} <= set(ds.column_names)
    row = next(r for r in ds if r["input"] == "question 3")
    assert row["completion"] == [{"role": "assistant", "content": "answer 3"}]
    assert row["prompt"][0] == {"role": "system", "content": "Be brief."}
    with pytest.raises(ValueError, match="unknown export format"):
        export(out, str(tmp_path / "x"), "csv")
