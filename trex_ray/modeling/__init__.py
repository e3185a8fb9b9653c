"""Loading and running models: what evaluation, training, data ops and the local LLM all share.

- `load_model` / `torch_threads`: a checkpoint onto the best device; the torch threads a worker may use.
- `engines`: the inference engines (vLLM, transformers + PEFT) behind one interface.
- `shipping`: adapter folders sent through the object store to nodes without a shared disk.

Nothing here knows about searches, plans or tasks.
"""

from __future__ import annotations

from trex_ray.models import remote_code


def check_quantization(quantization: str, use_gpu: bool) -> None:
    """QLoRA's 4-bit base needs bitsandbytes' CUDA kernels: refused, naming the setting, before a trial runs."""
    import importlib.util

    from trex_ray.errors import ConfigError

    if not use_gpu:
        raise ConfigError("quantization", f"{quantization} (QLoRA) needs CUDA GPUs, and this search runs without one",
                          "drop quantization (on CPU, LoRA trains on the full-precision base), or run on a GPU "
                          "cluster")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("quantization", f"{quantization} needs the bitsandbytes package, which is not installed",
                          "pip install 'trex-ray[qlora]'")


def quantization_config(quantization: str):
    """transformers' `BitsAndBytesConfig` for `quantization` (None for none): NF4 with double quantization
    and bf16 compute, as QLoRA trains."""
    if quantization == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise RuntimeError(f"train.quantization {quantization} (QLoRA) needs a CUDA GPU; this worker has none. "
                           "Set quantization: none, or train on GPUs")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def torch_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(max(1, int(n)))


def load_model(model_path: str, precision: str = "auto", quantization: str = "none",
               gradient_checkpointing: bool = False):
    """(model, tokenizer) for training on the best device: bf16 on GPU and fp32 on CPU (`precision="auto"`),
    or the dtype `precision` names; with `quantization="4bit"` the weights in 4-bit NF4 on the GPU, made
    ready for a LoRA adapter (QLoRA; CUDA only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from trex_ray.models import local_model

    hf_logging.disable_progress_bar()
    model_path = local_model(model_path)  # a node other than the driver's materialises it itself
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(precision) or (
        torch.bfloat16 if device == "cuda" else torch.float32)
    tok = AutoTokenizer.from_pretrained(model_path, **remote_code())
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    quant = quantization_config(quantization)
    if quant is not None:  # weights placed on the GPU as they are quantized; adapters train in bf16 over them
        from peft import prepare_model_for_kbit_training

        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16, quantization_config=quant,
                                                     device_map={"": torch.cuda.current_device()}, **remote_code())
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing), tok
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, **remote_code()).to(device)
    return model, tok
