"""benchmarks/train_throughput.py's plans: which settings each one measures, and in what order."""

from __future__ import annotations

import pytest

from .helpers import benchmark_script

OPTIONS = ("packing", "precision", "gradient_checkpointing")


@pytest.fixture(scope="module")
def tt():
    return benchmark_script("train_throughput")


def _key(s):
    return (s["method"],) + tuple(s[o] for o in OPTIONS)


def test_grid_is_every_combination_once(tt):
    runs = tt.plan_settings("grid")
    assert len({_key(s) for s in runs}) == len(runs) == 16


def test_one_at_a_time_changes_one_option_from_each_methods_plain_run(tt):
    runs = tt.plan_settings("one-at-a-time")
    assert len({_key(s) for s in runs}) == len(runs) == 8
    plain = {m: next(s for s in runs if s["method"] == m) for m in ("lora", "full")}
    for m, p in plain.items():
        assert (p["packing"], p["precision"], p["gradient_checkpointing"]) == (False, "bf16", False)
        others = [s for s in runs if s["method"] == m and s is not p]
        assert sorted(next(o for o in OPTIONS if s[o] != p[o]) for s in others) == sorted(OPTIONS)
        assert all(sum(s[o] != p[o] for o in OPTIONS) == 1 for s in others)
    # every bf16 run comes before the fp32 ones: a run stopped early has measured what GPUs use
    precisions = [s["precision"] for s in runs]
    assert precisions == sorted(precisions)  # "bf16" < "fp32"


def test_quick_covers_every_option_and_an_unknown_plan_is_named(tt):
    runs = tt.plan_settings("quick")
    assert {s["method"] for s in runs} == {"lora", "full"}
    assert any(s["packing"] for s in runs) and any(s["gradient_checkpointing"] for s in runs)
    assert {s["precision"] for s in runs} == {"bf16", "fp32"}
    with pytest.raises(ValueError, match="plan: unknown 'fast'"):
        tt.plan_settings("fast")
