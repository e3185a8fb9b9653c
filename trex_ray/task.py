"""Tasks: what to get better at. A `Task` names the data splits (JSONL files), the input and output
fields, the primary metric and a natural-language goal. `Task.check()` validates everything a search
will rely on before any run folder is touched; `Task.profile()` is the data analysis the Researcher
reads (sizes, lengths, label balance, overlaps).
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trex_ray.errors import ConfigError
from trex_ray.metrics import METRICS, get_metric, metric_names

SPLITS = ("train", "val", "test")


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name; used for the run folder.")
    goal: str = Field("", description="What the fine-tuned model should do, in words (read by the Researcher).")
    train: str = Field(description="Path of the training JSONL file.")
    val: str = Field(description="Path of the validation JSONL file (drives the search).")
    test: str = Field(description="Path of the test JSONL file (used once, on the best node; never shown).")
    input_field: str = Field("input", description="Field holding the model input.")
    output_field: str = Field("output", description="Field holding the expected output.")
    metric: str = Field("exact_match", description=f"Primary metric: one of {', '.join(METRICS)}.")
    labels: list[str] | None = Field(None, description="Label set for classification metrics (optional).")
    scoring: Literal["generate", "loglik"] = Field(
        "generate", description="generate: greedy answers, scored by the metric; loglik: the likeliest of the "
        "options (a row's own `options_field`, else `labels`, else the distinct answers) is the answer.")
    options_field: str | None = Field(None, description="Field holding a row's answer options (a list of strings), "
                                      "for multiple-choice tasks scored by log-likelihood.")
    metric_options: dict[str, Any] = Field(default_factory=dict, description="Options of the metric "
                                           "(e.g. multilabel_f1: {average: macro}).")
    context_field: str | None = Field(None, description="Field holding what a row's grading needs beyond the "
                                      "reference (any JSON value; never shown to the model), for metrics that "
                                      "grade with a context (benchmark metrics, e.g. a sub-task id).")

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if isinstance(v, list) and any(isinstance(x, bool) for x in v):
            raise ValueError(f"YAML read {v!r}: yes/no/true/false/on/off unquoted are booleans; quote the labels, "
                             "e.g. labels: [\"yes\", \"no\"]")
        return v

    @classmethod
    def from_jsonl(cls, name: str, train: str, val: str, test: str, **kwargs: Any) -> "Task":
        task = cls(name=name, train=str(train), val=str(val), test=str(test), **kwargs)
        task.check()
        return task

    def path(self, split: str) -> str:
        return os.path.abspath(getattr(self, split))

    def info(self) -> dict:
        """The task as plain data for Ray work (trials, baselines): its fields, absolute split paths and the
        val rows (read here once, so no worker needs the driver's files for them)."""
        return {**self.model_dump(), **{s: self.path(s) for s in SPLITS}, "val_rows": self.rows("val")}

    def read(self, split: str) -> list[dict]:
        """Rows of a split as {"input", "output"} dicts; raises ConfigError naming the field on any problem."""
        path = getattr(self, split)
        if not os.path.isfile(path):
            raise ConfigError(split, f"file not found: {path}", "give the path of an existing JSONL file")
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(split, f"{path} line {n} is not valid JSON ({e.msg})",
                                      "fix or remove that line") from None
                if not isinstance(obj, dict):
                    raise ConfigError(split, f"{path} line {n} is not a JSON object", "one object per line")
                for field in ("input_field", "output_field"):
                    key = getattr(self, field)
                    if key not in obj:
                        raise ConfigError(
                            field,
                            f"{key!r} is not a field of {path} (line {n} has: {', '.join(obj) or 'no fields'})",
                            f"set {field} to one of those fields",
                        )
                row = {"input": str(obj[self.input_field]), "output": str(obj[self.output_field])}
                if self.options_field:
                    opts = obj.get(self.options_field)
                    if not isinstance(opts, list) or not opts or not all(isinstance(o, (str, int, float)) for o in opts):
                        raise ConfigError("options_field", f"{path} line {n}: {self.options_field!r} must be a "
                                          "non-empty list of strings", "fix the row or unset options_field")
                    row["options"] = [str(o) for o in opts]
                if self.context_field:
                    if self.context_field not in obj:
                        raise ConfigError("context_field", f"{path} line {n} has no {self.context_field!r} field",
                                          "add it to every row, or unset context_field")
                    row["context"] = obj[self.context_field]
                rows.append(row)
        if not rows:
            raise ConfigError(split, f"the split is empty: {path}", "give a file with at least one example")
        return rows

    @cached_property
    def _rows(self) -> dict[str, list[dict]]:
        return {s: self.read(s) for s in SPLITS}

    def check(self) -> None:
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ConfigError("name", f"{self.name!r} is not a usable run name", "use letters, digits, '-' or '_'")
        try:
            m = get_metric(self.metric)  # plugins are only loaded for a name that is not built in
        except ValueError as e:
            raise ConfigError("metric", str(e), f"use one of: {', '.join(metric_names())}") from None
        unknown = set(self.metric_options) - set(m.options)
        if unknown:
            raise ConfigError("metric_options", f"metric {self.metric!r} has no option {sorted(unknown)[0]!r}",
                              f"accepted: {', '.join(sorted(m.options)) or 'none'}")
        if m.context and not self.context_field:
            raise ConfigError("context_field", f"metric {self.metric!r} grades each row with a context",
                              "set context_field to the rows' field that holds it")
        _ = self._rows  # reads and validates every split
        if self.metric_options:  # option values are checked by grading one val row against itself
            from trex_ray.metrics import score

            row = self.rows("val")[0]
            try:
                score(self.metric, [row["output"]], [row["output"]], self.labels, options=self.metric_options,
                      contexts=[row.get("context")] if m.context else None, judge=lambda p, r: [1.0] * len(p))
            except ValueError as e:
                raise ConfigError("metric_options", str(e), f"see the options of metric {self.metric!r}") from None

    def rows(self, split: str) -> list[dict]:
        return self._rows[split]

    def fingerprint(self) -> str:
        """Identifies the training data for caching: path, size and mtime of the train file."""
        st = os.stat(self.train)
        return f"{self.path('train')}:{st.st_size}:{int(st.st_mtime)}"

    def profile(self) -> dict:
        """The data analysis of requirement analysis (train and val only: test is never profiled)."""
        out: dict[str, Any] = {"name": self.name, "goal": self.goal, "metric": self.metric}
        for split in ("train", "val"):
            rows = self.rows(split)
            ilen = [len(r["input"]) for r in rows]
            olen = [len(r["output"]) for r in rows]
            out[split] = {
                "rows": len(rows),
                "input_chars": _dist(ilen),
                "output_chars": _dist(olen),
                "distinct_outputs": len({r["output"] for r in rows}),
            }
        train = self.rows("train")
        counts = Counter(r["output"] for r in train)
        out["classification_like"] = len(counts) <= max(20, len(train) // 50) and len(counts) < len(train)
        if out["classification_like"]:
            top = counts.most_common()
            out["label_balance"] = {k: v / len(train) for k, v in top}
            out["majority_share"] = top[0][1] / len(train)
        keys = Counter((r["input"].strip().lower(), r["output"].strip().lower()) for r in train)
        out["train_duplicates"] = sum(v - 1 for v in keys.values())
        val_inputs = {r["input"].strip().lower() for r in self.rows("val")}
        out["train_val_overlap"] = sum(1 for r in train if r["input"].strip().lower() in val_inputs)
        out["examples"] = [{"input": r["input"], "output": r["output"]} for r in train[:3]]  # not grading contexts
        return out


def _dist(xs: list[int]) -> dict:
    xs = sorted(xs)
    return {
        "mean": round(statistics.fmean(xs), 1),
        "p50": xs[len(xs) // 2],
        "p95": xs[min(len(xs) - 1, int(len(xs) * 0.95))],
        "max": xs[-1],
    }
