"""What reuse saves: the same search with and without warm starts from parent adapters, and with and without
the prepared-data (recipe) cache, side by side in one run.

Each setting runs the real search (offline heuristic researcher, MCTS, the same seed and trial budget).
`warm_start=False` trains every node from the base model (a plan that would continue its parent's adapter
trains from the base instead); `recipe_cache=False` prepares every trial's data anew. For each setting the
script finds the cost to reach a val score every setting reached (the lowest of their final best scores):
accelerator seconds (training + evaluation) and trial seconds (data preparation + training + evaluation,
wall time of the trials), summed over trials in the order they finished. Ratios are against the setting
with both kinds of reuse on.

Each setting's finished search is written at once to `<out>.cells/` and reused by a later call with the same
task, model, trials, seed and concurrency (`--fresh` runs it again), so a long measurement can be resumed.

    python benchmarks/reuse.py --quick       # checks the script works: tiny model, 2 trials, both on vs both off
    python benchmarks/reuse.py               # the demo task on SmolLM2, 8 trials, all four settings
    python benchmarks/reuse.py --settings no_reuse   # both on against both off only (half the time)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import code_version, machine_speed, same_speed, save_json  # noqa: E402
from search_policies import _cell, _machine_name, load_task  # noqa: E402

SETTINGS = {
    "warm start + cache": dict(warm_start=True, recipe_cache=True),
    "cache only": dict(warm_start=False, recipe_cache=True),
    "warm start only": dict(warm_start=True, recipe_cache=False),
    "no reuse": dict(warm_start=False, recipe_cache=False),
}


def costs(run_dir: str) -> list[dict]:
    """Per finished trial, in finish order: val score, accelerator s, trial s, data s, cache hit, warm start."""
    from trex_ray.runs import load_tree

    tree = load_tree(run_dir)
    out = []
    for n in sorted((n for n in tree.nodes.values() if n.id != 0 and n.finish_order is not None),
                    key=lambda n: n.finish_order):
        r = n.result or {}
        ds = r.get("data_stats") or {}
        out.append({"node": n.id, "val": n.score if n.status == "ok" else None,
                    "accelerator_s": r.get("accelerator_s") or 0.0, "trial_s": r.get("seconds") or 0.0,
                    "data_s": 0.0 if ds.get("cache_hit") else ds.get("seconds") or 0.0,
                    "cache_hit": bool(ds.get("cache_hit")), "warm_start": (n.plan or {}).get("train", {}).get("warm_start")})
    return out


def cost_to_reach(trials: list[dict], target: float, key: str) -> float | None:
    total = 0.0
    for t in trials:
        total += t[key]
        if t["val"] is not None and t["val"] >= target:
            return total
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, 2 trials (2 in flight), reuse on vs off")
    ap.add_argument("--task", default="demo", help="demo, or an FT-Bench task id (lite profile)")
    ap.add_argument("--model", default=None, help="default smollm2-135m (tiny-random with --quick)")
    ap.add_argument("--trials", type=int, default=None, help="default 8 (2 with --quick)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=None, help="trials in flight (default 1, which keeps the "
                    "order comparable; 2 with --quick)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--settings", nargs="+", default=None, choices=[_slug(k) for k in SETTINGS],
                    help="measure only these (default: all four; the first, both kinds of reuse on, is always "
                    "included: the ratios are against it)")
    ap.add_argument("--fresh", action="store_true", help="run every setting again, even one already in <out>.cells/ "
                    "(--quick always does)")
    args = ap.parse_args(argv)

    import trex_ray

    model = args.model or ("tiny-random" if args.quick else "smollm2-135m")
    trials = args.trials or (2 if args.quick else 8)
    concurrency = args.concurrency or (2 if args.quick else 1)
    chosen = args.settings or ([_slug("no reuse")] if args.quick else [_slug(k) for k in SETTINGS])
    settings = {k: v for i, (k, v) in enumerate(SETTINGS.items()) if i == 0 or _slug(k) in chosen}
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"reuse{'-quick' if args.quick else ''}.json")
    cell_dir = (out[:-len(".json")] if out.endswith(".json") else out) + ".cells"
    same = {"task": args.task, "model": model, "budget": trials, "seed": args.seed, "concurrency": concurrency}
    work = tempfile.mkdtemp(prefix="trex-reuse-")
    task = machine = None
    results = {}
    for name, kw in settings.items():
        cell, done = _cell(cell_dir, args.task, _slug(name), same)
        if done and "result" in done and not (args.fresh or args.quick):
            results[name] = done["result"]
            _print_setting(name, results[name], f"measured earlier: {cell}")
            continue
        task = task or load_task(args.task, work, args.quick)
        machine = machine or machine_speed()  # its seconds compare only with those of a machine as fast
        t0 = time.time()
        # a storage of its own per setting: no setting finds another's prepared data
        res = trex_ray.search(task, model, trex_ray.Budget(trials=trials), seed=args.seed, max_concurrent=concurrency,
                              storage=os.path.join(work, _slug(name)),
                              progress=False, evaluator="transformers", stop_at_perfect=False, **kw)  # equal trials
        c = costs(res.run_dir)
        results[name] = {"settings": kw, "trials": c, "wall_s": round(time.time() - t0, 1),
                         "best_val": max([t["val"] for t in c if t["val"] is not None], default=None),
                         "cache_hits": sum(t["cache_hit"] for t in c),
                         "warm_starts": sum(t["warm_start"] == "parent" for t in c), "machine": machine}
        save_json({**same, "code": code_version(), "result": results[name]}, cell)
        _print_setting(name, results[name], f"{results[name]['wall_s']:.0f} s wall")

    reached = [r["best_val"] for r in results.values() if r["best_val"] is not None]
    target = min(reached) if len(reached) == len(results) else None
    ref = next(iter(results))
    print(f"\ncost to reach val {target} (the lowest best score of all settings), and its ratio to '{ref}':")
    for r in results.values():
        r["to_target"] = {k: cost_to_reach(r["trials"], target, k) if target is not None else None
                          for k in ("accelerator_s", "trial_s", "data_s")}
    base = results[ref]["to_target"]
    for name, r in results.items():
        cells = []
        for k in ("accelerator_s", "trial_s", "data_s"):
            v, b = r["to_target"][k], base[k]
            ratio = f" (x{v / b:.2f})" if v is not None and b else ""
            cells.append(f"{k} {v:.1f}{ratio}" if v is not None else f"{k} -")
        r["ratios"] = {k: (r["to_target"][k] / base[k]) if r["to_target"][k] is not None and base[k] else None
                       for k in ("accelerator_s", "trial_s", "data_s")}
        print(f"  {name:20s} " + ", ".join(cells))
    first = results[ref].get("machine")
    if not all(same_speed(first, r.get("machine")) for r in results.values()):
        print("  note: the settings were not all measured on one machine (or one was not recorded): the ratios mix "
              "machine speeds; " + "; ".join(f"{n}: {_machine_name(r.get('machine'))}" for n, r in results.items()))
    save_json({"task": args.task, "model": model, "trials": trials, "seed": args.seed, "target_val": target,
               "results": results}, out)
    print(f"written: {out}")
    return 0


def _slug(setting: str) -> str:
    """A setting's name in files and on the command line: "warm start + cache" -> warm_start_and_cache."""
    return setting.replace(" ", "_").replace("+", "and")


def _print_setting(name: str, r: dict, note: str) -> None:
    c = r["trials"]
    print(f"{name:20s} best val {r['best_val']}, {r['cache_hits']} cache hits, {r['warm_starts']} warm starts, "
          f"{sum(t['accelerator_s'] for t in c):.0f} accel-s, {sum(t['trial_s'] for t in c):.0f} trial-s, "
          f"{sum(t['data_s'] for t in c):.1f} data-s ({note})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
