"""The integration tests' one local Ray cluster, started once for the session in this process and sized for
the largest test that runs in it: two trials in flight, each training on two workers. Tests that need a
cluster of another shape (several nodes, one CPU, a `ray start` head, a driver to kill) start it in a
process of their own and never touch this one."""

from __future__ import annotations

import time
import warnings

import pytest

# trials in flight and training workers per trial of the largest in-process test (`init_ray` declares
# (W + 1) * K + 1 CPUs for them)
LARGEST = {"max_concurrent": 2, "train_workers": 2}


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    import ray

    from trex_ray.runtime import init_ray

    assert not ray.is_initialized(), "something started Ray before the integration tests' session cluster"
    init_ray(None, **LARGEST)
    yield
    ray.shutdown()


def _held() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 0) - ray.available_resources().get("CPU", 0)


@pytest.fixture(scope="module", autouse=True)
def ray_session_left_free(ray_session):
    """After each module, the session cluster must be whole again: a module whose failure left trials, engines
    or actors holding CPUs would make every later test wait on them. Such a cluster is started afresh, with
    a warning that names the module."""
    yield
    import ray

    from trex_ray.runtime import init_ray

    deadline = time.time() + 30
    while _held() > 0 and time.time() < deadline:
        time.sleep(0.5)
    if _held() > 0:
        warnings.warn(f"{_held()} CPUs of the session cluster were still held 30 s after its tests; restarted it",
                      stacklevel=1)
        ray.shutdown()
        init_ray(None, **LARGEST)
