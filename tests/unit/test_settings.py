"""`SearchSettings`: one declaration of every setting, read by `search()`, the YAML config, the command
line and a run folder's config.yaml; and run folders written before it still resume."""

from __future__ import annotations

import pytest
import yaml

from trex_ray.budget import Budget
from trex_ray.config import FIELDS, build
from trex_ray.errors import ConfigError
from trex_ray.settings import SESSION_ONLY, SearchSettings
from trex_ray.task import Task

# config.yaml exactly as the version before SearchSettings wrote it (an FT-Bench run, `trex-ray resume`s it)
OLD_CONFIG = """\
# resume with: trex-ray resume /tmp/sst/runs/sst2-lite
name: ftbench-sst2-lite
goal: Classify the sentiment of a movie-review sentence as positive or negative; answer
  with the single word.
train: /tmp/sst/runs/data/sst2-lite/train.jsonl
val: /tmp/sst/runs/data/sst2-lite/val.jsonl
test: /tmp/sst/runs/data/sst2-lite/test.jsonl
input_field: input
output_field: output
metric: accuracy
labels:
- negative
- positive
scoring: generate
metric_options: {}
base_model: smollm2-135m
researcher: heuristic
researcher_llm: null
policy: mcts
max_concurrent: 1
seed: 0
evaluator: auto
eval_options: {}
data_llm:
  backend: local
  model: smollm2-135m
  engine: transformers
  max_model_len: null
  max_tokens: null
  batch_size: 16
  base_url: null
  api_key_env: null
  max_retries: 4
  timeout_s: 120.0
  price_in: null
  price_out: null
trial_timeout_s: null
trial_memory_gb: null
train_resources: null
train_retries: 1
train_workers: 1
warm_start: true
recipe_cache: true
storage: /tmp/sst/runs
run_name: sst2-lite
trials: 1
"""


def test_every_config_key_is_declared_once_by_the_model_it_belongs_to():
    task, budget = set(Task.model_fields), set(Budget.model_fields)
    settings = set(SearchSettings.model_fields) - {"budget"}
    assert not (task & budget or task & settings or budget & settings)
    assert set(FIELDS) == task | budget | settings
    assert all(FIELDS[k].description for k in FIELDS)  # documented where declared


def test_every_setting_is_a_command_line_flag():
    import argparse

    from trex_ray.cli import _add_overrides

    p = argparse.ArgumentParser()
    _add_overrides(p)
    flags = {a.dest for a in p._actions if a.dest != "help"}
    assert flags == set(FIELDS)


def test_a_config_written_by_the_previous_version_loads_unchanged():
    cfg = build(yaml.safe_load(OLD_CONFIG))
    s = cfg.settings
    assert cfg.task.name == "ftbench-sst2-lite" and cfg.task.labels == ["negative", "positive"]
    assert s.budget == Budget(trials=1) and s.max_concurrent == 1 and s.storage == "/tmp/sst/runs"
    assert s.data_llm.model == "smollm2-135m" and s.eval_options.as_kwargs() == {}
    # and what this version writes has the same keys, so the next version reads it the same way
    old = {k for k in yaml.safe_load(OLD_CONFIG) if k not in Task.model_fields}
    assert old <= set(s.persisted()) | {"storage", "run_name"}


def test_persisted_settings_come_back_as_they_were():
    s = SearchSettings.of(base_model="tiny-random", budget=Budget(trials=3, wall_clock_s=60), max_concurrent="auto",
                          eval_options={"replicas": "2"}, train_resources={"accel": 1}, warm_start=False,
                          progress=False, address="10.0.0.1:6379")
    saved = s.persisted()
    assert not set(SESSION_ONLY) & set(saved)  # where and how this session runs is not the run's
    back = build({"name": "t", "train": "a", "val": "b", "test": "c", **yaml.safe_load(yaml.safe_dump(saved))}).settings
    assert back.model_dump(exclude=set(SESSION_ONLY)) == s.model_dump(exclude=set(SESSION_ONLY))


def test_keyword_arguments_and_a_settings_object_mix():
    base = SearchSettings.of(base_model="tiny-random", policy="greedy")
    s = SearchSettings.of(base, max_concurrent=3)
    assert (s.base_model, s.policy, s.max_concurrent) == ("tiny-random", "greedy", 3)
    assert SearchSettings.of(base, base_model=None).base_model == "tiny-random"  # None: not given
    # data ops use the base model unless told otherwise, also when the base model is overridden
    assert SearchSettings.of(base, base_model="smollm2-135m").data_llm.model == "smollm2-135m"


@pytest.mark.parametrize("kwargs, field, words", [
    ({"max_concurent": 2}, "max_concurent", "known: base_model"),
    ({"policy": "bfs"}, "policy", "mcts"),
    ({"researcher": "gpt"}, "researcher", "heuristic"),
    ({"evaluator": "tensorrt"}, "evaluator", "transformers"),
    ({"budget": {"trials": 0}}, "budget.trials", "greater than or equal to 1"),
    ({"base_model": "no-such-model-dir"}, "base_model", ""),
    ({"seed": 1.5}, "seed", "whole number"),
])
def test_a_bad_setting_names_itself(kwargs, field, words):
    with pytest.raises(ConfigError) as e:
        SearchSettings.of(**{"base_model": "tiny-random", **kwargs})
    assert e.value.field == field and words in str(e.value)


def test_search_refuses_an_unknown_keyword_before_touching_anything(data_files, tmp_path):
    from trex_ray.search import search

    task = Task.from_jsonl("t", data_files["train"], data_files["val"], data_files["test"], input_field="question",
                           output_field="answer")
    with pytest.raises(ConfigError) as e:
        search(task, base_model="tiny-random", storage=str(tmp_path / "runs"), trails=3)
    assert e.value.field == "trails" and "max_concurrent" in e.value.fix
    assert not (tmp_path / "runs").exists()


def test_callbacks_are_checked_up_front_and_kept_out_of_the_run_config():
    from trex_ray.callbacks import Callback, TensorBoardTracker, make_callbacks
    from trex_ray.errors import ConfigError
    from trex_ray.settings import SearchSettings

    class Mine(Callback):
        pass

    with pytest.raises(ConfigError) as e:
        SearchSettings.of(callbacks=["mlflow", "neptune"])
    assert e.value.field == "callbacks" and "neptune" in str(e.value) and "wandb" in e.value.fix
    s = SearchSettings(callbacks=["tensorboard", Mine()])
    made = make_callbacks(s.callbacks)
    assert isinstance(made[0], TensorBoardTracker) and isinstance(made[1], Mine)
    assert "callbacks" not in s.persisted()  # a session's receivers, not the run's: a resume names its own
    assert SearchSettings(callbacks="wandb").callbacks == ["wandb"]


def test_a_plan_flattens_into_tracker_parameters():
    from trex_ray.callbacks import flatten

    flat = flatten({"direction": "d", "recipe": {"ops": [{"load": {}}, {"format": {"template": "Q: {input}"}}]},
                    "train": {"lr": 0.1, "target_modules": ["q_proj", "v_proj"]}})
    assert flat == {"direction": "d", "recipe.ops.0.load": "{}", "recipe.ops.1.format.template": "Q: {input}",
                    "train.lr": 0.1, "train.target_modules": '["q_proj", "v_proj"]'}
