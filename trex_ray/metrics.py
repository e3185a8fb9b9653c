"""Scoring model outputs against references.

`score(metric, preds, refs, labels, options=..., judge=...)` grades a whole split and returns a
`Scored`: the corpus score in [0, 1], a per-example score in [0, 1] (lower is worse; used to pick bad
cases) and a per-example detail dict. For mean-style metrics the corpus score is the mean of the
per-example scores; for the F1 metrics it is the real corpus F1. No examples score 0.0. Each metric
and its normalisation:

- `exact_match`: strip, collapse internal whitespace, case-fold; the first line of the output only
  (models often continue after the answer); a trailing period is ignored.
- `accuracy`: classification. The predicted label is the first label of the task's label set found
  in the normalised output (longest labels tried first, word-bounded); with no label set, the labels
  are the distinct references. Score 1 when it equals the reference label (both compared after the
  `exact_match` normalisation). Detail: the extracted label (None when none was found).
- `f1_macro`, `f1_micro`: single-label classification with the label extraction of `accuracy`; the
  per-example score is 1 when the extracted label equals the reference. An output with no label
  found is a wrong prediction of a "none" class: a false negative of its reference class and, in
  the micro pool, a false positive; "none" is never a class of its own in the macro average. Macro
  averages the per-class F1 over the classes that occur among the references or the (found)
  predictions; micro pools the counts over all classes, so for single-label data it equals
  `accuracy` (the standard identity). Detail: the extracted label.
- `multilabel_f1`: references and predictions are label sets written as text, separated by commas,
  semicolons or newlines; every item is stripped, its whitespace collapsed and case-folded, empty
  items are dropped. With a task label set the predicted labels are the label names found anywhere
  in the output (word-bounded, longest first, a found label hides the shorter ones inside it) and
  reference items outside the label set are not labels (so a reference "none" is the empty set);
  otherwise the split items of the output. Corpus score: micro-F1 over all (example, label) pairs
  (option `average: micro`, the default), or with `average: macro` the mean per-label F1 over the
  task's labels (without a label set: the labels that occur); per example: that example's F1 (both
  sets empty = 1). Detail: both label sets.
- `rouge1`, `rouge2`, `rougeL`: the `rouge-score` package's F-measure with its own tokenizer
  (lower-cased, non-alphanumeric characters -- including non-ASCII letters -- become spaces, Porter
  stemming of words over 3 characters), on the whole output; so it suits English text only. An empty
  output or reference scores 0. Corpus score: the mean. Detail: F-measure, precision and recall.
- `numeric`: the first number of the `exact_match`-normalised output (first line) and of the
  reference: optional sign, thousands separators (1,234), decimals, exponent, a trailing % is just
  dropped (12% -> 12). Correct when |pred - ref| <= max(abs_tol, rel_tol * |ref|); options
  `abs_tol` (default 1e-6) and `rel_tol` (default 1e-4). No number in the output (or reference) is
  wrong. Detail: both numbers.
- `llm_judge`: a judge grades each (reference, prediction) pair; `score()` needs `judge=`, a callable
  `judge(preds, refs) -> list[float]` in [0, 1], e.g. `make_llm_judge(llm)`, which asks the LLM for
  a 1-10 grade (JUDGE_SYSTEM / JUDGE_USER), takes the first integer of the reply and, when it is
  1..10, maps it to (n - 1) / 9 (anything else: 0). Outputs are not normalised. Corpus score: the mean. Detail: the raw
  judge reply (with `make_llm_judge`).
- `module:function`: your own, `function(prediction, reference, row) -> float` in [0, 1] per example (`row`:
  the example's record as in the data); outputs are not normalised. Corpus score: the mean (`custom_metric`).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

# --------------------------------------------------------------------------------------------------
# per-example primitives (the original API)


def normalize(text: str) -> str:
    text = str(text).strip().split("\n", 1)[0] if str(text).strip() else ""
    text = " ".join(text.split()).casefold()
    return text[:-1].rstrip() if text.endswith(".") else text


def exact_match(pred: str, ref: str, labels: Sequence[str] | None = None) -> float:
    return float(normalize(pred) == normalize(ref))


def _label_pattern(label: str) -> str:
    return r"(?<!\w)" + re.escape(" ".join(label.split()).casefold()) + r"(?!\w)"


def extract_label(pred: str, labels: Sequence[str]) -> str | None:
    text = " ".join(str(pred).split()).casefold()
    for label in sorted(labels, key=len, reverse=True):
        if re.search(_label_pattern(label), text):
            return label
    return None


def accuracy(pred: str, ref: str, labels: Sequence[str] | None = None) -> float:
    label = extract_label(pred, labels or [ref])
    return float(label is not None and normalize(label) == normalize(ref))


def normalized_reward(score: float, baseline: float, best: float = 1.0) -> float:
    """The search reward: the gain over the baseline as a fraction of the possible gain, in [0, 1]."""
    if best <= baseline:
        return 1.0 if score >= baseline else 0.0
    return min(1.0, max(0.0, (score - baseline) / (best - baseline)))


# --------------------------------------------------------------------------------------------------
# corpus API


@dataclass
class Scored:
    score: float                                         # corpus score in [0, 1]
    per_example: list[float] = field(default_factory=list)  # each in [0, 1]; lower is worse
    details: list[dict] = field(default_factory=list)       # per-example metric detail


Judge = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


@dataclass(frozen=True)
class Metric:
    """A registered metric: `compute(preds, refs, labels, options, judge) -> Scored` on non-empty,
    equal-length inputs. Calling it grades one example (the original `METRICS[name](pred, ref, labels)`).

    A metric with `context=True` also gets `contexts`, one JSON-able value per example (a task's
    `context_field`: what grading needs beyond the reference text, e.g. a benchmark's sub-task id or
    the constraints an open-ended answer must satisfy): `compute(preds, refs, labels, options, judge,
    contexts)`. Metrics outside this module are registered with `register_metric` or, so that Ray
    workers find them too, as entry points of the `trex_ray.metrics` group (a `Metric` or a list). A
    metric named `module:function` is your own function (`custom_metric`)."""
    name: str
    compute: Callable[..., Scored]
    best: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)  # accepted options and their defaults
    context: bool = False
    row: bool = False  # the context is each example's whole record (a task gives it; no context_field needed)

    def __call__(self, pred: str, ref: str, labels: Sequence[str] | None = None) -> float:
        return score(self.name, [pred], [ref], labels).per_example[0]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _exact_match(preds, refs, labels, options, judge) -> Scored:
    per = [exact_match(p, r) for p, r in zip(preds, refs)]
    return Scored(_mean(per), per, [{} for _ in per])


def _extract_all(preds, refs, labels) -> tuple[list[str | None], list[str], list[str | None]]:
    """Per example: the normalised extracted label (None: not found), the normalised reference, the label found."""
    labels = list(labels) if labels else sorted(set(map(str, refs)))
    found = [extract_label(p, labels) for p in preds]
    return [normalize(f) if f is not None else None for f in found], [normalize(r) for r in refs], found


def _accuracy(preds, refs, labels, options, judge) -> Scored:
    got, gold, found = _extract_all(preds, refs, labels)
    per = [float(g is not None and g == r) for g, r in zip(got, gold)]
    return Scored(_mean(per), per, [{"label": f} for f in found])


def _f1_single(average: str):
    def compute(preds, refs, labels, options, judge) -> Scored:
        got, gold, found = _extract_all(preds, refs, labels)
        per = [float(g is not None and g == r) for g, r in zip(got, gold)]
        classes = set(gold) | {g for g in got if g is not None}
        tp = {c: 0 for c in classes}
        fp = {c: 0 for c in classes}
        fn = {c: 0 for c in classes}
        none_fp = 0
        for g, r in zip(got, gold):
            if g == r:
                tp[r] += 1
                continue
            fn[r] += 1
            if g is None:
                none_fp += 1
            else:
                fp[g] += 1
        if average == "macro":
            corpus = _mean([_f1(tp[c], fp[c], fn[c]) for c in sorted(classes)])
        else:
            corpus = _f1(sum(tp.values()), sum(fp.values()) + none_fp, sum(fn.values()))
        return Scored(corpus, per, [{"label": f} for f in found])
    return compute


_SPLIT = re.compile(r"[,;\n]")


def _label_set(text: str) -> set[str]:
    items = (" ".join(item.split()).casefold() for item in _SPLIT.split(str(text)))
    return {item for item in items if item}


def _find_labels(text: str, labels: Sequence[str]) -> set[str]:
    text = " ".join(str(text).split()).casefold()
    out = set()
    for label in sorted({" ".join(lab.split()).casefold() for lab in labels if lab.strip()}, key=len, reverse=True):
        pattern = _label_pattern(label)
        if re.search(pattern, text):
            out.add(label)
            text = re.sub(pattern, "\0", text)  # a found label hides the shorter labels inside it
    return out


def _multilabel_f1(preds, refs, labels, options, judge) -> Scored:
    average = options.get("average", "micro")
    if average not in ("micro", "macro"):
        raise ValueError(f"multilabel_f1: average must be 'micro' or 'macro', got {average!r}")
    per, details = [], []
    tp_all = pred_all = ref_all = 0
    counts: dict[str, list[int]] = {}  # label -> [tp, fp, fn]
    names = {" ".join(x.split()).casefold() for x in labels if x.strip()} if labels else None
    for p, r in zip(preds, refs):
        got = _find_labels(p, labels) if labels else _label_set(p)
        gold = _label_set(r) & names if names else _label_set(r)
        tp = len(got & gold)
        per.append(2 * tp / (len(got) + len(gold)) if got or gold else 1.0)
        details.append({"pred_labels": sorted(got), "ref_labels": sorted(gold)})
        tp_all, pred_all, ref_all = tp_all + tp, pred_all + len(got), ref_all + len(gold)
        for lab in got | gold:
            c = counts.setdefault(lab, [0, 0, 0])
            c[0 if lab in got and lab in gold else 1 if lab in got else 2] += 1
    if average == "macro":  # per-label F1, averaged over the task's labels (else those that occur)
        names = names or set(counts)
        corpus = _mean([_f1(*counts.get(n, (0, 0, 0))) for n in sorted(names)]) if names else 1.0
    else:
        corpus = 2 * tp_all / (pred_all + ref_all) if pred_all + ref_all else 1.0
    return Scored(corpus, per, details)


@lru_cache(maxsize=None)
def _rouge_scorer(kind: str):
    try:
        from rouge_score import rouge_scorer
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError(f"metric {kind!r} needs the rouge-score package: pip install rouge-score") from e
    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def _rouge(kind: str):
    def compute(preds, refs, labels, options, judge) -> Scored:
        scorer = _rouge_scorer(kind)
        per, details = [], []
        for p, r in zip(preds, refs):
            s = scorer.score(str(r), str(p))[kind]  # score(target, prediction)
            per.append(float(s.fmeasure))
            details.append({kind: round(s.fmeasure, 4), "precision": round(s.precision, 4),
                            "recall": round(s.recall, 4)})
        return Scored(_mean(per), per, details)
    return compute


_NUMBER = re.compile(
    r"(?:(?<![\w.])(?P<sign>[-+\u2212]))?"
    r"(?<![\d.])(?P<num>\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exp>[eE][-+]?\d+)?")


def extract_number(text: str) -> float | None:
    """The first number in the `exact_match`-normalised text (see `numeric` in the module docstring)."""
    m = _NUMBER.search(normalize(text))
    if not m:
        return None
    value = float(m["num"].replace(",", "") + (m["exp"] or ""))
    return -value if m["sign"] in ("-", "\u2212") else value


def _numeric(preds, refs, labels, options, judge) -> Scored:
    abs_tol, rel_tol = float(options["abs_tol"]), float(options["rel_tol"])
    if not (abs_tol >= 0 and rel_tol >= 0):
        raise ValueError(f"numeric: abs_tol and rel_tol must be >= 0, got {abs_tol}, {rel_tol}")
    per, details = [], []
    for p, r in zip(preds, refs):
        got, want = extract_number(p), extract_number(r)
        ok = (got is not None and want is not None and math.isfinite(got)
              and abs(got - want) <= max(abs_tol, rel_tol * abs(want)))
        per.append(float(ok))
        details.append({"pred_number": got, "ref_number": want})
    return Scored(_mean(per), per, details)


JUDGE_SYSTEM = (
    "You are a strict grader. You compare a model's answer with a reference answer and grade how well "
    "the answer matches the reference in meaning and correctness, on a scale from 1 (wrong or unrelated) "
    "to 10 (fully correct and equivalent to the reference). Reply with just the number.")
JUDGE_USER = "Reference answer:\n{ref}\n\nModel answer:\n{pred}\n\nGrade (1-10):"
_GRADE = re.compile(r"(?<![\d.])-?\d+")


def parse_grade(reply: str) -> float:
    """The first integer of a judge reply, when it is 1..10, mapped to (n - 1) / 9; otherwise 0.0
    ("8", "Grade: 8/10" and "8.5" are 8; "0/10", "11" and "good" are unparseable)."""
    m = _GRADE.search(str(reply or ""))
    n = int(m.group()) if m else 0
    return (n - 1) / 9 if 1 <= n <= 10 else 0.0


class LLMJudge:
    """`judge(preds, refs) -> list[float]`: each pair graded by `llm` (see `make_llm_judge`)."""

    def __init__(self, llm, *, max_tokens: int = 16, seed: int = 0):
        self.llm, self.max_tokens, self.seed = llm, max_tokens, seed

    def grade_with_details(self, preds: Sequence[str], refs: Sequence[str]) -> tuple[list[float], list[dict]]:
        convs = [[{"role": "system", "content": JUDGE_SYSTEM},
                  {"role": "user", "content": JUDGE_USER.format(ref=r, pred=p)}] for p, r in zip(preds, refs)]
        replies = list(self.llm.chat(convs, max_tokens=self.max_tokens, temperature=0.0, seed=self.seed))
        if len(replies) != len(convs):
            raise ValueError(f"llm_judge: the judge LLM returned {len(replies)} replies for {len(convs)} conversations")
        return [parse_grade(x) for x in replies], [{"judge_reply": x} for x in replies]

    def __call__(self, preds: Sequence[str], refs: Sequence[str]) -> list[float]:
        return self.grade_with_details(preds, refs)[0]


def make_llm_judge(llm, *, max_tokens: int = 16, seed: int = 0) -> LLMJudge:
    """A judge for `score("llm_judge", ..., judge=...)`; `llm` has `chat(conversations, *, max_tokens,
    temperature=0.0, seed=0) -> list[str]` (trex_ray.llm)."""
    return LLMJudge(llm, max_tokens=max_tokens, seed=seed)


def _llm_judge(preds, refs, labels, options, judge) -> Scored:
    if hasattr(judge, "grade_with_details"):
        per, details = judge.grade_with_details(preds, refs)
    else:
        per, details = judge(preds, refs), None
    per = [float(x) for x in per]
    if len(per) != len(preds):
        raise ValueError(f"llm_judge: the judge returned {len(per)} scores for {len(preds)} examples")
    bad = [x for x in per if not 0.0 <= x <= 1.0]
    if bad:
        raise ValueError(f"llm_judge: judge scores must be in [0, 1], got {bad[:3]}")
    return Scored(_mean(per), per, list(details) if details is not None else [{} for _ in per])


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("exact_match", _exact_match),
    Metric("accuracy", _accuracy),
    Metric("f1_macro", _f1_single("macro")),
    Metric("f1_micro", _f1_single("micro")),
    Metric("multilabel_f1", _multilabel_f1, options={"average": "micro"}),
    Metric("rouge1", _rouge("rouge1")),
    Metric("rouge2", _rouge("rouge2")),
    Metric("rougeL", _rouge("rougeL")),
    Metric("numeric", _numeric, options={"abs_tol": 1e-6, "rel_tol": 1e-4}),
    Metric("llm_judge", _llm_judge),
]}
METRIC_BEST: dict[str, float] = {name: m.best for name, m in METRICS.items()}


_PLUGINS_LOADED = False
_PLUGIN_ERRORS: list[str] = []
_BUILTIN = frozenset(METRICS)


def register_metric(m: Metric) -> Metric:
    if not isinstance(m, Metric):
        raise TypeError(f"register_metric takes a trex_ray.metrics.Metric, got {type(m).__name__}")
    if m.name in _BUILTIN and METRICS[m.name] is not m:
        raise ValueError(f"metric {m.name!r} is built in; register yours under another name")
    METRICS[m.name] = m
    METRIC_BEST[m.name] = m.best
    return m


def load_plugins() -> None:
    """Register the metrics that installed packages declare under the `trex_ray.metrics` entry point group."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group="trex_ray.metrics"):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break the built-in metrics
            _PLUGIN_ERRORS.append(f"{ep.value}: {type(e).__name__}: {e}")
            continue
        for m in obj if isinstance(obj, (list, tuple)) else [obj]:
            register_metric(m)
    _PLUGINS_LOADED = True


def _import_ref(ref: str) -> Any:
    """The object `module:qualname` names, imported as Ray's workers will (the working directory is on
    their path: it is put on this process's too)."""
    import importlib
    import os
    import sys

    mod_name, _, qual = ref.partition(":")
    if not mod_name or not qual or not all(p.isidentifier() for p in mod_name.split(".") + qual.split(".")):
        raise ValueError(f"metric {ref!r} is not a name of the form module:function")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"metric {ref!r}: cannot import module {mod_name!r} ({e}); it must be importable from "
                         f"the working directory ({cwd}) or PYTHONPATH") from None
    for part in qual.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"metric {ref!r}: module {mod_name!r} has no {qual!r}")
        obj = getattr(obj, part)
    return obj


def custom_metric(ref: str) -> Metric:
    """Your own metric, `module:function`: `function(prediction, reference, row) -> float` in [0, 1] grades
    one example (`row`: the example's record as it is in the data, all its fields; None where a caller
    has no record). The corpus score is the mean. Found by name, so Ray workers and a resumed run import
    it too."""
    fn = _import_ref(ref)
    if not callable(fn):
        raise ValueError(f"metric {ref!r} is a {type(fn).__name__}, not a function")

    def compute(preds, refs, labels, options, judge, contexts) -> Scored:
        per = []
        for p, r, row in zip(preds, refs, contexts):
            v = fn(p, r, row)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"metric {ref!r} returned {v!r} (a {type(v).__name__}); it must return a number "
                                 "in [0, 1]")
            v = float(v)
            if not 0.0 <= v <= 1.0:  # also NaN
                raise ValueError(f"metric {ref!r} returned {v!r}; it must return a number in [0, 1]")
            per.append(v)
        return Scored(_mean(per), per, [{} for _ in per])

    return Metric(ref, compute, context=True, row=True)


def metric_ref(fn: Any) -> str:
    """The `module:qualname` a Python function is found by again (in Ray workers, in a resumed run);
    ValueError for one that cannot be (a lambda, a nested function, one defined in the script run)."""
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not mod or not qual or mod == "__main__" or "<" in qual:
        where = "a lambda or nested function" if qual and "<" in qual else "defined in the script being run"
        raise ValueError(f"{getattr(fn, '__name__', fn)!r} ({where}) cannot be found by name by Ray's workers or "
                         "a resumed run")
    ref = f"{mod}:{qual}"
    try:
        found = _import_ref(ref)
    except ValueError as e:
        raise ValueError(f"{qual!r} cannot be imported again as {ref!r} ({e})") from None
    if found is not fn:
        raise ValueError(f"{ref!r} names another object than the function given")
    return ref


def metric_names() -> list[str]:
    load_plugins()
    return list(METRICS)


def get_metric(metric: str) -> Metric:
    if metric not in METRICS and ":" in metric:  # your own function, module:function
        METRICS[metric] = custom_metric(metric)
        METRIC_BEST[metric] = 1.0
    if metric not in METRICS:
        load_plugins()
    if metric not in METRICS:
        why = f" (metric plugins that failed to load: {'; '.join(_PLUGIN_ERRORS)})" if _PLUGIN_ERRORS else ""
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}{why}")
    return METRICS[metric]


def score(metric: str, preds: Sequence[str], refs: Sequence[str], labels: Sequence[str] | None = None, *,
          options: Mapping[str, Any] | None = None, judge: Judge | None = None,
          contexts: Sequence[Any] | None = None) -> Scored:
    """Grade `preds` against `refs` with `metric` (see the module docstring)."""
    m = get_metric(metric)
    preds, refs = list(preds), list(refs)
    if len(preds) != len(refs):
        raise ValueError(f"metric {metric!r}: {len(preds)} predictions but {len(refs)} references")
    if m.row and contexts is None:
        contexts = [None] * len(preds)
    if m.context and (contexts is None or len(contexts) != len(preds)):
        raise ValueError(f"metric {metric!r} grades with a per-example context: pass contexts= (one per example; "
                         "a task's context_field)")
    unknown = set(options or {}) - set(m.options)
    if unknown:
        raise ValueError(f"metric {metric!r}: unknown options {sorted(unknown)}; "
                         f"accepted: {sorted(m.options) or 'none'}")
    if metric == "llm_judge" and judge is None:
        raise ValueError("metric 'llm_judge' needs a judge: call score('llm_judge', ..., judge=make_llm_judge(llm)) "
                         "with an LLM from trex_ray.llm (or any callable judge(preds, refs) -> list[float] in [0, 1])")
    if not preds:
        return Scored(0.0, [], [])
    opts = {**m.options, **(options or {})}
    if m.context:
        return m.compute(preds, refs, labels, opts, judge, list(contexts))
    return m.compute(preds, refs, labels, opts, judge)


def score_all(metric: str, preds: Sequence[str], refs: Sequence[str], labels: Sequence[str] | None = None, *,
              options: Mapping[str, Any] | None = None, judge: Judge | None = None,
              contexts: Sequence[Any] | None = None) -> list[float]:
    """The per-example scores of `score`."""
    return score(metric, preds, refs, labels, options=options, judge=judge, contexts=contexts).per_example
