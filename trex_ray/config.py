"""The flat run config of the CLI's YAML files and of a run folder's config.yaml (`trex-ray resume`):
the keys are the fields of `Task`, the settings of `SearchSettings` and, flat, the limits of `Budget`,
each declared (and documented) there; every key can be overridden on the command line.

    # trex-ray run examples/clock.yaml --storage runs/
    name: clock
    train: data/train.jsonl
    trials: 6                 # or nested: budget: {trials: 6, wall_clock_s: 1800}
    ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from trex_ray.budget import Budget
from trex_ray.errors import ConfigError
from trex_ray.settings import SearchSettings, config_error
from trex_ray.task import Task

# every key of a config, with the model that declares it: the task's, the budget's, then the search's
FIELDS: dict[str, FieldInfo] = {**Task.model_fields, **Budget.model_fields,
                                **{k: f for k, f in SearchSettings.model_fields.items() if k != "budget"}}


@dataclass(frozen=True)
class RunConfig:
    task: Task
    settings: SearchSettings


def flatten_budget(data: dict) -> dict:
    """A nested `budget: {trials: 4, wall_clock_s: 600}` as the flat keys; a flat key given as well (a
    command-line override) wins."""
    if "budget" not in data:
        return data
    data = dict(data)
    nested = data.pop("budget")
    if nested is None:
        return data
    if not isinstance(nested, dict):
        raise ConfigError("budget", f"must be a mapping of limits, got {nested!r}",
                          f"e.g. budget: {{trials: 4, wall_clock_s: 600}} (limits: {', '.join(Budget.model_fields)})")
    for k, v in nested.items():
        if k not in Budget.model_fields:
            raise ConfigError(f"budget.{k}", "unknown budget limit", f"known: {', '.join(Budget.model_fields)}")
        data.setdefault(k, v)
    return data


def build(data: dict) -> RunConfig:
    """A config mapping (YAML, with command-line overrides on top) as the task and the search's settings."""
    data = flatten_budget(data)
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise ConfigError(unknown[0], "unknown config key", f"known keys: {', '.join(FIELDS)}")
    part = {name: {k: v for k, v in data.items() if k in model.model_fields}
            for name, model in (("task", Task), ("budget", Budget))}
    try:
        task = Task.model_validate(part["task"])
    except ValidationError as e:
        err = e.errors()[0]
        if err["type"] == "missing":
            field = ".".join(str(x) for x in err["loc"])
            raise ConfigError(field, "missing", f"add `{field}: ...` to the config or pass --{field}") from None
        raise config_error(e) from None
    try:
        budget = Budget.model_validate(part["budget"])
    except ValidationError as e:
        raise ConfigError(config_error(e).field if e.errors()[0]["loc"] else "budget",
                          e.errors()[0]["msg"].removeprefix("Value error, "),
                          "give a positive budget (e.g. trials: 6)") from None
    rest = {k: v for k, v in data.items() if k in SearchSettings.model_fields}
    return RunConfig(task, SearchSettings.of(rest, budget=budget))


def load_config(path: str) -> dict:
    """A `trex-ray run` YAML as a mapping, its relative data paths made relative to the file."""
    data = load_yaml(path)
    base = os.path.dirname(os.path.abspath(path))
    if data.get("hf"):  # train/val/test name the dataset's splits; a local dataset folder is relative to the file
        hf = str(data["hf"])
        if not os.path.isabs(hf) and os.path.exists(os.path.join(base, hf)):
            data["hf"] = os.path.join(base, hf)
        return data
    for split in ("train", "val", "test"):
        if isinstance(data.get(split), str) and not os.path.isabs(data[split]):
            data[split] = os.path.join(base, data[split])
    return data


def load_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError("config", f"file not found: {path}", "give the path of a YAML config file")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("config", f"{path} is not valid YAML{where}: {getattr(e, 'problem', e)}",
                          "fix the YAML syntax (keys as `key: value`)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of keys to values", "write `key: value` lines")
    return data
