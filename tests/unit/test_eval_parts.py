"""Evaluation parts with no model and no Ray: the request batcher of the vLLM engine, evaluator and engine
settings validation, multiple-choice task fields."""

from __future__ import annotations

import threading
import time

import pytest

from trex_ray.errors import ConfigError
from trex_ray.modeling.engines import EVALUATORS, _Batcher, _until_stop, context_limit


def test_batcher_merges_concurrent_requests_and_routes_each_its_results():
    seen = []
    gate = threading.Event()

    def run(items):
        seen.append(list(items))
        if len(seen) == 1:
            gate.wait(5)  # hold the first batch so the others queue up behind it
        return [x * 10 for x in items]

    b = _Batcher(run)
    out = {}

    def call(k):
        out[k] = b.submit([k, k + 100])

    first = threading.Thread(target=call, args=(0,))
    first.start()
    _wait_for(lambda: len(seen) == 1)
    rest = [threading.Thread(target=call, args=(k,)) for k in range(1, 6)]
    for t in rest:
        t.start()
    _wait_for(lambda: len(b._pending) == 5)
    gate.set()
    for t in [first, *rest]:
        t.join(5)
    assert out == {k: [k * 10, (k + 100) * 10] for k in range(6)}
    assert b.requests == 6
    assert b.batches == 2  # the five that waited went as one batch
    assert sorted(seen[1]) == sorted(x for k in range(1, 6) for x in (k, k + 100))


def test_batcher_gives_every_caller_of_a_failed_batch_the_error_and_keeps_serving():
    calls = []

    def run(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("engine hiccup")
        return items

    b = _Batcher(run)
    with pytest.raises(RuntimeError, match="hiccup"):
        b.submit([1])
    assert b.submit([2, 3]) == [2, 3]


def test_batcher_reruns_a_failed_merged_batch_per_caller_so_only_the_bad_request_fails():
    seen = []
    gate = threading.Event()

    def run(items):
        seen.append(list(items))
        if len(seen) == 1:
            gate.wait(5)
        if -1 in items:
            raise ValueError("bad request")
        return items

    b = _Batcher(run)
    out = {}

    def call(k, items):
        try:
            out[k] = b.submit(items)
        except ValueError as e:
            out[k] = str(e)

    threads = [threading.Thread(target=call, args=(0, [0]))]
    threads[0].start()
    _wait_for(lambda: len(seen) == 1)
    threads += [threading.Thread(target=call, args=(k, it)) for k, it in ((1, [1, 2]), (2, [-1]), (3, [3]))]
    for t in threads[1:]:
        t.start()
    _wait_for(lambda: len(b._pending) == 3)
    gate.set()
    for t in threads:
        t.join(5)
    assert out == {0: [0], 1: [1, 2], 2: "bad request", 3: [3]}


def _wait_for(cond, timeout=5.0):
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "condition not reached"
        time.sleep(0.01)


def test_until_stop_counts_the_eos_but_not_padding():
    assert _until_stop([5, 6, 2, 0, 0], eos=2, pad=0) == 3
    assert _until_stop([5, 0, 0], eos=2, pad=0) == 1
    assert _until_stop([5, 6, 7], eos=2, pad=0) == 3


def test_context_limit_reads_the_model_config_and_caps_it(tmp_path):
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 131072}')
    assert context_limit(str(tmp_path), None) == 8192
    assert context_limit(str(tmp_path), 1024) == 1024
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 512}')
    assert context_limit(str(tmp_path), None) == 512


def test_evaluator_and_engine_settings_are_checked_before_anything_runs():
    from trex_ray.settings import SearchSettings

    def _eval_options(evaluator, options):
        return SearchSettings.of(base_model="tiny-random", evaluator=evaluator, eval_options=options
                                 ).eval_options.as_kwargs()

    assert EVALUATORS == ("auto", "vllm", "transformers")
    with pytest.raises(ConfigError) as e:
        _eval_options("tensorrt", None)
    assert e.value.field == "evaluator"
    with pytest.raises(ConfigError) as e:
        _eval_options("vllm", {"max_lorass": 4})
    assert e.value.field == "eval_options.max_lorass" and "max_loras" in e.value.fix
    with pytest.raises(ConfigError) as e:
        _eval_options("vllm", {"replicas": "two"})
    assert e.value.field == "eval_options.replicas"
    assert _eval_options("vllm", {"replicas": "2", "kv_cache_gb": 1}) == {"replicas": 2, "kv_cache_gb": 1.0}
    for bad, field in (({"max_lora_rank": 7}, "max_lora_rank"), ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
                       ({"replicas": 0}, "replicas"), ({"kv_cache_gb": -1}, "kv_cache_gb")):
        with pytest.raises(ConfigError) as e:
            _eval_options("transformers", bad)
        assert e.value.field == f"eval_options.{field}"


def test_auto_evaluator_is_transformers_without_gpus():
    from trex_ray.executor.eval_service import resolve_evaluator

    assert resolve_evaluator("auto", use_gpu=False) == "transformers"
    assert resolve_evaluator("vllm", use_gpu=False) == "vllm"
    # one GPU: an engine would hold the GPU the trials train on
    assert resolve_evaluator("auto", use_gpu=True, gpus=1) == "transformers"
    with pytest.raises(ConfigError, match="evaluator"):
        resolve_evaluator("vllm", use_gpu=True, gpus=1)
    with pytest.raises(ConfigError):
        resolve_evaluator("nope", use_gpu=False)


def test_options_field_is_read_and_validated(tmp_path):
    import json

    from trex_ray import Task

    def write(name, rows):
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(p)

    good = [{"q": "2+2", "a": "4", "choices": ["3", "4", 5]}]
    paths = {s: write(s, good) for s in ("train", "val", "test")}
    task = Task.from_jsonl(name="mc", input_field="q", output_field="a", options_field="choices", scoring="loglik",
                           metric="exact_match", **paths)
    assert task.rows("val")[0]["options"] == ["3", "4", "5"]
    paths["val"] = write("val_bad", [{"q": "x", "a": "y", "choices": "y or z"}])
    with pytest.raises(ConfigError) as e:
        Task.from_jsonl(name="mc", input_field="q", output_field="a", options_field="choices", **paths)
    assert e.value.field == "options_field" and "line 1" in str(e.value)


def test_unknown_scoring_in_a_config_names_the_field():
    from trex_ray.config import build

    with pytest.raises(ConfigError) as e:
        build({"name": "t", "train": "a", "val": "b", "test": "c", "scoring": "beam"})
    assert e.value.field == "scoring"
