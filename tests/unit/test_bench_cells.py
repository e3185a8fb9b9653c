"""benchmarks/search_policies.py keeps each finished run in <out>.cells/ and summarises from there: a long
measurement resumes where it stopped and runs made under other conditions are never mixed in."""

from __future__ import annotations

import json
import os

import pytest

from .helpers import benchmark_script


@pytest.fixture(scope="module")
def sp():
    return benchmark_script("search_policies")


SAME = {"model": "m", "budget": 3, "concurrency": 2, "asha_segments": 3}


def _write(cells, task, name, obj):
    os.makedirs(os.path.join(cells, task), exist_ok=True)
    with open(os.path.join(cells, task, f"{name}.json"), "w") as f:
        json.dump(obj, f)


def _run(method, seed, vals, tests, accel=5.0, **over):
    return {**SAME, **over, "task": "demo", "method": method, "seed": seed, "seconds": 10.0 * (seed + 1),
            "best_val": vals, "best_test": tests, "accelerator_s": accel,
            "trials": [{"val": v, "accelerator_s": accel / len(vals), "failed": False} for v in vals]}


def test_summary_comes_from_the_cells_measured_under_the_same_conditions(sp, tmp_path, capsys):
    out = str(tmp_path / "policies.json")
    cells = str(tmp_path / "policies.cells")
    _write(cells, "demo", "baseline", {**SAME, "metric": "exact_match", "val": 0.1, "test": 0.05})
    _write(cells, "demo", "mcts-0", _run("mcts", 0, [0.1, 0.5, 0.9], [0.05, 0.4, 0.8]))
    _write(cells, "demo", "mcts-1", _run("mcts", 1, [0.3, 0.3, 0.7], [0.2, 0.2, 0.6], accel=3.0))
    _write(cells, "demo", "greedy-0", _run("greedy", 0, [0.2, 0.6, 0.6], [0.1, 0.5, 0.5]))
    # measured with another concurrency: not the same experiment, left out
    _write(cells, "demo", "greedy-1", _run("greedy", 1, [0.95, 0.95, 0.95], [0.9, 0.9, 0.9], concurrency=1))
    rc = sp.main(["--summarize", "--tasks", "demo", "--methods", "mcts", "greedy", "--model", "m", "--trials", "3",
                  "--seeds", "2", "--out", out])
    assert rc == 0
    data = json.load(open(out))
    t = data["tasks"]["demo"]
    assert t["best_val_any"] == 0.9  # the concurrency-1 cell's 0.95 is not counted
    assert t["target_95pct"] == pytest.approx(0.1 + 0.95 * 0.8)
    mcts, greedy = t["summary"]["mcts"], t["summary"]["greedy"]
    assert mcts["seeds"] == [0, 1] and greedy["seeds"] == [0]
    assert mcts["final_val_mean"] == pytest.approx(0.8) and mcts["final_test_mean"] == pytest.approx(0.7)
    assert mcts["trials_to_95pct"] == [3, None] and greedy["trials_to_95pct"] == [None]
    assert mcts["val_curve_min"] == [0.1, 0.3, 0.7] and mcts["val_curve_max"] == [0.3, 0.5, 0.9]
    # equal compute is taken within a seed: seed 0's runs (5 accelerator-seconds each) are compared at 5 s, so
    # mcts seed 0 counts all three trials (0.9) and greedy its 0.6; seed 1's only run (3 s) at its own 3 s (0.7).
    # Seed 1's cheaper run must not cut seed 0's runs short (0.1 and 0.2 at 3 s).
    assert [(e["seed"], e["accelerator_s"]) for e in t["equal_accel_s"]] == [(0, 5.0), (1, 3.0)]
    assert mcts["val_at_equal_accel_mean"] == pytest.approx((0.9 + 0.7) / 2)
    assert greedy["val_at_equal_accel_mean"] == pytest.approx(0.6)
    text = capsys.readouterr().out
    assert "trials to 95%" in text and ">3" in text  # a seed that never reached the target is shown as such


def test_finished_runs_are_not_made_again(sp, tmp_path, capsys, monkeypatch):
    cells = str(tmp_path / "p.cells")
    for m in ("mcts", "greedy"):
        _write(cells, "demo", f"{m}-0", _run(m, 0, [0.2], [0.1], budget=1))
    args = sp.argparse.Namespace(quick=False, concurrency=2)

    def boom(*a, **k):
        raise AssertionError("nothing is left to run: Ray must not start")

    monkeypatch.setattr("trex_ray.runtime.init_ray", boom)
    sp._measure(args, ["demo"], ["mcts", "greedy"], 1, {**SAME, "budget": 1}, cells, fresh=False)
    assert "0 runs to make (2 already in" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Ray must not start"):  # --fresh makes them again
        sp._measure(args, ["demo"], ["mcts", "greedy"], 1, {**SAME, "budget": 1}, cells, fresh=True)


def test_nothing_finished_is_an_error_not_an_empty_report(sp, tmp_path, capsys):
    rc = sp.main(["--summarize", "--tasks", "demo", "--out", str(tmp_path / "none.json")])
    assert rc == 1 and "no finished runs" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "none.json")


def test_reuse_summarises_settings_measured_earlier_without_searching(tmp_path, capsys, monkeypatch):
    reuse = benchmark_script("reuse")
    same = {"task": "demo", "model": "m", "budget": 2, "seed": 0, "concurrency": 1}
    cells = tmp_path / "reuse.cells" / "demo"
    cells.mkdir(parents=True)
    for k, (name, kw) in enumerate(reuse.SETTINGS.items()):
        trials = [{"node": i + 1, "val": v, "accelerator_s": 10.0 * (k + 1), "trial_s": 20.0 * (k + 1), "data_s": 1.0,
                   "cache_hit": False, "warm_start": "base"} for i, v in enumerate((0.3, 0.6))]
        # the last setting was measured on a machine half as fast: the summary must say the ratios mix speeds
        machine = {"cpu": "Xeon", "cores": 2, "gpu": None, "gflops_1thread": 90.0 if k == 3 else 180.0}
        result = {"settings": kw, "trials": trials, "wall_s": 1.0, "best_val": 0.6, "cache_hits": 0, "warm_starts": 0,
                  "machine": machine}
        (cells / (name.replace(" ", "_").replace("+", "and") + ".json")).write_text(
            json.dumps({**same, "result": result}))

    def no_search(*a, **k):
        raise AssertionError("every setting was measured earlier: nothing may search")

    monkeypatch.setattr("trex_ray.search", no_search)
    assert reuse.main(["--model", "m", "--trials", "2", "--out", str(tmp_path / "reuse.json")]) == 0
    data = json.loads((tmp_path / "reuse.json").read_text())
    assert data["target_val"] == 0.6
    assert data["results"]["no reuse"]["ratios"]["accelerator_s"] == pytest.approx(4.0)  # 80 s against 20 s
    text = capsys.readouterr().out
    assert text.count("measured earlier") == 4
    assert "not all measured on one machine" in text and "no reuse: Xeon, 90.0 GFLOP/s a thread" in text


def _no_cluster(sp, monkeypatch):
    """`_measure` with no Ray, model or evaluation behind it: the runs are what each test hands it."""
    monkeypatch.setattr("trex_ray.runtime.init_ray", lambda *a, **k: None)
    monkeypatch.setattr("trex_ray.models.resolve_model", lambda name: name)
    monkeypatch.setattr("trex_ray.executor.eval_service.start_evaluation", lambda *a, **k: None)
    monkeypatch.setattr(sp, "_setup", lambda *a, **k: {"task": None, "ctx": {}, "baseline_val": 0.0,
                                                       "test_of": lambda t: 0.0})


def test_a_run_cut_short_is_not_recorded_as_finished(sp, tmp_path, monkeypatch):
    """An interrupted run (Ray Tune returns the trials so far on Ctrl-C) raises and leaves no cell behind, so a
    later call makes it again instead of summarising half a run."""
    cells = str(tmp_path / "p.cells")
    _no_cluster(sp, monkeypatch)
    monkeypatch.setattr(sp, "run_trex", lambda *a, **k: {"trials": [{"val": 0.5, "accelerator_s": 1.0, "failed": False}]})
    args = sp.argparse.Namespace(quick=False, concurrency=2)
    with pytest.raises(RuntimeError, match="1 of 3 trials finished"):
        sp._measure(args, ["demo"], ["mcts"], 1, SAME, cells, fresh=False)
    assert sp._cell(cells, "demo", "mcts-0", SAME)[1] is None and not os.path.exists(os.path.join(cells, "demo", "mcts-0.json"))


def test_runs_from_machines_of_other_speeds_are_named_in_the_summary(sp, tmp_path, capsys):
    fast = {"cpu": "Xeon", "cores": 2, "gpu": None, "gflops_1thread": 180.0}
    fast_again = {**fast, "gflops_1thread": 170.0}  # within the tolerance: the same speed
    slow = {**fast, "gflops_1thread": 100.0}  # the same CPU model, but its seconds do not compare
    cells = str(tmp_path / "p.cells")
    _write(cells, "demo", "baseline", {**SAME, "metric": "exact_match", "val": 0.1, "test": 0.05})
    _write(cells, "demo", "mcts-0", _run("mcts", 0, [0.5], [0.4], machine=fast))
    _write(cells, "demo", "greedy-0", _run("greedy", 0, [0.5], [0.4], machine=fast_again))
    _write(cells, "demo", "random-0", _run("random", 0, [0.5], [0.4], machine=slow))
    _write(cells, "demo", "sequential-0", _run("sequential", 0, [0.5], [0.4]))  # recorded before machines were
    _write(cells, "demo", "sequential-1", _run("sequential", 1, [0.5], [0.4]))  # so was this: one group of both
    rc = sp.main(["--summarize", "--tasks", "demo", "--methods", "mcts", "greedy", "random", "sequential",
                  "--model", "m", "--trials", "3", "--seeds", "2", "--out", str(tmp_path / "p.json")])
    assert rc == 0
    groups = json.load(open(tmp_path / "p.json"))["tasks"]["demo"]["machines"]
    assert [g["runs"] for g in groups] == [["mcts-0", "greedy-0"], ["random-0"], ["sequential-0", "sequential-1"]]
    text = capsys.readouterr().out
    assert "these runs' are 3 kinds" in text and "not recorded: sequential-0 sequential-1" in text
    assert "Xeon, 100.0 GFLOP/s a thread: random-0" in text


def test_one_machine_is_not_flagged_and_the_probe_measures_this_one(sp, tmp_path, capsys):
    import common

    here = common.machine_speed(size=128, reps=3)
    assert here["cores"] >= 1 and here["gflops_1thread"] > 0
    assert common.same_speed(here, dict(here)) and not common.same_speed(here, None)
    assert not common.same_speed(here, {**here, "gflops_1thread": here["gflops_1thread"] * 2})
    cells = str(tmp_path / "p.cells")
    _write(cells, "demo", "baseline", {**SAME, "metric": "exact_match", "val": 0.1, "test": 0.05})
    for m in ("mcts", "greedy"):
        _write(cells, "demo", f"{m}-0", _run(m, 0, [0.5], [0.4], machine=here))
    assert sp.main(["--summarize", "--tasks", "demo", "--methods", "mcts", "greedy", "--model", "m", "--trials", "3",
                    "--seeds", "1", "--out", str(tmp_path / "p.json")]) == 0
    assert "note: seconds compare" not in capsys.readouterr().out


def test_code_version_marks_changed_code_dirty_but_not_rewritten_results(sp, tmp_path):
    """A run re-measures each task's baseline and rewrites its cell; that must not stamp every later run of the
    same commit `-dirty`, while a change to the code must."""
    import subprocess

    import common

    def git(*a):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "bench.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "baseline.json").write_text('{"written": "then"}\n')
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "c")
    where = str(tmp_path / "benchmarks")
    head = common.code_version(where)
    assert head and not head.endswith("-dirty")
    (tmp_path / "benchmarks" / "results" / "baseline.json").write_text('{"written": "now"}\n')
    (tmp_path / "benchmarks" / "results" / "new-cell.json").write_text("{}\n")
    assert common.code_version(where) == head
    (tmp_path / "benchmarks" / "bench.py").write_text("x = 2\n")
    assert common.code_version(where) == head + "-dirty"


def test_equal_compute_is_taken_on_each_machine_apart(sp, tmp_path, capsys):
    """A seed split over machines (one method re-measured elsewhere) gets one equal-compute budget per machine:
    the slow machine's seconds do not cut short the runs of the fast one, nor the other way round."""
    fast = {"cpu": "Xeon", "cores": 2, "gpu": None, "gflops_1thread": 180.0}
    slow = {**fast, "gflops_1thread": 100.0}
    cells = str(tmp_path / "p.cells")
    _write(cells, "demo", "baseline", {**SAME, "metric": "exact_match", "val": 0.0, "test": 0.0})
    _write(cells, "demo", "mcts-0", _run("mcts", 0, [0.2, 0.4, 0.6], [0.1, 0.3, 0.5], accel=9.0, machine=slow))
    _write(cells, "demo", "greedy-0", _run("greedy", 0, [0.3, 0.5, 0.7], [0.2, 0.4, 0.6], accel=3.0, machine=fast))
    _write(cells, "demo", "random-0", _run("random", 0, [0.1, 0.8, 0.8], [0.1, 0.7, 0.7], accel=6.0, machine=fast))
    assert sp.main(["--summarize", "--tasks", "demo", "--methods", "mcts", "greedy", "random", "--model", "m",
                    "--trials", "3", "--seeds", "1", "--out", str(tmp_path / "p.json")]) == 0
    t = json.load(open(tmp_path / "p.json"))["tasks"]["demo"]
    assert sorted((e["machine"]["gflops_1thread"], e["accelerator_s"]) for e in t["equal_accel_s"]) == [
        (100.0, 9.0), (180.0, 3.0)]
    s = t["summary"]
    assert s["mcts"]["val_at_equal_accel_mean"] == pytest.approx(0.6)  # alone on its machine: all of it
    assert s["greedy"]["val_at_equal_accel_mean"] == pytest.approx(0.7)
    assert s["random"]["val_at_equal_accel_mean"] == pytest.approx(0.1)  # 3 s of the fast machine: one trial
    text = capsys.readouterr().out
    assert "seed 0 (Xeon, 100.0 GFLOP/s a thread) 9 s" in text and "seed 0 (Xeon, 180.0 GFLOP/s a thread) 3 s" in text


def test_a_task_config_written_for_trex_ray_run_is_a_benchmark_task(sp, tmp_path, data_files, capsys):
    """--task-config: any task a user wrote for `trex-ray run` (paths relative to the YAML) is measured
    under its own name, beside or instead of the built-in ones."""
    import yaml

    cfg = tmp_path / "cfg" / "mine.yaml"
    cfg.parent.mkdir()
    rel = {s: os.path.relpath(data_files[s], cfg.parent) for s in ("train", "val", "test")}
    cfg.write_text(yaml.safe_dump({"name": "mine", "input_field": "question", "output_field": "answer",
                                   "metric": "exact_match", "trials": 3, "base_model": "tiny-random", **rel}))
    task = sp.task_from_config(str(cfg))
    assert task.name == "mine" and task.path("train") == os.path.abspath(data_files["train"])
    out = tmp_path / "sp.json"
    assert sp.main(["--task-config", str(cfg), "--summarize", "--out", str(out)]) == 1  # nothing measured yet
    assert sp.TASK_CONFIGS == {"mine": str(cfg)}
    cells = str(out)[:-5] + ".cells"
    _write(cells, "mine", "baseline", {**SAME, "metric": "exact_match", "val": 0.0, "test": 0.0})
    _write(cells, "mine", "mcts-0", {**_run("mcts", 0, [0.1, 0.2, 0.3], [0.1, 0.2, 0.2]), "task": "mine"})
    assert sp.main(["--task-config", str(cfg), "--summarize", "--out", str(out), "--seeds", "1", "--trials", "3",
                    "--methods", "mcts", "--model", "m", "--concurrency", "2"]) == 0
    assert list(json.loads(out.read_text())["tasks"]) == ["mine"]


def test_a_tune_config_with_a_longer_template_gets_room_for_its_answers(sp):
    """Tune's sampled template replaces the sized plan's `{input}`: the sequence limit grows with it, as the
    heuristic's prompt-format direction grows it (it did not, and every answer under the two longer templates
    was cut: val 0.0 or no trainable example)."""
    from trex_ray.plan import Plan
    from trex_ray.researcher.heuristic import TEMPLATES, template_room

    base = Plan.model_validate({"direction": "d", "recipe": {"ops": [{"load": {}}, {"format": {"template": "{input}"}}]},
                                "train": {"max_seq_len": 64}}).model_dump()
    brief = {"goal": "Convert the spoken time to 24-hour HH:MM."}
    config = {"learning_rate": 1e-3, "lora_r": 8, "mlp": False, "data": "as is"}
    limits = []
    for i, t in enumerate(TEMPLATES):
        plan = sp.plan_from_config(base, brief, {**config, "template": i}, 2.0)
        template = next(o["args"].get("template", "{input}") for o in plan["recipe"]["ops"] if o["op"] == "format")
        assert template == t.replace("{goal}", brief["goal"])
        # ~3 characters a token for what the template adds, rounded up to 16
        extra = len(template) - len("{input}")
        assert plan["train"]["max_seq_len"] == template_room(64, "{input}", template) >= 64 + extra / 3
        limits.append(plan["train"]["max_seq_len"])
    assert limits[0] == 64 and limits[1] > 64 and limits[2] > 64


def test_only_seeds_measures_just_those_seeds(sp, tmp_path, capsys, monkeypatch):
    cells = str(tmp_path / "p.cells")
    for m in ("mcts", "greedy"):  # seed 1 is finished, seed 0 is not
        _write(cells, "demo", f"{m}-1", _run(m, 1, [0.2], [0.1], budget=1))
    monkeypatch.setattr("trex_ray.runtime.init_ray", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    args = sp.argparse.Namespace(quick=False, concurrency=2, only_seeds=[1])
    sp._measure(args, ["demo"], ["mcts", "greedy"], 2, {**SAME, "budget": 1}, cells, fresh=False)
    assert "0 runs to make (2 already in" in capsys.readouterr().out  # seed 0's missing runs are not made
    args.only_seeds = [0]
    with pytest.raises(AssertionError, match="ran"):
        sp._measure(args, ["demo"], ["mcts", "greedy"], 2, {**SAME, "budget": 1}, cells, fresh=False)
    assert "2 runs to make (0 already in" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a seed outside --seeds is refused before anything runs
        sp.main(["--tasks", "demo", "--seeds", "2", "--only-seeds", "2", "--out", str(tmp_path / "x.json")])
    assert "--only-seeds [2]: each seed must be below --seeds" in capsys.readouterr().err


def test_a_failed_trial_keeps_what_went_wrong_in_its_cell(sp, tmp_path, monkeypatch):
    """A failure recorded as val 0 says why (stage, type, message), so a failed benchmark run can be read from its
    cell; a trial that succeeded carries no error key."""
    cells = str(tmp_path / "p.cells")
    _no_cluster(sp, monkeypatch)
    error = sp._error({"stage": "train", "type": "worker_lost", "message": "the training workers died"})
    monkeypatch.setattr(sp, "run_trex", lambda *a, **k: {"trials": [
        {"val": 0.5, "accelerator_s": 1.0, "failed": False, "error": None},
        {"val": 0.0, "accelerator_s": 0.0, "failed": True, "error": error}]})
    sp._measure(sp.argparse.Namespace(quick=False, concurrency=2), ["demo"], ["mcts"], 1, {**SAME, "budget": 2},
                cells, fresh=False)
    trials = json.load(open(os.path.join(cells, "demo", "mcts-0.json")))["trials"]
    assert "error" not in trials[0]
    assert trials[1]["error"] == "train/worker_lost: the training workers died"
