"""A real local cluster (head + 1 worker): every socket its processes listen on is on loopback,
and user mistakes submitted as jobs end with a clear message and exit code 2 in the job's log,
never a traceback."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

import pytest

from cluster.auth import Token
from cluster.cli import main
from cluster.local import cluster_processes, read_state, start_local_cluster
from conftest import free_cluster_base_port, write_experiment_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    """Head + 1 worker with a token of its own. Its nodes (and so its jobs) see the test S3 server
    with a key it does not know, for the wrong-credentials job."""
    state = tmp_path_factory.mktemp("loopback") / "local.json"
    token = Token(value=secrets.token_hex(32), source="test")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_TOKEN", token.value)
        patch.delenv("RAY_ADDRESS", raising=False)
        for name, value in s3_server.env(secret_key="not-the-secret").items():
            patch.setenv(name, value)
        try:
            yield (
                start_local_cluster(workers=1, token=token, base_port=free_cluster_base_port(), state_path=state),
                token,
            )
        finally:
            described = read_state(state) if state.exists() else None
            if described is not None:
                assert main(["cluster", "stop", "--state", str(state)]) == 0
                assert cluster_processes(described) == []


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_every_listening_socket_of_the_cluster_is_on_loopback(cluster):
    import psutil

    local, _ = cluster
    listening, beyond = [], []
    for pid in cluster_processes(local):
        try:
            process = psutil.Process(pid)
            sockets = [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            name = process.name()
        except psutil.Error:  # ended meanwhile
            continue
        for sock in sockets:
            listening.append(sock)
            if not _is_loopback(sock.laddr.ip):
                beyond.append(f"{name} (pid {pid}) on {sock.laddr.ip}:{sock.laddr.port}")
    gcs = local.nodes[0].ports["gcs"]
    assert any(sock.laddr.port == gcs for sock in listening)  # the GCS was among what was listed
    assert beyond == [], f"bound beyond loopback: {beyond}"
    print(f"\n{len(listening)} listening sockets of the cluster's processes, {len(beyond)} beyond loopback")


def _job(local, token, config: Path, *extra: str) -> tuple[str, str]:
    """Submit ``sernas search`` with ``config``, wait; return (the job's status message, its log)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(local.dashboard_url, headers=token.headers())
    before = {job.submission_id for job in client.list_jobs()}
    assert main(["submit", "--address", local.dashboard_url, "--config", str(config), *extra, "--wait"]) == 1
    (job,) = [job for job in client.list_jobs() if job.submission_id not in before]
    assert str(job.status.value if hasattr(job.status, "value") else job.status) == "FAILED"
    return job.message or "", client.get_job_logs(job.submission_id)


def test_user_mistakes_in_submitted_jobs_end_with_exit_code_2(cluster, s3_server, tmp_path, capsys):
    local, token = cluster
    (tmp_path / "a").mkdir()
    bad_key = write_experiment_config(tmp_path / "a" / "exp.yaml", name="bad-key", extra="epochs: 3")
    other = tmp_path / "b"
    other.mkdir()
    assert main(["synth", "--out", str(other / "corpus"), "--speakers", "6", "--per-speaker", "4"]) == 0
    other_corpus = write_experiment_config(other / "exp.yaml", name="other-corpus")  # expects 12 per speaker
    no_manifest = tmp_path / "c" / "exp.yaml"
    no_manifest.parent.mkdir()
    write_experiment_config(no_manifest, name="no-manifest")
    text = no_manifest.read_text().replace(
        f"  dataset: synthetic\n  root: {no_manifest.parent / 'corpus'}\n",
        f"  dataset: iemocap\n  manifest: {tmp_path / 'nowhere' / 'manifest.parquet'}\n",
    )
    no_manifest.write_text("".join(line for line in text.splitlines(True) if not line.startswith("  synthetic:")))
    (tmp_path / "d").mkdir()
    wrong_keys = write_experiment_config(tmp_path / "d" / "exp.yaml", name="wrong-keys")
    cases = [
        (bad_key, (), [f"{bad_key}: epochs: unknown key"]),
        (other_corpus, (), ["data.root", "holds a different synthetic corpus"]),
        (no_manifest, (), ["nowhere/manifest.parquet"]),
        (
            wrong_keys,
            ("--storage", f"s3://{s3_server.bucket}/jobs"),
            [f"cannot read storage s3://{s3_server.bucket}/jobs", "AWS_SECRET_ACCESS_KEY"],
        ),
    ]
    for config, extra, expected in cases:
        message, log = _job(local, token, config, *extra)
        assert "exit code 2" in message, (config, message, log[-3000:])
        assert "error:" in log and "Traceback" not in log, (config, log[-3000:])
        for text in expected:
            assert text in log, (config, text, log[-3000:])
        assert "not-the-secret" not in log
    capsys.readouterr()
