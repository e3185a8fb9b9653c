"""`trex-ray report`: one self-contained HTML file per run (or comparing several runs).

The page needs no network: its script and style are read from `report_assets/` and inlined, and the
run's data is embedded as JSON in a `<script type="application/json">` element. Every text that came
from an LLM or from data (rationales, diagnoses, bad cases, insights) reaches the page only through that
JSON and is put on screen with `textContent`, never parsed as HTML: a `<script>` in a rationale is shown,
not run. The JSON's `<`, `>` and `&` are written as `\\u003c`-style escapes so that no text can close
the data element.

What the page shows:
- the tree of each run as a graph: nodes coloured by val score, sized by accelerator time, failed nodes
  crossed out, the path from the root to the best node highlighted; a click opens a node's detail
  (direction and rationale, the plan with its differences from the parent's, per-op data stats, the loss
  curve, the in-training val curve with the kept checkpoint marked, val metrics, bad cases, the diagnosis,
  the error of a failed node);
- best val score so far over trials and over accelerator time, one line per run;
- the insights and the final test result against the baseline.
"""

from __future__ import annotations

import html
import json
import os
import re
from importlib import resources

from trex_ray.errors import ConfigError

REPORT_FILE = "report.html"
BAD_CASES_SHOWN = 10


def _flat(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict) and not d and prefix:
        out[prefix] = {}  # an op with default settings still shows
    elif isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        for i, v in enumerate(d):
            out.update(_flat(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = d
    return out


def plan_rows(plan: dict | None, parent: dict | None) -> list[list]:
    """[key, this node's value, the parent's value, changed] for every leaf of the plan but its prose."""
    def leaves(p):
        if not p:
            return {}
        p = {k: v for k, v in p.items() if k not in ("direction", "rationale")}
        if isinstance((p.get("recipe") or {}).get("ops"), list):  # ops by position and name: "recipe[1] dedup_exact"
            ops = p["recipe"]["ops"]
            p = {**p, "recipe": {f"[{i}] {o.get('op')}": o.get("args") or {} for i, o in enumerate(ops)}}
        return _flat(p)

    mine, theirs = leaves(plan), leaves(parent)
    keys = list(mine) + [k for k in theirs if k not in mine]
    return [[k, _show(mine.get(k)), _show(theirs.get(k)) if parent is not None else None,
             parent is not None and mine.get(k) != theirs.get(k)] for k in keys]


def _show(v) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v)


def _layout(tree) -> dict[int, tuple[float, int]]:
    """(x, depth) per node: leaves left to right in id order, each parent centred over its children.
    Iterative: a sequential search makes a chain as deep as its trials."""
    pos: dict[int, tuple[float, int]] = {}
    if 0 not in tree.nodes:
        return pos
    nxt = 0.0
    stack = [(0, False)]
    while stack:
        nid, expanded = stack.pop()
        kids = sorted(tree.nodes[nid].children)
        if not kids:
            pos[nid] = (nxt, tree.nodes[nid].depth)
            nxt += 1
        elif expanded:  # every child placed: centre over the first and last
            pos[nid] = ((pos[kids[0]][0] + pos[kids[-1]][0]) / 2, tree.nodes[nid].depth)
        else:
            stack.append((nid, True))
            stack.extend((k, False) for k in reversed(kids))
    return pos


def run_data(run_dir: str) -> dict:
    """Everything the page shows of one run, as plain JSON-able data."""
    from trex_ray import runs

    run_dir = os.path.abspath(run_dir)
    tree = runs.load_tree(run_dir)
    res = runs.load_result(run_dir)
    cfg = res.config()
    views = {n.id: n for n in res.nodes}
    best_path = {n.id for n in tree.path(res.best.id)}
    pos = _layout(tree)
    nodes = []
    for nid, node in sorted(tree.nodes.items()):
        v, r = views[nid], node.result or {}
        parent = tree.nodes.get(node.parent_id) if node.parent_id is not None else None
        ts = r.get("train_stats") or {}
        nodes.append({
            "id": nid, "parent_id": node.parent_id, "depth": node.depth, "x": pos.get(nid, (0, 0))[0],
            "status": node.status, "direction": v.direction, "rationale": v.rationale,
            "val": node.score, "test": (node.test or {}).get("score"), "reward": node.reward,
            "cost_s": r.get("accelerator_s") or 0.0, "seconds": r.get("seconds"), "visits": node.visits,
            "finish_order": node.finish_order, "best_path": nid in best_path, "best": nid == res.best.id,
            "plan": plan_rows(node.plan, parent.plan if parent is not None else None) if node.plan else [],
            "ops": (r.get("data_stats") or {}).get("ops", []), "rows": (r.get("data_stats") or {}).get("rows"),
            "cache_hit": (r.get("data_stats") or {}).get("cache_hit"),
            "loss_curve": ts.get("loss_curve", []),
            "val_curve": ts.get("val_curve") or [], "kept_step": ts.get("kept_step"),
            "train": {k: ts[k] for k in ("steps", "epochs", "examples", "tokens", "seconds", "final_loss", "device",
                                         "trainable_params", "warm_start", "oom_retry", "stopped", "kept_step")
                      if k in ts},
            "metrics": {k: val for k, val in (r.get("val") or {}).items() if not isinstance(val, (dict, list))},
            "bad_cases": (r.get("bad_cases") or [])[:BAD_CASES_SHOWN], "num_bad": len(r.get("bad_cases") or []),
            "diagnosis": node.diagnosis, "error": r.get("error"),
        })
    finished = sorted((n for n in tree.nodes.values() if n.finish_order is not None and n.id != 0),
                      key=lambda n: n.finish_order)
    best, acc, curve = tree.root.score, 0.0, [{"trial": 0, "acc_h": 0.0, "best": tree.root.score}]
    for i, n in enumerate(finished, 1):
        acc += (n.result or {}).get("accelerator_s") or 0.0
        if n.status == "ok" and n.score is not None and (best is None or n.score > best):
            best = n.score
        curve.append({"trial": i, "acc_h": round(acc / 3600, 5), "best": best})
    base_test, best_test = res.baseline.test_score, res.best.test_score
    gain = None if base_test is None or best_test is None else best_test - base_test
    return {
        "run": os.path.basename(run_dir), "run_dir": run_dir,
        "label": f"{cfg.get('policy', '?')}: {os.path.basename(run_dir)}", "policy": cfg.get("policy"),
        "task": cfg.get("name"), "base_model": cfg.get("base_model"), "metric": res.baseline.result.get("metric")
        if res.baseline.result else None,
        "nodes": nodes, "curve": curve, "insights": res.insights, "spent": res.spent, "stop_reason": res.stop_reason,
        "research": _research(runs.load_brief(run_dir) or {}),
        "final": {"best": res.best.id, "direction": res.best.direction, "val": res.best.val_score, "test": best_test,
                  "baseline_val": res.baseline.val_score, "baseline_test": base_test, "gain": gain,
                  "relative_gain": gain / abs(base_test) if gain is not None and base_test else None},
    }


def _research(brief: dict) -> dict:
    """What the brief records of the research: related datasets found, searches made, where it looked."""
    notes = brief.get("research") or {}
    said = []
    if notes.get("local_roots") is not None:
        said.append(f"{notes.get('local_found', 0)} local dataset(s) in {len(notes['local_roots'])} folder(s)")
    if notes.get("hub"):
        said.append(f"hub: {notes['hub']}")
    related = [{"name": c.get("name"), "origin": c.get("origin"), "license": c.get("license"),
                "score": c.get("score") or 0.0, "where": c.get("path") or (f"hf:{c['hf']}" if c.get("hf") else "")}
               for c in brief.get("related_data") or []]
    return {"related": related, "read": brief.get("read") or [], "notes": "; ".join(said)}


def _json_for_html(obj) -> str:
    """JSON that is inert inside a <script> element: nothing in it can end the element or open a comment."""
    text = json.dumps(_nan_free(obj), default=str, allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _nan_free(obj):
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_free(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_free(v) for v in obj]
    return obj


def _asset(name: str) -> str:
    return resources.files("trex_ray").joinpath("report_assets", name).read_text(encoding="utf-8")


def render(runs_data: list[dict]) -> str:
    """The page. Its Content-Security-Policy allows exactly the page's own script (by hash): even a text
    that escaped its escaping could not run as script or load anything."""
    import base64
    import hashlib

    title = "trex-ray report: " + ", ".join(r["run"] for r in runs_data)
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    values = {"csp_script": f"'sha256-{digest}'", "title": html.escape(title), "style": _asset("report.css"),
              "script": script, "data": _json_for_html({"runs": runs_data})}
    # one pass over the template: a value that happens to contain a placeholder is never read again
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], _asset("report.html"))


def write_report(run_dirs: list[str] | str, out: str | None = None) -> str:
    """Write the report of one run (into its folder by default) or of several runs (compared: one
    best-so-far line each); returns the file's path."""
    run_dirs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
    if not run_dirs:
        raise ConfigError("runs", "no run folder given", "give one or more run folders")
    data = []
    for d in run_dirs:
        if not os.path.exists(os.path.join(d, "journal.jsonl")):
            raise ConfigError("runs", f"{d} is not a run folder (no journal.jsonl)", "give a folder under your storage")
        data.append(run_data(d))
    out = out or os.path.join(run_dirs[0], REPORT_FILE)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(render(data))
    os.replace(tmp, out)
    return out
