"""Model families beyond the packaged ones: QLoRA (a 4-bit base, CUDA only) as a plan and search setting that
is refused with the fix where it cannot run, and `trust_remote_code` for checkpoints that ship their own
model code (refused, naming the files, unless the search says so)."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from trex_ray.errors import ConfigError
from trex_ray.plan import Plan

PLAN = {"direction": "d", "rationale": "r", "recipe": {"ops": [{"load": {}}, {"format": {}}]}}


def test_quantization_is_for_lora_only():
    with pytest.raises(ValueError, match="quantization 4bit needs method lora"):
        Plan.model_validate({**PLAN, "train": {"method": "full", "quantization": "4bit"}})
    with pytest.raises(ValueError):
        Plan.model_validate({**PLAN, "train": {"quantization": "8bit"}})
    # a plan that says nothing of quantization keeps the signature it had before the setting existed
    assert Plan.model_validate(PLAN).signature(0) == Plan.model_validate(
        {**PLAN, "train": {"quantization": "none"}}).signature(0)


def test_a_search_quantization_reaches_every_plan_and_none_runs_without_a_gpu():
    full = Plan.model_validate({**PLAN, "train": {"method": "full"}})
    q = full.within(quantization="4bit", gpu=True)
    assert q.train.quantization == "4bit" and q.train.method == "lora"
    assert "quantization 4bit" in q.rationale and q.signature(0) != full.signature(0)
    # an LLM's plan asking for 4-bit on a CPU search trains on the full-precision base, and says so
    asked = Plan.model_validate({**PLAN, "train": {"quantization": "4bit"}})
    cpu = asked.within(gpu=False)
    assert cpu.train.quantization == "none" and "needs a CUDA GPU" in cpu.rationale
    assert asked.within(gpu=True) == asked  # nothing to change


def test_qlora_is_refused_without_cuda_with_the_fix():
    from trex_ray.modeling import check_quantization, quantization_config

    with pytest.raises(ConfigError) as e:
        check_quantization("4bit", use_gpu=False)
    assert e.value.field == "quantization" and "CUDA" in str(e.value) and "drop quantization" in str(e.value)
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ConfigError, match=r"trex-ray\[qlora\]"):
            check_quantization("4bit", use_gpu=True)
    assert quantization_config("none") is None
    import torch

    if not torch.cuda.is_available():  # the training worker's own guard, should a plan get past the search
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            quantization_config("4bit")


def test_the_quantization_setting_is_validated():
    from trex_ray.settings import SearchSettings

    assert SearchSettings.of(base_model="tiny-random", quantization="4bit").quantization == "4bit"
    with pytest.raises(ConfigError) as e:
        SearchSettings.of(base_model="tiny-random", quantization="int8")
    assert e.value.field == "quantization"


def custom_code_model(dst) -> str:
    """The tiny Llama dressed as a family transformers does not have: its config names model_type
    `tiny-custom` and the two Python files (shipped beside the weights) that build it."""
    from trex_ray.models import resolve_model

    shutil.copytree(resolve_model("tiny-random"), dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(model_type="tiny-custom", architectures=["TinyCustomForCausalLM"],
               auto_map={"AutoConfig": "configuration_tinycustom.TinyCustomConfig",
                         "AutoModelForCausalLM": "modeling_tinycustom.TinyCustomForCausalLM"})
    (dst / "config.json").write_text(json.dumps(cfg))
    (dst / "configuration_tinycustom.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass TinyCustomConfig(LlamaConfig):\n    model_type = 'tiny-custom'\n")
    (dst / "modeling_tinycustom.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_tinycustom import TinyCustomConfig\n\n\n"
        "class TinyCustomForCausalLM(LlamaForCausalLM):\n    config_class = TinyCustomConfig\n")
    return str(dst)


def test_a_model_that_ships_its_own_code_is_refused_unless_trusted(tmp_path):
    from trex_ray.models import check_remote_code
    from trex_ray.settings import SearchSettings

    path = custom_code_model(tmp_path / "custom")
    with pytest.raises(ConfigError) as e:
        SearchSettings.of(base_model=path)  # refused while the settings are read: no run folder yet
    msg = str(e.value)
    assert e.value.field == "trust_remote_code" and "configuration_tinycustom.py" in msg
    assert "modeling_tinycustom.py" in msg and "trust_remote_code: true" in msg
    assert SearchSettings.of(base_model=path, trust_remote_code=True).trust_remote_code is True
    assert SearchSettings.of(base_model=path, trust_remote_code="true").trust_remote_code is True  # YAML / CLI
    # auto_map on a family transformers has: its own code serves, nothing to trust
    llama = tmp_path / "llama"
    shutil.copytree(path, llama)
    cfg = json.loads((llama / "config.json").read_text())
    (llama / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    check_remote_code(str(llama), str(llama), trusted=False)


def test_remote_code_follows_the_environment_a_search_sets(monkeypatch):
    from trex_ray.models import TRUST_ENV, remote_code
    from trex_ray.runtime import carried_env

    monkeypatch.delenv(TRUST_ENV, raising=False)
    assert remote_code() == {} and carried_env() is None
    monkeypatch.setenv(TRUST_ENV, "1")
    assert remote_code() == {"trust_remote_code": True}
    assert carried_env() == {"env_vars": {TRUST_ENV: "1"}}
