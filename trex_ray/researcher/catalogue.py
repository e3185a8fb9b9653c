"""Data research: datasets related to a task, found on this machine and on the Hugging Face Hub, ranked by
how close they are to it.

- Local: every folder under the roots (`TREX_RAY_DATA_DIRS`, the FT-Bench data folder `FTBENCH_DATA`, any
  given) that holds a data file (train.jsonl, .csv, .parquet, ...) is a candidate. Its README/SOURCE file
  gives the description and license; its first rows give the input and output fields (matched to the
  task's names, then to common ones) and a sample.
- The user's `datasets` cache (`HF_DATASETS_CACHE`, else `HF_HOME/datasets`, else
  ~/.cache/huggingface/datasets): every dataset `datasets.load_dataset` has prepared there with a train
  split (its Arrow files and `dataset_info.json`: features, row count), the newest preparation of each
  dataset and configuration; its description and license from that file or the dataset's card in the Hub
  cache. It is mixed in from those Arrow files, offline.
- Hub (`hub_candidates`): `huggingface_hub` search and the dataset cards (`HF_ENDPOINT` respected). Nothing
  of a found dataset is executed: its loading script, if any, is never run (`trust_remote_code` stays off).

`rank` scores candidates by the cosine similarity of the task (its goal and sample inputs) and each
candidate (its description and sample inputs) under the packaged all-MiniLM-L6-v2; a candidate whose
fields cannot be mapped onto an input and an output cannot be mixed in and ranks last. A chosen candidate
joins a plan through the AIDP `mix` op (`Candidate.mix_source`), with its source and license recorded in
the plan, and the plan's `decontaminate` step keeps val and test out of it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

DATA_FILES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
INPUT_NAMES = ("input", "question", "prompt", "text", "sentence", "query", "instruction", "problem", "source",
               "context")
OUTPUT_NAMES = ("output", "answer", "label", "response", "target", "completion", "solution", "gold", "answers")
ABOUT_FILES = ("SOURCE.md", "README.md", "README_EN.md", "README.txt")
SAMPLE = 5


@dataclass
class Candidate:
    """One dataset that could be mixed into a task's training data."""

    name: str
    origin: str  # local | hub
    description: str = ""
    license: str | None = None
    path: str | None = None  # a local file
    hf: str | None = None  # a hub id
    input_field: str | None = None
    output_field: str | None = None
    rows: int | None = None
    sample: list[dict] = field(default_factory=list)  # [{input, output}]
    score: float = 0.0

    @property
    def mixable(self) -> bool:
        return bool((self.path or self.hf) and self.input_field and self.output_field)

    def mix_source(self, weight: float = 1.0) -> dict:
        """The `mix` op's source for this dataset, its origin and license with it."""
        return {"path": self.path, "hf": self.hf, "input_field": self.input_field, "output_field": self.output_field,
                "weight": weight, "name": self.name, "license": self.license or "unknown"}

    def line(self) -> str:
        fields = f"{self.input_field} -> {self.output_field}" if self.mixable else "fields not mappable"
        where = self.path or (f"hf:{self.hf}" if self.hf else "")
        return (f"{self.name} [{self.origin}; relevance {self.score:.2f}; license {self.license or 'unknown'}; "
                f"{self.rows if self.rows is not None else '?'} rows; {fields}] {where} -- {self.description[:160]}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        """A candidate as a brief keeps it (`to_dict`, maybe with more keys)."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def roots_from_env(extra: tuple[str, ...] = ()) -> list[str]:
    """The local folders searched: `TREX_RAY_DATA_DIRS` (os.pathsep-separated), `FTBENCH_DATA`, and `extra`."""
    out = [d for d in os.environ.get("TREX_RAY_DATA_DIRS", "").split(os.pathsep) if d]
    if os.environ.get("FTBENCH_DATA"):
        out.append(os.environ["FTBENCH_DATA"])
    out += [d for d in extra if d]
    seen, unique = set(), []
    for d in out:
        key = os.path.realpath(d)
        if key not in seen and os.path.isdir(d):
            seen.add(key)
            unique.append(d)
    return unique


def _hf_home() -> str:
    return os.path.expanduser(os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"))


def datasets_cache() -> str:
    """Where `datasets` keeps what it has prepared (the library's own rule, read without importing it), as an
    absolute path: a plan carries it to trials elsewhere."""
    cache = os.environ.get("HF_DATASETS_CACHE") or os.path.join(_hf_home(), "datasets")
    return os.path.abspath(os.path.expanduser(cache))


def hub_cache() -> str:
    """Where `huggingface_hub` keeps downloaded repositories (a dataset's card among them)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(_hf_home(), "hub")
    return os.path.abspath(os.path.expanduser(cache))


def _key(name: str) -> str:
    """A dataset name as both caches can be matched on: `datasets` snake-cases repository names
    (`Owner/SomeName` -> `Owner___some_name`), the Hub cache keeps them (`datasets--Owner--SomeName`)."""
    return re.sub(r"[^a-z0-9/]", "", name.lower())


def _cached_card(name: str, hub: str) -> str:
    """The dataset card of `name` (owner/name) if the Hub cache holds one, else ''."""
    if "/" not in name or not os.path.isdir(hub):
        return ""
    want = _key(name)
    for repo in Path(hub).glob("datasets--*"):
        if _key(repo.name[len("datasets--"):].replace("--", "/")) == want:
            cards = sorted(repo.glob("snapshots/*/README.md"), key=lambda p: p.stat().st_mtime, reverse=True)
            if cards:
                return cards[0].read_text(errors="replace")[:20000]
    return ""


def _first_rows(folder: Path, n: int) -> list[dict]:
    import pyarrow as pa

    from trex_ray.aidp.sources import train_arrow_files

    for arrow in train_arrow_files(folder):
        with pa.memory_map(str(arrow)) as src:
            for batch in pa.ipc.open_stream(src):
                if batch.num_rows:
                    return batch.slice(0, n).to_pylist()
    return []


def _text(v) -> str:
    return v.strip() if isinstance(v, str) else ""


def _cached(name: str, config: str, folder: Path, input_field: str | None, output_field: str | None,
            hub: str) -> Candidate:
    meta = json.loads((folder / "dataset_info.json").read_text())
    features = meta.get("features")
    splits = meta.get("splits")
    train = splits.get("train") if isinstance(splits, dict) else None
    label = name.replace("___", "/") + ("" if config == "default" else f" ({config})")
    card = _cached_card(name.replace("___", "/"), hub)
    cand = Candidate(name=label, origin="cache", hf=str(folder),
                     description=_text(meta.get("description")) or _description(card) or label,
                     license=_text(meta.get("license")) or (license_of(card) if card else None),
                     rows=train.get("num_examples") if isinstance(train, dict) else None)
    cand.input_field, cand.output_field = map_fields(list(features) if isinstance(features, dict) else [],
                                                     input_field, output_field)
    if cand.mixable:
        cand.sample = [{"input": str(r.get(cand.input_field, "")), "output": str(r.get(cand.output_field, ""))}
                       for r in _first_rows(folder, SAMPLE)]
    return cand


def cache_candidates(cache: str, input_field: str | None = None, output_field: str | None = None,
                     hub: str | None = None) -> list[Candidate]:
    """The datasets prepared in a `datasets` cache that have a train split (layout
    `<owner___name>/<config>/<version>/<fingerprint>/`): fields and row count from their dataset_info.json,
    description and license from it or from the dataset's card in the Hub cache (`hub`), a sample from
    the Arrow files. Of several finished preparations of one dataset and configuration, the newest; an
    entry that cannot be read (one being written meanwhile) is left out, never the others with it."""
    from trex_ray.aidp.sources import train_arrow_files

    if not os.path.isdir(cache):
        return []
    hub = hub_cache() if hub is None else hub
    newest: dict[tuple, tuple[float, Path]] = {}
    for top in sorted(Path(cache).iterdir()):
        if not top.is_dir() or top.name == "downloads" or top.name.startswith((".", "_")):
            continue
        for info in top.glob("*/*/*/dataset_info.json"):
            folder = info.parent
            try:
                if folder.name.endswith(".incomplete") or not train_arrow_files(folder):
                    continue
                key, mtime = (top.name, folder.parents[1].name), info.stat().st_mtime
            except OSError:
                continue
            if key not in newest or mtime > newest[key][0]:
                newest[key] = (mtime, folder)
    out = []
    for (name, config), (_, folder) in sorted(newest.items()):
        try:
            out.append(_cached(name, config, folder, input_field, output_field, hub))
        except Exception:  # noqa: BLE001 - a malformed or half-written entry is not a candidate
            continue
    return out


def license_of(text: str) -> str | None:
    """A license named in a README or dataset card: the YAML front matter's `license:`, or a `License:` line,
    or the first line under a License heading."""
    m = re.search(r"^license:\s*\[?\s*['\"]?([^\]'\"\n]+)", text, re.M | re.I)
    if m:
        return m.group(1).strip()
    m = re.search(r"^\W*licen[sc]e\W*[:\-]\s*(.+)$", text, re.M | re.I)
    if m and m.group(1).strip():
        return m.group(1).strip()[:120]
    m = re.search(r"^#+\s*licen[sc]e\s*$\s*^(.+)$", text, re.M | re.I)
    return m.group(1).strip()[:120] if m else None


def _description(text: str) -> str:
    body = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)  # a card's YAML front matter
    lines = [ln.strip("# ").strip() for ln in body.splitlines() if ln.strip() and not ln.startswith("|")]
    return " ".join(lines)[:1500]


def _data_file(folder: Path) -> Path | None:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_FILES)
    for p in files:
        if p.stem.lower() in ("train", "training"):
            return p
    return next((p for p in files if "test" not in p.stem.lower() and "val" not in p.stem.lower()), None)


def map_fields(keys: list[str], input_field: str | None = None, output_field: str | None = None) -> tuple:
    """(input field, output field) of rows with these keys: the task's own names where the rows have them,
    else the first common name of each kind; None where there is none."""
    lower = {k.lower(): k for k in keys}

    def pick(own, names, taken=None):
        for n in ([own] if own else []) + list(names):
            if n and n.lower() in lower and lower[n.lower()] != taken:
                return lower[n.lower()]
        return None

    inp = pick(input_field, INPUT_NAMES)
    return inp, pick(output_field, OUTPUT_NAMES, taken=inp)


def peek(path: Path, n: int = SAMPLE) -> tuple[int, list[dict]]:
    """(rows, the first `n` rows) of a data file, without holding it in memory: a catalogue folder may hold
    gigabytes. Parquet from its footer; JSON lines and CSV/TSV streamed (rows counted, `n` parsed); a JSON
    array is read whole (the format has no other way)."""
    import csv
    import itertools

    ext = path.suffix.lower()
    if ext == ".parquet":
        import pyarrow.parquet as pq

        f = pq.ParquetFile(str(path))
        first = next(f.iter_batches(batch_size=n), None)
        return f.metadata.num_rows, first.to_pylist() if first is not None else []
    if ext in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if ext == ".tsv" else ",")
            first = list(itertools.islice(reader, n))
            return len(first) + sum(1 for _ in reader), first
    with open(path, encoding="utf-8-sig") as fh:
        head = fh.read(4096).lstrip()[:1]
        fh.seek(0)
        if ext == ".json" and head == "[":
            rows = [r for r in json.load(fh) if isinstance(r, dict)]
            return len(rows), rows[:n]
        count, first = 0, []
        for line in fh:
            if line.strip():
                count += 1
                if len(first) < n:
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        first.append(obj)
        return count, first


def _local(folder: Path, input_field: str | None, output_field: str | None) -> Candidate | None:
    data = _data_file(folder)
    if data is None:
        return None
    about = next((folder / n for n in ABOUT_FILES if (folder / n).is_file()), None)
    text = about.read_text(errors="replace")[:20000] if about else ""
    cand = Candidate(name=folder.name, origin="local", description=_description(text) or folder.name,
                     license=license_of(text), path=str(data))
    try:
        cand.rows, rows = peek(data)
    except Exception:  # noqa: BLE001 - an unreadable file is not a candidate
        return None
    if rows:
        cand.input_field, cand.output_field = map_fields(list(rows[0]), input_field, output_field)
    if cand.mixable:
        cand.sample = [{"input": str(r.get(cand.input_field, "")), "output": str(r.get(cand.output_field, ""))}
                       for r in rows]
    return cand


def local_candidates(roots: list[str], input_field: str | None = None, output_field: str | None = None,
                     exclude: tuple[str, ...] = ()) -> list[Candidate]:
    """Every dataset folder under `roots` (a root that is itself a dataset folder counts too); the folders
    of `exclude` (the task's own data) are left out."""
    skip = {os.path.realpath(p) for p in exclude if p}
    out = []
    for root in roots:
        r = Path(root)
        for folder in [r, *sorted(p for p in r.iterdir() if p.is_dir())]:
            if os.path.realpath(folder) in skip:
                continue
            c = _local(folder, input_field, output_field)
            if c is not None:
                out.append(c)
    return out


def hub_candidates(query: str, *, endpoint: str | None = None, limit: int = 10, timeout: float = 10.0) -> list[Candidate]:
    """Datasets on the Hub whose name or card matches `query`: id, card description and license. Raises
    what the client raises (unreachable, a server error): the caller says so and carries on."""
    import tempfile

    from huggingface_hub import DatasetCard, HfApi, hf_hub_download

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint)
    out = []
    for info in api.list_datasets(search=query, limit=limit):
        cand = Candidate(name=info.id, origin="hub", hf=info.id, description=info.id)
        card_license = None
        for tag in getattr(info, "tags", None) or []:
            if str(tag).startswith("license:"):
                card_license = str(tag).split(":", 1)[1]
        try:
            with tempfile.TemporaryDirectory() as cache:  # the card is read, not kept
                card = DatasetCard.load(hf_hub_download(info.id, "README.md", repo_type="dataset", endpoint=endpoint,
                                                        cache_dir=cache, etag_timeout=timeout))
            cand.description = _description(card.text) or info.id
            cand.license = (card.data.to_dict().get("license") if card.data else None) or card_license
            if isinstance(cand.license, list):
                cand.license = ", ".join(map(str, cand.license))
            features = (card.data.to_dict().get("dataset_info") or {}) if card.data else {}
            if isinstance(features, list):
                features = features[0] if features else {}
            keys = [f.get("name") for f in features.get("features") or [] if isinstance(f, dict)]
            cand.input_field, cand.output_field = map_fields([k for k in keys if k])
        except Exception as e:  # noqa: BLE001 - a card missing, unreachable or malformed: the id stays
            cand.license = card_license
            cand.description = f"{info.id} (card unreadable: {type(e).__name__})"
        out.append(cand)
    return out


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether an HTTP(S) endpoint answers at all (any status): the `auto` switches probe once with it."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
        return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def task_text(goal: str, inputs: list[str]) -> str:
    return goal + "\n" + "\n".join(inputs[:20])


def candidate_text(c: Candidate) -> str:
    return c.description[:600] + "\n" + "\n".join(r["input"] for r in c.sample)


def rank(candidates: list[Candidate], goal: str, inputs: list[str], embed=None) -> list[Candidate]:
    """Candidates by relevance to the task, best first: cosine similarity of MiniLM embeddings (`embed`:
    texts -> L2-normalised vectors; the packaged model by default); a candidate that cannot be mixed in
    ranks after every one that can."""
    if not candidates:
        return []
    if embed is None:
        from trex_ray.aidp.semantic import Embedder

        embed = Embedder(threads=1, device="cpu").encode
    vecs = embed([task_text(goal, inputs)] + [candidate_text(c) for c in candidates])
    task, rest = vecs[0], vecs[1:]
    for c, v in zip(candidates, rest):
        c.score = round(float(sum(float(a) * float(b) for a, b in zip(task, v))), 4)
    return sorted(candidates, key=lambda c: (not c.mixable, -c.score, c.name))


def as_json(candidates: list[Candidate]) -> str:
    return json.dumps([c.to_dict() for c in candidates], ensure_ascii=False)


HF_DEFAULT = "https://huggingface.co"
SMALL_TRAIN = 2000  # train rows up to which related data is worth a trial (the offline researcher's rule)
RELATED_MIN = 0.3  # the least relevance (cosine, MiniLM) of a candidate the offline researcher mixes in
_PROBED: dict[str, bool] = {}


def online(switch: str, url: str) -> bool:
    """An `auto|on|off` research switch resolved: `auto` probes `url` once per process."""
    if switch == "off":
        return False
    if switch == "on":
        return True
    if url not in _PROBED:
        _PROBED[url] = reachable(url)
    return _PROBED[url]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _own(task) -> tuple[list[str], set[str]]:
    """The task's own data folders, and the words of its name (an FT-Bench task prepared from `sst2` is
    named `ftbench-sst2-lite`): a catalogue folder either way is the task's own data, never a candidate."""
    if task is None:
        return [], set()
    folders = []
    for split in ("train", "val", "test"):
        path = getattr(task, split, None)
        if path and not getattr(task, "hf", None) and os.path.exists(str(path)):
            folders.append(os.path.dirname(os.path.abspath(str(path))))
    return folders, {w for w in re.split(r"[^a-z0-9]+", task.name.lower()) if len(w) > 2}


def find(task, query: str | None = None, hub: str = "auto", roots: list[str] | None = None, limit: int = 5,
         embed=None, cache: str | None = None) -> tuple[list[Candidate], dict]:
    """Data research: the local catalogue and the `datasets` cache (never the task's own data) and the Hub
    when `hub` allows, ranked against the task (its goal, or `query`, and its inputs); (the best `limit`,
    notes on what was searched and found). The search's requirement analysis and the LLM researcher's
    `search_datasets` tool both ask here."""
    roots = roots_from_env() if roots is None else roots
    cache = datasets_cache() if cache is None else cache
    own, words = _own(task)
    fields = (task.input_field, task.output_field) if task is not None else (None, None)
    task_name = _norm(task.name) if task is not None else None
    found = [c for c in local_candidates(roots, *fields, exclude=tuple(own)) if c.name.lower() not in words]
    own_hf = _key(task.hf.rstrip("/").split("/")[-1]) if task is not None and getattr(task, "hf", None) else None
    cached = [c for c in cache_candidates(cache, *fields)
              if _norm(c.name.split(" (")[0].split("/")[-1]) not in words | {task_name}
              and _key(c.name.split(" (")[0].split("/")[-1]) != own_hf]
    found += cached
    endpoint = os.environ.get("HF_ENDPOINT") or HF_DEFAULT
    notes: dict = {"local_roots": roots, "local_found": len(found) - len(cached), "datasets_cache": cache,
                   "cache_found": len(cached), "hub_endpoint": endpoint}
    if online(hub, endpoint):
        q = query or " ".join(sorted(words - {"ftbench", "lite", "full", "smoke"})) or task.name
        try:
            hub_found = hub_candidates(q, endpoint=endpoint)
            notes["hub"] = f"{len(hub_found)} found for {q!r}"
            found += hub_found
        except Exception as e:  # noqa: BLE001 - the Hub is optional: say what happened, carry on
            notes["hub"] = f"unavailable ({type(e).__name__})"
    else:
        notes["hub"] = "off" if hub == "off" else "not reachable"
    if not found:
        return [], notes
    goal = "\n".join(x for x in (query, getattr(task, "goal", "") or getattr(task, "name", "")) if x)
    inputs = [r["input"] for r in task.rows("train")[:20]] if task is not None else []
    return rank(found, goal, inputs, embed=embed)[:limit], notes


def related_data(task, hub: str = "auto", roots: list[str] | None = None, limit: int = 5,
                 embed=None, cache: str | None = None) -> tuple[list[dict], dict]:
    """`find` for the brief: the candidates as plain data (with `mixable`), and the notes."""
    found, notes = find(task, hub=hub, roots=roots, limit=limit, embed=embed, cache=cache)
    return [c.to_dict() | {"mixable": c.mixable} for c in found], notes
