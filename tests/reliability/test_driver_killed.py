"""Kill the driver of a running experiment with SIGKILL, then finish it with --resume."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import write_experiment_config as write_config
from orchestrator.leaderboard import connect

pytestmark = pytest.mark.slow


def _kill_ray_processes_of(temp_dir: str) -> None:
    """Stop every process of the Ray session this test started (found by its temp dir)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _sernas(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_resume_after_the_driver_is_killed_loses_and_doubles_nothing(tmp_path):
    config = write_config(tmp_path / "resume.yaml", name="resume", samples=2, eval_epochs=3)
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": os.getcwd()}
    leaderboard = tmp_path / "runs" / "leaderboard" / "resume"
    try:
        first = _sernas("search", "--config", str(config), env=env)
        deadline = time.monotonic() + 240
        while not list(leaderboard.rglob("*.parquet")):  # wait for the first finished fold
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "no fold finished in time"
            time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait()
        _kill_ray_processes_of(ray_tmp)  # a killed driver may leave its local cluster behind
        with connect(tmp_path / "runs", experiment="resume") as board:
            before = len(board.sql("SELECT * FROM runs WHERE status = 'completed'"))
        assert 1 <= before < 4

        second = _sernas("search", "--config", str(config), "--resume", env=env)
        output, _ = second.communicate(timeout=400)
        assert second.returncode == 0, output
        assert "2 trials (2 completed, 0 pruned, 0 failed)" in output, output
    finally:
        _kill_ray_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    with connect(tmp_path / "runs", experiment="resume") as board:
        runs = board.sql("SELECT trial_id, fold, status, attempt FROM runs")
        trials = board.sql("SELECT trial_id, status FROM trials")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}  # 2 trials x 2 folds, once each
    assert not runs.duplicated(["trial_id", "fold"]).any()
    assert set(trials["status"]) == {"completed"} and len(trials) == 2
    assert runs["attempt"].max() >= 2  # at least one fold was finished after the restart
