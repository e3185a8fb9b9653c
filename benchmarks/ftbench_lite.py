"""FT-Bench's results table, measured: `ftbench run` on every task whose data is here, then `ftbench table`.

Each task runs as its own search (the offline researcher, MCTS, `--trials` trials with `--concurrency` in
flight, one seed), in a run folder under `--runs` named `<task>-<profile>-s<seed>`. A finished task's
record (`ftbench.json`, with `result.json` and the journal's summary beside it) is copied at once to
`<out>.cells/<run name>/`, so the measurement resumes where it stopped: a task with a cell is skipped, a task
whose run folder has a journal but no record continues that run (`ftbench run --resume`), the others start.
The table and its JSON rows (`<out>.md`, `<out>.json`) are rebuilt from the cells after every task, so each
number traces to a committed record naming its commit and machine.

    python benchmarks/ftbench_lite.py                               # every task with data, lite, 6 trials
    python benchmarks/ftbench_lite.py --tasks sst2 hoc --seed 1     # some tasks, a second seed
    python benchmarks/ftbench_lite.py --table                       # run nothing: rebuild the table
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def run_name(task: str, profile: str, seed: int) -> str:
    return f"{task}-{profile}-s{seed}"


def plan(tasks: list[str], runs: str, cells: str, profile: str, seed: int) -> list[tuple[str, str]]:
    """(task, what to do) in order: "done" (its cell exists), "copy" (its run finished but was not kept),
    "resume" (its run folder has a journal and no record), "start"."""
    out = []
    for task in tasks:
        name = run_name(task, profile, seed)
        if os.path.isfile(os.path.join(cells, name, "ftbench.json")):
            out.append((task, "done"))
        elif os.path.isfile(os.path.join(runs, name, "ftbench.json")):
            out.append((task, "copy"))
        elif os.path.isfile(os.path.join(runs, name, "journal.jsonl")):
            out.append((task, "resume"))
        else:
            out.append((task, "start"))
    return out


def keep(run_dir: str, cells: str) -> str:
    """Copy a finished run's record, result and config into its cell (no adapters: they stay in the run)."""
    dst = os.path.join(cells, os.path.basename(run_dir.rstrip("/")))
    os.makedirs(dst, exist_ok=True)
    for name in ("ftbench.json", "result.json", "config.yaml", "report.md"):
        src = os.path.join(run_dir, name)
        if os.path.isfile(src):
            shutil.copy2(src, os.path.join(dst, name))
    return dst


def write_table(cells: str, out: str, data_dir: str | None, profile: str) -> str:
    from ftbench.bench import table, table_rows

    text = table(cells, data_dir, profile)
    with open(out + ".md", "w") as f:
        f.write(text + "\n")
    with open(out + ".json", "w") as f:
        json.dump(table_rows(cells, data_dir, profile), f, indent=1)
    return text


def main(argv=None) -> int:
    from ftbench.tasks import SPECS, available

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=None, choices=list(SPECS), help="default: every task with data")
    ap.add_argument("--profile", default="lite")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="runs/ftbench", help="where the run folders go (adapters included)")
    ap.add_argument("--out", default=os.path.join(RESULTS, "ftbench-lite"),
                    help="<out>.md, <out>.json and <out>.cells/ (default benchmarks/results/ftbench-lite)")
    ap.add_argument("--data-dir", default=None, help="FT-Bench data (default $FTBENCH_DATA or ../shared/ftbench_data)")
    ap.add_argument("--table", action="store_true", help="run nothing: rebuild the table from the cells")
    args = ap.parse_args(argv)
    cells = args.out + ".cells"
    os.makedirs(cells, exist_ok=True)
    tasks = args.tasks or [t for t in SPECS if available(t, args.data_dir)]
    if not args.table:
        import ftbench

        todo = plan(tasks, args.runs, cells, args.profile, args.seed)
        print(f"{sum(a != 'done' for _, a in todo)} task(s) to run, {sum(a == 'done' for _, a in todo)} done: "
              + ", ".join(f"{t} ({a})" for t, a in todo), flush=True)
        for task, action in todo:
            if action == "done":
                continue
            if action == "copy":
                keep(os.path.join(args.runs, run_name(task, args.profile, args.seed)), cells)
                continue
            t0 = time.time()
            rec = ftbench.run(task, args.model, runs=args.runs, profile=args.profile, budget_trials=args.trials,
                              max_concurrent=args.concurrency, seed=args.seed, data_dir=args.data_dir,
                              run_name=run_name(task, args.profile, args.seed), resume=action == "resume")
            keep(rec["run_dir"], cells)
            print(f"{task}: base {rec['base']} -> best {rec['best']} on test, {rec['nodes']} trials, "
                  f"{time.time() - t0:.0f} s", flush=True)
            write_table(cells, args.out, args.data_dir, args.profile)
    print(write_table(cells, args.out, args.data_dir, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
