"""Export a prepared dataset (the parquet folder a recipe produced) for use outside trex-ray.

- `parquet`: the folder as is (input, output, system, user).
- `jsonl`: one JSON object per row.
- `hf`: a `datasets` folder (`datasets.load_from_disk`) in the conversational prompt-completion layout
  fine-tuning libraries take (`prompt` = system + user messages, `completion` = the assistant's answer,
  so the loss can be put on the answer only), plus `messages` (the whole chat) and the raw fields.
"""

from __future__ import annotations

import os
import shutil
from typing import Literal

FORMATS = ("parquet", "jsonl", "hf")


def chat_columns(row: dict) -> dict:
    from trex_ray.prompting import messages

    prompt = messages(row["user"], row["system"] or None, row.get("chat"))
    completion = [{"role": "assistant", "content": row["output"]}]  # the earlier answers are in the prompt
    return {"prompt": prompt, "completion": completion, "messages": prompt + completion}


def export(data_dir: str, out: str, fmt: Literal["parquet", "jsonl", "hf"]) -> str:
    """Write the dataset at `data_dir` to `out` in `fmt`; returns the path written."""
    import pandas as pd

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(data_dir, out)
        return out
    df = pd.read_parquet(data_dir)
    if fmt == "jsonl":
        df.to_json(out, orient="records", lines=True, force_ascii=False)
        return out
    import datasets

    datasets.disable_progress_bars()
    rows = df.to_dict("records")
    cols = {k: [r[k] for r in rows] for k in ("input", "output", "system", "user")}
    chats = [chat_columns(r) for r in rows]
    for k in ("prompt", "completion", "messages"):
        cols[k] = [c[k] for c in chats]
    shutil.rmtree(out, ignore_errors=True)
    datasets.Dataset.from_dict(cols).save_to_disk(out)
    os.makedirs(out, exist_ok=True)
    return out
