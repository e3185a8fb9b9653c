"""Metrics: exact_match normalisation, label extraction for accuracy, the normalised search reward."""

from __future__ import annotations

import pytest

from trex_ray.metrics import METRIC_BEST, METRICS, accuracy, exact_match, extract_label, normalize, normalized_reward, score_all


@pytest.mark.parametrize("pred, ref", [
    ("15:15", "15:15"),
    ("  15:15  ", "15:15"),            # outer whitespace
    ("Quarter  Past\tThree", "quarter past three"),  # case and internal whitespace
    ("15:15.", "15:15"),               # trailing period
    ("15:15\nThat is the answer.", "15:15"),  # first line only
    ("\n\n 15:15 \nmore", "15:15"),    # leading blank lines do not make the answer empty
    ("Paris.", "paris"),
    ("STRASSE", "straße"),             # case-folding, not just lower()
])
def test_exact_match_equal(pred, ref):
    assert exact_match(pred, ref) == 1.0


@pytest.mark.parametrize("pred, ref", [
    ("15:16", "15:15"),
    ("15:15 pm", "15:15"),
    ("The answer is:\n15:15", "15:15"),  # only the first line counts
    ("15:15..", "15:15"),                # only one trailing period is dropped
    ("", "15:15"),
    ("1515", "15:15"),
])
def test_exact_match_different(pred, ref):
    assert exact_match(pred, ref) == 0.0


def test_normalize():
    assert normalize("  A  b\tC.  ") == "a b c"
    assert normalize("   ") == ""
    assert normalize(12) == "12"
    assert normalize("x\ny") == "x"


# BUG (minor, trex_ray/metrics.py:20): the trailing period is dropped AFTER whitespace is collapsed, so a
# period separated by a space leaves a trailing space: normalize("15:15 .") == "15:15 ", which does not
# match "15:15". Fix: `text = text[:-1].rstrip() if text.endswith(".") else text`.
def test_trailing_period_after_space_is_ignored():
    assert exact_match("15:15 .", "15:15") == 1.0


def test_extract_label_word_bounded_and_longest_first():
    labels = ["yes", "no", "not sure"]
    assert extract_label("Yes, definitely", labels) == "yes"
    assert extract_label("I am NOT  sure", labels) == "not sure"  # longest label wins over "no"
    assert extract_label("nobody knows", labels) is None            # "no" is not a word here
    assert extract_label("eyes open", labels) is None               # "yes" inside a word
    assert extract_label("answer: no.", labels) == "no"
    assert extract_label("", labels) is None
    assert extract_label("pos-itive", ["positive"]) is None
    assert extract_label("c++ is fine", ["c", "c++"]) == "c++"      # special characters are escaped


def test_accuracy():
    labels = ["Positive", "Negative"]
    assert accuracy("The sentiment is positive.", "Positive", labels) == 1.0
    assert accuracy("NEGATIVE", "negative", labels) == 1.0  # compared after normalisation
    assert accuracy("The sentiment is positive.", "Negative", labels) == 0.0
    assert accuracy("no idea", "Positive", labels) == 0.0
    assert accuracy("positively great", "Positive", labels) == 0.0  # word-bounded
    # with no label set, the reference itself is looked for
    assert accuracy("it is spam for sure", "spam") == 1.0
    assert accuracy("it is ham", "spam") == 0.0


def test_score_all_accuracy_uses_distinct_refs_as_labels():
    preds = ["label a", "b", "the answer is b", "nothing"]
    refs = ["a", "b", "a", "b"]
    assert score_all("accuracy", preds, refs) == [1.0, 1.0, 0.0, 0.0]
    assert score_all("exact_match", ["A.", "b "], ["a", "c"]) == [1.0, 0.0]
    assert set(METRICS) == set(METRIC_BEST)


@pytest.mark.parametrize("score, baseline, best, expected", [
    (0.5, 0.0, 1.0, 0.5),
    (0.6, 0.2, 1.0, 0.5),
    (0.2, 0.2, 1.0, 0.0),
    (0.1, 0.2, 1.0, 0.0),   # worse than baseline: clamped at 0
    (1.0, 0.2, 1.0, 1.0),
    (1.5, 0.2, 1.0, 1.0),   # clamped at 1
    (0.5, 0.0, 0.5, 1.0),
])
def test_normalized_reward(score, baseline, best, expected):
    assert normalized_reward(score, baseline, best) == pytest.approx(expected)


def test_normalized_reward_degenerate_baseline_equals_best():
    assert normalized_reward(1.0, 1.0, 1.0) == 1.0   # kept the perfect score
    assert normalized_reward(0.9, 1.0, 1.0) == 0.0   # lost it
    assert normalized_reward(0.7, 0.8, 0.5) == 0.0   # baseline above "best"
    assert normalized_reward(0.8, 0.8, 0.5) == 1.0


def test_normalized_reward_always_in_unit_interval():
    import random

    rng = random.Random(0)
    for _ in range(2000):
        s, b, m = rng.uniform(-1, 2), rng.uniform(-1, 2), rng.uniform(-1, 2)
        assert 0.0 <= normalized_reward(s, b, m) <= 1.0


# --------------------------------------------------------------------------------------------------
# corpus API: score() -> Scored

from trex_ray.metrics import JUDGE_SYSTEM, Scored, extract_number, make_llm_judge, parse_grade, score  # noqa: E402


def test_accuracy_corpus_score_and_details():
    s = score("accuracy", ["it is positive", "negative!", "no idea"], ["positive", "positive", "negative"],
              ["positive", "negative"])
    assert isinstance(s, Scored)
    assert s.per_example == [1.0, 0.0, 0.0]
    assert s.score == pytest.approx(1 / 3)
    assert s.details == [{"label": "positive"}, {"label": "negative"}, {"label": None}]


def test_f1_macro_and_micro_differ_on_imbalanced_classes():
    labels = ["a", "b"]
    preds = ["a", "a", "a", "b", "b"]
    refs = ["a", "a", "a", "a", "b"]
    # class a: tp 3, fp 0, fn 1 -> F1 6/7; class b: tp 1, fp 1, fn 0 -> F1 2/3
    macro = score("f1_macro", preds, refs, labels)
    micro = score("f1_micro", preds, refs, labels)
    assert macro.score == pytest.approx((6 / 7 + 2 / 3) / 2)   # 16/21
    assert micro.score == pytest.approx(4 / 5)                 # pooled: tp 4, fp 1, fn 1
    assert macro.per_example == micro.per_example == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert macro.details[3] == {"label": "b"}


def test_f1_none_prediction_is_wrong_but_not_a_macro_class():
    labels = ["a", "b"]
    preds = ["a", "a", "no idea", "a"]
    refs = ["a", "a", "a", "b"]
    # a: tp 2, fp 1, fn 1 -> 2/3; b: tp 0, fn 1 -> 0; "none" is not averaged (it would give 2/9)
    assert score("f1_macro", preds, refs, labels).score == pytest.approx(1 / 3)
    # micro pools tp 2, fp 2 (one wrong "a", one "none"), fn 2 -> 1/2, i.e. the accuracy
    assert score("f1_micro", preds, refs, labels).score == pytest.approx(1 / 2)
    assert score("f1_micro", preds, refs, labels).details[2] == {"label": None}


def test_f1_macro_counts_a_predicted_class_absent_from_the_references():
    # a: tp 1, fn 1 -> 2/3; c (only predicted): fp 1 -> 0
    assert score("f1_macro", ["a", "c"], ["a", "a"], ["a", "b", "c"]).score == pytest.approx(1 / 3)
    # with no label set the labels are the distinct references: "c" is not found, so no c class
    assert score("f1_macro", ["a", "c"], ["a", "a"]).score == pytest.approx(2 / 3)


def test_multilabel_f1_split_items_partial_overlap():
    preds = ["A ,b", "c, x", ""]
    refs = ["a, b", "c;d\ne", ""]
    s = score("multilabel_f1", preds, refs)
    # ex 1: exact; ex 2: tp 1, |pred| 2, |ref| 3 -> 2/5; ex 3: both empty -> 1
    assert s.per_example == pytest.approx([1.0, 2 / 5, 1.0])
    # micro over (example, label) pairs: tp 3, predicted 4, reference 5 -> 6/9
    assert s.score == pytest.approx(2 / 3)
    assert s.details[1] == {"pred_labels": ["c", "x"], "ref_labels": ["c", "d", "e"]}


def test_multilabel_f1_with_label_set_finds_word_bounded_labels():
    labels = ["spam", "ham", "sure", "not sure"]
    s = score("multilabel_f1", ["I think SPAM and shampoo, not sure", "nothing"], ["spam; sure", "ham"], labels)
    # found: spam, not sure ("ham" only inside "shampoo", "sure" only inside "not sure"); tp 1 -> 2*1/(2+2)
    assert s.details[0]["pred_labels"] == ["not sure", "spam"]
    assert s.per_example == pytest.approx([1 / 2, 0.0])
    assert s.score == pytest.approx(2 * 1 / (2 + 3))


def test_rouge_hand_computed():
    s1 = score("rouge1", ["the cat sat"], ["the cat ran"])
    assert s1.score == pytest.approx(2 / 3)        # unigrams: P = R = 2/3
    assert s1.details[0]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert score("rouge2", ["the cat sat"], ["the cat ran"]).score == pytest.approx(1 / 2)  # "the cat" of 2 bigrams
    assert score("rougeL", ["the cat sat"], ["sat the cat"]).score == pytest.approx(2 / 3)  # LCS "the cat"
    assert score("rouge1", ["sat the cat"], ["the cat sat"]).score == pytest.approx(1.0)
    # stemming: cats -> cat, running -> run
    both = score("rouge1", ["the cat sat", "Cats running"], ["the cat ran", "cat run"])
    assert both.per_example == pytest.approx([2 / 3, 1.0])
    assert both.score == pytest.approx(5 / 6)
    assert score("rouge1", ["dog"], ["the cat"]).score == 0.0


@pytest.mark.parametrize("text, number", [
    ("42", 42.0), ("1,234", 1234.0), ("1,234.5 apples", 1234.5), ("The answer is -3.5.", -3.5),
    ("12%", 12.0), ("$1,000,000", 1e6), ("+7", 7.0), ("1e3", 1000.0), (".5", 0.5), ("3-4", 3.0),
    ("42\n7", 42.0), ("no number", None), ("", None),
])
def test_extract_number(text, number):
    assert extract_number(text) == number


@pytest.mark.parametrize("pred, ref, ok", [
    ("3.1", "3.1", 1.0),
    ("1.00001", "1", 1.0),           # within rel_tol 1e-4
    ("1.001", "1", 0.0),             # outside
    ("1e-7", "0", 1.0),              # within abs_tol 1e-6
    ("1e-5", "0", 0.0),
    ("1,234", "1234", 1.0),
    ("Total: -3.5", "-3.5", 1.0),
    ("-3.5", "3.5", 0.0),
    ("12%", "12", 1.0),
    ("no idea", "5", 0.0),
    ("5", "no number", 0.0),
])
def test_numeric_default_tolerance(pred, ref, ok):
    assert score("numeric", [pred], [ref]).per_example == [ok]


def test_numeric_options_and_details():
    assert score("numeric", ["10.4"], ["10"]).score == 0.0
    assert score("numeric", ["10.4"], ["10"], options={"abs_tol": 0.5}).score == 1.0
    assert score("numeric", ["109", "111"], ["100", "100"], options={"rel_tol": 0.1}).per_example == [1.0, 0.0]
    s = score("numeric", ["about 3", "none"], ["3.1", "2"], options={"abs_tol": 0.2})
    assert s.per_example == [1.0, 0.0]
    assert s.score == 0.5
    assert s.details == [{"pred_number": 3.0, "ref_number": 3.1}, {"pred_number": None, "ref_number": 2.0}]
    with pytest.raises(ValueError, match="abs_tl"):
        score("numeric", ["1"], ["1"], options={"abs_tl": 1})
    with pytest.raises(ValueError, match="unknown options"):
        score("exact_match", ["1"], ["1"], options={"abs_tol": 1})


class FakeJudgeLLM:
    """The judge's LLM is an edge: replies are scripted, the calls recorded."""

    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def chat(self, conversations, *, max_tokens, temperature=0.0, seed=0):
        self.calls.append({"conversations": conversations, "max_tokens": max_tokens, "temperature": temperature})
        return list(self.replies)


def test_llm_judge_with_fake_llm():
    llm = FakeJudgeLLM(["8", "garbage", "10"])
    judge = make_llm_judge(llm)
    s = score("llm_judge", ["Paris", "Lyon", "4"], ["paris", "Marseille", "four"], judge=judge)
    assert s.per_example == pytest.approx([7 / 9, 0.0, 1.0])
    assert s.score == pytest.approx((7 / 9 + 1) / 3)
    assert [d["judge_reply"] for d in s.details] == ["8", "garbage", "10"]
    (call,) = llm.calls
    assert call["temperature"] == 0.0 and call["max_tokens"] > 0
    conv = call["conversations"][1]
    assert conv[0] == {"role": "system", "content": JUDGE_SYSTEM}
    assert conv[1]["role"] == "user" and "Lyon" in conv[1]["content"] and "Marseille" in conv[1]["content"]
    # the bare callable returns the scores only
    assert make_llm_judge(FakeJudgeLLM(["1", "10"]))(["a", "b"], ["a", "b"]) == [0.0, 1.0]


@pytest.mark.parametrize("reply, grade", [
    ("8", 7 / 9), ("Grade: 8/10", 7 / 9), ("  10\n", 1.0), ("1", 0.0), ("8.5", 7 / 9),
    ("0/10", 0.0), ("11", 0.0), ("garbage", 0.0), ("", 0.0),
])
def test_parse_grade(reply, grade):
    assert parse_grade(reply) == pytest.approx(grade)


def test_llm_judge_plain_callable_and_bad_judges():
    s = score("llm_judge", ["a", "b"], ["a", "c"], judge=lambda p, r: [1.0, 0.25])
    assert s.score == pytest.approx(0.625)
    assert s.details == [{}, {}]
    with pytest.raises(ValueError, match="1 scores for 2"):
        score("llm_judge", ["a", "b"], ["a", "c"], judge=lambda p, r: [1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score("llm_judge", ["a"], ["a"], judge=lambda p, r: [7.0])


def test_llm_judge_without_judge_names_the_fix():
    with pytest.raises(ValueError, match="make_llm_judge"):
        score("llm_judge", ["a"], ["a"])
    with pytest.raises(ValueError, match="judge="):
        score_all("llm_judge", ["a"], ["a"])


def test_unknown_metric_names_it_and_lists_the_known_ones():
    with pytest.raises(ValueError, match="'bleu'") as e:
        score("bleu", ["a"], ["a"])
    assert all(name in str(e.value) for name in METRICS)
    with pytest.raises(ValueError, match="'bleu'"):
        score_all("bleu", ["a"], ["a"])


@pytest.mark.parametrize("metric", ["exact_match", "accuracy", "f1_macro", "numeric", "rouge1"])
def test_length_mismatch_is_an_error(metric):
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score(metric, ["a", "b"], ["a"])


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_empty_input_scores_zero(metric):
    s = score(metric, [], [], judge=lambda p, r: [])
    assert (s.score, s.per_example, s.details) == (0.0, [], [])


def test_registry_covers_every_metric_and_stays_callable_per_example():
    assert set(METRICS) == set(METRIC_BEST) >= {  # plus any plugins registered by now
        "exact_match", "accuracy", "f1_macro", "f1_micro", "multilabel_f1", "rouge1", "rouge2", "rougeL",
        "numeric", "llm_judge"}
    assert METRICS["exact_match"]("A.", "a") == 1.0
    assert METRICS["accuracy"]("it is spam", "spam") == 1.0
    assert METRICS["numeric"]("1,000", "1000") == 1.0
    assert METRICS["numeric"]("1,001", "1000") == 0.0
    assert score_all("multilabel_f1", ["a, b"], ["a"]) == pytest.approx([2 / 3])


def test_task_accepts_the_new_metrics(tmp_path):
    from trex_ray.task import Task

    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.jsonl").write_text('{"input": "x", "output": "1"}\n')
    paths = {s: str(tmp_path / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert Task.from_jsonl("t", metric="rougeL", **paths).metric == "rougeL"
    with pytest.raises(Exception, match="bleu"):
        Task.from_jsonl("t", metric="bleu", **paths)


def test_multilabel_f1_macro_averages_per_label_f1_over_the_label_set():
    labels = ["red", "green", "blue"]
    preds = ["red, green", "none", "blue"]
    refs = ["red", "green", "none"]  # "none" is outside the label set: the empty set
    # red: tp1 -> F1 1; green: fp1 (ex 1) + fn1 (ex 2) -> 0; blue: fp1 -> 0
    out = score("multilabel_f1", preds, refs, labels, options={"average": "macro"})
    assert out.score == pytest.approx(1 / 3)
    assert out.per_example == pytest.approx([2 / 3, 0.0, 0.0])
    micro = score("multilabel_f1", preds, refs, labels)  # tp 1, pred 3, gold 2
    assert micro.score == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="average"):
        score("multilabel_f1", preds, refs, labels, options={"average": "weighted"})


def test_metrics_with_a_context_get_one_per_example_and_plugins_register_by_name():
    from trex_ray.metrics import Metric, Scored, get_metric, register_metric

    def compute(preds, refs, labels, options, judge, contexts):
        per = [float(p.strip() == c["want"]) for p, c in zip(preds, contexts)]
        return Scored(sum(per) / len(per), per, [{} for _ in per])

    register_metric(Metric("wants_test", compute, context=True))
    assert get_metric("wants_test").context
    out = score("wants_test", ["a", "b"], ["", ""], contexts=[{"want": "a"}, {"want": "c"}])
    assert out.per_example == [1.0, 0.0]
    with pytest.raises(ValueError, match="contexts"):
        score("wants_test", ["a"], [""])
    with pytest.raises(TypeError):
        register_metric(lambda p, r: 1.0)
    with pytest.raises(ValueError, match="built in"):
        register_metric(Metric("accuracy", compute))


def test_installed_ftbench_metrics_are_found_through_the_entry_point():
    from trex_ray.metrics import get_metric, metric_names

    names = metric_names()
    for name in ("lawbench", "tomg_bench", "omebench", "ftbench_qa"):
        assert name in names and get_metric(name).context
