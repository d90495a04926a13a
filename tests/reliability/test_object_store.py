"""Reliability on an S3-compatible object store (moto on 127.0.0.1, checking credentials): a
driver SIGKILLed mid-experiment and finished with --resume, and concurrent leaderboard writers
while a reader queries. Same guarantees as on a local disk: nothing lost, nothing doubled, no
reader ever sees half a file."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from conftest import kill_driver_when, kill_ray_processes_of, make_leaderboard_row, write_experiment_config
from orchestrator.leaderboard import connect, write_fold_row
from orchestrator.storage import resolve_storage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKERS, ROWS = 4, 8


def _parts(storage: str, experiment: str) -> list[str]:
    location = resolve_storage(storage)
    selector = pafs.FileSelector(location.path("leaderboard", experiment), recursive=True, allow_not_found=True)
    return [info.path for info in location.filesystem.get_file_info(selector) if info.path.endswith(".parquet")]


def test_a_killed_driver_resumes_on_the_object_store(s3_server, tmp_path, monkeypatch):
    storage = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/runs"
    # 2 trials per outer fold on 2 outer folds (4 trials of one network), 2 at a time: when the first
    # row appears, the last two have not started, and with the driver killed they cannot, so the
    # kill always leaves work to resume.
    config = write_experiment_config(tmp_path / "resume.yaml", name="s3-resume", samples=2, eval_epochs=3)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    ray_tmp = tempfile.mkdtemp(prefix="rk", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "cluster.cli", "search", "--config", str(config), "--storage", storage]
    try:
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        killed_at = kill_driver_when(
            first,
            lambda: _parts(storage, "s3-resume"),
            ray_tmp=ray_tmp,
            timeout=300,
            poll=1.0,
            what="the first finished fold on the store",
        )
        with connect(storage, experiment="s3-resume") as board:
            before = len(board.sql("SELECT * FROM runs WHERE status = 'completed'"))
        assert 1 <= before < 4

        second = subprocess.run(
            [*command, "--resume"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=500
        )
        assert second.returncode == 0, second.stdout[-4000:]
        assert "4 trials (4 completed, 0 pruned, 0 failed)" in second.stdout, second.stdout[-4000:]
    finally:
        kill_ray_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    with connect(storage, experiment="s3-resume") as board:
        runs = board.sql("SELECT trial_id, fold, status, written_at FROM runs")
        trials = board.sql("SELECT trial_id, status FROM trials")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}  # 4 trials x 1 network, once each
    assert not runs.duplicated(["trial_id", "fold"]).any()
    assert set(trials["status"]) == {"completed"} and len(trials) == 4
    # Every fold missing at the kill was written after it (a fold written just before the kill,
    # before Tune had its checkpoint, may be run again: its newer row replaces the old one).
    assert (pd.to_datetime(runs["written_at"], utc=True) > killed_at).sum() >= 4 - before


def _write_many(storage: str, worker: int, rows: int, env: dict[str, str]) -> None:
    os.environ.update(env)
    for index in range(rows):
        write_fold_row(
            storage,
            make_leaderboard_row(trial_id=f"w{worker}-{index}", fold=1 + index % 3, genotype_hash=f"{worker:012d}"),
        )


def test_concurrent_writers_and_a_reader_on_the_object_store(s3_server, monkeypatch):
    storage = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/runs"
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_write_many, args=(storage, worker, ROWS, s3_server.env())) for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    queries = 0
    deadline = time.monotonic() + 180
    try:
        while any(process.is_alive() for process in processes) and time.monotonic() < deadline:
            with connect(storage) as board:  # never fails, never sees half an object
                assert board.damaged == ()
                board.sql("SELECT count(*) AS n FROM runs")
            queries += 1
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    expected = {(f"w{worker}-{index}", 1 + index % 3) for worker in range(WORKERS) for index in range(ROWS)}
    with connect(storage) as board:
        rows = board.sql("SELECT trial_id, fold FROM fold_rows")
        assert set(zip(rows["trial_id"], rows["fold"])) == expected and len(rows) == len(expected)
        assert board.damaged == () and board.scan.temporary == ()
    assert queries >= 1
