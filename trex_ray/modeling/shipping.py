"""Folders that travel to nodes without the driver's disk: adapters, full checkpoints.

A trial writes its adapter in its node folder. On a cluster whose nodes share no disk, an evaluation
engine or a training worker on another node cannot read that path, so the sender `ship`s the folder: its
files travel inside the request (Ray moves a large argument through its object store, owned by the caller
for as long as the call runs, so nothing outlives or predeceases the request), and the receiver's `local`
writes them into its own cache
(`<cache>/shipped/<content hash>/`), keyed by content so an engine that keys adapters by path (vLLM's
LoRA ids) sees one stable path per adapter. On the sender's own node, and on a one-node cluster, the path
is used as it is and nothing is copied.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shipped:
    """A folder as the sending node has it, with its files."""

    path: str
    digest: str
    node_id: str
    files: dict[str, bytes] = field(repr=False)

    def __str__(self) -> str:
        return self.path


def pack_dir(path: str) -> dict[str, bytes]:
    """A folder as {relative path: bytes}."""
    out = {}
    for root, _, files in os.walk(path):
        for name in sorted(files):
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


def write_dir(files: dict[str, bytes], target: str) -> str:
    """`pack_dir`'s output written to `target` (created atomically: a half-written copy is never seen)."""
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
    for rel, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
        with open(os.path.join(tmp, rel), "wb") as f:
            f.write(data)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.rename(tmp, target)
    except OSError:  # another process unpacked the same content first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()[:24]


def _alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def ship(path: str | None, *, always: bool = False) -> str | Shipped | None:
    """`path` ready to be read on any node: the path itself on a one-node cluster (unless `always`), else a
    `Shipped` carrying the folder's files."""
    import ray

    if not path or not os.path.isdir(path) or (not always and _alive_nodes() <= 1):
        return path
    files = pack_dir(path)
    return Shipped(os.path.abspath(path), _digest(files), ray.get_runtime_context().get_node_id(), files)


def local(x: str | Shipped | None) -> str | None:
    """A path this process can read for what `ship` returned (plain paths pass through unchanged)."""
    if x is None or isinstance(x, str):
        return x
    import ray

    try:
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - not in a Ray worker: only the copy is safe
        here = None
    if here == x.node_id and os.path.isdir(x.path):
        return x.path
    from trex_ray.models import cache_dir

    root = os.path.join(cache_dir(), "shipped")
    target = os.path.join(root, x.digest)
    if os.path.isdir(target):
        os.utime(target)  # recently used: kept by the pruning below
    else:
        write_dir(x.files, target)
        _prune(root, keep=KEEP)
    return target


KEEP = 64  # copies kept per node, most recently used first (an engine re-reads an adapter it evicted)
KEEP_BYTES = 20 * 2**30  # and at most this much of them (full checkpoints are large); the newest always stays


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def _prune(root: str, keep: int, max_bytes: int = KEEP_BYTES) -> None:
    entries = [os.path.join(root, d) for d in os.listdir(root) if ".tmp-" not in d]
    entries.sort(key=lambda d: os.path.getmtime(d) if os.path.exists(d) else 0, reverse=True)
    total = 0
    for i, d in enumerate(entries):
        total += _size(d)
        if i > 0 and (i >= keep or total > max_bytes):
            shutil.rmtree(d, ignore_errors=True)


def key(x: str | Shipped | None) -> str | None:
    """The sender's path: what identifies the folder in logs and engine tables."""
    return x.path if isinstance(x, Shipped) else x
