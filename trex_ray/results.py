"""Results: what a trial reports (`NodeResult`) and what a search returns (`SearchResult`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field


class NodeResult(BaseModel):
    """One finished trial (or the baseline). Stored in the journal and in nodes/<id>/result.json."""

    status: Literal["ok", "failed"]
    score: float | None = Field(None, description="Primary metric on val.")
    reward: float = Field(0.0, description="Score normalised against the baseline and the metric's best, in [0, 1].")
    metric: str = ""
    val: dict[str, Any] = Field(default_factory=dict, description="Evaluation summary on val (no predictions).")
    bad_cases: list[dict] = Field(default_factory=list)
    data_stats: dict[str, Any] = Field(default_factory=dict)
    train_stats: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)
    error: dict[str, str] | None = None
    seconds: float = 0.0
    accelerator_s: float = Field(0.0, description="Device (or CPU-worker) seconds spent in training and eval.")


@dataclass
class NodeView:
    """A node of a finished search, as users read it."""

    id: int
    parent_id: int | None
    direction: str
    status: str
    val_score: float | None
    test_score: float | None
    plan: dict | None
    result: dict | None
    diagnosis: str | None
    path: str

    @property
    def adapter(self) -> str | None:
        return (self.result or {}).get("artifacts", {}).get("adapter")


@dataclass
class SearchResult:
    run_dir: str
    best: NodeView
    baseline: NodeView
    nodes: list[NodeView]
    insights: list[str] = field(default_factory=list)
    spent: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = ""

    @property
    def gain(self) -> float | None:
        if self.best.test_score is None or self.baseline.test_score is None:
            return None
        return self.best.test_score - self.baseline.test_score

    def summary(self) -> dict:
        return {
            "run_dir": self.run_dir,
            "best_node": self.best.id,
            "best_direction": self.best.direction,
            "baseline": {"val": self.baseline.val_score, "test": self.baseline.test_score},
            "best": {"val": self.best.val_score, "test": self.best.test_score, "adapter": self.best.adapter},
            "test_gain": self.gain,
            "nodes": len(self.nodes),
            "spent": self.spent,
            "stop_reason": self.stop_reason,
            "insights": self.insights,
        }

    def save(self) -> None:
        with open(os.path.join(self.run_dir, "result.json"), "w") as f:
            json.dump(self.summary(), f, indent=2)
