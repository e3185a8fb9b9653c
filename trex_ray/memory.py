"""Memory context for a proposal: what the Researcher sees about the tree when refining a parent.

The parent's trajectory (its ancestors), the parent's siblings and its own children so far, and
global key nodes (largest gains and notable failures), each compressed to a few fields, and the set of
plan signatures already tried. The context stays bounded however large the tree grows.
"""

from __future__ import annotations

from trex_ray.tree import Node, Tree


def loss_tail_drop(curve: list[float]) -> float | None:
    """How much the training loss still fell at the end: 1 - mean(last quarter) / mean(the quarter before).
    Near 0 when training had levelled off; 0.2 means the loss was still falling by a fifth. None for curves
    under 8 steps (too noisy to tell)."""
    if not curve or len(curve) < 8:
        return None
    q = len(curve) // 4
    before, last = sum(curve[-2 * q:-q]) / q, sum(curve[-q:]) / q
    return round(1 - last / before, 3) if before > 0 else None


def _brief(n: Node, full: bool = False) -> dict:
    res = n.result or {}
    out = {
        "id": n.id, "parent_id": n.parent_id, "direction": n.direction, "status": n.status,
        "score": n.score, "reward": round(n.reward, 4), "diagnosis": n.diagnosis,
    }
    if n.status == "failed" and res.get("error"):
        err = res["error"]
        out["error"] = f"{err.get('type', 'error')} in {err.get('stage', '?')}: {err.get('message', '')}"[:300]
        out["error_type"] = err.get("type")
        train = (n.plan or {}).get("train") or {}
        out["failed_train"] = {k: train[k] for k in FAILED_TRAIN if k in train}  # what the next plan must avoid
    if full:
        out["plan"] = n.plan
        out["train_stats"] = {k: v for k, v in res.get("train_stats", {}).items() if k != "loss_curve"}
        curve = res.get("train_stats", {}).get("loss_curve") or []
        out["loss_first_last"] = [curve[0], curve[-1]] if curve else None
        out["loss_tail_drop"] = loss_tail_drop(curve)
        out["data_stats"] = res.get("data_stats", {})
        out["bad_cases"] = res.get("bad_cases", [])[:12]
        out["categories"] = n.categories  # from the journalled diagnosis
        out["answers"] = (res.get("val") or {}).get("answers")  # how varied its val answers were
    return out


FAILED_TRAIN = ("learning_rate", "batch_size", "lora_r", "lora_alpha", "max_seq_len", "epochs")


def direction_record(tree: Tree, under: int | None = None) -> dict[str, dict]:
    """How each direction did where it was tried: per direction, the trials that beat their parent's val
    (`helped`), fell below it (`hurt`), and the mean change. `under`: only the trials in that node's
    subtree. A combined direction ("a + b") counts for both."""
    inside = None
    if under is not None:
        inside, todo = set(), [under]
        while todo:
            nid = todo.pop()
            inside.add(nid)
            todo.extend(tree.nodes[nid].children)
    rec: dict[str, dict] = {}
    for n in tree.nodes.values():
        if n.parent_id is None or n.status != "ok" or n.score is None:
            continue
        if inside is not None and (n.id not in inside or n.id == under):
            continue
        p = tree.nodes[n.parent_id]
        if p.score is None:
            continue
        delta = n.score - p.score
        for d in n.direction.split(" + "):
            r = rec.setdefault(d, {"helped": 0, "hurt": 0, "deltas": []})
            r["helped"] += delta > 0.005
            r["hurt"] += delta < -0.005
            r["deltas"].append(delta)
    return {d: {"helped": r["helped"], "hurt": r["hurt"], "trials": len(r["deltas"]),
                "mean": round(sum(r["deltas"]) / len(r["deltas"]), 4)} for d, r in rec.items()}


def build_context(tree: Tree, parent_id: int, max_siblings: int = 8, max_key: int = 6, max_ancestors: int = 8) -> dict:
    parent = tree.nodes[parent_id]
    finished = [n for n in tree.nodes.values() if n.status in ("ok", "failed") and n.parent_id is not None]
    gains = sorted((n for n in finished if n.status == "ok"), key=lambda n: -(n.score or 0))[:max_key // 2]
    failures = [n for n in finished if n.status == "failed"][-(max_key - len(gains)):] if finished else []
    anc = tree.ancestors(parent_id)
    siblings = [] if parent.parent_id is None else [c for c in tree.children(parent.parent_id) if c.id != parent_id]
    return {
        "parent": _brief(parent, full=True),
        "baseline_score": tree.root.score,
        # the root and the nearest ancestors; a deep chain is summarised by how much was left out
        "ancestors": [_brief(a) for a in (anc[:1] + anc[1:][-max_ancestors:] if len(anc) > max_ancestors + 1 else anc)],
        "ancestors_omitted": max(0, len(anc) - max_ancestors - 1),
        "siblings": [_brief(c) for c in siblings][-max_siblings:],
        "children": [_brief(c) for c in tree.children(parent_id)][-max_siblings:],
        "key_nodes": [_brief(n) for n in gains + failures],
        "best_score": tree.best().score,
        "tried": sorted(tree.signatures()),
        "insights": list(tree.insights),
        # the insights as numbers: how each direction did in the whole tree, and below this parent
        "directions": direction_record(tree),
        "directions_here": direction_record(tree, parent_id),
        # every direction a node of the tree took, running and failed ones too
        "directions_taken": sorted({d for n in tree.nodes.values() if n.plan for d in n.direction.split(" + ")}),
        "num_nodes": len(tree.nodes),
    }
