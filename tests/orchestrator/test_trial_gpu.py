"""The GPU paths of a trial on a real local Ray that advertises a GPU this machine lacks: a
trial given a GPU fails at once naming its node (never trains on the CPU), and a CUDA
out-of-memory error makes the trial infeasible instead of being retried."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from conftest import write_experiment_config
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.experiment import prepare_data, run_experiment
from orchestrator.leaderboard import connect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_with_a_gpu():
    """2 CPUs and one GPU as Ray counts it (Ray does not check that CUDA works)."""
    import ray
    import ray.cloudpickle

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # oom_trial runs in Ray's workers
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where CUDA does not work")
def test_a_trial_given_a_gpu_where_cuda_does_not_work_fails_at_once(ray_with_a_gpu, tmp_path, capsys):
    config = write_experiment_config(tmp_path / "exp.yaml", name="nocuda", samples=1, folds="{scheme: loso, use: [1]}")
    overrides = ["device=auto", "tune.resources.gpu=0.5", "tune.max_concurrent=null", "tune.max_failures=0"]
    assert main(["search", "--config", str(config), *[a for o in overrides for a in ("--set", o)]]) == 1
    out = capsys.readouterr().out
    assert "max_concurrent 2: the cluster's 1 GPU(s) / gpu 0.5" in out
    assert "1 trials (0 completed, 0 pruned, 1 failed)" in out
    (error_file,) = (tmp_path / "runs" / "nocuda").glob("*/error.txt")
    error = error_file.read_text()
    assert "DeviceUnavailableError" in error and "Ray gave this trial 0.5 GPU on node " in error
    assert "but CUDA does not work there" in error and "Ray GPU ids [" in error
    with connect(tmp_path / "runs", experiment="nocuda") as board:
        assert len(board.sql("SELECT * FROM fold_rows")) == 0  # nothing trained on the CPU


def oom_trial(params, *, inputs):
    """``run_trial`` whose folds run out of CUDA memory (as a too-large network on a GPU share would)."""
    import torch

    import orchestrator.trial as trial

    def run_fold(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 5.9 GiB cap)")

    trial.run_fold = run_fold
    trial.run_trial(params, inputs=inputs)


def test_cuda_out_of_memory_makes_the_trial_infeasible_not_retried(ray_with_a_gpu, tmp_path):
    path = write_experiment_config(tmp_path / "exp.yaml", name="oom", samples=1, folds="{scheme: loso, use: [1]}")
    config = load_config(path, overrides=["tune.max_failures=2"])
    summary = run_experiment(config, prepared=prepare_data(config, progress=False), trial_function=oom_trial)
    assert summary.trials == 1 and summary.infeasible == 1 and summary.failed == 1 and summary.completed == 0
    with connect(Path(config.tune.storage), experiment="oom") as board:
        rows = board.sql("SELECT * FROM fold_rows")
        trials = board.sql("SELECT * FROM trials")
    assert len(rows) == 1 and rows["attempt"].tolist() == [1]  # one attempt: Tune did not retry it
    error = rows["error"].iloc[0]
    assert rows["status"].iloc[0] == "failed" and error.startswith("infeasible: CUDA out of memory on fold 1")
    assert "not retried" in error and "Tried to allocate 2.00 GiB" in error
    assert trials["status"].tolist() == ["failed"] and trials["reason"].iloc[0] == error
