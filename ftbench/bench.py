"""Running the benchmark: base-model scores, a search per task, and the results table.

Every `run` leaves `<runs>/<run name>/ftbench.json` next to trex-ray's own run files (journal,
result.json), so `table` can rebuild the paper-style table from a folder of runs at any time.
"""

from __future__ import annotations

import json
import os
import time

from ftbench.prepare import prepare
from ftbench.tasks import HUB_TASKS, PAPER_TREX, SPECS, DataNotAvailable, available, get_spec


def baseline(task: str, model: str = "smollm2-135m", *, runs: str = "runs", profile: str = "lite",
             data_dir: str | None = None, evaluator: str = "auto", splits: tuple[str, ...] = ("val", "test")) -> dict:
    """The base model's scores on the task, prompted with the task's goal (as a search's root node is)."""
    get_spec(task)  # a wrong name fails before anything starts
    import ray

    from trex_ray.executor.eval_service import start_evaluation, stop_evaluation
    from trex_ray.executor.evaluate import evaluate_task
    from trex_ray.models import check_model, resolve_model
    from trex_ray.runtime import init_ray, threads_per_trial

    check_model(model)
    t = prepare(task, os.path.join(runs, "data", f"{task}-{profile}"), profile=profile, data_dir=data_dir)
    init_ray(None, 1)
    path = resolve_model(model)
    ev = start_evaluation(evaluator, path, use_gpu=bool(ray.cluster_resources().get("GPU")),
                          threads=threads_per_trial(1))
    out = {"task": task, "model": model, "profile": profile, "metric": t.metric, "scores": {}, "n": {}}
    try:
        for split in splits:
            res = evaluate_task(ev, t, split, path)
            out["scores"][split], out["n"][split] = res["score"], res["n"]
            out["backend"] = res["backend"]
    finally:
        stop_evaluation(ev)
    os.makedirs(runs, exist_ok=True)
    with open(os.path.join(runs, f"baseline-{task}-{profile}-{model.replace('/', '_')}.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def run(task: str, model: str = "smollm2-135m", *, runs: str = "runs", profile: str = "lite", policy: str = "mcts",
        budget_trials: int = 20, wall_clock_s: float | None = None, researcher: str = "heuristic",
        max_concurrent: int = 2, data_dir: str | None = None, evaluator: str = "auto", seed: int = 0,
        run_name: str | None = None, progress: bool = True, resume: bool = False, **search_kw) -> dict:
    """A trex-ray search on the task; returns (and writes) its ftbench record. `resume=True` continues the
    run `run_name` under `runs` (after an interruption, or with a larger budget)."""
    import trex_ray

    spec = get_spec(task)
    if resume and not run_name:
        from trex_ray.errors import ConfigError

        raise ConfigError("run_name", "resume needs the name of the run to continue", "give --run-name <folder under runs>")
    t = prepare(task, os.path.join(runs, "data", f"{task}-{profile}"), profile=profile, data_dir=data_dir)
    budget = trex_ray.Budget(trials=budget_trials, wall_clock_s=wall_clock_s)
    name = run_name or f"{task}-{profile}-{policy}-{time.strftime('%Y%m%d-%H%M%S')}"
    code = code_version()  # what the run starts on: a commit made while it runs is not what it measured
    res = trex_ray.search(t, model, budget, researcher=researcher, policy=policy, max_concurrent=max_concurrent,
                          storage=runs, run_name=name, seed=seed, evaluator=evaluator, progress=progress,
                          resume=resume, **search_kw)
    base, best = res.baseline.test_score, res.best.test_score
    record = {
        "task": spec.id, "title": spec.title, "metric": spec.metric, "profile": profile, "model": model,
        "policy": policy, "researcher": researcher, "budget_trials": budget_trials, "seed": seed,
        "base": base, "best": best, "best_node": res.best.id, "best_val": res.best.val_score,
        "relative_gain": relative_gain(base, best), "nodes": len(res.nodes) - 1,
        "best_direction": res.best.direction if res.best.id != 0 else None,
        "spent": res.spent, "stop_reason": res.stop_reason, "run_dir": res.run_dir,
        "machine": machine(), "code": code, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    end = code_version()
    if end != code:  # the checkout changed under the run: its later trials may have imported the new code
        record["code_at_end"] = end
    with open(os.path.join(res.run_dir, "ftbench.json"), "w") as f:
        json.dump(record, f, indent=1)
    return record


def relative_gain(base: float | None, best: float | None) -> float | None:
    """(best - base) / base, the paper's headline figure; None when the base scores 0 (undefined)."""
    if base is None or best is None or base <= 0:
        return None
    return (best - base) / base


def collect(runs: str) -> list[dict]:
    """Every ftbench record under `runs` (one level of run folders)."""
    out = []
    if not os.path.isdir(runs):
        return out
    for name in sorted(os.listdir(runs)):
        path = os.path.join(runs, name, "ftbench.json")
        if os.path.isfile(path):
            with open(path) as f:
                out.append(json.load(f))
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def machine() -> dict:
    """The host a run was measured on: CPU model, cores, and the GPU where torch sees one."""
    import platform
    import sys

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = None
    torch = sys.modules.get("torch")  # only if the run already loaded it: no import for this alone
    if torch is not None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu}


def code_version(where: str | None = None) -> str | None:
    """The commit the run or measurement ran on (`-dirty` with uncommitted changes to the code), for the
    record; None outside git. Changes under benchmarks/results/ (results a run writes, such as a re-measured
    baseline) do not count: they are not code. `where`: a folder in the repository (default: this file's)."""
    import subprocess

    here = where or os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=here).stdout.strip()
        if not head:
            return None
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                  ":(exclude,top)benchmarks/results"],
                                 capture_output=True, text=True, timeout=10, cwd=here).stdout.strip()
        return head + ("-dirty" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return None


def table_rows(runs: str, data_dir: str | None = None, profile: str | None = None) -> list[dict]:
    """One row per task: among a task's runs (of `profile`, if given) the one whose best node has the
    highest val score (never chosen on test), with the fields of the results table; a task without a run
    says whether its data is available. Every number comes from the run's ftbench.json (`run_dir`)."""
    best: dict[str, dict] = {}
    for r in collect(runs):
        if profile and r.get("profile") != profile:
            continue
        cur = best.get(r["task"])
        key = (-1.0 if r.get("best_val") is None else r["best_val"], r.get("run_dir", ""))
        if cur is None or key > (-1.0 if cur.get("best_val") is None else cur["best_val"], cur.get("run_dir", "")):
            best[r["task"]] = r
    rows = []
    for tid, spec in SPECS.items():
        row = {"task": tid, "metric": spec.metric_label, "paper_trex": PAPER_TREX.get(tid)}
        r = best.get(tid)
        if r is None:
            st = status(tid, data_dir)
            rows.append({**row, "status": "data not available" if st == "data not available" else "not run"})
            continue
        base, top = r.get("base"), r.get("best")
        spent = r.get("spent") or {}
        rows.append({**row, "status": "run", "base": base, "best": top,
                     "gain": None if base is None or top is None else top - base,
                     "relative_gain": r.get("relative_gain"), "best_direction": r.get("best_direction"),
                     "best_node": r.get("best_node"), "trials": r.get("nodes"),
                     "accelerator_s": spent.get("accelerator_s"), "wall_clock_s": spent.get("wall_clock_s"),
                     "profile": r.get("profile"), "model": r.get("model"), "seed": r.get("seed"),
                     "machine": r.get("machine"), "code": r.get("code"), "run_dir": r.get("run_dir")})
    return rows


def _machine_label(m: dict | None) -> str:
    if not m:
        return "-"
    return m["gpu"] if m.get("gpu") else f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"


def table(runs: str, data_dir: str | None = None, profile: str | None = None) -> str:
    """The Markdown results table (`table_rows`): per task the metric, base and best test scores, the gain
    (points and relative), the best node's direction, trials, accelerator seconds, wall time, machine,
    and the paper's TREX figure beside."""
    lines = ["| task | metric | base | best | gain | relative gain | best direction | trials | accel-s | wall min "
             "| model, profile | machine | paper (TREX) |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- | ---: |"]
    gains = []
    for row in table_rows(runs, data_dir, profile):
        paper = "-" if row["paper_trex"] is None else f"{row['paper_trex']:.1f}"
        if row["status"] != "run":
            lines.append(f"| {row['task']} | {row['metric']} | - | - | - | {row['status']} | - | - | - | - | - | - "
                         f"| {paper} |")
            continue
        gain = row["relative_gain"]
        if gain is not None:
            gains.append(gain)
        points = "-" if row["gain"] is None else f"{100 * row['gain']:+.1f}"
        acc = "-" if row["accelerator_s"] is None else f"{row['accelerator_s']:.0f}"
        wall = "-" if not row["wall_clock_s"] else f"{row['wall_clock_s'] / 60:.0f}"
        lines.append(f"| {row['task']} | {row['metric']} | {_pct(row['base'])} | {_pct(row['best'])} | {points} | "
                     f"{'-' if gain is None else f'{100 * gain:+.1f}%'} | {row['best_direction'] or '-'} | "
                     f"{row['trials'] if row['trials'] is not None else '-'} | {acc} | {wall} | "
                     f"{row['model']}, {row['profile']} | {_machine_label(row['machine'])} | {paper} |")
    if gains:
        lines.append(f"\nMean relative gain over {len(gains)} task(s): {100 * sum(gains) / len(gains):+.1f}%. "
                     "Scores are test-split percentages; base = the base model prompted with the task goal, best = "
                     "the search's best node (chosen on val), tested once; gain in points. The paper's column is "
                     "TREX's reported score with Qwen3-1.7B on the full splits: not comparable with a lite run.")
    return "\n".join(lines)


def status(task: str, data_dir: str | None = None) -> str:
    if available(task, data_dir):
        return "local"
    if task in HUB_TASKS:
        return "hub only"
    return "data not available"


__all__ = ["baseline", "run", "table", "table_rows", "collect", "relative_gain", "status", "machine", "DataNotAvailable"]
