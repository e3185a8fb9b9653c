"""Pure parts of the model-backed data ops: k-center selection, greedy semantic dedup, parsing of LLM
completions, the LLM spec, and the export layout. No Ray, no model."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from trex_ray.aidp.export import chat_columns
from trex_ray.aidp.llm_ops import RewriteArgs, SynthesizeArgs, judge_score, parse_example
from trex_ray.aidp.semantic import k_center, semantic_duplicates
from trex_ray.llm import LLMSpec


def _unit(rows):
    m = np.asarray(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_k_center_takes_the_outliers_before_a_second_point_of_the_dense_cluster():
    rng = np.random.default_rng(0)
    cluster = np.array([1.0, 0, 0, 0]) + 0.01 * rng.standard_normal((20, 4))
    outliers = np.eye(4)[1:]  # three directions far from the cluster
    emb = _unit(np.vstack([cluster, outliers]))
    picked = k_center(emb, 4)
    assert len(picked) == len(set(picked)) == 4
    assert set(range(20, 23)) <= set(picked)  # all three outliers
    assert sum(i < 20 for i in picked) == 1  # and exactly one cluster point
    assert k_center(emb, 4) == picked  # deterministic
    assert k_center(emb, 100) == list(range(23))


def test_semantic_duplicates_is_greedy_in_row_order_and_blockwise():
    emb = _unit([[1, 0], [0.99, 0.14], [0, 1], [0.98, 0.2], [-1, 0]])
    dup = semantic_duplicates(emb, 0.95)
    assert dup == [False, True, False, True, False]
    assert semantic_duplicates(emb, 0.95, block=2) == dup  # same answer block by block
    # a chain a~b~c where a and c are not similar: b goes, c stays because its only neighbour b was dropped
    chain = _unit([[1, 0], [np.cos(0.3), np.sin(0.3)], [np.cos(0.6), np.sin(0.6)]])
    assert semantic_duplicates(chain, float(np.cos(0.35))) == [False, True, False]


@pytest.mark.parametrize("text,expected", [
    ("Input: what is 3 pm?\nOutput: 15:00", ("what is 3 pm?", "15:00")),
    ("Sure! **Input:** half past two in the afternoon\n**Output:** 14:30\n\nInput: another", (
        "half past two in the afternoon", "14:30")),
    ("Output: 15:00", None),
    ("Input: only a question", None),
    ("Input: \nOutput: x", None),
])
def test_parse_example(text, expected):
    assert parse_example(text) == expected


@pytest.mark.parametrize("text,score", [("4", 4), ("I would rate it 5/5", 5), ("Score: 2.", 2), ("10", None),
                                        ("no idea", None), ("0 or 7", None)])
def test_judge_score(text, score):
    assert judge_score(text) == score


def test_llm_op_arguments_are_validated():
    with pytest.raises(ValidationError, match="output_regex"):
        SynthesizeArgs(n=3, output_regex="([")
    with pytest.raises(ValidationError, match="instruction"):
        RewriteArgs(style="custom")
    with pytest.raises(ValidationError, match="n"):
        SynthesizeArgs()
    assert RewriteArgs(style="custom", instruction="make it formal").field == "input"


def test_llm_spec_defaults_and_errors():
    spec = LLMSpec()
    assert spec.backend == "local" and spec.model_name == "smollm2-135m"
    assert LLMSpec.model_validate(spec) is spec and LLMSpec(model="tiny-random").key() == "local:tiny-random:transformers"
    with pytest.raises(ValidationError, match="backend"):
        LLMSpec(backend="nope")
    with pytest.raises(ValidationError, match="extra"):
        LLMSpec(modle="x")


def test_data_llm_config_error_names_the_field():
    from trex_ray.errors import ConfigError
    from trex_ray.settings import SearchSettings

    assert SearchSettings.of(base_model="tiny-random").data_llm.model == "tiny-random"  # the base model by default
    assert SearchSettings.of(base_model="tiny-random", data_llm={"model": "smollm2-135m"}).data_llm.model == "smollm2-135m"
    with pytest.raises(ConfigError, match=r"^data_llm.batch_size: .*greater than or equal to 1"):
        SearchSettings.of(base_model="tiny-random", data_llm={"batch_size": 0})
    with pytest.raises(ConfigError, match=r"^data_llm.modle: unknown setting -- known: backend, model"):
        SearchSettings.of(base_model="tiny-random", data_llm={"modle": "x"})


def test_export_chat_columns_put_the_answer_alone_in_the_completion():
    row = {"input": "3 pm", "output": "15:00", "system": "Be brief.", "user": "Time: 3 pm"}
    cols = chat_columns(row)
    assert cols["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Time: 3 pm"}]
    assert cols["completion"] == [{"role": "assistant", "content": "15:00"}]
    assert cols["messages"] == cols["prompt"] + cols["completion"]
