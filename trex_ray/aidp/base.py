"""What every op shares: the argument base model and the context an op may read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict


# Partitions of the hash shuffles behind groupby-based ops (exact dedup, per-label selection). Ray Data's
# default (200) suits large clusters; a recipe's data is usually small, where each partition is a task.
SHUFFLE_PARTITIONS = int(os.environ.get("TREX_RAY_SHUFFLE_PARTITIONS", "8"))


class OpArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class OpContext:
    """The task's files and fields, the tokenizer, the eval splits (for decontamination), and where this op
    stands in the recipe and reports its statistics."""

    train_path: str
    input_field: str
    output_field: str
    tokenizer_path: str | None = None
    eval_paths: tuple[str, ...] = ()
    index: int = 0
    stats: Any = None
    seed: int = 0
    goal: str = ""  # the task's goal, for ops that prompt an LLM
    llm: Any = None  # an LLMSpec for LLM ops; None means the packaged local model
    threads: int | None = None  # torch threads of model-running actors (None: torch's default)
    use_gpu: bool = False  # run LLM and embedding actors on GPUs


@dataclass(frozen=True)
class Op:
    name: str
    args: type[OpArgs]
    description: str
    apply: Callable[[Any, Any, OpContext], Any]
    kind: str = "transform"  # source | transform | filter | dedup | select | generate
    needs_llm: bool = False
    needs_embedding: bool = False
    needs_gpu: bool = False
    extra: dict = field(default_factory=dict)
