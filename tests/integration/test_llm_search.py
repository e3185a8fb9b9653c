"""A real search (local Ray, Ray Data, Ray Train, PEFT, tiny model) whose researcher is Claude through the
real `anthropic` SDK, talking to a local server that speaks the Messages API. The run records the
LLM's plans, diagnoses, insights and spend, and a planted API key appears nowhere in the run folder."""

from __future__ import annotations

import itertools
import json
import os

import pytest

import trex_ray
from tests.llm_server import ScriptedLLMServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "sk-ant-PLANTED-9f8e7d6c5b4a-never-write-me"


def first_user(body: dict) -> str:
    """The first user turn of a request, in either wire format (OpenAI puts the system prompt first)."""
    first = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return first if isinstance(first, str) else json.dumps(first)


def responder():
    n = itertools.count()

    def reply(body: dict) -> dict:
        first = first_user(body)
        if "Requirement analysis" in first:
            return {"text": json.dumps({"objective": "answer yes/no like the data", "metric": "accuracy",
                                        "risks": ["no signal in inputs"], "candidate_data_sources": [],
                                        "candidate_methods": ["LoRA SFT on the prior"]})}
        if "Choose the next experiment" in first:
            return {"text": '{"direction": "higher learning rate", "rationale": "scripted"}'}
        if "turn the direction" in first:
            return {"text": json.dumps({
                "recipe": {"ops": [{"op": "load", "args": {}}, {"op": "dedup_exact", "args": {}},
                                   {"op": "format", "args": {"system": "Answer yes or no."}}]},
                "train": {"learning_rate": round(0.01 + 0.001 * next(n), 4), "epochs": 1, "batch_size": 8,
                          "max_seq_len": 64},
                "eval": {"max_new_tokens": 4}})}
        if "Diagnose" in first:
            return {"text": '{"text": "LLM diagnosis: the answers follow the prior."}'}
        if "Distil" in first:
            return {"text": '{"insights": ["LLM insight: higher learning rates helped"]}'}
        return {"text": "unexpected request"}

    return reply


def test_search_with_the_anthropic_researcher_records_its_work_and_never_the_key(majority_task, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with ScriptedLLMServer(responder=responder()) as server:
        result = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=2),
                                 researcher="anthropic", researcher_llm={"base_url": server.url, "model": "claude-test"},
                                 max_concurrent=1, storage=str(tmp_path / "runs"), seed=0)
    kinds = [first_user(r["json"])[:40] for r in server.requests]
    assert any("Requirement analysis" in k for k in kinds) and any("Choose the next" in k for k in kinds)
    nodes = {n.id: n for n in result.nodes}
    llm_plans = [n for n in nodes.values() if n.plan and n.plan.get("author", "").startswith("anthropic:claude-test")]
    assert 2 in {n.id for n in llm_plans}  # the root's child is the standard plan, the next one the model's
    assert all(n.plan["direction"] == "higher learning rate" for n in llm_plans if n.id > 1)
    assert any("LLM diagnosis" in (n.diagnosis or "") for n in nodes.values())
    events = [json.loads(line) for line in open(os.path.join(result.run_dir, "journal.jsonl"))]
    spend = [e for e in events if e["type"] == "llm_usage"]
    assert spend and sum(e["usage"]["calls"] for e in spend) == len(server.requests)
    assert any(e["type"] == "insights" and "LLM insight" in " ".join(e["items"]) for e in events)
    # the key reached the server (auth header) and nothing on disk
    assert all(KEY in json.dumps(r["headers"]) for r in server.requests)
    leaked = []
    for root, _, files in os.walk(tmp_path / "runs"):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                if KEY.encode() in fh.read():
                    leaked.append(os.path.join(root, f))
    assert leaked == []


def test_search_with_an_openai_compatible_researcher(majority_task, tmp_path, monkeypatch):
    """The `openai` researcher against a local chat-completions server: its plans drive the search, and the
    key from the environment is sent as a bearer token and never written."""
    key = "sk-openai-PLANTED-0a1b2c3d"
    monkeypatch.setenv("MY_SERVER_KEY", key)
    with ScriptedLLMServer(responder=responder()) as server:
        result = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=2),
                                 researcher="openai", researcher_llm={"base_url": server.url + "/v1", "model": "served",
                                                                      "api_key_env": "MY_SERVER_KEY"},
                                 max_concurrent=1, storage=str(tmp_path / "runs"), seed=0, progress=False)
    assert server.requests and all(r["path"].endswith("/chat/completions") for r in server.requests)
    assert all(r["headers"].get("authorization") == f"Bearer {key}" for r in server.requests)
    plan = {n.id: n for n in result.nodes}[2].plan
    assert plan["author"].startswith("openai:served") and plan["direction"] == "higher learning rate"
    assert plan["train"]["learning_rate"] >= 0.01
    for root, _, files in os.walk(tmp_path / "runs"):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                assert key.encode() not in fh.read(), f


def test_search_with_the_vllm_researcher_on_the_local_model(majority_task, tmp_path):
    """The `vllm` researcher: the packaged SmolLM2 in a Ray actor, replies constrained to the JSON schemas.
    Quality is not the point; the plumbing is: every JSON reply parses, the plans validate or fall back
    cleanly, and the tokens are journalled."""
    pytest.importorskip("vllm")
    result = trex_ray.search(majority_task, base_model="tiny-random", budget=trex_ray.Budget(trials=2),
                             researcher="vllm", researcher_llm={"max_tokens": 96, "max_model_len": 4096},
                             max_concurrent=2, storage=str(tmp_path / "runs"), seed=0, progress=False)
    events = [json.loads(line) for line in open(os.path.join(result.run_dir, "journal.jsonl"))]
    usage = [e["usage"] for e in events if e["type"] == "llm_usage"]
    calls = sum(u.get("calls", 0) for u in usage)
    assert calls >= 4  # analysis, direction + plan, diagnoses, insights
    assert sum(u.get("output_tokens", 0) for u in usage) > 0
    assert all(u.get("usd", 0) == 0 for u in usage)  # a local model costs no dollars
    # schema-constrained decoding: every reply that ended by itself parses as JSON (one cut at the token
    # limit may not, and says so)
    said = [e for e in events if e["type"] == "researcher_event"]
    assert not [e for e in said if "JSON object" in e.get("error", "") and "token limit" not in e["error"]], said
    nodes = {n.id: n for n in result.nodes}
    assert len(nodes) == 3 and all(n.status == "ok" for n in nodes.values())
    author = nodes[2].plan["author"]
    assert author.startswith("local:smollm2-135m (vllm)") or author.startswith("heuristic fallback (local:smollm2")
    brief = next(e for e in events if e["type"] == "brief")["brief"]
    assert "objective" in brief
