"""The callbacks' own logic, apart from any tracker: live training reports become `training_progress` events
(one per new step or new val score), and a node's loss curve is placed at the optimizer steps it stands for."""

from __future__ import annotations

from trex_ray.callbacks import Callback, Dispatcher, RunInfo, _Curves, _node_metrics


class Recorder(Callback):
    name = "recorder"

    def __init__(self):
        self.events = []

    def on_event(self, event, run):
        self.events.append(event)


def test_live_reports_become_training_progress_once_per_step_and_val(tmp_path):
    rec = Recorder()
    d = Dispatcher([rec], RunInfo(run_dir=str(tmp_path), name="r", task={}, settings={}))
    d.progress({1: {"stage": "data"}})  # not training yet
    d.progress({1: {"stage": "train", "step": 3, "steps": 10, "loss": 2.5}})
    d.progress({1: {"stage": "train", "step": 3, "steps": 10, "loss": 2.5}})  # nothing new
    # a val evaluation at step 5; the live report keeps its val (and val_step) while later steps come
    d.progress({1: {"stage": "train", "step": 5, "steps": 10, "loss": 2.0, "val": 0.4, "val_step": 5},
                2: {"stage": "train", "step": 1, "steps": 4, "loss": 3.0}})
    d.progress({1: {"stage": "train", "step": 7, "steps": 10, "loss": 1.5, "val": 0.4, "val_step": 5}})
    d.close()
    got = [(e["id"], e["step"], e.get("val_step"), e.get("val")) for e in rec.events]
    assert got == [(1, 3, None, None), (1, 5, 5, 0.4), (2, 1, None, None), (1, 7, None, None)]
    assert all(e["type"] == "training_progress" and e["steps"] for e in rec.events)


def test_a_downsampled_loss_curve_is_placed_at_its_steps():
    res = {"score": 0.5, "train_stats": {"steps": 400, "loss_curve": [float(i) for i in range(100)],
                                         "val_curve": [[100, 0.3], [400, 0.5]]}}
    metrics, loss, val = _node_metrics(res)
    assert metrics["val_score"] == 0.5
    assert loss[0] == (4, 0.0) and loss[-1] == (400, 99.0) and len(loss) == 100  # each the end of its 4 steps
    assert val == [(100, 0.3), (400, 0.5)]
    short = _node_metrics({"train_stats": {"steps": 3, "loss_curve": [3.0, 2.0, 1.0]}})[1]
    assert short == [(1, 3.0), (2, 2.0), (3, 1.0)]


def test_curves_logged_live_are_not_logged_again_when_the_node_finishes():
    c = _Curves()
    assert c.live_points({"id": 1, "step": 2, "loss": 1.0}) == ([(2, 1.0)], [])
    assert c.live_points({"id": 1, "step": 4, "loss": 0.8, "val": 0.5, "val_step": 4}) == ([(4, 0.8)], [(4, 0.5)])
    assert c.new_points(1, "loss", [(1, 1.2), (2, 1.0), (3, 0.9), (4, 0.8)]) == [(1, 1.2), (3, 0.9)]
    assert c.new_points(1, "val", [(4, 0.5), (8, 0.6)]) == [(8, 0.6)]
    assert c.new_points(2, "loss", [(2, 5.0)]) == [(2, 5.0)]  # another node's curve is its own
