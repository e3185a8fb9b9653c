"""trex-ray: automated LLM fine-tuning as a tree search (TREX) on Ray.

    import trex_ray
    task = trex_ray.Task.from_jsonl(name="clock", train=..., val=..., test=..., input_field="question",
                                    output_field="answer", metric="exact_match", goal="...")
    result = trex_ray.search(task, base_model="smollm2-135m", budget=trex_ray.Budget(trials=6))

Importing the package is light: Ray, torch and transformers load only when a search runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Task", "Budget", "Plan", "search", "SearchSettings", "load_run", "SearchResult", "ConfigError", "demo_task"]
__version__ = "0.1.0"

_LAZY = {
    "Task": "trex_ray.task",
    "Budget": "trex_ray.budget",
    "Plan": "trex_ray.plan",
    "search": "trex_ray.search",
    "SearchSettings": "trex_ray.settings",
    "SearchResult": "trex_ray.results",
    "ConfigError": "trex_ray.errors",
    "demo_task": "trex_ray.demo",
}

if TYPE_CHECKING:  # pragma: no cover
    from trex_ray.budget import Budget
    from trex_ray.demo import demo_task
    from trex_ray.errors import ConfigError
    from trex_ray.plan import Plan
    from trex_ray.results import SearchResult
    from trex_ray.search import search
    from trex_ray.settings import SearchSettings
    from trex_ray.task import Task


def load_run(path: str) -> "SearchResult":
    """The SearchResult of a run folder (or of a run at a storage URI, fetched into its local mirror),
    rebuilt from its journal: `.best`, `.nodes`, `.to_pandas()`, `.insights`, `.load_model()`, `.export()`."""
    from trex_ray.runs import load_result, local_run_dir

    return load_result(local_run_dir(path))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trex_ray' has no attribute {name!r}")
