"""A small experiment end to end on an S3-compatible object store (moto on 127.0.0.1, checking
credentials), as a user runs it: sernas search (its own local Ray), leaderboard with compaction,
report, export and cross-eval, all on ``--storage s3://bucket/prefix`` with the endpoint and keys
only in the standard AWS variables; nothing lands in the working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from cluster.cli import main
from conftest import write_experiment_config
from orchestrator.leaderboard import connect

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _sernas(*args: str, env: dict[str, str], cwd: Path, timeout: float = 500) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def test_search_leaderboard_report_export_and_cross_eval_on_the_object_store(s3_server, tmp_path, monkeypatch, capsys):
    storage = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/runs"
    config = write_experiment_config(
        tmp_path / "exp.yaml", name="s3-e2e", searcher="random", space_lr="0.025", eval_epochs=1, per_speaker=8
    )
    work = tmp_path / "work"
    work.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="rs3", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = {**os.environ, **s3_server.env(), "PYTHONPATH": str(ROOT), "RAY_TMPDIR": ray_tmp}
    try:
        out = _sernas("search", "--config", str(config), "--storage", storage, env=env, cwd=work)
        assert f"data in {storage}/s3-e2e/data" in out and "4 trials (4 completed, 0 pruned, 0 failed)" in out
        assert f"Leaderboard part files: {storage}/leaderboard/s3-e2e/" in out
        assert s3_server.secret_key not in out

        for name, value in s3_server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(work)
        with connect(storage, experiment="s3-e2e") as board:
            runs = board.sql("SELECT trial_id, fold, status FROM runs")
        assert len(runs) == 4 and set(runs["status"]) == {"completed"}  # 2 trials x 2 outer folds, 1 network each
        assert main(["leaderboard", "--storage", storage, "--experiment", "s3-e2e", "--compact"]) == 0
        assert "s3-e2e" in capsys.readouterr().out
        with connect(storage, experiment="s3-e2e", compact_at=None) as board:
            assert board.scan.snapshots and board.scan.unsnapshotted == 0  # every file served by snapshots on the store
        assert main(["report", "--storage", storage, "--experiment", "s3-e2e", "--out", str(work / "r.html")]) == 0
        assert "s3-e2e" in (work / "r.html").read_text()
        bundle = work / "model.pt"
        assert main(["export", "--storage", storage, "--experiment", "s3-e2e", "--out", str(bundle)]) == 0
        assert bundle.is_file() and "Exported genotype" in capsys.readouterr().out

        out = _sernas("cross-eval", "--storage", storage, "--experiment", "s3-e2e", "--top", "1", env=env, cwd=work)
        assert "Cross-eval s3-e2e-cross-eval: 1 trials (1 completed, 0 failed)" in out
        with connect(storage, experiment="s3-e2e") as board:
            cross = board.sql("SELECT fold FROM fold_rows WHERE stage = 'cross-eval'")
        assert sorted(cross["fold"]) == [1, 2]
        assert sorted(p.name for p in work.iterdir()) == ["model.pt", "r.html"]  # nothing else here
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
