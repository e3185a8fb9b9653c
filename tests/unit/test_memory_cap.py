"""The memory a CPU training worker may take when the user sets none, and what a trial whose process died
becomes: the pieces that keep K trials that outgrow the host from being killed and re-run without end."""

from __future__ import annotations

import pytest

from trex_ray.executor import train


def test_the_free_memory_read_is_positive_and_within_the_host():
    free = train._memory_free_bytes()
    total = open("/proc/meminfo").readline().split()[1]
    assert free is not None and 0 < free <= int(total) * 1024


@pytest.mark.parametrize(("workers", "node_cpus", "beside"), [
    (2, 2, 2),    # two trials of one worker on a 2-CPU host: half each
    (8, 2, 2),    # eight in flight, but the host's CPUs hold two training workers at once
    (1, 16, 1),   # one trial on a large host: all of the share, not a sixteenth of it
    (4, 16, 4),
])
def test_the_share_splits_the_free_memory_among_the_workers_beside_it(monkeypatch, workers, node_cpus, beside):
    monkeypatch.setattr(train, "_memory_free_bytes", lambda: 20 * 2**30)
    gb = train.auto_memory_limit_gb(workers, node_cpus=node_cpus)
    assert gb == pytest.approx(train.AUTO_MEMORY_SHARE * 20 / beside, abs=0.01)


def test_no_cap_without_the_search_s_count_or_a_memory_reading(monkeypatch):
    assert train.auto_memory_limit_gb(None, node_cpus=2) is None  # a trial run outside a search
    monkeypatch.setattr(train, "_memory_free_bytes", lambda: None)
    assert train.auto_memory_limit_gb(2, node_cpus=2) is None
    monkeypatch.setattr(train, "_memory_free_bytes", lambda: 2**20)  # almost nothing free: a floor, not zero
    assert train.auto_memory_limit_gb(2, node_cpus=2) == 0.25


def test_a_trial_killed_for_memory_is_an_out_of_memory_failure_the_researcher_answers():
    import ray

    from trex_ray.search import _trial_died

    res = _trial_died(ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.\n..."),
                      42.0, "accuracy")
    assert res["status"] == "failed" and res["error"]["type"] == "out_of_memory"
    assert "memory monitor" in res["error"]["message"] and "running low on memory" in res["error"]["message"]
    assert res["accelerator_s"] == 42.0  # what it held until it died counts
    crashed = _trial_died(ray.exceptions.WorkerCrashedError(), 1.0, "accuracy")
    assert crashed["error"]["type"] == "crashed"
