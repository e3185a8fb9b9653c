"""Researchers: the agent that analyses the task, proposes plans, diagnoses results and distils
insights. `Researcher` is the Protocol; `HeuristicResearcher` is the offline default."""

from trex_ray.researcher.base import RESEARCHERS, Researcher, make_researcher

__all__ = ["RESEARCHERS", "Researcher", "make_researcher"]
