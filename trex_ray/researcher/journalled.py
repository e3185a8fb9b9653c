"""`Journalled`: a researcher whose every call is followed by a journal entry of the LLM tokens and $ it
spent (the budget reads their sum) and of what happened to its replies (repairs, fallbacks)."""

from __future__ import annotations


class Journalled:
    def __init__(self, agent, tree):
        """`tree`: the run's tree actor (its `record` appends to the journal). Calls may come from several
        threads at once (the search's researcher threads): the accounting takes a lock."""
        import threading

        self.agent, self.tree, self.name = agent, tree, agent.name
        self._seen: dict = {}
        self._events = 0
        self._lock = threading.Lock()

    def _account(self) -> None:
        with self._lock:
            self._account_unlocked()

    def _account_unlocked(self) -> None:
        import ray

        usage = getattr(getattr(self.agent, "llm", None), "usage", None) or {}
        delta = {k: v - self._seen.get(k, 0) for k, v in usage.items() if v != self._seen.get(k, 0)}
        if delta:
            self._seen.update(usage)
            ray.get(self.tree.record.remote({"type": "llm_usage", "usage": delta}))
        events = getattr(self.agent, "events", [])
        for e in events[self._events:]:
            ray.get(self.tree.record.remote({"type": "researcher_event", **e}))
        self._events = len(events)

    def _call(self, method: str, *args):
        try:
            return getattr(self.agent, method)(*args)
        finally:
            self._account()

    def analyze(self, profile, baseline):
        return self._call("analyze", profile, baseline)

    def propose(self, brief, context, rng):
        return self._call("propose", brief, context, rng)

    def diagnose(self, result, parent):
        return self._call("diagnose", result, parent)

    def distill(self, nodes):
        return self._call("distill", nodes)

    def close(self) -> None:
        """The researcher's LLM may hold a model or an engine actor."""
        close = getattr(getattr(self.agent, "llm", None), "close", None)
        if close is not None:
            close()
