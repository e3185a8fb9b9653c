"""The built-in demo task, generated as code: spoken clock times to 24-hour HH:MM.

"quarter past three in the afternoon" -> "15:15". SmolLM2-135M-Instruct gets few of these right out
of the box, and a short LoRA fine-tune teaches it a lot, so a small search on 2 CPU cores shows real
gains in minutes. The splits are disjoint by construction.
"""

from __future__ import annotations

import json
import os
import random

HOURS = ["twelve", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
PAST = {5: "five past", 10: "ten past", 15: "quarter past", 20: "twenty past", 25: "twenty-five past", 30: "half past"}
TO = {35: "twenty-five to", 40: "twenty to", 45: "quarter to", 50: "ten to", 55: "five to"}
PERIODS = [("in the morning", range(1, 12)), ("in the afternoon", range(12, 18)),
           ("in the evening", range(18, 22)), ("at night", [22, 23, 0])]


def spoken(h24: int, minute: int, rng: random.Random) -> str | None:
    """A spoken form of h24:minute, or None where English has no natural one in our patterns."""
    if minute in TO:
        named = (h24 + 1) % 24
    else:
        named = h24
    period = next((p for p, hs in PERIODS if h24 in hs), None)
    if named == 12 and minute == 0:
        return "noon" if rng.random() < 0.5 else "twelve o'clock noon"
    if named == 0 and minute == 0:
        return "midnight"
    if period is None:
        return None
    word = HOURS[named % 12]
    if minute == 0:
        clock = f"{word} o'clock"
    elif minute in PAST:
        clock = f"{PAST[minute]} {word}"
    else:
        clock = f"{TO[minute]} {word}"
    return f"{clock} {period}"


def make_examples(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for h in range(24):
        for m in range(0, 60, 5):
            text = spoken(h, m, rng)
            if text is not None:
                rows.append({"question": text, "answer": f"{h:02d}:{m:02d}"})
    rng.shuffle(rows)
    return rows


def write_demo_task(directory: str, seed: int = 0, n_val: int = 48, n_test: int = 64,
                    n_train: int | None = None) -> dict[str, str]:
    """Write train/val/test JSONL files under `directory` (train: every other example, or `n_train` of
    them); returns their paths."""
    rows = make_examples(seed)
    rest = rows[n_val + n_test :]
    splits = {"val": rows[:n_val], "test": rows[n_val : n_val + n_test], "train": rest[:n_train] if n_train else rest}
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for name, part in splits.items():
        paths[name] = os.path.join(directory, f"{name}.jsonl")
        with open(paths[name], "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    return paths


GOAL = "Convert the spoken time to 24-hour HH:MM."


def demo_task(directory: str, **sizes):
    """The clock task in `directory`; `sizes`: n_val, n_test, n_train (see `write_demo_task`)."""
    from trex_ray.task import Task

    paths = write_demo_task(directory, **sizes)
    return Task.from_jsonl(name="clock", input_field="question", output_field="answer", metric="exact_match",
                           goal=GOAL, **paths)
