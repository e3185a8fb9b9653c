"""Source ops: where rows come from. Every source yields rows with `input` and `output` strings, and
`chat`: the conversation before the input as JSON text (a `chat` field of the source, as the task's data
files carry for conversations; empty when there is none).

- the task's own train split (the default; val and test never feed training),
- a local file: JSONL, CSV, TSV or parquet (by extension),
- an HF `datasets` dataset by hub id, or a local directory saved with `save_to_disk` / loadable by
  `load_dataset`.
A JSONL line that is not UTF-8, not JSON, not an object or lacks a field is dropped with that reason.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections import Counter
from typing import Literal

from pydantic import Field, model_validator

from trex_ray.aidp.base import OpArgs, OpContext
from trex_ray.aidp.rows import record


class LoadArgs(OpArgs):
    split: Literal["train"] = Field(
        "train", description="The task split to load when no path/hf is given. Only 'train': val and test never feed training."
    )
    path: str | None = Field(None, description="A local file to load instead: .jsonl, .json, .csv, .tsv or .parquet.")
    hf: str | None = Field(None, description="An HF datasets id or a local dataset directory to load instead.")
    hf_split: str = Field("train", description="Split of the HF dataset.")
    input_field: str | None = Field(None, description="Input field of the source (default: the task's input field).")
    output_field: str | None = Field(None, description="Output field of the source (default: the task's output field).")

    @model_validator(mode="after")
    def _one_source(self) -> "LoadArgs":
        if self.path and self.hf:
            raise ValueError("give at most one of path or hf")
        return self


def _parse_jsonl(stats, index: int, infield: str, outfield: str):
    def parse(batch):
        inputs, outputs, chats, dropped = [], [], [], Counter()
        for raw in batch["bytes"]:
            for line in bytes(raw).split(b"\n"):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError:
                    dropped["bad encoding (not UTF-8)"] += 1
                    continue
                except json.JSONDecodeError:
                    dropped["bad JSON"] += 1
                    continue
                if not isinstance(obj, dict):
                    dropped["not a JSON object"] += 1
                elif infield not in obj or outfield not in obj:
                    dropped[f"missing field {infield if infield not in obj else outfield!r}"] += 1
                elif obj[infield] is None or obj[outfield] is None:
                    dropped["null field"] += 1
                else:
                    inputs.append(str(obj[infield]))
                    outputs.append(str(obj[outfield]))
                    chats.append(obj["chat"] if isinstance(obj.get("chat"), str) else "")
        record(stats, index, dropped=dropped)
        return {"input": inputs, "output": outputs, "chat": chats}

    return parse


def read_source(path: str, infield: str, outfield: str, stats=None, index: int = 0):
    """A Ray Data dataset of {input, output} rows from a local file."""
    import ray.data

    from trex_ray.errors import ConfigError

    if not os.path.exists(path):
        raise ConfigError(f"recipe.ops[{index}] (load).path", f"file not found: {path}", "give an existing file")
    ext = path.lower().rsplit(".", 1)[-1]
    if ext in ("jsonl", "json"):
        ds = ray.data.read_binary_files(path)
        return ds.map_batches(_parse_jsonl(stats, index, infield, outfield), batch_format="numpy")
    if ext in ("csv", "tsv"):
        import pyarrow.csv as pacsv

        ds = ray.data.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t" if ext == "tsv" else ","),
                               convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    elif ext == "parquet":
        ds = ray.data.read_parquet(path)
    else:
        raise ConfigError(f"recipe.ops[{index}] (load).path", f"unsupported file type .{ext}",
                          "use .jsonl, .json, .csv, .tsv or .parquet")
    return _select(ds, infield, outfield, index, path)


def _select(ds, infield: str, outfield: str, index: int, where: str):
    from trex_ray.errors import ConfigError

    cols = ds.schema().names
    for f in (infield, outfield):
        if f not in cols:
            raise ConfigError(f"recipe.ops[{index}] (load)", f"field {f!r} is not in {where} (fields: {', '.join(cols)})",
                              "set input_field/output_field of the load op")

    chat = "chat" in cols

    def select(b):
        return {"input": [str(x) for x in b[infield]], "output": [str(x) for x in b[outfield]],
                "chat": [x if isinstance(x, str) else "" for x in b["chat"]] if chat else [""] * len(b)}

    return ds.map_batches(select, batch_format="pandas")


def train_arrow_files(folder: str | pathlib.Path, split: str = "train") -> list[pathlib.Path]:
    """The Arrow files of `split` in a folder `datasets` prepared (`<name>-train.arrow`, or its shards
    `<name>-train-00000-of-00004.arrow`); none for a folder written by `save_to_disk` (it has state.json)."""
    folder = pathlib.Path(folder)
    if (folder / "state.json").exists() or not (folder / "dataset_info.json").exists():
        return []
    return sorted(p for p in folder.glob("*.arrow")
                  if re.fullmatch(rf".+-{re.escape(split)}(-\d+-of-\d+)?\.arrow", p.name))


def _load_hf(a: LoadArgs, infield: str, outfield: str, index: int, sample: tuple[int, int] | None = None):
    """An HF dataset as Ray Data rows. `sample` (rows, seed): only that many, drawn at random, reach Ray (a
    `mix` takes a few thousand rows of what may be a cached corpus of gigabytes)."""
    import datasets
    import ray.data

    arrows = train_arrow_files(a.hf, a.hf_split) if os.path.isdir(a.hf) else []
    if arrows:  # a dataset `load_dataset` prepared in its cache (the catalogue finds these)
        hf = datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in arrows])
    elif os.path.isdir(a.hf) and os.path.exists(os.path.join(a.hf, "dataset_info.json")):
        hf = datasets.load_from_disk(a.hf)
    elif os.path.isdir(a.hf) and os.path.exists(os.path.join(a.hf, "dataset_dict.json")):
        hf = datasets.load_from_disk(a.hf)[a.hf_split]
    else:
        hf = datasets.load_dataset(a.hf, split=a.hf_split)
    if sample is not None and len(hf) > sample[0]:
        hf = hf.shuffle(seed=sample[1]).select(range(sample[0])).flatten_indices()
    return _select(ray.data.from_huggingface(hf), infield, outfield, index, a.hf)


def load(ds, a: LoadArgs, ctx: OpContext, sample: tuple[int, int] | None = None):
    """The op; `sample` (rows, seed) where only that many rows will be used (`mix`): an HF source is cut to
    them before it reaches Ray."""
    infield = a.input_field or ctx.input_field
    outfield = a.output_field or ctx.output_field
    if a.hf:
        return _load_hf(a, infield, outfield, ctx.index, sample)
    if a.path:
        return read_source(a.path, infield, outfield, ctx.stats, ctx.index)
    return read_source(ctx.train_path, ctx.input_field, ctx.output_field, ctx.stats, ctx.index)
