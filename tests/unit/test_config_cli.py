"""The CLI's bad-input paths: exit code 2, one stderr line naming the field, no traceback, nothing written,
and all of it before Ray starts. Also the config and budget models behind them."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import time

import pytest
import yaml

from trex_ray.budget import Budget, Spend
from trex_ray.cli import main
from trex_ray.config import RunConfig, build, load_config, load_yaml
from trex_ray.errors import ConfigError

from .helpers import write_jsonl

PREFIX = "trex-ray: error: "


@pytest.fixture
def setup(tmp_path, data_files):
    """A valid config (everything passes validation) whose run would start Ray; each test breaks one thing."""
    storage = tmp_path / "runs"
    cfg = {"name": "clock", "input_field": "question", "output_field": "answer", "metric": "exact_match",
           "base_model": "tiny-random", "storage": str(storage), "trials": 2, **data_files}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    return {"config": str(path), "storage": storage, "tmp": tmp_path, "empty": str(empty), "cfg": cfg}


def _yaml(setup, text: str) -> str:
    p = setup["tmp"] / f"cfg-{hashlib.sha1(text.encode()).hexdigest()[:10]}.yaml"
    p.write_text(text)
    return str(p)


def _cases(setup) -> dict[str, tuple[list[str], str]]:
    c, tmp = setup["config"], setup["tmp"]
    bad_json = write_jsonl(tmp / "bad.jsonl", [{"question": "q", "answer": "a"}, "{not json"])
    not_obj = write_jsonl(tmp / "list.jsonl", ["[1, 2]"])
    full = {**setup["cfg"], "trails": 3}
    return {
        "missing data file": (["run", c, "--train", str(tmp / "nope.jsonl")], "train"),
        "field not in data": (["run", c, "--input_field", "prompt"], "input_field"),
        "output field not in data": (["run", c, "--output_field", "label"], "output_field"),
        "unknown metric": (["run", c, "--metric", "bleu"], "metric"),
        "unknown model": (["run", c, "--base_model", "no-such-model"], "base_model"),
        "model dir without config": (["run", c, "--base_model", str(tmp)], "base_model"),
        "empty split": (["run", c, "--val", setup["empty"]], "val"),
        "invalid json line": (["run", c, "--test", bad_json], "test"),
        "row not an object": (["run", c, "--train", not_obj], "train"),
        "trials 0": (["run", c, "--trials", "0"], "trials"),
        "no budget at all": (["run", _yaml(setup, yaml.safe_dump({**setup["cfg"], "trials": None}))], "budget"),
        "trials not a number": (["run", c, "--trials", "many"], "trials"),
        "max_concurrent 0": (["run", c, "--max_concurrent", "0"], "max_concurrent"),
        "unknown policy": (["run", c, "--policy", "bandit"], "policy"),
        "unknown researcher": (["run", c, "--researcher", "gpt"], "researcher"),
        "bad task name": (["run", c, "--name", "a b"], "name"),
        "malformed yaml": (["run", _yaml(setup, "name: [clock\ntrain: x\n")], "config"),
        "yaml not a mapping": (["run", _yaml(setup, "- a\n- b\n")], "config"),
        "unknown config key": (["run", _yaml(setup, yaml.safe_dump(full))], "trails"),
        "missing required key": (["run", _yaml(setup, "name: clock\n")], "train"),
        "config file missing": (["run", str(tmp / "nope.yaml")], "config"),
        "resume non-run folder": (["resume", str(tmp)], "run"),
        "show non-run folder": (["show", str(tmp)], "run"),
    }


CASE_NAMES = [
    "missing data file", "field not in data", "output field not in data", "unknown metric", "unknown model",
    "model dir without config", "empty split", "invalid json line", "row not an object", "trials 0",
    "no budget at all", "trials not a number", "max_concurrent 0", "unknown policy", "unknown researcher",
    "bad task name", "malformed yaml", "yaml not a mapping", "unknown config key", "missing required key",
    "config file missing", "resume non-run folder", "show non-run folder",
]


def _check_one_error_line(rc: int, out: str, err: str, field: str) -> None:
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    err_lines = err.splitlines()
    assert len(err_lines) == 1, err
    assert err_lines[0].startswith(f"{PREFIX}{field}:"), err


@pytest.mark.parametrize("case", CASE_NAMES)
def test_cli_bad_input_in_process(setup, capsys, case):
    argv, field = _cases(setup)[case]
    t0 = time.process_time()
    rc = main(argv)
    out, err = capsys.readouterr()
    _check_one_error_line(rc, out, err, field)
    assert out == ""
    assert not setup["storage"].exists()  # no run folder was touched
    assert time.process_time() - t0 < 2  # CPU seconds (robust on a loaded machine): no Ray, no model


def test_all_cases_listed(setup):
    assert set(_cases(setup)) == set(CASE_NAMES)


def test_relative_data_paths_are_relative_to_the_config_file(setup, capsys, monkeypatch, tmp_path):
    cfg = {**setup["cfg"], "train": "data/train.jsonl", "val": "data/val.jsonl", "test": "data/test.jsonl",
           "base_model": "no-such-model"}
    path = tmp_path / "rel.yaml"
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    rc = main(["run", str(path)])
    _, err = capsys.readouterr()
    _check_one_error_line(rc, "", err, "base_model")  # the data files were found: the next check failed


def _snapshot(folder) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder) + "/"] = "dir"
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _existing_run(setup):
    run = setup["storage"] / "r1"
    (run / "nodes" / "0").mkdir(parents=True)
    (run / "journal.jsonl").write_text('{"type": "node_added", "id": 0, "parent_id": null}\n')
    (run / "config.yaml").write_text("# an earlier run's config\nname: clock\n")
    (run / "brief.json").write_text('{"objective": "x"}')
    (run / "nodes" / "0" / "result.json").write_text('{"status": "ok", "score": 0.25}')
    return run


def test_run_into_existing_run_folder_fails_and_keeps_every_byte(setup, capsys):
    run = _existing_run(setup)
    before = _snapshot(run)
    rc = main(["run", setup["config"], "--run_name", "r1"])
    out, err = capsys.readouterr()
    _check_one_error_line(rc, out, err, "run_name")
    assert "already exists" in err
    assert _snapshot(run) == before
    assert os.listdir(setup["storage"]) == ["r1"]


# -- the same through a real process -----------------------------------------------------------
# Runs the CLI in a fresh process with the heavy libraries made unimportable (so a regression fails fast
# instead of starting a Ray cluster), then reports which of them were imported on the way.
NO_RAY = """
import sys
BLOCKED = ('ray', 'torch', 'transformers', 'vllm')
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            print('HEAVY-IMPORT=' + name)
            raise ImportError('blocked in a unit test: ' + name)
        return None
sys.meta_path.insert(0, Blocker())
from trex_ray.cli import main
rc = main(sys.argv[1:])
print('HEAVY=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)))
sys.exit(rc)
"""


def _child_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@pytest.mark.parametrize("case", ["missing data file", "unknown model", "malformed yaml"])
def test_cli_bad_input_subprocess(setup, case):
    argv, field = _cases(setup)[case]
    # first with Ray (and torch, ...) unimportable: the error comes before any of them is needed
    q = subprocess.run([sys.executable, "-c", NO_RAY, *argv], capture_output=True, text=True, timeout=120)
    _check_one_error_line(q.returncode, "", q.stderr, field)
    assert q.stdout.strip() == "HEAVY=", q.stdout
    # then the real command line
    cpu0 = _child_cpu_s()
    p = subprocess.run([sys.executable, "-m", "trex_ray.cli", *argv], capture_output=True, text=True, timeout=120)
    _check_one_error_line(p.returncode, p.stdout, p.stderr, field)
    assert p.stdout == ""
    assert _child_cpu_s() - cpu0 < 3  # CPU seconds of the whole process: importing Ray/torch alone costs more
    assert not setup["storage"].exists()


def test_existing_run_folder_subprocess(setup):
    run = _existing_run(setup)
    before = _snapshot(run)
    p = subprocess.run([sys.executable, "-c", NO_RAY, "run", setup["config"], "--run_name", "r1"],
                       capture_output=True, text=True, timeout=120)
    _check_one_error_line(p.returncode, "", p.stderr, "run_name")
    assert p.stdout.strip() == "HEAVY="
    assert _snapshot(run) == before


# -- config and budget models ------------------------------------------------------------------
def test_build_and_overrides(setup):
    cfg = build(load_yaml(setup["config"]))
    assert isinstance(cfg, RunConfig) and cfg.settings.budget.trials == 2 and cfg.settings.policy == "mcts"
    # command-line strings convert
    assert build({**setup["cfg"], "trials": "6", "max_concurrent": "3"}).settings.max_concurrent == 3
    s = cfg.settings
    assert s.base_model == "tiny-random" and s.train_workers == 1
    assert build({**setup["cfg"], "train_workers": "2"}).settings.train_workers == 2
    assert build({**setup["cfg"], "warm_start": "false"}).settings.warm_start is False
    t = cfg.task
    assert t.input_field == "question" and os.path.isabs(t.path("train"))


@pytest.mark.parametrize("data, field, words", [
    ({"trails": 3}, "trails", "unknown config key"),
    ({"max_concurrent": 0}, "max_concurrent", "positive integer or 'auto'"),
    ({"seed": "abc"}, "seed", "whole number"),
    ({"labels": [True, False]}, "labels", 'quote the labels, e.g. labels: ["yes", "no"]'),  # YAML's [yes, no]
    ({"train_retries": -1}, "train_retries", ">= 0"),
    ({"train_workers": 0}, "train_workers", ">= 1"),
    ({"trials": 0}, "trials", "greater than or equal to 1"),
    ({"eval_options": {"replica": 2}}, "eval_options.replica", "known: replicas"),
])
def test_build_errors_name_the_field(setup, data, field, words):
    with pytest.raises(ConfigError) as e:
        build({**setup["cfg"], **data})
    assert e.value.field == field and words in str(e.value)


def test_load_yaml_empty_file_is_empty_mapping(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text("")
    assert load_yaml(str(p)) == {}
    with pytest.raises(ConfigError) as e:
        build({})
    assert e.value.field in {"name", "train", "val", "test"} and "missing" in str(e.value)


def test_budget_and_spend():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least one of"):
        Budget(trials=None)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Budget(trials=0)
    b = Budget(trials=3, wall_clock_s=100, accelerator_hours=0.5)
    assert Spend().exhausted(b) is None
    assert Spend(trials=3).exhausted(b) == "trials"
    assert Spend(trials=2, wall_clock_s=100).exhausted(b) == "wall_clock_s"
    assert Spend(accelerator_s=1800).exhausted(b) == "accelerator_hours"
    assert Spend(accelerator_s=1799).exhausted(b) is None
    assert Spend(trials=99).exhausted(Budget(trials=None, wall_clock_s=5)) is None


def test_max_concurrent_auto_follows_the_clusters_gpus_or_cpus():
    from trex_ray.config import build
    from trex_ray.runtime import auto_concurrency

    assert auto_concurrency({"CPU": 16.0, "GPU": 8.0}, use_gpu=True) == 8
    assert auto_concurrency({"CPU": 16.0, "GPU": 8.0}, use_gpu=True, gpus_for_eval=1) == 7  # a vLLM engine's GPU
    assert auto_concurrency({"CPU": 5.0}, use_gpu=False) == 2  # a training CPU + data work each, one CPU spare
    assert auto_concurrency({"CPU": 1.0}, use_gpu=False) == 1  # never zero
    assert auto_concurrency({"CPU": 8.0, "GPU": 1.0}, use_gpu=True, gpus_for_eval=1) == 1
    # data-parallel trials: a trial takes train_workers GPUs, or that many CPUs plus one for its data work
    assert auto_concurrency({"CPU": 16.0, "GPU": 8.0}, use_gpu=True, gpus_for_eval=1, train_workers=2) == 3
    assert auto_concurrency({"CPU": 16.0, "GPU": 8.0}, use_gpu=True, train_workers=4) == 2
    assert auto_concurrency({"CPU": 9.0}, use_gpu=False, train_workers=3) == 2
    assert auto_concurrency({"CPU": 2.0}, use_gpu=False, train_workers=4) == 1
    base = {"name": "t", "train": "a", "val": "b", "test": "c"}
    assert build({**base, "max_concurrent": "auto"}).settings.max_concurrent == "auto"
    assert build({**base, "max_concurrent": "3"}).settings.max_concurrent == 3


def test_max_concurrent_must_be_positive_or_auto(data_files):
    from trex_ray import Task
    from trex_ray.search import search

    task = Task.from_jsonl("t", data_files["train"], data_files["val"], data_files["test"], input_field="question",
                           output_field="answer")
    for bad in (0, "many", 1.5):
        with pytest.raises(ConfigError) as e:
            search(task, base_model="tiny-random", max_concurrent=bad)
        assert e.value.field == "max_concurrent" and "auto" in e.value.fix


@pytest.mark.parametrize("kwargs, field, words", [
    ({"train_resources": {"accel": 0}}, "train_resources", "positive amounts"),
    ({"train_resources": ["accel"]}, "train_resources", "positive amounts"),
    ({"train_resources": {"GPU": 1}}, "train_resources", "set by trex-ray"),
    ({"train_retries": -1}, "train_retries", ">= 0"),
    ({"train_retries": True}, "train_retries", ">= 0"),
    ({"train_workers": 0}, "train_workers", ">= 1"),
    ({"train_workers": 2.0}, "train_workers", ">= 1"),
    ({"warm_start": "no"}, "warm_start", "true or false"),
    ({"recipe_cache": 0}, "recipe_cache", "true or false"),
    ({"detach": "yes"}, "detach", "true or false"),
])
def test_cluster_settings_are_checked_before_any_folder_is_made(data_files, tmp_path, kwargs, field, words):
    from trex_ray import Task
    from trex_ray.executor.train import train_bundle
    from trex_ray.search import search

    task = Task.from_jsonl("t", data_files["train"], data_files["val"], data_files["test"], input_field="question",
                           output_field="answer")
    with pytest.raises(ConfigError) as e:
        search(task, base_model="tiny-random", storage=str(tmp_path / "runs"), **kwargs)
    assert e.value.field == field and words in str(e.value)
    assert not (tmp_path / "runs").exists()
    assert train_bundle(False, {"accel": 1}) == {"CPU": 1, "accel": 1}
    assert train_bundle(True, None) == {"GPU": 1}


def test_a_worker_asks_for_its_cpu_or_gpu_plus_the_extra_resources():
    from trex_ray.executor.train import worker_resources

    assert worker_resources(False, None) == {"CPU": 1}
    assert worker_resources(False, {"accel": 1}) == {"CPU": 1, "accel": 1}
    assert worker_resources(True, None) is None  # Ray Train gives each worker one GPU
    assert worker_resources(True, {"accel": 1}) == {"accel": 1}


def test_a_packaged_model_path_from_another_machine_is_materialised_here(tmp_path, monkeypatch):
    from trex_ray.models import PACKAGED_VERSION, local_model

    monkeypatch.setenv("TREX_RAY_CACHE", str(tmp_path / "here"))
    elsewhere = f"/nonexistent/driver/cache/models/tiny-random-v{PACKAGED_VERSION['tiny-random']}"
    path = local_model(elsewhere)
    assert path.startswith(str(tmp_path / "here")) and os.path.exists(os.path.join(path, "config.json"))
    assert local_model(path) == path  # present: unchanged
    assert local_model("/nonexistent/some-org-model") == "/nonexistent/some-org-model"  # not ours: as given


def test_more_training_workers_than_this_machines_gpus_is_refused(data_files, tmp_path, monkeypatch):
    """On a machine whose Ray this search started, a trial of more workers than free GPUs would wait forever."""
    import ray

    from trex_ray import Task
    from trex_ray.search import search

    monkeypatch.setattr("trex_ray.runtime.init_ray", lambda *a, **k: None)
    monkeypatch.setattr("trex_ray.runtime.owns_cluster", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    task = Task.from_jsonl("t", data_files["train"], data_files["val"], data_files["test"], input_field="question",
                           output_field="answer")
    with pytest.raises(ConfigError) as e:
        search(task, base_model="tiny-random", storage=str(tmp_path / "runs"), train_workers=4, evaluator="transformers")
    assert e.value.field == "train_workers" and "has 2" in str(e.value) and "train_workers <= 2" in e.value.fix


def test_the_clock_example_runs_as_written_its_data_is_the_demo_task(tmp_path):
    """`trex-ray run examples/clock.yaml` right after set-up: its data folder is in the repository (so `ray job
    submit --working-dir .` uploads it too) and is exactly what the demo task writes; the config validates."""
    import filecmp

    from tests.conftest import REPO
    from trex_ray.demo import write_demo_task

    written = write_demo_task(str(tmp_path / "demo"))
    for split, path in written.items():
        assert filecmp.cmp(path, REPO / "examples" / "clock-data" / f"{split}.jsonl", shallow=False), split
    cfg = build(load_config(str(REPO / "examples" / "clock.yaml")))
    assert cfg.task.name == "clock" and len(cfg.task.rows("train")) == 176 and cfg.settings.budget.trials == 6
    ignored = subprocess.run(["git", "check-ignore", "-q", "examples/clock-data/train.jsonl"], cwd=REPO)
    assert ignored.returncode != 0  # not git-ignored (1; 128 outside a git checkout): Ray's upload takes it


def test_the_readme_lists_every_researcher_and_built_in_metric():
    from tests.conftest import REPO
    from trex_ray.metrics import _BUILTIN
    from trex_ray.researcher.base import RESEARCHERS

    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `researcher` |"))
    assert all(f"`{r}`" in row for r in RESEARCHERS), row
    metrics = readme[readme.index("Metrics (`trex_ray/metrics.py`"):][:1200]
    missing = [m for m in _BUILTIN if f"`{m}`" not in metrics]
    assert not missing, missing
