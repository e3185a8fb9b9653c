"""The LLM researcher: the TREX Researcher behind any LLM backend (`trex_ray.llm`).

- analyze: an agent loop with research tools (`tools.py`), bounded in calls and time, ending in a brief
  (objective, metric, risks, candidate data sources and methods) that extends the heuristic's numbers.
- propose: coarse to fine. First a direction with its rationale, then a concrete `Plan`, from the
  memory context rendered within a character budget (so prompts stay bounded at any tree size).
- Every reply is validated (JSON, the pydantic schema, ops of the catalogue, not a plan already tried);
  errors go back to the model for at most `max_repairs` turns, then the heuristic researcher proposes
  instead. The plan's `author` records which happened. The search never crashes on a bad reply.
- diagnose: the heuristic's bad-case categories (exact, cheap) plus the model's reading of them.
- distill: the model's insights from the finished nodes; the heuristic's when the reply is unusable.
Prompts live in `prompts/*.md`, one per role.
"""

from __future__ import annotations

import json
import random
import re
import time
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trex_ray.llm.base import LLM
from trex_ray.plan import Plan
from trex_ray.researcher.heuristic import HeuristicResearcher
from trex_ray.researcher.tools import ResearchTools


def prompt(name: str) -> str:
    return resources.files("trex_ray.researcher").joinpath("prompts", f"{name}.md").read_text()


class BriefReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    objective: str
    metric: str
    risks: list[str] = Field(default_factory=list)
    candidate_data_sources: list[str] = Field(default_factory=list)
    candidate_methods: list[str] = Field(default_factory=list)


class DirectionReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    direction: str = Field(min_length=1, max_length=120)
    rationale: str = ""


class DiagnosisReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1)


class InsightsReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    insights: list[str] = Field(min_length=1, max_length=12)


class ReplyError(ValueError):
    """A reply that cannot be used; the message is what the model is told."""


_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


def extract_json(text: str) -> dict:
    """The JSON object in a reply: a fenced block, or the first balanced {...}."""
    m = _FENCE.search(text or "")
    candidates = [m.group(1)] if m else []
    start = (text or "").find("{")
    if start >= 0:
        depth, in_str, esc = 0, False, False
        for i, ch in enumerate(text[start:], start):
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
                continue
            if ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    candidates.append(text[start: i + 1])
                    break
    for c in candidates:
        try:
            obj = json.loads(c)
        except json.JSONDecodeError as e:
            raise ReplyError(f"the JSON object does not parse: {e}") from None
        if isinstance(obj, dict):
            return obj
    raise ReplyError("no JSON object found in the reply")


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}" for err in e.errors()[:8])


def render(obj: Any, budget: int) -> str:
    """Compact JSON of `obj` cut to `budget` characters."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= budget else text[: budget - 40] + f"...(cut {len(text) - budget + 40} chars)"


def context_view(context: dict, budget: int) -> str:
    """The memory context within `budget` characters: the parent in full, then the rest, shrinking the
    lists (oldest first) until it fits."""
    view = {k: v for k, v in context.items() if k not in ("tried",)}
    view["num_tried"] = len(context.get("tried", []))
    parent = dict(view.get("parent") or {})
    parent["bad_cases"] = (parent.get("bad_cases") or [])[:6]
    view["parent"] = parent
    for _ in range(40):
        text = json.dumps(view, ensure_ascii=False, separators=(",", ":"), default=str)
        if len(text) <= budget:
            return text
        longest = max((k for k in ("siblings", "children", "key_nodes", "ancestors", "insights")
                       if view.get(k)), key=lambda k: len(json.dumps(view[k], default=str)), default=None)
        if longest is None:
            break
        view[longest] = view[longest][1:]
    return render(view, budget)


class LLMResearcher:
    """A Researcher whose analysis, plans, diagnoses and insights come from an LLM."""

    def __init__(self, llm: LLM, *, tools: ResearchTools | None = None, max_repairs: int = 2,
                 max_tool_calls: int = 8, tool_time_s: float = 120.0, context_chars: int = 12000,
                 max_tokens: int = 2048):
        self.llm = llm
        self.name = llm.name
        self.tools = tools or ResearchTools()
        self.fallback = HeuristicResearcher()
        self.max_repairs = max_repairs
        self.max_tool_calls = max_tool_calls
        self.tool_time_s = tool_time_s
        self.context_chars = context_chars
        self.max_tokens = max_tokens
        self.events: list[dict] = []  # what happened per call (repairs, fallbacks), for the journal

    # -- the conversation with validation and repair ----------------------------------------------
    def _ask(self, role: str, user: str, parse, *, schema: dict | None = None, tools: bool = False):
        """Ask, validate with `parse(dict)`, send errors back up to max_repairs times. Returns
        (value or None, repairs, last error)."""
        system = prompt("system")
        messages: list[dict] = [{"role": "user", "content": user}]
        specs = self.tools.specs() if tools else []
        calls, t0, repairs, last = 0, time.time(), 0, ""
        while True:
            reply = self.llm.complete(system, messages, tools=specs, max_tokens=self.max_tokens, json_schema=schema)
            if reply.tool_calls:
                messages.append({"role": "assistant", "content": reply.text, "tool_calls": [
                    {"id": c.id, "name": c.name, "args": c.args} for c in reply.tool_calls]})
                for c in reply.tool_calls:
                    calls += 1
                    if calls > self.max_tool_calls or time.time() - t0 > self.tool_time_s:
                        out = "error: the tool budget is spent; write your final answer now"
                        specs = []  # no more tools offered
                    else:
                        out = self.tools.call(c.name, c.args)
                    messages.append({"role": "tool", "tool_call_id": c.id, "name": c.name, "content": out})
                continue
            try:
                return parse(extract_json(reply.text)), repairs, ""
            except ReplyError as e:
                last = str(e)
            except ValidationError as e:
                last = _errors(e)
            if reply.stop == "max_tokens":
                last = f"the reply was cut at the token limit ({self.max_tokens}); be shorter. {last}"
            if repairs >= self.max_repairs:
                self.events.append({"role": role, "outcome": "fallback", "repairs": repairs, "error": last[:500]})
                return None, repairs, last
            repairs += 1
            messages += [{"role": "assistant", "content": reply.text or "(empty)"},
                         {"role": "user", "content": prompt("repair").format(errors=last)}]

    # -- the Researcher protocol ------------------------------------------------------------------
    def analyze(self, profile: dict, baseline: dict) -> dict:
        brief = self.fallback.analyze(profile, baseline)  # the numbers to start from
        user = prompt("analyze").format(
            goal=profile.get("goal") or "(none given)", metric=profile.get("metric"),
            base_model=profile.get("base_model"), profile=render({k: v for k, v in profile.items() if k != "examples"},
                                                                 4000),
            baseline_score=baseline.get("score"), bad_cases=render((baseline.get("bad_cases") or [])[:8], 2000))
        got, repairs, err = self._ask("analyze", user, BriefReply.model_validate, schema=BriefReply.model_json_schema(),
                                      tools=True)
        read = list(getattr(self.tools, "read", None) or [])  # what it searched and found, for the record
        if got is None:
            brief["researcher"] = f"{self.name} (analysis fell back to the heuristic: {err[:200]})"
            return {**brief, "read": read}
        return {**brief, **got.model_dump(), "risks": got.risks + [r for r in brief["risks"] if r not in got.risks],
                "researcher": self.name, "read": read}

    def propose(self, brief: dict, context: dict, rng: random.Random) -> Plan:
        from trex_ray.aidp.ops import OPS

        parent = context["parent"]
        tried = set(context.get("tried", []))
        if parent.get("plan") is None:  # the root: the heuristic's standard first plan is the reference
            first = self.fallback.initial_plan(brief)
            if first.signature(parent["id"]) not in tried:
                return first.model_copy(update={"author": f"{self.name}: standard first plan"})
        view = context_view(context, self.context_chars)
        user = prompt("direction").format(
            parent_id=parent["id"], parent_score=parent.get("score"), baseline_score=context.get("baseline_score"),
            best_score=context.get("best_score"), brief=render({k: v for k, v in brief.items() if k != "data_ops"}, 3000),
            context=view, ops=", ".join(OPS))
        direction, _, err = self._ask("direction", user, DirectionReply.model_validate,
                                      schema=DirectionReply.model_json_schema())
        if direction is None:
            return self._fallback(brief, context, rng, f"direction: {err}")

        parent_plan = parent.get("plan") or self.fallback.initial_plan(brief).model_dump()

        def parse(obj: dict) -> Plan:
            obj = {k: v for k, v in obj.items() if k != "author"}
            obj["direction"] = direction.direction  # the coarse step decided it
            if not obj.get("rationale"):
                obj["rationale"] = direction.rationale
            plan = Plan.model_validate(obj)
            if plan.train.warm_start == "parent" and not (parent.get("plan") and parent.get("status") == "ok"):
                raise ReplyError("train.warm_start is 'parent' but this parent has no adapter; use 'base'")
            if plan.signature(parent["id"]) in tried:
                raise ReplyError("this plan was already tried under this parent; change the recipe or training")
            return plan

        used = {o["op"] if "op" in o else next(iter(o)) for o in (parent_plan.get("recipe") or {}).get("ops", [])}
        schemas = {n: OPS[n].args.model_json_schema() for n in OPS if n in used or n.lower() in
                   direction.direction.lower() or n in ("sample", "length_filter", "dedup_minhash")}
        user = prompt("plan").format(direction=direction.direction, parent_plan=render(parent_plan, 4000),
                                     op_schemas=render(schemas, 5000), num_tried=len(tried),
                                     plan_schema=render(_plan_schema(), 6000))
        plan, repairs, err = self._ask("plan", user, parse, schema=_plan_schema())
        if plan is None:
            return self._fallback(brief, context, rng, f"plan: {err}")
        note = f" after {repairs} repair turn{'s' if repairs > 1 else ''}" if repairs else ""
        self.events.append({"role": "plan", "outcome": "ok", "repairs": repairs})
        return plan.model_copy(update={"author": f"{self.name}{note}"})

    def _fallback(self, brief: dict, context: dict, rng: random.Random, why: str) -> Plan:
        plan = self.fallback.propose(brief, context, rng)
        return plan.model_copy(update={"author": f"heuristic fallback ({self.name} reply unusable: {why[:300]})"})

    def diagnose(self, result: dict, parent: dict | None) -> dict:
        base = self.fallback.diagnose(result, parent)
        user = prompt("diagnose").format(
            node_id=result.get("id", "?"), direction=result.get("direction", ""), status=result.get("status"),
            score=result.get("score"), parent_score=(parent or {}).get("score"),
            train=render({k: v for k, v in (result.get("train_stats") or {}).items() if k != "loss_curve"}, 800),
            data=render({k: (result.get("data_stats") or {}).get(k) for k in ("rows", "ops")}, 1500),
            error=render(result.get("error"), 600), categories=render(base.get("categories"), 300),
            answers=render((result.get("val") or {}).get("answers"), 300),
            bad_cases=render((result.get("bad_cases") or [])[:10], 2500))
        got, _, err = self._ask("diagnose", user, DiagnosisReply.model_validate,
                                schema=DiagnosisReply.model_json_schema())
        if got is None:
            return {**base, "author": f"heuristic fallback ({err[:200]})"}
        return {**base, "text": got.text.strip()[:1500], "author": self.name}

    def distill(self, nodes: list[dict]) -> list[str]:
        by_id = {n["id"]: n for n in nodes}
        lines = []
        for n in nodes[-60:]:  # bounded: the latest 60 finished nodes
            p = by_id.get(n.get("parent_id"))
            lines.append(f"{n['id']} {n.get('parent_id')} {n.get('direction')!r} {n.get('status')} {n.get('score')} "
                         f"{p.get('score') if p else None}")
        got, _, _ = self._ask("distill", prompt("distill").format(nodes="\n".join(lines), max_insights=6),
                              InsightsReply.model_validate, schema=InsightsReply.model_json_schema())
        if got is None:
            return self.fallback.distill(nodes)
        return [s.strip()[:300] for s in got.insights if s.strip()][:6]


def _plan_schema() -> dict:
    schema = Plan.model_json_schema()
    schema.get("properties", {}).pop("author", None)
    return schema
