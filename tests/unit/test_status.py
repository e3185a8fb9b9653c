"""`trex-ray status` / `attach` from a run folder's journal (the live tree-actor path is in
tests/integration/test_cluster.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from trex_ray.cli import main
from trex_ray.status import attach, from_journal, render

from .helpers import TreeBuilder, failed, ok


def _write(run_dir, events) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "journal.jsonl", "a") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")


def _run(tmp_path, finished: bool):
    tb = TreeBuilder(root_score=0.25)
    tb.emit({"type": "session_started", "resume": False})
    a = tb.add(0, direction="more epochs")
    tb.finish(a, {**ok(0.5, 0.4), "accelerator_s": 1800.0})
    b = tb.add(a, direction="add synthetic data")
    tb.finish(b, failed())
    tb.add(a, direction="raise LoRA rank")  # in flight
    tb.emit({"type": "insights", "items": ["more epochs helped (+0.25)"]})
    if finished:
        tb.emit({"type": "run_finished", "stop_reason": "trials", "spent": {}})
    run = tmp_path / "runs" / "r1"
    _write(run, tb.events)
    return run


def test_status_from_a_journal_counts_trials_and_names_the_best(tmp_path):
    s = from_journal(str(_run(tmp_path, finished=False)))
    assert (s["finished"], s["failed"], s["live"], s["stop_reason"]) == (2, 1, False, None)
    assert s["running"] == [{"id": 3, "parent_id": 1, "direction": "raise LoRA rank", "stage": None,
                             "progress": "starting", "stage_s": None}]
    assert s["best"] == {"id": 1, "score": 0.5, "direction": "more epochs"}
    assert s["accelerator_s"] == 1800.0 and s["insight"] == "more epochs helped (+0.25)"
    text = "\n".join(render(s))
    assert "best: node 1 val 0.500 (+0.250 vs baseline 0.250), more epochs" in text
    assert "0.500 accelerator-h" in text and "node 3 <- 1 [starting]: raise LoRA rank" in text
    assert "trex-ray resume" in text


def test_a_running_driver_publishes_stages_and_budget_for_status(tmp_path):
    """What the driver's Progress writes (live.json) is what `trex-ray status <run>` shows, while fresh."""
    from trex_ray.budget import Budget, Spend
    from trex_ray.progress import LIVE_FILE, Progress

    run = _run(tmp_path, finished=False)
    show = Progress(enabled=False, budget=Budget(trials=8, accelerator_hours=2), run_dir=str(run))
    show.directions[3] = (1, "raise LoRA rank")
    state = {"running": [3], "insights": ["x"], "live": {3: {"stage": "train", "step": 40, "steps": 120,
                                                             "loss": 1.2345, "stage_started": time.time() - 12}}}
    show.update(state, Spend(trials=3, wall_clock_s=75, accelerator_s=1800))
    s = from_journal(str(run))
    assert s["live"] is True
    assert s["running"][0]["progress"] == "train 40/120 loss 1.234" and s["running"][0]["stage"] == "train"
    assert s["budget"]["trials"] == [3, 8] and s["budget"]["accelerator_h"] == [0.5, 2]
    text = "\n".join(render(s))
    assert "node 3 <- 1 [train 40/120 loss 1.234, 12s]: raise LoRA rank" in text
    assert "trials 3/8" in text and "accel 0.500h/2.000h" in text
    # a file left by a driver that died is stale: the journal alone speaks
    pub = json.loads((run / LIVE_FILE).read_text())
    (run / LIVE_FILE).write_text(json.dumps({**pub, "ts": time.time() - 60}))
    s = from_journal(str(run))
    assert s["live"] is False and s["running"][0]["stage"] is None and "budget" not in s
    show.close()  # the end of a search takes its file away
    assert not (run / LIVE_FILE).exists()


def test_plain_progress_prints_stage_changes_once(tmp_path):
    import io

    from trex_ray.budget import Budget, Spend
    from trex_ray.progress import Progress

    out = io.StringIO()
    show = Progress(enabled=True, budget=Budget(trials=4), stream=out)
    assert show.live is None  # not a terminal: plain lines
    show.base_score = 0.25
    show.launched(5, 0, {"direction": "more epochs", "train": {"learning_rate": 1e-4, "lora_r": 8, "epochs": 2,
                                                                 "warm_start": "none"}})
    for stage in ("data", "data", "train", "eval"):
        show.update({"running": [5], "live": {5: {"stage": stage, "rows": 64}}}, Spend())
    lines = out.getvalue().splitlines()
    assert [ln.split("] ", 1)[1] for ln in lines[1:]] == ["node 5: data", "node 5: train (64 rows)",
                                                          "node 5: eval (64 val rows)"]


def test_the_tree_keeps_live_reports_only_for_trials_in_flight(tmp_path):
    from trex_ray.tree_actor import TreeCore

    core = TreeCore(str(tmp_path / "journal.jsonl"))
    core.add_node(None, None, None)
    core.record({"type": "node_finished", "id": 0, "result": ok(0.2, 0.2)})
    nid = core.add_node(0, {"direction": "d"}, "sig")
    core.progress(nid, {"stage": "data"})
    t_data = core.state()["live"][nid]["stage_started"]
    core.progress(nid, {"stage": "train", "step": 1, "steps": 9})
    core.progress(nid, {"stage": "train", "step": 5, "steps": 9})
    live = core.state()["live"][nid]
    assert live["step"] == 5 and live["stage_started"] >= t_data
    core.record({"type": "node_finished", "id": nid, "result": ok(0.3, 0.3)})
    assert core.state()["live"] == {}
    core.progress(nid, {"stage": "eval"})  # a late report of a finished trial is dropped
    assert core.state()["live"] == {}
    core.close()


def test_a_resumed_run_is_in_progress_again(tmp_path):
    run = _run(tmp_path, finished=True)
    assert from_journal(str(run))["stop_reason"] == "trials"
    _write(run, [{"ts": 1.0, "type": "session_started", "resume": True}])
    assert from_journal(str(run))["stop_reason"] is None


def test_status_cli_prints_text_and_json(tmp_path, capsys):
    run = _run(tmp_path, finished=True)
    assert main(["status", str(run)]) == 0
    assert "finished (trials)" in capsys.readouterr().out
    assert main(["status", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["best"]["id"] == 1


def test_status_of_a_folder_that_is_no_run_names_the_field(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "run:" in capsys.readouterr().err


def test_attach_follows_the_journal_until_the_run_finishes(tmp_path):
    import io

    run = _run(tmp_path, finished=False)
    out = io.StringIO()
    t = threading.Timer(0.6, _write, (run, [{"ts": 2.0, "type": "node_finished", "id": 3, "result": ok(0.7, 0.6)},
                                            {"ts": 3.0, "type": "run_finished", "stop_reason": "trials"}]))
    t.start()
    t0 = time.time()
    last = attach(str(run), None, poll_s=0.1, stream=out, max_s=20)
    t.join()
    assert time.time() - t0 < 20 and last["stop_reason"] == "trials"
    assert last["best"]["id"] == 3 and last["running"] == []
    assert out.getvalue().count("r1:") >= 2  # the first look and the one after the change


@pytest.mark.parametrize("args", [["status"], ["attach"]])
def test_status_needs_a_run_or_an_address(args, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(args) == 2
    assert "run:" in capsys.readouterr().err


def test_resume_of_a_uri_without_a_run_names_the_field(tmp_path, capsys):
    assert main(["resume", f"file://{tmp_path}/remote/nothing"]) == 2
    assert "run:" in capsys.readouterr().err


def test_status_of_an_address_nobody_answers_at_fails_fast_naming_the_field(capsys):
    t0 = time.time()
    assert main(["status", "--address", "127.0.0.1:1"]) == 2
    assert "address:" in capsys.readouterr().err and time.time() - t0 < 30


def test_the_terminal_panel_shows_trials_best_budget_and_insight():
    import io

    from trex_ray.budget import Budget, Spend
    from trex_ray.progress import Progress

    out = io.StringIO()
    show = Progress(enabled=True, budget=Budget(trials=8), stream=out, rich=True)
    try:
        assert show.live is not None
        show.base_score = 0.25
        show.directions[3] = (1, "raise LoRA rank")
        show.update({"running": [3], "insights": ["more epochs helped"],
                     "live": {3: {"stage": "train", "step": 40, "steps": 120, "loss": 1.5}}},
                    Spend(trials=3, wall_clock_s=75), best={"id": 1, "score": 0.5, "direction": "more epochs"})
        show.line("node 3 <- 1: [bold]not markup[/bold]")
    finally:
        show.close()
    text = out.getvalue()
    assert "train 40/120 loss 1.500" in text and "raise LoRA rank" in text
    assert "best val 0.500" in text and "+0.250 vs baseline 0.250" in text
    assert "trials 3/8" in text and "insight: more epochs helped" in text
    assert "[bold]not markup[/bold]" in text  # event text is printed as it is
