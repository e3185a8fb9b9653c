"""The transformers engine on the tiny random model: batching and left padding do not change greedy
answers, an adapter changes them for its request only, log-likelihoods do not depend on how requests
are batched and agree with a direct forward pass."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny():
    from trex_ray.models import resolve_model

    return resolve_model("tiny-random")


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    m = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for n, p in m.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 1.0)  # big enough to change greedy answers
    path = str(tmp_path_factory.mktemp("adapter"))
    m.save_pretrained(path)
    return path


CONVS = [[{"role": "user", "content": q}] for q in
         ["quarter past three", "ten to nine in the evening", "noon", "half past seven in the morning", "one"]]


def test_batched_left_padded_generation_equals_one_at_a_time(tiny):
    from trex_ray.modeling.engines import HFEngine

    e = HFEngine(tiny, threads=1)
    together = e.generate(CONVS, max_new_tokens=6, batch_size=5)
    alone = [e.generate([c], max_new_tokens=6, batch_size=1).texts[0] for c in CONVS]
    assert together.texts == alone
    assert together.input_tokens > 0 and 0 < together.output_tokens <= 6 * len(CONVS)
    assert len(together.cut) == len(CONVS)


def test_an_adapter_applies_to_its_request_only(tiny, adapter):
    from trex_ray.modeling.engines import HFEngine

    e = HFEngine(tiny, threads=1)
    before = e.generate(CONVS, max_new_tokens=6).texts
    with_adapter = e.generate(CONVS, adapter, max_new_tokens=6).texts
    after = e.generate(CONVS, max_new_tokens=6).texts
    assert with_adapter != before
    assert after == before  # the base weights are untouched
    assert e.stats()["adapter_loads"] == 1


def test_loglik_is_batch_invariant_and_matches_a_direct_forward_pass(tiny, adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trex_ray import prompting
    from trex_ray.modeling.engines import HFEngine

    e = HFEngine(tiny, threads=1)
    options = [["yes", "no", "quarter past"]] * len(CONVS)
    batched = e.loglik(CONVS, options, adapter, batch_size=16)
    single = e.loglik(CONVS, options, adapter, batch_size=1)
    flat = [v for row in batched for v in row]
    assert flat == pytest.approx([v for row in single for v in row], abs=1e-4)
    # by hand, for the first conversation and option
    tok = e.enc.tok
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), adapter).eval()
    p = tok(prompting.render_messages(tok, CONVS[0]), add_special_tokens=False)["input_ids"]
    o = tok("quarter past", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([p + o])).logits[0].float(), -1)
    direct = sum(float(logp[len(p) - 1 + k, t]) for k, t in enumerate(o))
    assert batched[0][2] == pytest.approx(direct, abs=1e-4)
    assert all(v < 0 for row in batched for v in row)


def test_long_prompts_keep_their_end_within_the_context_limit(tiny):
    from trex_ray.modeling.engines import HFEngine

    e = HFEngine(tiny, threads=1, max_model_len=64)
    ids = e.enc.encode([[{"role": "user", "content": "word " * 500}]], room=16)
    assert len(ids[0]) == 48
    out = e.generate([[{"role": "user", "content": "word " * 500}]], max_new_tokens=16)
    assert out.input_tokens == 48
