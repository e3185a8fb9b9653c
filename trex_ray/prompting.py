"""One way to turn an input into a prompt, shared by training and evaluation so they never drift:
the recipe's `format` op (system prompt + user template) rendered with the tokenizer's chat template,
or a plain `System:/User:/Assistant:` layout when the tokenizer has none. A row from a conversation
carries the turns before its input (its `chat`): they come between the system prompt and the input, and
a system prompt of the data's own replaces the recipe's.
"""

from __future__ import annotations

import json

DEFAULT_SYSTEM = "You are a precise assistant. Answer with the answer only."


def task_system(goal: str) -> str:
    """The system prompt for a task: its goal, then an instruction to answer tersely."""
    return f"{goal.strip()} Answer with the answer only.".strip() if goal.strip() else DEFAULT_SYSTEM


def chat_context(chat: str | dict | None) -> tuple[str | None, list[dict]]:
    """A row's conversation context (`chat`: JSON text or its dict; empty for a single-turn row) as the
    data's own system prompt (None: the recipe's applies) and the turns before the input."""
    if not chat:
        return None, []
    c = json.loads(chat) if isinstance(chat, str) else chat
    return c.get("system"), list(c.get("history") or [])


def messages(user: str, system: str | None, chat: str | dict | None = None) -> list[dict]:
    own, history = chat_context(chat)
    system = own if own is not None else system
    return [{"role": "system", "content": system or DEFAULT_SYSTEM}, *history, {"role": "user", "content": user}]


def render(tokenizer, user: str, system: str | None, chat: str | dict | None = None) -> str:
    """The prompt text up to where the model's answer starts."""
    return render_messages(tokenizer, messages(user, system, chat))


def training_turns(tokenizer, user: str, system: str | None, output: str,
                   chat: str | dict | None = None) -> list[tuple[str, str]]:
    """What training reads of one row, as (text before an answer, the answer) per assistant turn: every
    assistant turn of a conversation is trained on, the text between answers (the template's markup, the
    user turns) is not. Each text before an answer is what the chat template renders after the previous
    answer, less the end-of-sequence token that closes it (the trainer adds that one, with the loss on it).
    A template that renders earlier turns differently once the conversation goes on (one that drops past
    reasoning, say) gets the last answer only, after the whole conversation as its prompt."""
    msgs = messages(user, system, chat)
    answers = [i for i, m in enumerate(msgs) if m["role"] == "assistant"] + [len(msgs)]
    msgs = [*msgs, {"role": "assistant", "content": output}]
    eos = getattr(tokenizer, "eos_token", None) or ""
    turns, done = [], ""
    for i in answers:
        prompt = render_messages(tokenizer, msgs[:i])
        if not prompt.startswith(done):
            return [(render_messages(tokenizer, msgs[:-1]), output)]
        before = prompt[len(done):]
        if done and eos and before.startswith(eos):
            before = before[len(eos):]
        turns.append((before, msgs[i]["content"]))
        done = prompt + msgs[i]["content"]
    return turns


def render_messages(tokenizer, msgs: list[dict]) -> str:
    """Any conversation, up to where the model's next turn starts. A tokenizer without a chat template gets
    plain `Role:` blocks; an answer starts on a line of its own (no trailing space for it to merge with, so
    the earlier answers of a conversation tokenise as training tokenised them) and is closed by the
    end-of-sequence token as training closes it: a conversation's evaluation prompt is what training saw
    before its last answer."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    eos = getattr(tokenizer, "eos_token", None) or ""
    lines = [f"Assistant:\n{m['content']}{eos}" if m["role"] == "assistant" else f"{m['role'].capitalize()}: {m['content']}"
             for m in msgs]
    return "\n".join(lines) + "\nAssistant:\n"
