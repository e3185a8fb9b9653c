"""FT-Bench: the ten tasks TREX was evaluated on, as a package and a CLI (`python -m ftbench`).

    from ftbench import SPECS, load, prepare, run, table
    task = prepare("sst2", "runs/data/sst2-lite", profile="lite")   # a trex_ray.Task
    record = run("sst2", "smollm2-135m", budget_trials=4)            # a trex-ray search on it
    print(table("runs"))                                             # the Markdown results table
"""

from ftbench.bench import baseline, collect, relative_gain, run, table
from ftbench.prepare import PROFILES, prepare
from ftbench.tasks import SPECS, DataNotAvailable, Splits, TaskSpec, available, data_root, get_spec, load

__all__ = ["SPECS", "TaskSpec", "Splits", "DataNotAvailable", "PROFILES", "available", "data_root", "get_spec", "load",
           "prepare", "baseline", "run", "table", "collect", "relative_gain"]
