"""Fixtures for the unit tests (no Ray cluster, no models). Helpers live in helpers.py."""

from __future__ import annotations

import sys

import pytest

from .helpers import TreeBuilder, qa_rows, write_jsonl


@pytest.fixture
def data_files(tmp_path):
    """Disjoint train/val/test JSONL files with fields question/answer."""
    d = tmp_path / "data"
    d.mkdir()
    return {
        "train": write_jsonl(d / "train.jsonl", qa_rows(40)),
        "val": write_jsonl(d / "val.jsonl", qa_rows(10, start=100)),
        "test": write_jsonl(d / "test.jsonl", qa_rows(10, start=200)),
    }


@pytest.fixture
def tb():
    return TreeBuilder()


@pytest.fixture(autouse=True)
def _no_ray_cluster(monkeypatch):
    """Unit tests must never start Ray: fail loudly if anything tries."""
    def boom(*a, **k):
        raise AssertionError("a unit test tried to start Ray")

    import trex_ray.runtime as rt

    monkeypatch.setattr(rt, "init_ray", boom)
    if "ray" in sys.modules:
        import ray

        monkeypatch.setattr(ray, "init", boom)
    yield
