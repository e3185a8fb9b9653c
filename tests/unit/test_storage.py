"""The storage-URI mirror without Ray: push, pull, and which journal wins on resume."""

from __future__ import annotations

import os

import pytest

from trex_ray.errors import ConfigError
from trex_ray.storage import Mirror, RunSync, prepare


def _run(root, name="clock-20261201-101500", events=2):
    d = root / name
    (d / "nodes" / "1" / "adapter").mkdir(parents=True)
    (d / "nodes" / "1" / "adapter" / "adapter_model.safetensors").write_bytes(b"w" * 100)
    (d / "journal.jsonl").write_text('{"type": "x"}\n' * events)
    (d / "config.yaml").write_text("name: clock\n")
    return d


def test_a_run_pushed_by_one_mirror_is_pulled_whole_by_another(tmp_path):
    uri = f"file://{tmp_path}/remote"
    a = Mirror(uri, local_root=str(tmp_path / "a"))
    run = _run(tmp_path / "a")
    sync = RunSync(a, str(run))
    sync.after_trial(1)
    assert (tmp_path / "remote" / run.name / "nodes" / "1" / "adapter" / "adapter_model.safetensors").exists()
    assert a.runs() == [run.name]
    b = Mirror(uri, local_root=str(tmp_path / "b"))
    assert b.pull_run(run.name)
    assert (tmp_path / "b" / run.name / "journal.jsonl").read_text() == (run / "journal.jsonl").read_text()
    assert not b.pull_run("nothing-here")


def test_resume_keeps_a_local_journal_that_is_ahead_of_the_uri(tmp_path):
    uri = f"file://{tmp_path}/remote"
    m = Mirror(uri, local_root=str(tmp_path / "m"))
    run = _run(tmp_path / "m", events=2)
    RunSync(m, str(run)).final()
    (run / "journal.jsonl").write_text('{"type": "x"}\n' * 5)  # appended, then the driver died before a push
    assert m.pull_run(run.name)
    assert (run / "journal.jsonl").read_text().count("\n") == 5  # not replaced by the shorter copy
    os.remove(run / "journal.jsonl")
    assert m.pull_run(run.name) and (run / "journal.jsonl").read_text().count("\n") == 2


def test_prepare_names_the_field_for_a_missing_run_or_a_taken_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TREX_RAY_CACHE", str(tmp_path / "cache"))
    uri = f"file://{tmp_path}/remote"
    assert prepare(str(tmp_path / "local"), None, False, "clock") == (str(tmp_path / "local"), None, None)
    with pytest.raises(ConfigError) as e:
        prepare(uri, None, True, "clock")
    assert e.value.field == "resume"
    m = Mirror(uri)
    _run(tmp_path / "src")
    m.local = str(tmp_path / "src")
    m.push("clock-20261201-101500")
    with pytest.raises(ConfigError) as e:
        prepare(uri, "clock-20261201-101500", False, "clock")
    assert e.value.field == "run_name"
    local, name, mirror = prepare(uri, None, True, "clock")  # the newest run of the task
    assert name == "clock-20261201-101500" and os.path.exists(os.path.join(local, name, "journal.jsonl"))
