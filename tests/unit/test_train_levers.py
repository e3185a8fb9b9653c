"""The speed levers of training as plan settings: validated, dropped (and said) where the machine cannot
use them, refused in the worker with the fix named; and benchmarks/train_throughput.py's `levers` plan."""

from __future__ import annotations

import pytest

from trex_ray.plan import Plan, TrainConfig

from .helpers import benchmark_script

PLAN = {"direction": "d", "recipe": {"ops": [{"load": {}}, {"format": {}}]}}


def test_levers_are_validated_settings():
    cfg = TrainConfig(lora_dtype="model", padding_free=True, liger=True, compile=True)
    assert (cfg.lora_dtype, cfg.padding_free, cfg.liger, cfg.compile) == ("model", True, True, True)
    with pytest.raises(ValueError, match="lora_dtype"):
        TrainConfig(lora_dtype="fp16")


def test_liger_is_dropped_from_a_plan_without_a_gpu_and_said():
    asked = Plan.model_validate({**PLAN, "train": {"liger": True}})
    cpu = asked.within(gpu=False)
    assert cpu.train.liger is False and "Liger kernels need a CUDA GPU" in cpu.rationale
    assert asked.within(gpu=True) == asked


def test_liger_in_a_worker_without_cuda_names_the_setting():
    import torch

    from trex_ray.executor.train import apply_liger

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: this checks what a machine without one says")
    with pytest.raises(ValueError, match=r"train\.liger needs a CUDA GPU"):
        apply_liger(None)


@pytest.fixture(scope="module")
def tt():
    return benchmark_script("train_throughput")


def test_the_levers_plan_measures_each_lever_alone_then_together(tt):
    for gpu in (True, False):
        runs = tt.plan_settings("levers", gpu)
        for m in ("lora", "full"):
            mine = [s for s in runs if s["method"] == m and s["precision"] == "bf16"]
            plain, alone, together = mine[0], mine[1:-1], mine[-1]
            assert not any(plain.get(k) for k in tt.LEVERS)
            levers = [k for k in tt.LEVERS if (m == "lora" or k != "lora_dtype") and (gpu or k != "liger")]
            assert [next(k for k in tt.LEVERS if s.get(k)) for s in alone] == levers  # one lever each
            assert all(sum(bool(s.get(k)) for k in tt.LEVERS) == 1 for s in alone)
            assert all(together.get(k) == tt.LEVER_ON[k] for k in levers)
        assert [s["precision"] for s in runs][-2:] == ["fp32", "fp32"]  # fp32 measured once per method, last
        # every setting is a valid training config
        for s in runs:
            TrainConfig(**{k: v for k, v in s.items() if k != "batch_x2"})


def test_a_lost_workers_report_keeps_why_it_ended_past_the_cut():
    """Ray puts why a worker process ended (its exit detail) after its class, id, pid, namespace and address:
    past the first 300 characters that a lost-worker error quotes. The quote keeps it."""
    from trex_ray.executor.train import _death

    report = ("The actor died unexpectedly before finishing this task.\n\tclass_name: RayTrainWorker\n\tactor_id: "
              + "2f17" * 60 + "\nThe actor is dead because its worker process has died. Worker exit type: "
              "INTENDED_SYSTEM_EXIT Worker exit detail: Destroying worker since its placement group was removed.")
    line = _death(RuntimeError(report))
    assert line.startswith("The actor died unexpectedly") and "placement group was removed" in line
    assert _death(RuntimeError("short: Worker exit detail: gone")) == "short: Worker exit detail: gone"
