"""Open-domain research: the local data catalogue and its ranking (the packaged MiniLM, a known related
dataset), the Hugging Face Hub client (`huggingface_hub`, unchanged) and arXiv's query API against local
HTTP servers that speak their wire formats, failures included (server errors, malformed replies,
timeouts), and the offline researcher's "add related data" plan."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import majority_rows, write_jsonl
from trex_ray.researcher import catalogue as cat
from trex_ray.researcher import papers as pp


def catalogue_dir(root):
    """A data catalogue: one dataset of the majority task's kind, one of clock times, one folder of only a README."""
    related = root / "majority-more"
    write_jsonl(related / "train.jsonl", majority_rows(60, 11))
    (related / "SOURCE.md").write_text("# More majority questions\n\nQuestions asking whether 'yes' words outnumber "
                                       "'no' words.\n\nLicense: CC-BY-4.0\n")
    clock = root / "clock-times"
    rng = random.Random(0)
    write_jsonl(clock / "data.jsonl", [{"prompt": f"What time is {rng.randint(1, 12)} hours after {h}:00?",
                                        "completion": f"{(h + 3) % 24}:00"} for h in range(30)])
    (clock / "README.md").write_text("---\nlicense: mit\n---\n# Clock arithmetic\n\nAdding hours to times of day.\n")
    (root / "notes-only").mkdir()
    (root / "notes-only" / "README.md").write_text("nothing to load here")
    return root


def test_the_local_catalogue_reads_folders_licenses_and_fields(tmp_path):
    root = catalogue_dir(tmp_path / "cat")
    found = {c.name: c for c in cat.local_candidates([str(root)], "question", "answer")}
    assert set(found) == {"majority-more", "clock-times"}
    m, c = found["majority-more"], found["clock-times"]
    assert m.license == "CC-BY-4.0" and (m.input_field, m.output_field) == ("question", "answer") and m.rows == 60
    assert m.mixable and m.sample[0]["input"] and m.path.endswith("train.jsonl")
    assert c.license == "mit" and (c.input_field, c.output_field) == ("prompt", "completion")
    assert "Adding hours" in c.description and "license" not in c.description  # the front matter is not prose
    # the task's own folder is never a candidate
    assert cat.local_candidates([str(root)], exclude=(str(root / "clock-times"),))[0].name == "majority-more"


def cached_dataset(cache, name, rows, **meta):
    """A dataset as `datasets.load_dataset` leaves it in a user's cache (prepared by the library itself from a
    local folder of JSON lines), with a description and license written into its info as a hub card's are."""
    import datasets

    src = cache.parent / "sources" / name
    write_jsonl(src / "train.jsonl", rows)
    datasets.load_dataset(str(src), cache_dir=str(cache))
    info = next(cache.glob(f"{name}/*/*/*/dataset_info.json"))
    info.write_text(json.dumps({**json.loads(info.read_text()), **meta}))
    return info.parent


def test_the_datasets_cache_is_catalogued_newest_first_and_never_the_tasks_own(tmp_path, majority_task, monkeypatch):
    import shutil

    cache, hub = tmp_path / "hf-datasets", tmp_path / "hf-hub"
    folder = cached_dataset(cache, "majority_more", majority_rows(50, 12), license="cc-by-4.0",
                            description="Questions on whether yes words outnumber no words.")
    cached_dataset(cache, "pairs", [{"a": "x", "b": "y"}] * 3)  # fields that map onto nothing
    # as a Hub dataset is kept: `datasets` snake-cases its name, its card is in the Hub cache
    hubbed = cached_dataset(cache, "yes_no_hub", majority_rows(20, 13))
    (cache / "yes_no_hub").rename(cache / "Someone___yes_no_votes")
    hubbed = cache / "Someone___yes_no_votes" / hubbed.relative_to(cache / "yes_no_hub")
    card = hub / "datasets--Someone--YesNoVotes" / "snapshots" / "abc123" / "README.md"
    card.parent.mkdir(parents=True)
    card.write_text("---\nlicense: apache-2.0\n---\n# Yes/no votes\n\nCounting yes and no.\n")
    # an older preparation, one being written, one whose info is not JSON: none of them is listed
    older = folder.parent / "0000older"
    shutil.copytree(folder, older)
    os.utime(older / "dataset_info.json", (1, 1))
    shutil.copytree(folder, folder.parent / "1111.incomplete")
    broken = cached_dataset(cache, "broken", majority_rows(5, 14))
    (broken / "dataset_info.json").write_text("{not json")

    found = {c.name: c for c in cat.cache_candidates(str(cache), "question", "answer", hub=str(hub))}
    assert set(found) == {"majority_more", "pairs", "Someone/yes_no_votes"}
    c = found["majority_more"]
    assert (c.origin, c.rows, c.license, c.hf) == ("cache", 50, "cc-by-4.0", str(folder))
    assert (c.input_field, c.output_field) == ("question", "answer") and len(c.sample) == cat.SAMPLE
    assert c.sample[0]["input"] == majority_rows(50, 12)[0]["question"] and "outnumber" in c.description
    h = found["Someone/yes_no_votes"]
    assert h.license == "apache-2.0" and "Counting yes and no" in h.description and h.hf == str(hubbed)
    assert not found["pairs"].mixable
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    ranked, notes = cat.find(majority_task, hub="off", roots=[], cache=str(cache), embed=lambda t: [[1.0]] * len(t))
    assert notes["cache_found"] == 3 and notes["datasets_cache"] == str(cache)
    assert ranked[0].mix_source()["hf"] in (str(folder), str(hubbed))
    # a task named after a cached dataset, or loaded from its hub id, is that dataset: not offered to itself
    own = majority_task.model_copy(update={"name": "Majority-More"})
    names = [c.name for c in cat.find(own, hub="off", roots=[], cache=str(cache), embed=lambda t: [[1.0]] * len(t))[0]]
    assert "majority_more" not in names and len(names) == 2
    own = majority_task.model_copy(update={"name": "votes", "hf": "Someone/YesNoVotes"})
    names = [c.name for c in cat.find(own, hub="off", roots=[], cache=str(cache), embed=lambda t: [[1.0]] * len(t))[0]]
    assert "Someone/yes_no_votes" not in names and len(names) == 2
    assert cat.cache_candidates(str(tmp_path / "nowhere")) == []
    monkeypatch.delenv("HF_DATASETS_CACHE")
    monkeypatch.setenv("HF_HOME", "~/hf-home")  # as `datasets` reads it: user-expanded
    assert cat.datasets_cache() == os.path.join(os.path.expanduser("~/hf-home"), "datasets")


def test_a_catalogue_file_is_counted_and_sampled_without_reading_it_whole(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": f"q{i}", "answer": "yes"} for i in range(1000)]
    jl = tmp_path / "a.jsonl"
    jl.write_text("\ufeff" + "\n".join(json.dumps(r) for r in rows) + "\n\n")  # a byte-order mark, a blank line
    (tmp_path / "a.csv").write_text("\ufeffquestion,answer\n" + "".join(f'"q{i}\nstill q{i}",yes\n' for i in range(1000)))
    (tmp_path / "a.json").write_text("\n  " + json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet", row_group_size=100)
    for name in ("a.jsonl", "a.csv", "a.json", "a.parquet"):
        n, first = cat.peek(tmp_path / name)
        assert n == 1000 and len(first) == cat.SAMPLE and first[0]["question"].startswith("q0"), name


def test_license_and_field_mapping_rules():
    assert cat.license_of("---\nlicense: [apache-2.0]\n---\n") == "apache-2.0"
    assert cat.license_of("## License\nCC BY-SA 4.0\n") == "CC BY-SA 4.0"
    assert cat.license_of("no word of it") is None
    assert cat.map_fields(["Sentence", "Label"]) == ("Sentence", "Label")
    assert cat.map_fields(["q", "a", "question"], "q", "a") == ("q", "a")  # the task's own names first
    assert cat.map_fields(["text"]) == ("text", None)


def test_ranking_puts_the_related_dataset_first_with_the_packaged_minilm(tmp_path):
    root = catalogue_dir(tmp_path / "cat")
    cands = cat.local_candidates([str(root)], "question", "answer")
    task_inputs = [r["question"] for r in majority_rows(10, 3)]
    ranked = cat.rank(cands, "answer yes if 'yes' words outnumber 'no' words, else no", task_inputs)
    assert [c.name for c in ranked] == ["majority-more", "clock-times"]
    assert ranked[0].score > ranked[1].score and ranked[0].score >= cat.RELATED_MIN
    unmappable = cat.Candidate(name="x", origin="local", description="yes no words majority", path="x.jsonl")
    assert cat.rank([unmappable, *cands], "majority", task_inputs, embed=lambda t: [[1.0]] * len(t))[-1].name == "x"


# -- a Hub that speaks huggingface_hub's wire format ------------------------------------------------------

CARD = ("---\nlicense: cc-by-4.0\ndataset_info:\n  features:\n  - name: question\n    dtype: string\n"
        "  - name: answer\n    dtype: string\n---\n# Yes/no majority\n\nCount the yes and no words.\n")


class Hub(BaseHTTPRequestHandler):
    mode = "ok"  # ok | error | bad-card

    def log_message(self, *a):
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json", head: bool = False, extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, head: bool):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/api/datasets":
            if self.mode == "error":  # (a 5xx the client retries with backoff for ~23 s first; same outcome)
                return self._send(401, b'{"error": "Invalid credentials in Authorization header"}', head=head)
            q = urllib.parse.parse_qs(url.query)
            assert q.get("search") and q.get("limit")
            return self._send(200, json.dumps([
                {"id": "someone/majority-words", "_id": "1", "tags": ["license:cc-by-4.0", "language:en"],
                 "private": False, "downloads": 3, "likes": 0},
                {"id": "someone/no-card", "_id": "2", "tags": ["license:mit"], "private": False}]).encode(), head=head)
        if url.path.endswith("/resolve/main/README.md"):
            repo = url.path.split("/datasets/", 1)[1].split("/resolve/")[0]
            if repo == "someone/no-card":
                return self._send(404, b'{"error": "Entry not found"}', head=head,
                                  extra={"X-Error-Code": "EntryNotFound"})
            body = (b"---\nlicense: [unclosed\n---\n" if self.mode == "bad-card" else CARD.encode())
            etag = hashlib.sha256(body).hexdigest()
            return self._send(200, body, "text/plain", head=head,
                              extra={"ETag": f'"{etag}"', "X-Repo-Commit": "a" * 40})
        return self._send(404, b"{}", head=head)

    def do_GET(self):
        self._route(False)

    def do_HEAD(self):
        self._route(True)


@pytest.fixture
def server():
    servers = []

    def start(handler):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()


def test_hub_search_reads_ids_cards_licenses_and_fields(server):
    Hub.mode = "ok"
    url = server(Hub)
    found = {c.name: c for c in cat.hub_candidates("majority", endpoint=url)}
    assert set(found) == {"someone/majority-words", "someone/no-card"}
    m = found["someone/majority-words"]
    assert m.origin == "hub" and m.hf == "someone/majority-words" and m.license == "cc-by-4.0"
    assert (m.input_field, m.output_field) == ("question", "answer") and m.mixable
    assert "Count the yes and no words." in m.description
    n = found["someone/no-card"]  # a dataset without a card keeps its id and the license its tags give
    assert n.license == "mit" and "card unreadable" in n.description and not n.mixable


def test_hub_failures_are_said_and_carried_past(server, monkeypatch):
    from trex_ray.researcher.tools import ResearchTools

    url = server(Hub)
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        Hub.mode = "bad-card"  # a card whose metadata does not parse: the dataset is listed without it
        out = ResearchTools(hub="on", embed=lambda t: [[1.0]] * len(t)).tool_search_datasets("majority")
        assert "someone/majority-words" in out and "card unreadable" in out
        Hub.mode = "error"  # the search itself fails: said, and the local catalogue still answers
        tools = ResearchTools(hub="on", embed=lambda t: [[1.0]] * len(t))
        assert ": unavailable (" in tools.tool_search_datasets("majority")
        assert tools.read[-1]["found"] == []
    finally:
        Hub.mode = "ok"


# -- arXiv's query API -------------------------------------------------------------------------------------

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>ArXiv Query: search_query=all:lora</title>
  <entry>
    <id>http://arxiv.org/abs/2106.09685v2</id>
    <published>2021-06-17T17:37:18Z</published>
    <title>LoRA: Low-Rank Adaptation of
      Large Language Models</title>
    <summary>  We propose Low-Rank Adaptation, or LoRA, which freezes the pre-trained model weights. </summary>
    <author><name>Edward J. Hu</name></author>
    <link href="http://arxiv.org/abs/2106.09685v2" rel="alternate" type="text/html"/>
    <link title="pdf" href="http://arxiv.org/pdf/2106.09685v2" rel="related" type="application/pdf"/>
  </entry>
</feed>"""


class Arxiv(BaseHTTPRequestHandler):
    mode = "ok"  # ok | error | malformed | slow

    def log_message(self, *a):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        assert url.path == "/api/query" and q["search_query"][0].startswith("all:")
        if self.mode == "slow":
            time.sleep(3)
        code, body = {"error": (500, b"oops"), "malformed": (200, b"<html>not a feed")}.get(self.mode,
                                                                                        (200, FEED.encode()))
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/atom+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except BrokenPipeError:  # the slow reply's client gave up first, as meant
            pass


def test_arxiv_search_parses_the_atom_feed_and_fails_loudly(server):
    url = server(Arxiv) + "/api/query"
    Arxiv.mode = "ok"
    (p,) = pp.arxiv_search("lora", 3, endpoint=url)
    assert p["title"] == "LoRA: Low-Rank Adaptation of Large Language Models"
    assert p["link"] == "http://arxiv.org/abs/2106.09685v2" and p["published"] == "2021-06-17"
    assert p["abstract"].startswith("We propose Low-Rank Adaptation") and p["authors"] == ["Edward J. Hu"]
    for mode, error in (("error", Exception), ("malformed", ValueError), ("slow", OSError)):
        Arxiv.mode = mode
        with pytest.raises(error):
            pp.arxiv_search("lora", endpoint=url, timeout=1)
    Arxiv.mode = "ok"


def test_the_papers_tool_searches_arxiv_and_the_notes_and_records_what_it_read(server, tmp_path, monkeypatch):
    from trex_ray.researcher.tools import ResearchTools

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "qlora.md").write_text("# QLoRA: efficient finetuning\n\nFinetuning quantized LLMs with LoRA adapters.\n")
    (notes / "other.md").write_text("# Cooking\n\nNothing about adapters.\n")
    Arxiv.mode = "ok"
    monkeypatch.setenv("TREX_RAY_ARXIV_API", server(Arxiv) + "/api/query")
    tools = ResearchTools(notes_dir=str(notes), papers="on")
    out = tools.call("search_papers", {"query": "lora finetuning"})
    assert "LoRA: Low-Rank Adaptation" in out and "QLoRA: efficient finetuning" in out and "Cooking" not in out
    assert tools.read[-1]["tool"] == "search_papers" and len(tools.read[-1]["found"]) == 2
    Arxiv.mode = "error"
    out = tools.call("search_papers", {"query": "lora"})
    assert "arXiv search failed" in out and "QLoRA" in out  # the notes still answer
    off = ResearchTools(notes_dir=str(notes), papers="off").call("search_papers", {"query": "lora"})
    assert "(arXiv search off)" in off
    Arxiv.mode = "ok"


# -- the offline researcher ---------------------------------------------------------------------------------

def test_data_research_and_the_related_data_plan(tmp_path, majority_task):
    from trex_ray.researcher.heuristic import HeuristicResearcher, related_candidate

    root = catalogue_dir(tmp_path / "cat")
    found, notes = cat.related_data(majority_task, hub="off", roots=[str(root)], cache=str(tmp_path / "no-cache"))
    assert [c["name"] for c in found][:1] == ["majority-more"] and notes["local_found"] == 2 and notes["hub"] == "off"
    profile = {**majority_task.profile(), "related_data": found, "research": notes}
    agent = HeuristicResearcher()
    brief = agent.analyze(profile, {"score": 0.5, "bad_cases": []})
    c = related_candidate(brief)
    assert c["name"] == "majority-more"
    first = agent.initial_plan(brief)
    node = {"id": 1, "plan": first.model_dump(), "score": 0.6, "status": "ok", "direction": first.direction}
    ctx = {"parent": node, "tried": [first.signature(0)], "children": [], "ancestors": [], "directions_taken":
           [first.direction]}
    plan = agent.propose(brief, ctx, random.Random(0))
    assert plan.direction == "add related data"
    ops = [o.op for o in plan.recipe.ops]
    assert ops[:3] == ["load", "mix", "decontaminate"]
    mix = plan.recipe.ops[1].args
    src = mix["sources"][0]
    assert src["name"] == "majority-more" and src["license"] == "CC-BY-4.0" and src["path"].endswith("train.jsonl")
    n = brief["train_rows"]
    assert mix["total"] == n + min(60, 2 * n) and "license CC-BY-4.0" in plan.rationale
    # tried once: afterwards the direction takes its turn like any other
    again = agent.propose(brief, {**ctx, "directions_taken": [first.direction, "add related data"]}, random.Random(0))
    assert again.direction != "add related data" or again.signature(1) != plan.signature(1)
    # a large task, or nothing related enough: no such plan
    assert related_candidate({**brief, "train_rows": cat.SMALL_TRAIN + 1}) is None
    assert related_candidate({**brief, "related_data": [{**c, "score": 0.1}]}) is None


def test_the_llm_researcher_searches_the_hub_and_arxiv_through_its_tools(server, majority_task, monkeypatch):
    """The Anthropic client (real SDK, local server) asks for both searches; the Hub and arXiv (local servers
    in their wire formats) answer; the tool results reach the model and the brief records what was read."""
    from tests.llm_server import ScriptedLLMServer
    from trex_ray.researcher import make_researcher

    Hub.mode, Arxiv.mode = "ok", "ok"
    monkeypatch.setenv("HF_ENDPOINT", server(Hub))
    monkeypatch.setenv("TREX_RAY_ARXIV_API", server(Arxiv) + "/api/query")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    brief_json = json.dumps({"objective": "yes/no majority", "metric": "accuracy", "risks": [],
                             "candidate_data_sources": ["someone/majority-words"], "candidate_methods": ["LoRA"]})
    script = [{"tool_calls": [{"name": "search_datasets", "args": {"query": "majority"}},
                              {"name": "search_papers", "args": {"query": "lora", "max_results": 2}}]},
              {"text": brief_json}]
    with ScriptedLLMServer(script) as llm:
        agent = make_researcher("anthropic", llm={"base_url": llm.url, "model": "claude-test"}, task=majority_task,
                                hub="on", papers="on")
        agent.tools.embed = lambda texts: [[1.0]] * len(texts)
        brief = agent.analyze({**majority_task.profile(), "base_model": "tiny-random"}, {"score": 0.5, "bad_cases": []})
    results = json.dumps(llm.requests[1]["json"]["messages"][-1]["content"])
    assert "someone/majority-words" in results and "cc-by-4.0" in results and "mix source" in results
    assert "LoRA: Low-Rank Adaptation" in results
    read = {r["tool"]: r for r in brief["read"]}
    assert read["search_datasets"]["query"] == "majority" and any("someone/majority-words" in f
                                                                  for f in read["search_datasets"]["found"])
    assert read["search_papers"]["found"][0].startswith("LoRA: Low-Rank Adaptation")
