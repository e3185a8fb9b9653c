"""The LLM researcher with the real `anthropic` and `openai` SDK clients talking to a local server that
speaks their wire protocols (tests/llm_server.py): tool use, prompt caching, retries on 429/529/500,
structured output, the repair loop and its fallback, bounded memory context, usage accounting."""

from __future__ import annotations

import json
import random

import pytest

from tests.llm_server import ScriptedLLMServer
from trex_ray.llm.base import LLMSpec, Reply
from trex_ray.memory import build_context
from trex_ray.plan import Plan
from trex_ray.researcher import make_researcher
from trex_ray.researcher.llm import LLMResearcher, context_view, extract_json
from trex_ray.task import Task

from .helpers import TreeBuilder, qa_rows, write_jsonl

KEY = "sk-ant-planted-test-key-0123456789"
BRIEF = {"objective": "24-hour times", "metric": "exact_match", "risks": ["tiny data"],
         "candidate_data_sources": ["synthetic times"], "candidate_methods": ["LoRA SFT"]}


@pytest.fixture
def task(tmp_path):
    paths = {s: write_jsonl(tmp_path / f"{s}.jsonl", qa_rows(n, start=i * 100))
             for i, (s, n) in enumerate([("train", 40), ("val", 10), ("test", 10)])}
    return Task.from_jsonl(name="clock", input_field="question", output_field="answer", goal="Times.", **paths)


@pytest.fixture
def profile(task):
    return {**task.profile(), "base_model": "tiny-random", "model_params": 1e6}


def _anthropic(server, task, monkeypatch, **kw):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    return make_researcher("anthropic", llm={"base_url": server.url, "max_retries": 3, "model": "claude-test", **kw},
                           task=task)


def _plan_json(agent, brief, lr=0.004, ops=None):
    plan = agent.fallback.initial_plan(brief).model_dump()
    plan["train"]["learning_rate"] = lr
    if ops is not None:
        plan["recipe"]["ops"] = ops
    plan.pop("author")
    return json.dumps(plan)


def _parent_context(agent, brief):
    tb = TreeBuilder(root_score=0.1)
    nid = tb.child(0, 0.4)
    tb.tree.nodes[nid].plan = agent.fallback.initial_plan(brief).model_dump()
    return build_context(tb.tree, nid)


def test_anthropic_analysis_uses_tools_caches_the_prefix_and_counts_tokens(task, profile, monkeypatch):
    script = [{"tool_calls": [{"name": "inspect_data", "args": {"split": "train", "n": 2}},
                              {"name": "inspect_data", "args": {"split": "test"}}]},
              {"tool_calls": [{"name": "op_schema", "args": {"name": "dedup_semantic"}}]},
              {"text": "Here is the brief:\n```json\n" + json.dumps(BRIEF) + "\n```"}]
    with ScriptedLLMServer(script) as server:
        agent = _anthropic(server, task, monkeypatch)
        brief = agent.analyze(profile, {"score": 0.0, "bad_cases": [{"input": "x", "expected": "1", "got": "2"}]})
    assert brief["objective"] == "24-hour times" and brief["candidate_methods"] == ["LoRA SFT"]
    assert "start" in brief and brief["researcher"] == "anthropic:claude-test"  # the heuristic's numbers stay
    first, second, third = (r["json"] for r in server.requests)
    for r in server.requests:  # the key travels in the auth header only (x-api-key or a bearer token)
        h = r["headers"]
        assert r["path"] == "/v1/messages" and KEY in (h.get("x-api-key"), h.get("authorization", "")[7:])
    names = [t["name"] for t in first["tools"]]
    assert {"inspect_data", "list_ops", "op_schema", "search_datasets"} <= set(names)
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}  # tools + system cached together
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"} and first["model"] == "claude-test"
    assert "Requirement analysis" in first["messages"][0]["content"]
    results = second["messages"][-1]["content"]  # both tool results in one user turn
    assert [b["type"] for b in results] == ["tool_result", "tool_result"]
    assert json.loads(results[0]["content"].splitlines()[0])["input"]  # real train rows
    assert "test split is hidden" in results[1]["content"]
    assert "dedup_semantic" not in json.dumps(second["messages"][-1]) and "threshold" in json.dumps(third["messages"])
    usage = agent.llm.usage
    assert usage["calls"] == 3 and usage["input_tokens"] == 300 and usage["cache_read_tokens"] == 1200
    # $: (300 + 0.1 * 1200 + 1.25 * 150) * 3 + 60 * 15, per million
    assert usage["usd"] == pytest.approx(((300 + 120 + 187.5) * 3 + 60 * 15) / 1e6)


def test_anthropic_retries_rate_limits_and_overload(task, profile, monkeypatch):
    script = [("error", 429, "rate_limit_error"), ("error", 529, "overloaded_error"), ("error", 500, "api_error"),
              {"text": json.dumps(BRIEF)}]
    with ScriptedLLMServer(script) as server:
        agent = _anthropic(server, task, monkeypatch)
        brief = agent.analyze(profile, {"score": 0.0, "bad_cases": []})
    assert len(server.requests) == 4 and brief["objective"] == "24-hour times"
    assert agent.llm.usage["calls"] == 1


def test_anthropic_gives_up_after_max_retries_and_falls_back(task, profile, monkeypatch):
    with ScriptedLLMServer([("error", 429, "rate_limit_error")] * 10) as server:
        agent = _anthropic(server, task, monkeypatch, max_retries=1)
        with pytest.raises(Exception, match="rate_limit"):
            agent.analyze(profile, {"score": 0.0, "bad_cases": []})
    assert len(server.requests) == 2


def test_missing_api_key_is_a_clear_error(task, monkeypatch):
    from trex_ray.errors import ConfigError

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"needs an API key in \$ANTHROPIC_API_KEY"):
        make_researcher("anthropic", task=task)
    assert make_researcher("auto", task=task).name == "heuristic"
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    assert make_researcher("auto", task=task).name.startswith("anthropic:")
    with pytest.raises(ConfigError, match="researcher_llm.max_retries"):
        make_researcher("openai", llm={"max_retries": -1})


def test_openai_coarse_to_fine_with_structured_output_and_repair(task, profile, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-planted")
    agent = make_researcher("openai", llm={"model": "local-model", "base_url": "http://unused"}, task=task)
    brief = agent.fallback.analyze(profile, {"score": 0.1, "bad_cases": []})
    brief["data_ops"] = []
    ctx = _parent_context(agent, brief)
    bad_ops = [{"op": "load", "args": {}}, {"op": "shuffle_magic", "args": {}}, {"op": "format", "args": {}}]
    script = [("error", 400, "response_format not supported"),
              {"text": '{"direction": "higher learning rate", "rationale": "loss still high"}'},
              {"text": _plan_json(agent, brief, ops=bad_ops)},
              {"text": _plan_json(agent, brief, lr=0.0042)}]
    with ScriptedLLMServer(script) as server:
        agent.llm.client = agent.llm.client.with_options(base_url=server.url + "/v1")
        plan = agent.propose(brief, ctx, random.Random(0))
    assert plan.direction == "higher learning rate" and plan.train.learning_rate == 0.0042
    assert plan.author == "openai:local-model after 1 repair turn"
    reqs = [r["json"] for r in server.requests]
    assert reqs[0]["response_format"]["type"] == "json_schema" and "response_format" not in reqs[1]
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-openai-planted"
    assert reqs[2]["messages"][0]["role"] == "system" and "turn the direction" in reqs[2]["messages"][1]["content"]
    repair = reqs[3]["messages"][-1]["content"]
    assert "unknown op 'shuffle_magic'" in repair and reqs[3]["messages"][-2]["role"] == "assistant"


def test_plan_repeating_a_tried_one_or_bad_warm_start_is_repaired_then_falls_back(task, profile, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    agent = make_researcher("openai", llm={"base_url": "http://unused"}, task=task)
    brief = agent.fallback.analyze(profile, {"score": 0.1, "bad_cases": []})
    ctx = _parent_context(agent, brief)
    same = json.dumps({**json.loads(_plan_json(agent, brief)), "train": ctx["parent"]["plan"]["train"]})
    ctx["tried"] = [Plan.model_validate(json.loads(same)).signature(ctx["parent"]["id"])]
    script = [{"text": '{"direction": "same again"}'}, {"text": same}, {"text": "no json here"}, {"text": same}]
    with ScriptedLLMServer(script) as server:
        agent.llm.client = agent.llm.client.with_options(base_url=server.url + "/v1")
        plan = agent.propose(brief, ctx, random.Random(0))
    assert plan.author.startswith("heuristic fallback") and "already tried" in plan.author
    assert plan.signature(ctx["parent"]["id"]) not in ctx["tried"]
    assert agent.events[-1] == {"role": "plan", "outcome": "fallback", "repairs": 2,
                                "error": "this plan was already tried under this parent; change the recipe or training"}


class Scripted:
    """A backend at the edge: replies from a list (for fuzzing the repair path)."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.usage = {"calls": 0}

    def complete(self, system, messages, *, tools=(), max_tokens=2048, json_schema=None):
        self.usage["calls"] += 1
        return Reply(text=self.replies.pop(0) if self.replies else "")


MALFORMED = [
    "", "null", "[]", "{", "{}", '{"direction": ""}', "```json\n{bad}\n```", '{"direction": 5}',
    '{"recipe": {"ops": []}}', '{"recipe": {"ops": [{"op": "load"}]}}', '{"train": {"lora_r": -1}}',
    '{"recipe": {"ops": [{"op": "format"}, {"op": "load"}]}}', '{"eval": {"max_new_tokens": 0}}',
    '{"recipe": "load then format"}', '{"train": {"learning_rate": 7}}', '{"direction": "x", "extra": {"y": 1}}',
    "Sure! I think we should train longer.", '{"recipe": {"ops": [{"op": "load", "args": {"path": 3}}]}}',
    '{"train": {"method": "qlora"}}', '{"recipe": {"ops": [{"op": "load"}, {"op": "sample", "args": {"n": 0}}, '
    '{"op": "format"}]}}', '{"train": {"warm_start": "parent"}, "recipe": {"ops": [{"op": "load"}, {"op": "format"}]}}',
]


@pytest.mark.parametrize("seed", range(100))
def test_fuzzed_replies_end_in_a_valid_plan_or_a_clean_fallback(seed, task, profile):
    rng = random.Random(seed)
    agent = LLMResearcher(Scripted([]), max_repairs=2)
    brief = agent.fallback.analyze(profile, {"score": 0.1, "bad_cases": []})
    ctx = _parent_context(agent, brief)
    ctx["parent"] = {**ctx["parent"], "status": "ok"}
    good = _plan_json(agent, brief, lr=round(rng.uniform(1e-4, 1e-2), 6))
    replies = [rng.choice(MALFORMED + ['{"direction": "longer training"}']) for _ in range(3)]
    replies += [rng.choice(MALFORMED + [good]) for _ in range(3)]
    agent.llm.replies = replies
    plan = agent.propose(brief, ctx, rng)
    Plan.model_validate(plan.model_dump())
    assert plan.signature(ctx["parent"]["id"]) not in ctx.get("tried", [])
    assert plan.author.startswith(("scripted", "heuristic fallback"))
    assert agent.llm.usage["calls"] <= 6


def test_memory_context_stays_within_budget_at_500_nodes(task, profile, monkeypatch):
    tb = TreeBuilder(root_score=0.1)
    rng = random.Random(0)
    ids = [0]
    for _ in range(500):
        ids.append(tb.child(rng.choice(ids), round(rng.random(), 3), direction=f"direction {rng.randrange(30)}"))
    ctx = build_context(tb.tree, ids[-1])
    for budget in (3000, 12000):
        view = context_view(ctx, budget)
        assert len(view) <= budget and json.loads(view)["parent"]["id"] == ids[-1]
    agent = LLMResearcher(Scripted([]), context_chars=4000)
    brief = agent.fallback.analyze(profile, {"score": 0.1, "bad_cases": []})
    agent.llm.replies = ['{"direction": "x"}', _plan_json(agent, brief)]
    sent = []
    orig = agent.llm.complete
    agent.llm.complete = lambda system, messages, **kw: (sent.append(messages[0]["content"]), orig(system, messages, **kw))[1]
    agent.propose(brief, ctx, random.Random(0))
    assert len(sent[0]) < 4000 + 5000  # the context's budget plus the fixed prompt and brief


def test_extract_json():
    assert extract_json('blah ```json\n{"a": {"b": "}"}}\n``` tail') == {"a": {"b": "}"}}
    assert extract_json('x {"a": "q\\"}"} y') == {"a": 'q"}'}
    for bad in ("", "[1]", "{", "no braces"):
        with pytest.raises(ValueError):
            extract_json(bad)


def test_spec_never_holds_the_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    spec = LLMSpec(backend="anthropic")
    assert KEY not in spec.model_dump_json() and spec.key_env == "ANTHROPIC_API_KEY"
