"""Shared fixtures: small JSONL tasks written on the fly, and a per-session model cache."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FTBENCH_DATA = Path(os.environ.get("FTBENCH_DATA", REPO.parent / "shared" / "ftbench_data"))

pytest_plugins = ["tests.skip_policy"]  # a skip that hides a missing set-up step fails the run

# `datasets` prepares what it loads in its cache, and data research catalogues that cache: the tests keep
# one of their own, so that neither the user's cache nor an earlier run changes what a test finds
os.environ["HF_DATASETS_CACHE"] = __import__("tempfile").mkdtemp(prefix="trex-ray-tests-datasets-")
__import__("atexit").register(__import__("shutil").rmtree, os.environ["HF_DATASETS_CACHE"], True)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def nan_model(model_dir: str, dst: Path) -> str:
    """A copy of `model_dir` whose every logit is non-finite (its final norm is inf): training it diverges."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(model_dir, dst)
    model = AutoModelForCausalLM.from_pretrained(dst)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("inf"))
    model.save_pretrained(dst)
    return str(dst)


def majority_rows(n: int, seed: int) -> list[dict]:
    """Inputs carry no signal; 80% of answers are "yes". A model that learns the answer format and the
    prior scores ~0.8, a random model ~0: a task where fine-tuning must beat the baseline."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    return [{"question": f"{rng.choice(words)} {rng.randint(0, 999)}", "answer": "yes" if rng.random() < 0.8 else "no"}
            for _ in range(n)]


@pytest.fixture
def majority_task(tmp_path):
    from trex_ray import Task

    d = tmp_path / "data"
    paths = {s: write_jsonl(d / f"{s}.jsonl", majority_rows(n, i)) for i, (s, n) in
             enumerate([("train", 160), ("val", 40), ("test", 40)])}
    return Task.from_jsonl(name="majority", input_field="question", output_field="answer", metric="accuracy",
                           labels=["yes", "no"], goal="Answer yes or no.", **paths)
