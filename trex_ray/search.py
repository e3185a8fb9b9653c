"""The TREX loop. Start here.

    search(task, base_model, budget, **settings)          (every setting: `trex_ray.settings.SearchSettings`)
      1. validate everything, then open (or resume) the run folder, Ray, the evaluation backend
      2. root = the base model, evaluated on val and test: the baseline every reward is measured against
      3. the researcher analyses the task into a brief
      4. while the budget allows: keep `max_concurrent` trials in flight; each picks a parent by the policy
         (UCT with virtual loss by default), asks the researcher for a plan refining it and runs it as Ray
         work; as each finishes, record it (backprop), diagnose it, distil insights
      5. the best node by val is evaluated once on test; result.json and a SearchResult come back

`trex_loop` below is steps 2-5, one screen; `Search` holds what it works with and the named steps it
calls. The tree is `tree_actor`, the researcher `researcher/`, a trial `executor/trial.py`, the live
view `progress`.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections import Counter

from trex_ray import runs
from trex_ray.budget import Budget, Spend
from trex_ray.metrics import get_metric
from trex_ray.results import SearchResult
from trex_ray.settings import SearchSettings
from trex_ray.task import Task

log = logging.getLogger(__name__)
REFRESH_S = 1.0  # the live view's refresh, and the longest the driver sleeps between looks at the trials
THINKING_S = 0.05  # how soon the driver looks again while a researcher call is under way


def search(task: Task, base_model: str | None = None, budget: Budget | None = None, *,
           settings: SearchSettings | dict | None = None, resume: bool = False, executor=None,
           **more_settings) -> SearchResult:
    """Fine-tune `base_model` on `task` as a tree search within `budget`; returns the best node found.

    Any other setting (`max_concurrent`, `storage`, `researcher`, ...) is a keyword argument, or comes in a
    `SearchSettings`; see there for all of them. `resume=True` continues the run named `run_name` (or the
    latest of the task under `storage`). `executor` replaces the trial function (tests, benchmarks).
    """
    # 1. everything a user can get wrong is checked before any folder is touched
    s = SearchSettings.of(settings, base_model=base_model, budget=budget, **more_settings)
    task.check()
    run = Search.start(task, s, resume, executor)
    try:
        return trex_loop(run)
    finally:
        run.close()


def trex_loop(run: "Search") -> SearchResult:
    """Steps 2-5: the baseline, the brief, then select -> propose -> launch / wait -> finish until the budget
    is spent, then the best node on test. The researcher thinks beside the loop (`Search.think`): a free
    slot's proposal and a finished trial's diagnosis are researcher calls in threads, so the trials in
    flight never wait for them."""
    root = run.baseline()
    brief = run.brief(root)
    run.relaunch_interrupted()
    while True:
        run.refresh()
        for _ in range(run.proposals_wanted()):  # select a parent and ask for a plan refining it
            run.think(run.propose, brief)
        run.launch_ready()
        run.record_diagnoses_ready()
        if not run.in_flight and not run.thinking:
            break
        done = run.wait()
        if run.stop_overdue(done):
            continue
        if done:
            run.finish(done[0])  # recorded now; diagnosed beside the loop
        elif run.out_of_wall_clock():
            run.cancel_in_flight("wall_clock_s")
            break
    run.settle()
    return run.conclude(run.stop_reason())


class Search:
    """One search session: its settings, run folder, Ray handles and trials in flight."""

    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.in_flight: dict = {}  # trial ref -> (node id, parent id, launch time)
        self.thinking: dict = {}  # researcher call (a Future) -> what it is: "propose" or "diagnose"
        self.ready: list = []  # (parent id, plan) proposed, waiting for a free slot
        self.pool = None  # the researcher's threads
        self.callbacks = None  # a Dispatcher of the search's events to its callbacks (trackers)
        self.think_s = 0.0  # how long a proposal takes, and a trial (moving averages): how far to think ahead
        self.trial_s = 0.0
        self.live: dict = {}  # node id -> a trial's last reported stage and progress (the tree's state)
        self.launched: set = set()  # plan signatures launched in this session
        self.proposing_from: Counter = Counter()  # proposals under way, by parent
        self.proposing_lock = threading.Lock()
        self.best_seen: dict = {}
        self.stopped: str | None = None
        self.trusted = False  # this search put trust_remote_code into the environment (close() takes it out)

    # -- set-up and tear-down --------------------------------------------------------------------------
    @classmethod
    def start(cls, task: Task, s: SearchSettings, resume: bool, executor) -> "Search":
        from trex_ray.researcher import make_researcher
        from trex_ray.storage import RunSync, prepare

        # (the data folders of TREX_RAY_DATA_DIRS are the catalogue's own: researcher.catalogue.roots_from_env)
        agent = make_researcher(s.researcher, llm=s.researcher_llm, task=task, notes_dir=s.notes_dir,
                                hub=s.research.hub, papers=s.research.papers)
        storage, run_name, mirror = prepare(s.storage, s.run_name, resume, task.name)
        run_dir = runs.open_run_dir(storage, task, run_name, resume, s.persisted())
        sync = RunSync(mirror, run_dir)
        if mirror is not None:  # the config the run folder holds names the URI, so a resume anywhere finds it
            runs.set_storage(run_dir, s.storage)
            sync.after_trial()
        run = cls(task=task, s=s, resume=resume, storage=storage, run_dir=run_dir, sync=sync, agent=agent,
                  ev=None, tree=None, show=None)
        try:
            run._start_ray(executor)
        except BaseException:
            run.close()
            raise
        return run

    def _start_ray(self, executor) -> None:
        import ray

        from trex_ray.executor.eval_service import engine_gpus, start_evaluation
        from trex_ray.executor.train import train_bundle
        from trex_ray.modeling import check_quantization
        from trex_ray.models import TRUST_ENV, check_remote_code, resolve_model
        from trex_ray.progress import Progress
        from trex_ray.researcher.journalled import Journalled
        from trex_ray.runtime import (
            auto_concurrency,
            carried_env,
            init_ray,
            physical_cores,
            request_capacity,
            threads_per_trial,
        )
        from trex_ray.tree_actor import start_tree, take_over

        s = self.s
        if s.trust_remote_code and os.environ.get(TRUST_ENV) != "1":
            # this process's loads, and (runtime.carried_env) every task and actor it starts; until close()
            os.environ[TRUST_ENV] = "1"
            self.trusted = True
        init_ray(s.address, max(1, physical_cores() // (s.train_workers + 1)) if s.max_concurrent == "auto"
                 else s.max_concurrent, s.train_workers)
        self.use_gpu = bool(ray.cluster_resources().get("GPU")) if s.use_gpu is None else s.use_gpu
        held = engine_gpus(s.evaluator, s.eval_options.as_kwargs(), self.use_gpu, s.train_workers)
        self.max_concurrent = (auto_concurrency(ray.cluster_resources(), self.use_gpu, held, s.train_workers)
                               if s.max_concurrent == "auto" else s.max_concurrent)
        take_over(self.run_dir)
        self.threads = threads_per_trial(self.max_concurrent)
        self.model_path = resolve_model(s.base_model)
        check_remote_code(s.base_model, self.model_path, s.trust_remote_code)
        if s.quantization != "none":
            check_quantization(s.quantization, self.use_gpu)
        self.ev = start_evaluation(s.evaluator, self.model_path, use_gpu=self.use_gpu, threads=self.threads,
                                   options=s.eval_options.as_kwargs())
        self.show = Progress(enabled=s.progress, budget=s.budget, run_dir=self.run_dir)
        self.show.line(f"researcher: {self.agent.name}" + (" (auto: no ANTHROPIC_API_KEY)" if s.researcher == "auto"
                                                            and self.agent.name == "heuristic" else ""))
        self.show.line(f"evaluation: {self.ev.name}" + (" (engines: base model loaded once, adapters hot-loaded)"
                                                        if self.ev.service is not None else ""))
        self.show.line(f"trials in flight: up to {self.max_concurrent}" + (
            f", each training on {s.train_workers} workers (data parallel)" if s.train_workers > 1 else ""))
        self.tree = start_tree(self.run_dir, s.policy, s.seed, s.detach)
        self.agent = Journalled(self.agent, self.tree)
        self.earlier = runs.spent_so_far(self.run_dir)
        self.session_start = time.time()
        self.tree.record.remote({"type": "session_started", "resume": self.resume,
                                 "driver_job": ray.get_runtime_context().get_job_id()})
        self.rng = random.Random(f"{s.seed}:{len(self.call(self.tree.nodes))}")  # a resumed run: a fresh stream
        self.task_info = self.task.info()
        # the autoscaler sees what K trials in flight will need before their training asks for it
        request_capacity(train_bundle(self.use_gpu, s.train_resources), self.max_concurrent * s.train_workers)
        env = carried_env()  # trust_remote_code, to the trial and what it starts
        self.trial_fn = (executor.options(runtime_env=env) if executor is not None and env else executor) or \
            _trial_beside_the_driver(env)
        from concurrent.futures import ThreadPoolExecutor

        # proposals for every slot and as many ahead, and a diagnosis for every trial finishing meanwhile:
        # a call queued behind the others would leave its slot idle for one more call
        self.pool = ThreadPoolExecutor(max_workers=3 * self.max_concurrent + 1, thread_name_prefix="trex-researcher")
        if s.callbacks:  # trackers follow the journal from here on, each on a thread of its own
            from trex_ray.callbacks import Dispatcher, RunInfo, make_callbacks

            self.callbacks = Dispatcher(make_callbacks(s.callbacks), RunInfo(
                run_dir=self.run_dir, name=os.path.basename(self.run_dir), task=self.task.model_dump(mode="json"),
                settings=s.persisted()))

    def close(self) -> None:
        """Whatever ended the search: the terminal back, the run folder synced, and nothing left holding a
        CPU or GPU (engines, the tree actor, a capacity request, the researcher's model)."""
        from trex_ray.executor.eval_service import stop_evaluation
        from trex_ray.runtime import request_capacity
        from trex_ray.tree_actor import stop_tree

        if self.pool is not None:  # a researcher call still running is not waited for
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.callbacks is not None:  # the last events delivered, the trackers closed
            self.callbacks.close()
        if self.show is not None:
            self.show.close()
        self.sync.final()
        stop_tree(self.run_dir)
        request_capacity(None, 0)
        if self.ev is not None:
            stop_evaluation(self.ev)
        close = getattr(self.agent, "close", None) or getattr(getattr(self.agent, "llm", None), "close", None)
        if close is not None:
            close()
        if self.trusted:
            from trex_ray.models import TRUST_ENV

            os.environ.pop(TRUST_ENV, None)

    # -- steps of the loop -----------------------------------------------------------------------------
    @staticmethod
    def call(method, *args):
        """A tree actor method, called and waited for."""
        import ray

        return ray.get(method.remote(*args))

    def record(self, event: dict) -> None:
        self.call(self.tree.record, event)

    def baseline(self) -> dict:
        """The root: the base model, prompted with the task's goal, scored on val (and once on test)."""
        from trex_ray.executor.evaluate import baseline_eval_cfg
        from trex_ray.executor.trial import run_baseline
        from trex_ray.prompting import task_system

        if self.call(self.tree.state)["best"] is None:
            self.show.line("baseline: evaluating the base model on val and test")
            if not self.call(self.tree.nodes):
                self.call(self.tree.add_node, None, None, None)
            cfg, system = baseline_eval_cfg(self.task), task_system(self.task.goal)
            base = run_baseline(task=self.task_info, model_path=self.model_path, run_dir=self.run_dir, ev=self.ev,
                                eval_cfg=cfg, template="{input}", system=system, data_llm=self.s.data_llm.model_dump())
            self.record({"type": "node_finished", "id": 0, "result": base})
            self._test(0, self.model_path, None, cfg, "{input}", system)
        root = self.call(self.tree.node, 0)
        self.show.baseline(root)
        self.baseline_score = root["score"]
        return root

    def _test(self, nid: int, model: str, adapter: str | None, eval_cfg: dict, template: str, system: str | None):
        from trex_ray.executor.evaluate import evaluate_task

        out = evaluate_task(self.ev, self.task, "test", model, adapter, eval_cfg=eval_cfg, template=template,
                            system=system, data_llm=self.s.data_llm.model_dump())
        self.record({"type": "test_evaluated", "id": nid,
                     "result": {k: out[k] for k in ("score", "metric", "n", "backend", "seconds", "num_bad")}})

    def brief(self, root: dict) -> dict:
        """Requirement analysis, once per run (a resumed run keeps its brief)."""
        brief = runs.load_brief(self.run_dir)
        if brief is None:
            from trex_ray.models import model_profile

            profile = {**self.task.profile(), "base_model": self.s.base_model, "max_epochs": self.s.max_epochs,
                       **model_profile(self.model_path, self.task), **self.research()}
            brief = self.agent.analyze(profile, root["result"])
            runs.save_brief(self.run_dir, brief)
            self.record({"type": "brief", "brief": brief})
        return brief

    def research(self) -> dict:
        """Data research for requirement analysis: related datasets on this machine (TREX_RAY_DATA_DIRS, the
        FT-Bench data) and on the Hub (`research.hub`), ranked against the task; what was searched is said."""
        from trex_ray.researcher.catalogue import related_data

        try:
            found, notes = related_data(self.task, hub=self.s.research.hub)
        except Exception as e:  # noqa: BLE001 - research is an aid: a failure is said, the search goes on
            log.warning("data research failed: %s: %s", type(e).__name__, e)
            return {"research": {"error": f"{type(e).__name__}: {str(e)[:200]}"}}
        best = next((c for c in found if c["mixable"]), None)
        related = f"; most related: {best['name']} (relevance {best['score']:.2f})" if best else ""
        self.show.line(f"data research: {notes['local_found']} local dataset(s) in {len(notes['local_roots'])} "
                       f"folder(s); hub ({notes['hub_endpoint']}): {notes['hub']}{related}")
        return {"related_data": found, "research": notes}

    def perfect(self, node: dict) -> bool:
        """A trained node with the metric's best possible val, where that ends the search (`stop_at_perfect`)."""
        return (self.s.stop_at_perfect and node["parent_id"] is not None and node["status"] == "ok"
                and node["score"] is not None and node["score"] >= get_metric(self.task.metric).best)

    def relaunch_interrupted(self) -> None:
        """Trials that were in flight when a previous driver died run again (none once a node is perfect)."""
        from trex_ray.plan import Plan

        nodes = self.call(self.tree.nodes)
        if any(self.perfect(n) for n in nodes):
            return
        for n in nodes:
            if n["status"] in ("running", "cancelled") and n["parent_id"] is not None:
                self.record({"type": "node_relaunched", "id": n["id"]})
                self._run_trial(n["id"], n["parent_id"], Plan.model_validate(n["plan"]))

    def spent(self, state: dict | None = None) -> Spend:
        state = state or self.call(self.tree.state)
        return Spend(trials=state["trials"], wall_clock_s=self.earlier.wall_clock_s + time.time() - self.session_start,
                     accelerator_s=state["accelerator_s"], llm_usd=state["llm_usage"].get("usd", 0.0))

    def stop_reason(self) -> str | None:
        """The first budget limit reached (or what ended the search), None while it goes on."""
        if self.stopped:
            return self.stopped
        state = self.call(self.tree.state)
        return self.spent(state).exhausted(self.s.budget, state.get("since_best", 0))

    def refresh(self) -> None:
        """The live view: the tree's state, what is spent, the best node so far."""
        state = self.call(self.tree.state)
        self.live = state.get("live") or {}
        if state["best"] is not None and self.best_seen.get("id") != state["best"]:
            b = self.call(self.tree.node, state["best"])
            self.best_seen.update(id=b["id"], score=b["score"], direction=b["direction"])
            if self.stopped is None and self.perfect(b):
                # no later node could be chosen over it (ties go to the earliest), those in flight neither
                self.cancel_in_flight("perfect val score")
        self.show.update(state, self.spent(state), dict(self.best_seen) if self.best_seen else None)
        if self.callbacks is not None:  # the trackers see training as the live view does
            self.callbacks.progress(state.get("live") or {})

    # -- the researcher, beside the loop ---------------------------------------------------------------
    def think(self, fn, *args) -> None:
        """A researcher call in one of its threads; the loop collects it when done."""
        self.thinking[self.pool.submit(fn, *args)] = fn.__name__

    def ahead(self) -> int:
        """Plans to have ready beyond the free slots: none while the researcher answers quickly (a plan made
        early has seen fewer results); when it is slow, as many as trials finish while it thinks: the
        trials whose reported training progress says they end within one researcher call, or, once trials
        have finished, the mean count plus one standard deviation (finishes are near Poisson: a burst must
        not find the queue empty), whichever is more."""
        if self.think_s < 0.5:
            return 0
        now = time.time()
        soon = sum(1 for info in self.live.values() if (left := time_left(info, now)) is not None
                   and left <= self.think_s)
        if not self.trial_s:
            return min(self.max_concurrent, soon)
        finishing = self.max_concurrent * self.think_s / self.trial_s
        return min(self.max_concurrent, max(soon, math.ceil(finishing + math.sqrt(finishing))))

    def proposals_wanted(self) -> int:
        """Proposals to start now: for the free slots and the plans to have ready, within what the budget
        still allows to launch."""
        if self.stop_reason() is not None:
            return 0
        proposing = sum(1 for what in self.thinking.values() if what == "propose")
        want = self.max_concurrent + self.ahead() - len(self.in_flight) - len(self.ready) - proposing
        if self.s.budget.trials is not None:
            want = min(want, self.s.budget.trials - self.spent().trials - len(self.ready) - proposing)
        return max(0, want)

    def propose(self, brief: dict) -> tuple[int, object]:
        """Select a parent and ask for a plan refining it (in a researcher thread). The context says how
        many other proposals from the same parent are under way (`concurrent`), so that plans made at the
        same time, which cannot see each other, do not all start the same way."""
        t0 = time.time()
        parent_id = self.call(self.tree.select)
        with self.proposing_lock:
            concurrent = self.proposing_from[parent_id]
            self.proposing_from[parent_id] += 1
        try:
            ctx = {**self.call(self.tree.context, parent_id), "concurrent": concurrent, "seed": self.s.seed}
            plan = self.agent.propose(brief, ctx, self.rng)
        finally:
            with self.proposing_lock:
                self.proposing_from[parent_id] -= 1
        self.think_s = 0.7 * self.think_s + 0.3 * (time.time() - t0) if self.think_s else time.time() - t0
        return parent_id, plan

    def _ready(self, what: str) -> list:
        done = [f for f, w in self.thinking.items() if w == what and f.done()]
        for f in done:
            self.thinking.pop(f)
        return [f.result() for f in done]  # a researcher's exception ends the search, as before

    def launch_ready(self) -> None:
        """Plans the researcher has finished go to the free slots while the budget allows (a plan that
        another, made at the same time, already launched is dropped)."""
        self.ready += self._ready("propose")
        while self.ready and len(self.in_flight) < self.max_concurrent and self.stop_reason() is None:
            parent_id, plan = self.ready.pop(0)
            if plan.signature(parent_id) not in self.launched:
                self.launch(parent_id, plan)

    def diagnose(self, nid: int, parent_id: int, result: dict, distill: bool) -> tuple:
        parent = self.call(self.tree.node, parent_id)
        insights = self.agent.distill(self.call(self.tree.summaries, True)) if distill else None
        return nid, self.agent.diagnose(result, parent["result"]), insights

    def record_diagnoses_ready(self) -> None:
        for nid, diagnosis, insights in self._ready("diagnose"):
            self.record({"type": "diagnosis", "id": nid, "text": diagnosis["text"],
                         "categories": diagnosis.get("categories") or {}})
            if insights is not None:
                self.record({"type": "insights", "items": insights})
            self.show.finished(self.call(self.tree.node, nid), self.call(self.tree.state), self.spent())
            self.sync.after_trial(nid)  # a URI storage gets the node folder and the journal

    def settle(self) -> None:
        """The loop is over: wait for the diagnoses under way (proposals are dropped)."""
        self.ready.clear()
        from concurrent.futures import wait

        wait(list(self.thinking))
        self.record_diagnoses_ready()
        self.thinking.clear()

    def launch(self, parent_id: int, plan) -> None:
        """A new node under `parent_id` for `plan`, and its trial started."""
        plan = plan.within(warm_start=self.s.warm_start, max_epochs=self.s.max_epochs,
                           quantization=self.s.quantization, gpu=self.use_gpu)
        self.launched.add(plan.signature(parent_id))
        nid = self.call(self.tree.add_node, parent_id, plan.model_dump(), plan.signature(parent_id))
        self._run_trial(nid, parent_id, plan)

    def _run_trial(self, nid: int, parent_id: int, plan) -> None:
        from trex_ray.progress import TrialReporter

        s = self.s
        parent = self.call(self.tree.node, parent_id)
        mirror = self.sync.mirror
        ref = self.trial_fn.remote(
            node_id=nid, plan=plan.model_dump(), parent_adapter=(parent["result"] or {}).get("artifacts", {}).get("adapter"),
            task=self.task_info, model_path=self.model_path, run_dir=self.run_dir,
            # without the recipe cache each trial prepares its data in a folder of its own
            cache_root=runs.cache_root(self.storage) if s.recipe_cache else os.path.join(self.run_dir, "nodes",
                                                                                        str(nid), "data"),
            baseline_score=self.baseline_score, ev=self.ev, threads=self.threads, use_gpu=self.use_gpu,
            data_llm=s.data_llm.model_dump(), memory_limit_gb=s.trial_memory_gb, train_resources=s.train_resources,
            train_retries=s.train_retries, train_workers=s.train_workers,
            **({"storage_uri": mirror.uri} if mirror is not None else {}),
            reporter=TrialReporter(self.tree, nid), recipe_cache=s.recipe_cache,
            concurrent_workers=self.max_concurrent * s.train_workers,  # for the memory each may take (on CPU)
        )
        self.in_flight[ref] = (nid, parent_id, time.time())
        self.show.launched(nid, parent_id, plan.model_dump())

    def wait(self) -> list:
        """The trial that finished first, if one does before the next refresh, wall-clock end or timeout."""
        import ray

        budget, timeout_s = self.s.budget, self.s.trial_timeout_s
        # wake at least once a second (the live view follows the trials' stages), and soon while the
        # researcher thinks: its results are collected at the top of the loop
        timeout = THINKING_S if self.thinking else REFRESH_S
        if not self.in_flight:
            time.sleep(timeout)
            return []
        if budget.wall_clock_s is not None:
            timeout = min(timeout, max(0.0, budget.wall_clock_s - self.spent().wall_clock_s))
        if timeout_s is not None:
            first_due = min(t for _, _, t in self.in_flight.values()) + timeout_s - time.time()
            timeout = max(0.0, min(timeout, first_due))
        done, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=timeout)
        return done

    def stop_overdue(self, done: list) -> bool:
        """Trials past `trial_timeout_s` are stopped (their training workers and resources go with them)
        and recorded as failed; whether there were any."""
        limit = self.s.trial_timeout_s
        overdue = [r for r, (_, _, t) in self.in_flight.items()
                   if limit is not None and r not in done and time.time() - t >= limit]
        if overdue:
            _stop_trials(overdue, grace_s=10.0, release=len(overdue) == len(self.in_flight))
        for ref in overdue:
            nid, parent_id, _ = self.in_flight.pop(ref)
            result = _failed("timeout", "timeout", f"the trial ran past trial_timeout_s={limit:g} s and was stopped",
                             limit, self.task.metric)  # it held its device all along
            self._record_finished(nid, parent_id, result)
        return bool(overdue)

    def out_of_wall_clock(self) -> bool:
        wall = self.s.budget.wall_clock_s
        return wall is not None and self.spent().wall_clock_s >= wall

    def cancel_in_flight(self, reason: str) -> None:
        """Stop every trial in flight (out of wall-clock, or a perfect val found); everything finished is
        kept, these resume (unless a perfect node ended the search)."""
        _stop_trials(list(self.in_flight))
        for nid, _, _ in self.in_flight.values():
            self.record({"type": "node_cancelled", "id": nid, "reason": reason})
        self.in_flight.clear()
        self.stopped = reason

    def finish(self, ref) -> None:
        import ray

        nid, parent_id, started = self.in_flight.pop(ref)
        took = time.time() - started
        self.trial_s = 0.7 * self.trial_s + 0.3 * took if self.trial_s else took
        try:
            result = ray.get(ref)
        except (ray.exceptions.OutOfMemoryError, ray.exceptions.WorkerCrashedError) as e:
            result = _trial_died(e, took, self.task.metric)  # its process was killed: a failed node, not a crash
            if not self.in_flight:  # what its Ray Train run held (a placement group) goes with it
                from trex_ray.runtime import release_orphan_placement_groups

                release_orphan_placement_groups()
        self._record_finished(nid, parent_id, result)

    def _record_finished(self, nid: int, parent_id: int, result: dict) -> None:
        """A trial's result into the tree (backprop) now; its diagnosis, and every third trial the insights,
        from the researcher beside the loop."""
        self.record({"type": "node_finished", "id": nid, "result": result})
        every_third = (self.call(self.tree.state)["finished"] - 1) % 3 == 0
        self.think(self.diagnose, nid, parent_id, result, every_third)

    def conclude(self, stop_reason: str | None) -> SearchResult:
        """Insights over the whole tree, the best node by val on test, the result and report written."""
        from trex_ray.plan import Plan

        nodes = self.call(self.tree.nodes)
        if len(nodes) > 1:
            self.record({"type": "insights", "items": self.agent.distill(
                [n for n in nodes if n["status"] in ("ok", "failed")])})
        best = nodes[self.call(self.tree.state)["best"]]
        if best["test"] is None:  # the one test-split evaluation of a trained node, as it was trained
            plan = Plan.model_validate(best["plan"])
            art = best["result"]["artifacts"]
            self._test(best["id"], art.get("model", self.model_path), art.get("adapter"), plan.eval.model_dump(),
                       plan.recipe.prompt.template, plan.recipe.prompt.system)
        final = self.spent()
        self.record({"type": "run_finished", "stop_reason": stop_reason, "spent": final.model_dump()})
        self.call(self.tree.close)
        result = runs.load_result(self.run_dir, spent=final.model_dump(), stop_reason=stop_reason or "")
        result.save()
        _write_report(self.run_dir)
        self.show.done(result)
        return result


def time_left(info: dict, now: float) -> float | None:
    """A trial's seconds to go in training, from its last progress report (the steps to go at the pace so
    far; 0 once it has trained every step or evaluates); None before it has a pace to go by."""
    step, steps = info.get("step") or 0, info.get("steps") or 0
    if info.get("stage") == "eval" or (info.get("stage") == "train" and steps and step >= steps):
        return 0.0
    took = info.get("ts", 0.0) - info.get("stage_started", info.get("ts", 0.0))
    if info.get("stage") != "train" or step <= 0 or took <= 0:
        return None
    return max(0.0, took / step * (steps - step) - (now - info["ts"]))


def _trial_beside_the_driver(runtime_env: dict | None = None):
    """A trial's own task waits on its stages: it stays beside the driver (a node that is not preempted)
    where it can, so losing a worker node costs a training run (retried), not the trial."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from trex_ray.executor.trial import run_trial

    return run_trial.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        ray.get_runtime_context().get_node_id(), soft=True), **({"runtime_env": runtime_env} if runtime_env else {}))


def _write_report(run_dir: str) -> None:
    """The run's report.html, rewritten at the end of every session (a failure costs the page, not the run)."""
    from trex_ray.report import write_report

    try:
        write_report(run_dir)
    except Exception as e:  # noqa: BLE001
        log.warning("could not write the report of %s: %s", run_dir, e)


def _failed(stage: str, kind: str, message: str, seconds: float, metric: str) -> dict:
    """A failed trial's result made by the driver (the trial could not report its own), its seconds counted."""
    from trex_ray.results import NodeResult

    return NodeResult(status="failed", error={"stage": stage, "type": kind, "message": message}, metric=metric,
                      seconds=round(seconds, 2), accelerator_s=round(seconds, 2)).model_dump()


def _trial_died(e: Exception, seconds: float, metric: str) -> dict:
    """The result of a trial whose own process died: killed by Ray's memory monitor (out_of_memory, which the
    researcher answers with a smaller batch) or crashed."""
    import ray

    oom = isinstance(e, ray.exceptions.OutOfMemoryError)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    message = ("the trial's process was killed by Ray's memory monitor: the node ran out of memory"
               if oom else "the trial's process died") + f" ({first})"
    return _failed("trial", "out_of_memory" if oom else "crashed", message, seconds, metric)


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
        import time

        from trex_ray.runtime import release_orphan_placement_groups

        # a stopped trial's Ray Train controller can still be creating its workers' group as the trial
        # task returns: sweep again until a few seconds pass without one
        quiet, deadline = 0, time.time() + 10
        while quiet < 3 and time.time() < deadline:
            quiet = quiet + 1 if release_orphan_placement_groups() == 0 else 0
            if quiet < 3:
                time.sleep(1)


# `trex_ray.search` names both this module and the function above. Importing the module makes Python
# set the package attribute to the module, so the module itself is made callable: `trex_ray.search(...)`
# calls `search(...)` whichever of the two the attribute holds.
class _CallableModule(__import__("types").ModuleType):
    def __call__(self, *args, **kwargs) -> SearchResult:
        return search(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
