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

# The tests run in two processes on two cores (pyproject's addopts), and each starts Ray workers, trials and
# engines whose torch threads wait for each other in OpenMP barriers: libgomp's default spins ~300k times
# before it sleeps, which on shared cores burns the time the other process needs (two small-matmul loops
# at 2 threads each: 20 s each together where one alone took 3.9 s; at 1000 spins 9 s together and 3.3 s
# alone). Set before anything loads libgomp; Ray's workers and the tests' subprocesses inherit it.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

# `datasets` prepares what it loads in its cache, and data research catalogues that cache: the tests keep
# one of their own, so that neither the user's cache nor an earlier run changes what a test finds
os.environ["HF_DATASETS_CACHE"] = __import__("tempfile").mkdtemp(prefix="trex-ray-tests-datasets-")
__import__("atexit").register(__import__("shutil").rmtree, os.environ["HF_DATASETS_CACHE"], True)


# The longest modules, longest first (seconds each on 2 cores, one process, measured at 6a6b924). The suite
# runs in two processes that take a whole module at a time (pyproject's addopts): started first, the long
# modules end early and the two processes finish close together. The other modules follow, and the order
# of everything else (the long modules' own tests, the rest) stays pytest-randomly's.
LONGEST_FIRST = {  # module: seconds
    "integration/test_cluster.py": 315, "integration/test_eval_service.py": 293, "integration/test_benchmarks.py": 181,
    "integration/test_ftbench.py": 167, "integration/test_llm_search.py": 153, "integration/test_faults.py": 130,
    "integration/test_train_options.py": 114, "integration/test_search.py": 100, "integration/test_trackers.py": 99,
    "integration/test_architectures.py": 80, "integration/test_aidp_models.py": 77, "integration/test_aidp.py": 67,
    "integration/test_formats_search.py": 57, "integration/test_budget.py": 50, "integration/test_early_stopping.py": 45,
}


def pytest_collection_modifyitems(config, items):  # after pytest-randomly's shuffle (it wraps this hook)
    here = Path(__file__).parent

    def seconds(item) -> float:
        try:
            return LONGEST_FIRST.get(item.path.relative_to(here).as_posix(), 0)
        except ValueError:  # a test outside this folder
            return 0

    items.sort(key=lambda item: -seconds(item))  # stable: ties keep the shuffled order


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
