"""What every op shares: the argument base model and the context an op may read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict


def shuffle_partitions() -> int:
    """Partitions of the hash shuffles behind key-based ops (exact dedup, per-label selection).

    Each partition is an aggregator actor, whose start-up dominates on small clusters and small data
    (8 partitions took 2x longer than 1 on 2 cores for 5k rows): one per 4 CPUs of the cluster, 1 to 8.
    `TREX_RAY_SHUFFLE_PARTITIONS` overrides it."""
    if os.environ.get("TREX_RAY_SHUFFLE_PARTITIONS"):
        return max(1, int(os.environ["TREX_RAY_SHUFFLE_PARTITIONS"]))
    import ray

    return max(1, min(8, int(ray.cluster_resources().get("CPU", 1)) // 4))


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
