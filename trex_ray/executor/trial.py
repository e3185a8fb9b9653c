"""One trial as Ray work: data recipe (Ray Data) -> fine-tune (Ray Train) -> val evaluation (the run's
evaluation backend: the vLLM service's engines, or a transformers task). Returns a `NodeResult` as a dict
and writes the node folder: `nodes/<id>/plan.json`, `result.json`, `adapter/`, `logs/trial.log`. A failing
stage becomes a failed result naming the stage and the error, never a crashed search.
"""

from __future__ import annotations

import json
import os
import time
import traceback

import ray

from trex_ray.aidp.ops import OpContext
from trex_ray.aidp.pipeline import run_recipe
from trex_ray.executor import train as train_mod
from trex_ray.executor.eval_service import Evaluation
from trex_ray.executor.evaluate import evaluate_split
from trex_ray.metrics import get_metric, normalized_reward
from trex_ray.plan import Plan
from trex_ray.results import NodeResult

MIN_TRAIN_ROWS = 8  # fewer prepared rows than this is a failed data stage, not a fine-tune
OOM_MICRO_BATCH_DIVISOR = 8  # after an out-of-memory error, a step's batch is run in 8 micro-batches


EARLY_ROWS = 48  # in-training val evaluations score at most this many val rows (the first ones: a fixed subset)


def early_stopping(p: Plan, task: dict, ev: Evaluation, baseline_score: float) -> dict | None:
    """What a training worker needs to score its model on val as it trains (and stop when it no longer
    improves): the val rows, the plan's prompt and decoding, the task's metric. None where the plan's
    patience is 0 or the metric needs an LLM judge."""
    if not p.train.patience or task["metric"] == "llm_judge":
        return None
    prompt = p.recipe.prompt
    return {"rows": task["val_rows"][:EARLY_ROWS], "template": prompt.template, "system": prompt.system,
            # every val row scored: the kept checkpoint's evaluation is the node's val (not run again)
            "whole": len(task["val_rows"]) <= EARLY_ROWS, "num_bad_cases": p.eval.num_bad_cases,
            "metric": task["metric"], "labels": task.get("labels"), "scoring": task.get("scoring", "generate"),
            "metric_options": task.get("metric_options"), "max_new_tokens": p.eval.max_new_tokens,
            "batch_size": p.eval.batch_size, "patience": p.train.patience, "perfect": get_metric(task["metric"]).best,
            "floor": baseline_score,
            # vLLM engines score the saved adapter as they will score the node; else the worker itself does
            "ev": ev if ev.service is not None else None}


def _log(node_dir: str, msg: str) -> None:
    os.makedirs(os.path.join(node_dir, "logs"), exist_ok=True)
    with open(os.path.join(node_dir, "logs", "trial.log"), "a") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


# not retried by Ray: a trial task killed by Ray's memory monitor would be run again from the start, with no end
# (Ray retries memory kills of a retriable task without limit) and no record; the search records it as failed
@ray.remote(num_cpus=0, max_retries=0)
def run_trial(*, node_id: int, plan: dict, parent_adapter: str | None, task: dict, model_path: str,
              run_dir: str, cache_root: str, baseline_score: float, ev: Evaluation,
              threads: int | None = None, use_gpu: bool = False, data_llm: dict | None = None,
              memory_limit_gb: float | None = None, train_resources: dict | None = None,
              train_retries: int = 1, train_workers: int = 1, storage_uri: str | None = None, reporter=None,
              recipe_cache: bool = True, concurrent_workers: int | None = None) -> dict:
    node_dir = os.path.join(run_dir, "nodes", str(node_id))
    os.makedirs(node_dir, exist_ok=True)
    write_json(os.path.join(node_dir, "plan.json"), plan)
    p = Plan.model_validate(plan)
    t0 = time.time()
    stage, data_stats, train_stats = "data", {}, {}
    report = reporter or (lambda stage, **info: None)
    try:
        report("data", ops=len(p.recipe.ops))
        _log(node_dir, f"data: {p.recipe.to_yaml_list()}")
        ctx = OpContext(train_path=task["train"], input_field=task["input_field"],
                        output_field=task["output_field"], tokenizer_path=model_path,
                        eval_paths=(task["val"], task["test"]), goal=task.get("goal", ""), llm=data_llm,
                        threads=threads, use_gpu=use_gpu)
        # (each training worker needs a row at least)
        data_dir, data_stats = run_recipe(p.recipe, ctx, cache_root, min_rows=max(MIN_TRAIN_ROWS, train_workers),
                                          shared_cache=f"{storage_uri.rstrip('/')}/cache"
                                          if storage_uri and recipe_cache else None)
        _log(node_dir, f"data: {data_stats['rows']} rows (cache hit: {data_stats['cache_hit']})")

        stage = "train"
        report("train", rows=data_stats["rows"])
        init = parent_adapter if p.train.warm_start == "parent" else None
        if p.train.warm_start == "parent" and not parent_adapter:
            raise ValueError("warm_start=parent but the parent has no adapter (it is the base model or failed)")
        fit = dict(data_dir=data_dir, model_path=model_path, train_cfg=p.train.model_dump(), init_adapter=init,
                   early=early_stopping(p, task, ev, baseline_score),
                   node_dir=node_dir, num_workers=train_workers, use_gpu=use_gpu, memory_limit_gb=memory_limit_gb,
                   concurrent_workers=concurrent_workers,
                   # the trial's share of cores, divided among its workers
                   threads=max(1, threads // train_workers) if threads else threads,
                   resources=train_resources, retries=train_retries, reporter=reporter,
                   node_uri=f"{storage_uri.rstrip('/')}/{os.path.basename(run_dir)}/nodes/{node_id}" if storage_uri else None)
        try:
            train_stats = train_mod.fit(**fit)
        except train_mod.OutOfMemory as e:  # once more, the same batch in micro-batches (gradient accumulation)
            micro = max(1, p.train.batch_size // OOM_MICRO_BATCH_DIVISOR)
            _log(node_dir, f"train: out of memory ({str(e)[:200]}); retrying with micro-batches of {micro}")
            train_stats = train_mod.fit(**fit, micro_batch_size=micro)
            train_stats["oom_retry"] = str(e)[:300]
        _log(node_dir, f"train: {train_stats['steps']} steps, final loss {train_stats['final_loss']:.4f}"
                       + (f" (memory cap {train_stats['memory_limit_gb']:g} GiB a worker)"
                          if train_stats.get("memory_limit_gb") else ""))

        stage = "eval"
        prompt = p.recipe.prompt
        adapter = train_stats["artifact"] if p.train.method == "lora" else None
        eval_model = model_path if p.train.method == "lora" else train_stats["artifact"]
        val = train_stats.pop("kept_val", None)
        if val is not None:  # evaluated in training, on every val row, by the same engine: not run twice
            val = {**val, "in_training": True}  # its seconds are inside the training's
            _log(node_dir, f"eval: val {val['metric']} = {val['score']:.4f} (the kept checkpoint's in-training "
                           f"evaluation at step {train_stats['kept_step']}, every val row, {val['backend']})")
        else:
            report("eval", rows=len(task["val_rows"]), loss=train_stats["final_loss"])
            val = evaluate_split(ev, eval_model, adapter, task["val_rows"], task, prompt.template, prompt.system,
                                 p.eval.model_dump(), data_llm)
            _log(node_dir, f"eval: val {val['metric']} = {val['score']:.4f} ({val['backend']}, {val['seconds']} s)")
        result = NodeResult(
            status="ok", score=val["score"], metric=val["metric"],
            reward=normalized_reward(val["score"], baseline_score, get_metric(task["metric"]).best),
            val={k: v for k, v in val.items() if k not in ("bad_cases", "predictions")},
            bad_cases=val["bad_cases"], data_stats=data_stats, train_stats=train_stats,
            artifacts={"adapter" if adapter else "model": train_stats["artifact"], "dataset": data_dir},
            seconds=round(time.time() - t0, 2),
            accelerator_s=round(train_stats["seconds"] * train_stats["workers"]
                                + (0.0 if val.get("in_training") else val["seconds"]), 2),
        )
    except Exception as e:  # noqa: BLE001 - any failure of a trial is data for the search
        _log(node_dir, f"{stage} failed:\n{traceback.format_exc()}")
        result = NodeResult(
            status="failed", metric=task["metric"], data_stats=data_stats, train_stats=train_stats,
            error={"stage": stage, "type": getattr(e, "kind", type(e).__name__), "message": str(e)[:2000]},
            seconds=round(time.time() - t0, 2),
        )
    out = result.model_dump()
    write_json(os.path.join(node_dir, "result.json"), out)
    return out


def run_baseline(*, task: dict, model_path: str, run_dir: str, ev: Evaluation, eval_cfg: dict, template: str,
                 system: str | None, data_llm: dict | None = None) -> dict:
    """Evaluate the base model on val (the reward reference); returns the root's NodeResult dict."""
    t0 = time.time()
    val = evaluate_split(ev, model_path, None, task["val_rows"], task, template, system, eval_cfg, data_llm)
    result = NodeResult(
        status="ok", score=val["score"], metric=val["metric"], reward=0.0,
        val={k: v for k, v in val.items() if k not in ("bad_cases", "predictions")},
        bad_cases=val["bad_cases"], seconds=round(time.time() - t0, 2), accelerator_s=val["seconds"],
    ).model_dump()
    node_dir = os.path.join(run_dir, "nodes", "0")
    os.makedirs(node_dir, exist_ok=True)
    write_json(os.path.join(node_dir, "result.json"), result)
    return result
