"""Tree: state changes only through events; statistics, virtual loss, best(), trials(), replay, UCT."""

from __future__ import annotations

import math
import random

import pytest

from trex_ray.tree import CANCELLED, FAILED, OK, RUNNING, Tree

from .helpers import TreeBuilder, failed, ok, stats


def test_root_only_tree():
    tb = TreeBuilder(root_score=0.25)
    root = tb.tree.root
    assert root.status == OK and root.depth == 0 and root.parent_id is None
    assert (root.visits, root.value, root.virtual) == (1, 0.0, 0)
    assert root.direction == "baseline"
    assert tb.tree.trials() == 0
    assert tb.tree.best() is root
    assert tb.tree.next_id() == 1


def test_node_added_links_and_depth(tb):
    a = tb.add(0)
    b = tb.add(a)
    t = tb.tree
    assert t.nodes[a].depth == 1 and t.nodes[b].depth == 2
    assert t.root.children == [a] and t.nodes[a].children == [b]
    assert [n.id for n in t.ancestors(b)] == [0, a]
    assert [n.id for n in t.path(b)] == [0, a, b]
    assert t.nodes[b].status == RUNNING
    assert {n.id for n in t.running()} == {a, b}


def test_duplicate_node_id_raises(tb):
    tb.add(0)
    with pytest.raises(ValueError):
        tb.tree.apply({"type": "node_added", "id": 1, "parent_id": 0})


def test_backprop_along_path_only(tb):
    a = tb.child(0, 0.4, reward=0.5)
    b = tb.child(a, 0.6, reward=0.25)
    c = tb.child(0, 0.3, reward=0.125)  # a sibling branch
    t = tb.tree
    # visits/value count finished trials in the subtree, the node itself included
    assert (t.nodes[b].visits, t.nodes[b].value) == (1, 0.25)
    assert (t.nodes[a].visits, t.nodes[a].value) == (2, 0.75)
    assert (t.nodes[c].visits, t.nodes[c].value) == (1, 0.125)
    assert (t.root.visits, t.root.value) == (4, 0.875)  # root's own baseline (reward 0) + 3 trials
    assert [n.id for n in t.finished()] == [0, a, b, c]
    assert [n.finish_order for n in t.finished()] == [0, 1, 2, 3]


def test_failed_node_backprops_zero_reward(tb):
    a = tb.add(0)
    tb.finish(a, failed())  # carries reward 0.3, which must be ignored for a failed trial
    n = tb.tree.nodes[a]
    assert n.status == FAILED and n.reward == 0.0 and n.score is None
    assert (n.visits, n.value) == (1, 0.0)
    assert (tb.tree.root.visits, tb.tree.root.value) == (2, 0.0)
    assert tb.tree.expandable() == [tb.tree.root]


def test_virtual_loss_on_ancestors_while_running_then_released_on_finish(tb):
    a = tb.child(0, 0.5, reward=0.5)
    b = tb.add(a)
    t = tb.tree
    assert (t.root.virtual, t.nodes[a].virtual, t.nodes[b].virtual) == (1, 1, 0)
    c = tb.add(a)
    assert (t.root.virtual, t.nodes[a].virtual) == (2, 2)
    tb.finish(b, ok(0.7, 1.0))
    assert (t.root.virtual, t.nodes[a].virtual) == (1, 1)
    tb.finish(c, ok(0.1, 0.0))
    assert all(n.virtual == 0 for n in t.nodes.values())


def test_virtual_loss_released_on_cancel_and_restored_on_relaunch(tb):
    a = tb.add(0)
    assert tb.tree.root.virtual == 1
    tb.cancel(a)
    assert tb.tree.nodes[a].status == CANCELLED and tb.tree.root.virtual == 0
    tb.cancel(a)  # cancelling twice does not release twice
    assert tb.tree.root.virtual == 0
    tb.relaunch(a)
    assert tb.tree.nodes[a].status == RUNNING and tb.tree.root.virtual == 1
    tb.relaunch(a)  # relaunching a running node changes nothing
    assert tb.tree.root.virtual == 1
    tb.finish(a, ok(0.3, 0.2))
    assert tb.tree.root.virtual == 0 and tb.tree.root.visits == 2


def test_relaunch_of_finished_node_is_rejected(tb):
    a = tb.child(0, 0.3)
    with pytest.raises(AssertionError):
        tb.relaunch(a)


@pytest.mark.parametrize("how", ["finished", "failed", "cancelled"])
def test_finishing_a_non_running_node_raises(tb, how):
    a = tb.add(0)
    if how == "finished":
        tb.finish(a, ok(0.3))
    elif how == "failed":
        tb.finish(a, failed())
    else:
        tb.cancel(a)
    before = stats(tb.tree)
    with pytest.raises(ValueError, match="not running"):
        tb.tree.apply({"type": "node_finished", "id": a, "result": ok(0.9, 1.0)})
    assert stats(tb.tree) == before  # nothing was half-applied


def test_best_highest_score_earliest_wins_ties_root_if_nothing_beats_it():
    tb = TreeBuilder(root_score=0.5)
    worse = tb.child(0, 0.4)
    tb.finish(tb.add(0), failed())
    tb.add(0)  # running
    assert tb.tree.best().id == 0  # nothing beat the root
    tie = tb.child(worse, 0.5)
    assert tb.tree.best().id == 0  # a tie with the root: the root (earliest) wins
    hi1 = tb.child(0, 0.8)
    hi2 = tb.child(tie, 0.8)
    assert hi1 < hi2 and tb.tree.best().id == hi1
    top = tb.child(hi2, 0.81)
    assert tb.tree.best().id == top


def test_since_best_counts_the_trials_finished_after_the_best_node():
    from trex_ray.budget import Budget, Spend

    tb = TreeBuilder(root_score=0.5)
    assert tb.tree.since_best() == 0
    tb.child(0, 0.4)
    tb.finish(tb.add(0), failed())
    running = tb.add(0)
    assert tb.tree.since_best() == 2  # nothing beat the root: every finished trial counts, a running one not
    hi = tb.child(0, 0.8)
    assert tb.tree.best().id == hi and tb.tree.since_best() == 0
    tb.child(hi, 0.8)  # a tie does not beat it
    tb.finish(running, ok(0.7))  # launched before the best, finished after it: it counts
    assert tb.tree.since_best() == 2
    budget = Budget(trials=20, patience_trials=3)
    assert Spend(trials=5).exhausted(budget, since_best=2) is None
    tb.child(hi, 0.6)
    assert Spend(trials=6).exhausted(budget, since_best=tb.tree.since_best()) == "patience_trials"
    tb.child(hi, 0.9)
    assert tb.tree.since_best() == 0
    # two trials in flight at once: the lower id, finishing second with the same score, is the best node
    # (ties go to the earliest id) but no gain: the plateau counts from the first to reach the score
    first, second = tb.add(0), tb.add(0)
    tb.finish(second, ok(0.95))
    tb.finish(first, ok(0.95))
    assert tb.tree.best().id == first and tb.tree.since_best() == 1
    assert Spend(trials=6).exhausted(Budget(trials=20), since_best=50) is None  # no plateau asked for
    with pytest.raises(ValueError):
        Budget(trials=None, patience_trials=3)  # a plateau alone may never come: another limit is needed


def test_best_ignores_cancelled_and_failed_scores(tb):
    a = tb.add(0)
    tb.finish(a, {"status": "failed", "score": 0.99, "reward": 1.0})
    b = tb.add(0)
    tb.cancel(b)
    assert tb.tree.best().id == 0


def test_trials_excludes_root_and_cancelled(tb):
    a = tb.child(0, 0.3)
    tb.finish(tb.add(a), failed())
    c = tb.add(0)
    tb.add(0)  # running
    assert tb.tree.trials() == 4
    tb.cancel(c)
    assert tb.tree.trials() == 3
    tb.relaunch(c)
    assert tb.tree.trials() == 4


def test_signatures_exclude_cancelled_and_missing(tb):
    a = tb.add(0, sig="aaa")
    b = tb.add(0, sig="bbb")
    tb.add(0, sig="ccc")
    tb.finish(a, failed())
    tb.cancel(b)
    assert tb.tree.signatures() == {"aaa", "ccc"}  # root has no signature; cancelled not counted


def test_diagnosis_insights_and_test_events(tb):
    a = tb.child(0, 0.3)
    tb.emit({"type": "diagnosis", "id": a, "text": "val 0.300"})
    tb.emit({"type": "insights", "items": ["more epochs: helped"]})
    tb.emit({"type": "test_evaluated", "id": a, "result": {"score": 0.25}})
    tb.emit({"type": "run_finished", "stop_reason": "trials"})  # carries no tree state
    t = tb.tree
    assert t.nodes[a].diagnosis == "val 0.300"
    assert t.insights == ["more epochs: helped"]
    assert t.nodes[a].test == {"score": 0.25}
    tb.emit({"type": "insights", "items": ["x"]})
    assert t.insights == ["x"]  # replaced, not appended


def _random_events(seed: int, n: int = 60) -> TreeBuilder:
    rng = random.Random(seed)
    tb = TreeBuilder(root_score=0.2)
    running: list[int] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45 or not running:
            parents = [x.id for x in tb.tree.expandable()]
            running.append(tb.add(rng.choice(parents), direction=rng.choice(["more epochs", "prompt format"])))
        elif r < 0.8:
            nid = running.pop(rng.randrange(len(running)))
            s = round(rng.random(), 3)
            tb.finish(nid, ok(s, round(rng.random(), 3)) if rng.random() < 0.8 else failed())
        elif r < 0.9:
            nid = running.pop(rng.randrange(len(running)))
            tb.cancel(nid)
            if rng.random() < 0.5:
                tb.relaunch(nid)
                running.append(nid)
        else:
            tb.emit({"type": "diagnosis", "id": rng.choice(list(tb.tree.nodes)), "text": f"d{rng.random()}"})
    return tb


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replay_gives_identical_statistics(seed):
    tb = _random_events(seed)
    replayed = Tree.replay(tb.events)
    assert stats(replayed) == stats(tb.tree)
    assert replayed.signatures() == tb.tree.signatures()
    assert replayed.trials() == tb.tree.trials()
    assert replayed.best().id == tb.tree.best().id
    assert Tree.replay(list(tb.events)).nodes.keys() == tb.tree.nodes.keys()


@pytest.mark.parametrize("seed", [3, 4])
def test_invariants_visits_virtual_consistent(seed):
    tb = _random_events(seed, n=120)
    t = tb.tree

    def subtree(nid):
        out = [t.nodes[nid]]
        for c in t.nodes[nid].children:
            out += subtree(c)
        return out

    for n in t.nodes.values():
        sub = subtree(n.id)
        assert n.visits == sum(1 for m in sub if m.status in (OK, FAILED))
        assert n.value == pytest.approx(sum(m.reward for m in sub if m.status == OK))
        assert n.virtual == sum(1 for m in sub if m.status == RUNNING and m.id != n.id)


def test_uct_formula_and_virtual_loss(tb):
    a = tb.child(0, 0.5, reward=0.6)
    b = tb.child(0, 0.4, reward=0.2)
    tb.child(a, 0.6, reward=0.8)
    t = tb.tree
    # root: visits 4; a: visits 2 value 1.4; b: visits 1 value 0.2
    na, nb = t.nodes[a], t.nodes[b]
    assert t.uct(na, 1.0) == pytest.approx(1.4 / 2 + math.sqrt(math.log(4) / 2))
    assert t.uct(nb, 1.0) == pytest.approx(0.2 + math.sqrt(math.log(4) / 1))
    assert t.uct(nb, 0.0) == pytest.approx(0.2)
    # a trial in flight under b counts as a visit with reward 0 for b (and for the root)
    before = t.uct(nb, 0.0)
    tb.add(b)
    assert t.uct(nb, 0.0) == pytest.approx(0.2 / 2)
    assert t.uct(nb, 0.0) < before
    assert t.uct(na, 1.0) == pytest.approx(1.4 / 2 + math.sqrt(math.log(5) / 2))
    # a node with neither visits nor trials in flight is unexplored: infinite UCT
    c = tb.add(0)
    assert t.uct(t.nodes[c], 1.0) == math.inf


def test_summary_has_direction_and_no_result(tb):
    a = tb.child(0, 0.5, direction="prompt format")
    s = tb.tree.nodes[a].summary()
    assert s["direction"] == "prompt format" and "result" not in s and s["score"] == 0.5
