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

from pydantic import Field, ValidationError, model_validator

from trex_ray.aidp.recipe import OpCall, Recipe, Strict, _validation_message
from trex_ray.errors import ConfigError

__all__ = ["OpCall", "Recipe", "TrainConfig", "EvalConfig", "Plan"]


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
    patience: int = Field(2, ge=0, le=50, description="In-training val evaluations without improvement before the "
                          "trial stops (the best checkpoint is kept); 0 trains every epoch of the plan, unchecked.")
    eval_every: int | None = Field(None, ge=1, description="Optimizer steps between in-training val evaluations "
                                   "(default: once an epoch, and at most 8 times in a run).")
    quantization: Literal["none", "4bit"] = Field("none", description="4bit: the frozen base weights in 4-bit NF4 "
                                                  "(bitsandbytes) under the LoRA adapter, QLoRA: about a quarter of "
                                                  "the base model's memory. LoRA only, on CUDA GPUs only.")
    lora_dtype: Literal["fp32", "model"] = Field("fp32", description="The LoRA adapter's weights (and so its "
                                                 "inputs): fp32 (PEFT's default, each adapter input cast up) or "
                                                 "the model's dtype (bf16 on GPU: no casts, half the adapter memory).")
    padding_free: bool = Field(False, description="Each micro-batch is one row: its examples (or packs) end to end, "
                               "position ids restarting at each, so no token is padding and each example attends "
                               "only to itself.")
    liger: bool = Field(False, description="Liger kernels (fused linear cross-entropy, RMSNorm, SwiGLU, RoPE) in the "
                        "model: less memory and time per token. CUDA GPUs only, with the liger-kernel package "
                        "(pip install 'trex-ray[fast]').")
    compile: bool = Field(False, description="torch.compile the model's forward: a slower first step (compiling), "
                          "faster steps after it.")

    @model_validator(mode="after")
    def _quantized_lora(self) -> "TrainConfig":
        if self.quantization != "none" and self.method != "lora":
            raise ValueError(f"quantization {self.quantization} needs method lora: a quantized base is frozen, "
                             "only an adapter on it trains")
        return self


# settings added after plans were first journalled: left out of a plan's signature while at their default,
# so the signatures of earlier runs' plans stay what they were
_LATE_TRAIN_DEFAULTS = {"packing": False, "gradient_checkpointing": False, "precision": "auto", "patience": 2,
                        "eval_every": None, "quantization": "none", "lora_dtype": "fp32", "padding_free": False,
                        "liger": False, "compile": False}


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

    def within(self, *, warm_start: bool = True, max_epochs: float | None = None, quantization: str | None = None,
               gpu: bool = True) -> "Plan":
        """This plan within a search's limits, whoever wrote it: no warm start where reuse is off, no more
        epochs than the search's cap, the search's quantization (QLoRA) on every plan and none without a
        GPU, no Liger kernels without one; each change said in the rationale."""
        plan = self
        want = quantization or plan.train.quantization
        if want != "none" and not gpu:
            want = "none"
        if want != plan.train.quantization:
            note = (f"(quantization {want}: this search trains a LoRA adapter on a {want} base)" if want != "none"
                    else f"(quantization {plan.train.quantization} needs a CUDA GPU: trained on the full-precision base)")
            update = {"quantization": want, **({"method": "lora"} if want != "none" else {})}
            plan = plan.model_copy(update={
                "train": TrainConfig.model_validate({**plan.train.model_dump(), **update}),
                "rationale": (plan.rationale + " " + note).strip()})
        if plan.train.liger and not gpu:
            plan = plan.model_copy(update={
                "train": plan.train.model_copy(update={"liger": False}),
                "rationale": (plan.rationale + " (Liger kernels need a CUDA GPU: trained without them)").strip()})
        if not warm_start and plan.train.warm_start == "parent":
            plan = plan.model_copy(update={
                "train": plan.train.model_copy(update={"warm_start": "base"}),
                "rationale": (plan.rationale + " (warm start is off in this search: trained from the base "
                              "model)").strip()})
        if max_epochs is not None and plan.train.epochs > max_epochs:
            plan = plan.model_copy(update={
                "train": plan.train.model_copy(update={"epochs": max_epochs}),
                "rationale": (plan.rationale + f" (cut from {plan.train.epochs:g} to this search's max_epochs "
                              f"{max_epochs:g})").strip()})
        return plan

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
