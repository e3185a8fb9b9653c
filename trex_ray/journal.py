"""The run journal: one JSON event per line in `<run>/journal.jsonl`, appended and flushed as events
happen, so a run can be rebuilt after the driver dies. A torn last line (a crash mid-write) is ignored.
"""

from __future__ import annotations

import json
import os
from typing import Iterator


def read_events(path: str) -> Iterator[dict]:
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                return  # torn final write
            raise


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._repair()
        self._f = open(path, "a", encoding="utf-8")

    def _repair(self) -> None:
        """Make the file end on a line boundary: a final line that lost only its newline is complete and
        kept (newline added); a torn one is cut. Either way the next append starts on a fresh line."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            try:
                json.loads(data[cut:])
                f.write(b"\n")
            except ValueError:
                f.truncate(cut)

    def append(self, event: dict) -> None:
        self._f.write(json.dumps(event, default=str) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
