"""The one storage-location type: local paths, URIs, and folders written or read through it."""

from __future__ import annotations

import errno
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from orchestrator import storage as storage_module
from orchestrator.storage import (
    DATA_FILES,
    StorageLocation,
    StorageWriteError,
    folder_to_read,
    folder_to_write,
    is_uri,
    resolve_storage,
)


def _mock_location() -> StorageLocation:
    filesystem, _ = pafs.FileSystem.from_uri("mock:///")
    return StorageLocation(filesystem, "bucket/runs", "mock://bucket/runs")


def test_local_paths_become_absolute_and_uris_keep_their_slashes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    local = resolve_storage("runs")
    assert local.is_local and local.uri == str(tmp_path / "runs")
    assert local.experiment_data("demo").local_path() == tmp_path / "runs" / "demo" / "data"
    assert resolve_storage(f"file://{tmp_path}/x").uri == f"{tmp_path}/x"
    remote = _mock_location()
    data = remote.experiment_data("demo")
    assert data.shown(data.path("config.yaml")) == "mock://bucket/runs/demo/data/config.yaml"
    assert data.uri == "mock://bucket/runs/demo/data"
    assert is_uri("s3://bucket/runs") and not is_uri("runs/s3:") and not is_uri("C:/runs")


def test_empty_or_unknown_storage_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="empty string"):
        resolve_storage("  ")
    with pytest.raises(ValueError, match="URI that pyarrow.fs understands.*'nosuch://x'"):
        resolve_storage("nosuch://x")
    with pytest.raises(ValueError, match="object store, not a local path"):
        _mock_location().local_path("demo")


def test_folder_written_to_an_object_store_reads_back(tmp_path: Path) -> None:
    data = _mock_location().experiment_data("demo")
    with folder_to_write(data) as folder:
        assert not str(folder).startswith(str(Path.cwd()))  # staging, never ./runs of the driver
        (folder / "config.yaml").write_text("name: demo\n")
        (folder / "folds.parquet").write_bytes(b"PAR1")
    assert data.read_bytes("config.yaml") == b"name: demo\n"
    with folder_to_read(data, DATA_FILES) as copy:
        assert (copy / "config.yaml").read_text() == "name: demo\n"
        assert (copy / "folds.parquet").read_bytes() == b"PAR1"
        assert not (copy / "manifest.parquet").exists()  # absent there, absent here


def test_local_folder_is_the_storage_itself(tmp_path: Path) -> None:
    data = resolve_storage(tmp_path).experiment_data("demo")
    with folder_to_write(data) as folder:
        (folder / "config.yaml").write_text("x")
    with folder_to_read(data, DATA_FILES) as same:
        assert same == tmp_path / "demo" / "data" and (same / "config.yaml").read_text() == "x"


def test_a_failed_write_names_the_destination_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def disk_full(handle, data) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_module, "_write_all", disk_full)
    location = resolve_storage(tmp_path)
    with pytest.raises(StorageWriteError, match=r"could not write the thing to .*a/b\.bin: No space left"):
        location.write_bytes("a/b.bin", b"123", what="the thing")
    assert not any(path.is_file() for path in tmp_path.rglob("*"))
