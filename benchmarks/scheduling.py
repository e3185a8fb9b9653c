"""Scheduling: how busy the search keeps a cluster's accelerators, and what the driver and the tree cost.

A simulated cluster (`ray.cluster_utils.Cluster`): a head node and 8 worker nodes with one `accel`
resource each (standing in for GPUs). The real search loop runs on it (real tree actor, journal, MCTS,
offline researcher, baseline on the tiny model), with one thing swapped through `search(executor=...)`:
each trial sleeps for a drawn duration on one `accel` instead of fine-tuning (reporting its progress in 20
steps, as training does), and returns a random score.

Printed per `max_concurrent` (1, 4, 8 by default):
- busy: accelerator-seconds the trials slept / (accelerators usable x wall time of the trial phase),
  where usable = min(max_concurrent, accelerators). 1.0 means the driver never left an accelerator idle.
- to last launch: the same, from the first trial's start to the last trial's start, i.e. without the
  drain at the end, where accelerators free up one by one with no trial left to give them (a cost of any
  scheduler with a fixed trial budget, largest when trials are few and long).
- overhead/trial: the idle accelerator time per trial, i.e. what the driver and tree add to each trial.
Then, on a tree of `--nodes` nodes (the journal of the largest run), the latency of each tree-actor call
the loop makes per trial (select, context, add_node, record, node, state, summaries), median and p95
over 200 calls.

    .venv/bin/python benchmarks/scheduling.py                   # 1000 trials at 1, 4 and 8 in flight
    .venv/bin/python benchmarks/scheduling.py --trials 200 --concurrency 8 --trial-seconds 0.5 1.5
    .venv/bin/python benchmarks/scheduling.py --researcher-delay 10 --trials 64 --concurrency 8 --trial-seconds 20 40

`--researcher-delay S`: the offline researcher, but every call (analyse, propose, diagnose, distil) takes
S seconds more, as an LLM researcher's would: the researcher thinks beside the loop, in threads.

Targets (issue 7): busy >= 0.90 at 8 in flight; every tree operation under 5 ms at 1000 nodes. (Issue 29:
busy >= 0.90 at 8 in flight with a researcher taking 10 s a call.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ACCELS = 8


def sleepy_trial(lo: float, hi: float):
    import ray

    from trex_ray.results import NodeResult

    @ray.remote(num_cpus=0, resources={"accel": 1}, max_retries=0)
    def trial(*, node_id: int, plan: dict, task: dict, baseline_score: float, reporter=None, **_) -> dict:
        rng = random.Random(node_id)
        seconds = rng.uniform(lo, hi)
        t0 = time.time()
        steps = 20  # it reports its progress as a training trial does: training starts, then each step
        if reporter is not None:
            reporter("train", rows=steps)
        for step in range(1, steps + 1):
            time.sleep(seconds / steps)
            if reporter is not None and step < steps:
                reporter("train", step=step, steps=steps, loss=1.0 / step)
        score = rng.random()
        return NodeResult(status="ok", score=score, metric=task["metric"], reward=max(0.0, score - baseline_score),
                          train_stats={"slept_from": t0, "slept_s": seconds}, seconds=round(seconds, 3),
                          accelerator_s=round(seconds, 3)).model_dump()

    return trial


class SlowResearcher:
    """The offline researcher, each call S seconds slower (as an LLM's would be)."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay, self.name = inner, delay, f"heuristic + {delay:g} s a call"

    def _slow(self, method: str, *args):
        time.sleep(self.delay)
        return getattr(self.inner, method)(*args)

    def analyze(self, *a):
        return self._slow("analyze", *a)

    def propose(self, *a):
        return self._slow("propose", *a)

    def diagnose(self, *a):
        return self._slow("diagnose", *a)

    def distill(self, *a):
        return self._slow("distill", *a)


def slow_researcher(delay: float) -> None:
    """Every search in this process gets the offline researcher `delay` seconds slower a call."""
    import trex_ray.researcher as researcher

    make = researcher.make_researcher
    researcher.make_researcher = lambda name, **kw: SlowResearcher(make(name, **kw), delay)


def run_one(address: str, task, trials: int, concurrency: int, lo: float, hi: float, storage: str) -> dict:
    import trex_ray

    res = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=trials),
                          max_concurrent=concurrency, storage=storage, run_name=f"mc{concurrency}", address=address,
                          evaluator="transformers", use_gpu=False, progress=False, executor=sleepy_trial(lo, hi))
    events = [json.loads(x) for x in open(os.path.join(res.run_dir, "journal.jsonl"))]
    done = [e["result"]["train_stats"] for e in events if e["type"] == "node_finished" and e["id"] != 0]
    start = min(d["slept_from"] for d in done)
    end = max(d["slept_from"] + d["slept_s"] for d in done)
    slept = sum(d["slept_s"] for d in done)
    usable = min(concurrency, ACCELS)
    wall = end - start
    return {"max_concurrent": concurrency, "trials": len(done), "wall_s": round(wall, 1),
            "busy": slept / (usable * wall), "overhead_per_trial_ms": 1000 * (usable * wall - slept) / len(done),
            "busy_to_last_launch": busy_until_last_launch(done, usable), "run_dir": res.run_dir}


def busy_until_last_launch(done: list[dict], usable: int) -> float:
    """Busy from the first trial's start to the last trial's start: what the driver does while it still
    has trials to launch. The drain after the last launch (accelerators freed one by one, nothing left to
    give them) is left out; it is the same for any scheduler that runs a fixed number of trials."""
    start = min(d["slept_from"] for d in done)
    last = max(d["slept_from"] for d in done)
    if last <= start:
        return 1.0
    inside = sum(max(0.0, min(d["slept_from"] + d["slept_s"], last) - d["slept_from"]) for d in done)
    return inside / (usable * (last - start))


def tree_latency(journal: str, calls: int = 200) -> dict[str, tuple[float, float]]:
    import ray

    from trex_ray.tree_actor import TreeActor

    tmp = tempfile.mkdtemp()
    copy = os.path.join(tmp, "journal.jsonl")
    with open(journal) as src, open(copy, "w") as dst:  # a copy: the timing appends events
        dst.write(src.read())
    tree = TreeActor.remote(copy, "mcts", 0)
    nodes = ray.get(tree.nodes.remote())
    n = len(nodes)
    some = [x["id"] for x in nodes if x["status"] == "ok"][: calls]
    ops = {
        "select": lambda i: tree.select.remote(),
        "context": lambda i: tree.context.remote(some[i % len(some)]),
        "node": lambda i: tree.node.remote(some[i % len(some)]),
        "state": lambda i: tree.state.remote(),
        "record": lambda i: tree.record.remote({"type": "diagnosis", "id": some[i % len(some)], "text": "timing"}),
        "add_node": lambda i: tree.add_node.remote(0, None, f"timing-{i}"),
        "summaries": lambda i: tree.summaries.remote(finished=True),
    }
    out = {"tree nodes": (n, n)}
    for name, call in ops.items():
        ray.get(call(0))  # warm
        ts = []
        for i in range(calls):
            t0 = time.perf_counter()
            ray.get(call(i))
            ts.append(1000 * (time.perf_counter() - t0))
        ts.sort()
        out[name] = (statistics.median(ts), ts[int(0.95 * len(ts)) - 1])
    ray.kill(tree)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--trial-seconds", type=float, nargs=2, default=[0.5, 1.5], metavar=("LO", "HI"))
    ap.add_argument("--researcher-delay", type=float, default=0.0, metavar="S",
                    help="seconds every researcher call takes (default 0: the offline researcher as it is)")
    args = ap.parse_args()
    if args.researcher_delay:
        slow_researcher(args.researcher_delay)

    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4})
    for _ in range(ACCELS):
        cluster.add_node(num_cpus=1, resources={"accel": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)

    from pathlib import Path

    import trex_ray
    from tests.conftest import majority_rows, write_jsonl

    work = Path(tempfile.mkdtemp(prefix="trex-sched-"))
    paths = {s: write_jsonl(work / "data" / f"{s}.jsonl", majority_rows(n, i))
             for i, (s, n) in enumerate([("train", 64), ("val", 16), ("test", 16)])}
    task = trex_ray.Task.from_jsonl(name="sched", input_field="question", output_field="answer", metric="accuracy",
                                    labels=["yes", "no"], goal="Answer yes or no.", **paths)
    lo, hi = args.trial_seconds
    print(f"simulated cluster: {ACCELS} nodes x 1 accel; {args.trials} trials of U({lo}, {hi}) s each"
          + (f"; researcher calls take {args.researcher_delay:g} s" if args.researcher_delay else ""))
    print(f"{'in flight':>9}  {'trials':>6}  {'wall s':>7}  {'busy':>6}  {'to last launch':>14}  {'overhead/trial':>15}")
    rows = []
    for k in args.concurrency:
        r = run_one(cluster.address, task, args.trials, k, lo, hi, str(work / "runs"))
        rows.append(r)
        print(f"{k:>9}  {r['trials']:>6}  {r['wall_s']:>7}  {r['busy']:>6.3f}  {r['busy_to_last_launch']:>14.3f}  "
              f"{r['overhead_per_trial_ms']:>12.1f} ms",
              flush=True)
    biggest = max(rows, key=lambda r: r["trials"])
    lat = tree_latency(os.path.join(biggest["run_dir"], "journal.jsonl"))
    print(f"\ntree-actor calls on a tree of {lat.pop('tree nodes')[0]} nodes (ms, median / p95):")
    for name, (med, p95) in lat.items():
        print(f"  {name:<9} {med:7.2f} / {p95:7.2f}")
    at8 = [r for r in rows if r["max_concurrent"] == ACCELS]
    if at8:
        print(f"\nbusy at {ACCELS} in flight: {at8[0]['busy']:.3f} (target >= 0.90; "
              f"{at8[0]['busy_to_last_launch']:.3f} up to the last launch); slowest tree call p95: "
              f"{max(p for _, p in lat.values()):.2f} ms (target < 5 ms)")
    ray.shutdown()
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
