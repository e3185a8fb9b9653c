"""The evaluation service: long-lived engine actors that every trial's evaluation goes through.

`EvalService` is one Ray actor per run that routes requests to engine actors (see `engines`):
- the base model is loaded once per engine (`replicas` of them, round-robin), and a node's LoRA adapter is
  applied per request, so evaluating the 50th node costs no model load. vLLM pads every adapter to its
  engine's `max_lora_rank` (a rank-8 adapter on a rank-64 engine ran 6x slower on CPU here), so base
  engines are kept per rank bucket (8, 16, 32, ...), started when an adapter of that rank first comes;
- a full fine-tune (a checkpoint, no adapter) gets an engine of its own; at most `max_engines` of those
  live at once, the least recently used idle one is stopped to make room;
- an engine that cannot start (vLLM missing, or unable to load the model) is replaced by a transformers
  engine for that model, and every answer names the backend that produced it (`Generation.backend`).

Engines sit on a GPU each when the cluster has GPUs (or `tensor_parallel_size` of them), on the CPU
otherwise. `Evaluation` is the small picklable handle trials use: with the service it forwards requests;
without one (`evaluator: transformers`) it runs a transformers engine in a Ray task per call, which
holds its CPU (or GPU) only while it evaluates.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import ray

from trex_ray.modeling import shipping
from trex_ray.modeling.engines import ENGINES, EVALUATORS, LORA_RANKS, Generation, HFEngine, cuda_available, vllm_available

log = logging.getLogger(__name__)


def resolve_evaluator(name: str, use_gpu: bool, gpus: float = 0) -> str:
    """`auto`: vLLM when it is installed and the cluster has a GPU to spare for it (an engine holds its GPU
    for the whole run, so with a single GPU the trials would wait for it forever), transformers otherwise.
    `gpus` is the cluster's GPU count."""
    from trex_ray.errors import ConfigError

    if name not in EVALUATORS:
        raise ConfigError("evaluator", f"unknown evaluator {name!r}", f"use one of {', '.join(EVALUATORS)}")
    if name == "auto":
        return "vllm" if use_gpu and gpus >= 2 and vllm_available() else "transformers"
    if name == "vllm" and use_gpu and gpus < 2:
        raise ConfigError("evaluator", f"vllm on GPUs needs a GPU of its own next to the trials' (cluster has {gpus:g})",
                          "use evaluator: transformers (or auto) on a one-GPU machine, or add a GPU")
    return name


def _engine_options(backend: str, use_gpu: bool, tp: int) -> dict:
    """GPU engines hold their GPUs. A CPU engine reserves no logical CPU: it lives for the whole run, and a
    reserved CPU would starve the trials (and the Ray Data tasks feeding their trainers) it serves; its
    threads share the cores with them instead."""
    opts: dict[str, Any] = {"num_gpus": tp if use_gpu else 0, "num_cpus": 0}
    if backend == "vllm":
        opts["max_concurrency"] = 64  # concurrent requests are merged into batches inside the engine
    return opts




def lora_rank_bucket(adapter: str | None) -> int:
    """The smallest engine rank that holds this adapter (its `r` and any per-module `rank_pattern`)."""
    import json
    import os

    rank = 8
    if adapter:
        try:
            if isinstance(adapter, shipping.Shipped):  # read from the request, nothing written here
                cfg = json.loads(adapter.files["adapter_config.json"])
            else:
                with open(os.path.join(adapter, "adapter_config.json")) as f:
                    cfg = json.load(f)
            rank = max([int(cfg.get("r") or 8), *map(int, (cfg.get("rank_pattern") or {}).values())])
        except (OSError, ValueError, TypeError, KeyError):
            pass
    return next((r for r in LORA_RANKS if r >= rank), LORA_RANKS[-1])


def _reason(e: Exception) -> str:
    """The informative end of an engine's start-up error (Ray wraps it in tracebacks)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "further information" not in ln
             and not ln.strip().startswith(("File ", "^", "Traceback"))]
    return f"{type(e).__name__}: {' '.join(lines[-3:])[:400]}"


@ray.remote(num_cpus=0)
class EvalService:
    def __init__(self, base_model: str, backend: str = "vllm", *, use_gpu: bool = False, replicas: int = 1,
                 max_engines: int = 2, engine_kwargs: dict | None = None):
        self.base_model = base_model
        self.backend = backend
        self.use_gpu = use_gpu
        self.replicas = max(1, replicas)
        self.max_engines = max(1, max_engines)
        self.engine_kwargs = dict(engine_kwargs or {})
        self.base: dict[int, list] = {}  # LoRA rank bucket -> [(handle, backend)]
        self.full: OrderedDict[str, tuple] = OrderedDict()  # checkpoint path -> (handle, backend), LRU order
        self.busy: dict[str, int] = {}
        self.fallbacks: dict[str, str] = {}  # model path -> why it runs on transformers
        self.rr = itertools.count()
        self.lock = asyncio.Lock()

    async def _start(self, model_path: str, lora_rank: int | None) -> tuple:
        tp = int(self.engine_kwargs.get("tensor_parallel_size", 1)) if self.use_gpu else 1
        if self.backend == "vllm":
            try:
                kw = {**self.engine_kwargs, "enable_lora": lora_rank is not None}
                if lora_rank is not None:
                    kw["max_lora_rank"] = lora_rank
                h = ray.remote(ENGINES["vllm"]).options(**_engine_options("vllm", self.use_gpu, tp)).remote(
                    model_path, **kw)
                await h.stats.remote()  # raises if the engine could not start
                return h, "vllm"
            except Exception as e:  # noqa: BLE001 - an engine that cannot start falls back to transformers
                self.fallbacks[shipping.key(model_path)] = _reason(e)
        kw = {k: v for k, v in self.engine_kwargs.items() if k in ("max_model_len",)}
        h = ray.remote(HFEngine).options(**_engine_options("transformers", self.use_gpu, 1)).remote(model_path, **kw)
        await h.stats.remote()
        return h, "transformers"

    async def _engine(self, shipped_model, adapter) -> tuple[str, tuple]:
        """(busy key, (engine, backend)) for a request. Paths may come `shipping.ship`ped."""
        model_path = shipping.key(shipped_model)
        while True:
            async with self.lock:
                if model_path == self.base_model:
                    # one engine (group) per LoRA rank bucket: vLLM pads every adapter to the engine's
                    # max_lora_rank, so a rank-8 adapter on a rank-64 engine costs several times more
                    rank = self.engine_kwargs.get("max_lora_rank") or lora_rank_bucket(adapter)
                    group = self.base.setdefault(rank, [])
                    while len(group) < self.replicas:
                        group.append(await self._start(model_path, rank))
                    return f"base:{rank}", group[next(self.rr) % len(group)]
                if model_path in self.full:
                    self.full.move_to_end(model_path)
                    return model_path, self.full[model_path]
                idle = [p for p in self.full if not self.busy.get(p)]
                if len(self.full) < self.max_engines or idle:
                    if len(self.full) >= self.max_engines:  # stop the least recently used idle engine
                        ray.kill(self.full.pop(idle[0])[0])
                    self.full[model_path] = await self._start(shipped_model, None)
                    return model_path, self.full[model_path]
            await asyncio.sleep(0.2)  # every engine is serving: wait for one to finish

    async def _call(self, method: str, model_path: str, adapter: str | None, *args, **kw):
        key, (handle, backend) = await self._engine(model_path, adapter)
        self.busy[key] = self.busy.get(key, 0) + 1
        try:
            out = await getattr(handle, method).remote(*args, **kw)
        finally:
            self.busy[key] -= 1
        return out, backend

    async def generate(self, model_path: str, adapter: str | None, conversations: list, **kw) -> Generation:
        out, backend = await self._call("generate", model_path, adapter, conversations, adapter, **kw)
        if backend == "transformers" and shipping.key(model_path) in self.fallbacks:  # the fallback engine
            out.extra["fallback"] = self.fallbacks[shipping.key(model_path)]
        return out

    async def loglik(self, model_path: str, adapter: str | None, conversations: list, options: list,
                     **kw) -> list[list[float]]:
        return (await self._call("loglik", model_path, adapter, conversations, options, adapter, **kw))[0]

    async def stats(self) -> dict:
        engines = [h for g in self.base.values() for h, _ in g] + [h for h, _ in self.full.values()]
        return {"backend": self.backend, "base_engines": {r: len(g) for r, g in self.base.items()},
                "full_engines": list(self.full),
                "fallbacks": dict(self.fallbacks), "engines": [await h.stats.remote() for h in engines]}

    async def shutdown(self) -> None:
        for h, _ in [e for g in self.base.values() for e in g] + list(self.full.values()):
            ray.kill(h)
        self.base, self.full = {}, OrderedDict()


@ray.remote(num_cpus=1)
def _hf_call(method: str, model_path: str, adapter: str | None, conversations: list, extra: tuple, kw: dict,
             threads: int | None):
    engine = HFEngine(model_path, threads=threads)
    if method == "generate":
        return engine.generate(conversations, adapter, **kw)
    return engine.loglik(conversations, extra[0], adapter, **kw)


@dataclass
class Evaluation:
    """What a trial needs to evaluate: the backend's name and, for vLLM, the service actor."""

    name: str  # vllm | transformers
    service: Any = None
    use_gpu: bool = False
    threads: int | None = None
    base_model: str | None = None  # other model paths are checkpoints of trials, shipped with each request

    def _task(self):
        from trex_ray.runtime import carried_env

        return _hf_call.options(num_gpus=1 if self.use_gpu else 0, num_cpus=1, runtime_env=carried_env())

    def _ship(self, model_path: str, adapter: str | None) -> tuple:
        """A full checkpoint and an adapter travel with the request: the engine may sit on a node that
        lacks this one's disk (the base model is materialised by each node itself)."""
        full = self.base_model is not None and model_path != self.base_model
        # adapters (small) always travel: a node that joins later (autoscaling) may serve the request; a full
        # checkpoint only on a cluster of several nodes
        return (shipping.ship(model_path) if full else model_path), shipping.ship(adapter, always=True)

    def generate(self, model_path: str, adapter: str | None, conversations: Sequence[list[dict]], *,
                 max_new_tokens: int, batch_size: int = 16) -> Generation:
        kw = {"max_new_tokens": max_new_tokens, "batch_size": batch_size}
        model_path, adapter = self._ship(model_path, adapter)
        if self.service is not None:
            return ray.get(self.service.generate.remote(model_path, adapter, list(conversations), **kw))
        return ray.get(self._task().remote("generate", model_path, adapter, list(conversations), (), kw,
                                           self.threads))

    def loglik(self, model_path: str, adapter: str | None, conversations: Sequence[list[dict]],
               options: Sequence[Sequence[str]], *, batch_size: int = 16) -> tuple[list[list[float]], str]:
        model_path, adapter = self._ship(model_path, adapter)
        if self.service is not None:
            return ray.get(self.service.loglik.remote(model_path, adapter, list(conversations), list(options),
                                                      batch_size=batch_size)), self.name
        return ray.get(self._task().remote("loglik", model_path, adapter, list(conversations), (list(options),),
                                           {"batch_size": batch_size}, self.threads)), "transformers"


def engine_gpus(evaluator: str, options: dict, use_gpu: bool, train_workers: int) -> int:
    """GPUs the vLLM engines will hold for the whole run; on a machine of our own, fail now (naming the
    setting) where the trials' training workers could then never get theirs."""
    from trex_ray.errors import ConfigError
    from trex_ray.runtime import owns_cluster

    gpus = ray.cluster_resources().get("GPU", 0) if use_gpu else 0
    on_vllm = resolve_evaluator(evaluator, use_gpu, gpus) == "vllm"
    held = int(options.get("tensor_parallel_size", 1)) * int(options.get("replicas", 1)) if on_vllm else 0
    if use_gpu and owns_cluster() and gpus - held < train_workers:
        # (a cluster given by address may grow; on this machine a trial would wait for GPUs forever)
        raise ConfigError("train_workers", f"a trial's {train_workers} training workers need a GPU each, and this "
                          f"machine has {int(gpus)}" + (f", {held} of them for the vLLM evaluation engines"
                                                         if held else ""),
                          f"use train_workers <= {max(1, int(gpus - held))}" + (" or evaluator: transformers"
                                                                                  if held else ""))
    return held


def start_evaluation(evaluator: str, base_model_path: str, *, use_gpu: bool, threads: int | None,
                     options: dict | None = None, name: str | None = None) -> Evaluation:
    """The run's evaluation backend; for vLLM this starts the service (engines start on first use)."""
    backend = resolve_evaluator(evaluator, use_gpu, ray.cluster_resources().get("GPU", 0) if use_gpu else 0)
    if backend == "transformers":
        return Evaluation("transformers", None, use_gpu, threads, base_model_path)
    opts = dict(options or {})
    from trex_ray.runtime import carried_env

    service = EvalService.options(name=name, runtime_env=carried_env()).remote(
        base_model_path, "vllm" if vllm_available() else "transformers", use_gpu=use_gpu,
        replicas=int(opts.pop("replicas", 1)), max_engines=int(opts.pop("max_engines", 2)), engine_kwargs=opts)
    return Evaluation("vllm", service, use_gpu, threads, base_model_path)


def stop_evaluation(ev: Evaluation) -> None:
    """Best effort: a failing shutdown must not mask the error that ended the run."""
    if ev.service is not None:
        try:
            ray.get(ev.service.shutdown.remote(), timeout=60)
        except Exception as e:  # noqa: BLE001
            log.warning("evaluation service shutdown failed: %s", e)
        finally:
            ray.kill(ev.service)


__all__ = ["EvalService", "Evaluation", "start_evaluation", "stop_evaluation", "resolve_evaluator", "cuda_available",
           "engine_gpus"]
