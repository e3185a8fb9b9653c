"""`python -m ftbench` (or `ftbench`):

    ftbench list [--counts]                              the tasks, their metric and whether their data is here
    ftbench describe --task hoc                          a task's spec: goal, fields, prompt, split policy, metric
    ftbench baseline --task sst2 --model smollm2-135m    the base model's val and test scores
    ftbench run --task sst2 --policy mcts --budget-trials 20   a trex-ray search on the task
    ftbench table runs/                                  the Markdown results table

Data: `--data-dir` or $FTBENCH_DATA (default ../shared/ftbench_data), `<dir>/<task>/` in the original
release's layout. `--profile lite` (the default) caps rows, lengths and training tokens so a task runs on 2
CPU cores in one to two hours (estimated from the tasks measured); `--profile full` is the benchmark as defined.
"""

from __future__ import annotations

import argparse
import json
import sys

from ftbench.prepare import PROFILES
from trex_ray.errors import ConfigError


def _common(p: argparse.ArgumentParser, run_like: bool = True) -> None:
    p.add_argument("--data-dir", default=None, help="root of the task data (default: $FTBENCH_DATA or ../shared/ftbench_data)")
    if run_like:
        p.add_argument("--task", required=True)
        p.add_argument("--model", default="smollm2-135m", help="base model: a packaged name, HF id or local path")
        p.add_argument("--profile", default="lite", choices=PROFILES)
        p.add_argument("--runs", default="runs", help="folder for prepared data and runs")
        p.add_argument("--evaluator", default="auto", help="auto | vllm | transformers")


def cmd_list(args) -> int:
    from ftbench.bench import status
    from ftbench.tasks import SPECS, DataNotAvailable, load

    rows = [("id", "task", "metric", "data", *(("train", "val", "test") if args.counts else ()))]
    for tid, spec in SPECS.items():
        st = status(tid, args.data_dir)
        counts = ()
        if args.counts:
            try:
                s = load(tid, args.data_dir)
                counts = (str(len(s.train)), str(len(s.val)), str(len(s.test)))
            except DataNotAvailable:
                counts = ("-", "-", "-")
        rows.append((tid, spec.title, spec.metric, st, *counts))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_describe(args) -> int:
    from dataclasses import asdict

    from ftbench.bench import status
    from ftbench.tasks import get_spec

    spec = asdict(get_spec(args.task))
    spec["data"] = status(args.task, args.data_dir)
    for key, value in spec.items():
        print(f"{key}: {value}")
    return 0


def cmd_baseline(args) -> int:
    from ftbench.bench import baseline

    out = baseline(args.task, args.model, runs=args.runs, profile=args.profile, data_dir=args.data_dir,
                   evaluator=args.evaluator)
    print(json.dumps(out, indent=1))
    return 0


def cmd_run(args) -> int:
    from ftbench.bench import run

    rec = run(args.task, args.model, runs=args.runs, profile=args.profile, policy=args.policy,
              budget_trials=args.budget_trials, wall_clock_s=args.wall_clock_s, researcher=args.researcher,
              max_concurrent=args.max_concurrent, data_dir=args.data_dir, evaluator=args.evaluator, seed=args.seed,
              run_name=args.run_name, resume=args.resume,
              **({"max_epochs": args.max_epochs} if args.max_epochs is not None else {}))
    gain = rec["relative_gain"]
    print(f"\n{rec['task']}: base {rec['base']:.3f} -> best {rec['best']:.3f} on test"
          + ("" if gain is None else f" ({100 * gain:+.1f}%)") + f", {rec['nodes']} nodes; {rec['run_dir']}")
    return 0


def cmd_table(args) -> int:
    from ftbench.bench import table, table_rows

    print(table(args.runs, args.data_dir, args.profile))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table_rows(args.runs, args.data_dir, args.profile), f, indent=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftbench", description="FT-Bench on trex-ray: the paper's 10 tasks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="the tasks and whether their data is available")
    p.add_argument("--counts", action="store_true", help="load every task and print its split sizes")
    _common(p, run_like=False)
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("describe", help="a task's spec")
    p.add_argument("--task", required=True)
    _common(p, run_like=False)
    p.set_defaults(fn=cmd_describe)
    p = sub.add_parser("baseline", help="score the base model on a task")
    _common(p)
    p.set_defaults(fn=cmd_baseline)
    p = sub.add_parser("run", help="run a trex-ray search on a task")
    _common(p)
    p.add_argument("--policy", default="mcts", help="mcts | greedy | sequential | random")
    p.add_argument("--budget-trials", type=int, default=20, help="fine-tuning trials (the paper: at most 20 rounds)")
    p.add_argument("--wall-clock-s", type=float, default=None)
    p.add_argument("--researcher", default="heuristic", help="heuristic | anthropic | openai | vllm | local | auto")
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--max-epochs", type=float, default=None, help="the most epochs any trial may train (a cost cap)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-name", default=None)
    p.add_argument("--resume", action="store_true", help="continue the run --run-name (same task and profile)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("table", help="the Markdown results table of a folder of runs")
    p.add_argument("runs", nargs="?", default="runs")
    p.add_argument("--profile", default=None, choices=PROFILES, help="only runs of this profile")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the table's rows as JSON (every field, "
                   "with each row's run folder, commit and machine)")
    _common(p, run_like=False)
    p.set_defaults(fn=cmd_table)
    args = parser.parse_args(argv)
    from ftbench.tasks import DataNotAvailable

    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"ftbench: error: {e}", file=sys.stderr)
        return 2
    except DataNotAvailable as e:
        print(f"ftbench: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("ftbench: interrupted; continue with the same command plus --run-name <run> --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
