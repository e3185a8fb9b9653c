"""Training options that change how the same data is computed: sequence packing, padding-free micro-batches,
gradient checkpointing, precision, the adapter's dtype, torch.compile. Packing and padding-free rows must not
let examples see each other; the others must not change what is learnt."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny():
    from trex_ray.models import resolve_model

    return resolve_model("tiny-random")


def _examples(tok, n=6):
    from trex_ray.executor.train import tokenize_rows

    rows = [{"user": f"what is {i} plus {i}?", "system": "Answer briefly.", "output": str(2 * i)} for i in range(n)]
    return tokenize_rows(tok, rows, 128)[0]


def test_a_packed_example_sees_only_itself(tiny):
    """Logits of each example inside a pack equal its logits alone: packing changes the layout, not the math."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trex_ray.executor.train import _collate, pack_examples

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    ex = _examples(tok)
    packs = pack_examples(ex, max_len=3 * max(len(e["input_ids"]) for e in ex))
    assert 1 < len(packs) < len(ex)  # several examples per pack
    assert sum(len(p["input_ids"]) for p in packs) == sum(len(e["input_ids"]) for e in ex)  # no token lost or added
    batch = _collate(packs, tok.pad_token_id or 0)
    assert "attention_mask" not in batch
    with torch.inference_mode():
        # as the training loop calls it (without a KV cache, which would make transformers skip packed masks)
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        i = 0
        for p_idx, p in enumerate(packs):
            start = 0
            while start < len(p["input_ids"]):
                e = ex[i]
                n = len(e["input_ids"])
                alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0]
                assert torch.allclose(packed[p_idx, start:start + n], alone, atol=1e-4), f"example {i} leaked"
                start += n
                i += 1
    assert i == len(ex)


def test_a_padding_free_row_gives_each_example_its_own_logits(tiny):
    """A padding-free micro-batch is one row of its examples end to end: no padding, and each example's logits
    are its logits alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trex_ray.executor.train import _collate_flat, pack_examples

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    ex = _examples(tok)
    for part in (ex, pack_examples(ex, max_len=2 * max(len(e["input_ids"]) for e in ex))):  # examples, or packs
        batch = _collate_flat(part, tok.pad_token_id or 0)
        assert batch["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in ex))  # not a token of padding
        assert "attention_mask" not in batch and batch["labels"][0].tolist() == [x for e in ex for x in e["labels"]]
        with torch.inference_mode():
            row = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
            start = 0
            for i, e in enumerate(ex):
                n = len(e["input_ids"])
                alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0]
                assert torch.allclose(row[start:start + n], alone, atol=1e-4), f"example {i} leaked"
                start += n


def test_packing_checkpointing_and_precision_train_through_the_executor(tmp_path, tiny):
    """One real Ray Train run per setting on the same data: every one learns (loss falls), packing needs fewer
    padded tokens, and gradient checkpointing gives the same losses as without it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trex_ray.executor import train as train_mod
    from trex_ray.plan import TrainConfig
    rows = [{"system": "Answer yes or no.", "user": f"is {i} even?", "output": "yes" if i % 2 == 0 else "no"}
            for i in range(48)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "part.parquet")

    def fit(name, **kw):
        cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, max_seq_len=128, **kw).model_dump()
        return train_mod.fit(data_dir=str(tmp_path / "data"), model_path=tiny, train_cfg=cfg, init_adapter=None,
                             node_dir=str(tmp_path / name), threads=1)

    plain = fit("plain")
    packed = fit("packed", packing=True)
    ckpt = fit("ckpt", gradient_checkpointing=True)
    for s in (plain, packed, ckpt):
        assert s["final_loss"] < s["loss_curve"][0] and s["tokens_per_s"] > 0 and s["loop_seconds"] > 0
        # the first step is timed apart from the rest: together they are the loop
        assert 0 < s["first_step_seconds"] < s["loop_seconds"] and s["steady_tokens_per_s"] > 0
    assert packed["sequences"] < plain["sequences"] == plain["examples"] == packed["examples"]
    assert packed["tokens"] == plain["tokens"]  # the same real tokens per epoch...
    assert packed["padded_tokens"] < plain["padded_tokens"]  # ...with less padding around them
    assert ckpt["loss_curve"] == pytest.approx(plain["loss_curve"], abs=1e-3)
    # padding-free micro-batches under torch.compile: the same examples in the same steps, no padding, the
    # same losses
    free = fit("free", padding_free=True, compile=True)
    assert free["padded_tokens"] == free["tokens"] == plain["tokens"]
    assert free["loss_curve"] == pytest.approx(plain["loss_curve"], abs=1e-3)
    # bf16 with the adapter in bf16 too (PEFT would keep it fp32): it learns, and saves a bf16 adapter
    bf16 = fit("bf16", precision="bf16", lora_dtype="model")
    assert bf16["final_loss"] < bf16["loss_curve"][0]
    from safetensors import safe_open

    with safe_open(f"{bf16['artifact']}/adapter_model.safetensors", "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}


def test_data_parallel_training_shards_the_data_and_keeps_the_workers_in_step(tmp_path, tiny):
    """Two Ray Train workers (DDP on gloo): each trains on its half of the rows, so together they count the
    tokens one worker does in half the steps (a step takes a batch from each); micro-batches accumulate
    before the step's one gradient sync; packed shards, whose numbers of sequences can differ, still end
    together."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trex_ray.executor import train as train_mod
    from trex_ray.plan import TrainConfig
    # lengths vary, so the two shards pack into different numbers of sequences
    rows = [{"system": "Answer yes or no.", "user": f"is {i} even?" + " Think." * (i % 9 if i < 24 else 0),
             "output": "yes" if i % 2 == 0 else "no"} for i in range(48)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "part.parquet")

    def fit(name, workers, micro=None, **kw):
        cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, max_seq_len=128, **kw).model_dump()
        return train_mod.fit(data_dir=str(tmp_path / "data"), model_path=tiny, train_cfg=cfg, init_adapter=None,
                             node_dir=str(tmp_path / name), threads=1, num_workers=workers, micro_batch_size=micro)

    one = fit("one", 1)
    two = fit("two", 2, micro=3)
    assert one["workers"] == 1 and two["workers"] == 2
    assert two["examples"] == one["examples"] == 48
    assert two["tokens"] == one["tokens"] and two["steps"] * 2 == one["steps"] == 12
    assert two["final_loss"] < two["loss_curve"][0]
    assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").exists()
    packed = fit("packed", 2, packing=True)
    assert packed["workers"] == 2 and packed["sequences"] < 48 and packed["steps"] >= 2


def test_a_search_trains_its_trials_on_several_workers(tmp_path):
    """`train_workers` reaches every trial's training, and the trial's accelerator seconds count each worker."""
    import json
    import os

    import trex_ray
    from tests.conftest import majority_rows, write_jsonl

    paths = {s: write_jsonl(tmp_path / "data" / f"{s}.jsonl", majority_rows(n, i))
             for i, (s, n) in enumerate([("train", 64), ("val", 16), ("test", 16)])}
    task = trex_ray.Task.from_jsonl(name="dp", input_field="question", output_field="answer", metric="accuracy",
                                    labels=["yes", "no"], **paths)
    r = trex_ray.search(task, base_model="tiny-random", budget=trex_ray.Budget(trials=1), max_concurrent=1,
                        train_workers=2, storage=str(tmp_path / "runs"), progress=False)
    node = json.load(open(os.path.join(r.run_dir, "nodes", "1", "result.json")))
    assert node["status"] == "ok", node["error"]
    st = node["train_stats"]
    assert st["workers"] == 2 and st["examples"] == node["data_stats"]["rows"]  # the two shards together
    # a val set of <= 48 rows is scored inside training (its seconds are already in the workers' time)
    val_s = 0.0 if node["val"].get("in_training") else node["val"]["seconds"]
    assert node["accelerator_s"] == pytest.approx(2 * st["seconds"] + val_s, abs=0.015)


def test_a_failure_of_several_workers_own_code_is_not_restarted(tmp_path, tiny):
    """With several workers a worker's own error (here a NaN loss) is raised rather than reported, and Ray
    Train would spend `train_retries` restarts on it; they are kept for lost workers, so the run starts
    once and fails as diverged (the known error, not a peer's echo of it)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.conftest import nan_model
    from trex_ray.executor import train as train_mod
    from trex_ray.plan import TrainConfig
    bad = nan_model(tiny, tmp_path / "nan-model")
    rows = [{"system": "", "user": f"is {i} even?", "output": "yes" if i % 2 == 0 else "no"} for i in range(16)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "part.parquet")
    cfg = TrainConfig(epochs=1, batch_size=4, max_seq_len=64).model_dump()
    with pytest.raises(train_mod.Diverged):
        train_mod.fit(data_dir=str(tmp_path / "data"), model_path=bad, train_cfg=cfg, init_adapter=None,
                      node_dir=str(tmp_path / "node"), threads=1, num_workers=2, retries=1)
    lines = [json.loads(x) for x in open(tmp_path / "node" / "logs" / "train_progress.jsonl")]
    assert [x["step"] for x in lines] == [0]  # one start, no restart


CALLBACKS_PROBE = """
import ray
from ray.train import ScalingConfig
from trex_ray.executor.train import _state_api_served, _trainer_class

@ray.remote(num_cpus=0)
def probe():  # where trials build their trainers: in a Ray task
    trainer = _trainer_class()(lambda config: None, scaling_config=ScalingConfig(num_workers=1))
    return _state_api_served(), [type(c).__name__ for c in trainer._create_default_callbacks()]
"""


def test_without_a_state_api_training_goes_without_ray_trains_placement_group_cleaner():
    """The local cluster serves no state API: Ray Train's cleaner could never clean there and made every run end
    12 s late (more where a `ray start` cluster once ran). tests/integration/test_cluster.py checks that a
    `ray start` head, which serves it, keeps the cleaner. A run without Ray datasets (every trial's) starts no
    dataset manager either."""
    import ray

    scope: dict = {}
    exec(CALLBACKS_PROBE, scope)  # noqa: S102 - the same probe the cluster test sends to its head
    served, callbacks = ray.get(scope["probe"].remote())
    assert served is False
    assert "PlacementGroupCleanerCallback" not in callbacks
    # nor its Ray Data manager actor, started for every run even without datasets (the rows come as one table)
    assert "DatasetsCallback" not in callbacks and "BackendSetupCallback" in callbacks
    import ray.data
    from ray.train import ScalingConfig

    from trex_ray.executor.train import _trainer_class

    with_data = _trainer_class()(lambda config: None, scaling_config=ScalingConfig(num_workers=1),
                                 datasets={"train": ray.data.range(4)})
    assert "DatasetsCallback" in [type(c).__name__ for c in with_data._create_default_callbacks()]


def test_a_lone_worker_runs_without_the_torch_backend_and_several_workers_with_it():
    """One worker has nobody to synchronise with: Ray Train's plain trainer and no-op backend, so the run's
    controller process never imports torch. Several workers get TorchTrainer's process group (the
    data-parallel test above trains through it)."""
    from ray.train import ScalingConfig
    from ray.train.backend import BackendConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from trex_ray.executor.train import _trainer_class

    lone = _trainer_class(1)(lambda config: None, scaling_config=ScalingConfig(num_workers=1))
    assert not isinstance(lone, TorchTrainer) and type(lone.backend_config) is BackendConfig
    assert "torch" not in type(lone.backend_config).__module__  # unpickled in the controller: no torch import
    several = _trainer_class(2)(lambda config: None, scaling_config=ScalingConfig(num_workers=2))
    assert isinstance(several, TorchTrainer) and isinstance(several.backend_config, TorchConfig)
