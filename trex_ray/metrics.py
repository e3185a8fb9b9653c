"""Scoring model outputs against references. Pure Python; each metric returns a per-example score in
[0, 1] and its documented normalisation, and the corpus score is the mean.

- `exact_match`: strip, collapse internal whitespace, case-fold; the first line of the output only
  (models often continue after the answer); a trailing period is ignored.
- `accuracy`: classification. The predicted label is the first label of the task's label set found
  in the normalised output (longest labels tried first, word-bounded); with no label set, the labels
  are the distinct references. Score 1 when it equals the reference label.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence


def normalize(text: str) -> str:
    text = str(text).strip().split("\n", 1)[0] if str(text).strip() else ""
    text = " ".join(text.split()).casefold()
    return text[:-1].rstrip() if text.endswith(".") else text


def exact_match(pred: str, ref: str, labels: Sequence[str] | None = None) -> float:
    return float(normalize(pred) == normalize(ref))


def extract_label(pred: str, labels: Sequence[str]) -> str | None:
    text = " ".join(str(pred).split()).casefold()
    for label in sorted(labels, key=len, reverse=True):
        if re.search(r"(?<!\w)" + re.escape(label.casefold()) + r"(?!\w)", text):
            return label
    return None


def accuracy(pred: str, ref: str, labels: Sequence[str] | None = None) -> float:
    label = extract_label(pred, labels or [ref])
    return float(label is not None and normalize(label) == normalize(ref))


METRICS: dict[str, Callable[..., float]] = {"exact_match": exact_match, "accuracy": accuracy}
METRIC_BEST = {"exact_match": 1.0, "accuracy": 1.0}


def score_all(metric: str, preds: Sequence[str], refs: Sequence[str], labels: Sequence[str] | None = None) -> list[float]:
    fn = METRICS[metric]
    if metric == "accuracy" and not labels:
        labels = sorted(set(refs))
    return [fn(p, r, labels) for p, r in zip(preds, refs)]


def normalized_reward(score: float, baseline: float, best: float = 1.0) -> float:
    """The search reward: the gain over the baseline as a fraction of the possible gain, in [0, 1]."""
    if best <= baseline:
        return 1.0 if score >= baseline else 0.0
    return min(1.0, max(0.0, (score - baseline) / (best - baseline)))
