"""The flat run config shared by the CLI's YAML files and `trex-ray resume`: keys are named like the
arguments of `trex_ray.search` and `Task`, and every key can be overridden on the command line.

    # trex-ray run examples/clock.yaml --storage runs/
    name: clock
    train: data/train.jsonl
    ...
"""

from __future__ import annotations

import os
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trex_ray.errors import ConfigError


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # the task
    name: str = Field(description="Task name (run folders are named after it).")
    goal: str = Field("", description="What the model should learn to do, in words.")
    train: str = Field(description="Training JSONL file.")
    val: str = Field(description="Validation JSONL file.")
    test: str = Field(description="Test JSONL file (used once, on the best node).")
    input_field: str = Field("input", description="Input field name in the JSONL rows.")
    output_field: str = Field("output", description="Output field name in the JSONL rows.")
    metric: str = Field("exact_match", description="Primary metric.")
    labels: list[str] | None = Field(None, description="Label set for classification metrics.")
    scoring: Literal["generate", "loglik"] = Field("generate", description="generate (greedy answers) or loglik (likeliest option).")
    options_field: str | None = Field(None, description="Field with each row's answer options (loglik scoring).")
    metric_options: dict | None = Field(None, description="Options of the metric, e.g. {average: macro}.")
    context_field: str | None = Field(None, description="Field with what a row's grading needs (metrics that grade with a context).")
    # the search
    base_model: str = Field("smollm2-135m", description="Packaged model name, HF id or local checkpoint dir.")
    storage: str = Field("runs", description="Folder for run folders and the dataset cache.")
    run_name: str | None = Field(None, description="Run folder name (default: <name>-<timestamp>).")
    trials: int | None = Field(6, description="Budget: fine-tuning trials.")
    wall_clock_s: float | None = Field(None, description="Budget: wall-clock seconds.")
    accelerator_hours: float | None = Field(None, description="Budget: device-hours of training and eval.")
    max_concurrent: int | str = Field(2, description="Trials in flight at once, or auto (as many as the "
                                                  "cluster's GPUs, or CPUs, can run).")
    policy: str = Field("mcts", description="Selection policy: mcts, greedy, sequential, random.")
    researcher: str = Field("heuristic", description="Researcher: heuristic (offline), auto, anthropic, openai, vllm, local.")
    researcher_llm: dict | None = Field(None, description="The researcher's LLM: {model, base_url, api_key_env, ...} "
                                        "(the key itself stays in the environment).")
    notes_dir: str | None = Field(None, description="A folder of papers/notes the researcher may read.")
    llm_usd: float | None = Field(None, description="Budget: dollars of researcher LLM calls.")
    seed: int = Field(0, description="Search seed.")
    evaluator: str = Field("auto", description="Evaluation backend: auto (vLLM when installed and on GPUs, else "
                           "transformers), vllm, transformers.")
    eval_options: dict | None = Field(None, description="vLLM engine settings: replicas, max_engines, max_model_len, "
                                      "tensor_parallel_size, max_loras, max_lora_rank, dtype, kv_cache_gb.")
    address: str | None = Field(None, description="Ray cluster address (default: local Ray or RAY_ADDRESS).")
    trial_timeout_s: float | None = Field(None, gt=0, description="A trial running longer is stopped and recorded as "
                                          "failed (timeout); its resources are freed.")
    trial_memory_gb: float | None = Field(None, gt=0, description="Memory a training worker may take on top of its "
                                          "model (Linux); past it the trial retries in micro-batches, then fails.")
    train_resources: dict | None = Field(None, description="Resources each training worker asks for beyond its "
                                         "CPU or GPU, e.g. {accel: 1} (a custom resource of your GPU nodes).")
    train_retries: int = Field(1, ge=0, description="Times a training run whose workers or node died is started "
                               "again before the trial counts as failed.")
    train_workers: int = Field(1, ge=1, description="Training workers per trial, data parallel (one GPU each on GPU "
                               "clusters, else one CPU each); every step averages their gradients.")
    detach: bool = Field(False, description="Keep the tree actor alive if the driver dies (trex-ray status still "
                         "answers; resume takes over).")
    warm_start: bool = Field(True, description="Let plans continue from their parent's adapter (warm start); "
                             "false trains every node from the base model.")
    recipe_cache: bool = Field(True, description="Reuse a prepared dataset when a recipe was already run; false "
                               "prepares the data of every trial anew.")
    data_llm: dict | None = Field(None, description="LLM of generating/judging data ops, e.g. {model: smollm2-135m} "
                                  "(default: the base model, run locally).")

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if isinstance(v, list) and any(isinstance(x, bool) for x in v):
            raise ValueError(f"YAML read {v!r}: yes/no/true/false/on/off unquoted are booleans; quote the labels, "
                             "e.g. labels: [\"yes\", \"no\"]")
        return v

    @field_validator("max_concurrent", mode="before")
    @classmethod
    def _concurrency(cls, v: Any) -> int | str:
        if v == "auto":
            return v
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise ValueError(f"must be a whole number or auto, got {v!r}") from None
        if n != v and str(n) != str(v).strip() or n < 1:
            raise ValueError(f"must be greater than or equal to 1 (or auto), got {v!r}")
        return n

    def task(self):
        from trex_ray.task import Task

        base = os.getcwd()
        paths = {s: getattr(self, s) for s in ("train", "val", "test")}
        return Task(name=self.name, goal=self.goal, input_field=self.input_field, output_field=self.output_field,
                    metric=self.metric, labels=self.labels, scoring=self.scoring,
                    options_field=self.options_field, metric_options=self.metric_options or {},
                    context_field=self.context_field,
                    **{k: v if os.path.isabs(v) else os.path.join(base, v) for k, v in paths.items()})

    def budget(self):
        from trex_ray.budget import Budget

        try:
            return Budget(trials=self.trials, wall_clock_s=self.wall_clock_s, accelerator_hours=self.accelerator_hours,
                          llm_usd=self.llm_usd)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "budget"
            raise ConfigError(field, err["msg"].removeprefix("Value error, "), "give a positive budget (e.g. trials: 6)") from None

    def search_kwargs(self) -> dict[str, Any]:
        return dict(base_model=self.base_model, budget=self.budget(), researcher=self.researcher, policy=self.policy,
                    max_concurrent=self.max_concurrent, storage=self.storage, run_name=self.run_name, seed=self.seed,
                    evaluator=self.evaluator, eval_options=self.eval_options, address=self.address, data_llm=self.data_llm,
                    researcher_llm=self.researcher_llm, notes_dir=self.notes_dir, trial_timeout_s=self.trial_timeout_s,
                    trial_memory_gb=self.trial_memory_gb, train_resources=self.train_resources,
                    train_retries=self.train_retries, train_workers=self.train_workers, detach=self.detach,
                    warm_start=self.warm_start, recipe_cache=self.recipe_cache)


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


def build(data: dict) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            raise ConfigError(field, "unknown config key", f"known keys: {', '.join(RunConfig.model_fields)}") from None
        if err["type"] == "missing":
            raise ConfigError(field, "missing", f"add `{field}: ...` to the config or pass --{field}") from None
        raise ConfigError(field, err["msg"].removeprefix("Value error, "), f"fix the value of {field}") from None
