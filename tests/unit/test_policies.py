"""Selection policies: MCTS with progressive widening and virtual loss; greedy, sequential, random."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from trex_ray.errors import ConfigError
from trex_ray.policies import POLICIES, GreedyPolicy, MCTSPolicy, RandomPolicy, SequentialPolicy, make_policy
from trex_ray.tree import OK

from .helpers import TreeBuilder, failed, ok


def test_pw_root_with_one_visit_allows_one_child():
    tb = TreeBuilder()
    assert tb.tree.root.visits == 1
    assert MCTSPolicy().select(tb.tree, random.Random(0)) == 0  # no child yet: expand the root


def test_pw_child_in_flight_allows_a_second_child():
    tb = TreeBuilder()
    tb.add(0)  # in flight: N = 1 visit + 1 virtual = 2 -> ceil(sqrt 2) = 2 children allowed
    assert math.ceil(2 ** 0.5) == 2
    assert MCTSPolicy().select(tb.tree, random.Random(0)) == 0


def test_pw_counts_trials_in_flight():
    tb = TreeBuilder()
    a = tb.child(0, 0.5, reward=0.5)
    tb.child(a, 0.5, reward=0.5)
    tb.child(a, 0.5, reward=0.5)
    # root: 4 visits, 1 child -> allowed ceil(sqrt 4) = 2 > 1: expand the root
    assert MCTSPolicy().select(tb.tree, random.Random(0)) == 0
    tb.add(0)  # 2 children now; by visits alone (4) the root is full ...
    assert tb.tree.root.visits == 4 and tb.tree.root.virtual == 1
    # ... but N counts the trial in flight: ceil(sqrt 5) = 3 > 2 children, so the root takes a third
    assert MCTSPolicy().select(tb.tree, random.Random(0)) == 0
    tb.add(0)  # N = 6 -> allowed 3 == 3 children: now it descends through the only finished child
    sel = MCTSPolicy().select(tb.tree, random.Random(0))
    assert sel != 0 and tb.tree.path(sel)[1].id == a


def test_pw_limit_reached_descends_into_the_finished_child():
    tb = TreeBuilder()
    a = tb.child(0, 0.5, reward=0.5)
    b = tb.add(0)  # running; root N = 2 visits + 1 virtual = 3 -> allowed 2 == 2 children
    assert tb.tree.root.visits + tb.tree.root.virtual == 3
    sel = MCTSPolicy().select(tb.tree, random.Random(0))
    assert sel == a and sel != b


def test_pw_limit_grows_with_visits():
    tb = TreeBuilder()
    kids = [tb.child(0, 0.3, reward=0.1) for _ in range(2)]
    # root visits 3 -> allowed ceil(sqrt 3) = 2 -> full: descend into a child
    assert MCTSPolicy().select(tb.tree, random.Random(0)) in kids
    for k in kids:  # two grandchildren each -> root visits 7 -> allowed ceil(sqrt 7) = 3 > 2 children
        tb.child(k, 0.3, reward=0.1)
        tb.child(k, 0.3, reward=0.1)
    assert tb.tree.root.visits == 7
    assert MCTSPolicy().select(tb.tree, random.Random(0)) == 0


def test_pw_constants_are_used():
    tb = TreeBuilder()
    tb.child(0, 0.3, reward=0.1)
    # visits 2: default allows ceil(sqrt 2) = 2 > 1 child; pw_c=0.5 allows ceil(0.707) = 1 -> descend
    assert MCTSPolicy().select(tb.tree, random.Random(0)) == 0
    assert MCTSPolicy(pw_c=0.5).select(tb.tree, random.Random(0)) == 1


def test_descends_into_best_uct_child():
    tb = TreeBuilder()
    good = tb.child(0, 0.9, reward=0.9)
    bad = tb.child(0, 0.1, reward=0.0)
    pol = MCTSPolicy(c=0.1)
    assert tb.tree.uct(tb.tree.nodes[good], 0.1) > tb.tree.uct(tb.tree.nodes[bad], 0.1)
    assert pol.select(tb.tree, random.Random(0)) == good
    # the other child wins when exploration dominates and the good branch is well visited
    for _ in range(6):
        tb.child(good, 0.9, reward=0.9)
    explore = MCTSPolicy(c=10.0, pw_c=0.5)  # root N = 9: 0.5 * 3 -> 2 children allowed, so it descends
    assert tb.tree.uct(tb.tree.nodes[bad], 10.0) > tb.tree.uct(tb.tree.nodes[good], 10.0)
    assert explore.select(tb.tree, random.Random(0)) == bad


def test_virtual_loss_spreads_concurrent_selections():
    tb = TreeBuilder()
    a = tb.child(0, 0.5, reward=0.5)
    b = tb.child(0, 0.5, reward=0.45)
    pol = MCTSPolicy(c=0.0)
    first = pol.select(tb.tree, random.Random(0))
    assert first == a  # higher value
    tb.add(a)  # a trial in flight under a acts as a visit with reward 0
    assert pol.select(tb.tree, random.Random(0)) == b


def test_failed_children_are_never_entered():
    tb = TreeBuilder()
    for _ in range(3):
        tb.finish(tb.add(0), failed())
    # root N = 4 -> allowed 2 < 3 kids, but no good child: the root itself is returned
    assert MCTSPolicy().select(tb.tree, random.Random(0)) == 0


def _random_tree(seed: int, n: int = 80) -> TreeBuilder:
    rng = random.Random(seed)
    tb = TreeBuilder()
    running = []
    for _ in range(n):
        if rng.random() < 0.55 or not running:
            running.append(tb.add(rng.choice([x.id for x in tb.tree.expandable()])))
        else:
            nid = running.pop(rng.randrange(len(running)))
            r = rng.random()
            if r < 0.65:
                tb.finish(nid, ok(rng.random(), rng.random()))
            elif r < 0.9:
                tb.finish(nid, failed())
            else:
                tb.cancel(nid)
    return tb


@pytest.mark.parametrize("seed", range(8))
def test_mcts_never_returns_running_or_failed(seed):
    tb = _random_tree(seed)
    rng = random.Random(seed)
    statuses = {n.status for n in tb.tree.nodes.values()}
    assert {"running", "failed"} <= statuses  # the property is exercised
    for c in (0.0, 0.5, 1.4, 5.0):
        for _ in range(20):
            nid = MCTSPolicy(c=c).select(tb.tree, rng)
            assert tb.tree.nodes[nid].status == OK


def test_mcts_deterministic_given_seeded_rng_and_uses_rng_for_ties():
    tb = TreeBuilder()
    kids = [tb.child(0, 0.5, reward=0.5) for _ in range(2)]  # identical statistics: a UCT tie
    assert tb.tree.root.visits == 3  # allowed ceil(sqrt 3) = 2 children: the root is full, so it descends
    pol = MCTSPolicy()
    seq1 = [pol.select(tb.tree, r) for r in [random.Random(7)] * 30]
    seq2 = [pol.select(tb.tree, r) for r in [random.Random(7)] * 30]
    assert seq1 == seq2
    assert set(seq1) == set(kids)  # ties are broken by the rng, both ways


@pytest.mark.parametrize("seed", [11, 12])
def test_mcts_same_seed_same_choices_on_random_tree(seed):
    tb = _random_tree(seed, n=120)
    a = [MCTSPolicy().select(tb.tree, r) for r in [random.Random(seed)] * 25]
    b = [MCTSPolicy().select(tb.tree, r) for r in [random.Random(seed)] * 25]
    assert a == b


def test_greedy_picks_best_val_node():
    tb = TreeBuilder(root_score=0.3)
    a = tb.child(0, 0.5)
    b = tb.child(a, 0.7)
    tb.child(0, 0.6)
    tb.finish(tb.add(b), {"status": "failed", "score": 0.99})
    tb.add(b)
    assert GreedyPolicy().select(tb.tree, random.Random(0)) == b


def test_sequential_picks_most_recently_finished_good_node():
    tb = TreeBuilder()
    pol = SequentialPolicy()
    assert pol.select(tb.tree, random.Random(0)) == 0
    a = tb.add(0)
    b = tb.add(0)
    tb.finish(b, ok(0.1))  # b finishes before a
    assert pol.select(tb.tree, random.Random(0)) == b
    tb.finish(a, ok(0.05))
    assert pol.select(tb.tree, random.Random(0)) == a  # most recent, not best
    c = tb.add(a)
    tb.finish(c, failed())
    assert pol.select(tb.tree, random.Random(0)) == a  # failed nodes are skipped


def test_random_is_uniform_over_finished_good_nodes():
    tb = TreeBuilder()
    good = [0, tb.child(0, 0.2), tb.child(0, 0.1)]
    tb.finish(tb.add(0), failed())
    tb.add(0)
    rng = random.Random(123)
    counts = Counter(RandomPolicy().select(tb.tree, rng) for _ in range(3000))
    assert set(counts) == set(good)
    for g in good:
        assert 850 < counts[g] < 1150
    assert [RandomPolicy().select(tb.tree, random.Random(5)) for _ in range(3)] == \
           [RandomPolicy().select(tb.tree, random.Random(5)) for _ in range(3)]


def test_make_policy_known_and_unknown():
    assert set(POLICIES) == {"mcts", "greedy", "sequential", "random"}
    for name in POLICIES:
        assert make_policy(name).name == name
    with pytest.raises(ConfigError) as e:
        make_policy("bandit")
    assert e.value.field == "policy"
    assert "bandit" in str(e.value) and str(e.value).startswith("policy:")
    assert isinstance(e.value, ValueError)
