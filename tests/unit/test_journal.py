"""The journal and TreeCore (the tree actor's logic, driven without Ray): append, replay, torn writes,
and the bounded memory context a Researcher sees."""

from __future__ import annotations

import json
import os
import random

import pytest

from trex_ray import runs
from trex_ray.errors import ConfigError
from trex_ray.journal import Journal, read_events
from trex_ray.memory import build_context
from trex_ray.tree import Tree
from trex_ray.tree_actor import TreeCore

from .helpers import TreeBuilder, failed, ok, stats

DIAG = ("val 0.500 (+0.020 vs parent); 20 failures; of 12 sampled: 8 wrong value, 4 wrong format; "
        "train loss 2.00 -> 0.50; under-fitting")


def lines(path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")


def full_result(score: float, reward: float, rng: random.Random) -> dict:
    return ok(score, reward, train_stats={"loss_curve": [2.0 + rng.random(), 0.4], "steps": 10},
              bad_cases=[{"input": "q" * 30, "got": "x" * 30, "expected": "12:00"} for _ in range(20)],
              data_stats={"rows_in": 100, "rows_out": 90})


def drive(core: TreeCore, n: int, seed: int) -> None:
    """A small search without Ray: select, add, finish, diagnose."""
    rng = random.Random(seed)
    if not core.tree.nodes:
        core.add_node(None, None, None)
        core.record({"type": "node_finished", "id": 0, "result": ok(0.2)})
    for i in range(n):
        pid = core.select()
        nid = core.add_node(pid, {"direction": rng.choice(["more epochs", "prompt format"]), "i": i}, f"s{seed}-{i}")
        r = rng.random()
        if r < 0.75:
            core.record({"type": "node_finished", "id": nid, "result": full_result(rng.random(), rng.random(), rng)})
        elif r < 0.9:
            core.record({"type": "node_finished", "id": nid, "result": failed("eval", "out of memory " * 40)})
        core.record({"type": "diagnosis", "id": nid, "text": DIAG, "categories": {"wrong value": 20}})


@pytest.fixture
def jpath(tmp_path):
    return str(tmp_path / "run" / "journal.jsonl")


def test_add_node_and_record_append_to_journal(jpath):
    core = TreeCore(jpath, "mcts", seed=0)
    assert os.path.exists(jpath)
    assert core.add_node(None, None, None) == 0
    core.record({"type": "node_finished", "id": 0, "result": ok(0.3)})
    assert core.add_node(0, {"direction": "more epochs"}, "abc") == 1
    evs = list(read_events(jpath))
    assert [e["type"] for e in evs] == ["node_added", "node_finished", "node_added"]
    assert all(isinstance(e["ts"], float) for e in evs)
    assert evs[2]["parent_id"] == 0 and evs[2]["signature"] == "abc"
    assert lines(jpath)[-1] == ""  # every event ends its line
    assert core.tree.nodes[1].signature == "abc" and core.tree.root.score == 0.3
    st = core.state()
    assert st["num_nodes"] == 2 and st["trials"] == 1 and st["running"] == [1] and st["best"] == 0
    core.close()


def test_reopen_replays_the_same_tree(jpath):
    core = TreeCore(jpath, "mcts", seed=3)
    drive(core, 40, seed=3)
    before = stats(core.tree)
    nodes_before = core.nodes()
    core.close()
    again = TreeCore(jpath, "mcts", seed=3)
    assert stats(again.tree) == before
    assert again.nodes() == nodes_before
    assert again.tree.signatures() == core.tree.signatures()
    assert again.add_node(0, {"direction": "x"}, "new") == max(before) + 1
    again.close()
    assert stats(Tree.replay(read_events(jpath))) == stats(again.tree)


def test_rng_reproducible_and_fresh_after_resume(jpath, tmp_path):
    a = TreeCore(jpath, seed=5)
    b = TreeCore(str(tmp_path / "other" / "journal.jsonl"), seed=5)
    assert [a.rng.random() for _ in range(5)] == [b.rng.random() for _ in range(5)]
    a.add_node(None, None, None)
    a.close()
    resumed = TreeCore(jpath, seed=5)  # one node in the tree: a different, still reproducible stream
    again = TreeCore(jpath, seed=5)
    s1 = [resumed.rng.random() for _ in range(5)]
    assert s1 == [again.rng.random() for _ in range(5)]
    assert s1 != [TreeCore(str(tmp_path / "x" / "journal.jsonl"), seed=5).rng.random() for _ in range(5)]


def test_torn_last_line_ignored_on_read_and_repaired_before_append(jpath):
    core = TreeCore(jpath, seed=0)
    drive(core, 5, seed=0)
    good = stats(core.tree)
    core.close()
    intact = open(jpath, encoding="utf-8").read()
    with open(jpath, "a", encoding="utf-8") as f:
        f.write('{"type": "node_added", "id": 99, "parent_id": 0, "pl')  # a crash mid-write
    assert len(list(read_events(jpath))) == len([x for x in lines(jpath) if x]) - 1
    core = TreeCore(jpath, seed=0)
    assert stats(core.tree) == good and 99 not in core.tree.nodes
    nid = core.add_node(0, {"direction": "after crash"}, "z")
    core.close()
    raw = [x for x in lines(jpath) if x]
    for line in raw:
        json.loads(line)  # no line is torn any more: the fragment was cut, not glued to the new event
    after = open(jpath, encoding="utf-8").read()
    assert after.startswith(intact) and after.count("\n") == intact.count("\n") + 1
    assert list(read_events(jpath))[-1]["id"] == nid
    assert TreeCore(jpath).tree.nodes[nid].plan == {"direction": "after crash"}


def test_torn_only_line_is_cut(jpath):
    os.makedirs(os.path.dirname(jpath))
    with open(jpath, "w") as f:
        f.write('{"type": "node_ad')
    assert list(read_events(jpath)) == []
    j = Journal(jpath)
    j.append({"type": "node_added", "id": 0, "parent_id": None})
    j.close()
    assert open(jpath).read() == '{"type": "node_added", "id": 0, "parent_id": null}\n'


def test_corrupt_middle_line_is_an_error_not_silently_skipped(jpath):
    os.makedirs(os.path.dirname(jpath))
    with open(jpath, "w") as f:
        f.write('{"type": "node_added", "id": 0}\nnot json\n{"type": "insights", "items": []}\n')
    with pytest.raises(json.JSONDecodeError):
        list(read_events(jpath))


def test_missing_journal_reads_as_empty(tmp_path):
    assert list(read_events(str(tmp_path / "nope.jsonl"))) == []


# BUG (trex_ray/tree_actor.py:23-24 with trex_ray/journal.py:38-42): TreeCore replays the journal BEFORE
# Journal._repair runs. A last event that was written completely except its newline parses fine, so
# it is applied to the in-memory tree, and then _repair truncates it from the file. The tree now holds
# an event the journal lacks; new events (e.g. a child of that node) are journaled, and the next replay
# fails or differs. Fix: open the Journal (repair) first and replay after, or have _repair append the
# missing "\n" when the last line is valid JSON instead of cutting it.
def test_last_event_missing_only_its_newline_is_not_lost(jpath):
    core = TreeCore(jpath, seed=0)
    core.add_node(None, None, None)
    core.record({"type": "node_finished", "id": 0, "result": ok(0.2)})
    core.add_node(0, {"direction": "more epochs"}, "s1")
    core.close()
    with open(jpath, "rb+") as f:  # the crash lost only the final "\n" of the last event
        data = f.read()
        f.seek(0)
        f.truncate()
        f.write(data[:-1])
    core = TreeCore(jpath, seed=0)
    assert 1 in core.tree.nodes  # the complete event was read and applied
    core.record({"type": "node_finished", "id": 1, "result": ok(0.4, 0.3)})
    core.add_node(1, {"direction": "warm start from parent"}, "s2")
    live = stats(core.tree)
    core.close()
    assert stats(Tree.replay(read_events(jpath))) == live  # what the next session sees


# -- memory context ----------------------------------------------------------------------------
def test_context_fields(jpath):
    core = TreeCore(jpath, seed=1)
    drive(core, 30, seed=1)
    t = core.tree
    parent = next(n for n in sorted(t.nodes.values(), key=lambda n: -n.depth) if n.status == "ok")
    ctx = core.context(parent.id)
    assert set(ctx) >= {"parent", "ancestors", "siblings", "children", "key_nodes", "tried", "baseline_score",
                        "best_score", "insights", "num_nodes"}
    assert ctx["parent"]["id"] == parent.id and ctx["parent"]["plan"] == parent.plan
    assert ctx["parent"]["loss_first_last"] == [parent.result["train_stats"]["loss_curve"][0], 0.4]
    assert "loss_curve" not in ctx["parent"]["train_stats"]
    assert len(ctx["parent"]["bad_cases"]) == 12
    assert ctx["parent"]["categories"] == {"wrong value": 20}
    assert [a["id"] for a in ctx["ancestors"]] == [a.id for a in t.ancestors(parent.id)]
    assert "plan" not in ctx["ancestors"][0]  # ancestors are brief
    sib_ids = {c.id for c in t.children(parent.parent_id)} - {parent.id}
    assert {s["id"] for s in ctx["siblings"]} <= sib_ids and len(ctx["siblings"]) == min(8, len(sib_ids))
    assert [c["id"] for c in ctx["children"]] == [c.id for c in t.children(parent.id)][-8:]
    assert ctx["tried"] == sorted(t.signatures())
    assert ctx["baseline_score"] == 0.2 and ctx["best_score"] == t.best().score
    assert ctx["num_nodes"] == len(t.nodes)
    fails = [k for k in ctx["key_nodes"] if k["status"] == "failed"]
    assert all(len(k["error"]) <= 300 for k in fails)
    gains = [k for k in ctx["key_nodes"] if k["status"] == "ok"]
    top = sorted((n.score for n in t.nodes.values() if n.status == "ok" and n.parent_id is not None), reverse=True)
    assert [g["score"] for g in gains] == top[:3]
    assert len(ctx["key_nodes"]) <= 6
    json.dumps(ctx)  # plain data


def test_context_of_root(tb):
    ctx = build_context(tb.tree, 0)
    assert ctx["parent"]["plan"] is None and ctx["ancestors"] == [] and ctx["siblings"] == []
    assert ctx["parent"]["loss_first_last"] is None and ctx["key_nodes"] == []


def test_context_caps_siblings_and_children():
    tb = TreeBuilder()
    a = tb.child(0, 0.5)
    for _ in range(20):
        tb.child(0, 0.4)
        tb.child(a, 0.3)
    ctx = build_context(tb.tree, a)
    assert len(ctx["siblings"]) == 8 and len(ctx["children"]) == 8
    assert [c["id"] for c in ctx["children"]] == tb.tree.nodes[a].children[-8:]  # the most recent ones
    assert [c["id"] for c in ctx["siblings"]] == [c for c in tb.tree.root.children if c != a][-8:]


def _big_tree(n: int, shape: str, seed: int = 0) -> Tree:
    rng = random.Random(seed)
    tb = TreeBuilder()
    for i in range(1, n):
        pid = rng.randrange(i) if shape == "bushy" else i - 1
        if tb.tree.nodes[pid].status != "ok":
            pid = 0
        nid = tb.add(pid, sig=f"{rng.getrandbits(64):016x}")
        if rng.random() < 0.9 or shape == "chain":
            tb.finish(nid, full_result(rng.random(), rng.random(), rng))
        else:
            tb.finish(nid, failed("train", "CUDA out of memory " * 50))
        tb.emit({"type": "diagnosis", "id": nid, "text": DIAG})
    return tb.tree


def test_context_bounded_on_a_600_node_bushy_tree():
    t = _big_tree(600, "bushy")
    sizes = [len(json.dumps(build_context(t, nid))) for nid in range(0, 600, 37)]
    assert max(sizes) < 40_000, sizes


# BUG (trex_ray/memory.py:41): `ancestors` holds the parent's whole path from the root, so the context
# grows linearly with depth; the sequential policy builds exactly such chains (each node refines the last),
# and the module promises "The context stays bounded however large the tree grows". A 600-deep chain
# gives ~170k characters. Fix: keep the root and the last k ancestors (e.g. k=8), with a count of the
# elided ones. (`tried` also grows ~20 chars a node, but it is needed for de-duplication.)
def test_context_bounded_on_a_600_node_chain():
    t = _big_tree(600, "chain")
    assert len(json.dumps(build_context(t, 599))) < 40_000


# -- run folders ---------------------------------------------------------------------------------
def test_spent_so_far_sums_sessions(tmp_path):
    d = tmp_path / "r"
    j = Journal(str(d / "journal.jsonl"))
    for ev in [{"type": "session_started", "ts": 100.0}, {"type": "node_added", "id": 0, "ts": 130.0},
               {"type": "session_started", "ts": 1000.0}, {"type": "insights", "items": [], "ts": 1015.5}]:
        j.append(ev)
    j.close()
    assert runs.spent_so_far(str(d)).wall_clock_s == pytest.approx(45.5)


def test_load_tree_of_non_run_folder_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        runs.load_tree(str(tmp_path))
    assert e.value.field == "run"
