"""A real head and worker node on loopback: submit a small experiment, check the leaderboard
has rows from both nodes, check the token is required, and stop exactly what was started."""

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.auth import Token
from cluster.cli import main
from cluster.local import cluster_processes, read_state, start_local_cluster
from conftest import free_cluster_base_port, write_experiment_config
from orchestrator.leaderboard import connect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory):
    """Head + 1 worker (1 CPU each) with a token of its own; stopped (and checked) on exit."""
    state = tmp_path_factory.mktemp("cluster") / "local.json"
    token = Token(value=secrets.token_hex(32), source="test")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_TOKEN", token.value)
        patch.delenv("RAY_ADDRESS", raising=False)
        try:
            cluster = start_local_cluster(
                workers=1, token=token, cpus_per_node=1, base_port=free_cluster_base_port(), state_path=state
            )
            yield cluster, token, state
        finally:
            described = read_state(state) if state.exists() else None
            if described is not None:
                assert main(["cluster", "stop", "--state", str(state)]) == 0
                assert cluster_processes(described) == []
                assert not Path(described.temp_dir).exists()
                assert not any(described.temp_dir in _cmdline(pid) for pid in _pids())
            assert not state.exists()


def _pids():
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def write_config(path: Path, *, name: str) -> Path:
    return write_experiment_config(path, name=name, searcher="random", eval_epochs=1, space_lr="0.025")


def test_submit_runs_an_experiment_across_both_nodes(local_cluster, tmp_path, capsys):
    cluster, token, state = local_cluster
    config = write_config(tmp_path / "exp.yaml", name="cluster-e2e")
    storage = tmp_path / "runs"  # one machine: a path every node sees
    started = time.time()
    code = main(
        ["submit", "--address", cluster.dashboard_url, "--config", str(config), "--storage", str(storage), "--wait"]
    )
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "Submitted job raysubmit_" in out and f"{cluster.dashboard_url}/#/jobs/raysubmit_" in out
    assert "SUCCEEDED" in out and "4 trials (4 completed, 0 pruned, 0 failed)" in out  # 2 per outer fold
    assert token.value not in out
    with connect(storage, experiment="cluster-e2e") as board:
        runs = board.sql("SELECT trial_id, fold, node_id FROM runs")
        nodes = board.sql("SELECT DISTINCT node_id FROM runs")
    assert len(runs) == 4 and runs["node_id"].str.len().gt(0).all()
    # 4 trials of 1 CPU on two 1-CPU nodes, 2 at a time: both nodes get work.
    sizing = [line for line in out.splitlines() if "max_concurrent" in line]
    assert len(nodes) == 2, f"all trials ran on one node: {runs.to_dict('records')}; {sizing}"
    first = min(p.stat().st_mtime for p in (storage / "leaderboard").rglob("*.parquet"))
    print(f"\nsubmit-to-first-leaderboard-row {first - started:.1f} s; whole job {time.time() - started:.1f} s")

    # One name, one run, through jobs too: the same config again is refused in the job's log,
    # and --restart archive starts afresh with the finished run moved aside.
    submit = ["submit", "--address", cluster.dashboard_url, "--config", str(config), "--storage", str(storage)]
    assert main([*submit, "--wait"]) == 1
    out = capsys.readouterr().out
    assert "already has results" in out and "--restart" in out and "FAILED" in out, out[-3000:]
    assert main([*submit, "--restart", "archive", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "--restart archive" in out and "4 trials (4 completed, 0 pruned, 0 failed)" in out, out[-3000:]
    assert len(list((storage / "_archive").glob("cluster-e2e-*"))) == 1
    with connect(storage, experiment="cluster-e2e") as board:
        assert len(board.sql("SELECT trial_id FROM runs")) == 4  # the new run's rows only


def test_submit_without_the_token_is_refused_and_with_it_accepted(local_cluster, tmp_path, capsys, monkeypatch):
    cluster, token, _ = local_cluster
    config = write_config(tmp_path / "exp.yaml", name="refused")
    # No token anywhere: no env, no RAY_AUTH_TOKEN_PATH, an empty home. In a fresh process: a
    # process that ran ray.init before (another test) has Ray's client attach its cached token.
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    no_token = subprocess.run(
        [
            sys.executable,
            "-m",
            "cluster.cli",
            "submit",
            "--address",
            cluster.dashboard_url,
            "--config",
            str(config),
            "--storage",
            str(tmp_path / "runs"),
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_token.returncode == 2
    err = no_token.stderr
    assert "refused the authentication token" in err and "Missing authentication token" in err
    assert "Traceback" not in err
    # A wrong token is refused too.
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert main(["submit", "--address", cluster.dashboard_url, "--config", str(config)]) == 2
    assert "Invalid authentication token" in capsys.readouterr().err

    # The plain `ray job submit` CLI: refused without the token, accepted with it.
    ray = str(Path(sys.executable).parent / "ray")
    command = [ray, "job", "submit", "--address", cluster.dashboard_url, "--", "echo", "sernas-token-ok"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "Missing authentication token" in refused.stdout + refused.stderr
    accepted = subprocess.run(
        command,
        env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token.value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert accepted.returncode == 0, accepted.stdout[-2000:] + accepted.stderr[-2000:]
    assert "sernas-token-ok" in accepted.stdout + accepted.stderr


def test_stop_kills_only_the_recorded_cluster(tmp_path, capsys):
    """A second cluster is stopped by its state file while the module's cluster (if any) and
    every other Ray on the machine are untouched: the stop only signals recorded groups."""
    state = tmp_path / "local.json"
    token = Token(value=secrets.token_hex(16), source="test")
    others_before = {pid for pid in _pids() if "raylet" in _cmdline(pid)}
    try:
        cluster = start_local_cluster(workers=0, token=token, base_port=free_cluster_base_port(), state_path=state)
        assert cluster_processes(cluster)
    finally:
        if state.exists():
            assert main(["cluster", "stop", "--state", str(state)]) == 0
    assert cluster_processes(cluster) == [] and not state.exists()
    others_after = {pid for pid in _pids() if "raylet" in _cmdline(pid)}
    assert others_before <= others_after  # nothing that ran before was stopped
    assert main(["cluster", "stop", "--state", str(state)]) == 2
    assert "no local cluster state" in capsys.readouterr().err
