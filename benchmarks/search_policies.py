"""Search efficiency: trex-ray's tree policies against Ray Tune's Bayesian search, side by side in one run.

On each task, with the same model, the same trial budget and the same seeds:
- trex-ray with `mcts`, `greedy`, `sequential` and `random` (the offline heuristic researcher plans every
  trial; the policy picks which node to refine);
- Ray Tune with `OptunaSearch` (TPE), without and with ASHA early stopping, over the same training-config
  space and the same data-recipe choices the heuristic researcher has (learning rate, epochs, LoRA rank and
  target modules, prompt template, data cleaning), each sampled config run as one trial through the very
  same executor (`run_trial`: Ray Data recipe, Ray Train + PEFT, evaluation). With ASHA a trial trains in
  three segments (each continuing the previous segment's adapter) and reports its val score after each, so
  poor configs can be stopped early; without ASHA it trains in one go, as a trex-ray trial does.

Printed and saved (JSON and a PNG under benchmarks/results/): best val score so far against trials for each
method (mean and range over seeds), the test score of the best-so-far node, the accelerator seconds spent,
and how many trials each method needs to reach 95% of the best val score any method found on the task
(95% of the way from the baseline to it).

Each finished (task, method, seed) run is written at once to `<out>.cells/`, seed by seed across tasks and
methods, and a later call with the same model, trials and concurrency reuses it: a long measurement can be
stopped and resumed, or split over machines (`--seeds`/`--tasks`/`--methods`) and summarised together
(`--summarize`). Each run records the commit it ran on; a change of code is not detected, so after changing
the researcher or the executor measure again with `--fresh` or a new `--out`. Each run also records the
machine and a one-thread matmul rate measured before it starts; the summary names the machines when a
task's runs come from more than one, since their seconds then do not compare.

    python benchmarks/search_policies.py --quick                        # checks the script works (mcts, tune+ASHA)
    python benchmarks/search_policies.py                                # demo, sst2 lite, econlogicqa lite; SmolLM2
    python benchmarks/search_policies.py --tasks demo --trials 6 --seeds 2 --methods mcts greedy tune-tpe
    python benchmarks/search_policies.py --task-config my_task.yaml --trials 8 --seeds 3   # any task of yours
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import code_version, machine_speed, same_speed, save_json  # noqa: E402

TREX = ("mcts", "greedy", "sequential", "random")
TUNE = ("tune-tpe", "tune-tpe-asha")
TASKS = ("demo", "sst2", "econlogicqa")  # tomg_bench (longer molecules to generate) with --tasks
ASHA_SEGMENTS = 3


# -- tasks ---------------------------------------------------------------------------------------------
TASK_CONFIGS: dict[str, str] = {}  # task name -> a `trex-ray run` YAML (--task-config)


def task_from_config(path: str):
    """The task of a `trex-ray run` YAML (data paths relative to the file), as `trex-ray run` reads it; only
    its task keys count here: every method runs with this benchmark's own model, budget and seeds."""
    from trex_ray.config import build, load_config

    task = build(load_config(path)).task
    task.check()
    return task


def load_task(name: str, workdir: str, quick: bool):
    """A trex_ray.Task: one from --task-config, the built-in demo, or an FT-Bench task in its lite profile."""
    if name in TASK_CONFIGS:
        return task_from_config(TASK_CONFIGS[name])
    if name == "demo":
        from trex_ray.demo import demo_task

        sizes = dict(n_val=16, n_test=16, n_train=64) if quick else {}
        return demo_task(os.path.join(workdir, "demo"), **sizes)
    from ftbench.prepare import prepare

    return prepare(name, os.path.join(workdir, "ftbench", name), profile="lite")


# -- the Tune side -------------------------------------------------------------------------------------
def tune_space(brief: dict):
    """The choices the heuristic researcher makes, as a search space around its starting point."""
    from ray import tune

    from trex_ray.researcher.heuristic import TEMPLATES

    lr = brief["start"]["learning_rate"]
    return {
        "learning_rate": tune.loguniform(max(2e-5, lr / 8), min(3e-2, lr * 8)),
        "epochs": tune.uniform(0.5, min(12.0, brief["start"]["epochs"] * 4)),
        "lora_r": tune.choice([2, 4, 8, 16, 32, 64]),
        "mlp": tune.choice([False, True]),
        "template": tune.choice(list(range(len(TEMPLATES)))),
        "data": tune.choice(["as is", "exact dedup", "near-dup + length filter"]),
    }


def plan_from_config(base: dict, brief: dict, c: dict, epochs: float) -> dict:
    """The heuristic researcher's starting plan with a sampled config applied (validated like any plan)."""
    from trex_ray.plan import Plan
    from trex_ray.researcher.heuristic import TEMPLATES, template_room

    p = Plan.model_validate(base)
    fmt = next(o for o in p.recipe.to_yaml_list() if "format" in o)["format"]
    goal = brief.get("goal") or brief.get("objective", "")
    ops = [{"load": {}}]
    if c["data"] == "exact dedup":
        ops.append({"dedup_exact": {}})
    elif c["data"] == "near-dup + length filter":
        ops += [{"length_filter": {"min_chars": 1, "max_tokens": p.train.max_seq_len}},
                {"dedup_minhash": {"threshold": 0.85}}]
    template = TEMPLATES[c["template"]].replace("{goal}", goal)
    ops.append({"format": {**fmt, "template": template}})
    mods = ["q_proj", "k_proj", "v_proj", "o_proj"] + (["gate_proj", "up_proj", "down_proj"] if c["mlp"] else [])
    # the sequence limit grows with a longer template, as the heuristic's prompt-format direction does
    # (without it every answer under a longer template was cut: val 0.0, or no trainable example at all)
    train = {**p.train.model_dump(), "learning_rate": c["learning_rate"], "epochs": round(epochs, 3),
             "lora_r": c["lora_r"], "lora_alpha": 2 * c["lora_r"], "target_modules": mods,
             "max_seq_len": template_room(p.train.max_seq_len, fmt.get("template", "{input}"), template)}
    return Plan.model_validate({**p.model_dump(), "direction": "tune config", "rationale": "sampled by Ray Tune",
                                "recipe": {"ops": ops}, "train": train}).model_dump()


def tune_trial(config: dict, ctx: dict) -> None:
    """One Tune trial: the sampled config run through trex-ray's executor, in `segments` parts for ASHA."""
    import ray
    from ray import tune

    from trex_ray.executor.trial import run_trial

    seg = ctx["segments"]
    parent, plan, spent = None, None, 0.0
    for k in range(seg):
        plan = plan_from_config(ctx["base_plan"], ctx["brief"], config, config["epochs"] / seg)
        if parent:
            plan["train"]["warm_start"] = "parent"
        node = f"{tune.get_context().get_trial_id()}-{k}"  # the trial's folder for this segment
        # out of the Tune trial's placement group: the trial's own training and evaluation schedule as in a search
        r = ray.get(run_trial.options(scheduling_strategy="DEFAULT").remote(
            node_id=node, plan=plan, parent_adapter=parent, task=ctx["task"], model_path=ctx["model"],
            run_dir=ctx["run_dir"], cache_root=ctx["cache"], baseline_score=ctx["baseline"], ev=ctx["ev"],
            threads=ctx["threads"]))
        spent += r.get("accelerator_s") or 0.0
        if r["status"] != "ok":
            tune.report({"val": 0.0, "failed": True, "accelerator_s": spent, "adapter": None, "plan": plan,
                         "segment": k + 1, "finished_at": time.time(), "error": _error(r.get("error"))})
            return
        parent = r["artifacts"].get("adapter")
        tune.report({"val": r["score"], "failed": False, "accelerator_s": spent, "adapter": parent, "plan": plan,
                     "segment": k + 1, "finished_at": time.time()})


def run_tune(method: str, task, ctx: dict, trials: int, concurrency: int, seed: int, storage: str) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    asha = method.endswith("asha")
    segments = ctx.get("asha_segments", ASHA_SEGMENTS)
    ctx = {**ctx, "segments": segments if asha else 1, "seed": seed,
           "run_dir": os.path.join(storage, f"{method}-{seed}")}
    os.makedirs(os.path.join(ctx["run_dir"], "nodes"), exist_ok=True)
    trainable = tune.with_resources(tune.with_parameters(tune_trial, ctx=ctx), {"cpu": 0.01})
    tuner = tune.Tuner(trainable, param_space=tune_space(ctx["brief"]), tune_config=tune.TuneConfig(
        search_alg=OptunaSearch(metric="val", mode="max", seed=seed), num_samples=trials, max_concurrent_trials=concurrency,
        scheduler=ASHAScheduler(metric="val", mode="max", max_t=segments, grace_period=1, reduction_factor=3,
                                time_attr="segment") if asha else None),
        run_config=tune.RunConfig(storage_path=os.path.join(storage, "tune"), name=f"{method}-{seed}", verbose=0))
    grid = tuner.fit()
    # Tune ends early on an interrupt (Ctrl-C) with the trials so far: that is no finished run
    unfinished = len(grid) < trials or any(not r.metrics and r.error is None for r in grid)
    if unfinished:
        raise RuntimeError(f"Tune's {method} run (seed {seed}) ended before its {trials} trials did (interrupted); "
                           "nothing is recorded for it")
    done = []
    for r in grid:
        m = r.metrics or {}
        done.append({"val": m.get("val", 0.0), "accelerator_s": m.get("accelerator_s", 0.0), "adapter": m.get("adapter"),
                     "plan": m.get("plan"), "finished_at": m.get("finished_at", 0.0), "failed": m.get("failed", True),
                     "segments": m.get("segment", 0),
                     "error": _error(m.get("error") or r.error)})
    done.sort(key=lambda d: d["finished_at"])
    return {"trials": done}


# -- the trex-ray side ---------------------------------------------------------------------------------
def run_trex(method: str, task, model: str, trials: int, concurrency: int, seed: int, storage: str) -> dict:
    import trex_ray
    from trex_ray.runs import load_tree

    res = trex_ray.search(task, model, trex_ray.Budget(trials=trials), policy=method, seed=seed,
                          max_concurrent=concurrency, storage=storage, run_name=f"{method}-{seed}", progress=False,
                          evaluator="transformers",
                          # every method spends the same trial budget here; what a search that ends at a perfect
                          # val (the default) would have kept is read from the trials' accelerator seconds
                          stop_at_perfect=False)
    tree = load_tree(res.run_dir)
    views = {n.id: n for n in res.nodes}
    order = sorted((n for n in tree.nodes.values() if n.id != 0 and n.finish_order is not None),
                   key=lambda n: n.finish_order)
    return {"run_dir": res.run_dir, "trials": [
        {"val": n.score if n.status == "ok" else 0.0, "accelerator_s": (n.result or {}).get("accelerator_s", 0.0),
         "adapter": views[n.id].adapter, "plan": n.plan, "failed": n.status != "ok", "node": n.id,
         "error": _error((n.result or {}).get("error")) if n.status != "ok" else None} for n in order]}


def _error(err) -> str | None:
    """What a failed trial's result says went wrong, in a line (the cell keeps it beside the failure)."""
    if not err:
        return None
    if isinstance(err, dict):
        return f"{err.get('stage', '?')}/{err.get('type', '?')}: {str(err.get('message', ''))[:300]}"
    return str(err)[:300]


# -- measuring ------------------------------------------------------------------------------------------
def best_so_far(trials: list[dict], baseline: float) -> list[int]:
    """Index (into trials) of the best trial after each trial; -1 while nothing beat the baseline."""
    out, best, idx = [], baseline, -1
    for i, t in enumerate(trials):
        if not t["failed"] and t["val"] is not None and t["val"] > best:
            best, idx = t["val"], i
        out.append(idx)
    return out


def test_curve(trials, idx, test_of) -> list[float]:
    return [test_of(trials[i]) if i >= 0 else test_of(None) for i in idx]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="checks the script works: the demo task on the tiny model, "
                    "mcts and tune-tpe-asha (2 segments), 1 trial, 1 seed")
    ap.add_argument("--tasks", nargs="+", default=None, help=f"of {', '.join(TASKS)} (or any FT-Bench task id)")
    ap.add_argument("--task-config", nargs="+", default=[], metavar="FILE.yaml",
                    help="tasks written for `trex-ray run` (their task keys; the name is the config's `name`): "
                    "measured beside --tasks, or alone when --tasks is not given")
    ap.add_argument("--methods", nargs="+", default=None, choices=list(TREX + TUNE),
                    help="default: all (mcts and tune-tpe-asha with --quick)")
    ap.add_argument("--model", default=None, help="default smollm2-135m (tiny-random with --quick)")
    ap.add_argument("--trials", type=int, default=None, help="trial budget per method (default 8; 1 with --quick)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per method (default 3; 1 with --quick)")
    ap.add_argument("--only-seeds", nargs="+", type=int, default=None, metavar="S",
                    help="measure only these seeds (of 0..--seeds-1), e.g. a whole seed of every method on one "
                    "machine; the summary still covers every finished seed")
    ap.add_argument("--concurrency", type=int, default=2, help="trials in flight, the same for every method")
    ap.add_argument("--out", default=None, help="JSON file (the PNG goes beside it, each finished run in <out>.cells/)")
    ap.add_argument("--fresh", action="store_true", help="run every (task, method, seed) again, even those whose "
                    "result is already in <out>.cells/ with the same model, trials and concurrency (--quick always does)")
    ap.add_argument("--summarize", action="store_true", help="run nothing: summarise the finished runs in <out>.cells/")
    args = ap.parse_args(argv)
    if args.only_seeds and not set(args.only_seeds) <= set(range(args.seeds or (1 if args.quick else 3))):
        ap.error(f"--only-seeds {args.only_seeds}: each seed must be below --seeds; raise --seeds to include them")
    for path in args.task_config:
        TASK_CONFIGS[task_from_config(path).name] = os.path.abspath(path)
    tasks = (args.tasks or ([] if TASK_CONFIGS else ["demo"] if args.quick else list(TASKS))) + list(TASK_CONFIGS)
    methods = args.methods or (["mcts", "tune-tpe-asha"] if args.quick else list(TREX + TUNE))
    model = args.model or ("tiny-random" if args.quick else "smollm2-135m")
    trials = args.trials or (1 if args.quick else 8)
    seeds = args.seeds or (1 if args.quick else 3)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"search_policies{'-quick' if args.quick else ''}.json")
    cells = out[:-len(".json")] + ".cells" if out.endswith(".json") else out + ".cells"
    # a finished run is reused only if it was measured under the same conditions
    same = {"model": model, "budget": trials, "concurrency": args.concurrency,
            "asha_segments": 2 if args.quick else ASHA_SEGMENTS}
    t_all = time.time()
    if not args.summarize:
        _measure(args, tasks, methods, seeds, same, cells, fresh=args.fresh or args.quick)
    report = {**same, "trials": trials, "seeds": seeds, "tasks": {}}
    for name in tasks:
        t = _summarize(name, methods, seeds, same, cells)
        if t:
            report["tasks"][name] = t
            _print_table(name, t, trials)
    if not report["tasks"]:
        print(f"no finished runs in {cells} for these tasks, methods and conditions")
        return 1
    report["seconds"] = round(time.time() - t_all, 1)
    save_json(report, out)
    png = _plot(report, out.replace(".json", ".png"))
    print(f"written: {out}" + (f" and {png}" if png else "") + f" ({report['seconds']:.0f} s in all)")
    return 0


def _cell(cells: str, task: str, name: str, same: dict) -> tuple[str, dict | None]:
    """The file of one finished run (or the task's baseline) and its content if it was measured under `same`."""
    path = os.path.join(cells, task, f"{name}.json")
    try:
        with open(path) as f:
            c = json.load(f)
    except (OSError, ValueError):
        return path, None
    return path, (c if all(c.get(k) == v for k, v in same.items()) else None)


def _measure(args, tasks, methods, seeds, same, cells, fresh: bool) -> None:
    """Run every (seed, task, method) not yet in `cells`, seed by seed, so that an interrupted run leaves whole
    seeds of every method; each finished run is written at once with the test score of its best-so-far nodes."""
    from trex_ray.executor.eval_service import start_evaluation
    from trex_ray.runtime import init_ray, threads_per_trial

    wanted = [s for s in range(seeds) if getattr(args, "only_seeds", None) is None or s in args.only_seeds]
    todo = [(s, t, m) for s in wanted for t in tasks for m in methods
            if fresh or _cell(cells, t, f"{m}-{s}", same)[1] is None]
    print(f"{len(todo)} runs to make ({len(wanted) * len(tasks) * len(methods) - len(todo)} already in {cells})", flush=True)
    if not todo:
        return
    machine = machine_speed()  # before Ray and the trials take the cores
    print(f"machine: {machine}", flush=True)
    init_ray(None, args.concurrency)
    from trex_ray.models import resolve_model

    model_path = resolve_model(same["model"])
    threads = threads_per_trial(args.concurrency)
    ev = start_evaluation("transformers", model_path, use_gpu=False, threads=threads)
    work = tempfile.mkdtemp(prefix="trex-policies-")
    # the runs' folders (trees, reports, adapters) stay there for reading; a run's record is its cell
    print(f"runs in {work} (kept: delete it when read)", flush=True)
    ready: dict = {}
    for seed, name, method in todo:
        if name not in ready:
            ready[name] = _setup(name, work, args.quick, same, model_path, ev, threads, cells)
        s = ready[name]
        t0 = time.time()
        storage = os.path.join(work, name, "runs")
        r = (run_trex(method, s["task"], same["model"], same["budget"], args.concurrency, seed, storage)
             if method in TREX else run_tune(method, s["task"], s["ctx"], same["budget"], args.concurrency, seed, storage))
        if len(r["trials"]) != same["budget"]:  # never record a run cut short as a finished one
            raise RuntimeError(f"{name} {method} seed {seed}: {len(r['trials'])} of {same['budget']} trials finished; "
                               "nothing is recorded for it")
        idx = best_so_far(r["trials"], s["baseline_val"])
        cell = {**same, "task": name, "method": method, "seed": seed, "code": code_version(), "machine": machine,
                "seconds": round(time.time() - t0, 1),
                "best_val": [r["trials"][i]["val"] if i >= 0 else s["baseline_val"] for i in idx],
                "best_test": test_curve(r["trials"], idx, s["test_of"]),
                "accelerator_s": round(sum(t["accelerator_s"] or 0 for t in r["trials"]), 1),
                "trials": [{k: t.get(k) for k in ("val", "accelerator_s", "failed", "segments", "error")
                            if k != "error" or t.get("error")} for t in r["trials"]]}
        save_json(cell, _cell(cells, name, f"{method}-{seed}", same)[0])
        print(f"{name:12s} {method:14s} seed {seed}: best val {cell['best_val'][-1]:.3f} test {cell['best_test'][-1]:.3f} "
              f"({len(r['trials'])} trials, {cell['accelerator_s']:.0f} accel-s, {cell['seconds']:.0f} s)", flush=True)


def _setup(name, work, quick, same, model_path, ev, threads, cells) -> dict:
    """A task's data, baseline (val and test, also written to the cells) and what Tune's trials need."""
    from trex_ray.executor.evaluate import baseline_eval_cfg, evaluate_task
    from trex_ray.executor.trial import run_baseline
    from trex_ray.models import model_profile
    from trex_ray.prompting import task_system
    from trex_ray.researcher.heuristic import HeuristicResearcher

    task = load_task(name, work, quick)
    info = task.info()
    base_cfg = baseline_eval_cfg(task)
    base = run_baseline(task=info, model_path=model_path, run_dir=os.path.join(work, name, "baseline"), ev=ev,
                        eval_cfg=base_cfg, template="{input}", system=task_system(task.goal))
    agent = HeuristicResearcher()
    brief = agent.analyze({**task.profile(), "base_model": same["model"], **model_profile(model_path, task)}, base)
    tests: dict = {}

    def test_of(trial):
        """Test score of a trial's model (the base model for None), evaluated once and remembered."""
        key = trial["adapter"] if trial else None
        if key not in tests:
            plan = trial["plan"] if trial else None
            fmt = next(o["args"] for o in plan["recipe"]["ops"] if o["op"] == "format") if plan else {}
            cfg = plan["eval"] if plan else base_cfg
            tests[key] = evaluate_task(ev, task, "test", model_path, key, eval_cfg=cfg,
                                       template=fmt.get("template", "{input}"),
                                       system=fmt.get("system") or task_system(task.goal))["score"]
        return tests[key]

    save_json({**same, "metric": task.metric, "val": base["score"], "test": test_of(None),
               "sizes": {s: len(task.rows(s)) for s in ("train", "val", "test")}},
              _cell(cells, name, "baseline", same)[0])
    ctx = {"task": info, "model": model_path, "cache": os.path.join(work, name, "cache"), "baseline": base["score"],
           "ev": ev, "threads": threads, "brief": brief, "base_plan": agent.initial_plan(brief).model_dump(),
           "asha_segments": same["asha_segments"]}
    return {"task": task, "baseline_val": base["score"], "test_of": test_of, "ctx": ctx}


def _summarize(name, methods, seeds, same, cells) -> dict | None:
    """The task's table from the finished runs in `cells` (methods with no finished run are left out)."""
    base = _cell(cells, name, "baseline", same)[1]
    per = {m: [c for s in range(seeds) if (c := _cell(cells, name, f"{m}-{s}", same)[1])] for m in methods}
    per = {m: runs for m, runs in per.items() if runs}
    if not base or not per:
        return None
    best_any = max(max(r["best_val"]) for runs in per.values() for r in runs)
    # 95% of the way from the baseline to the best score any method found (a bare 0.95 x best can lie
    # below the baseline, which every method would "reach" before its first trial)
    target = base["val"] + 0.95 * (best_any - base["val"])
    # equal compute: what each run had found once it had spent as many accelerator seconds as the cheapest run
    # measured beside it spent in all (trials counted in the order they finished). "Beside it": the same seed on
    # the same machine; a seed's runs are made together, but seconds from machines of other speeds do not compare.
    machines = _machines(per)
    where = {run: gi for gi, g in enumerate(machines) for run in g["runs"]}
    budgets: dict[tuple[int, int], float] = {}
    for method, runs in per.items():
        for r in runs:
            key = (r["seed"], where[f"{method}-{r['seed']}"])
            budgets[key] = min(budgets.get(key, float("inf")), r["accelerator_s"])

    def at_equal(method: str, r: dict) -> float:
        return _val_within(r, budgets[(r["seed"], where[f"{method}-{r['seed']}"])], base["val"])

    summary = {}
    for method, runs in per.items():
        finals = [r["best_val"][-1] for r in runs]
        summary[method] = {
            "seeds": [r["seed"] for r in runs],
            "final_val_mean": statistics.mean(finals), "final_val_min": min(finals), "final_val_max": max(finals),
            "final_test_mean": statistics.mean(r["best_test"][-1] for r in runs),
            "trials_to_95pct": [next((i + 1 for i, v in enumerate(r["best_val"]) if v >= target), None) for r in runs],
            "accelerator_s_mean": statistics.mean(r["accelerator_s"] for r in runs),
            "seconds_mean": statistics.mean(r["seconds"] for r in runs),
            "val_at_equal_accel_mean": statistics.mean(at_equal(method, r) for r in runs),
            "val_curve_mean": [statistics.mean(c) for c in zip(*(r["best_val"] for r in runs))],
            "val_curve_min": [min(c) for c in zip(*(r["best_val"] for r in runs))],
            "val_curve_max": [max(c) for c in zip(*(r["best_val"] for r in runs))],
            "test_curve_mean": [statistics.mean(c) for c in zip(*(r["best_test"] for r in runs))],
        }
    equal = [{"seed": seed, "machine": machines[gi]["machine"], "accelerator_s": b}
             for (seed, gi), b in sorted(budgets.items())]
    return {"metric": base["metric"], "sizes": base.get("sizes"), "baseline_val": base["val"], "equal_accel_s": equal,
            "baseline_test": base["test"], "best_val_any": best_any, "target_95pct": target, "summary": summary,
            "machines": machines, "runs": per}


def _machines(per: dict) -> list[dict]:
    """The machines the runs of one task were measured on (runs whose seconds compare share one), each with
    its runs as "method-seed"; runs from before machines were recorded share one group of machine None."""
    groups: list[dict] = []
    for method, runs in per.items():
        for r in runs:
            m = r.get("machine")
            g = next((g for g in groups if (same_speed(g["machine"], m) if m else g["machine"] is None)), None)
            if g is None:
                g = {"machine": m, "runs": []}
                groups.append(g)
            g["runs"].append(f"{method}-{r['seed']}")
    return groups


def _val_within(run: dict, budget_s: float, baseline: float) -> float:
    """Best val among the run's trials finished before it had spent `budget_s` accelerator seconds."""
    spent, best = 0.0, baseline
    for t in run["trials"]:
        spent += t["accelerator_s"] or 0.0
        if spent > budget_s + 1e-6:
            break
        if not t["failed"] and t["val"] is not None:
            best = max(best, t["val"])
    return best


def _print_table(name: str, t: dict, trials: int) -> None:
    print(f"\n{name}: {t['metric']}, baseline val {t['baseline_val']:.3f}, best any {t['best_val_any']:.3f} "
          f"(95%: {t['target_95pct']:.3f})")
    print(f"  {'method':14s} {'seeds':>5s} {'val mean':>8s} {'[min, max]':>15s} {'test':>6s} {'trials to 95%':>14s} "
          f"{'accel-s':>8s} {'wall s':>7s} {'val @ equal accel':>17s}")
    for m, s in t["summary"].items():
        reach = ",".join(str(x) if x is not None else f">{trials}" for x in s["trials_to_95pct"])
        print(f"  {m:14s} {len(s['seeds']):5d} {s['final_val_mean']:8.3f} "
              f"[{s['final_val_min']:.3f}, {s['final_val_max']:.3f}] {s['final_test_mean']:6.3f} {reach:>14s} "
              f"{s['accelerator_s_mean']:8.0f} {s['seconds_mean']:7.0f} {s['val_at_equal_accel_mean']:17.3f}")
    groups = t["machines"]
    several = len(groups) > 1
    print("  equal accel: the val a run had when it had spent what the cheapest run of its seed"
          + (" and machine" if several else "") + " spent in all: "
          + "; ".join(f"seed {e['seed']}" + (f" ({_machine_name(e['machine'])})" if several else "")
                      + f" {e['accelerator_s']:.0f} s" for e in t["equal_accel_s"]))
    if several or groups[0]["machine"] is None:  # seconds (and equal compute) compare within one machine
        print("  note: seconds compare only between runs on one machine, and these runs' are "
              + (f"{len(groups)} kinds:" if len(groups) > 1 else "not recorded (they may differ):"))
        for g in groups:
            print(f"    {_machine_name(g['machine'])}: {' '.join(g['runs'])}")


def _machine_name(m: dict | None) -> str:
    return f"{m['cpu']}, {m['gflops_1thread']} GFLOP/s a thread" if m else "not recorded"


def _plot(report: dict, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    names = list(report["tasks"])
    # one colour per method in every panel, and one legend for all (a task may lack some methods)
    methods = list(dict.fromkeys(m for t in report["tasks"].values() for m in t["summary"]))
    fig, axes = plt.subplots(2, len(names), figsize=(5.5 * len(names), 8), squeeze=False)
    for col, name in enumerate(names):
        t = report["tasks"][name]
        top, bottom = axes[0][col], axes[1][col]
        for m, s in t["summary"].items():
            colour = f"C{methods.index(m)}"
            x = list(range(1, len(s["val_curve_mean"]) + 1))
            top.plot(x, s["val_curve_mean"], marker="o", color=colour, label=m)
            top.fill_between(x, s["val_curve_min"], s["val_curve_max"], color=colour, alpha=0.15)
            for i, r in enumerate(t["runs"][m]):  # one step line per seed
                spent = [0.0]
                for tr in r["trials"]:
                    spent.append(spent[-1] + (tr["accelerator_s"] or 0.0))
                bottom.step(spent, [t["baseline_val"], *r["best_val"]], where="post", color=colour, alpha=0.8,
                            label=m if i == 0 else None)
        for ax in (top, bottom):
            ax.axhline(t["baseline_val"], color="grey", linestyle=":", label="baseline")
        top.set_title(f"{name} ({t['metric']})")
        top.set_xlabel("trials")
        top.xaxis.get_major_locator().set_params(integer=True)
        top.set_ylabel("best val so far (mean, range over seeds)")
        bottom.set_xlabel("accelerator seconds")
        bottom.set_ylabel("best val so far (each seed)")
    legend = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    axes[0][-1].legend(legend.values(), legend.keys(), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(main())
