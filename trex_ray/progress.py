"""Progress lines for a running search: one line per event, readable in a terminal and in CI logs."""

from __future__ import annotations

import sys
import time


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s"


class Progress:
    def __init__(self, enabled: bool = True, budget=None, stream=None) -> None:
        self.enabled = enabled
        self.t0 = time.time()
        self.budget = budget
        self.stream = stream or sys.stdout
        self.base_score = None

    def line(self, msg: str) -> None:
        if self.enabled:
            print(f"[{_fmt_s(time.time() - self.t0)}] {msg}", file=self.stream, flush=True)

    def baseline(self, root: dict) -> None:
        self.base_score = root["score"]
        test = (root.get("test") or {}).get("score")
        self.line(f"baseline: val {root['result']['metric']} = {root['score']:.3f}, test = {test:.3f}")

    def launched(self, nid: int, parent_id: int, plan: dict) -> None:
        t = plan["train"]
        self.line(f"node {nid} <- {parent_id}: {plan['direction']}  (lr {t['learning_rate']:.1e}, r {t['lora_r']}, "
                  f"{t['epochs']} ep, warm start {t['warm_start']})")

    def finished(self, node: dict, state: dict, spent) -> None:
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

    def done(self, result) -> None:
        b, base = result.best, result.baseline
        self.line(f"done ({result.stop_reason or 'budget'}): best node {b.id} [{b.direction}] "
                  f"val {b.val_score:.3f} test {b.test_score:.3f} vs baseline test {base.test_score:.3f}")
        for s in result.insights[:5]:
            self.line(f"  insight: {s}")
        self.line(f"run folder: {result.run_dir}")
