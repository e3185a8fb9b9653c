"""Starting or joining Ray, quietly. Local by default (`ray.init()` on this machine); `address=` or
`RAY_ADDRESS` joins a cluster. Logical CPUs are declared above the core count when trials are
concurrent, because a trial's driver task mostly waits; torch threads are divided explicitly instead.
Training workers of K concurrent trials hold K*W CPUs (W workers each), so at least (W+1)K+1 are
declared here: their data recipes and evaluations need CPUs too. (A smaller cluster given by address
still completes, slower: the training data is read before the workers start, so nothing waits for a CPU
a worker holds.)
"""

from __future__ import annotations

import os

_OWNS_CLUSTER = False  # True when this process started its own local Ray


def carried_env() -> dict | None:
    """The Ray `runtime_env` that carries this process's trust_remote_code decision (`modeling.TRUST_ENV`) to
    a task or actor it starts, and so to theirs (Ray's children inherit it): on any cluster, also one joined
    by address or started before the search. None when there is nothing to carry."""
    from trex_ray.models import TRUST_ENV

    return {"env_vars": {TRUST_ENV: "1"}} if os.environ.get(TRUST_ENV) == "1" else None


def release_orphan_placement_groups() -> int:
    """Remove the placement groups left behind by trials that were killed; returns how many.

    Ray Train's own cleaner needs the dashboard's state API, which a local cluster started here does not
    run, so a killed trial can keep its training CPUs reserved and starve later trials. Only on a
    cluster this process started itself, and only when no trial is running (the caller's promise), is
    every remaining group an orphan; on a shared cluster nothing is touched.
    """
    if not _OWNS_CLUSTER:
        return 0
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    n = 0
    for pg_id, info in ray.util.placement_group_table().items():
        if info.get("state") in ("CREATED", "PENDING", "RESCHEDULING"):
            remove_placement_group(PlacementGroup(ray._raylet.PlacementGroupID(bytes.fromhex(pg_id))))
            n += 1
    return n


def owns_cluster() -> bool:
    """Whether this process started the local Ray it is connected to (not a cluster given by address)."""
    return _OWNS_CLUSTER


def physical_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def auto_concurrency(resources: dict, use_gpu: bool, gpus_for_eval: int = 0, train_workers: int = 1) -> int:
    """`max_concurrent="auto"`: as many trials as the cluster can run at once. On GPUs a training run
    holds a GPU per worker (of those the evaluation engines do not hold); on CPUs a trial's training
    workers hold a CPU each and its data work needs about another, and one CPU stays free for the tasks
    that feed them."""
    if use_gpu:
        return max(1, (int(resources.get("GPU", 0)) - gpus_for_eval) // train_workers)
    return max(1, int(resources.get("CPU", 1) - 1) // (train_workers + 1))


def threads_per_trial(max_concurrent: int) -> int:
    return max(1, physical_cores() // max(1, max_concurrent))


def init_ray(address: str | None, max_concurrent: int, train_workers: int = 1) -> None:
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    # Ray Train V2: faster worker health polling, no preemption-watcher actor per fit; and no raylet
    # warning about many worker processes (each trial starts several short-lived ones by design)
    # (each run ends about two polls after its workers do: 1.05 s a trial at 0.5 s, 0.35 s at 0.2 s, measured)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "8")
    global _OWNS_CLUSTER
    if ray.is_initialized():
        return
    verbose = bool(os.environ.get("TREX_RAY_VERBOSE"))
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = dict(log_to_driver=verbose, configure_logging=True, logging_level="INFO" if verbose else "ERROR")
    if address:
        ray.init(address=address, **kwargs)
    else:
        # "local": a cluster of our own, even where `ray start` left one running on this machine
        ray.init(address="local", num_cpus=max(physical_cores(), (train_workers + 1) * max_concurrent + 1),
                 include_dashboard=False, **kwargs)
        _OWNS_CLUSTER = True
    import logging

    import ray.data

    if not verbose:  # Ray Data logs every execution at INFO in the driver
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def driver_alive(job: str | None) -> bool:
    """Whether the driver of the search still runs (a detached tree actor outlives a driver that died)."""
    try:
        from ray._private.state import jobs

        return any(j["JobID"] == job and not j["IsDead"] for j in jobs())
    except Exception:  # noqa: BLE001 - an older Ray: take the actor's presence as the answer
        return True


def request_capacity(bundle: dict | None, n: int) -> None:
    """Ask the autoscaler for room for `n` workers shaped like `bundle` at once (a standing request until
    replaced; n=0 withdraws it). Without an autoscaler it is a note nobody reads."""
    import ray

    if not ray.is_initialized():
        return
    from ray.autoscaler.sdk import request_resources

    try:
        request_resources(bundles=[bundle] * n if n and bundle else [])
    except Exception:  # noqa: BLE001 - scaling is a hint; the search runs on what the cluster has
        pass
