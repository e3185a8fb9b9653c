"""Plans and recipes: parsing YAML-style op lists, errors that name the op position and field, signatures."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from trex_ray.aidp.ops import OPS, FormatArgs, LoadArgs, SampleArgs, catalogue
from trex_ray.errors import ConfigError
from trex_ray.plan import EvalConfig, Plan, Recipe, TrainConfig, parse_plan, parse_recipe

RECIPE_YAML = """
ops:
  - load: {split: train}
  - dedup_exact: {}
  - length_filter: {min_chars: 2, max_tokens: 64}
  - sample: {fraction: 0.5, seed: 3}
  - format: {template: "Q: {input}\\nA:", system: "Be brief."}
"""


def plan_dict(**train) -> dict:
    return {"direction": "more epochs", "rationale": "loss still falling",
            "recipe": {"ops": [{"load": {}}, {"format": {"template": "Q: {input}"}}]},
            "train": {"learning_rate": 1e-3, "epochs": 3, **train}}


def test_recipe_from_yaml():
    r = parse_recipe(yaml.safe_load(RECIPE_YAML))
    assert [o.op for o in r.ops] == ["load", "dedup_exact", "length_filter", "sample", "format"]
    typed = dict(r.typed())
    assert isinstance(typed["load"], LoadArgs) and typed["load"].split == "train"
    assert typed["length_filter"].max_tokens == 64 and typed["length_filter"].min_chars == 2
    assert isinstance(typed["sample"], SampleArgs) and typed["sample"].fraction == 0.5
    assert isinstance(r.prompt, FormatArgs)
    assert r.prompt.template == "Q: {input}\nA:" and r.prompt.system == "Be brief."


def test_recipe_accepts_list_and_op_args_forms_and_round_trips():
    a = parse_recipe([{"load": None}, {"format": {}}])  # `- load:` with no args in YAML is None
    b = parse_recipe({"ops": [{"op": "load"}, {"op": "format", "args": {"template": "{input}"}}]})
    assert a.model_dump() == b.model_dump()  # defaults are not stored: equal recipes compare equal
    c = Recipe(ops=a.to_yaml_list())
    assert c.model_dump() == a.model_dump()
    assert a.to_yaml_list() == [{"load": {}}, {"format": {}}]
    full = parse_recipe(yaml.safe_load(RECIPE_YAML))
    assert Recipe(ops=full.to_yaml_list()).model_dump() == full.model_dump()


def _err(data) -> str:
    with pytest.raises(ConfigError) as e:
        parse_recipe(data)
    assert e.value.field == "recipe"
    assert isinstance(e.value, ValueError)
    return str(e.value)


def test_unknown_op_names_position():
    msg = _err([{"load": {}}, {"shuffle": {}}, {"format": {}}])
    assert "ops[1]" in msg and "unknown op 'shuffle'" in msg and "dedup_exact" in msg  # lists known ops


def test_wrong_arg_type_names_position_op_and_field():
    msg = _err([{"load": {}}, {"sample": {"n": "many"}}, {"format": {}}])
    assert "ops[1] (sample)" in msg and "n:" in msg


def test_unknown_arg_names_position_op_and_field():
    msg = _err([{"load": {}}, {"format": {"tmpl": "{input}"}}])
    assert "ops[1] (format)" in msg and "tmpl" in msg and "not permitted" in msg.lower()


def test_args_must_be_a_mapping():
    msg = _err([{"load": {}}, {"dedup_exact": ["input"]}, {"format": {}}])
    assert "ops[1] (dedup_exact)" in msg and "mapping" in msg


def test_item_with_two_ops_is_rejected():
    msg = _err([{"load": {}, "format": {}}])
    assert "ops[0]" in msg and "exactly one op" in msg


def test_op_validators_run():
    assert "template" in _err([{"load": {}}, {"format": {"template": "no placeholder"}}])
    assert "exactly one of n or fraction" in _err([{"load": {}}, {"sample": {"n": 3, "fraction": 0.5}}, {"format": {}}])
    assert "ops[0] (load)" in _err([{"load": {"split": "val"}}, {"format": {}}])  # val never feeds training
    assert "ops[1] (length_filter)" in _err([{"load": {}}, {"length_filter": {"max_tokens": 2}}, {"format": {}}])


def test_load_must_come_first():
    assert "first op must be `load`" in _err([{"format": {}}, {"load": {}}])
    assert "first op must be `load`" in _err([])


def test_format_missing_or_duplicated():
    assert "exactly one `format`" in _err([{"load": {}}, {"dedup_exact": {}}])
    assert "exactly one `format`" in _err([{"load": {}}, {"format": {}}, {"format": {"template": "x {input}"}}])


def test_ops_must_be_a_list():
    assert "must be a list" in _err({"ops": {"load": {}}})


def test_signature_ignores_words_and_seed_but_not_settings():
    base = Plan.model_validate(plan_dict())
    same = Plan.model_validate({**plan_dict(seed=42), "direction": "other", "rationale": "different words"})
    assert base.signature() == same.signature()
    assert len(base.signature()) == 16
    assert base.signature() != Plan.model_validate(plan_dict(learning_rate=2e-3)).signature()
    assert base.signature() != Plan.model_validate(plan_dict(lora_r=16)).signature()
    assert base.signature() != Plan.model_validate(plan_dict(warm_start="parent")).signature()
    other_eval = Plan.model_validate({**plan_dict(), "eval": {"max_new_tokens": 64}})
    assert base.signature() != other_eval.signature()
    other_recipe = plan_dict()
    other_recipe["recipe"] = {"ops": [{"load": {}}, {"dedup_exact": {}}, {"format": {"template": "Q: {input}"}}]}
    assert base.signature() != Plan.model_validate(other_recipe).signature()
    # an explicit default equals an omitted one
    explicit = plan_dict()
    explicit["recipe"] = {"ops": [{"load": {"split": "train"}}, {"format": {"template": "Q: {input}", "system": None}}]}
    assert Plan.model_validate(explicit).signature() == base.signature()
    # a plan survives dump -> validate (how the researcher rebuilds a parent's plan)
    assert Plan.model_validate(base.model_dump()).signature() == base.signature()


def test_training_options_added_later_keep_old_signatures_and_count_when_set():
    import hashlib
    import json

    base = Plan.model_validate(plan_dict())
    # the signature as plans journalled before packing/checkpointing/precision and in-training val existed
    # computed it
    train = {k: v for k, v in base.train.model_dump(exclude={"seed"}).items()
             if k not in ("packing", "gradient_checkpointing", "precision", "patience", "eval_every", "quantization",
                          "lora_dtype", "padding_free", "liger", "compile")}
    body = {"from": None, "recipe": base.recipe.model_dump(), "train": train, "eval": base.eval.model_dump()}
    assert base.signature() == hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    for change in ({"packing": True}, {"gradient_checkpointing": True}, {"precision": "bf16"}, {"patience": 0},
                   {"eval_every": 5}, {"quantization": "4bit"}, {"lora_dtype": "model"}, {"padding_free": True},
                   {"liger": True}, {"compile": True}):
        assert Plan.model_validate(plan_dict(**change)).signature() != base.signature()


def test_parse_plan_errors_name_the_field():
    with pytest.raises(ConfigError) as e:
        parse_plan(plan_dict(learning_rate=5.0))
    assert e.value.field == "plan" and "train.learning_rate" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_plan({**plan_dict(), "colour": "red"})
    assert "colour" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_plan({k: v for k, v in plan_dict().items() if k != "recipe"}, where="proposal")
    assert e.value.field == "proposal" and "recipe" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_plan({**plan_dict(), "recipe": {"ops": [{"load": {}}, {"frmat": {}}]}})
    assert "ops[1]" in str(e.value) and "frmat" in str(e.value)
    assert parse_plan(plan_dict()).train.epochs == 3.0


def test_train_and_eval_bounds():
    with pytest.raises(ValidationError):
        TrainConfig(lora_r=0)
    with pytest.raises(ValidationError):
        TrainConfig(method="qlora")
    with pytest.raises(ValidationError):
        TrainConfig(unknown=1)
    with pytest.raises(ValidationError):
        EvalConfig(max_new_tokens=0)
    t = TrainConfig()
    assert t.warm_start == "base" and t.method == "lora" and 0 < t.learning_rate < 1


def test_catalogue_lists_every_op_with_schema():
    cat = catalogue()
    assert [c["name"] for c in cat] == list(OPS)
    for c in cat:
        assert c["description"] and c["args"]["type"] == "object"
    fmt = next(c for c in cat if c["name"] == "format")
    assert "template" in fmt["args"]["properties"]


def test_warm_start_signature_depends_on_the_parent():
    warm = Plan.model_validate(plan_dict(warm_start="parent"))
    cold = Plan.model_validate(plan_dict())
    assert warm.signature(1) != warm.signature(2)  # continuing different adapters: different experiments
    assert cold.signature(1) == cold.signature(2)  # from the base model the parent does not matter


def test_a_plan_from_any_researcher_is_cut_to_the_search_limits_and_says_so():
    """What `Search.launch` applies to every plan (an LLM's as much as the heuristic's): max_epochs cuts a
    longer plan, reuse off trains from the base model; the rationale names each change, nothing else moves."""
    plan = Plan.model_validate({**plan_dict(epochs=6, warm_start="parent"), "rationale": "the model said so"})
    cut = plan.within(warm_start=False, max_epochs=1.5)
    assert cut.train.epochs == 1.5 and cut.train.warm_start == "base"
    assert "cut from 6 to this search's max_epochs 1.5" in cut.rationale and "warm start is off" in cut.rationale
    assert cut.rationale.startswith("the model said so")
    assert cut.train.model_dump(exclude={"epochs", "warm_start"}) == plan.train.model_dump(exclude={"epochs", "warm_start"})
    assert plan.within(max_epochs=8) == plan and plan.within() == plan  # within the limits: untouched
