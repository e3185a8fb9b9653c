"""Loading and running models: what evaluation, training, data ops and the local LLM all share.

- `load_model` / `torch_threads`: a checkpoint onto the best device; the torch threads a worker may use.
- `engines`: the inference engines (vLLM, transformers + PEFT) behind one interface.
- `shipping`: adapter folders sent through the object store to nodes without a shared disk.

Nothing here knows about searches, plans or tasks.
"""

from __future__ import annotations


def torch_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(max(1, int(n)))


def load_model(model_path: str, precision: str = "auto"):
    """(model, tokenizer) for training on the best device: bf16 on GPU and fp32 on CPU (`precision="auto"`),
    or the dtype `precision` names."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from trex_ray.models import local_model

    hf_logging.disable_progress_bar()
    model_path = local_model(model_path)  # a node other than the driver's materialises it itself
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(precision) or (
        torch.bfloat16 if device == "cuda" else torch.float32)
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
    return model, tok
