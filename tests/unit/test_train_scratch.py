"""A training worker's temporary checkpoint and evaluation folders do not outlive it: a worker killed mid-trial
(a lost node, a timeout, the OOM killer) never reaches its clean-up, so the next trial on the host sweeps them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from trex_ray.executor.train import _scratch, sweep_scratch


def test_a_killed_workers_folders_are_swept_and_a_live_ones_kept(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a worker that died without cleaning up
    stale = [tmp_path / f"trex-best-{gone.pid}-abc", tmp_path / f"trex-eval-{gone.pid}-def"]
    for d in stale:
        d.mkdir()
        (d / "adapter_model.safetensors").write_bytes(b"x" * 10)
    live = tmp_path / f"trex-best-{os.getpid()}-ghi"  # a trial still training on this host
    live.mkdir()
    other = tmp_path / f"trex-ray-demo-{gone.pid}-x"  # not a training worker's folder
    other.mkdir()
    assert sorted(sweep_scratch(str(tmp_path))) == sorted(d.name for d in stale)
    assert not any(d.exists() for d in stale) and live.exists() and other.exists()
    assert sweep_scratch(str(tmp_path / "missing")) == []


def test_scratch_folders_are_named_after_their_process(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = _scratch("trex-best-")
    assert os.path.dirname(mine) == str(tmp_path)
    assert os.path.basename(mine).startswith(f"trex-best-{os.getpid()}-")
    assert sweep_scratch() == [] and os.path.isdir(mine)  # kept while this process lives
