"""Folders shipped between nodes: packing, the content-keyed cache and its pruning (no Ray needed for these)."""

from __future__ import annotations

import os

from trex_ray.modeling import shipping


def _folder(root, name, payload: bytes):
    d = root / name
    (d / "sub").mkdir(parents=True)
    (d / "adapter_config.json").write_text('{"r": 8}')
    (d / "sub" / "weights.bin").write_bytes(payload)
    return d


def test_a_packed_folder_is_written_back_whole(tmp_path):
    src = _folder(tmp_path, "adapter", bytes(range(256)) * 10)
    files = shipping.pack_dir(str(src))
    back = shipping.write_dir(files, str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "adapter_config.json").read_text() == '{"r": 8}'
    assert open(os.path.join(back, "sub", "weights.bin"), "rb").read() == bytes(range(256)) * 10
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]  # the temporary folder was renamed


def test_the_digest_covers_names_and_bytes(tmp_path):
    a = shipping.pack_dir(str(_folder(tmp_path, "a", b"x" * 100)))
    b = shipping.pack_dir(str(_folder(tmp_path, "b", b"x" * 100)))
    c = shipping.pack_dir(str(_folder(tmp_path, "c", b"y" * 100)))
    assert shipping._digest(a) == shipping._digest(b) != shipping._digest(c)
    renamed = {k.replace("weights", "other"): v for k, v in a.items()}
    assert shipping._digest(renamed) != shipping._digest(a)


def test_plain_paths_pass_through_and_the_cache_keeps_the_most_recent(tmp_path):
    assert shipping.local(None) is None and shipping.local("/some/path") == "/some/path"
    assert shipping.key("/some/path") == "/some/path"
    root = tmp_path / "shipped"
    root.mkdir()
    for i in range(5):
        (root / f"d{i}").mkdir()
        os.utime(root / f"d{i}", (1000 + i, 1000 + i))
    shipping._prune(str(root), keep=3)
    assert sorted(os.listdir(root)) == ["d2", "d3", "d4"]


def test_the_cache_is_also_bounded_in_bytes_but_keeps_the_newest(tmp_path):
    root = tmp_path / "shipped"
    root.mkdir()
    for i in range(3):
        (root / f"d{i}").mkdir()
        (root / f"d{i}" / "w.bin").write_bytes(b"x" * 1000)
        os.utime(root / f"d{i}", (1000 + i, 1000 + i))
    shipping._prune(str(root), keep=10, max_bytes=2500)
    assert sorted(os.listdir(root)) == ["d1", "d2"]
    shipping._prune(str(root), keep=10, max_bytes=10)
    assert os.listdir(root) == ["d2"]  # the one just written stays, whatever its size


def test_a_shipped_adapter_gives_its_rank_without_being_written_anywhere():
    from trex_ray.executor.eval_service import lora_rank_bucket

    sent = shipping.Shipped("/elsewhere/adapter", "abc", "node-x", {"adapter_config.json": b'{"r": 24}'})
    assert lora_rank_bucket(sent) == 32
    assert lora_rank_bucket(shipping.Shipped("/x", "d", "n", {})) == 8  # no config: the smallest bucket
