"""In-training val evaluation: a trial scores its model on val as it trains, keeps the best checkpoint as
the node's adapter, and stops once `patience` evaluations bring no improvement (real Ray Train, PEFT and
the transformers engine on the tiny model)."""

from __future__ import annotations

import pytest

import trex_ray
from tests.conftest import majority_rows, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _trial(tmp, baseline: float = 0.0, val_rows: int = 16, **train) -> dict:
    import ray

    from trex_ray.executor.eval_service import Evaluation
    from trex_ray.executor.trial import run_trial
    from trex_ray.models import resolve_model
    from trex_ray.plan import Plan

    paths = {s: write_jsonl(tmp / "data" / f"{s}.jsonl", majority_rows({"train": 120, "val": val_rows}.get(s, 16), i))
             for i, s in enumerate(("train", "val", "test"))}
    task = trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer",
                                    metric="accuracy", labels=["yes", "no"], **paths)
    plan = Plan.model_validate({"direction": "test", "recipe": {"ops": [{"load": {}}, {"format": {}}]},
                                "train": {"learning_rate": 1e-2, **train}, "eval": {"max_new_tokens": 4}})
    return ray.get(run_trial.remote(
        node_id=1, plan=plan.model_dump(), parent_adapter=None, task=task.info(), model_path=resolve_model("tiny-random"),
        run_dir=str(tmp / "run"), cache_root=str(tmp / "cache"), baseline_score=baseline,
        ev=Evaluation("transformers", None, False, 1), threads=1))


def test_a_trial_stops_when_val_stops_improving_and_keeps_its_best_checkpoint(tmp_path):
    res = _trial(tmp_path, epochs=12, patience=2)  # 15 steps an epoch: 180 planned
    assert res["status"] == "ok", res["error"]
    ts = res["train_stats"]
    curve = ts["val_curve"]
    steps = [s for s, _ in curve]
    assert len(curve) >= 3 and steps == sorted(steps) and steps[-1] == ts["steps"]
    assert ts["stopped"] == "patience" and ts["steps"] < 180  # stopped short of the epoch cap
    best = max(score for _, score in curve)
    assert ts["kept_step"] == next(s for s, score in curve if score == best)  # the first best is kept
    assert ts["kept_step"] < ts["steps"]  # the last evaluations did not beat it
    # the node's adapter is that checkpoint: its val score (all 16 rows, the run's engine) is the best seen;
    # that evaluation, of every val row, is the node's val: predictions' bad cases and all, not run again
    assert res["score"] == pytest.approx(best)
    assert res["val"]["in_training"] is True and res["val"]["n"] == 16 and "kept_val" not in ts
    assert len(res["bad_cases"]) == res["val"]["num_bad"] == round(16 * (1 - best))
    # the evaluations are part of the trial's accelerator time, counted once
    assert ts["val_eval_seconds"] > 0 and res["accelerator_s"] == pytest.approx(ts["seconds"], abs=0.011)


def test_a_val_larger_than_the_in_training_subset_is_evaluated_whole_at_the_end(tmp_path):
    from trex_ray.executor.trial import EARLY_ROWS

    res = _trial(tmp_path, val_rows=EARLY_ROWS + 8, epochs=2, patience=5)
    assert res["status"] == "ok", res["error"]
    assert res["val"]["n"] == EARLY_ROWS + 8 and "in_training" not in res["val"]
    assert res["accelerator_s"] > res["train_stats"]["seconds"]  # the final evaluation's time on top


def test_patience_waits_until_the_model_beats_its_baseline(tmp_path):
    """A score still at or below where the search started is no reason to stop: a task scored zero until
    the answer format is learnt must not lose its training to patience."""
    res = _trial(tmp_path, baseline=0.99, epochs=3, patience=1)  # never beaten here
    assert res["status"] == "ok", res["error"]
    ts = res["train_stats"]
    assert ts["stopped"] == "epoch cap" and ts["steps"] == 45 and len(ts["val_curve"]) >= 2


def test_patience_zero_trains_every_planned_step_unchecked(tmp_path):
    res = _trial(tmp_path, epochs=2, patience=0)
    assert res["status"] == "ok", res["error"]
    ts = res["train_stats"]
    assert ts["steps"] == 30 and ts["val_curve"] == [] and ts["stopped"] is None and ts["kept_step"] == 30
