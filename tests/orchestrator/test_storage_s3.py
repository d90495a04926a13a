"""The leaderboard and the commands that read it, on a real S3-compatible server (moto on
127.0.0.1, checking credentials): rows, a corrupt part file, compaction, and wrong credentials."""

from __future__ import annotations

import uuid

import pytest

from cluster.cli import main
from conftest import make_leaderboard_row, write_experiment_config
from orchestrator.leaderboard import compact, connect, write_fold_row
from orchestrator.storage import StorageAccessError, check_access, resolve_storage


@pytest.fixture
def s3_storage(s3_server, monkeypatch) -> str:
    """A fresh ``s3://bucket/prefix`` with the server's endpoint and credentials in the environment."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/runs"


def _keys(s3_server, prefix: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1", **_keys_of(s3_server))
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _keys_of(s3_server) -> dict[str, str]:
    return {"aws_access_key_id": s3_server.access_key, "aws_secret_access_key": s3_server.secret_key}


def test_rows_a_corrupt_part_and_compaction_on_the_object_store(s3_server, s3_storage, tmp_path, monkeypatch):
    import boto3

    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    for index, trial in enumerate(("t1", "t2", "t3")):
        shown = write_fold_row(s3_storage, make_leaderboard_row(trial_id=trial, test_ua=0.5 + index / 10))
        assert shown.startswith(f"{s3_storage}/leaderboard/exp/{trial}/")
    prefix = s3_storage.removeprefix(f"s3://{s3_server.bucket}/")
    broken = next(key for key in _keys(s3_server, prefix) if "/t2/" in key and key.endswith(".parquet"))
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1", **_keys_of(s3_server))
    body = client.get_object(Bucket=s3_server.bucket, Key=broken)["Body"].read()
    client.put_object(Bucket=s3_server.bucket, Key=broken, Body=body[:-100])  # a torn upload

    with connect(s3_storage) as board:
        damaged = dict(board.damaged)
        assert set(board.sql("SELECT trial_id FROM runs")["trial_id"]) == {"t1", "t3"}
    assert list(damaged) == [f"s3://{s3_server.bucket}/{broken}"]
    assert "not a readable Parquet file" in damaged[f"s3://{s3_server.bucket}/{broken}"]

    result = compact(s3_storage, grace_seconds=0)
    assert result.files >= 2
    assert any("/.leaderboard-cache/snapshots/" in key for key in _keys(s3_server, prefix))
    write_fold_row(s3_storage, make_leaderboard_row(trial_id="t4", test_ua=0.9))  # after the snapshot
    with connect(s3_storage) as board:  # snapshot + the newer part, the damaged one still named
        assert sorted(board.sql("SELECT trial_id FROM runs")["trial_id"]) == ["t1", "t3", "t4"]
        assert list(dict(board.damaged)) == [f"s3://{s3_server.bucket}/{broken}"]
    assert main(["leaderboard", "--storage", s3_storage, "--by", "trial", "--format", "csv"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_wrong_credentials_are_one_clear_error_and_nothing_is_written(
    s3_server, s3_storage, tmp_path, monkeypatch, capsys
):
    write_fold_row(s3_storage, make_leaderboard_row(trial_id="t1"))
    prefix = s3_storage.removeprefix(f"s3://{s3_server.bucket}/")
    before = _keys(s3_server, prefix)
    config = write_experiment_config(tmp_path / "exp.yaml", name="wrong-keys")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    secret = "wrong-" + uuid.uuid4().hex
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with pytest.raises(StorageAccessError, match=rf"cannot read storage {s3_storage} "):
        check_access(resolve_storage(s3_storage), write=False)
    commands = [
        ["search", "--config", str(config), "--storage", s3_storage],
        ["leaderboard", "--storage", s3_storage],
        ["report", "--storage", s3_storage, "--out", str(work / "r.html")],
        ["export", "--storage", s3_storage, "--out", str(work / "m.pt"), "--device", "cpu"],
        ["cross-eval", "--storage", s3_storage, "--experiment", "exp", "--top", "1"],
    ]
    for command in commands:
        assert main(command) == 2, command
        captured = capsys.readouterr()
        assert f"storage {s3_storage}" in captured.err and "AWS_SECRET_ACCESS_KEY" in captured.err, captured.err
        assert "Traceback" not in captured.err and secret not in captured.out + captured.err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY")  # an unknown key id too
    assert main(["search", "--config", str(config), "--storage", s3_storage]) == 2
    assert f"cannot read storage {s3_storage} (" in capsys.readouterr().err
    assert list(work.iterdir()) == [] and not (tmp_path / "corpus").exists() and not (tmp_path / "runs").exists()
    assert _keys(s3_server, prefix) == before  # nothing written on the store either
