"""What a running search shows, and publishes for watchers in other shells.

- In a terminal: a live panel (rich) of the trials in flight, each with its node, direction, stage
  (data / train / eval) and progress, the best val score against the baseline, the budget spent of each
  kind and the latest insight; the event lines scroll above it.
- Not in a terminal, or with `CI` set: the same events as plain lines, plus a line when a trial changes
  stage (and every 30 s of training), readable in logs.
- Either way `<run>/live.json` holds the same state, rewritten about once a second, for
  `trex-ray status <run>` (`status.from_journal` merges it while it is fresh).

Trials report their stage to the tree actor through a `TrialReporter`; the driver reads it with the tree
state it already polls, so watching costs the trials nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time

LIVE_FILE = "live.json"
PLAIN_TRAIN_EVERY_S = 30.0


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class TrialReporter:
    """How a trial (and its training worker) tells the tree actor its stage and progress: fire and forget,
    so a slow or restarting actor never holds a trial up. Picklable: it travels in the trial's arguments."""

    def __init__(self, tree, node_id: int) -> None:
        self.tree, self.node_id = tree, node_id

    def __call__(self, stage: str, **info) -> None:
        try:
            self.tree.progress.remote(self.node_id, {"stage": stage, **info})
        except Exception:  # noqa: BLE001 - progress is for watchers; the trial goes on regardless
            pass


def stage_text(info: dict | None) -> str:
    """'train 40/120 loss 1.234' and the like, for a trial's live report."""
    if not info:
        return "starting"
    stage = info.get("stage", "?")
    if stage == "train" and info.get("steps"):
        return f"train {info.get('step', 0)}/{info['steps']} loss {info.get('loss', float('nan')):.3f}"
    if stage == "train" and info.get("rows") is not None:
        return f"train ({info['rows']} rows)"
    if stage == "eval" and info.get("rows") is not None:
        return f"eval ({info['rows']} val rows)"
    return stage


def budget_view(budget, spent) -> dict:
    """Spent and limit of each kind of budget (limits None when unset)."""
    b = budget.model_dump() if budget is not None else {}
    return {
        "trials": [spent.trials, b.get("trials")],
        "wall_clock_s": [round(spent.wall_clock_s, 1), b.get("wall_clock_s")],
        "accelerator_h": [round(spent.accelerator_s / 3600, 4), b.get("accelerator_hours")],
        "llm_usd": [round(spent.llm_usd, 4), b.get("llm_usd")],
    }


def budget_text(view: dict) -> str:
    def one(name, fmt):
        used, limit = view[name]
        return fmt(used) + (f"/{fmt(limit)}" if limit is not None else "")

    return (f"trials {one('trials', str)} · wall {one('wall_clock_s', _fmt_s)} · "
            f"accel {one('accelerator_h', lambda v: f'{v:.3f}h')} · LLM {one('llm_usd', lambda v: f'${v:.2f}')}")


class Progress:
    def __init__(self, enabled: bool = True, budget=None, stream=None, run_dir: str | None = None,
                 rich: bool | None = None) -> None:
        self.enabled = enabled
        self.t0 = time.time()
        self.budget = budget
        self.stream = stream or sys.stdout
        self.run_dir = run_dir
        self.base_score = None
        self.best: dict | None = None
        self.directions: dict[int, tuple[int, str]] = {}  # node -> (parent, direction), for nodes in flight
        self.stages: dict[int, tuple[str, float]] = {}  # node -> (stage, last plain line), plain mode
        self.snapshot: dict = {}
        self._published = 0.0
        if rich is None:
            rich = enabled and getattr(self.stream, "isatty", lambda: False)() and not os.environ.get("CI")
        self.live = None
        if rich:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=self.stream), get_renderable=self._panel,
                             refresh_per_second=2, transient=False)
            self.live.start()

    # -- events ---------------------------------------------------------------------------------
    def line(self, msg: str) -> None:
        if not self.enabled:
            return
        text = f"[{_fmt_s(time.time() - self.t0)}] {msg}"
        if self.live is not None:
            from rich.text import Text

            self.live.console.print(Text(text))  # plain text: no markup is read from node text
        else:
            print(text, file=self.stream, flush=True)

    def baseline(self, root: dict) -> None:
        self.base_score = root["score"]
        test = (root.get("test") or {}).get("score")
        self.line(f"baseline: val {root['result']['metric']} = {root['score']:.3f}, test = {test:.3f}")

    def launched(self, nid: int, parent_id: int, plan: dict) -> None:
        t = plan["train"]
        self.directions[nid] = (parent_id, plan["direction"])
        self.line(f"node {nid} <- {parent_id}: {plan['direction']}  (lr {t['learning_rate']:.1e}, r {t['lora_r']}, "
                  f"{t['epochs']} ep, warm start {t['warm_start']})")

    def finished(self, node: dict, state: dict, spent) -> None:
        self.directions.pop(node["id"], None)
        self.stages.pop(node["id"], None)
        r = node["result"]
        if node["status"] == "ok":
            what = f"val {node['score']:.3f} ({node['score'] - self.base_score:+.3f} vs baseline)"
        else:
            what = f"FAILED in {r['error']['stage']}: {r['error']['message'][:120]}"
        limit = f"/{self.budget.trials}" if self.budget and self.budget.trials else ""
        self.line(f"node {node['id']} done: {what}; best node {state['best']}; "
                  f"trials {spent.trials}{limit}; {r['seconds']:.0f}s")
        if node.get("diagnosis"):
            self.line(f"  diagnosis: {node['diagnosis']}")

    def update(self, state: dict, spent, best: dict | None = None) -> None:
        """The latest tree state (with the trials' live reports): refresh the panel or print stage changes,
        and publish it for `trex-ray status` (at most once a second)."""
        now = time.time()
        live = state.get("live") or {}
        running = []
        for nid in state.get("running", []):
            parent, direction = self.directions.get(nid, (None, ""))
            info = live.get(nid)
            running.append({"id": nid, "parent_id": parent, "direction": direction,
                            "stage": (info or {}).get("stage"), "progress": stage_text(info),
                            "stage_s": round(now - info["stage_started"], 1) if info and "stage_started" in info else None,
                            **{k: info[k] for k in ("step", "steps", "loss", "rows") if info and k in info}})
        if best is not None:
            self.best = best
        self.snapshot = {"ts": now, "pid": os.getpid(), "running": running,
                         "budget": budget_view(self.budget, spent), "best": self.best,
                         "baseline": self.base_score, "insight": state["insights"][-1] if state.get("insights") else None}
        if self.live is not None:
            self.live.refresh()
        elif self.enabled:
            for r in running:
                last = self.stages.get(r["id"])
                if r["stage"] and (last is None or last[0] != r["stage"]
                                   or (r["stage"] == "train" and now - last[1] >= PLAIN_TRAIN_EVERY_S)):
                    self.line(f"node {r['id']}: {r['progress']}")
                    self.stages[r["id"]] = (r["stage"], now)
        if self.run_dir and now - self._published >= 1.0:
            self.publish()

    def publish(self) -> None:
        path = os.path.join(self.run_dir, LIVE_FILE)
        try:
            with open(path + ".tmp", "w") as f:
                json.dump(self.snapshot, f)
            os.replace(path + ".tmp", path)
            self._published = time.time()
        except OSError:
            pass  # watchers lose a refresh, the search loses nothing

    def done(self, result) -> None:
        self.close()
        b, base = result.best, result.baseline
        self.line(f"done ({result.stop_reason or 'budget'}): best node {b.id} [{b.direction}] "
                  f"val {b.val_score:.3f} test {b.test_score:.3f} vs baseline test {base.test_score:.3f}")
        for s in result.insights[:5]:
            self.line(f"  insight: {s}")
        self.line(f"run folder: {result.run_dir}")

    def close(self) -> None:
        """Stop the panel (idempotent) and mark the published state as ended."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.run_dir and os.path.exists(os.path.join(self.run_dir, LIVE_FILE)):
            try:
                os.remove(os.path.join(self.run_dir, LIVE_FILE))
            except OSError:
                pass

    # -- the panel ----------------------------------------------------------------------------
    def _panel(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        s = self.snapshot
        head = Text()
        best, base = s.get("best"), s.get("baseline")
        if best and best.get("score") is not None and base is not None and best.get("id"):
            head.append(f"best val {best['score']:.3f} ", style="bold green")
            head.append(f"(node {best['id']}, {best['score'] - base:+.3f} vs baseline {base:.3f})")
        elif base is not None:
            head.append(f"best: the baseline, val {base:.3f}")
        table = Table(box=None, pad_edge=False, expand=False, header_style="bold")
        table.add_column("node", no_wrap=True)
        table.add_column("parent", no_wrap=True)
        table.add_column("direction", no_wrap=True, overflow="ellipsis", max_width=36)
        table.add_column("stage", no_wrap=True, overflow="ellipsis", min_width=12)
        table.add_column("", no_wrap=True, width=12)
        table.add_column("in stage", no_wrap=True)
        for r in s.get("running", []):
            bar = ProgressBar(total=r["steps"], completed=r.get("step", 0), width=12) if r.get("steps") else Text("")
            table.add_row(str(r["id"]), str(r["parent_id"] if r["parent_id"] is not None else ""),
                          Text(r["direction"][:48]), Text(r["progress"]), bar,
                          _fmt_s(r["stage_s"]) if r.get("stage_s") is not None else "")
        parts = [head, table]
        if s.get("budget"):
            parts.append(Text(budget_text(s["budget"]), style="dim"))
        if s.get("insight"):
            parts.append(Text(f"insight: {s['insight'][:160]}", style="italic"))
        return Group(*parts)
