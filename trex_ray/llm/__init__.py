"""LLM backends: one interface (`LLM.chat`) shared by the Researcher and the data ops that generate or
judge text. `make_llm(LLMSpec)` builds one; `local` runs a model on this machine through the evaluation
engine, so everything that needs an LLM also works offline.
"""

from trex_ray.llm.base import LLM, LLMSpec, make_llm

__all__ = ["LLM", "LLMSpec", "make_llm"]
