"""Reading a task's data the way users have it: files (JSONL, a JSON array, CSV/TSV, parquet) or an HF
`datasets` dataset, in one of the row formats (conversations included), and splitting val/test off train.

Formats (a task's `format`; `auto` detects it from the first rows of train):
- `fields`: the task's `input_field` and `output_field` hold the input and the expected output.
- `alpaca`: `instruction`, optional `input`, `output`; the model input is the instruction, then a blank
  line and the input when there is one.
- `sharegpt`: `conversations`, a list of `{from, value}` turns (`human`/`user`, `gpt`/`assistant`,
  `system`).
- `chat`: OpenAI's `messages`, a list of `{role, content}`.
A conversation (sharegpt, chat) is one row: its last user turn is the input, the assistant turn after it
the output, and what came before is the row's `chat` (a leading system message, kept as the row's system
prompt, and the earlier turns): training puts the loss on every assistant turn, evaluation asks for the
last one given the turns before it. Rows a format cannot read (a turn that is not text, a conversation
that does not alternate user and assistant, a field that is a list, a null, ...) are dropped and counted
by reason, never made into text.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import numbers
import os
import random
import re
from collections import Counter
from typing import Any

from trex_ray.errors import ConfigError

log = logging.getLogger(__name__)

FORMATS = ("auto", "fields", "alpaca", "sharegpt", "chat")
FILE_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")

# val and test split off train when not given: this share of train each, at least 1 row, at most CAP rows
SPLIT_SHARE = 0.1
SPLIT_CAP = 500
SPLIT_SEED = 0
# a val/test sharing more than this share of its rows' inputs with another split is refused (allow_overlap)
OVERLAP_LIMIT = 0.05


class Drop(Exception):
    """A row its format cannot read; the message is the reason it is counted under."""


# --------------------------------------------------------------------------------------------------
# records: the rows of a file or dataset as (where, object) pairs


def _utf8(data: bytes, path: str, split: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(split, f"{path} line {line} is not UTF-8 text (byte 0x{data[e.start]:02x})",
                          "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)") from None


def read_file(path: str, split: str) -> tuple[list[tuple[str, Any]], bool]:
    """The records of a data file as (where, object) pairs ("line 3", "row 3"), and whether the file is
    JSON lines (which the data pipeline can read as it is)."""
    if not os.path.isfile(path):
        raise ConfigError(split, f"file not found: {path}", "give the path of an existing data file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_TYPES:
        raise ConfigError(split, f"unsupported file type {ext or '(none)'}: {path}",
                          f"use {', '.join(FILE_TYPES)}, or an HF dataset (hf: / Task.from_hf)")
    if ext == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - pyarrow's message says what is wrong with the file
            raise ConfigError(split, f"{path} is not a readable parquet file ({e})", "give a parquet file") from None
        return [(f"row {i}", r) for i, r in enumerate(table.to_pylist(), 1)], False
    with open(path, "rb") as f:
        data = f.read()
    text = _utf8(data, path, split)
    if ext in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if ext == ".tsv" else ",")
        out = []
        try:
            for r in reader:
                out.append((f"line {reader.line_num}", r))
        except csv.Error as e:
            raise ConfigError(split, f"{path} line {reader.line_num} is not valid CSV ({e})", "fix that line") from None
        return out, False
    if ext == ".json" and text.lstrip().startswith("["):
        try:
            arr = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(split, f"{path} line {e.lineno} is not valid JSON ({e.msg})", "fix the file") from None
        return [(f"item {i}", r) for i, r in enumerate(arr, 1)], False
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise ConfigError(split, f"{path} line {n} is not valid JSON ({e.msg})", "fix or remove that line") from None
    return out, not data.startswith(b"\xef\xbb\xbf")  # the pipeline reads JSON lines without a byte-order mark


_SLICE = re.compile(r"^\s*([^\[\]]+?)\s*(?:\[\s*(-?\d*%?)\s*:\s*(-?\d*%?)\s*\])?\s*$")


def _bound(s: str, n: int) -> int | None:
    if not s:
        return None
    return round(n * int(s[:-1]) / 100) if s.endswith("%") else int(s)


def read_hf(source: str, spec: str, split: str) -> list[tuple[str, Any]]:
    """The records of one split of an HF dataset: a folder written by `save_to_disk` (a DatasetDict or a
    Dataset), any other local folder or a hub id through `load_dataset`. `spec` is a split name with an
    optional slice, as `datasets` writes it: `validation[:200]`, `train[10%:]`."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - a core dependency
        raise ConfigError("hf", "the datasets package is not installed", "pip install datasets") from None
    m = _SLICE.match(spec or "")
    if not m:
        raise ConfigError(split, f"{spec!r} is not a split of {source}", "write a split name, e.g. train or "
                          "validation[:200]")
    name, lo, hi = m.groups()
    on_disk = os.path.isdir(source) and any(os.path.exists(os.path.join(source, f))
                                           for f in ("dataset_dict.json", "dataset_info.json", "state.json"))
    try:
        if on_disk:
            ds = datasets.load_from_disk(source)
            if isinstance(ds, datasets.DatasetDict):
                if name not in ds:
                    raise ConfigError(split, f"{source} has no split {name!r} (it has: {', '.join(ds)})",
                                      "name one of its splits")
                ds = ds[name]
            elif name not in ("train", str(ds.split)):
                raise ConfigError(split, f"{source} holds one dataset, with no split {name!r}",
                                  f"use {split}: train[...] slices of it, or leave {split} out to split it off train")
            n = len(ds)
            a, b = _bound(lo, n), _bound(hi, n)
            if a is not None or b is not None:
                ds = ds.select(range(n)[slice(a, b)])
        else:
            ds = datasets.load_dataset(source, split=spec)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds; its message names the problem
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("hf", f"cannot load split {spec!r} of {source!r}: {msg}",
                          "give a folder written by save_to_disk, or a hub id reachable from here") from None
    return [(f"row {i}", r) for i, r in enumerate(ds, 1)]


# --------------------------------------------------------------------------------------------------
# formats: a record -> (input, output)


def _kind(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "mapping"
    return type(v).__name__


def text(obj: dict, key: str, what: str | None = None) -> str:
    """A record's field as text: strings as they are, numbers and booleans written out; anything else
    (missing, null, a list, a mapping) is a `Drop`."""
    what = what or repr(key)
    if key not in obj:
        raise Drop(f"missing field {what}")
    v = obj[key]
    if v is None:
        raise Drop(f"{what} is null")
    if isinstance(v, str):
        return v
    if isinstance(v, numbers.Real):  # numbers (and booleans) are written out
        return str(v)
    raise Drop(f"{what} is a {_kind(v)}, not text")


def detect(records: list[tuple[str, Any]], input_field: str, output_field: str, fields_given: bool) -> str:
    """The format of the first rows: fields named by the task first when the user named them, then the
    shapes of sharegpt, chat and alpaca; else fields."""
    first = [obj for _, obj in records[:20] if isinstance(obj, dict)]
    if not first:
        return "fields"
    if fields_given and all(input_field in o and output_field in o for o in first[:1]):
        return "fields"
    for fmt, test in (("sharegpt", lambda o: isinstance(o.get("conversations"), list)),
                      ("chat", lambda o: isinstance(o.get("messages"), list)),
                      ("alpaca", lambda o: "instruction" in o and "output" in o)):
        if sum(map(test, first)) * 2 > len(first):
            return fmt
    return "fields"


_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
          "model": "assistant", "bot": "assistant", "chatgpt": "assistant"}


def _turns(items: Any, role_key: str, text_key: str, what: str) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        raise Drop(f"{what} is a {_kind(items)}, not a list of turns")
    out = []
    for t in items:
        if not isinstance(t, dict) or role_key not in t or text_key not in t:
            raise Drop(f"a turn of {what} has no {role_key!r}/{text_key!r}")
        role = _ROLES.get(str(t[role_key]).strip().lower())
        if role is None:
            raise Drop(f"turn role {t[role_key]!r} (not supported)")
        content = t[text_key]
        if isinstance(content, list):  # OpenAI content parts: text parts only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise Drop("message content that is not text (e.g. an image)")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise Drop(f"a turn's {text_key!r} is a {_kind(content)}, not text")
        out.append((role, content))
    return out


def _conversation(turns: list[tuple[str, str]]) -> tuple[str, str, dict | None]:
    """A conversation as (input, output, chat): the last user turn, the assistant's answer to it, and the
    context before them ({"system", "history"}; None when there is none)."""
    system = turns[0][1] if turns and turns[0][0] == "system" else None
    rest = turns[1:] if system is not None else turns
    if any(r == "system" for r, _ in rest):
        raise Drop("system turn after the first turn")
    if not rest:
        raise Drop("empty conversation")
    if rest[0][0] != "user":
        raise Drop("conversation does not start with a user turn")
    for (a, _), (b, _) in zip(rest, rest[1:]):
        if a == b:
            raise Drop(f"two {a} turns in a row")
    if rest[-1][0] != "assistant":
        raise Drop("no assistant answer")
    history = [{"role": r, "content": c} for r, c in rest[:-2]]
    chat = {"system": system, "history": history} if system is not None or history else None
    return rest[-2][1], rest[-1][1], chat


def convert(obj: Any, fmt: str, input_field: str, output_field: str) -> tuple[str, str, dict | None]:
    """A record as (input, output, its conversation context or None); a `Drop` when the format cannot read it."""
    if not isinstance(obj, dict):
        raise Drop(f"not an object (a {_kind(obj)})")
    if fmt == "fields":
        return text(obj, input_field), text(obj, output_field), None
    if fmt == "alpaca":
        instruction, output = text(obj, "instruction"), text(obj, "output")
        extra = "" if obj.get("input") in (None, "") else text(obj, "input")
        return instruction + ("\n\n" + extra if extra.strip() else ""), output, None
    if fmt == "sharegpt":
        return _conversation(_turns(obj.get("conversations"), "from", "value", "conversations"))
    if fmt == "chat":
        return _conversation(_turns(obj.get("messages"), "role", "content", "messages"))
    raise ValueError(f"unknown format {fmt!r}")


# --------------------------------------------------------------------------------------------------
# splitting val/test off train, and what splits share


def norm_input(s: str) -> str:
    return " ".join(s.split()).casefold()


def example_text(row: dict) -> str:
    """What asks an example's question: its input, after the turns of its conversation (two conversations
    that end on the same "Which one?" are different examples)."""
    chat = row.get("chat")
    if not chat:
        return row["input"]
    return "\n".join([*(t["content"] for t in json.loads(chat)["history"]), row["input"]])


def classification_like(outputs: list[str]) -> bool:
    """Few distinct answers, repeated: a label set (the profile's rule)."""
    counts = Counter(outputs)
    return len(counts) <= max(20, len(outputs) // 50) and len(counts) < len(outputs)


def split_size(n: int) -> int:
    return min(SPLIT_CAP, max(1, round(SPLIT_SHARE * n)))


def split_off(rows: list[dict], want: list[str], seed: int = SPLIT_SEED) -> tuple[list[int], dict[str, list[int]], bool]:
    """Indices of `rows` that stay in train, and of each split in `want` taken from it (`split_size` rows
    each), and whether the split was stratified by output. Rows with the same input stay together, so
    no split shares an input with another; with classification-like outputs every label keeps its share
    in every split. Deterministic for a seed and the rows' order."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(norm_input(example_text(r)), []).append(i)
    if len(groups) < len(want) + 1:
        raise ConfigError(want[0], f"train has {len(rows)} rows ({len(groups)} distinct inputs): too few to split "
                          f"{' and '.join(want)} off it", f"give {' and '.join(want)} files, or more training rows")
    rng = random.Random(seed)
    stratified = classification_like([r["output"] for r in rows])
    strata: dict[str, list[list[int]]] = {}
    for g in groups.values():
        strata.setdefault(rows[g[0]]["output"] if stratified else "", []).append(g)
    keyed = []
    for label in sorted(strata):
        gs = strata[label]
        rng.shuffle(gs)
        keyed += [((j + 0.5) / len(gs), rng.random(), g) for j, g in enumerate(gs)]
    order = [g for *_, g in sorted(keyed, key=lambda k: (k[0], k[1]))]  # any prefix keeps the label shares
    taken: dict[str, list[int]] = {}
    pos = 0
    for split in want:
        size, taken[split] = split_size(len(rows)), []
        while len(taken[split]) < size and pos < len(order) - 1:  # train keeps at least one group
            taken[split] += order[pos]
            pos += 1
        taken[split].sort()
    train = sorted(i for g in order[pos:] for i in g)
    return train, taken, stratified


def shared_inputs(a: list[dict], b: list[dict]) -> tuple[int, int]:
    """How many rows of the smaller of two splits have an input (normalised) that the other one has too,
    and the smaller one's size."""
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    inputs = {norm_input(example_text(r)) for r in big}
    return sum(norm_input(example_text(r)) in inputs for r in small), len(small)


def too_much_overlap(shared: int, n: int) -> bool:
    return n > 0 and shared / n > OVERLAP_LIMIT


def write_jsonl_if_changed(path: str, rows: list[dict]) -> bool:
    """Write `rows` as {input, output} JSON lines (and `chat`, the conversation before them, as a JSON
    string, where any row has one) unless the file already holds exactly that (so a resumed run keeps its
    files' mtimes, which the dataset cache keys on). Whether it wrote."""
    chat = any(r.get("chat") for r in rows)
    data = "".join(json.dumps({"input": r["input"], "output": r["output"], **({"chat": r.get("chat") or ""} if chat else {})},
                              ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if os.path.isfile(path) and os.path.getsize(path) == len(data):
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True
