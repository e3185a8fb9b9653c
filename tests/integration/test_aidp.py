"""AIDP on real Ray Data: every registered op through the same contract, MinHash dedup, decontamination,
bad rows, the cache, and the too-few-rows error."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import write_jsonl
from trex_ray.aidp import pipeline
from trex_ray.aidp.ops import OPS, OpContext
from trex_ray.plan import parse_recipe

pytestmark = pytest.mark.integration

# minimal valid arguments for ops whose arguments have no defaults
ARGS = {
    "regex_filter": {"pattern": "^skip"},
    "script_filter": {"scripts": ["LATIN"]},
    "sample": {"n": 20},
    "stratified_sample": {"fraction": 0.5},
    "mix": {"sources": [{"path": "EXTRA"}], "total": 30},
    "diversity_select": {"n": 10},
    "synthesize": {"n": 4, "max_new_tokens": 16},
    "rewrite": {"fraction": 0.5, "max_new_tokens": 8},
    "llm_judge": {"max_new_tokens": 2},
}


@pytest.fixture
def data(tmp_path):
    rows = [{"q": f"what is {i} plus {i}", "a": "even" if i % 3 else "odd"} for i in range(40)]
    rows += [{"q": "what is 1 plus 1 ", "a": "even"}, {"q": "WHAT is 1 plus 1", "a": "even"}]  # exact dups
    rows += [{"q": "skip this row", "a": "x"}, {"q": "это кириллица текст", "a": "y"}]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    val = write_jsonl(tmp_path / "val.jsonl", [{"q": "what is 5 plus 5", "a": "odd"}])
    test = write_jsonl(tmp_path / "test.jsonl", [{"q": "what is 7 plus 7", "a": "odd"}])
    extra = write_jsonl(tmp_path / "extra.jsonl", [{"q": f"extra question {i}", "a": "odd"} for i in range(30)])
    # LLM ops run on the tiny random model here (plumbing); tests/integration/test_aidp_models.py uses SmolLM2
    ctx = OpContext(train_path=train, input_field="q", output_field="a", eval_paths=(val, test),
                    llm={"model": "tiny-random"}, threads=1)
    return ctx, extra, tmp_path


def _recipe(name, extra):
    args = json.loads(json.dumps(ARGS.get(name, {})).replace("EXTRA", extra))
    ops = [{"load": {}}] + ([] if name in ("load", "format") else [{name: args}]) + [{"format": {"system": "s"}}]
    return parse_recipe(ops)


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_keeps_the_contract(name, data):
    ctx, extra, tmp = data
    recipe = _recipe(name, extra)
    out1, stats1 = pipeline.run_recipe(recipe, ctx, str(tmp / "cache1"))
    import pandas as pd

    df1 = pd.read_parquet(out1).sort_values(["input", "output"]).reset_index(drop=True)
    assert {"input", "output", "system", "user"} <= set(df1.columns)  # schema out
    assert stats1["rows"] == len(df1) > 0
    assert [s["op"] for s in stats1["ops"]][0] == "load" and stats1["ops"][-1]["op"] == "format"
    for s in stats1["ops"]:  # every op accounts for its rows
        assert s["rows_in"] >= 0 and s["rows_out"] >= 0
        if OPS[s["op"]].kind == "generate":  # rows added = generations that were usable
            added = stats1["work"].get("synthesize:generated", stats1["work"].get("rewrite:rewritten", 0))
            assert s["rows_out"] - s["rows_in"] == added, s
        elif s["op"] != "mix":
            assert s["rows_in"] - s["rows_out"] == sum(s["dropped"].values()), s
    assert stats1["input_chars"]["counts"] and sum(stats1["input_chars"]["counts"]) == len(df1)


def test_randomised_ops_are_deterministic_given_their_seed(data):
    ctx, extra, tmp = data
    recipe = parse_recipe([{"load": {}}, {"mix": {"sources": [{"path": extra}], "total": 40, "seed": 3}},
                           {"dedup_minhash": {}}, {"label_balance": {"seed": 1}}, {"stratified_sample": {"fraction": 0.7}},
                           {"sample": {"n": 15, "seed": 2}}, {"format": {}}])
    import pandas as pd

    frames = []
    for cache in ("a", "b"):
        out, _ = pipeline.run_recipe(recipe, ctx, str(tmp / cache))
        frames.append(pd.read_parquet(out).sort_values(["input", "output"]).reset_index(drop=True))
    assert len(frames[0]) > 0 and frames[0].equals(frames[1])


def test_label_balance_caps_each_answer_and_keeps_the_rarer_ones_whole(data):
    """The "balance answers" plan: every answer at most `max_per_label` rows, answers under the cap kept."""
    ctx, extra, tmp = data
    recipe = parse_recipe([{"load": {}}, {"label_balance": {"max_per_label": 10, "seed": 4}}, {"format": {}}])
    out, stats = pipeline.run_recipe(recipe, ctx, str(tmp / "balanced"))
    import pandas as pd

    counts = pd.read_parquet(out)["output"].value_counts().to_dict()
    # 28 rows are "even" (the two duplicates too), 14 "odd"; "x" and "y" one each
    op = next(s for s in stats["ops"] if s["op"] == "label_balance")
    assert op["rows_in"] - op["rows_out"] == sum(op["dropped"].values()) == 18 + 4
    # decontamination (on by default) then removes the val and test questions ("what is 5/7 plus 5/7",
    # both "even") where they were among the ten kept
    assert counts["odd"] == 10 and 8 <= counts["even"] <= 10 and counts["x"] == counts["y"] == 1


def test_decontamination_is_on_by_default_and_reported(data):
    ctx, extra, tmp = data
    out, stats = pipeline.run_recipe(_recipe("load", extra), ctx, str(tmp / "c"))
    import pandas as pd

    inputs = set(pd.read_parquet(out)["input"])
    assert "what is 5 plus 5" not in inputs and "what is 7 plus 7" not in inputs  # val and test inputs
    dec = next(s for s in stats["ops"] if s["op"] == "decontaminate")
    assert dec["dropped"].get("exact duplicate of a val/test input") == 2
    assert "what is 15 plus 15" in inputs  # similar words, different content: kept


def test_minhash_dedup_drops_constructed_near_duplicates(tmp_path):
    base = "the quick brown fox jumps over the lazy dog near the quiet river bank today"
    rows = [{"q": base, "a": "1"}, {"q": base + " again", "a": "2"}, {"q": base.replace("today", "tonight"), "a": "3"},
            {"q": "a completely different sentence about ray data pipelines and caching", "a": "4"}]
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    ctx = OpContext(train_path=train, input_field="q", output_field="a")
    recipe = parse_recipe([{"load": {}}, {"dedup_minhash": {"threshold": 0.7}}, {"format": {}}])
    out, stats = pipeline.run_recipe(recipe, ctx, str(tmp_path / "c"))
    import pandas as pd

    df = pd.read_parquet(out)
    assert len(df) == 2
    assert df["input"].str.contains("different sentence").any()
    mh = next(s for s in stats["ops"] if s["op"] == "dedup_minhash")
    assert mh["dropped"] == {"near duplicate": 2}


def test_bad_rows_are_dropped_with_reasons(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"q": "good one", "a": "1"}\n{"q": "bad \xff\xfe", "a": "2"}\nnot json\n[1, 2]\n'
                     b'{"q": "no answer"}\n{"q": "good two", "a": "3"}\n')
    ctx = OpContext(train_path=str(path), input_field="q", output_field="a")
    out, stats = pipeline.run_recipe(parse_recipe([{"load": {}}, {"format": {}}]), ctx, str(tmp_path / "c"))
    load = stats["ops"][0]
    assert load["rows_out"] == 2 and load["rows_in"] == 6
    assert load["dropped"] == {"bad encoding (not UTF-8)": 1, "bad JSON": 1, "not a JSON object": 1,
                               "missing field 'a'": 1}


def test_cache_hit_does_no_work(data):
    ctx, extra, tmp = data
    recipe = _recipe("dedup_exact", extra)
    out1, s1 = pipeline.run_recipe(recipe, ctx, str(tmp / "shared"))
    mtime = os.path.getmtime(out1)
    runs_before = pipeline.EXECUTIONS
    out2, s2 = pipeline.run_recipe(recipe, ctx, str(tmp / "shared"))
    assert pipeline.EXECUTIONS == runs_before  # the second run executed nothing
    assert s2["cache_hit"] and not s1["cache_hit"] and out1 == out2 and os.path.getmtime(out2) == mtime
    assert s2["ops"] == s1["ops"]


def test_a_storage_uri_cache_is_shared_by_machines_with_their_own_disks(data):
    """Two "machines" (two local cache folders) and one cache URI: the second reuses the first's dataset."""
    import pyarrow.parquet as pq

    ctx, extra, tmp = data
    recipe = _recipe("dedup_exact", extra)
    uri = f"file://{tmp}/bucket/cache"
    out1, s1 = pipeline.run_recipe(recipe, ctx, str(tmp / "machine_a"), shared_cache=uri)
    assert not s1["cache_hit"] and os.path.exists(f"{tmp}/bucket/cache/datasets/{s1['hash']}/stats.json")
    runs_before = pipeline.EXECUTIONS
    out2, s2 = pipeline.run_recipe(recipe, ctx, str(tmp / "machine_b"), shared_cache=uri)
    assert pipeline.EXECUTIONS == runs_before and s2["cache_hit"]  # fetched, not recomputed
    assert out2.startswith(str(tmp / "machine_b")) and s2["ops"] == s1["ops"]
    assert pq.read_table(out2).to_pylist() == pq.read_table(out1).to_pylist()
    # an unreachable shared cache costs the reuse, never the data
    out3, s3 = pipeline.run_recipe(recipe, ctx, str(tmp / "machine_c"), shared_cache="nosuchfs://x/cache")
    assert not s3["cache_hit"] and pq.read_table(out3).num_rows == s1["rows"]


def test_too_few_rows_fails_early_with_a_message(data):
    ctx, extra, tmp = data
    recipe = parse_recipe([{"load": {}}, {"length_filter": {"max_chars": 5}}, {"format": {}}])
    with pytest.raises(pipeline.RecipeError, match=r"length_filter -> 0 \(dropped \d+ longer than 5 chars\)"):
        pipeline.run_recipe(recipe, ctx, str(tmp / "c"), min_rows=8)


def test_data_run_cli_prints_per_op_counts_and_writes_outputs(data, capsys):
    from trex_ray.cli import main

    ctx, extra, tmp = data
    recipe = tmp / "recipe.yaml"
    recipe.write_text(f"train: {ctx.train_path}\nval: {ctx.eval_paths[0]}\ninput_field: q\noutput_field: a\n"
                      "ops:\n  - load: {}\n  - regex_filter: {pattern: '^skip'}\n  - sample: {fraction: 0.5}\n"
                      "  - format: {}\n")
    out = tmp / "out"
    assert main(["data", "run", str(recipe), "--out", str(out), "--hf"]) == 0
    printed = capsys.readouterr().out
    assert "regex_filter" in printed and "1 matches /^skip/" in printed and "decontaminate" in printed
    stats = json.loads((out / "stats.json").read_text())
    lines = (out / "data.jsonl").read_text().splitlines()
    assert len(lines) == stats["rows"] == stats["ops"][-1]["rows_out"] > 0
    assert (out / "data").is_dir()
    import datasets

    assert len(datasets.load_from_disk(str(out / "hf"))) == stats["rows"]
    # a bad op is a one-line error naming the op position and field, exit code 2
    recipe.write_text(f"train: {ctx.train_path}\nops:\n  - load: {{}}\n  - sample: {{n: lots}}\n  - format: {{}}\n")
    assert main(["data", "run", str(recipe), "--out", str(out)]) == 2
    assert "ops[1] (sample): n:" in capsys.readouterr().err


def test_mix_reads_a_dataset_from_the_datasets_cache(data, tmp_path):
    """A catalogue entry from the user's `datasets` cache mixes in from its Arrow files (no network, no script)."""
    from tests.unit.test_research import cached_dataset
    from trex_ray.researcher import catalogue as cat

    ctx, _, tmp = data
    cache = tmp_path / "hf-datasets"
    cached_dataset(cache, "more_sums", [{"q": f"what is {i} times {i}", "a": "odd"} for i in range(25)])
    (cand,) = cat.cache_candidates(str(cache), "q", "a")
    recipe = parse_recipe([{"load": {}}, {"mix": {"sources": [cand.mix_source()], "total": 30}}, {"format": {}}])
    out, stats = pipeline.run_recipe(recipe, ctx, str(tmp / "c"))
    import pandas as pd

    df = pd.read_parquet(out)
    assert next(s for s in stats["ops"] if s["op"] == "mix")["rows_out"] == 30
    assert df["input"].str.contains("times").sum() == 15  # half the mixture from each (decontamination drops a sum)
