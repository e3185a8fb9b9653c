"""Formatting and row filters. Each filter computes a statistic per row, then keeps or drops on it,
counting drops by reason.

- `format`: render the chat prompt fields (system prompt + user template); answer-only loss is applied
  by the trainer, which masks everything but the `output` tokens.
- `length_filter`: empty / near-empty rows, and rows too long in characters or base-model tokens.
- `regex_filter`: keep rows matching, or drop rows matching, a pattern in a field.
- `script_filter`: keep rows whose letters are mostly in the allowed Unicode scripts (Latin, Han, ...).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trex_ray.aidp.base import OpArgs, OpContext
from trex_ray.aidp.rows import filter_rows, map_rows


class FormatArgs(OpArgs):
    template: str = Field("{input}", description="User message template; `{input}` is replaced by the example's input.")
    system: str | None = Field(None, description="System prompt; None uses a short neutral one.")

    @model_validator(mode="after")
    def _has_input(self) -> "FormatArgs":
        if "{input}" not in self.template:
            raise ValueError("template must contain the placeholder {input}")
        return self


def format_rows(ds, a: FormatArgs, ctx: OpContext):
    template, system = a.template, a.system or ""
    return map_rows(ds, ctx.stats, ctx.index, lambda r: {"system": system, "user": template.replace("{input}", r["input"])},
                    "format")


class LengthFilterArgs(OpArgs):
    min_chars: int = Field(1, ge=0, description="Drop rows whose input or output has fewer non-space characters.")
    max_chars: int | None = Field(None, ge=1, description="Drop rows whose input+output is longer than this.")
    max_tokens: int | None = Field(None, ge=8, description="Drop rows whose input+output is longer than this many "
                                   "tokens of the base model.")


@lru_cache(maxsize=2)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    from trex_ray.models import remote_code

    return AutoTokenizer.from_pretrained(path, **remote_code())


def length_filter(ds, a: LengthFilterArgs, ctx: OpContext):
    tok_path = ctx.tokenizer_path if a.max_tokens is not None else None

    def reason(r: dict) -> str | None:
        if min(len(r["input"].strip()), len(r["output"].strip())) < a.min_chars:
            return "empty or near-empty"
        if a.max_chars is not None and len(r["input"]) + len(r["output"]) > a.max_chars:
            return f"longer than {a.max_chars} chars"
        if tok_path and len(_tokenizer(tok_path)(r["input"] + " " + r["output"])["input_ids"]) > a.max_tokens:
            return f"longer than {a.max_tokens} tokens"
        return None

    return filter_rows(ds, ctx.stats, ctx.index, reason, "length_filter")


class RegexFilterArgs(OpArgs):
    pattern: str = Field(description="A Python regular expression (searched, not fully matched).")
    field: Literal["input", "output"] = Field("input", description="Which field to search.")
    action: Literal["keep", "drop"] = Field("drop", description="keep: keep only matching rows; drop: drop matching rows.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        return v


def regex_filter(ds, a: RegexFilterArgs, ctx: OpContext):
    rx = re.compile(a.pattern)

    def reason(r: dict) -> str | None:
        hit = rx.search(r[a.field]) is not None
        if a.action == "drop" and hit:
            return f"matches /{a.pattern}/"
        if a.action == "keep" and not hit:
            return f"does not match /{a.pattern}/"
        return None

    return filter_rows(ds, ctx.stats, ctx.index, reason, "regex_filter")


SCRIPTS = ("LATIN", "CJK", "HIRAGANA", "KATAKANA", "HANGUL", "CYRILLIC", "GREEK", "ARABIC", "HEBREW", "DEVANAGARI", "THAI")


def script_of(ch: str) -> str | None:
    """The Unicode script family of a letter, from its character name (None for non-letters)."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for s in SCRIPTS:
        if name.startswith(s) or (s == "CJK" and "CJK" in name):
            return "HAN" if s == "CJK" else s
    return "OTHER"


class ScriptFilterArgs(OpArgs):
    scripts: list[str] = Field(description="Allowed scripts, e.g. ['LATIN'] or ['HAN', 'LATIN'].")
    field: Literal["input", "output", "both"] = Field("both", description="Which text to check.")
    min_share: float = Field(0.8, gt=0, le=1, description="Minimum share of letters in the allowed scripts.")

    @field_validator("scripts")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        known = {"HAN" if s == "CJK" else s for s in SCRIPTS}
        bad = [s for s in v if s.upper() not in known]
        if bad:
            raise ValueError(f"unknown script(s) {bad}; known: {sorted(known)}")
        return [s.upper() for s in v]


def script_filter(ds, a: ScriptFilterArgs, ctx: OpContext):
    allowed = set(a.scripts)

    def reason(r: dict) -> str | None:
        text = r["input"] + r["output"] if a.field == "both" else r[a.field]
        scripts = [s for s in map(script_of, text) if s]
        if not scripts:
            return None  # no letters: nothing to judge
        share = sum(s in allowed for s in scripts) / len(scripts)
        return None if share >= a.min_share else f"script not in {sorted(allowed)}"

    return filter_rows(ds, ctx.stats, ctx.index, reason, "script_filter")
