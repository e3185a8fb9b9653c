"""The integration tests' one local Ray cluster, started once for the session in this process and sized for
the largest test that runs in it: two trials in flight, each training on two workers. Tests that need a
cluster of another shape (several nodes, one CPU, a `ray start` head, a driver to kill) start it in a
process of their own and never touch this one."""

from __future__ import annotations

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
