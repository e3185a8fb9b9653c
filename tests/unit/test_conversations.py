"""Multi-turn conversations as training and evaluation read them: the loss on every assistant turn and
nowhere else (checked token by token with the packaged model's tokenizer), the data's own system prompt
kept over the recipe's, evaluation's prompt exactly what training saw before the last answer."""

from __future__ import annotations

import json

import pytest

from trex_ray import prompting
from trex_ray.executor.train import tokenize_rows

CHAT = json.dumps({"system": "Remember words.", "history": [
    {"role": "user", "content": "The word is apple."}, {"role": "assistant", "content": "Noted: apple."},
    {"role": "user", "content": "And pear?"}, {"role": "assistant", "content": "Noted too."}]})


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from trex_ray.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))


def _row(chat=CHAT, user="Which word came first?", output="apple"):
    return {"user": user, "system": "The recipe's system prompt.", "output": output, "chat": chat}


def test_the_loss_is_on_every_assistant_turn_and_its_end_token_only(tok):
    (ex,), cut = tokenize_rows(tok, [_row()], 1024)
    ids, labels = ex["input_ids"], ex["labels"]
    assert cut == 0 and len(ids) == len(labels)
    # the trained tokens, in order: the three answers, each closed by the end-of-turn token
    trained = [i for i, lab in zip(ids, labels) if lab != -100]
    assert [lab for lab in labels if lab != -100] == trained  # labels are the tokens themselves
    eos = tok.eos_token_id
    answers = tok.decode(trained).split(tok.eos_token)
    assert answers == ["Noted: apple.", "Noted too.", "apple", ""] and trained.count(eos) == 3
    # every token of the system prompt, the user turns and the template's markup has no loss
    masked = tok.decode([i for i, lab in zip(ids, labels) if lab == -100])
    for part in ("Remember words.", "The word is apple.", "And pear?", "Which word came first?"):
        assert part in masked
    assert not any(a in masked for a in ("Noted", "apple<")) and "recipe's system" not in tok.decode(ids)


def test_evaluation_prompt_is_what_training_saw_before_the_last_answer(tok):
    (ex,), _ = tokenize_rows(tok, [_row()], 1024)
    prompt = tok(prompting.render(tok, "Which word came first?", "The recipe's system prompt.", CHAT),
                 add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][:len(prompt)] == prompt
    assert ex["labels"][len(prompt) - 1] == -100 and tok.decode(ex["input_ids"][len(prompt):]) == "apple" + tok.eos_token


def test_without_a_chat_template_evaluation_still_sees_what_training_saw(tok):
    """Plain `Role: text` lines: each earlier answer is closed by the end token in the evaluation prompt,
    as training closes it."""
    import copy

    plain = copy.deepcopy(tok)
    plain.chat_template = None
    (ex,), _ = tokenize_rows(plain, [_row()], 1024)
    text = prompting.render(plain, "Which word came first?", "The recipe's system prompt.", CHAT)
    assert "Assistant:\nNoted: apple." + plain.eos_token + "\nUser: And pear?" in text
    prompt = plain(text, add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][:len(prompt)] == prompt
    assert plain.decode(ex["input_ids"][len(prompt):]) == "apple" + plain.eos_token
    trained = plain.decode([i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100])
    assert trained.split(plain.eos_token) == ["Noted: apple.", "Noted too.", "apple", ""]


def test_a_single_turn_row_and_the_data_system_prompt(tok):
    (one,), _ = tokenize_rows(tok, [_row(chat="")], 1024)
    assert tok.decode([i for i, lab in zip(one["input_ids"], one["labels"]) if lab != -100]) == "apple" + tok.eos_token
    assert "The recipe's system prompt." in tok.decode(one["input_ids"])
    own = json.dumps({"system": "Data's own.", "history": []})
    msgs = prompting.messages("q", "recipe", own)
    assert msgs[0] == {"role": "system", "content": "Data's own."} and len(msgs) == 2


def test_a_template_that_rewrites_earlier_turns_trains_the_last_answer_after_the_whole_conversation(tok):
    import copy

    t = copy.deepcopy(tok)  # a template whose first line counts the turns: no rendering is a prefix of the next
    t.chat_template = ("{{ messages | length }}\n{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                       "{% if add_generation_prompt %}assistant: {% endif %}")
    turns = prompting.training_turns(t, "Which word came first?", None, "apple", CHAT)
    assert len(turns) == 1 and turns[0][1] == "apple" and "Noted too." in turns[0][0]
    (ex,), _ = tokenize_rows(t, [_row()], 1024)
    assert t.decode([i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100]) == "apple" + t.eos_token


def test_a_conversation_past_max_seq_len_is_cut_and_counted(tok):
    out, cut = tokenize_rows(tok, [_row(), _row(chat="")], 40)
    assert cut == 1 and len(out[0]["input_ids"]) == 40


def test_lora_targets_of_another_family_fall_back_to_every_linear_layer():
    """A plan with Llama's names on a GPT-2 (fused `c_attn`, `c_fc`, `c_proj`): LoRA wraps every linear layer
    instead of failing; names the model has are kept as given."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

    from trex_ray.executor.train import lora_targets

    llama_names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    assert lora_targets(llama, llama_names) == llama_names
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    assert lora_targets(gpt2, llama_names) == "all-linear" and lora_targets(gpt2, ["c_attn"]) == ["c_attn"]
    phi3 = Phi3ForCausalLM(Phi3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))
    assert lora_targets(phi3, llama_names) == "all-linear"  # only o_proj of the four: not a partial adapter
    peft = get_peft_model(gpt2, LoraConfig(r=4, target_modules=lora_targets(gpt2, llama_names), task_type="CAUSAL_LM"))
    wrapped = sorted(peft.peft_config["default"].target_modules)
    assert {w.rsplit(".", 1)[-1] for w in wrapped} == {"c_attn", "c_proj", "c_fc"}  # GPT-2's Conv1D layers
    loss = peft(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss
    loss.backward()  # the adapter trains
    assert any(p.grad is not None for n, p in peft.named_parameters() if "lora_" in n)
