"""FT-Bench's own metrics, registered with trex-ray under the `trex_ray.metrics` entry point group (so the
evaluation finds them by name in every Ray worker). Each follows its benchmark's evaluation code; the
module docstrings list every deviation.

- `lawbench` (lawbench.py): LawBench's 20 per-sub-task metrics, averaged.
- `tomg_bench`, `omebench` (molecules.py): RDKit-checked molecule generation; reaction-mechanism scoring.
- `ftbench_qa` (qa.py): answer extraction and accuracy for CS-Bench, EconLogicQA, OpenFinData and GTA.
"""

from ftbench.metrics.lawbench import LAWBENCH
from ftbench.metrics.molecules import OMEBENCH, TOMG_BENCH
from ftbench.metrics.qa import QA

METRICS = [LAWBENCH, TOMG_BENCH, OMEBENCH, QA]
