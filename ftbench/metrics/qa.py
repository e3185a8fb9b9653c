"""`ftbench_qa`: answer extraction and scoring for four FT-Bench question-answering tasks (CS-Bench,
EconLogicQA, OpenFinData, GTA), one metric for all of them, dispatched on the per-example context.

Each example's context is a dict (or its JSON text) with a "kind"; the reference is the gold answer as
written in the training target. Every kind gives a per-example score of 1.0 (correct) or 0.0 (wrong);
the corpus score is their mean, which is how all four benchmarks aggregate (CS-Bench's "Overall/All"
is the pooled mean over its scored items; OpenCompass's OpenFinData accuracy is a plain mean per file;
GTA's AnsAcc is the mean over the queries that have a gold answer; EconLogicQA reports accuracy).
OpenCompass reports each OpenFinData file separately and gives no combined number; a split that mixes
files is scored here with the pooled (micro) mean -- score files separately to get OpenCompass's numbers.
An unknown or missing kind, or a malformed context/reference, raises ValueError.

Kinds, the original rule each follows, and every deviation from it:

- "choice" -- {"kind": "choice", "letters": "ABCD" (or "ABC", "ABCDE"; default "ABCD"),
  "style": "csbench" | "opencompass"}; ref = the gold letter.
  * style "csbench" (csbench/csbench gen_judgment.py, Multiple-choice): the FIRST option letter standing
    alone as a word (Python `re` word boundaries, which are Unicode-aware) anywhere in the output,
    case-insensitive, upper-cased; correct when it equals the upper-cased gold. Faithful consequences:
    an English article counts ("It is a classic case: D" extracts A), a letter glued to CJK text does
    not ("答案是B" extracts nothing), and when several letters are mentioned the first one wins.
    Deviations: the letter set comes from the context (the original hard-codes A-D; CS-Bench items
    always have four options, so this is the same there); the gold is stripped before comparing.
  * style "opencompass" (OpenCompass OpenFinData config: `last_capital_postprocess` + `AccEvaluator`):
    the LAST character of the output for which `str.isupper()` holds -- any upper-case letter, not
    only the option letters (so "B because of GDP" extracts P) -- compared verbatim with the gold
    (case-sensitive; a lower-case "b" answer extracts nothing). Deviation: the gold is stripped of
    surrounding whitespace (OpenCompass compares the raw answer field).
  In both styles the gold must be one of `letters` (checked; ValueError otherwise).
- "assertion" -- CS-Bench true/false items; ref "True"/"False" (gen_judgment.py, Assertion): the first
  word-bounded "true" or "false" in the lower-cased output. Deviation: the released script compares
  that lower-case word with `str(Answer).upper()` ("TRUE"/"FALSE"), which can never be equal, so every
  assertion item scores 0 there; here the comparison is case-insensitive, the evident intent.
- "order" -- EconLogicQA; ref such as "D, A, C, B". The paper (arXiv 2405.07938, sec. 4.1) extracts the
  permutation with an unreleased regular expression and scores exact match; FLaME's inference keeps the
  first line of the response and has no EconLogicQA evaluator (its evaluate.py has it commented out).
  The rule re-implemented here is lm-evaluation-harness's `econ_logic_qa` port (utils.py): search the
  text after the LAST answer marker ("answer", "order", "sequence", "ordering", optionally followed by
  "is" and ":"/"-"/"–"), then, if nothing is found there, the whole output; within a segment take the
  first of (1) a run of four option letters, each not touching another ASCII letter, joined by optional
  separators ("," ";" "->" "-->" "→" ">" "|" "and" "then"; case-insensitive, so "d, a, c, b" counts),
  (2) four upper-case letters written together ("DACB"), (3) the first window of four consecutive
  standalone upper-case letters in the segment -- the first candidate that is a permutation of A-D
  wins. Correct only when the extracted permutation equals the gold order. Details also carry the
  port's pairwise accuracy (share of the six event pairs in the gold's relative order; 0 without a
  permutation); it is not the score. Deviations: the harness generates with stop sequences ("\\n\\n",
  "Question:") and a 64-token cap, so it never sees text past a blank line; here the whole output is
  searched (generation limits belong to the generator). The letters of a joined run are its four
  standalone letters; the port reads every A-D character of the matched text, so a run joined by "and"
  picks up the A and D of "AND" and is rejected (e.g. "d and a then c, b" extracts nothing there, the
  full D-A-C-B here; with capitals the port's standalone fallback usually recovers the same order). A
  gold that is not a permutation of A-D raises ValueError (in the port an unparsable gold equals an
  unparsable prediction and scores 1).
- "keywords" -- OpenFinData entity_recognition (OpenCompass `OpenFinDataKWEvaluator`): the gold is split
  on "、" and the example is correct when every item is a (case-sensitive) substring of the output.
  Deviation: the gold as a whole is stripped of surrounding whitespace before splitting.
- "whitelist" -- GTA answer accuracy (open-compass/GTA `GTABenchEvaluator.iscorrect`):
  {"kind": "whitelist", "whitelist": [[alias, ...], ...], "blacklist": [[phrase, ...], ...] or null}.
  Every whitelist group must match: a group matches when any of its aliases occurs in the output as
  `\\b<alias>\\b` (regex-escaped, case-insensitive, no other normalisation; so "5" does not match
  inside "15" and an alias starting or ending in punctuation needs a word character beside it). When
  the blacklist is non-empty, no phrase of any blacklist group may occur under the same rule. As in
  GTA's end-to-end AnsAcc, an empty output scores 0. Deviations: aliases are passed through `str()`
  (numbers in the JSON would crash the original); a missing/null whitelist raises ValueError (GTA
  leaves queries without a whitelist gold out of AnsAcc; its list-form golds, scored by sentence-
  embedding similarity, are not supported).
"""

from __future__ import annotations

import json
import re
from itertools import combinations
from typing import Any, Mapping, Sequence

from trex_ray.metrics import Metric, Scored

KINDS = ("choice", "assertion", "order", "keywords", "whitelist")


# --------------------------------------------------------------------------------------------------
# choice (CS-Bench / OpenCompass)

def _csbench_letter(pred: str, letters: str) -> str | None:
    m = re.search(r"\b[" + re.escape(letters) + r"]\b", pred, re.IGNORECASE)
    return m.group(0).upper() if m else None


def _last_capital(pred: str) -> str | None:
    for ch in reversed(pred):
        if ch.isupper():
            return ch
    return None


def _choice(pred: str, ref: str, ctx: Mapping[str, Any]) -> tuple[float, dict]:
    letters = ctx.get("letters", "ABCD")
    if not isinstance(letters, str) or not letters or not all(c.isupper() for c in letters):
        raise ValueError(f"ftbench_qa: choice context needs 'letters' as upper-case option letters, got {letters!r}")
    style = ctx.get("style")
    gold = str(ref).strip()
    if style == "csbench":
        gold = gold.upper()
        got = _csbench_letter(pred, letters)
    elif style == "opencompass":
        got = _last_capital(pred)
    else:
        raise ValueError(f"ftbench_qa: choice style must be 'csbench' or 'opencompass', got {style!r}")
    if gold not in letters or len(gold) != 1:
        raise ValueError(f"ftbench_qa: choice reference {ref!r} is not one of the letters {letters!r}")
    return float(got == gold), {"extracted": got}


# --------------------------------------------------------------------------------------------------
# assertion (CS-Bench)

_TRUE_FALSE = re.compile(r"\b(?:true|false)\b")


def _assertion(pred: str, ref: str, ctx: Mapping[str, Any]) -> tuple[float, dict]:
    gold = str(ref).strip().lower()
    if gold not in ("true", "false"):
        raise ValueError(f"ftbench_qa: assertion reference must be True or False, got {ref!r}")
    m = _TRUE_FALSE.search(pred.lower())
    got = m.group(0) if m else None
    return float(got == gold), {"extracted": got}


# --------------------------------------------------------------------------------------------------
# order (EconLogicQA)

_EVENTS = "ABCD"
_OPEN = r"(?<![A-Za-z])"  # not preceded by an ASCII letter
_SHUT = r"(?![A-Za-z])"   # not followed by an ASCII letter
_JOINER = r"\s*(?:,|;|-{1,2}>|→|>|\||\band\b|\bthen\b)?\s*"
_RUN_JOINED = re.compile(_OPEN + "[ABCD]" + "(?:" + _JOINER + _OPEN + "[ABCD]" + _SHUT + "){3}", re.IGNORECASE)
_RUN_PACKED = re.compile(_OPEN + "[ABCD]{4}" + _SHUT)
_LONE = re.compile(_OPEN + "([ABCD])" + _SHUT)
_LONE_ANY_CASE = re.compile(_OPEN + "([ABCD])" + _SHUT, re.IGNORECASE)
_MARKER = re.compile(r"\b(?:answer|order|sequence|ordering)\b\s*(?:is)?\s*[:\-–]?\s*", re.IGNORECASE)


def _is_perm(seq: Sequence[str]) -> bool:
    return sorted(seq) == list(_EVENTS)


def _order_from(segment: str) -> list[str] | None:
    for m in _RUN_JOINED.finditer(segment):
        seq = [x.upper() for x in _LONE_ANY_CASE.findall(m.group(0))]
        if _is_perm(seq):
            return seq
    for m in _RUN_PACKED.finditer(segment):
        if _is_perm(m.group(0)):
            return list(m.group(0))
    lone = _LONE.findall(segment)
    for i in range(len(lone) - 3):
        if _is_perm(lone[i:i + 4]):
            return lone[i:i + 4]
    return None


def extract_order(pred: str) -> list[str] | None:
    """The predicted permutation of A-D, or None."""
    if not pred:
        return None
    marks = list(_MARKER.finditer(pred))
    segments = ([pred[marks[-1].end():]] if marks else []) + [pred]
    for seg in segments:
        seq = _order_from(seg)
        if seq:
            return seq
    return None


def _pairwise(pred: Sequence[str] | None, gold: Sequence[str]) -> float:
    if not pred:
        return 0.0
    pos = {x: i for i, x in enumerate(pred)}
    pairs = list(combinations(gold, 2))
    return sum(pos[a] < pos[b] for a, b in pairs) / len(pairs)


def _order(pred: str, ref: str, ctx: Mapping[str, Any]) -> tuple[float, dict]:
    gold = re.findall("[ABCD]", str(ref).upper())
    if not _is_perm(gold):
        raise ValueError(f"ftbench_qa: order reference {ref!r} is not a permutation of A, B, C, D")
    got = extract_order(pred)
    return float(got == gold), {"extracted": ", ".join(got) if got else None,
                                "pairwise_accuracy": _pairwise(got, gold)}


# --------------------------------------------------------------------------------------------------
# keywords (OpenFinData entity_recognition)

def _keywords(pred: str, ref: str, ctx: Mapping[str, Any]) -> tuple[float, dict]:
    missing = [item for item in str(ref).strip().split("、") if item not in pred]
    return float(not missing), {"missing": missing}


# --------------------------------------------------------------------------------------------------
# whitelist (GTA)

def _groups(value: Any, name: str) -> list[list[str]]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(g, (list, tuple)) for g in value):
        raise ValueError(f"ftbench_qa: whitelist context needs '{name}' as a list of lists of phrases, got {value!r}")
    return [[str(a) for a in g] for g in value]


def _any_of(phrases: Sequence[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(map(re.escape, phrases)) + r")\b", re.IGNORECASE)


def _whitelist(pred: str, ref: str, ctx: Mapping[str, Any]) -> tuple[float, dict]:
    if ctx.get("whitelist") is None:
        raise ValueError("ftbench_qa: whitelist context has no 'whitelist' (GTA scores answer accuracy only for "
                         "queries with a whitelist gold answer)")
    white = _groups(ctx["whitelist"], "whitelist")
    black = _groups(ctx["blacklist"], "blacklist") if ctx.get("blacklist") else []
    hit = sum(1 for g in white if _any_of(g).search(pred))
    banned = bool(black) and _any_of([a for g in black for a in g]).search(pred) is not None
    ok = bool(pred) and hit == len(white) and not banned
    return float(ok), {"groups_matched": hit, "groups": len(white), "blacklisted": banned}


# --------------------------------------------------------------------------------------------------

_GRADERS = {"choice": _choice, "assertion": _assertion, "order": _order, "keywords": _keywords,
            "whitelist": _whitelist}


def _context(ctx: Any, i: int) -> Mapping[str, Any]:
    if isinstance(ctx, str):
        try:
            ctx = json.loads(ctx)
        except json.JSONDecodeError as e:
            raise ValueError(f"ftbench_qa: example {i}: context is not a dict nor JSON text: {ctx[:80]!r}") from e
    if not isinstance(ctx, Mapping):
        raise ValueError(f"ftbench_qa: example {i}: context must be a dict with a 'kind', got {type(ctx).__name__}")
    kind = ctx.get("kind")
    if kind not in _GRADERS:
        raise ValueError(f"ftbench_qa: example {i}: unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return ctx


def compute(preds, refs, labels, options, judge, contexts) -> Scored:
    per, details = [], []
    for i, (pred, ref, ctx) in enumerate(zip(preds, refs, contexts)):
        ctx = _context(ctx, i)
        s, d = _GRADERS[ctx["kind"]]("" if pred is None else str(pred), "" if ref is None else str(ref), ctx)
        per.append(s)
        details.append({"kind": ctx["kind"], **d})
    return Scored(sum(per) / len(per) if per else 0.0, per, details)


QA = Metric("ftbench_qa", compute, context=True)
