"""A run folder on a filesystem URI (`file://`, standing in for s3:// or gs://): the URI receives the
journal and every finished node's folder as the search goes, and a run whose local mirror is gone (another
machine) is resumed from the URI alone, its finished nodes kept as they were (not trained again)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import trex_ray
from trex_ray.storage import Mirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_run_on_a_storage_uri_is_pushed_there_and_resumed_from_there(tmp_path, majority_task):
    uri = f"file://{tmp_path}/remote"
    kw = dict(base_model="tiny-random", max_concurrent=1, storage=uri, run_name="r", progress=False)
    first = trex_ray.search(majority_task, budget=trex_ray.Budget(trials=1), **kw)
    remote = tmp_path / "remote" / "r"
    assert (remote / "result.json").exists() and (remote / "brief.json").exists()
    adapter = remote / "nodes" / "1" / "adapter"
    assert any(f.name.startswith("adapter_model") for f in adapter.iterdir())
    assert "storage: " + uri in (remote / "config.yaml").read_text()
    before = [json.loads(x) for x in open(remote / "journal.jsonl")]
    node1 = next(e["result"] for e in before if e["type"] == "node_finished" and e["id"] == 1)

    mirror = Mirror(uri).local
    assert first.run_dir == os.path.join(mirror, "r")
    shutil.rmtree(mirror)  # a driver on another machine: nothing local
    second = trex_ray.search(majority_task, budget=trex_ray.Budget(trials=2), resume=True, **kw)
    after = [json.loads(x) for x in open(remote / "journal.jsonl")]
    finished = {e["id"]: e["result"] for e in after if e["type"] == "node_finished"}
    assert finished[1] == node1 and set(finished) == {0, 1, 2}  # node 1 kept as it was, one more trial
    # not trained again: its result (with its timings) is the first session's, and it was never relaunched
    assert not [e for e in after if e["type"] == "node_relaunched" and e["id"] == 1]
    assert len([n for n in second.nodes if n.id != 0]) == 2
    assert (remote / "nodes" / "2" / "result.json").exists()
    assert json.load(open(remote / "result.json"))["spent"]["trials"] == 2
    assert list((tmp_path / "remote" / "cache" / "datasets").iterdir())  # the dataset cache is at the URI too

    shutil.rmtree(mirror)  # the results, read from the URI alone
    res = trex_ray.load_run(f"{uri}/r")
    assert [n.id for n in res.nodes] == [0, 1, 2] and res.best.id == second.best.id
    if res.best.id != 0:
        assert os.path.exists(os.path.join(res.best.adapter, "adapter_config.json"))
        model, tok = res.load_model()
        assert model.peft_config
    from trex_ray.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        trex_ray.load_run(f"{uri}/no-such-run")
    assert e.value.field == "run"


def test_a_storage_uri_nobody_can_open_names_the_field(tmp_path, majority_task):
    from trex_ray.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        trex_ray.search(majority_task, base_model="tiny-random", storage="nosuchscheme://x/runs", progress=False)
    assert e.value.field == "storage"
    with pytest.raises(ConfigError) as e:
        trex_ray.search(majority_task, base_model="tiny-random", storage=f"file://{tmp_path}/empty", resume=True,
                        progress=False)
    assert e.value.field == "resume"
