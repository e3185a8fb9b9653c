"""Plans: what one experiment (one tree node) does, as validated data.

A `Plan` is written by a Researcher (heuristic or LLM) and executed by the Executor; nothing in it is
ever run as code. It holds a coarse `direction` with its rationale, a data `Recipe` (ordered AIDP ops),
a `TrainConfig` and an `EvalConfig`. Recipes are also writable by hand as YAML:

    ops:
      - load: {split: train}
      - dedup_exact: {}
      - format: {template: "Q: {input}"}
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trex_ray.aidp.ops import OPS, FormatArgs
from trex_ray.errors import ConfigError




class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpCall(Strict):
    """One step of a recipe: an op name from the registry and its validated arguments."""

    op: str
    args: dict[str, Any] = Field(default_factory=dict)


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(arguments)"
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


class Recipe(Strict):
    ops: list[OpCall] = Field(description="Ordered data operators: `load` first, `format` last.")

    @field_validator("ops", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("ops must be a list of `- op_name: {args}` entries")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, OpCall):
                out.append(item)
                continue
            if isinstance(item, dict) and set(item) <= {"op", "args"} and "op" in item:
                name, args = item["op"], item.get("args") or {}
            elif isinstance(item, dict) and len(item) == 1:
                name, args = next(iter(item.items()))
                args = args or {}
            else:
                raise ValueError(f"ops[{i}] must be a mapping with exactly one op name, got {item!r}")
            if name not in OPS:
                raise ValueError(f"ops[{i}]: unknown op {name!r}; known ops: {', '.join(sorted(OPS))}")
            if not isinstance(args, dict):
                raise ValueError(f"ops[{i}] ({name}): arguments must be a mapping, got {args!r}")
            try:
                parsed = OPS[name].args.model_validate(args)
            except ValidationError as e:
                raise ValueError(f"ops[{i}] ({name}): {_validation_message(e)}") from None
            out.append(OpCall(op=name, args=parsed.model_dump(exclude_defaults=True)))
        return out

    @model_validator(mode="after")
    def _shape(self) -> "Recipe":
        names = [o.op for o in self.ops]
        if not names or names[0] != "load":
            raise ValueError("the first op must be `load`")
        if names.count("format") != 1 or names[-1] != "format":
            raise ValueError("a recipe needs exactly one `format` op, as its last op (it defines the prompt used in "
                             "training and eval)")
        if names.count("load") != 1:
            raise ValueError("a recipe has one `load` op; use `mix` to add more sources")
        return self

    def typed(self) -> list[tuple[str, Any]]:
        """(name, validated args model) pairs, in order."""
        return [(o.op, OPS[o.op].args.model_validate(o.args)) for o in self.ops]

    @property
    def prompt(self) -> FormatArgs:
        return next(a for n, a in self.typed() if n == "format")

    def to_yaml_list(self) -> list[dict]:
        return [{o.op: dict(o.args)} for o in self.ops]


class TrainConfig(Strict):
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapter or full fine-tune.")
    lora_r: int = Field(8, ge=1, le=512, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], description="Module names LoRA wraps."
    )
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="Peak learning rate (AdamW, linear decay).")
    epochs: float = Field(2.0, gt=0, le=100, description="Passes over the prepared data.")
    batch_size: int = Field(8, ge=1, le=4096, description="Examples per optimizer step (per worker).")
    max_seq_len: int = Field(128, ge=16, le=32768, description="Token limit of prompt+answer; longer rows are cut.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Fraction of steps of linear warm-up.")
    weight_decay: float = Field(0.0, ge=0, lt=1, description="AdamW weight decay.")
    warm_start: Literal["base", "parent"] = Field(
        "base", description="Start from the base model or continue from the parent node's adapter."
    )
    seed: int = Field(0, description="Seed for init, shuffling and dropout.")
    packing: bool = Field(False, description="Concatenate examples into sequences of up to max_seq_len (no padding; "
                          "each example attends only to itself); batch_size then counts packed sequences.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass: less memory, "
                                         "about a third more compute.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="Weights and compute dtype; auto is bf16 on "
                                                       "GPU and fp32 on CPU.")


# settings added after plans were first journalled: left out of a plan's signature while at their default,
# so the signatures of earlier runs' plans stay what they were
_LATE_TRAIN_DEFAULTS = {"packing": False, "gradient_checkpointing": False, "precision": "auto"}


class EvalConfig(Strict):
    max_new_tokens: int = Field(32, ge=1, le=4096, description="Greedy decoding length limit.")
    batch_size: int = Field(32, ge=1, le=1024, description="Prompts per generation batch.")
    num_bad_cases: int = Field(20, ge=0, le=1000, description="Failing examples kept for diagnosis.")


class Plan(Strict):
    direction: str = Field(description="The coarse direction, e.g. 'more epochs' or 'clean data'.")
    rationale: str = Field("", description="Why this plan, in a sentence or two.")
    recipe: Recipe
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    author: str = Field("", description="Who wrote the plan and how; filled in by trex-ray, not by the researcher.")

    def signature(self, parent_id: int | None = None) -> str:
        """A hash of what the plan does (recipe, training and eval config; not its words or seed). A plan
        that warm-starts from its parent is a different experiment under each parent."""
        body = {
            "from": parent_id if self.train.warm_start == "parent" else None,
            "recipe": self.recipe.model_dump(),
            "train": {k: v for k, v in self.train.model_dump(exclude={"seed"}).items()
                      if _LATE_TRAIN_DEFAULTS.get(k, object()) != v},
            "eval": self.eval.model_dump(),
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def parse_plan(data: dict, where: str = "plan") -> Plan:
    """Validate researcher or user output into a Plan, raising ConfigError naming the field."""
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        raise ConfigError(where, _validation_message(e), "fix the named field of the plan") from None


def parse_recipe(data: Any, where: str = "recipe") -> Recipe:
    if isinstance(data, dict) and "ops" in data:
        data = data["ops"]
    try:
        return Recipe(ops=data)
    except ValidationError as e:
        raise ConfigError(where, _validation_message(e), "see `trex_ray.aidp.ops.catalogue()` for ops and arguments") from None
