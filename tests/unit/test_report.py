"""The HTML report's data and escaping, from a journal written by hand (the browser test of a real run is in
tests/integration/test_search.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from trex_ray.errors import ConfigError
from trex_ray.report import plan_rows, run_data, write_report

from .helpers import TreeBuilder, failed, ok

EVIL = "</script><script>alert('x')</script><!--"


def _plan(direction, lr, ops=None, rationale=""):
    return {"direction": direction, "rationale": rationale,
            "recipe": {"ops": ops or [{"op": "load", "args": {}}, {"op": "format", "args": {"template": "{input}"}}]},
            "train": {"learning_rate": lr, "lora_r": 8}}


def _run(tmp_path):
    tb = TreeBuilder(root_score=0.2)
    tb.events[0]["plan"] = None
    a = tb.tree.next_id()
    tb.emit({"type": "node_added", "id": a, "parent_id": 0, "plan": _plan("more epochs", 1e-4, rationale=EVIL),
             "signature": "a"})
    tb.finish(a, {**ok(0.5, 0.4), "accelerator_s": 100.0, "bad_cases": [{"input": EVIL, "expected": "y", "got": "n"}],
                  "train_stats": {"loss_curve": [2.0, 1.5, 1.0], "steps": 3}})
    b = tb.tree.next_id()
    tb.emit({"type": "node_added", "id": b, "parent_id": a, "plan": _plan("higher lr", 1e-3), "signature": "b"})
    tb.finish(b, {**failed("train", "CUDA out of memory"), "accelerator_s": 10.0})
    c = tb.tree.next_id()
    tb.emit({"type": "node_added", "id": c, "parent_id": a, "plan": _plan("lower lr", 1e-5), "signature": "c"})
    tb.finish(c, {**ok(0.7, 0.6), "accelerator_s": 400.0})
    tb.emit({"type": "diagnosis", "id": c, "text": EVIL + " under-fits"})
    tb.emit({"type": "insights", "items": ["lower lr helped", EVIL]})
    tb.emit({"type": "test_evaluated", "id": 0, "result": {"score": 0.25}})
    tb.emit({"type": "test_evaluated", "id": c, "result": {"score": 0.6}})
    tb.emit({"type": "run_finished", "stop_reason": "trials", "spent": {"trials": 3}})
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in tb.events))
    (run / "config.yaml").write_text("name: t\nbase_model: tiny-random\npolicy: mcts\n")
    return run


def _embedded(page: str) -> dict:
    return json.loads(page.split('id="trex-data">', 1)[1].split("</script>", 1)[0])


def test_the_page_embeds_the_runs_data_inertly(tmp_path):
    run = _run(tmp_path)
    page = open(write_report(str(run))).read()
    assert EVIL not in page and "alert('x')</script>" not in page
    assert page.count("<script") == 2  # the data element and the page's own script, nothing else
    data = _embedded(page)
    assert data == json.loads(json.dumps({"runs": [run_data(str(run))]}))  # the escapes decode to the same text
    assert data["runs"][0]["nodes"][1]["rationale"] == EVIL
    # only the page's own script may run (by hash), nothing is fetched
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp and "unsafe-inline'" not in \
        csp.split("script-src")[1].split(";")[0]


def test_run_data_marks_the_best_path_failures_curves_and_gain(tmp_path):
    d = run_data(str(_run(tmp_path)))
    nodes = {n["id"]: n for n in d["nodes"]}
    assert [i for i, n in nodes.items() if n["best_path"]] == [0, 1, 3] and nodes[3]["best"]
    assert nodes[2]["status"] == "failed" and nodes[2]["error"]["message"] == "CUDA out of memory"
    assert nodes[1]["x"] == (nodes[2]["x"] + nodes[3]["x"]) / 2  # a parent sits over its children
    assert [c["best"] for c in d["curve"]] == [0.2, 0.5, 0.5, 0.7]  # best so far, failure included as a trial
    assert [c["acc_h"] for c in d["curve"]] == [0.0, round(100 / 3600, 5), round(110 / 3600, 5), round(510 / 3600, 5)]
    f = d["final"]
    assert (f["best"], f["test"], f["baseline_test"]) == (3, 0.6, 0.25)
    assert f["gain"] == pytest.approx(0.35) and f["relative_gain"] == pytest.approx(1.4)
    assert nodes[1]["loss_curve"] == [2.0, 1.5, 1.0] and nodes[1]["bad_cases"][0]["input"] == EVIL


def test_plan_rows_mark_what_changed_from_the_parent():
    rows = {r[0]: r for r in plan_rows(_plan("lower lr", 1e-5), _plan("more epochs", 1e-4))}
    assert rows["train.learning_rate"][1:] == ["1e-05", "0.0001", True]
    assert rows["train.lora_r"][3] is False
    assert rows["recipe.[0] load"][1] == "{}"  # an op with its defaults is listed too
    assert "direction" not in rows and "rationale" not in rows
    first = {r[0]: r for r in plan_rows(_plan("x", 1e-4), None)}  # a child of the baseline: nothing to compare
    assert all(r[2] is None and r[3] is False for r in first.values())


def test_report_of_a_folder_that_is_no_run_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="runs"):
        write_report([str(tmp_path)])


def test_a_chain_of_a_thousand_nodes_is_laid_out(tmp_path):
    """A sequential search makes one long chain: the layout must not recurse per level."""
    from trex_ray.report import _layout

    tb = TreeBuilder(root_score=0.1)
    parent = 0
    for i in range(1500):
        parent = tb.child(parent, 0.1 + i / 10000)
    pos = _layout(tb.tree)
    assert len(pos) == 1501 and pos[1500] == (0.0, 1500) and pos[0] == (0.0, 0)
    tb2 = TreeBuilder(root_score=0.1)
    a, b = tb2.child(0, 0.2), tb2.child(0, 0.3)
    c, d = tb2.child(a, 0.4), tb2.child(a, 0.5)
    p2 = _layout(tb2.tree)
    assert [p2[i][0] for i in (c, d, b)] == [0.0, 1.0, 2.0] and p2[a][0] == 0.5 and p2[0][0] == 1.25


def test_results_api_on_a_journal_written_by_hand(tmp_path):
    import trex_ray

    run = _run(tmp_path)
    res = trex_ray.load_run(str(run))
    assert res.best.id == 3 and res.baseline.id == 0 and res.stop_reason == "trials"
    df = res.to_pandas()
    assert list(df.index) == [0, 1, 2, 3]
    assert df.loc[3, "train.learning_rate"] == 1e-5 and df.loc[1, "train.lora_r"] == 8
    assert df.loc[2, "status"] == "failed" and df.loc[2, "error"] == "CUDA out of memory"
    assert df.loc[1, "recipe"] == "load > format" and df.loc[1, "recipe.1.format.template"] == "{input}"
    assert df.loc[3, "test_score"] == 0.6 and df.loc[3, "diagnosis"].endswith("under-fits")
    assert res.node(1).prompt() == {"template": "{input}", "system": None}
    assert "Answer" in res.node(0).prompt("Answer yes or no.")["system"]  # the baseline's prompt
    with pytest.raises(ValueError, match="node 2 has no model: it failed"):
        res._weights(2)
    # a run moved elsewhere still finds a node's files in its own folder
    (run / "nodes" / "3" / "adapter").mkdir(parents=True)
    res.nodes[3].result["artifacts"] = {"adapter": "/gone/runs/r/nodes/3/adapter"}
    assert res.nodes[3].adapter == str(run / "nodes" / "3" / "adapter")


def test_a_run_named_like_a_placeholder_does_not_break_the_page(tmp_path):
    run = _run(tmp_path)
    odd = run.parent / "x{{data}}{{script}}"
    run.rename(odd)
    page = open(write_report(str(odd))).read()
    assert "<title>trex-ray report: x{{data}}{{script}}</title>" in page
    assert _embedded(page)["runs"][0]["run"] == "x{{data}}{{script}}"
