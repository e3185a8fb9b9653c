"""Every benchmark's --quick mode runs (as CI's check that the scripts work) and writes what it promises.
No timing is asserted: benchmarks print ratios measured in one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(script: str, out: str, *extra: str, timeout: int = 900) -> str:
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), "--quick", "--out", out, *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_train_throughput_quick_measures_every_option(tmp_path):
    out = tmp_path / "train.json"
    text = _run("train_throughput.py", str(out))
    data = json.loads(out.read_text())
    res = data["results"]
    assert {(r["method"], r["packing"], r["precision"], r["gradient_checkpointing"]) for r in res} == {
        ("lora", False, "bf16", False), ("full", False, "bf16", False), ("lora", True, "fp32", True)}
    assert all("error" not in r and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in res), \
        [(r["method"], r.get("error"), r.get("tokens_per_s"), r.get("mfu")) for r in res]
    packed = next(r for r in res if r["packing"])
    plain = res[0]
    assert packed["padding_share"] < plain["padding_share"]  # packing removes padding
    assert data["peak_flops"]["bf16"] > 0 and "ratios of tokens/s" in text
    # plain transformers Trainer on the same rows, per method, beside the executor's runs
    base = {r["method"]: r for r in res if r.get("baseline") == "hf-trainer"}
    assert set(base) == {"lora", "full"} and all(b["tokens"] == plain["tokens"] for b in base.values())
    assert "against lora bf16 hf-trainer" in text
    # the padding-free run has no padding at all, and its adapter in bf16 is one of the options it took
    assert packed["padding_free"] and packed["padding_share"] == 0 and packed["lora_dtype"] == "model"


def test_reuse_quick_compares_reuse_on_and_off(tmp_path):
    out = tmp_path / "reuse.json"
    text = _run("reuse.py", str(out))
    data = json.loads(out.read_text())
    on, off = data["results"]["warm start + cache"], data["results"]["no reuse"]
    assert len(on["trials"]) == len(off["trials"]) == data["trials"]
    assert off["cache_hits"] == 0 and off["warm_starts"] == 0  # switched off really means off
    assert "cost to reach val" in text


def test_search_policies_quick_runs_every_method(tmp_path):
    out = tmp_path / "policies.json"
    text = _run("search_policies.py", str(out))
    data = json.loads(out.read_text())
    summary = data["tasks"]["demo"]["summary"]
    assert set(summary) == {"mcts", "tune-tpe-asha"}  # a tree policy and Tune (with its scheduler)
    for m, runs in data["tasks"]["demo"]["runs"].items():
        trials = runs[0]["trials"]
        assert len(trials) == data["trials"] and not any(t["failed"] for t in trials), (m, trials)
        assert all(t["accelerator_s"] > 0 for t in trials)  # each trial really trained and evaluated
        assert len(summary[m]["val_curve_mean"]) == data["trials"]
    assert os.path.exists(str(out).replace(".json", ".png"))
    assert "trials to 95%" in text
