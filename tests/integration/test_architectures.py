"""Model families: a LoRA trial (the recipe on Ray Data, one optimizer step under Ray Train with PEFT, the
node's val evaluation on the transformers engine) on tiny random models of four architectures besides
Llama (the packaged tiny model's, built from its config the same way, which every other test trains),
each built here from its transformers config with the packaged tiny tokenizer, offline. A plan written with
Llama's module names trains the families that call their layers otherwise (GPT-2's Conv1D `c_attn`,
Phi-3's fused `qkv_proj`) on every linear layer instead of failing."""

from __future__ import annotations

import pytest

import trex_ray
from tests.conftest import majority_rows, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
# config class, its sizes, the LoRA layers a plan with Llama's names ends up wrapping
ARCHITECTURES = {
    "qwen3": ("Qwen3Config", {**SMALL, "num_key_value_heads": 2, "head_dim": 16}, {"q_proj", "k_proj", "v_proj", "o_proj"}),
    "gemma": ("GemmaConfig", {**SMALL, "num_key_value_heads": 1, "head_dim": 16}, {"q_proj", "k_proj", "v_proj", "o_proj"}),
    "phi3": ("Phi3Config", {**SMALL, "num_key_value_heads": 2}, {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
    "gpt2": ("GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 512}, {"c_attn", "c_proj", "c_fc"}),
}


def _build(arch: str, out) -> str:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from trex_ray.models import tiny_tokenizer

    tok = tiny_tokenizer()
    cls, sizes, _ = ARCHITECTURES[arch]
    config = getattr(transformers, cls)(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id, **sizes)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    assert model.config.model_type == arch
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return str(out)


def test_a_lora_trial_trains_and_evaluates_on_four_more_architectures(tmp_path):
    import ray

    from trex_ray.executor.eval_service import Evaluation
    from trex_ray.executor.trial import run_trial
    from trex_ray.plan import Plan

    paths = {s: write_jsonl(tmp_path / "data" / f"{s}.jsonl", majority_rows(16 if s == "train" else 8, i))
             for i, s in enumerate(("train", "val", "test"))}
    task = trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer", metric="accuracy",
                                    labels=["yes", "no"], **paths)
    # one optimizer step over the 16 rows; Llama's names, as the heuristic writes them
    plan = Plan.model_validate({"direction": "test", "recipe": {"ops": [{"load": {}}, {"format": {}}]},
                                "train": {"epochs": 1, "batch_size": 16, "patience": 0, "learning_rate": 1e-3,
                                          "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
                                "eval": {"max_new_tokens": 4}})
    refs = {arch: run_trial.remote(
        node_id=i + 1, plan=plan.model_dump(), parent_adapter=None, task=task.info(),
        model_path=_build(arch, tmp_path / "models" / arch), run_dir=str(tmp_path / "run" / arch),
        cache_root=str(tmp_path / "cache"), baseline_score=0.0, ev=Evaluation("transformers", None, False, 1),
        threads=1) for i, arch in enumerate(ARCHITECTURES)}
    results = {arch: ray.get(ref) for arch, ref in refs.items()}
    failed = {arch: r["error"] for arch, r in results.items() if r["status"] != "ok"}
    assert not failed, failed
    for arch, res in results.items():
        ts = res["train_stats"]
        assert ts["steps"] == 1 and len(ts["loss_curve"]) == 1 and ts["final_loss"] > 0, (arch, ts)
        assert set(ts["lora_targets"]) == ARCHITECTURES[arch][2], (arch, ts["lora_targets"])
        assert ts["trainable_params"] > 0
        val = res["val"]
        assert val["n"] == 8 and val["backend"] == "transformers" and 0.0 <= res["score"] <= 1.0, (arch, val)
        assert (tmp_path / "run" / arch / "nodes" / str(list(ARCHITECTURES).index(arch) + 1) / "adapter"
                / "adapter_config.json").exists()


def test_a_family_transformers_lacks_is_refused_then_trains_with_trust_remote_code(majority_task, tmp_path):
    """The model's own Python files build it in the driver, the trial's training worker and its evaluation
    (a worker without the setting could not load it, and the trial would fail); refused up front without."""
    import os

    import yaml

    from tests.unit.test_model_families import custom_code_model
    from trex_ray.errors import ConfigError
    from trex_ray.models import TRUST_ENV

    path = custom_code_model(tmp_path / "custom")
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match="trust_remote_code"):
        trex_ray.search(majority_task, base_model=path, budget=trex_ray.Budget(trials=1), storage=str(runs),
                        progress=False)
    assert not runs.exists()  # refused before a run folder was written
    res = trex_ray.search(majority_task, base_model=path, budget=trex_ray.Budget(trials=1), trust_remote_code=True,
                          evaluator="transformers", max_concurrent=1, storage=str(runs), progress=False)
    assert [n.status for n in res.nodes] == ["ok", "ok"], [n.result.get("error") for n in res.nodes]
    assert res.nodes[1].result["train_stats"]["steps"] > 0
    assert yaml.safe_load(open(os.path.join(res.run_dir, "config.yaml")))["trust_remote_code"] is True
    assert TRUST_ENV not in os.environ  # the search's setting left with it
