"""max_concurrent: sized from the cluster when unset, a warning when a fixed value idles GPUs."""

from pathlib import Path

import pytest

from orchestrator.concurrency import size_concurrency
from orchestrator.config import TuneConfig, load_config

ROOT = Path(__file__).resolve().parents[2]


def tune(**options) -> TuneConfig:
    return TuneConfig(**options)


@pytest.mark.parametrize(
    ("gpu", "cluster", "expected"),
    [
        (0.25, {"CPU": 32, "GPU": 4}, 16),
        (0.25, {"CPU": 8, "GPU": 1}, 4),
        (0.5, {"CPU": 8, "GPU": 3}, 6),
        (1.0, {"CPU": 8, "GPU": 2}, 2),
        (0.3, {"CPU": 8, "GPU": 1}, 3),  # 0.9 of the GPU: the rest cannot hold a fourth
    ],
)
def test_unset_it_is_what_the_clusters_gpus_hold_at_the_trials_share(gpu, cluster, expected):
    decided = size_concurrency(tune(resources={"cpu": 1, "gpu": gpu}), cluster)
    assert decided.trials == expected and decided.warning is None
    assert f"{cluster['GPU']:g} GPU(s) / gpu {gpu:g}" in decided.reason


def test_unset_without_gpus_it_is_what_the_cpus_hold():
    decided = size_concurrency(tune(resources={"cpu": 2, "gpu": 0}), {"CPU": 9, "GPU": 2})
    assert decided.trials == 4 and decided.warning is None


def test_a_cluster_without_room_yet_runs_one_and_says_why():
    decided = size_concurrency(tune(resources={"cpu": 2, "gpu": 0.25}), {"CPU": 4})
    assert decided.trials == 1 and "autoscal" in decided.warning


def test_a_fixed_value_that_idles_gpus_warns_with_the_number_that_would_not():
    decided = size_concurrency(tune(max_concurrent=4, resources={"cpu": 2, "gpu": 0.25}), {"CPU": 64, "GPU": 4})
    assert decided.trials == 4
    assert "uses 1 of the cluster's 4 GPU(s), so 3 stay idle; set max_concurrent to 16" in decided.warning


def test_a_fixed_value_that_fills_the_gpus_does_not_warn():
    decided = size_concurrency(tune(max_concurrent=16, resources={"cpu": 2, "gpu": 0.25}), {"CPU": 64, "GPU": 4})
    assert decided.trials == 16 and decided.warning is None


@pytest.mark.parametrize("name", ["iemocap-paper", "iemocap-loso", "msp-improv"])
def test_the_gpu_configs_leave_it_to_the_cluster(name):
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    assert config.tune.max_concurrent is None and 0 < config.tune.resources.gpu < 1
    four_gpus = size_concurrency(config.tune, {"CPU": 64, "GPU": 4})
    assert four_gpus.trials * config.tune.resources.gpu == 4  # every GPU used
