"""ftbench_qa: per-kind answer extraction and scoring (CS-Bench, EconLogicQA, OpenFinData, GTA rules),
gold answers fed back on the real data files, context validation."""

from __future__ import annotations

import csv
import json
import os

import pytest

from ftbench.metrics.qa import QA, extract_order
from trex_ray.metrics import METRICS, Scored, score

DATA = os.environ.get("FTBENCH_DATA") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                                                     "ftbench_data")


def run(preds, refs, contexts) -> Scored:
    return QA.compute(list(preds), list(refs), None, {}, None, list(contexts))


def one(pred, ref, ctx) -> tuple[float, dict]:
    s = run([pred], [ref], [ctx])
    return s.per_example[0], s.details[0]


CSB = {"kind": "choice", "letters": "ABCD", "style": "csbench"}
OC3 = {"kind": "choice", "letters": "ABC", "style": "opencompass"}
OC4 = {"kind": "choice", "letters": "ABCD", "style": "opencompass"}


# --------------------------------------------------------------------------------------------------
# choice, CS-Bench style: the first standalone option letter, case-insensitive

@pytest.mark.parametrize("pred, ref, want, got", [
    ("B", "B", 1.0, "B"),
    ("The answer is B because the tree is balanced.", "B", 1.0, "B"),
    ("Answer: (C)", "C", 1.0, "C"),
    ("c", "C", 1.0, "C"),                                    # lower-case letter
    ("(d) is correct", "D", 1.0, "D"),
    ("A is wrong; the answer is C.", "C", 0.0, "A"),         # several letters: the first wins
    ("It is a classic case: D", "D", 0.0, "A"),              # the article "a" is a standalone letter
    ("答案是B", "B", 0.0, None),                              # CJK is a word character: no boundary
    ("答案：B", "B", 1.0, "B"),
    ("None of these options", "A", 0.0, None),
    ("ABCD", "A", 0.0, None),                                # not standalone
])
def test_choice_csbench(pred, ref, want, got):
    s, d = one(pred, ref, CSB)
    assert (s, d["extracted"]) == (want, got)


def test_choice_csbench_letter_set_from_context():
    ctx = {"kind": "choice", "letters": "ABC", "style": "csbench"}
    assert one("D, or maybe B", "B", ctx) == (1.0, {"kind": "choice", "extracted": "B"})  # D is not an option
    assert one("D, or maybe B", "D", CSB)[0] == 1.0


# --------------------------------------------------------------------------------------------------
# choice, OpenCompass style: the last upper-case character anywhere in the output

@pytest.mark.parametrize("pred, ref, want, got", [
    ("B", "B", 1.0, "B"),
    ("The answer is B because it rises.", "B", 1.0, "B"),
    ("The answer is B because of GDP.", "B", 0.0, "P"),      # any capital counts, not only option letters
    ("Answer: (C)", "C", 1.0, "C"),
    ("c", "C", 0.0, None),                                   # lower case is not extracted
    ("A is wrong; the answer is C.", "C", 1.0, "C"),          # several letters: the last wins
    ("C. 文一科技的流通市值和总市值可能有误", "C", 1.0, "C"),   # OpenCompass's own example output
    ("答案是b", "B", 0.0, None),
])
def test_choice_opencompass(pred, ref, want, got):
    s, d = one(pred, ref, OC4)
    assert (s, d["extracted"]) == (want, got)


def test_choice_opencompass_five_options_and_stripped_gold():
    ctx = {"kind": "choice", "letters": "ABCDE", "style": "opencompass"}
    assert one("选E", " E\n", ctx)[0] == 1.0
    assert one("选e", "E", ctx)[0] == 0.0


# --------------------------------------------------------------------------------------------------
# assertion: the first word-bounded true/false, compared case-insensitively

@pytest.mark.parametrize("pred, ref, want, got", [
    ("True", "True", 1.0, "true"),
    ("false", "False", 1.0, "false"),
    ("The statement is TRUE because FIFO queues preserve order.", "True", 1.0, "true"),
    ("This is False.", "False", 1.0, "false"),
    ("It is not true; the statement is false.", "False", 0.0, "true"),  # the first one wins
    ("untrue", "False", 0.0, None),                                      # word-bounded
    ("Yes", "True", 0.0, None),
])
def test_assertion(pred, ref, want, got):
    s, d = one(pred, ref, {"kind": "assertion"})
    assert (s, d["extracted"]) == (want, got)


# --------------------------------------------------------------------------------------------------
# order: EconLogicQA permutation extraction, exact match of the whole sequence

@pytest.mark.parametrize("pred, want", [
    ("D, A, C, B", "D, A, C, B"),
    ("D -> A -> C -> B", "D, A, C, B"),
    ("D > A > C > B", "D, A, C, B"),
    ("DACB", "D, A, C, B"),
    ("d, a, c, b", "D, A, C, B"),                 # joined runs are case-insensitive
    ("d and a then c, b", "D, A, C, B"),           # "and"/"then" join (the A, D of "and" are not letters here)
    ("dacb", None),                                # a packed run must be upper case
    ("The correct order is: B, A, D, C. It starts with B.", "B, A, D, C"),
    ("I first thought A, B, C, D, but the answer is D, A, C, B.", "D, A, C, B"),  # after the last marker
    ("First D happens, then A, which leads to C and finally B.", "D, A, C, B"),   # standalone window
    ("Answer: D, A, C", None),                     # three letters only
    ("D, A, C, C", None),                          # not a permutation
    ("", None),
])
def test_extract_order(pred, want):
    got = extract_order(pred)
    assert (", ".join(got) if got else None) == want


@pytest.mark.parametrize("pred, ref, want", [
    ("D, A, C, B", "D, A, C, B", 1.0),
    ("Answer: D, A, C, B\nBecause D causes A.", "D, A, C, B", 1.0),
    ("D, A, B, C", "D, A, C, B", 0.0),              # one swap is wrong: the full sequence must match
    ("The order is A, B, C, D.", "D, A, C, B", 0.0),
    ("D A C B", "DACB", 1.0),                       # the gold's letters are read whatever the spacing
])
def test_order_scores(pred, ref, want):
    assert one(pred, ref, {"kind": "order"})[0] == want


def test_order_pairwise_detail():
    _, d = one("D, A, B, C", "D, A, C, B", {"kind": "order"})
    assert d["extracted"] == "D, A, B, C" and d["pairwise_accuracy"] == pytest.approx(5 / 6)
    _, d = one("no idea", "D, A, C, B", {"kind": "order"})
    assert d == {"kind": "order", "extracted": None, "pairwise_accuracy": 0.0}


def test_order_bad_gold():
    with pytest.raises(ValueError, match="permutation"):
        one("A, B, C, D", "A, B, C", {"kind": "order"})


# --------------------------------------------------------------------------------------------------
# keywords: every "、"-separated gold item is a substring of the output

def test_keywords():
    ref = "皇氏集团、乐通股份、奥维通信"
    full = "皇氏集团（002329.SZ）、乐通股份（002319.SZ）、奥维通信（002231.SZ）"
    assert one(full, ref, {"kind": "keywords"}) == (1.0, {"kind": "keywords", "missing": []})
    assert one("奥维通信和皇氏集团，还有乐通股份", ref, {"kind": "keywords"})[0] == 1.0  # order and separators free
    assert one("皇氏集团、乐通股份", ref, {"kind": "keywords"}) == (0.0, {"kind": "keywords", "missing": ["奥维通信"]})
    assert one("abc公司", "ABC公司", {"kind": "keywords"})[0] == 0.0                   # case-sensitive
    assert one("ABC公司", " ABC公司\n", {"kind": "keywords"})[0] == 1.0


# --------------------------------------------------------------------------------------------------
# whitelist: GTA AnsAcc matching

def wl(white, black=None):
    return {"kind": "whitelist", "whitelist": white, "blacklist": black}


@pytest.mark.parametrize("pred, ctx, want", [
    ("There are Five apples.", wl([["5", "five"]]), 1.0),      # any alias of a group, case-insensitive
    ("There are 5 apples.", wl([["5", "five"]]), 1.0),
    ("There are 15 apples.", wl([["5", "five"]]), 0.0),        # word-bounded
    ("a RED car", wl([["red"], ["car", "automobile"]]), 1.0),  # every group must match
    ("a red bike", wl([["red"], ["car", "automobile"]]), 0.0),
    ("The car is red.", wl([["red"]], [["not red", "isn't red"]]), 1.0),
    ("The car is NOT red.", wl([["red"]], [["not red", "isn't red"]]), 0.0),  # a blacklisted phrase
    ("It isn't red at all", wl([["red"]], [["blue"], ["isn't red"]]), 0.0),   # any blacklist group
    ("It is red", wl([["red"]], []), 1.0),                      # empty blacklist: none
    ("$3.5 in total", wl([["3.5"]]), 1.0),                      # regex characters are escaped
    ("3x5 in total", wl([["3.5"]]), 0.0),
    ("12 apples", wl([[12]]), 1.0),                              # numeric aliases
    ("", wl([["red"]]), 0.0),
])
def test_whitelist(pred, ctx, want):
    assert one(pred, "reference text", ctx)[0] == want


def test_whitelist_detail_and_errors():
    _, d = one("red bike", "x", wl([["red"], ["car"]], [["blue"]]))
    assert d == {"kind": "whitelist", "groups_matched": 1, "groups": 2, "blacklisted": False}
    with pytest.raises(ValueError, match="whitelist"):
        one("red", "x", {"kind": "whitelist", "whitelist": None})
    with pytest.raises(ValueError, match="list of lists"):
        one("red", "x", wl(["red"]))


# --------------------------------------------------------------------------------------------------
# the metric as a whole

def test_mixed_kinds_mean_and_details():
    s = run(["B", "true", "D, A, C, B", "甲、乙", "blue"],
            ["B", "False", "D, A, C, B", "甲、乙", "red"],
            [CSB, {"kind": "assertion"}, {"kind": "order"}, {"kind": "keywords"}, wl([["red"]])])
    assert s.per_example == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert s.score == pytest.approx(3 / 5)
    assert [d["kind"] for d in s.details] == ["choice", "assertion", "order", "keywords", "whitelist"]


def test_json_text_context():
    assert run(["C"], ["C"], [json.dumps(OC3)]).score == 1.0


@pytest.mark.parametrize("ctx, match", [
    ({"kind": "essay"}, "essay"),
    ({"letters": "ABCD"}, "unknown kind None"),
    ("not json", "JSON"),
    ([1, 2], "dict"),
    ({"kind": "choice", "letters": "ABCD", "style": "mmlu"}, "mmlu"),
    ({"kind": "choice", "letters": "ABCD"}, "style"),
    ({"kind": "choice", "letters": "ABC", "style": "csbench"}, "not one of the letters"),
])
def test_bad_context_raises(ctx, match):
    with pytest.raises(ValueError, match=match):
        run(["D"], ["D"], [ctx])


def test_unknown_kind_names_it():
    with pytest.raises(ValueError) as e:
        run(["x", "y"], ["x", "y"], [{"kind": "keywords"}, {"kind": "free_text"}])
    assert "'free_text'" in str(e.value) and "example 1" in str(e.value)


def test_bad_assertion_gold():
    with pytest.raises(ValueError, match="True or False"):
        run(["yes"], ["yes"], [{"kind": "assertion"}])


def test_through_trex_ray_score(monkeypatch):
    monkeypatch.setitem(METRICS, "ftbench_qa", QA)
    s = score("ftbench_qa", ["A", "b"], ["A", "B"], contexts=[OC3, OC3])
    assert (s.score, s.per_example) == (0.5, [1.0, 0.0])
    with pytest.raises(ValueError, match="context"):
        score("ftbench_qa", ["A"], ["A"])


# --------------------------------------------------------------------------------------------------
# gold answers fed back on the real data score 1.0

def _need(path):
    if not os.path.isfile(path):
        pytest.skip(f"{path} is not available")
    return path


def test_econlogicqa_gold_fed_back():
    with open(_need(os.path.join(DATA, "econlogicqa", "test.csv")), newline="", encoding="utf-8") as f:
        answers = [r["Answer"] for r in csv.DictReader(f)]
    assert len(answers) == 130
    s = run(answers, answers, [{"kind": "order"}] * len(answers))
    assert s.score == 1.0 and all(p == 1.0 for p in s.per_example)
    # as the training target writes it ("D, A, C, B"), and in chatty form
    targets = [", ".join(c for c in a if c in "ABCD") for a in answers]
    assert run(targets, answers, [{"kind": "order"}] * len(answers)).score == 1.0
    chatty = [f"The correct order is {t}. That is my answer." for t in targets]
    assert run(chatty, answers, [{"kind": "order"}] * len(answers)).score == 1.0
    # a rotated prediction is wrong everywhere
    rotated = [", ".join(t.split(", ")[1:] + t.split(", ")[:1]) for t in targets]
    assert run(rotated, answers, [{"kind": "order"}] * len(answers)).score == 0.0


@pytest.mark.parametrize("split", ["valid", "test"])
def test_csbench_gold_fed_back(split):
    with open(_need(os.path.join(DATA, "cs_bench", "Dataset", "CSBench-EN", f"{split}.json")), encoding="utf-8") as f:
        items = json.load(f)
    mc = [it for it in items if it["Format"] == "Multiple-choice"]
    tf = [it for it in items if it["Format"] == "Assertion"]
    assert mc and tf
    golds = [str(it["Answer"]) for it in mc]
    assert run(golds, golds, [CSB] * len(mc)).score == 1.0
    assert run([f"The answer is ({g})." for g in golds], golds, [CSB] * len(mc)).score == 1.0
    golds = [str(it["Answer"]) for it in tf]  # JSON booleans: "True" / "False"
    assert set(golds) == {"True", "False"}
    assert run(golds, golds, [{"kind": "assertion"}] * len(tf)).score == 1.0
    flipped = ["False" if g == "True" else "True" for g in golds]
    assert run(flipped, golds, [{"kind": "assertion"}] * len(tf)).score == 0.0
