"""Snapshots: compaction changes how many files a query opens, never which rows it sees."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from conftest import make_leaderboard_row
from orchestrator.leaderboard import (
    SNAPSHOT_DIR,
    StorageLocation,
    compact,
    connect,
    scan_parts,
    write_fold_row,
    write_trial_status,
)

ROWS_SQL = "SELECT trial_id, fold, attempt, test_ua FROM fold_rows ORDER BY ALL"


def _fill(storage, trials: int = 3, folds: int = 2) -> None:
    for t in range(trials):
        for fold in range(1, folds + 1):
            write_fold_row(
                storage,
                make_leaderboard_row(trial_id=f"t{t}", fold=fold, n_folds=folds, test_ua=0.4 + 0.05 * t + 0.01 * fold),
            )
        write_trial_status(storage, experiment="exp", trial_id=f"t{t}", status="completed", step=folds)


def _rows(storage, **options):
    with connect(storage, compact_at=None, **options) as board:
        return board.sql(ROWS_SQL), board.sql("SELECT trial_id, status FROM trials ORDER BY ALL"), board.scan


def test_compaction_serves_the_same_rows_from_one_file(tmp_path: Path) -> None:
    _fill(tmp_path)
    before, trials_before, scan = _rows(tmp_path)
    assert scan.unsnapshotted == 9 and scan.snapshots == ()
    done = compact(tmp_path)
    assert (done.files, done.rows, len(done.written)) == (9, 9, 2)  # 6 fold rows + 3 statuses, 2 snapshots
    after, trials_after, scan = _rows(tmp_path)
    assert after.equals(before) and trials_after.equals(trials_before)
    assert scan.unsnapshotted == 0 and scan.footers_read == 0
    assert len(scan.snapshots[0].covers) == 6 and len(scan.trial_snapshots[0].covers) == 3
    assert compact(tmp_path).written == ()  # nothing new: nothing rewritten


def test_rows_written_changed_or_deleted_after_a_compaction_are_seen_as_they_are(tmp_path: Path) -> None:
    _fill(tmp_path)
    compact(tmp_path)
    write_fold_row(tmp_path, make_leaderboard_row(trial_id="t9", fold=1, n_folds=2, test_ua=0.9))  # new
    write_trial_status(tmp_path, experiment="exp", trial_id="t1", status="pruned", step=1, reason="slow")  # replaced
    (tmp_path / "leaderboard/exp/t0/fold=2-attempt=0.parquet").unlink()  # removed by hand
    rows, trials, scan = _rows(tmp_path)
    assert ("t9", 1) in set(zip(rows["trial_id"], rows["fold"]))
    assert ("t0", 2) not in set(zip(rows["trial_id"], rows["fold"]))
    assert len(rows) == 6 and not rows.duplicated(["trial_id", "fold", "attempt"]).any()
    assert dict(zip(trials["trial_id"], trials["status"]))["t1"] == "pruned" and len(trials) == 3
    assert scan.snapshots[0].stale == ("leaderboard/exp/t0/fold=2-attempt=0.parquet",)
    assert scan.trial_snapshots[0].stale == ("trials/exp/t1.parquet",)
    compact(tmp_path, grace_seconds=0)  # folds the changes in, drops the old snapshots
    again, trials_again, scan = _rows(tmp_path)
    assert again.equals(rows) and trials_again.equals(trials)
    assert scan.unsnapshotted == 0 and scan.snapshots[0].stale == ()
    assert len(list((tmp_path / SNAPSHOT_DIR).rglob("*.parquet"))) == 2


def test_a_damaged_snapshot_costs_speed_not_rows(tmp_path: Path) -> None:
    _fill(tmp_path)
    before, _, _ = _rows(tmp_path)
    compact(tmp_path)
    for snapshot in (tmp_path / SNAPSHOT_DIR).rglob("*.parquet"):
        snapshot.write_bytes(b"not parquet")
    with pytest.warns(RuntimeWarning, match="ignoring the leaderboard snapshot"):
        after, _, scan = _rows(tmp_path)
    assert after.equals(before) and scan.snapshots == ()


def test_connect_compacts_large_leaderboards_by_itself(tmp_path: Path) -> None:
    _fill(tmp_path, trials=2)
    with connect(tmp_path, compact_at=100) as board:
        assert board.scan.snapshots == ()
    with connect(tmp_path, compact_at=3) as board:
        assert board.scan.unsnapshotted == 0
        assert len(board.sql("SELECT * FROM runs")) == 4
        assert board.top_genotypes().loc[0, "folds_covered"] == 2


def test_read_only_storage_warns_and_still_answers(tmp_path: Path, monkeypatch) -> None:
    _fill(tmp_path)
    import orchestrator.leaderboard as leaderboard

    def refuse(*args, **kwargs):
        raise leaderboard.LeaderboardWriteError(30, "read-only file system")

    monkeypatch.setattr(leaderboard.snapshots, "write_parquet", refuse)
    with pytest.warns(RuntimeWarning, match="could not compact"):
        with connect(tmp_path, compact_at=1) as board:
            assert len(board.sql(ROWS_SQL)) == 6


def test_object_store_compaction(tmp_path: Path) -> None:
    filesystem, _ = pafs.FileSystem.from_uri("mock:///")
    storage = StorageLocation(filesystem, "bucket/lb", "mock://bucket/lb")
    _fill(storage)
    before, trials_before, _ = _rows(storage)
    compact(storage)
    write_fold_row(storage, make_leaderboard_row(trial_id="t7", fold=1, n_folds=2, test_ua=0.8))
    after, trials_after, scan = _rows(storage)
    assert scan.snapshots[0].path.startswith("mock://bucket/lb/") and len(scan.snapshots[0].covers) == 6
    assert len(after) == 7 and after.drop(after.index[after["trial_id"] == "t7"]).reset_index(drop=True).equals(before)
    assert trials_after.equals(trials_before)


def test_experiment_filter_uses_only_that_experiments_snapshot(tmp_path: Path) -> None:
    _fill(tmp_path)
    write_fold_row(tmp_path, make_leaderboard_row(experiment="other", trial_id="x1", fold=1, n_folds=1))
    compact(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows, _, scan = _rows(tmp_path, experiment="other")
    assert rows["trial_id"].tolist() == ["x1"] and [s.experiment for s in scan.snapshots] == ["other"]
    assert len(scan_parts(tmp_path).snapshots) == 2


def test_cli_compact_flag_writes_snapshots_and_prints_the_same_ranking(tmp_path: Path, capsys) -> None:
    from orchestrator.cli import main

    _fill(tmp_path)
    arguments = ["leaderboard", "--storage", str(tmp_path), "--format", "csv"]
    assert main(arguments) == 0
    loose = capsys.readouterr().out
    assert not (tmp_path / SNAPSHOT_DIR).exists()
    assert main([*arguments, "--compact"]) == 0
    compacted = capsys.readouterr().out
    # the same ranking; floats may differ in the last bits (DuckDB sums in parallel, in any order)
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(compacted)), pd.read_csv(io.StringIO(loose)))
    assert len(list((tmp_path / SNAPSHOT_DIR).rglob("*.parquet"))) == 2
