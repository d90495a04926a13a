"""The cluster launcher YAML and the KubeRay RayJob agree with the code they run."""

import shlex
from pathlib import Path

import pytest
import yaml

from cluster.cli import build_parser
from orchestrator.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> set[str]:
    import argparse

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load((ROOT / "cluster" / "ray-cluster.yaml").read_text())


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load((ROOT / "cluster" / "kuberay-rayjob.yaml").read_text())


def check_entrypoint(entrypoint: str) -> Path:
    words = shlex.split(entrypoint)
    assert words[0] == "sernas" and words[1] in subcommands() and words[1] == "search"
    config = ROOT / words[words.index("--config") + 1]
    assert config.is_file(), f"entrypoint names {config}, which does not exist"
    assert words[words.index("--address") + 1] == "auto"
    # The overrides must be valid keys of the config.
    overrides = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    load_config(config, overrides=overrides)
    return config


def test_rayjob_entrypoint_runs_an_existing_config_with_a_real_subcommand(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    config = check_entrypoint(rayjob["spec"]["entrypoint"])
    assert config.name == "iemocap-paper.yaml"
    assert rayjob["spec"]["rayClusterSpec"]["rayVersion"].startswith("2.60")


def test_rayjob_gpu_workers_fit_the_paper_configs_trial_resources(rayjob):
    resources = load_config(ROOT / "configs" / "iemocap-paper.yaml").tune.resources
    spec = rayjob["spec"]["rayClusterSpec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    (group,) = spec["workerGroupSpecs"]
    gpus = float(group["rayStartParams"]["num-gpus"])
    cpus = float(group["rayStartParams"]["num-cpus"])
    container = group["template"]["spec"]["containers"][0]
    assert float(container["resources"]["limits"]["nvidia.com/gpu"]) == gpus
    assert 0 < resources.gpu <= 1 and gpus >= resources.gpu
    trials_per_node = round(gpus / resources.gpu)
    assert cpus >= trials_per_node * resources.cpu, "the GPU node lacks CPUs for the trials its GPU can hold"
    for c in [head["template"]["spec"]["containers"][0], container]:
        assert "sernas" in c["image"]
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]  # never inline
    assert "pip install" in (ROOT / "cluster" / "kuberay-rayjob.yaml").read_text()


def test_launcher_has_cpu_head_autoscaling_gpu_workers_and_installs_sernas(launcher):
    resources = load_config(ROOT / "configs" / "iemocap-paper.yaml").tune.resources
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    assert gpu_types
    for node in gpu_types:
        assert node["max_workers"] > node["min_workers"] >= 0  # autoscaling
        per_node = round(node["resources"]["GPU"] / resources.gpu)
        assert node["resources"]["CPU"] >= per_node * resources.cpu
    setup = " ".join(launcher["setup_commands"] + launcher["head_setup_commands"])
    assert "pip install" in setup and "-e ." in setup and "constraints.txt" in setup
    start = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "RAY_AUTH_MODE=token" in start
    for pattern in (".venv", "runs", "*.parquet", ".cache"):
        assert pattern in launcher["rsync_exclude"]


def test_docs_name_the_submit_line():
    text = (ROOT / "docs" / "cluster.md").read_text()
    assert (
        "ray job submit --address http://HEAD:8265 --working-dir . -- sernas search --config "
        "configs/iemocap-paper.yaml" in text
    )
    assert "ssh -L" in text


def test_head_and_workers_install_one_torch_and_workers_check_cuda(launcher):
    installs = [c for key, commands in launcher.items() if key.endswith("setup_commands") for c in commands]
    project = [c for c in installs if "pip install" in c and "-e ." in c]
    assert project == ["cd /home/ubuntu/sernas && python3 -m pip install -c constraints.txt -e ."]
    assert project[0] in launcher["setup_commands"]  # setup_commands run on head and workers alike
    assert not any("torch" in c for c in installs)  # no second torch anywhere
    assert launcher["worker_setup_commands"] == ["cd /home/ubuntu/sernas && python3 -m cluster.gpu_check"]


def test_rayjob_gpu_workers_tolerate_gpu_taints_check_cuda_and_mount_shared_memory(rayjob):
    (group,) = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    pod = group["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (check,) = pod["initContainers"]
    assert check["command"] == ["python", "-m", "cluster.gpu_check"] and check["image"] == pod["containers"][0]["image"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    # The entrypoint lets the worker group scale out: max_concurrent fills maxReplicas GPUs.
    words = shlex.split(rayjob["spec"]["entrypoint"])
    config = load_config(
        ROOT / words[words.index("--config") + 1],
        overrides=[words[i + 1] for i, word in enumerate(words) if word == "--set"],
    )
    gpus = group["maxReplicas"] * float(group["rayStartParams"]["num-gpus"])
    assert config.tune.max_concurrent * config.tune.resources.gpu == gpus


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_fails_where_cuda_does_not_work():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "cluster.gpu_check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "gpu_check: CUDA does not work on this node" in done.stderr
    assert "torch 2." in done.stderr and "Traceback" not in done.stderr
