"""A training worker that dies while Ray Train launches its group (a node lost at that moment, a worker killed
by its host under load) reaches `fit` as Ray Train's controller error, which Ray never retries: the launch call
sits outside its own start-up retries. `fit` counts it as a lost worker and starts the run again, up to
`retries` times, on a real Ray Train run whose worker really dies."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.integration

# Runs wherever the training config is unpickled; kills only a Ray Train worker, the first `n` times
POISON = """
import os
if b"RayTrainWorker" in open("/proc/self/cmdline", "rb").read():
    path = {path!r}
    deaths = len(open(path).read()) if os.path.exists(path) else 0
    if deaths < {n}:
        open(path, "a").write("x")
        os._exit(3)
"""


class DiesOnLaunch:
    """A picklable stand-in for the progress reporter whose unpickling in the training worker kills it."""

    def __init__(self, path: str, n: int):
        self.code = POISON.format(path=path, n=n)

    def __reduce__(self):
        return (exec, (self.code,))


def _fit(tmp_path, reporter, retries):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trex_ray.executor import train as train_mod
    from trex_ray.models import resolve_model
    from trex_ray.plan import TrainConfig

    os.makedirs(tmp_path / "data", exist_ok=True)
    pq.write_table(pa.table({"user": [f"{i} plus {i}?" for i in range(8)], "system": ["Answer."] * 8,
                             "output": [str(2 * i) for i in range(8)]}), tmp_path / "data" / "part.parquet")
    return train_mod.fit(data_dir=str(tmp_path / "data"), model_path=resolve_model("tiny-random"),
                         train_cfg=TrainConfig(epochs=1, batch_size=4).model_dump(), init_adapter=None,
                         node_dir=str(tmp_path / "node"), reporter=reporter, retries=retries, threads=1)


def test_a_worker_that_dies_at_launch_is_restarted_and_the_run_trains(tmp_path):
    deaths = tmp_path / "deaths"
    stats = _fit(tmp_path, DiesOnLaunch(str(deaths), 1), retries=1)
    assert deaths.read_text() == "x"  # the first worker really died at launch
    assert os.path.isdir(stats["artifact"]) and stats["steps"] > 0  # the second one trained


def test_past_its_restarts_a_worker_dying_at_launch_is_a_lost_worker_not_rays_controller_error(tmp_path):
    from trex_ray.executor.train import WorkerLost

    deaths = tmp_path / "deaths"
    with pytest.raises(WorkerLost, match="1 restart"):
        _fit(tmp_path, DiesOnLaunch(str(deaths), 5), retries=1)
    assert deaths.read_text() == "xx"  # the first launch and one restart
