"""The `trex-ray` command.

    trex-ray demo                         a real search on the built-in clock task (SmolLM2-135M, local Ray)
    trex-ray run config.yaml [--key v]    a search from a YAML config; any key can be overridden
    trex-ray resume runs/<run> [--key v]  continue a run after the driver stopped (or with a larger budget)
    trex-ray show runs/<run>              the tree as a table
    trex-ray status [runs/<run>] [--address A]   what a search is doing (live from the cluster with an address)
    trex-ray attach runs/<run> [--address A]     follow a search until it ends
    trex-ray report runs/<run> [runs/<run2> ...] [--out F]   a self-contained report.html of the tree
    trex-ray export runs/<run> OUT [--node N] [--no-merge]   the best (or any) node's model as an HF checkpoint
    trex-ray data run recipe.yaml --out DIR   run a data recipe by hand; per-op row counts

Flags are the config keys, written with underscores or dashes alike (--max_concurrent, --max-concurrent).
Mistakes in input exit with code 2 and one line naming the field and the fix.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing

from trex_ray.errors import ConfigError


def _kinds(field) -> list:
    return [k for k in (typing.get_args(field.annotation) or (field.annotation,)) if k is not type(None)]


def _is_mapping(field) -> bool:
    from pydantic import BaseModel

    return any((typing.get_origin(k) or k) is dict or (isinstance(k, type) and issubclass(k, BaseModel))
               for k in _kinds(field))


def _flags(name: str) -> list[str]:
    """A key's command-line flags: with underscores as in the YAML, and with dashes (--max-concurrent)."""
    return [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])


def _add_overrides(p: argparse.ArgumentParser) -> None:
    from trex_ray.config import FIELDS

    for name, field in FIELDS.items():
        text = (field.description or "").replace("%", "%%")  # argparse formats help with %
        if typing.get_origin(_kinds(field)[0]) is list:
            p.add_argument(*_flags(name), dest=name, nargs="+", default=None, help=text)
        else:
            p.add_argument(*_flags(name), dest=name, type=str, default=None, help=text)


def _overrides(args: argparse.Namespace) -> dict:
    """Command-line values by key; pydantic converts strings like "6" to the field's type."""
    import yaml

    from trex_ray.config import FIELDS

    out = {}
    for name, field in FIELDS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if _is_mapping(field):
            try:  # a mapping on the command line, as YAML/JSON: --researcher_llm '{model: x}'
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(name, f"not a mapping: {value!r}", "write it as YAML, e.g. '{model: name}'") from None
        out[name] = value
    return out


def _run(cfg, resume: bool = False) -> int:
    from trex_ray.search import search

    search(cfg.task, settings=cfg.settings, resume=resume)
    return 0


def cmd_run(args) -> int:
    from trex_ray.config import build, load_config

    data = load_config(args.config)  # relative data paths are relative to the config file
    data.update(_overrides(args))
    return _run(build(data))


def cmd_demo(args) -> int:
    from trex_ray.config import build
    from trex_ray.demo import GOAL, write_demo_task

    over = _overrides(args)
    storage = over.get("storage", "runs")
    paths = write_demo_task(os.path.join(storage, "demo-data"))
    data = {"name": "clock", "goal": GOAL, "input_field": "question", "output_field": "answer",
            "metric": "exact_match", "base_model": "smollm2-135m", "trials": 4, "max_concurrent": 2,
            "wall_clock_s": 900, **paths}
    data.update(over)
    return _run(build(data))


def cmd_resume(args) -> int:
    from trex_ray.config import build, load_yaml
    from trex_ray.storage import Mirror, is_uri

    run_dir = args.run.rstrip("/")
    if is_uri(run_dir):  # a run folder at a storage URI: its config comes from there
        storage, name = run_dir.rsplit("/", 1)
        mirror = Mirror(storage)
        if not mirror.pull(f"{name}/config.yaml"):
            raise ConfigError("run", f"{run_dir} is not a run folder (no config.yaml)", "give a run folder's URI")
        cfg_path = os.path.join(mirror.local, name, "config.yaml")
    else:
        cfg_path = os.path.join(run_dir, "config.yaml")
        if not os.path.exists(os.path.join(run_dir, "journal.jsonl")):
            raise ConfigError("run", f"{run_dir} is not a run folder (no journal.jsonl)",
                              "give a folder under your storage")
    data = load_yaml(cfg_path)
    data.update(_overrides(args))
    if is_uri(run_dir):
        data["storage"], data["run_name"] = storage, name
    else:  # a local folder; or the local mirror of a URI run, which resumes against its URI
        if not is_uri(str(data.get("storage", ""))):
            data["storage"] = os.path.dirname(os.path.abspath(run_dir))
        data["run_name"] = os.path.basename(os.path.abspath(run_dir))
    return _run(build(data), resume=True)


def cmd_show(args) -> int:
    from trex_ray.runs import load_tree

    tree = load_tree(args.run.rstrip("/"))
    rows = [("id", "parent", "depth", "direction", "status", "val", "test", "reward", "visits", "seconds")]
    for nid in sorted(tree.nodes):
        n = tree.nodes[nid]
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        rows.append((str(n.id), "-" if n.parent_id is None else str(n.parent_id), str(n.depth), n.direction[:40],
                     n.status, fmt(n.score), fmt((n.test or {}).get("score")), f"{n.reward:.3f}", str(n.visits),
                     f"{(n.result or {}).get('seconds', 0):.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if tree.root.status == "ok":
        best = tree.best()
        print(f"\nbest: node {best.id} ({best.direction}), val {best.score:.3f}; baseline val {tree.root.score:.3f}")
    for s in tree.insights:
        print(f"insight: {s}")
    return 0


def cmd_status(args) -> int:
    import json

    from trex_ray.status import collect, render

    address = args.address or os.environ.get("RAY_ADDRESS")
    snaps = collect(args.run.rstrip("/") if args.run else None, address if args.address or not args.run else None)
    if args.json:
        print(json.dumps(snaps, indent=1))
    elif not snaps:
        print(f"no search is running on {address}")
    for s in [] if args.json else snaps:
        print("\n".join(render(s)))
    return 0


def cmd_attach(args) -> int:
    from trex_ray.status import attach

    last = attach(args.run.rstrip("/") if args.run else None, args.address, poll_s=args.every)
    return 0 if last else 1


def cmd_report(args) -> int:
    from trex_ray.report import write_report
    from trex_ray.runs import local_run_dir

    out = write_report([local_run_dir(r) for r in args.runs], args.out)
    print(out)
    return 0


def cmd_export(args) -> int:
    from trex_ray.runs import load_result, local_run_dir

    res = load_result(local_run_dir(args.run))
    try:
        path = res.export(args.out, node=args.node, merge=not args.no_merge, push_to_hub=args.push_to_hub,
                          private=not args.public)
    except KeyError as e:
        raise ConfigError("node", str(e).strip("'\""), "give a node id that trex-ray show lists") from None
    except ValueError as e:
        if str(e).startswith("push_to_hub"):
            raise ConfigError("push_to_hub", str(e).split(": ", 1)[1], "give the repo as org/name") from None
        raise ConfigError("node", str(e), "give a node that finished ok (trex-ray show lists them)") from None
    except FileExistsError as e:
        raise ConfigError("out", str(e), "give a new or empty folder") from None
    n = res.node(args.node)
    print(f"node {n.id} [{n.direction}] (val {n.val_score}, test {n.test_score}) written to {path}")
    return 0


def cmd_data_run(args) -> int:
    """Run a recipe file by hand: prints per-op row counts, writes parquet + JSONL + stats.json to --out."""
    import json

    from trex_ray.aidp.ops import OpContext
    from trex_ray.config import load_yaml
    from trex_ray.plan import parse_recipe

    data = load_yaml(args.recipe)
    base = os.path.dirname(os.path.abspath(args.recipe))
    for key in ("train", "val", "test", "input_field", "output_field"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if "ops" not in data:
        raise ConfigError("ops", f"{args.recipe} has no `ops:` list", "write `ops:` then `- op_name: {args}` lines")
    if not data.get("train"):
        raise ConfigError("train", "the recipe names no training file for `load`", "add `train: file.jsonl` or --train")
    recipe = parse_recipe(data["ops"])
    paths = {k: data[k] if os.path.isabs(data[k]) else os.path.join(base, data[k])
             for k in ("train", "val", "test") if data.get(k)}
    if not os.path.exists(paths["train"]):
        raise ConfigError("train", f"file not found: {paths['train']}", "give an existing file")
    from trex_ray.aidp.pipeline import RecipeError, run_recipe
    from trex_ray.runtime import init_ray

    init_ray(None, 1)
    from trex_ray.llm import LLMSpec

    try:
        llm = LLMSpec.model_validate(data.get("llm") or {})
    except Exception as e:  # noqa: BLE001 - pydantic's message names the field
        raise ConfigError("llm", str(e).splitlines()[-1].strip(), f"fields: {', '.join(LLMSpec.model_fields)}") from None
    ctx = OpContext(train_path=paths["train"], input_field=data.get("input_field", "input"),
                    output_field=data.get("output_field", "output"),
                    eval_paths=tuple(paths[k] for k in ("val", "test") if k in paths), goal=str(data.get("goal", "")),
                    llm=llm.model_dump())
    try:
        out_dir, stats = run_recipe(recipe, ctx, os.path.join(args.out, ".cache"))
    except RecipeError as e:
        raise ConfigError("recipe", str(e), "") from None
    print(f"{'#':>2}  {'op':<18} {'rows in':>8} {'rows out':>8}  dropped")
    for st in stats["ops"]:
        why = ", ".join(f"{n} {r}" for r, n in sorted(st["dropped"].items(), key=lambda kv: -kv[1]))
        print(f"{st['position']:>2}  {st['op']:<18} {st['rows_in']:>8} {st['rows_out']:>8}  {why}")
    from trex_ray.aidp.export import export

    written = [export(out_dir, os.path.join(args.out, "data"), "parquet") + " (parquet)",
               export(out_dir, os.path.join(args.out, "data.jsonl"), "jsonl")]
    if args.hf:
        written.append(export(out_dir, os.path.join(args.out, "hf"), "hf") + " (datasets.load_from_disk)")
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(f"{stats['rows']} rows -> " + ", ".join(written) + (" (cached)" if stats["cache_hit"] else ""))
    return 0


def _log_to_stderr() -> None:
    """trex-ray's own log (notices and warnings; TREX_RAY_VERBOSE=1: debug too) on stderr, one line each."""
    import logging

    class Stderr(logging.StreamHandler):  # whatever sys.stderr is when a line is written (main() may run again)
        stream = property(lambda self: sys.stderr, lambda self, value: None)

    handler = Stderr()
    handler.setFormatter(logging.Formatter("trex-ray: %(levelname)s: %(message)s"))
    log = logging.getLogger("trex_ray")
    if not log.handlers:
        log.addHandler(handler)
        log.setLevel(logging.DEBUG if os.environ.get("TREX_RAY_VERBOSE") else logging.INFO)
        log.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trex-ray", description="Automated LLM fine-tuning as a tree search on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a search from a YAML config")
    p.add_argument("config")
    _add_overrides(p)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("demo", help="run a real search on the built-in clock-time task")
    _add_overrides(p)
    p.set_defaults(fn=cmd_demo)
    p = sub.add_parser("resume", help="continue a run folder")
    p.add_argument("run")
    _add_overrides(p)
    p.set_defaults(fn=cmd_resume)
    p = sub.add_parser("data", help="data recipes (AIDP)")
    dsub = p.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("run", help="run a recipe YAML by hand and print per-op row counts")
    p.add_argument("recipe")
    p.add_argument("--out", required=True, help="output folder (parquet, JSONL, stats.json)")
    p.add_argument("--hf", action="store_true", help="also write an HF datasets folder (prompt/completion chat)")
    for key in ("train", "val", "test", "input_field", "output_field"):
        p.add_argument(*_flags(key), dest=key, default=None)
    p.set_defaults(fn=cmd_data_run)
    p = sub.add_parser("show", help="print the tree of a run folder")
    p.add_argument("run")
    p.set_defaults(fn=cmd_show)
    p = sub.add_parser("report", help="write a self-contained report.html of one run or several compared")
    p.add_argument("runs", nargs="+", help="run folders (or storage URIs of runs)")
    p.add_argument("--out", default=None, help="the file to write (default: <first run>/report.html)")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("export", help="write a node's model as a Hugging Face checkpoint (the adapter merged)")
    p.add_argument("run")
    p.add_argument("out", help="a new folder")
    p.add_argument("--node", type=int, default=None, help="node id (default: the best node)")
    p.add_argument("--no-merge", "--no_merge", dest="no_merge", action="store_true",
                   help="write the LoRA adapter alone (a PEFT folder)")
    p.add_argument("--push-to-hub", "--push_to_hub", dest="push_to_hub", default=None, metavar="ORG/NAME",
                   help="then upload the folder to this Hugging Face Hub repo (token: HF_TOKEN)")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: a public repo (default private)")
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("status", help="what a search is doing: from its run folder, or live from the cluster")
    p.add_argument("run", nargs="?", help="run folder (or its name, with --address)")
    p.add_argument("--address", default=None, help="a Ray cluster: ask the searches' tree actors (default with no "
                   "run: RAY_ADDRESS)")
    p.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("attach", help="follow a running search until it ends")
    p.add_argument("run", nargs="?", help="run folder (or its name, with --address)")
    p.add_argument("--address", default=None, help="a Ray cluster: follow the search's tree actor live")
    p.add_argument("--every", type=float, default=2.0, help="seconds between looks")
    p.set_defaults(fn=cmd_attach)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"trex-ray: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trex-ray: interrupted; resume with `trex-ray resume <run folder>`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
