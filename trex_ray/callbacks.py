"""Where a search shows up besides its own run folder: callbacks that receive its events, and the built-in
experiment trackers (MLflow, TensorBoard, Weights & Biases).

A callback sees the events of the run's journal as they are written (`run_started`, `node_added` with its
plan, `node_finished` with its result: val score, loss curve, val curve, `insights`, `test_evaluated`,
`run_finished` with the best node), through `on_event(event, run)`, and, between them, each training
trial's progress as the live view sees it (`training_progress`: node, step of steps, loss, and `val` with
its `val_step` when an in-training val evaluation just came; not journalled). The events come from a thread that
follows the journal, and each callback has a thread and a queue of its own: a tracker that is slow (a
server retrying) or fails never holds the search up, and its failure is reported once and ends only that
tracker. What the search records is the journal; a tracker is a copy.

`search(callbacks=[...])` takes `Callback` objects or the names `mlflow`, `tensorboard`, `wandb` (YAML:
`callbacks: [mlflow, tensorboard]`). Trackers are optional extras: `pip install 'trex-ray[trackers]'`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

from trex_ray.results import flatten

log = logging.getLogger(__name__)

TRACKERS = ("mlflow", "tensorboard", "wandb")


@dataclass
class RunInfo:
    """What a callback knows of the search besides its events."""

    run_dir: str
    name: str
    task: dict
    settings: dict


class Callback:
    """Receives a search's events. Override `on_event` (and `close`, called once after the last event)."""

    name = "callback"

    def on_event(self, event: dict, run: RunInfo) -> None:  # pragma: no cover - the interface
        pass

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------- dispatch


class _Worker:
    """One callback on a thread of its own, fed by a queue; the first exception is reported and ends it."""

    def __init__(self, cb: Callback, run: RunInfo):
        self.cb, self.run, self.q = cb, run, queue.Queue()
        self.failed: str | None = None
        self.thread = threading.Thread(target=self._loop, name=f"trex-callback-{cb.name}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            event = self.q.get()
            if event is None:
                break
            if self.failed:
                continue
            try:
                self.cb.on_event(event, self.run)
            except Exception as e:  # noqa: BLE001 - a tracker never stops the search
                self.failed = f"{type(e).__name__}: {str(e)[:300]}"
                log.warning("%s stopped receiving this search's events (%s); the search goes on, its journal "
                            "holds everything", self.cb.name, self.failed)
        try:
            if not self.failed:
                self.cb.close()
        except Exception as e:  # noqa: BLE001
            log.warning("%s did not close cleanly (%s)", self.cb.name, e)


class Dispatcher:
    """Follows `run_dir/journal.jsonl` from its current end and hands each new event to every callback."""

    def __init__(self, callbacks: list[Callback], run: RunInfo, every: float = 0.5):
        self.workers = [_Worker(cb, run) for cb in callbacks]
        self.path = os.path.join(run.run_dir, "journal.jsonl")
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        self.every, self.stop = every, threading.Event()
        self.sent: dict = {}  # node -> (step, val step) of its last training_progress event
        self.thread = threading.Thread(target=self._follow, name="trex-callbacks", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        for line in data[:end].splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            for w in self.workers:
                w.q.put(event)

    def _follow(self) -> None:
        while not self.stop.wait(self.every):
            self._read()

    def progress(self, live: dict) -> None:
        """The trials' live reports (the tree's state, as the driver's live view reads it) as
        `training_progress` events: one per new step or new in-training val score of a training trial."""
        for nid, info in live.items():
            if (info or {}).get("stage") != "train" or "step" not in info:
                continue
            key = (info["step"], info.get("val_step"))
            if self.sent.get(nid) == key:
                continue
            fresh_val = info.get("val_step") is not None and (self.sent.get(nid) or (None, None))[1] != info["val_step"]
            self.sent[nid] = key
            event = {"type": "training_progress", "id": int(nid), "step": info["step"], "steps": info.get("steps"),
                     "loss": info.get("loss"), "ts": info.get("ts", time.time())}
            if fresh_val:
                event.update(val=info.get("val"), val_step=info["val_step"])
            for w in self.workers:
                w.q.put(event)

    def close(self, timeout: float = 60.0) -> None:
        """The last events delivered, every callback closed (each given up to `timeout` s in all)."""
        self.stop.set()
        self.thread.join()
        self._read()
        for w in self.workers:
            w.q.put(None)
        deadline = time.time() + timeout
        for w in self.workers:
            w.thread.join(max(0.0, deadline - time.time()))
            if w.thread.is_alive():
                log.warning("%s was still busy %d s after the search ended; left behind", w.cb.name, timeout)


def make_callbacks(specs: list) -> list[Callback]:
    """Callback objects from `search(callbacks=...)`: objects as they are, tracker names built."""
    out = []
    for s in specs or []:
        if isinstance(s, Callback):
            out.append(s)
        elif s == "mlflow":
            out.append(MLflowTracker())
        elif s == "tensorboard":
            out.append(TensorBoardTracker())
        elif s == "wandb":
            out.append(WandbTracker())
        else:
            raise ValueError(f"unknown callback {s!r}")
    return out


# ------------------------------------------------------------------------------------------- trackers


def _node_metrics(result: dict) -> tuple[dict[str, float], list, list]:
    """(summary metrics, loss curve [(step, loss)], val curve [(step, score)]) of a node's result. The loss
    curve a trial keeps is one point a step, or for long runs the means of equal runs of steps, each placed
    at its run's last step."""
    ts = result.get("train_stats") or {}
    metrics = {k: v for k, v in {"val_score": result.get("score"), "reward": result.get("reward"),
                                 "seconds": result.get("seconds"), "accelerator_s": result.get("accelerator_s"),
                                 "final_loss": ts.get("final_loss"), "tokens_per_s": ts.get("tokens_per_s")}.items()
               if isinstance(v, (int, float))}
    loss = list(ts.get("loss_curve") or [])
    steps = ts.get("steps") or len(loss)
    per = steps / len(loss) if loss and steps > len(loss) else 1
    return metrics, [(int((i + 1) * per), v) for i, v in enumerate(loss)], [tuple(p) for p in ts.get("val_curve") or []]


class _Curves:
    """The points of each node's loss and val curves a tracker has logged (live, from training_progress),
    so a node's finished curves add only what the live reports missed."""

    def new_points(self, nid: int, name: str, points: list) -> list:
        seen = self.__dict__.setdefault("_seen", {}).setdefault((nid, name), set())
        out = [(step, v) for step, v in points if step not in seen and v is not None]
        seen.update(step for step, _ in out)
        return out

    def live_points(self, event: dict) -> tuple[list, list]:
        """(loss points, val points) of a training_progress event not logged yet."""
        nid = event["id"]
        loss = self.new_points(nid, "loss", [(event["step"], event.get("loss"))])
        val = self.new_points(nid, "val", [(event["val_step"], event.get("val"))]) if "val_step" in event else []
        return loss, val


class MLflowTracker(_Curves, Callback):
    """One MLflow run per search, a nested run per node (params: the flattened plan; metrics: val, test, the
    loss curve and val curve by step; tags: direction, parent, status); the best node's adapter logged as an
    artifact of the search's run. The tracking URI is MLflow's own (`MLFLOW_TRACKING_URI`)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None):
        import mlflow  # noqa: F401 - the extra is installed, or the search is refused at its start

        self.uri, self.experiment = tracking_uri, experiment
        self.client = None
        self.parent: str | None = None
        self.nodes: dict[int, str] = {}
        self.scores: dict[int, dict] = {}  # node -> {"val", "test", "adapter"}
        self.tested: list[int] = []  # the baseline's test first, the best node's last

    def _start(self, run: RunInfo) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        name = self.experiment or f"trex-ray/{run.task.get('name', 'task')}"
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
        self.exp_id = exp_id
        r = self.client.create_run(exp_id, run_name=run.name, tags={"trex_ray.run_dir": run.run_dir})
        self.parent = r.info.run_id
        for k, v in flatten(run.settings).items():
            self.client.log_param(self.parent, k[:250], str(v)[:6000])

    def _node(self, nid: int, run: RunInfo, plan: dict | None = None, parent: int | None = None) -> str:
        if nid not in self.nodes:
            r = self.client.create_run(self.exp_id, run_name=f"node {nid}",
                                       tags={"mlflow.parentRunId": self.parent, "trex_ray.node": str(nid)})
            self.nodes[nid] = r.info.run_id
        if plan is not None and nid not in self.__dict__.setdefault("planned", set()):
            # (whichever event came first made the run: the plan, tags and params come with node_added)
            from mlflow.entities import Param, RunTag

            self.planned.add(nid)
            params = [Param(k[:250], str(v)[:6000]) for k, v in flatten(plan).items()]
            tags = [RunTag("direction", str(plan.get("direction", ""))), RunTag("parent", str(parent))]
            for i in range(0, max(1, len(params)), 100):
                self.client.log_batch(self.nodes[nid], params=params[i:i + 100], tags=tags if i == 0 else [])
        return self.nodes[nid]

    def on_event(self, event: dict, run: RunInfo) -> None:
        from mlflow.entities import Metric

        kind = event.get("type")
        if self.parent is None:
            self._start(run)
        now = int(time.time() * 1000)
        if kind == "node_added":
            self._node(event["id"], run, event.get("plan") or {"direction": "base model"}, event.get("parent_id"))
        elif kind == "training_progress":
            loss, val = self.live_points(event)
            batch = [Metric("train_loss", float(v), now, int(step)) for step, v in loss]
            batch += [Metric("val_curve", float(v), now, int(step)) for step, v in val]
            if batch:
                self.client.log_batch(self._node(event["id"], run), metrics=batch)
        elif kind == "node_finished":
            nid = event["id"]
            rid = self._node(nid, run)
            res = event.get("result") or {}
            metrics, loss, val = _node_metrics(res)
            batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
            batch += [Metric("train_loss", float(v), now, step) for step, v in self.new_points(nid, "loss", loss)]
            batch += [Metric("val_curve", float(v), now, int(step)) for step, v in self.new_points(nid, "val", val)]
            for i in range(0, len(batch), 500):
                self.client.log_batch(rid, metrics=batch[i:i + 500])
            self.scores[event["id"]] = {"val": res.get("score"), "adapter": (res.get("artifacts") or {}).get("adapter")}
            self.client.set_tag(rid, "status", res.get("status", ""))
            self.client.set_terminated(rid, "FINISHED" if res.get("status") == "ok" else "FAILED")
        elif kind == "test_evaluated":
            score = (event.get("result") or {}).get("score")
            if score is not None:
                self.client.log_metric(self._node(event["id"], run), "test_score", float(score), now)
                self.scores.setdefault(event["id"], {})["test"] = score
            self.tested.append(event["id"])
        elif kind == "insights":
            self.client.set_tag(self.parent, "insights", "\n".join(event.get("items") or [])[:5000])
        elif kind == "run_finished":
            self._finish(event, run)

    def _finish(self, event: dict, run: RunInfo) -> None:
        """The search's run: the best node (the one evaluated on test last), its scores and its adapter."""
        if self.tested:
            best = self.tested[-1]
            s = self.scores.get(best, {})
            self.client.set_tag(self.parent, "best_node", str(best))
            for k, v in (("best_val", s.get("val")), ("best_test", s.get("test")),
                         ("baseline_test", self.scores.get(0, {}).get("test"))):
                if v is not None:
                    self.client.log_metric(self.parent, k, float(v))
            if s.get("adapter") and os.path.isdir(s["adapter"]):
                self.client.log_artifacts(self.parent, s["adapter"], artifact_path=f"best_node_{best}_adapter")
        self.client.set_terminated(self.parent, "FINISHED")


class _BestSoFar:
    """Trials finished and the best val so far, as the curve trackers plot them."""

    finished, best = 0, None

    def tally(self, res: dict) -> None:
        self.finished += 1
        if res.get("score") is not None:
            self.best = res["score"] if self.best is None else max(self.best, res["score"])


class TensorBoardTracker(_BestSoFar, _Curves, Callback):
    """Event files under `<run_dir>/tensorboard`: best val so far by trials finished, each node's val score,
    and each node's loss and val curves by step (`node_<id>/...`)."""

    name = "tensorboard"

    def __init__(self, logdir: str | None = None):
        from tensorboardX import SummaryWriter  # noqa: F401

        self.logdir, self.writer = logdir, None

    def on_event(self, event: dict, run: RunInfo) -> None:
        from tensorboardX import SummaryWriter

        if self.writer is None:
            self.writer = SummaryWriter(self.logdir or os.path.join(run.run_dir, "tensorboard"))
        if event.get("type") == "training_progress":
            loss, val = self.live_points(event)
            self._curves(event["id"], loss, val)
        elif event.get("type") == "node_finished" and event.get("id") != 0:
            nid = event["id"]
            res = event.get("result") or {}
            self.tally(res)
            _, loss, val = _node_metrics(res)
            if res.get("score") is not None:
                self.writer.add_scalar("search/val_score", res["score"], self.finished)
            if self.best is not None:
                self.writer.add_scalar("search/best_val_so_far", self.best, self.finished)
            self._curves(nid, self.new_points(nid, "loss", loss), self.new_points(nid, "val", val))
        elif event.get("type") == "test_evaluated" and (event.get("result") or {}).get("score") is not None:
            self.writer.add_scalar(f"node_{event['id']}/test_score", event["result"]["score"], 0)
            self.writer.flush()

    def _curves(self, nid: int, loss: list, val: list) -> None:
        for step, v in loss:
            self.writer.add_scalar(f"node_{nid}/train_loss", v, step)
        for step, v in val:
            self.writer.add_scalar(f"node_{nid}/val_curve", v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbTracker(_BestSoFar, _Curves, Callback):
    """One Weights & Biases run per search (`WANDB_MODE=offline` works without a server; files under
    `<run_dir>/wandb`), the same content as TensorBoard's: per-node loss and val curves against the node's
    own step (`node_<id>/step`), scores, best so far by trials finished."""

    name = "wandb"

    def __init__(self, project: str | None = None):
        import wandb  # noqa: F401

        self.project, self.wb = project, None

    def on_event(self, event: dict, run: RunInfo) -> None:
        import wandb

        if self.wb is None:
            self.wb = wandb.init(project=self.project or f"trex-ray-{run.task.get('name', 'task')}", name=run.name,
                                 dir=run.run_dir, config=flatten(run.settings), reinit="create_new")
        if event.get("type") == "training_progress":
            self._curves(event["id"], *self.live_points(event))
        elif event.get("type") == "node_finished" and event.get("id") != 0:
            nid = event["id"]
            res = event.get("result") or {}
            self.tally(res)
            metrics, loss, val = _node_metrics(res)
            self._curves(nid, self.new_points(nid, "loss", loss), self.new_points(nid, "val", val))
            self.wb.log({"trials_finished": self.finished, "best_val_so_far": self.best,
                         **{f"node_{nid}/{k}": v for k, v in metrics.items()}})
        elif event.get("type") == "test_evaluated" and (event.get("result") or {}).get("score") is not None:
            self.wb.summary[f"node_{event['id']}/test_score"] = event["result"]["score"]
        elif event.get("type") == "run_finished":
            self.wb.summary["stop_reason"] = event.get("stop_reason")

    def _curves(self, nid: int, loss: list, val: list) -> None:
        if not loss and not val:
            return
        if nid not in self.__dict__.setdefault("_defined", set()):  # a node's curves against its own steps
            self.wb.define_metric(f"node_{nid}/step")
            for name in ("train_loss", "val_curve"):
                self.wb.define_metric(f"node_{nid}/{name}", step_metric=f"node_{nid}/step")
            self._defined.add(nid)
        points: dict[int, dict] = {}
        for step, v in loss:
            points.setdefault(step, {})[f"node_{nid}/train_loss"] = v
        for step, v in val:
            points.setdefault(step, {})[f"node_{nid}/val_curve"] = v
        for step in sorted(points):
            self.wb.log({f"node_{nid}/step": step, **points[step]})

    def close(self) -> None:
        if self.wb is not None:
            self.wb.finish()
