"""The first-plan rule (docs/first-plans.md): every number comes from the task's and the model's profile,
measured on real checkpoints and tokenizers."""

from __future__ import annotations

import pytest

from trex_ray.demo import GOAL, write_demo_task
from trex_ray.models import model_facts, model_profile, resolve_model
from trex_ray.researcher.sizing import batch_for, epoch_cap, epochs_for, first_settings, learning_rate
from trex_ray.task import Task


@pytest.mark.parametrize("width, lr", [(64, 1.3e-2), (576, 1.4e-3), (4096, 2e-4), (8192, 1e-4), (10**6, 5e-5), (4, 2e-2)])
def test_learning_rate_is_inverse_in_width_and_clipped(width, lr):
    assert learning_rate(width, None) == lr


def test_learning_rate_without_width_estimates_it_from_parameters():
    assert learning_rate(None, 7e9) == pytest.approx(1.7e-4)  # ~4800 wide: near a 7B model's 4096
    assert learning_rate(None, None) == 2e-4


@pytest.mark.parametrize("rows, epochs", [(20, 5.0), (43, 3.0), (176, 3.0), (10_000, 2.5), (100_000, 1.0), (2, 25.0)])
def test_passes_see_between_100_and_25000_examples(rows, epochs):
    assert epochs_for(rows) == epochs


@pytest.mark.parametrize("rows, cap", [(20, 10.0), (176, 6.0), (5_000, 5.0), (10_000, 2.5), (100_000, 1.0), (2, 25.0)])
def test_with_in_training_val_the_cap_is_twice_the_passes_within_25000_examples(rows, cap):
    assert epoch_cap(rows) == cap
    assert epoch_cap(rows, early_stopping=False) == epochs_for(rows)  # a trial that is not followed on val


def test_an_llm_judged_task_keeps_the_plain_passes():
    judged = first_settings({**_profile(rows=176), "metric": "llm_judge"})
    assert judged["epochs"] == 3.0 and "no in-training val" in judged["why"][2]
    assert first_settings({**_profile(rows=176), "metric": "exact_match"})["epochs"] == 6.0


@pytest.mark.parametrize("rows, batch", [(10, 4), (43, 4), (176, 8), (400, 16), (67_000, 16)])
def test_batch_leaves_twenty_steps_a_pass(rows, batch):
    assert batch_for(rows) == batch


def _profile(rows=500, labels=None, total_p99=300, answer_max=40, max_positions=8192):
    return {"train": {"rows": rows, "input_chars": {"p95": 900}, "output_chars": {"p95": 100, "max": 140}},
            "label_balance": labels,
            "model": {"params": 1.7e9, "hidden_size": 2048, "max_positions": max_positions,
                      "linear_modules": ["c_attn", "c_fc", "c_proj"]},
            "tokens": {"total": {"p99": total_p99}, "answer": {"max": answer_max}}}


def test_lengths_come_from_the_measured_tokens():
    s = first_settings(_profile())
    assert s["max_seq_len"] == 512 and s["max_new_tokens"] == 50  # p99 300 -> 512; 40 + a quarter
    assert first_settings(_profile(total_p99=3000, max_positions=2048))["max_seq_len"] == 2048  # the model's limit
    labelled = first_settings(_profile(labels={"yes": 0.5, "no": 0.5}, answer_max=3))
    assert labelled["max_new_tokens"] == 8 and "2 labels" in labelled["why"][3]
    assert s["target_modules"] == ["c_attn", "c_fc", "c_proj"] and s["learning_rate"] == 4e-4


def test_without_token_counts_lengths_are_estimated_from_characters():
    prof = _profile()
    del prof["tokens"]
    s = first_settings(prof)
    assert s["max_seq_len"] == 512  # (900 + 100) / 3.5 + 60 template tokens = 345
    assert "from characters" in s["why"][3]


def test_model_facts_and_token_profile_of_real_checkpoints(tmp_path):
    """The packaged tiny model's config and safetensors headers, and a GPT-2-shaped checkpoint whose
    linear layers have other names."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tiny = resolve_model("tiny-random")
    facts = model_facts(tiny)
    assert facts["hidden_size"] == 64 and facts["layers"] == 2 and facts["model_type"] == "llama"
    assert facts["linear_modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert 10_000 < facts["params"] < 1_000_000

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64)).save_pretrained(gpt2)
    g = model_facts(str(gpt2))
    assert g["hidden_size"] == 32 and g["layers"] == 2 and g["max_positions"] == 64
    assert g["linear_modules"] == ["c_attn", "c_fc", "c_proj"]

    paths = write_demo_task(str(tmp_path / "demo"))
    task = Task.from_jsonl(name="clock", input_field="question", output_field="answer", goal=GOAL, **paths)
    prof = model_profile(tiny, task)
    tok = prof["tokens"]
    assert tok["rows"] == len(task.rows("train"))
    assert tok["prompt"]["p50"] > tok["answer"]["p50"] >= 2  # the system prompt and template are counted
    assert tok["total"]["max"] <= tok["prompt"]["max"] + tok["answer"]["max"]
    assert prof["model_params"] == facts["params"]


def test_the_searchs_epoch_cap_bounds_the_first_plan_and_more_epochs():
    from trex_ray.researcher.heuristic import HeuristicResearcher

    prof = {**_profile(rows=176), "metric": "exact_match", "name": "t", "max_epochs": 1.5}
    s = first_settings(prof)
    assert s["epochs"] == 1.5 and "caps epochs" in s["why"][2]
    assert first_settings({**prof, "max_epochs": 8})["epochs"] == 6.0  # twice the passes: below the cap
    agent = HeuristicResearcher()
    brief = agent.analyze(prof, {})
    first = agent.initial_plan(brief)
    assert first.train.epochs == 1.5
    assert agent._apply("more epochs", first, brief, {"plan": first.model_dump()}, None) is None  # at the cap
