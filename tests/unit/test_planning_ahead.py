"""How far the search plans ahead of its free slots while a slow researcher thinks: from the trials' own
progress reports before any has finished (the start of a run), and from the finish rate after."""

from __future__ import annotations

import time

import pytest

from trex_ray.search import Search, time_left


def _training(step: int, steps: int, seconds: float, now: float) -> dict:
    """A trial's live report as the tree keeps it: `step` of `steps` done, `seconds` after training began."""
    return {"stage": "train", "step": step, "steps": steps, "stage_started": now - seconds, "ts": now}


def test_time_left_is_the_steps_to_go_at_the_pace_so_far():
    now = time.time()
    assert time_left(_training(30, 100, 60.0, now), now) == pytest.approx(140.0)
    assert time_left(_training(30, 100, 60.0, now), now + 40) == pytest.approx(100.0)  # time since the report
    assert time_left(_training(99, 100, 99.0, now), now + 5) == 0.0
    assert time_left({"stage": "data"}, now) is None
    assert time_left(_training(0, 100, 5.0, now), now) is None  # no step yet: no pace
    assert time_left({**_training(10, 100, 0.0, now)}, now) is None  # a pace over no time is none
    assert time_left(_training(100, 100, 50.0, now), now) == 0.0  # every step trained: it is ending
    assert time_left({"stage": "eval", "rows": 48}, now) == 0.0


def test_a_slow_researcher_is_asked_ahead_for_the_trials_about_to_finish():
    run = Search(max_concurrent=8)
    now = time.time()
    run.live = {1: _training(90, 100, 90.0, now),  # 10 s to go
                2: _training(95, 100, 95.0, now),  # 5 s
                3: _training(10, 100, 10.0, now),  # 90 s
                4: {"stage": "data"}}
    run.think_s = 0.1
    assert run.ahead() == 0  # a quick researcher plans when a slot frees, having seen every result
    run.think_s = 12.0
    assert run.ahead() == 2  # before any trial finished: the two that end while it thinks
    run.trial_s = 40.0  # then also the finish rate: 8 x 12 / 40 = 2.4 a call, plus its standard deviation
    assert run.ahead() == 4
    run.live = {n: _training(99, 100, 99.0, now) for n in range(1, 9)}
    assert run.ahead() == 8  # every trial about to end: never more than the slots
