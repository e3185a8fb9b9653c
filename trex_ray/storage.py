"""Run folders on a filesystem URI: `storage="s3://bucket/runs"`, `gs://...`, `file:///shared/runs`, or any
URI pyarrow's filesystems understand (fsspec filesystems through `pyarrow.fs.PyFileSystem`).

The search works on a local mirror of the run folder (`~/.cache/trex_ray/storage/<hash of the URI>/`):
the journal is appended there, trials write their node folders there. The mirror is pushed to the URI as
the run goes (the journal and the run's small files after every finished trial, each finished node's
folder once) and in full at the end; `resume` pulls the run folder from the URI first, so a run can be
continued from another machine. Object stores have no append, which is why the journal is not written
to the URI directly.
"""

from __future__ import annotations

import hashlib
import os

from trex_ray.errors import ConfigError


def is_uri(storage: str) -> bool:
    return "://" in storage


class Mirror:
    """A storage URI and its local mirror. Paths given to `push`/`pull` are relative to both roots."""

    def __init__(self, uri: str, local_root: str | None = None) -> None:
        import pyarrow.fs as pafs

        from trex_ray.models import cache_dir

        try:
            self.fs, self.base = pafs.FileSystem.from_uri(uri)
        except (ValueError, OSError) as e:  # ArrowInvalid is a ValueError
            raise ConfigError("storage", f"cannot open {uri!r}: {e}",
                              "give a local folder or a URI pyarrow understands (s3://, gs://, file:///abs/path)") from None
        self.uri = uri.rstrip("/")
        self.base = self.base.rstrip("/")
        key = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        self.local = os.path.abspath(local_root or os.path.join(cache_dir(), "storage", key))
        os.makedirs(self.local, exist_ok=True)
        self.fs.create_dir(self.base, recursive=True)

    def _remote(self, rel: str) -> str:
        return f"{self.base}/{rel}".rstrip("/")

    def push(self, rel: str) -> None:
        """Copy a file or folder from the mirror to the URI (replacing what is there)."""
        import pyarrow.fs as pafs

        src = os.path.join(self.local, rel)
        if not os.path.exists(src):
            return
        if os.path.isdir(src):
            self.fs.create_dir(self._remote(rel), recursive=True)
        else:
            self.fs.create_dir(self._remote(os.path.dirname(rel)), recursive=True)
        pafs.copy_files(src, self._remote(rel), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)

    def pull(self, rel: str) -> bool:
        """Copy a file or folder from the URI into the mirror; False if the URI has none."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self._remote(rel))
        if info.type == pafs.FileType.NotFound:
            return False
        dst = os.path.join(self.local, rel)
        os.makedirs(dst if info.type == pafs.FileType.Directory else os.path.dirname(dst), exist_ok=True)
        pafs.copy_files(self._remote(rel), dst, source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return True

    def pull_run(self, name: str) -> bool:
        """Pull a run folder, unless the mirror's journal is already as long as the URI's (a driver that
        died on this machine may have appended events it had not pushed yet: those are kept)."""
        import pyarrow.fs as pafs

        remote = self.fs.get_file_info(self._remote(f"{name}/journal.jsonl"))
        if remote.type != pafs.FileType.File:
            return False
        local = os.path.join(self.local, name, "journal.jsonl")
        if os.path.exists(local) and os.path.getsize(local) >= (remote.size or 0):
            return True
        return self.pull(name)

    def runs(self) -> list[str]:
        """Run folder names at the URI (those holding a journal)."""
        import pyarrow.fs as pafs

        out = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and \
                    self.fs.get_file_info(f"{info.path}/journal.jsonl").type == pafs.FileType.File:
                out.append(info.base_name)
        return sorted(out)


def fetch_dir(uri: str, dst: str) -> bool:
    """Copy the folder at `uri` to the local `dst` (written beside it, then renamed: a reader never sees half
    of it); False when the URI has no such folder."""
    import shutil
    import uuid

    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return False
    tmp = f"{dst}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    pafs.copy_files(path, tmp, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    try:
        os.rename(tmp, dst)
    except OSError:  # another process fetched it first
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def put_dir(src: str, uri: str) -> None:
    """Copy the local folder `src` to `uri`, unless the URI already has it (entries there are immutable)."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        return
    fs.create_dir(path, recursive=True)
    pafs.copy_files(src, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


class RunSync:
    """Keeps one run folder's URI copy up to date from the mirror (no-op for local storage)."""

    SMALL = ("config.yaml", "brief.json", "result.json", "journal.jsonl")

    def __init__(self, mirror: Mirror | None, run_dir: str) -> None:
        self.mirror, self.run = mirror, os.path.basename(run_dir)
        self.pushed: set[int] = set()

    def after_trial(self, node_id: int | None = None) -> None:
        if self.mirror is None:
            return
        try:
            if node_id is not None and node_id not in self.pushed:
                self.mirror.push(f"{self.run}/nodes/{node_id}")
                self.pushed.add(node_id)
            for name in self.SMALL:
                self.mirror.push(f"{self.run}/{name}")
        except OSError as e:  # the mirror keeps everything; the next push (or the last) catches up
            _warn(f"could not push to {self.mirror.uri} ({e}); the run goes on in {self.mirror.local}")

    def final(self) -> None:
        if self.mirror is None:
            return
        try:
            self.mirror.push(self.run)
        except OSError as e:
            _warn(f"could not push the run to {self.mirror.uri} ({e}); it is complete in "
                  f"{os.path.join(self.mirror.local, self.run)}")


def _warn(msg: str) -> None:
    import logging

    logging.getLogger(__name__).warning(msg)


def prepare(storage: str, run_name: str | None, resume: bool, task_name: str
            ) -> tuple[str, str | None, Mirror | None]:
    """The local storage folder the search works in, and the mirror behind it when `storage` is a URI.
    On resume the run folder is pulled from the URI first (the newest run of the task without a name)."""
    if not is_uri(storage):
        return storage, run_name, None
    import pyarrow.fs as pafs

    mirror = Mirror(storage)
    if resume:
        name = run_name or max((r for r in mirror.runs() if r.startswith(task_name + "-")), default=None)
        if name is None or not mirror.pull_run(name):
            raise ConfigError("resume", f"no run to resume for task {task_name!r} in {storage!r}",
                              "give run_name of an existing run folder, or start a new run without resume")
        run_name = name
    elif run_name and mirror.fs.get_file_info(f"{mirror.base}/{run_name}/journal.jsonl").type == pafs.FileType.File:
        raise ConfigError("run_name", f"a run already exists at {storage.rstrip('/')}/{run_name}",
                          "resume it (trex-ray resume / resume=True) or choose another run_name")
    return mirror.local, run_name, mirror
