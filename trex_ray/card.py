"""The Hugging Face model card (README.md) that `export` writes beside a node's weights: what the model is
fine-tuned from and under which license, for which task and metric, how it scores against the base model,
the plan that made it (data recipe and training config), its lineage in the search tree, the prompt it
expects, and how to load it. Front matter through `huggingface_hub.ModelCardData`, so the Hub reads it.
"""

from __future__ import annotations

import os

import yaml

# where the packaged models come from, and their licenses
PACKAGED_ORIGIN = {"smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
                   "tiny-random": (None, "apache-2.0")}


def base_license(base_model: str | None, model_path: str | None) -> str | None:
    """The base model's license: a packaged model's, else the `license` of its own model card, if any."""
    if base_model in PACKAGED_ORIGIN:
        return PACKAGED_ORIGIN[base_model][1]
    card = os.path.join(model_path or "", "README.md")
    if model_path and os.path.isfile(card):
        from huggingface_hub import ModelCard

        try:
            return ModelCard.load(card).data.to_dict().get("license")
        except Exception:  # noqa: BLE001 - an unreadable card is a license we cannot state
            return None
    return None


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def model_card(result, node, *, merged: bool, method: str, model_path: str | None) -> str:
    """The card of `node` (a NodeView) of `result` (a SearchResult) as README.md text."""
    from huggingface_hub import ModelCard, ModelCardData

    cfg = result.config()
    base = cfg.get("base_model")
    origin = PACKAGED_ORIGIN.get(base, (base, None))[0]
    license_ = base_license(base, model_path)
    metric = (node.result or {}).get("metric") or cfg.get("metric", "")
    name = cfg.get("name") or os.path.basename(result.run_dir)
    data = ModelCardData(
        base_model=origin if origin and "/" in origin and not os.path.isabs(origin) else None,
        license=license_ or "other", library_name="transformers" if merged else "peft",
        pipeline_tag="text-generation", tags=["trex-ray", "fine-tuned", *(["lora"] if method == "lora" else [])],
    )
    by_id = {n.id: n for n in result.nodes}
    lineage, cur = [], node
    while cur is not None:
        lineage.append(cur)
        cur = by_id.get(cur.parent_id) if cur.parent_id is not None else None
    lineage.reverse()
    plan = node.plan or {}
    prompt = node.prompt(cfg.get("goal", ""))
    lines = [
        f"# {name}: node {node.id} of a trex-ray search",
        "",
        f"Fine-tuned from `{base}`" + (f" ([{origin}](https://huggingface.co/{origin}))" if data.base_model else "")
        + f" by a trex-ray tree search of {len(result.nodes) - 1} trials"
        + (f" for: {cfg['goal'].strip().rstrip('.')}" if cfg.get("goal") else "") + ".",
        "",
        f"License: {license_ or 'not stated by the base model; check it before you share these weights'}"
        + (" (the base model's)" if license_ else "") + ".",
        "",
        "## Results",
        "",
        f"Metric: `{metric}` (higher is better). Test was evaluated once, for the baseline and the best node.",
        "",
        "| model | val | test |",
        "| --- | --- | --- |",
        f"| base model | {_score(result.baseline.val_score)} | {_score(result.baseline.test_score)} |",
        f"| this model (node {node.id}) | {_score(node.val_score)} | {_score(node.test_score)} |",
        "",
        "## How it was made",
        "",
        f"Direction: {node.direction}" + (f" ({node.rationale.strip().rstrip('.')})" if node.rationale else "") + ".",
        "",
        "Lineage in the search tree (root = the base model):",
        "",
        *[f"{i + 1}. node {n.id}: {'base model' if n.id == 0 else n.direction} (val {_score(n.val_score)})"
          for i, n in enumerate(lineage)],
        "",
        "The plan (data recipe, training and evaluation config):",
        "",
        "```yaml",
        yaml.safe_dump({k: plan[k] for k in ("recipe", "train", "eval") if k in plan}, sort_keys=False).rstrip(),
        "```",
        "",
        "## Prompt",
        "",
        "Prompt it as it was trained: the system prompt, then the template with `{input}` replaced, rendered "
        "with the tokenizer's chat template.",
        "",
        "```yaml",
        yaml.safe_dump({"system": prompt.get("system"), "template": prompt.get("template")}, sort_keys=False,
                       allow_unicode=True).rstrip(),
        "```",
        "",
        "## How to load",
        "",
        "```python",
        *(["from transformers import AutoModelForCausalLM, AutoTokenizer",
           "model = AutoModelForCausalLM.from_pretrained(PATH)"] if merged else
          ["from peft import AutoPeftModelForCausalLM",
           "from transformers import AutoTokenizer",
           "model = AutoPeftModelForCausalLM.from_pretrained(PATH)  # the base model with this adapter"]),
        "tok = AutoTokenizer.from_pretrained(PATH)",
        'messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TEMPLATE.replace("{input}", x)}]',
        "ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors='pt')",
        "print(tok.decode(model.generate(ids, max_new_tokens=64)[0][ids.shape[1]:], skip_special_tokens=True))",
        "```",
        "",
        "`trex_ray.json` beside this card holds the same record as data.",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))
