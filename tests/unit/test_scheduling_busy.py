"""benchmarks/scheduling.py's busy measures: over the whole trial phase, and up to the last launch (without
the drain at the end, which no scheduler of a fixed trial budget can fill)."""

from __future__ import annotations

import pytest

from .helpers import benchmark_script


def test_busy_to_last_launch_leaves_out_the_drain_only():
    sch = benchmark_script("scheduling")
    # two accelerators: a and b from 0 to 10; c starts at 10 on a, d at 12 on b (2 s idle), both run to 30
    done = [{"slept_from": 0.0, "slept_s": 10.0}, {"slept_from": 0.0, "slept_s": 10.0},
            {"slept_from": 10.0, "slept_s": 20.0}, {"slept_from": 12.0, "slept_s": 5.0}]
    # up to the last launch (12 s): 10 + 10 + 2 accelerator-seconds busy of 2 x 12
    assert sch.busy_until_last_launch(done, 2) == pytest.approx(22 / 24)
    # d ended at 17 and nothing was left to launch: b's 13 idle seconds after it are the drain, not counted;
    # (over the whole phase, 0-30 s, the same run is 45 of 60 accelerator-seconds busy: 0.75)
    assert sch.busy_until_last_launch(done[:1], 2) == 1.0  # one launch: no window to be idle in
