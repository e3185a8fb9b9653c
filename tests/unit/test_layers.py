"""The package's import graph: no circles, and no edge from a lower layer to a higher one.

Every `import trex_ray...` / `from trex_ray... import` counts, also those inside functions (a lazy
import is still a dependency). Layers, bottom to top: what a module may import is its own layer or below.
"""

from __future__ import annotations

import ast
import graphlib
import os

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "trex_ray")

# bottom to top; a module not named here is a failure (every new module takes a place)
LAYERS: list[tuple[str, ...]] = [
    # demo: the built-in clock task's data, generated here (the tiny test model's tokenizer learns its words)
    ("errors", "budget", "prompting", "journal", "metrics", "tree", "memory", "policies", "formats", "task", "demo"),
    ("models", "card", "callbacks", "results", "storage", "runtime", "runs"),  # models, cards, trackers, runs, Ray
    ("modeling",),  # loading and running models: shared by evaluation, data ops and the local LLM
    ("llm",),
    ("aidp",),
    ("plan",),
    ("researcher", "executor"),
    ("tree_actor", "progress", "report", "status"),
    ("settings",),
    ("search", "config"),
    ("cli", "__init__"),
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: no layer declared for {top!r} (add it to LAYERS)")


def _modules() -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = os.path.join(root, f)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        package = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import name`: name is a submodule where one exists, else an attribute of pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:  # `import trex_ray.x.y` names the module; an attribute's module
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != mod and t.startswith("trex_ray"):
                    graph[mod].add(t)
    return graph


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    # a package's __init__ re-exporting its own modules is not a circle of dependencies
    deps = {m: {d for d in ds if not (m == d.rsplit(".", 1)[0] and m != "trex_ray")} for m, ds in graph.items()}
    try:
        list(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError as e:
        raise AssertionError(f"import circle: {' -> '.join(e.args[1])}") from None


def test_no_module_imports_from_a_layer_above_its_own():
    upward = sorted(f"{m} -> {d}" for m, ds in import_graph().items() for d in ds
                    if m != "trex_ray" and _layer(d) > _layer(m))
    assert upward == [], "upward imports:\n" + "\n".join(upward)
