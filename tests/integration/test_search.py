"""A real search end to end: local Ray, Ray Data recipe, Ray Train + PEFT LoRA on a tiny random model,
transformers evaluation, the tree as a Ray actor with its journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import trex_ray

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    from tests.conftest import majority_rows, write_jsonl

    paths = {s: write_jsonl(tmp / "data" / f"{s}.jsonl", majority_rows(n, i)) for i, (s, n) in
             enumerate([("train", 160), ("val", 40), ("test", 40)])}
    task = trex_ray.Task.from_jsonl(name="majority", input_field="question", output_field="answer",
                                    metric="accuracy", labels=["yes", "no"], goal="Answer yes or no.", **paths)
    result = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=4), max_concurrent=2,
                             storage=str(tmp / "runs"), seed=1)
    return result


def test_search_records_every_node_in_the_journal(finished_run):
    events = [json.loads(line) for line in open(os.path.join(finished_run.run_dir, "journal.jsonl"))]
    added = [e for e in events if e["type"] == "node_added"]
    finished = [e for e in events if e["type"] == "node_finished"]
    assert [e["id"] for e in added] == list(range(5))  # root + 4 trials
    assert sorted(e["id"] for e in finished) == list(range(5))
    assert all(e["parent_id"] is not None for e in added[1:])
    assert sum(e["type"] == "diagnosis" for e in events) == 4
    assert any(e["type"] == "insights" and e["items"] for e in events)
    assert events[-1]["type"] == "run_finished" and events[-1]["stop_reason"] == "trials"
    # two trials were in flight at once: the second launch came before the first finish
    order = [(e["type"], e.get("id")) for e in events if e["type"] in ("node_added", "node_finished")]
    assert order.index(("node_added", 2)) < order.index(("node_finished", 1))


def test_node_folders_hold_plan_result_and_a_peft_adapter(finished_run):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from trex_ray.models import resolve_model

    ok = [n for n in finished_run.nodes if n.id != 0 and n.status == "ok"]
    assert len(ok) >= 3
    for n in ok:
        assert json.load(open(os.path.join(n.path, "plan.json")))["direction"] == n.direction
        assert json.load(open(os.path.join(n.path, "result.json")))["score"] == n.val_score
        cfg = PeftConfig.from_pretrained(n.adapter)
        assert cfg.r == n.plan["train"]["lora_r"] or n.plan["train"]["warm_start"] == "parent"
    # on CPU each training worker ran under a memory cap sized from its node's free memory (two trials at once,
    # two CPUs: at most 0.8 of what was free, each), so that trials outgrowing the host fail as out_of_memory
    free_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    caps = [n.result["train_stats"]["memory_limit_gb"] for n in ok]
    assert all(cap is not None and 0 < cap <= 0.8 * free_gb for cap in caps), caps
    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random"))
    peft_model = PeftModel.from_pretrained(model, ok[0].adapter)
    assert any("lora_A" in name for name, _ in peft_model.named_parameters())


def test_fine_tuning_beats_the_baseline_and_test_is_scored_once(finished_run):
    r = finished_run
    assert r.baseline.val_score < 0.2 and r.baseline.test_score < 0.2
    assert r.best.id != 0
    assert r.best.val_score >= 0.6
    assert r.best.test_score >= 0.6
    tested = [n.id for n in r.nodes if n.test_score is not None]
    assert tested == [0, r.best.id]  # the test split touched the baseline and the best node only
    summary = json.load(open(os.path.join(r.run_dir, "result.json")))
    assert summary["best_node"] == r.best.id and summary["nodes"] == 5
    assert summary["spent"]["trials"] == 4


def test_load_run_and_show_read_the_same_tree(finished_run):
    again = trex_ray.load_run(finished_run.run_dir)
    assert again.best.id == finished_run.best.id
    assert [n.val_score for n in again.nodes] == [n.val_score for n in finished_run.nodes]
    out = subprocess.run([sys.executable, "-m", "trex_ray.cli", "show", finished_run.run_dir], capture_output=True,
                         text=True, check=True).stdout
    header = out.splitlines()[0].split()
    assert header[:5] == ["id", "parent", "depth", "direction", "status"]
    assert "standard LoRA SFT" in out and f"best: node {finished_run.best.id}" in out


def test_load_run_rebuilds_the_result_and_flattens_it_for_pandas(finished_run):
    res = trex_ray.load_run(finished_run.run_dir)
    assert res.best.id == finished_run.best.id and [n.id for n in res.nodes] == list(range(5))
    assert res.insights == finished_run.insights and res.stop_reason == "trials"
    df = res.to_pandas()
    assert list(df["id"]) == list(range(5)) and df.loc[0, "direction"] == "baseline"
    for n in res.nodes[1:]:
        row = df.loc[n.id]
        assert row["val_score"] == n.val_score and row["status"] == n.status
        assert row["train.learning_rate"] == n.plan["train"]["learning_rate"]
        assert row["recipe"].startswith("load") and row["recipe"].endswith("format")
    assert df.loc[res.best.id, "test_score"] == res.best.test_score
    with pytest.raises(KeyError, match="no node 99"):
        res.node(99)


def test_load_model_generates_and_export_round_trips_through_from_pretrained(finished_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    res = trex_ray.load_run(finished_run.run_dir)
    model, tok = res.load_model()
    prompt = tok("Is 3 > 2?", return_tensors="pt")
    with torch.inference_mode():
        want = model(**prompt).logits
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    path = res.export(str(tmp_path / "merged"))
    merged = AutoModelForCausalLM.from_pretrained(path)  # a plain HF checkpoint: no PEFT needed to load it
    assert not any("lora" in k for k in merged.state_dict())
    with torch.inference_mode():
        got = merged(**prompt).logits
    assert torch.allclose(got, want, atol=1e-4)  # the adapter really is folded into the weights
    record = json.load(open(os.path.join(path, "trex_ray.json")))
    assert record["node"] == res.best.id and record["merged"] and "{input}" in record["prompt"]["template"]
    # the model card, as the Hub reads it: front matter, then the scores, plan, lineage, prompt and loading
    import yaml
    from huggingface_hub import ModelCard

    card = ModelCard.load(os.path.join(path, "README.md"))
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "transformers" and "trex-ray" in meta["tags"]
    text = card.text
    assert f"| this model (node {res.best.id}) | {res.best.val_score:.4f} | {res.best.test_score:.4f} |" in text
    assert f"| base model | {res.baseline.val_score:.4f} |" in text and "Metric: `accuracy`" in text
    assert "1. node 0: base model" in text and f"node {res.best.id}: {res.best.direction}" in text
    # the template the best node trained with (a prompt direction may have changed it), as YAML
    shown = yaml.safe_load(text.split("## Prompt")[1].split("```yaml")[1].split("```")[0])
    assert shown["template"] == record["prompt"]["template"] and "{input}" in shown["template"]
    assert "learning_rate:" in text and "AutoModelForCausalLM" in text
    adapter_only = res.export(str(tmp_path / "adapter"), merge=False)
    assert os.path.exists(os.path.join(adapter_only, "adapter_config.json"))
    peft_card = ModelCard.load(os.path.join(adapter_only, "README.md"))
    assert peft_card.data.to_dict()["library_name"] == "peft" and "AutoPeftModelForCausalLM" in peft_card.text
    with pytest.raises(FileExistsError):
        res.export(path)  # never writes over an export
    failed = [n for n in res.nodes if n.status == "failed"]
    if failed:
        with pytest.raises(ValueError, match="has no model"):
            res.load_model(failed[0].id)


def test_export_and_report_from_the_command_line(finished_run, tmp_path):
    from trex_ray.cli import main

    assert main(["export", finished_run.run_dir, str(tmp_path / "m"), "--node", "999"]) == 2
    # a repo id the Hub would refuse is refused before anything is written (no Hub is reached from here)
    assert main(["export", finished_run.run_dir, str(tmp_path / "h"), "--push-to-hub", "not a repo!"]) == 2
    assert not (tmp_path / "h").exists()
    out = tmp_path / "compare.html"
    assert main(["report", finished_run.run_dir, finished_run.run_dir, "--out", str(out)]) == 0
    page = out.read_text()
    data = json.loads(page.split('id="trex-data">', 1)[1].split("</script>", 1)[0])
    assert [r["run_dir"] for r in data["runs"]] == [finished_run.run_dir] * 2  # one line per run
    assert "https://" not in page and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", "")  # self-contained: nothing is fetched
    # the search itself wrote its report at the end
    assert os.path.exists(os.path.join(finished_run.run_dir, "report.html"))


PLANTED = "<script>window.__pwned = 'rationale'</script>"


def test_the_report_in_a_real_browser_shows_a_node_and_runs_no_planted_script(finished_run, tmp_path):
    """Headless Chromium opens the report of the real run, clicks a node, reads its detail panel. Texts from
    the LLM and from data carry planted markup: they must show as text and never run."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh dev installs it where apt is usable)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from trex_ray.report import write_report

    run = tmp_path / "run"
    shutil.copytree(finished_run.run_dir, run)
    nid = finished_run.best.id
    events = [json.loads(line) for line in open(run / "journal.jsonl")]
    for e in events:
        if e["type"] == "node_added" and e["id"] == nid:
            e["plan"]["rationale"] = PLANTED + " " + e["plan"]["rationale"]
        if e["type"] == "node_finished" and e["id"] == nid:
            e["result"]["bad_cases"] = [{"input": "</script><script>window.__pwned = 'data'</script>",
                                         "expected": "yes", "got": "<b>no</b>", "score": 0.0}]
    events.append({"ts": events[-1]["ts"], "type": "diagnosis", "id": nid,
                   "text": "<img src=x onerror=\"window.__pwned = 'diagnosis'\"> the model over-fits"})
    with open(run / "journal.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)
    page_path = write_report(str(run))
    node = trex_ray.load_run(str(run)).node(nid)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"file://{page_path}")
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            assert page.locator("g.node").count() == len(finished_run.nodes)
            page.click(f"g.node[data-node='{nid}']")
            page.wait_for_selector(f"#detail[data-node='{nid}']")
            assert page.inner_text("#detail-title").startswith(f"node {nid}")
            plan = page.inner_text("#detail-plan")
            assert "train.learning_rate" in plan and json.dumps(node.plan["train"]["learning_rate"]) in plan
            assert "[0] load" in plan and "format" in plan
            metrics = page.inner_text("#detail-metrics")
            assert f"{node.val_score:.3f}" in metrics and "reward" in metrics
            # the planted markup is on screen as text, and none of it ran
            assert PLANTED in page.inner_text("#detail-rationale")
            assert "window.__pwned = 'data'" in page.inner_text("#detail-bad-cases")
            assert "onerror" in page.inner_text("#detail-diagnosis")
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.locator("#detail img, #detail b, #detail script").count() == 0
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert errors == []
            assert all(u.startswith(("file://", "data:")) for u in requests)  # nothing from the network
        finally:
            browser.close()


def test_a_planted_failure_changes_the_next_plan(tmp_path):
    """The base model's logits are all non-finite, so the first trial diverges: the next plan from the same
    parent (the root) trains at half that learning rate or less (today's default researcher did not look)."""
    from tests.conftest import majority_rows, nan_model, write_jsonl
    from trex_ray.models import resolve_model

    paths = {s: write_jsonl(tmp_path / "data" / f"{s}.jsonl", majority_rows(n, i))
             for i, (s, n) in enumerate([("train", 32), ("val", 8), ("test", 8)])}
    task = trex_ray.Task.from_jsonl(name="nan", input_field="question", output_field="answer", metric="accuracy",
                                    labels=["yes", "no"], **paths)
    bad = nan_model(resolve_model("tiny-random"), tmp_path / "nan-model")
    res = trex_ray.search(task, base_model=bad, budget=trex_ray.Budget(trials=2), max_concurrent=1,
                          storage=str(tmp_path / "runs"), progress=False, evaluator="transformers")
    nodes = {n.id: n for n in res.nodes}
    first, second = nodes[1], nodes[2]
    assert first.status == "failed" and first.result["error"]["type"] == "diverged", first.result["error"]
    assert second.parent_id == first.parent_id == 0
    lr1, lr2 = first.plan["train"]["learning_rate"], second.plan["train"]["learning_rate"]
    assert lr2 <= lr1 / 2, (lr1, lr2, second.plan["direction"], second.plan["rationale"])
    events = [json.loads(x) for x in open(os.path.join(res.run_dir, "journal.jsonl"))]
    diag = [e for e in events if e["type"] == "diagnosis"]
    assert all("categories" in e for e in diag)  # the diagnosis is journalled whole


def test_the_researcher_thinks_beside_the_trials(majority_task, tmp_path, monkeypatch):
    """A diagnosis that takes the researcher 4 s does not hold the next trial back: with one trial in
    flight, trial 2 is launched before trial 1's diagnosis is in (and every diagnosis still arrives)."""
    import time

    import ray

    import trex_ray.researcher as researcher
    from trex_ray.results import NodeResult

    make = researcher.make_researcher

    class SlowDiagnosis:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def diagnose(self, result, parent):
            time.sleep(4)
            return self.inner.diagnose(result, parent)

    monkeypatch.setattr(researcher, "make_researcher", lambda name, **kw: SlowDiagnosis(make(name, **kw)))

    @ray.remote(num_cpus=0, max_retries=0)
    def trial(*, node_id, task, **_):  # the loop is under test here, not training: a trial of a second
        time.sleep(1)
        return NodeResult(status="ok", score=0.5, metric=task["metric"], reward=0.5, seconds=1.0,
                          accelerator_s=1.0).model_dump()

    res = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=2), max_concurrent=1,
                          storage=str(tmp_path / "runs"), progress=False, executor=trial)
    events = [json.loads(x) for x in open(os.path.join(res.run_dir, "journal.jsonl"))]
    order = [(e["type"], e.get("id")) for e in events]
    assert order.index(("node_added", 2)) < order.index(("diagnosis", 1)), order
    assert {e["id"] for e in events if e["type"] == "diagnosis"} == {1, 2}
    assert [n.status for n in res.nodes] == ["ok", "ok", "ok"]


def test_a_perfect_val_score_ends_the_search_and_keeps_the_budget(majority_task, tmp_path):
    """Once a node reaches the metric's best val (accuracy 1.0), no later node could be chosen over it (ties
    go to the earliest): the search launches nothing more and stops the trial in flight, and a resume
    relaunches nothing; unless stop_at_perfect is off. (In a demo search the second trial reached val 1.0
    and six more trials were spent for nothing.)"""
    import time

    import ray

    from trex_ray.results import NodeResult

    started = tmp_path / "slow-started"

    def make_trial(slow: int | None):
        @ray.remote(num_cpus=0, max_retries=0)
        def trial(*, node_id, task, **_):  # the loop is under test here, not training
            if node_id == slow:
                started.touch()
            # the perfect one finishes once the slow one is in flight (on a loaded machine proposing the
            # second plan can take longer than the first trial), so there is a trial to stop
            deadline = time.time() + 60
            while node_id == 1 and slow and not started.exists() and time.time() < deadline:
                time.sleep(0.05)
            for _ in range(5 if node_id == 1 else 200 if node_id == slow else 1):  # the slow one: 20 s
                time.sleep(0.1)
            score = 1.0 if node_id == 1 else 0.5
            return NodeResult(status="ok", score=score, metric=task["metric"], reward=score, seconds=0.1,
                              accelerator_s=0.1).model_dump()
        return trial

    trial = make_trial(slow=2)

    runs = str(tmp_path / "runs")
    res = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=4), max_concurrent=2,
                          storage=runs, run_name="stops", progress=False, executor=trial)
    # trial 2 (20 s) was stopped, not waited for: cancelled, never finished
    assert [(n.id, n.status) for n in res.nodes] == [(0, "ok"), (1, "ok"), (2, "cancelled")] and res.best.id == 1
    assert res.stop_reason == "perfect val score" and res.spent["trials"] == 1
    events = [json.loads(x) for x in open(os.path.join(res.run_dir, "journal.jsonl"))]
    assert {"type": "node_cancelled", "id": 2, "reason": "perfect val score"}.items() <= next(
        e for e in events if e["type"] == "node_cancelled").items()
    assert not [e for e in events if e["type"] == "node_finished" and e["id"] == 2]
    again = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=4), max_concurrent=2,
                            storage=runs, run_name="stops", progress=False, executor=trial, resume=True)
    assert [(n.id, n.status) for n in again.nodes] == [(0, "ok"), (1, "ok"), (2, "cancelled")]  # nothing relaunched
    every = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=3), max_concurrent=1,
                            storage=runs, run_name="spends", progress=False, executor=make_trial(None),
                            stop_at_perfect=False)
    assert len(every.nodes) == 4 and every.best.id == 1 and every.stop_reason != "perfect val score"


def test_a_trial_whose_process_dies_is_a_failed_node_and_the_search_goes_on(majority_task, tmp_path):
    """A trial's own process can die (killed by Ray's memory monitor, a segfault): Ray does not run it again
    (as a retriable task a memory kill would be re-run without end) and the search records a failed node
    with the reason, then plans the next trial, instead of raising out of the loop."""
    import ray

    from trex_ray.executor.trial import run_trial
    from trex_ray.results import NodeResult

    assert run_trial._default_options.get("max_retries") == 0

    @ray.remote(num_cpus=0, max_retries=0)
    def trial(*, node_id, task, **_):
        if node_id == 1:
            os._exit(1)  # the process dies, as a kill would leave it
        return NodeResult(status="ok", score=0.5, metric=task["metric"], reward=0.5, seconds=0.1,
                          accelerator_s=0.1).model_dump()

    res = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=2), max_concurrent=1,
                          storage=str(tmp_path / "runs"), progress=False, executor=trial)
    nodes = {n.id: n for n in res.nodes}
    assert nodes[1].status == "failed", nodes[1].result
    assert nodes[1].result["error"]["type"] == "crashed" and "died" in nodes[1].result["error"]["message"]
    assert nodes[2].status == "ok" and res.spent["trials"] == 2
    events = [json.loads(x) for x in open(os.path.join(res.run_dir, "journal.jsonl"))]
    assert any(e["type"] == "diagnosis" and e["id"] == 1 for e in events)  # the researcher saw it


def test_a_plateau_of_trials_without_a_better_val_ends_the_search(majority_task, tmp_path):
    """`patience_trials`: the search stops launching once that many trials in a row finished without beating
    the best val (SST-2 lite: every trial after the first scored at most its 0.922, and seven more were
    spent); a resume with more patience goes on from there."""
    import ray

    from trex_ray.results import NodeResult

    scores = {1: 0.9, 2: 0.95, 3: 0.93, 4: 0.95, 5: 0.5, 6: 0.97}  # 4 ties the best: not better

    @ray.remote(num_cpus=0, max_retries=0)
    def trial(*, node_id, task, **_):  # the loop is under test here, not training
        return NodeResult(status="ok", score=scores[node_id], metric=task["metric"], reward=scores[node_id],
                          seconds=0.1, accelerator_s=0.1).model_dump()

    runs = str(tmp_path / "runs")
    res = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=8, patience_trials=2),
                          max_concurrent=1, storage=runs, run_name="plateau", progress=False, executor=trial)
    assert res.stop_reason == "patience_trials" and res.spent["trials"] == 4 and res.best.id == 2
    again = trex_ray.search(majority_task, base_model="tiny-random",
                            budget=trex_ray.Budget(trials=8, patience_trials=3), max_concurrent=1, storage=runs,
                            run_name="plateau", resume=True, progress=False, executor=trial)
    assert again.stop_reason == "patience_trials" and again.spent["trials"] == 5 and again.best.id == 2
