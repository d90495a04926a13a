"""The Python front door: ``orchestrator.run`` and the ``trainers`` names, without the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_experiment_config

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_packages_loads_neither_ray_nor_torch():
    code = "import sys, orchestrator, trainers; print('ray' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    import trainers
    from trainers.run_fold import run_fold

    assert trainers.run_one_fold is run_fold and "run_one_fold" in trainers.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        trainers.nope  # noqa: B018


@pytest.mark.slow
def test_run_does_what_sernas_search_does(tmp_path):
    import orchestrator
    from orchestrator.leaderboard import connect

    config = write_experiment_config(
        tmp_path / "api.yaml", name="api", samples=1, concurrent=1, folds="{scheme: loso, use: [1]}"
    )
    summary = orchestrator.run(config)  # starts a local Ray and stops it
    assert (summary.trials, summary.completed, summary.failed) == (1, 1, 0)
    import ray

    assert not ray.is_initialized()
    with connect(summary.storage, experiment="api") as board:
        assert len(board.sql("SELECT * FROM runs WHERE status = 'completed'")) == 1
    with pytest.raises(ValueError, match="overrides apply to a config file"):
        from orchestrator.config import load_config

        orchestrator.run(load_config(config), overrides=["name=x"])
