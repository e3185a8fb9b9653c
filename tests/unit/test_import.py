"""Importing trex_ray is light, and its public names resolve."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "ray", "transformers", "vllm", "peft", "datasets")

PROBE = """
import json, sys
{body}
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps(heavy))
"""


def _heavy_after(body: str) -> list[str]:
    p = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_import_does_not_load_heavy_libraries():
    assert _heavy_after("import trex_ray") == []


def test_public_names_and_light_modules_do_not_load_heavy_libraries():
    body = ("import trex_ray\n"
            "[getattr(trex_ray, n) for n in trex_ray.__all__]\n"
            "import trex_ray.cli, trex_ray.plan, trex_ray.tree, trex_ray.policies, trex_ray.memory, trex_ray.runs\n"
            "import trex_ray.researcher.heuristic, trex_ray.aidp.ops, trex_ray.metrics, trex_ray.config")
    assert _heavy_after(body) == []


def test_probe_detects_heavy_imports():
    assert _heavy_after("import ray") == ["ray"]  # the probe itself can fail


def test_all_names_resolve():
    import trex_ray

    assert set(trex_ray.__all__) == {"Task", "Budget", "Plan", "search", "SearchSettings", "load_run", "SearchResult",
                                     "ConfigError", "demo_task"}
    for name in trex_ray.__all__:
        assert getattr(trex_ray, name) is not None, name
    from trex_ray.budget import Budget
    from trex_ray.errors import ConfigError
    from trex_ray.plan import Plan
    from trex_ray.task import Task

    assert trex_ray.Task is Task and trex_ray.Budget is Budget and trex_ray.Plan is Plan
    assert trex_ray.ConfigError is ConfigError
    assert isinstance(trex_ray.__version__, str)


def test_unknown_attribute_raises_attribute_error():
    import trex_ray

    try:
        trex_ray.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_search_is_callable_both_ways():
    import trex_ray

    assert callable(trex_ray.search)
    from trex_ray.search import search as fn

    assert callable(fn)
    import trex_ray.search as mod  # after the submodule import, the attribute may be the module itself

    assert callable(mod) and callable(trex_ray.search)


def test_search_callable_in_a_fresh_process():
    p = subprocess.run([sys.executable, "-c", "import trex_ray, inspect; f = trex_ray.search; "
                        "import trex_ray.search; print(callable(f), callable(trex_ray.search))"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "True"]


def test_calling_the_search_module_forwards_to_search(data_files, tmp_path):
    import pytest

    import trex_ray
    import trex_ray.search as mod
    from trex_ray.errors import ConfigError

    task = trex_ray.Task.from_jsonl(name="clock", input_field="question", output_field="answer", **data_files)
    for fn in (mod, trex_ray.search):
        with pytest.raises(ConfigError) as e:  # fails validation, before any folder or Ray
            fn(task, base_model="no-such-model", storage=str(tmp_path / "runs"))
        assert e.value.field == "base_model"
    assert not (tmp_path / "runs").exists()
