"""Research tools an LLM researcher may call: read-only, bounded in output size, never the test split.

- `inspect_data(split, n, offset)`: rows of train or val.
- `list_ops()` / `op_schema(name)`: the AIDP operator catalogue.
- `search_datasets(query)`: data folders in the local catalogue (`data_dirs`: each subfolder with a
  README/SOURCE file is a dataset), and the HF Hub when `hub=True` and it is reachable.
- `read_notes(name)`: a user-supplied folder of papers/notes: with no name, the list of files; with a
  name, that file's text (cut to a bound).
A bad call (unknown tool, wrong argument) returns an error message for the model, not an exception.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trex_ray.llm.base import Tool

MAX_CHARS = 6000


def _cut(text: str, limit: int = MAX_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters cut)"


class ResearchTools:
    def __init__(self, task=None, notes_dir: str | None = None, data_dirs: tuple[str, ...] = (), hub: bool = False):
        self.task = task
        self.notes_dir = notes_dir
        self.data_dirs = tuple(d for d in data_dirs if d)
        self.hub = hub

    def specs(self) -> list[Tool]:
        out = [
            Tool("list_ops", "List the data operators (name, kind, description, what they need).",
                 {"type": "object", "properties": {}}),
            Tool("op_schema", "The JSON schema of one data operator's arguments.",
                 {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
            Tool("search_datasets", "Search available datasets (local catalogue; the HF Hub when online).",
                 {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
        ]
        if self.task is not None:
            out.insert(0, Tool("inspect_data", "Rows of the task's train or val split (the test split is hidden).",
                               {"type": "object", "properties": {
                                   "split": {"type": "string", "enum": ["train", "val"]},
                                   "n": {"type": "integer", "minimum": 1, "maximum": 30},
                                   "offset": {"type": "integer", "minimum": 0}}, "required": ["split"]}))
        if self.notes_dir:
            out.append(Tool("read_notes", "The user's folder of papers and notes: no name lists the files; a name "
                            "returns that file's text.", {"type": "object", "properties": {"name": {"type": "string"}}}))
        return out

    def call(self, name: str, args: dict) -> str:
        fn = getattr(self, f"tool_{name}", None)
        if fn is None or name not in {t.name for t in self.specs()}:
            return f"error: unknown tool {name!r}; tools: {', '.join(t.name for t in self.specs())}"
        try:
            return _cut(fn(**(args or {})))
        except TypeError as e:
            return f"error: bad arguments for {name}: {e}"
        except Exception as e:  # noqa: BLE001 - a failing tool is information for the model
            return f"error: {name} failed: {type(e).__name__}: {e}"

    # -- the tools --------------------------------------------------------------------------------
    def tool_inspect_data(self, split: str, n: int = 10, offset: int = 0) -> str:
        if split not in ("train", "val"):
            return "error: split must be train or val (the test split is hidden)"
        rows = self.task.rows(split)[max(0, int(offset)): max(0, int(offset)) + max(1, min(30, int(n)))]
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) or "(no rows)"

    def tool_list_ops(self) -> str:
        from trex_ray.aidp.ops import catalogue

        lines = []
        for op in catalogue():
            needs = [k.removeprefix("needs_") for k in ("needs_llm", "needs_embedding", "needs_gpu") if op[k]]
            lines.append(f"{op['name']} ({op['kind']}{'; needs ' + ', '.join(needs) if needs else ''}): "
                         f"{op['description']}")
        return "\n".join(lines)

    def tool_op_schema(self, name: str) -> str:
        from trex_ray.aidp.ops import OPS

        if name not in OPS:
            return f"error: unknown op {name!r}; ops: {', '.join(OPS)}"
        return json.dumps(OPS[name].args.model_json_schema())

    def tool_search_datasets(self, query: str) -> str:
        words = [w for w in str(query).lower().split() if len(w) > 2]
        hits = []
        for root in self.data_dirs:
            if not os.path.isdir(root):
                continue
            for d in sorted(Path(root).iterdir()):
                if not d.is_dir():
                    continue
                about = ""
                for name in ("SOURCE.md", "README.md", "README_EN.md"):
                    if (d / name).exists():
                        about = (d / name).read_text(errors="replace")[:1500]
                        break
                text = f"{d.name} {about}".lower()
                score = sum(text.count(w) for w in words)
                if score or not words:
                    first = next((ln.strip("# ").strip() for ln in about.splitlines() if ln.strip()), "")
                    hits.append((score, f"{d} -- {first}"))
        hits.sort(key=lambda h: -h[0])
        out = [h for _, h in hits[:10]]
        if self.hub:
            out += self._hub(query)
        return "\n".join(out) or "no datasets found"

    def _hub(self, query: str) -> list[str]:
        try:
            from huggingface_hub import HfApi

            return [f"hf:{d.id}" for d in HfApi().list_datasets(search=query, limit=10)]
        except Exception as e:  # noqa: BLE001 - offline or the hub is down: say so, carry on
            return [f"(HF Hub search unavailable: {type(e).__name__})"]

    def tool_read_notes(self, name: str | None = None) -> str:
        root = Path(self.notes_dir).resolve()
        if not name:
            files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
            return "\n".join(files[:200]) or "(no notes)"
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file():
            return f"error: no note named {name!r} (call read_notes without a name for the list)"
        return path.read_text(errors="replace")
