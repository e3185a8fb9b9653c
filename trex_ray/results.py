"""Results: what a trial reports (`NodeResult`) and what a search returns (`SearchResult`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field


class NodeResult(BaseModel):
    """One finished trial (or the baseline). Stored in the journal and in nodes/<id>/result.json."""

    status: Literal["ok", "failed"]
    score: float | None = Field(None, description="Primary metric on val.")
    reward: float = Field(0.0, description="Score normalised against the baseline and the metric's best, in [0, 1].")
    metric: str = ""
    val: dict[str, Any] = Field(default_factory=dict, description="Evaluation summary on val (no predictions).")
    bad_cases: list[dict] = Field(default_factory=list)
    data_stats: dict[str, Any] = Field(default_factory=dict)
    train_stats: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)
    error: dict[str, str] | None = None
    seconds: float = 0.0
    accelerator_s: float = Field(0.0, description="Device (or CPU-worker) seconds spent in training and eval.")


@dataclass
class NodeView:
    """A node of a finished search, as users read it."""

    id: int
    parent_id: int | None
    direction: str
    status: str
    val_score: float | None
    test_score: float | None
    plan: dict | None
    result: dict | None
    diagnosis: str | None
    path: str

    def _artifact(self, kind: str) -> str | None:
        """The folder recorded for `kind`, or its place in this node's folder when the run was moved (or
        fetched from a storage URI onto another machine)."""
        recorded = (self.result or {}).get("artifacts", {}).get(kind)
        if recorded is None or os.path.isdir(recorded):
            return recorded
        here = os.path.join(self.path, os.path.basename(os.path.normpath(recorded)))
        return here if os.path.isdir(here) else recorded

    @property
    def adapter(self) -> str | None:
        return self._artifact("adapter")

    @property
    def checkpoint(self) -> str | None:
        """A full fine-tune's model folder (None for LoRA nodes and the baseline)."""
        return self._artifact("model")

    @property
    def rationale(self) -> str:
        return (self.plan or {}).get("rationale", "")

    def prompt(self, goal: str = "") -> dict:
        """The user template and system prompt this node was trained and evaluated with."""
        from trex_ray.prompting import task_system

        for op in ((self.plan or {}).get("recipe") or {}).get("ops", []):
            if op.get("op") == "format":
                return {"template": op.get("args", {}).get("template", "{input}"),
                        "system": op.get("args", {}).get("system")}
        return {"template": "{input}", "system": task_system(goal)}  # the baseline's

    def row(self) -> dict:
        """One flat row: ids, scores, cost, error, the plan's recipe and train config, val metrics, data
        and train stats (nested keys joined with dots; lists as JSON text)."""
        r = self.result or {}
        plan = self.plan or {}
        ops = ((plan.get("recipe") or {}).get("ops")) or []
        out = {"id": self.id, "parent_id": self.parent_id, "direction": self.direction, "status": self.status,
               "val_score": self.val_score, "test_score": self.test_score, "reward": r.get("reward"),
               "seconds": r.get("seconds"), "accelerator_s": r.get("accelerator_s"),
               "error_stage": (r.get("error") or {}).get("stage"), "error_type": (r.get("error") or {}).get("type"),
               "error": (r.get("error") or {}).get("message"), "diagnosis": self.diagnosis,
               "rationale": plan.get("rationale"), "recipe": " > ".join(o.get("op", "?") for o in ops) or None}
        for i, o in enumerate(ops):
            out.update(_flat(o.get("args") or {}, f"recipe.{i}.{o.get('op')}"))
        out.update(_flat(plan.get("train") or {}, "train"))
        out.update(_flat(plan.get("eval") or {}, "eval"))
        out.update(_flat({k: v for k, v in (r.get("val") or {}).items() if not isinstance(v, (list, dict))}, "val"))
        out.update(_flat({k: v for k, v in (r.get("train_stats") or {}).items() if k != "loss_curve"}, "train_stats"))
        ds = r.get("data_stats") or {}
        out.update({"data.rows": ds.get("rows"), "data.cache_hit": ds.get("cache_hit"), "data.seconds": ds.get("seconds")})
        return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of dotted keys (`recipe.0.load`, `train.learning_rate`), the way a table
    row or an experiment tracker's parameters take them: lists of mappings by position, other lists (and
    empty mappings) as JSON text, scalars as they are."""
    out: dict[str, Any] = {}
    if isinstance(d, dict) and d:
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, (list, tuple)) and d and all(isinstance(x, dict) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = d if isinstance(d, (int, float, str, bool)) or d is None else json.dumps(d, default=str)
    return out


def _flat(d: dict, prefix: str) -> dict:
    return flatten(d, f"{prefix}.") if d else {}


@dataclass
class SearchResult:
    run_dir: str
    best: NodeView
    baseline: NodeView
    nodes: list[NodeView]
    insights: list[str] = field(default_factory=list)
    spent: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = ""

    @property
    def gain(self) -> float | None:
        if self.best.test_score is None or self.baseline.test_score is None:
            return None
        return self.best.test_score - self.baseline.test_score

    def summary(self) -> dict:
        return {
            "run_dir": self.run_dir,
            "best_node": self.best.id,
            "best_direction": self.best.direction,
            "baseline": {"val": self.baseline.val_score, "test": self.baseline.test_score},
            "best": {"val": self.best.val_score, "test": self.best.test_score, "adapter": self.best.adapter},
            "test_gain": self.gain,
            "nodes": len(self.nodes),
            "spent": self.spent,
            "stop_reason": self.stop_reason,
            "insights": self.insights,
        }

    def node(self, node: int | None = None) -> NodeView:
        """A node by id; the best one by default."""
        if node is None:
            return self.best
        for n in self.nodes:
            if n.id == node:
                return n
        raise KeyError(f"no node {node} in {self.run_dir} (ids 0..{len(self.nodes) - 1})")

    def to_pandas(self):
        """One row a node (the baseline included), the plan and metrics flattened into columns."""
        import pandas as pd

        return pd.DataFrame([n.row() for n in self.nodes]).set_index("id", drop=False)

    def config(self) -> dict:
        """The run's config.yaml (empty if the folder has none)."""
        import yaml

        path = os.path.join(self.run_dir, "config.yaml")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return yaml.safe_load(f) or {}

    def _weights(self, node: int | None) -> tuple[NodeView, str, str | None]:
        """(node, model folder, adapter folder or None) of a node that has weights."""
        from trex_ray.models import local_model, resolve_model

        n = self.node(node)
        if n.id != 0 and n.status != "ok":
            raise ValueError(f"node {n.id} has no model: it {n.status}"
                             + (f" ({(n.result or {}).get('error', {}).get('message', '')[:200]})" if n.result else ""))
        if n.checkpoint:
            return n, n.checkpoint, None
        base = self.config().get("base_model")
        if not base:
            raise ValueError(f"{self.run_dir}/config.yaml names no base_model")
        return n, local_model(resolve_model(base)), n.adapter

    def load_model(self, node: int | None = None, *, merge: bool = False, device: str | None = None):
        """(model, tokenizer) of a node (the best by default), ready for `model.generate`: the base model with
        the node's LoRA adapter attached (or merged in, with `merge=True`), or a full fine-tune's checkpoint.
        Prompt it as the node was trained: `SearchResult.node(i).prompt()` gives the template and system."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _, model_path, adapter = self._weights(node)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        code = {"trust_remote_code": True} if self.config().get("trust_remote_code") else {}  # as the run said
        tok = AutoTokenizer.from_pretrained(model_path, **code)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, **code)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
            if merge:
                model = model.merge_and_unload()
        return model.to(device).eval(), tok

    def export(self, path: str, node: int | None = None, merge: bool = True, push_to_hub: str | None = None,
               private: bool = True) -> str:
        """Write a node's model (the best by default) to `path` as a Hugging Face checkpoint: with `merge`, the
        adapter folded into the base weights (loads with `AutoModelForCausalLM.from_pretrained(path)`);
        without, the PEFT adapter folder (loads with `peft.AutoPeftModelForCausalLM`). Beside it, a model
        card (README.md: base model and license, task, scores against the baseline, plan, lineage, prompt,
        how to load) and `trex_ray.json` (the same as data). `push_to_hub="org/name"` then uploads the folder
        with `huggingface_hub` (a private repo unless `private=False`; the token from HF_TOKEN or the
        `huggingface-cli login` cache)."""
        if push_to_hub is not None:  # a bad repo id is refused before anything is written
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(push_to_hub)
            except HFValidationError as e:
                raise ValueError(f"push_to_hub: {push_to_hub!r} is not a Hub repo id ({e}); give 'org/name'") from None
        if os.path.exists(path) and os.listdir(path):
            raise FileExistsError(f"{path} exists and is not empty: give a new folder")
        n, model_path, adapter = self._weights(node)
        model, tok = self.load_model(n.id, merge=merge, device="cpu")
        model.save_pretrained(path)
        tok.save_pretrained(path)
        cfg = self.config()
        record = {"run_dir": self.run_dir, "node": n.id, "direction": n.direction, "rationale": n.rationale,
                  "val_score": n.val_score, "test_score": n.test_score, "metric": (n.result or {}).get("metric"),
                  "baseline": {"val": self.baseline.val_score, "test": self.baseline.test_score},
                  "base_model": cfg.get("base_model"), "merged": bool(merge or adapter is None),
                  "prompt": n.prompt(cfg.get("goal", "")), "plan": n.plan}
        with open(os.path.join(path, "trex_ray.json"), "w") as f:
            json.dump(record, f, indent=1, default=str)
        from trex_ray.card import model_card

        method = ((n.plan or {}).get("train") or {}).get("method", "lora")
        with open(os.path.join(path, "README.md"), "w") as f:
            f.write(model_card(self, n, merged=record["merged"], method=method, model_path=model_path))
        if push_to_hub is not None:
            from huggingface_hub import HfApi

            api = HfApi()
            api.create_repo(push_to_hub, private=private, exist_ok=True)
            api.upload_folder(repo_id=push_to_hub, folder_path=path,
                              commit_message=f"trex-ray: node {n.id} of {os.path.basename(self.run_dir)}")
        return path

    def save(self) -> None:
        with open(os.path.join(self.run_dir, "result.json"), "w") as f:
            json.dump(self.summary(), f, indent=2)
