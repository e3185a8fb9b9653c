"""The packaged SmolLM2-135M-Instruct, end to end: materialised from its GGUF, baseline on the demo task,
one real LoRA trial through the whole executor, and a gain over the baseline on val and test."""

from __future__ import annotations

import pytest

import trex_ray
from trex_ray.demo import demo_task

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_one_trial_on_smollm2_beats_its_baseline(tmp_path):
    task = demo_task(str(tmp_path / "data"))
    result = trex_ray.search(task, base_model="smollm2-135m", budget=trex_ray.Budget(trials=1), max_concurrent=1,
                             storage=str(tmp_path / "runs"), progress=False)
    node = result.nodes[1]
    assert node.status == "ok", node.result.get("error")
    assert node.result["train_stats"]["loss_curve"][-1] < node.result["train_stats"]["loss_curve"][0]
    assert result.best.id == 1
    assert result.best.val_score > result.baseline.val_score
    assert result.best.test_score > result.baseline.test_score
