"""The Python API on the built-in demo task: python examples/python_api.py

A search with the packaged SmolLM2-135M-Instruct, local Ray and the offline researcher; prints the
best node against the baseline. The `__main__` guard matters: Ray and vLLM start worker processes.
"""

import trex_ray
from trex_ray.demo import GOAL, write_demo_task

if __name__ == "__main__":
    paths = write_demo_task("runs/demo-data")
    task = trex_ray.Task.from_jsonl(name="clock", input_field="question", output_field="answer",
                                    metric="exact_match", goal=GOAL, **paths)
    result = trex_ray.search(task, base_model="smollm2-135m", budget=trex_ray.Budget(trials=4), max_concurrent=2,
                             storage="runs/")
    print(result.best.val_score, result.best.test_score, result.baseline.test_score)
