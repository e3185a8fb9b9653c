"""Tasks: what to get better at. A `Task` names the data (files, or an HF dataset, in one of the formats of
`trex_ray.formats`), the input and output fields, the primary metric and a natural-language goal; only
`train` is required: val and test left out are split off it (`formats.split_off`). `Task.check()`
validates everything a search will rely on before any run folder is touched, and refuses splits that
leak into each other (`check_leaks`); `Task.profile()` is the data analysis the Researcher reads (sizes,
lengths, label balance, overlaps, rows dropped and why). The data pipeline reads files: `write_data`
gives it {input, output} JSON lines of the rows as read here, in the run folder, unless the task's own
files are already that.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
from collections import Counter
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from trex_ray import formats
from trex_ray.errors import ConfigError
from trex_ray.formats import FORMATS, Drop, classification_like
from trex_ray.metrics import METRICS, get_metric, metric_names, metric_ref

SPLITS = ("train", "val", "test")
log = logging.getLogger(__name__)


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name; used for the run folder.")
    goal: str = Field("", description="What the fine-tuned model should do, in words (read by the Researcher).")
    train: str = Field(description="Training data: a .jsonl, .json, .csv, .tsv or .parquet file (with hf: a split "
                       "of that dataset, e.g. train).")
    val: str | None = Field(None, description="Validation data, which drives the search (like train); left out: "
                            "split off train (splits.json in the run folder says how).")
    test: str | None = Field(None, description="Test data, used once on the best node and never shown (like train); "
                             "left out: split off train.")
    format: Literal[FORMATS] = Field("auto", description="Row format: fields (input_field/output_field), alpaca "
                                     "(instruction, input, output), sharegpt (conversations), chat (OpenAI "
                                     "messages); auto detects it from the first rows.")
    hf: str | None = Field(None, description="An HF datasets dataset (a folder written by save_to_disk, or a hub "
                           "id): train/val/test then name its splits, e.g. validation[:200].")
    input_field: str = Field("input", description="Field holding the model input (format fields).")
    output_field: str = Field("output", description="Field holding the expected output (format fields).")
    metric: str = Field("exact_match", description=f"Primary metric: one of {', '.join(METRICS)}, or your own as "
                        "module:function, a function (prediction, reference, row) -> float in [0, 1].")
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

    allow_overlap: bool = Field(False, description="Accept a val or test that shares more than 5% of its inputs "
                                "with train (or test with val), or is the same file; refused by default.")

    _files: dict[str, str] | None = PrivateAttr(None)  # the files the data pipeline reads (`write_data`)

    @field_validator("metric", mode="before")
    @classmethod
    def _metric(cls, v: Any) -> Any:
        if callable(v) and not isinstance(v, str):  # your own function: kept by the name it is imported by
            try:
                return metric_ref(v)
            except ValueError as e:
                raise ConfigError("metric", str(e), "define it at the top level of a module next to your script "
                                  "(e.g. my_metrics.py) and pass it, or its name 'my_metrics:function'") from None
        return v

    @field_validator("allow_overlap", mode="before")
    @classmethod
    def _flag(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):  # from the command line
            return v.strip().lower() == "true"
        return v

    @classmethod
    def from_jsonl(cls, name: str, train: str, val: str | None = None, test: str | None = None,
                   **kwargs: Any) -> "Task":
        """A task from data files (.jsonl, .json, .csv, .tsv, .parquet); val and test left out are split off
        train. Checked at once (leaking splits are refused when a search starts: `check_leaks`)."""
        task = _validated(cls, name=name, train=str(train), val=None if val is None else str(val),
                          test=None if test is None else str(test), **kwargs)
        task.check(leaks=False)
        return task

    @classmethod
    def from_hf(cls, path_or_id: str, splits: dict[str, str] | None = None, name: str | None = None,
                **kwargs: Any) -> "Task":
        """A task from an HF `datasets` dataset: a folder written by `save_to_disk` or a hub id. `splits` maps
        train (required), val and test to the dataset's splits, slices allowed: {"train": "train", "val":
        "validation[:200]"}; val and test left out are split off train."""
        splits = dict(splits or {"train": "train"})
        if "train" not in splits or set(splits) - set(SPLITS):
            raise ConfigError("splits", f"{splits!r} must map train (and optionally val, test) to dataset splits",
                              "e.g. splits={'train': 'train', 'val': 'validation[:200]'}")
        if name is None:
            base = os.path.basename(os.path.normpath(str(path_or_id)))
            name = "".join(c if c.isalnum() or c in "-_" else "-" for c in base) or "task"
        task = _validated(cls, name=name, hf=str(path_or_id), **splits, **kwargs)
        task.check(leaks=False)
        return task

    # -- where the data is -----------------------------------------------------------------------------
    def path(self, split: str) -> str:
        return os.path.abspath(getattr(self, split))

    def source(self, split: str) -> str:
        """Where a split's rows come from, in words: a file, a dataset's split, or train."""
        spec = getattr(self, split)
        if spec is None:
            return "split off train"
        return f"{self.hf} [{spec}]" if self.hf else spec

    def to_config(self) -> dict:
        """The task as a run folder's config.yaml keeps it (what `trex-ray resume` reads back): its fields,
        with absolute paths and the format detected."""
        out = self.model_dump(exclude_none=True)
        if self.format == "auto":  # as detected: the fields written out beside it would read otherwise
            out["format"] = self._data["formats"]["train"]
        if self.hf:
            if os.path.exists(self.hf):
                out["hf"] = os.path.abspath(self.hf)
        else:
            out.update({s: self.path(s) for s in SPLITS if getattr(self, s)})
        return out

    def info(self) -> dict:
        """The task as plain data for Ray work (trials, baselines): its fields, absolute paths of the files
        the data pipeline reads (`write_data`) and the val rows (read here once, so no worker needs the
        driver's files for them)."""
        files = self._files if self._files is not None else self.write_data(None)
        out = {**self.model_dump(), **files, "val_rows": self.rows("val")}
        if not self._data["as_is"]:  # rows written as {input, output} JSON lines
            out.update(input_field="input", output_field="output", format="fields", hf=None)
        return out

    def write_data(self, run_dir: str | None) -> dict[str, str]:
        """The files the data pipeline reads, by split. The task's own files where they are JSON lines of
        the fields with nothing dropped and no split made; else the rows as read here, written as {input,
        output} JSON lines to `<run_dir>/data/` (unchanged files are not rewritten: the dataset cache keys
        on their mtime), or to a temporary folder without a run folder. `<run_dir>/splits.json` records
        where each split came from and its size."""
        data = self._data
        if run_dir is not None:
            with open(os.path.join(run_dir, "splits.json"), "w") as f:
                json.dump(data["splits"], f, indent=1)
        if data["as_is"]:
            files = {s: self.path(s) for s in SPLITS}
        else:
            folder = os.path.join(run_dir, "data") if run_dir else tempfile.mkdtemp(prefix=f"trex-ray-{self.name}-")
            files = {s: os.path.join(folder, f"{s}.jsonl") for s in SPLITS}
            for s in SPLITS:
                formats.write_jsonl_if_changed(files[s], self.rows(s))
        self._files = files
        return files

    # -- reading ---------------------------------------------------------------------------------------
    def _records(self, split: str) -> tuple[list[tuple[str, Any]], bool]:
        if self.hf:
            return formats.read_hf(self.hf, getattr(self, split), split), False
        return formats.read_file(getattr(self, split), split)

    def read(self, split: str, fmt: str | None = None) -> tuple[list[dict], str, Counter, bool]:
        """A given split's rows as {"input", "output"} dicts (with "options" and "context" where the task
        asks for them, "chat" where a conversation came before), its format, the rows dropped by reason,
        and whether its file
        is already what the data pipeline reads; ConfigError naming the field on a problem with the data
        as a whole (no such file or field, not UTF-8 or JSON, an empty split)."""
        records, jsonl = self._records(split)
        where = self.source(split)
        if fmt is None:
            fmt = self.format
        if fmt == "auto":
            fmt = formats.detect(records, self.input_field, self.output_field,
                                 bool({"input_field", "output_field"} & self.model_fields_set))
            if fmt != "fields":
                log.info("%s: %s rows (format detected from the first rows of %s)", split, fmt, where)
        m = get_metric(self.metric)
        rows: list[dict] = []
        dropped: Counter = Counter()
        for n, (at, obj) in enumerate(records):
            if not isinstance(obj, dict):
                raise ConfigError(split, f"{where} {at} is not a JSON object", "one object per line")
            if fmt == "fields" and n == 0:  # a field missing from the first row is a mistake of the task
                for field in ("input_field", "output_field"):
                    key = getattr(self, field)
                    if key not in obj:
                        raise ConfigError(
                            field, f"{key!r} is not a field of {where} ({at} has: {', '.join(obj) or 'no fields'})",
                            f"set {field} to one of those fields" + ("" if self.format != "auto" else
                                                                     ", or format to alpaca/sharegpt/chat"))
            try:
                inp, out, chat = formats.convert(obj, fmt, self.input_field, self.output_field)
            except Drop as e:
                dropped[str(e)] += 1
                continue
            row: dict[str, Any] = {"input": inp, "output": out}
            if chat:
                row["chat"] = json.dumps(chat, ensure_ascii=False)
            if self.options_field:
                opts = obj.get(self.options_field)
                if not isinstance(opts, list) or not opts or not all(isinstance(o, (str, int, float)) for o in opts):
                    raise ConfigError("options_field", f"{where} {at}: {self.options_field!r} must be a "
                                      "non-empty list of strings", "fix the row or unset options_field")
                row["options"] = [str(o) for o in opts]
            if m.row:  # your own metric grades with the whole record
                row["context"] = obj
            elif self.context_field:
                if self.context_field not in obj:
                    raise ConfigError("context_field", f"{where} {at} has no {self.context_field!r} field",
                                      "add it to every row, or unset context_field")
                row["context"] = obj[self.context_field]
            rows.append(row)
        if not rows:
            why = f" ({sum(dropped.values())} rows dropped: {_reasons(dropped)})" if dropped else ""
            raise ConfigError(split, f"the split is empty: {where}{why}", "give data with at least one example"
                              + (f" the {fmt} format reads" if dropped else ""))
        if dropped:
            log.warning("%s: %d of %d rows dropped (%s)", split, sum(dropped.values()), len(records), _reasons(dropped))
        return rows, fmt, dropped, jsonl and fmt == "fields" and not dropped and not self.hf

    @cached_property
    def _data(self) -> dict:
        """Every split read once: rows, formats, what was dropped, the splits made."""
        rows, fmts, dropped, as_is = {}, {}, {}, True
        for split in (s for s in SPLITS if getattr(self, s) is not None):
            rows[split], fmts[split], drop, plain = self.read(split)
            as_is = as_is and plain
            if drop:
                dropped[split] = dict(drop)
        missing = [s for s in ("val", "test") if s not in rows]
        splits: dict[str, Any] = {s: {"rows": len(rows[s]), "source": self.source(s), "format": fmts[s]} for s in rows}
        if missing:
            train = rows["train"]
            keep, taken, stratified = formats.split_off(train, missing, formats.SPLIT_SEED)
            for s in missing:
                rows[s] = [train[i] for i in taken[s]]
                splits[s] = {"rows": len(rows[s]), "source": "split off train", "format": fmts["train"]}
            rows["train"] = [train[i] for i in keep]
            splits["train"]["rows"] = len(rows["train"])
            splits["split_off"] = {"splits": missing, "from_train_rows": len(train), "seed": formats.SPLIT_SEED,
                                   "share": formats.SPLIT_SHARE, "cap": formats.SPLIT_CAP,
                                   "stratified_by_output": stratified}
            as_is = False
            log.info("%s split off train (%d rows): %s; train keeps %d (seed %d%s)", " and ".join(missing), len(train),
                     ", ".join(f"{s} {len(rows[s])} rows" for s in missing), len(rows["train"]), formats.SPLIT_SEED,
                     ", stratified by output" if stratified else "")
        if dropped:
            splits["dropped"] = dropped
        return {"rows": rows, "formats": fmts, "dropped": dropped, "splits": splits, "as_is": as_is}

    @property
    def _rows(self) -> dict[str, list[dict]]:
        return self._data["rows"]

    def check(self, leaks: bool = True) -> None:
        """Everything a search relies on: the name, the metric and its options, every split read; with
        `leaks` (as a search checks it) also that no split leaks into another (`check_leaks`)."""
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ConfigError("name", f"{self.name!r} is not a usable run name", "use letters, digits, '-' or '_'")
        try:
            m = get_metric(self.metric)  # plugins are only loaded for a name that is not built in
        except ValueError as e:
            fix = ("put its module in the working directory (or on PYTHONPATH)" if ":" in self.metric
                   else f"use one of: {', '.join(metric_names())}, or your own as module:function")
            raise ConfigError("metric", str(e), fix) from None
        unknown = set(self.metric_options) - set(m.options)
        if unknown:
            raise ConfigError("metric_options", f"metric {self.metric!r} has no option {sorted(unknown)[0]!r}",
                              f"accepted: {', '.join(sorted(m.options)) or 'none'}")
        if m.context and not m.row and not self.context_field:
            raise ConfigError("context_field", f"metric {self.metric!r} grades each row with a context",
                              "set context_field to the rows' field that holds it")
        _ = self._rows  # reads and validates every split
        from trex_ray.metrics import score

        row = self.rows("val")[0]
        if m.row:  # your own function, tried once on a val row graded against itself
            try:
                score(self.metric, [row["output"]], [row["output"]], self.labels, contexts=[row.get("context")])
            except Exception as e:  # noqa: BLE001 - any failure of the user's function is reported as theirs
                raise ConfigError("metric", f"{self.metric} failed on the first val row graded against itself "
                                  f"({type(e).__name__}: {e})", "a metric is function(prediction, reference, row) "
                                  "-> float in [0, 1]") from None
        if self.metric_options:  # option values are checked by grading one val row against itself
            try:
                score(self.metric, [row["output"]], [row["output"]], self.labels, options=self.metric_options,
                      contexts=[row.get("context")] if m.context else None, judge=lambda p, r: [1.0] * len(p))
            except ValueError as e:
                raise ConfigError("metric_options", str(e), f"see the options of metric {self.metric!r}") from None
        if leaks:
            self.check_leaks()

    def check_leaks(self) -> None:
        """No split leaks into another: a val or test that is the train data, or of whose rows (of the smaller
        split of a pair) more than 5% share their input (normalised) with train (or test with val), is a
        ConfigError naming both, unless `allow_overlap`. Splits made here share no input by construction."""
        if self.allow_overlap:
            return
        fix = "or set allow_overlap: true to use them as they are"
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            if getattr(self, a) is None and getattr(self, b) is None:
                continue
            if getattr(self, a) is not None and getattr(self, b) is not None and self._same(a, b):
                raise ConfigError(b, f"the {b} data is the {a} data ({self.source(b)})",
                                  f"give {b} data of its own, or leave {b} out to split it off train; {fix}")
            shared, n = formats.shared_inputs(self.rows(a), self.rows(b))
            if formats.too_much_overlap(shared, n):
                raise ConfigError(b, f"{shared} of {n} rows ({shared / n:.0%}) of the smaller of {a} "
                                  f"({self.source(a)}) and {b} ({self.source(b)}) have an input the other has too "
                                  f"(over {formats.OVERLAP_LIMIT:.0%}: the score would measure memory)",
                                  f"remove those rows from {b}, or leave {b} out to split it off train; {fix}")

    def _same(self, a: str, b: str) -> bool:
        if self.hf:
            return getattr(self, a).replace(" ", "") == getattr(self, b).replace(" ", "")
        try:
            return os.path.samefile(getattr(self, a), getattr(self, b))
        except OSError:
            return False

    def rows(self, split: str) -> list[dict]:
        return self._rows[split]

    def fingerprint(self) -> str:
        """Identifies the training data for caching: path, size and mtime of the train file."""
        if self.hf:
            return f"hf:{self.hf}:{self.train}"
        st = os.stat(self.train)
        return f"{self.path('train')}:{st.st_size}:{int(st.st_mtime)}"

    def profile(self) -> dict:
        """The data analysis of requirement analysis (train and val only: test is never profiled)."""
        data = self._data
        out: dict[str, Any] = {"name": self.name, "goal": self.goal, "metric": self.metric,
                               "format": data["formats"]["train"]}
        for split in ("train", "val"):
            rows = self.rows(split)
            ilen = [len(r["input"]) for r in rows]
            olen = [len(r["output"]) for r in rows]
            out[split] = {
                "rows": len(rows),
                "input_chars": length_stats(ilen),
                "output_chars": length_stats(olen),
                "distinct_outputs": len({r["output"] for r in rows}),
                # rows of the most common answer: how far one answer dominates (0 for an empty split)
                "top_output_rows": max(Counter(r["output"] for r in rows).values(), default=0),
            }
        out["splits"] = {s: data["splits"][s]["source"] for s in SPLITS}
        out["dropped"] = data["dropped"]  # split -> reason -> rows
        chats = [json.loads(r["chat"]) for r in self.rows("train") if r.get("chat")]
        if chats:  # conversations: the turns before the answer, and the data's own system prompts
            out["conversations"] = {"rows_with_earlier_turns": sum(bool(c["history"]) for c in chats),
                                    "max_earlier_turns": max(len(c["history"]) for c in chats),
                                    "rows_with_system_prompt": sum(c["system"] is not None for c in chats)}
        train = self.rows("train")
        counts = Counter(r["output"] for r in train)
        out["classification_like"] = classification_like([r["output"] for r in train])
        if out["classification_like"]:
            top = counts.most_common()
            out["label_balance"] = {k: v / len(train) for k, v in top}
            out["majority_share"] = top[0][1] / len(train)
        keys = Counter((formats.example_text(r).strip().lower(), r["output"].strip().lower()) for r in train)
        out["train_duplicates"] = sum(v - 1 for v in keys.values())
        val_inputs = {r["input"].strip().lower() for r in self.rows("val")}
        out["train_val_overlap"] = sum(1 for r in train if r["input"].strip().lower() in val_inputs)
        out["examples"] = [{"input": r["input"], "output": r["output"]} for r in train[:3]]  # not grading contexts
        return out


def _validated(cls, **kwargs: Any) -> "Task":
    """The model built from keyword arguments; a mistake is the ConfigError naming the field."""
    try:
        return cls(**kwargs)
    except ValidationError as e:
        err = e.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            raise cause from None
        field = ".".join(str(x) for x in err["loc"]) or "task"
        raise ConfigError(field, err["msg"].removeprefix("Value error, "), f"fix the value of {field}") from None


def _reasons(c: Counter) -> str:
    return ", ".join(f"{r}: {n}" for r, n in c.most_common())


def length_stats(xs: list[int]) -> dict:
    """Mean, p50, p95, p99 and max of a list of lengths (characters here, tokens in `models.token_profile`)."""
    xs = sorted(xs)
    at = lambda q: xs[min(len(xs) - 1, int(len(xs) * q))]  # noqa: E731
    return {"mean": round(statistics.fmean(xs), 1), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": xs[-1]}
