"""Budgets: how much a search may spend. Any combination of limits; the search stops launching at the
first one reached, lets (or, for wall-clock, makes) in-flight trials end, and returns the best so far.
Spending carries across `resume`: trials already in the tree and time already recorded count. A plateau
(`patience_trials` trials in a row without a better val) stops it too, where asked for.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int | None = Field(6, ge=1, description="Fine-tuning trials (tree nodes below the root).")
    wall_clock_s: float | None = Field(None, gt=0, description="Wall-clock seconds for the whole search.")
    accelerator_hours: float | None = Field(
        None, gt=0, description="Device-hours spent in training and evaluation (CPU seconds count on CPU-only runs)."
    )

    llm_usd: float | None = Field(None, gt=0, description="Dollars spent on the researcher's LLM calls.")
    patience_trials: int | None = Field(
        None, ge=1, description="Stop after this many trials in a row finished without beating the best val so far "
        "(a plateau); None: never. Not a limit on its own: set one of the others too.")

    @model_validator(mode="after")
    def _some_limit(self) -> "Budget":
        if self.trials is None and self.wall_clock_s is None and self.accelerator_hours is None and self.llm_usd is None:
            raise ValueError("set at least one of trials, wall_clock_s, accelerator_hours or llm_usd")
        return self


class Spend(BaseModel):
    """What has been spent so far (persisted in result.json, rebuilt from the journal on resume)."""

    trials: int = 0
    wall_clock_s: float = 0.0
    accelerator_s: float = 0.0
    llm_usd: float = 0.0

    def exhausted(self, budget: Budget, since_best: int = 0) -> str | None:
        """The name of the first limit reached, or None. `since_best`: trials finished after the best node
        (the plateau `patience_trials` reads)."""
        if budget.trials is not None and self.trials >= budget.trials:
            return "trials"
        if budget.wall_clock_s is not None and self.wall_clock_s >= budget.wall_clock_s:
            return "wall_clock_s"
        if budget.accelerator_hours is not None and self.accelerator_s >= budget.accelerator_hours * 3600:
            return "accelerator_hours"
        if budget.llm_usd is not None and self.llm_usd >= budget.llm_usd:
            return "llm_usd"
        if budget.patience_trials is not None and since_best >= budget.patience_trials:
            return "patience_trials"
        return None
