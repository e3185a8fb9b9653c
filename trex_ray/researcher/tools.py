"""Research tools an LLM researcher may call: read-only, bounded in output size, never the test split.

- `inspect_data(split, n, offset)`: rows of train or val.
- `list_ops()` / `op_schema(name)`: the AIDP operator catalogue.
- `search_datasets(query)`: the data catalogue (`researcher.catalogue`): dataset folders on this machine
  (`data_dirs`, TREX_RAY_DATA_DIRS, the FT-Bench data) and the HF Hub (`hub`: auto|on|off), ranked by
  relevance to the query and the task, each with its license, fields and the `mix` source that adds it.
- `search_papers(query)`: arXiv (`papers`: auto|on|off) and the notes folder: titles, abstracts, links.
- `read_notes(name)`: a user-supplied folder of papers/notes: with no name, the list of files; with a
  name, that file's text (cut to a bound).
What the researcher searched and found is kept in `read` (the brief records it; the report shows it).
A bad call (unknown tool, wrong argument) returns an error message for the model, not an exception.
"""

from __future__ import annotations

import json
from pathlib import Path

from trex_ray.llm.base import Tool

MAX_CHARS = 6000


def _cut(text: str, limit: int = MAX_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters cut)"


class ResearchTools:
    def __init__(self, task=None, notes_dir: str | None = None, data_dirs: tuple[str, ...] = (),
                 hub: str = "off", papers: str = "off", embed=None):
        self.task = task
        self.notes_dir = notes_dir
        self.data_dirs = tuple(d for d in data_dirs if d)
        self.hub = hub
        self.papers = papers
        self.embed = embed  # texts -> vectors for ranking (the packaged MiniLM when None)
        self.read: list[dict] = []  # what was searched and found, for the brief and the report

    def specs(self) -> list[Tool]:
        out = [
            Tool("list_ops", "List the data operators (name, kind, description, what they need).",
                 {"type": "object", "properties": {}}),
            Tool("op_schema", "The JSON schema of one data operator's arguments.",
                 {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
            Tool("search_datasets", "Search datasets related to the task (local catalogue; the HF Hub when online), "
                 "most relevant first, each with its license and the `mix` op source that adds it to a recipe.",
                 {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
            Tool("search_papers", "Search papers (arXiv when online; the notes folder): titles, abstracts, links.",
                 {"type": "object", "properties": {"query": {"type": "string"},
                                                   "max_results": {"type": "integer", "minimum": 1, "maximum": 10}},
                  "required": ["query"]}),
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
        from trex_ray.researcher import catalogue as cat

        query = str(query)
        ranked, notes = cat.find(self.task, query, hub=self.hub, roots=cat.roots_from_env(self.data_dirs), limit=10,
                                 embed=self.embed)
        self.read.append({"tool": "search_datasets", "query": query,
                          "found": [f"{c.name} ({c.origin}, {c.license or 'license unknown'})" for c in ranked]})
        lines = [c.line() + (f"\n  mix source: {json.dumps(c.mix_source())}" if c.mixable else "") for c in ranked]
        return "\n".join(lines + [f"(HF Hub at {notes['hub_endpoint']}: {notes['hub']})"])

    def tool_search_papers(self, query: str, max_results: int = 5) -> str:
        from trex_ray.researcher import catalogue as cat
        from trex_ray.researcher import papers as pp

        query, n = str(query), max(1, min(int(max_results), 10))
        found, notes = [], []
        if cat.online(self.papers, pp.arxiv_endpoint()):
            try:
                found += pp.arxiv_search(query, n)
            except Exception as e:  # noqa: BLE001 - a failed search is information, not an error
                notes.append(f"(arXiv search failed: {type(e).__name__}: {str(e)[:120]})")
        else:
            notes.append("(arXiv search off)" if self.papers == "off" else "(arXiv not reachable)")
        found += pp.local_papers(self.notes_dir, query, n)
        self.read.append({"tool": "search_papers", "query": query,
                          "found": [f"{p['title']} ({p['link']})" for p in found]})
        lines = [f"- {p['title']} [{p['source']}{', ' + p['published'] if p.get('published') else ''}] {p['link']}\n"
                 f"  {p['abstract'][:600]}" for p in found]
        return "\n".join(lines + notes) or "no papers found"

    def tool_read_notes(self, name: str | None = None) -> str:
        root = Path(self.notes_dir).resolve()
        if not name:
            files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
            return "\n".join(files[:200]) or "(no notes)"
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file():
            return f"error: no note named {name!r} (call read_notes without a name for the list)"
        return path.read_text(errors="replace")
