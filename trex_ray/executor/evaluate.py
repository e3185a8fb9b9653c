"""Evaluation: generate (or score options for) a split and grade it.

`evaluate_rows` is what every evaluation in a run goes through: it builds the prompts exactly as training
rendered them, asks the run's evaluation backend (`trex_ray.executor.eval_service.Evaluation`: vLLM
engines or transformers) for greedy answers, or, with `scoring="loglik"`, for the log-likelihood of each
option (the task's labels or a row's own options) and takes the likeliest; then scores them with the
task's metric and keeps the failing examples for the Researcher. `evaluate_task` is the entry point for
a whole split of a `Task` (a search's baseline and test evaluations, FT-Bench, the benchmarks).
"""

from __future__ import annotations

import time
from collections import Counter

from trex_ray import prompting
from trex_ray.metrics import score

EVAL_DEFAULTS = {"max_new_tokens": 32, "batch_size": 32, "num_bad_cases": 20}
MAX_NEW_TOKENS = 1024  # long-form tasks (clinical notes) need this much; the plan's EvalConfig allows up to 4096


class InProcess:
    """An evaluation backend (the `Evaluation` interface `evaluate_rows` calls) over an engine in this
    process: a training worker evaluating the model it is training."""

    name = "transformers"

    def __init__(self, engine):
        self.engine = engine

    def generate(self, model_path, adapter, conversations, *, max_new_tokens: int, batch_size: int = 16):
        gen = self.engine.generate(conversations, None, max_new_tokens=max_new_tokens, batch_size=batch_size)
        gen.backend = "transformers"
        return gen

    def loglik(self, model_path, adapter, conversations, options, *, batch_size: int = 16):
        return self.engine.loglik(conversations, options, None, batch_size=batch_size), "transformers"


def evaluate_rows(
    ev, model_path: str, adapter_path: str | None, rows: list[dict], *, template: str, system: str | None,
    metric: str, labels: list[str] | None, max_new_tokens: int, batch_size: int, num_bad_cases: int,
    scoring: str = "generate", judge=None, metric_options: dict | None = None,
) -> dict:
    """Score one model (+ adapter) on `rows` ({"input", "output", optional "options" and "chat"}): the
    template applies to the input, the last user turn; a row's conversation comes before it."""
    t0 = time.time()
    convs = [prompting.messages(template.replace("{input}", r["input"]), system, r.get("chat")) for r in rows]
    refs = [r["output"] for r in rows]
    extra: dict = {}
    if scoring == "loglik":
        options = [r.get("options") or labels or sorted(set(refs)) for r in rows]
        lls, backend = ev.loglik(model_path, adapter_path, convs, options, batch_size=batch_size)
        preds = [opts[max(range(len(opts)), key=lambda i: ll[i])] for opts, ll in zip(options, lls)]
        tin = tout = 0
    else:
        gen = ev.generate(model_path, adapter_path, convs, max_new_tokens=max_new_tokens, batch_size=batch_size)
        preds, backend, tin, tout = gen.texts, gen.backend, gen.input_tokens, gen.output_tokens
        if gen.extra.get("fallback"):
            extra["fallback"] = gen.extra["fallback"]
    contexts = [r.get("context") for r in rows] if any("context" in r for r in rows) else None
    scored = score(metric, preds, refs, labels, judge=judge, options=metric_options, contexts=contexts)
    worst = sorted(range(len(rows)), key=lambda i: scored.per_example[i])
    bad = [{"input": rows[i]["input"], "expected": refs[i], "got": preds[i], "score": round(scored.per_example[i], 4),
            **({"detail": scored.details[i]} if scored.details and scored.details[i] else {})}
           for i in worst if scored.per_example[i] < 1.0]
    seconds = time.time() - t0
    return {
        "score": scored.score,
        "metric": metric,
        "n": len(rows),
        "backend": backend,
        "scoring": scoring,
        "seconds": round(seconds, 2),
        "input_tokens": tin,
        "output_tokens": tout,
        "tokens_per_s": round(tout / seconds, 1) if seconds > 0 and tout else 0.0,
        "bad_cases": bad[:num_bad_cases],
        "num_bad": len(bad),
        "predictions": preds,
        "answers": answer_spread(preds, refs, scored.per_example),
        **extra,
    }


def _answer_key(text: str) -> str:
    return " ".join(text.split()).lower().rstrip(".")


def answer_spread(preds: list[str], refs: list[str], per_example: list[float]) -> dict:
    """How varied the answers are: the number of distinct answers (case, spacing and a final full stop
    aside), the most common one (`top`, cut to 120 characters), how many rows got it (`top_count`), how
    many of those the metric scored below full marks (`top_wrong`, from `per_example`; the metric decides,
    not the text: "Sentiment: positive" is right where "positive" is), and how many references are that
    answer as written (`top_in_refs`; 0 where the task has no reference text). A model that gives one
    answer to most inputs, wrongly for many, has learnt a prior, not the task: `heuristic.collapsed`."""
    keys = [_answer_key(p) for p in preds]
    if not keys:
        return {"n": 0, "distinct": 0, "top": "", "top_count": 0, "top_wrong": 0, "top_in_refs": 0}
    top, count = Counter(keys).most_common(1)[0]
    first = next(p for p, k in zip(preds, keys) if k == top)
    return {"n": len(keys), "distinct": len(set(keys)), "top": first.strip()[:120], "top_count": count,
            "top_wrong": sum(1 for k, s in zip(keys, per_example) if k == top and s < 1.0),
            "top_in_refs": sum(_answer_key(r) == top for r in refs)}


def baseline_eval_cfg(task) -> dict:
    """Decoding for the base model: room for the answer and some preamble (exact match reads the first line;
    accuracy finds the label). The answer length is read from val, and from train where val carries no
    reference text (open-ended tasks graded by a context)."""
    val = max(len(r["output"]) for r in task.rows("val"))
    train = sorted(len(r["output"]) for r in task.rows("train"))
    out_chars = max(val, train[min(len(train) - 1, int(0.95 * len(train)))])
    return {**EVAL_DEFAULTS, "max_new_tokens": min(MAX_NEW_TOKENS, max(16, out_chars // 2 + 12))}


def evaluate_split(ev, model_path: str, adapter: str | None, rows: list[dict], task: dict,
                   template: str, system: str | None, eval_cfg: dict, data_llm: dict | None = None) -> dict:
    """Rows of a split through the run's evaluation backend, graded with the task's metric (`task`: the
    plain form of `Task.info()`, as trials get it)."""
    judge = judge_llm = None
    if task["metric"] == "llm_judge":
        from trex_ray.llm import make_llm
        from trex_ray.metrics import make_llm_judge

        judge_llm = make_llm(data_llm or {})
        judge = make_llm_judge(judge_llm)
    try:
        return evaluate_rows(
            ev, model_path, adapter, rows, template=template, system=system, metric=task["metric"],
            labels=task.get("labels"), max_new_tokens=eval_cfg["max_new_tokens"], batch_size=eval_cfg["batch_size"],
            num_bad_cases=eval_cfg["num_bad_cases"], scoring=task.get("scoring", "generate"), judge=judge,
            metric_options=task.get("metric_options"),
        )
    finally:  # a local judge holds a model (or an engine actor)
        close = getattr(judge_llm, "close", None)
        if close is not None:
            close()


def evaluate_task(ev, task, split: str, model_path: str, adapter: str | None = None, *, eval_cfg: dict | None = None,
                  template: str = "{input}", system: str | None = None, data_llm: dict | None = None) -> dict:
    """A model (+ adapter) on one split of a `Task`: by default as the search's root node is, the base
    model's decoding (`baseline_eval_cfg`) and the task's goal as the system prompt."""
    system = prompting.task_system(task.goal) if system is None else system
    return evaluate_split(ev, model_path, adapter, task.rows(split), task.model_dump(), template, system,
                          eval_cfg or baseline_eval_cfg(task), data_llm)
