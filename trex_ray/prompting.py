"""One way to turn an input into a prompt, shared by training and evaluation so they never drift:
the recipe's `format` op (system prompt + user template) rendered with the tokenizer's chat template,
or a plain `System:/User:/Assistant:` layout when the tokenizer has none.
"""

from __future__ import annotations

DEFAULT_SYSTEM = "You are a precise assistant. Answer with the answer only."


def task_system(goal: str) -> str:
    """The system prompt for a task: its goal, then an instruction to answer tersely."""
    return f"{goal.strip()} Answer with the answer only.".strip() if goal.strip() else DEFAULT_SYSTEM


def messages(user: str, system: str | None) -> list[dict]:
    return [{"role": "system", "content": system or DEFAULT_SYSTEM}, {"role": "user", "content": user}]


def render(tokenizer, user: str, system: str | None) -> str:
    """The prompt text up to where the model's answer starts."""
    return render_messages(tokenizer, messages(user, system))


def render_messages(tokenizer, msgs: list[dict]) -> str:
    """Any conversation, up to where the model's next turn starts."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in msgs]
    return "\n".join(lines) + "\nAssistant: "
