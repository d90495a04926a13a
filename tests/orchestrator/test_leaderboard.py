"""The Parquet leaderboard on real files and a real DuckDB: writing, scanning, the views."""

from __future__ import annotations

import errno
import json
import math
import os
import statistics
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from conftest import make_leaderboard_row
from orchestrator import storage as storage_module
from orchestrator.leaderboard import (
    SCHEMA,
    SCHEMA_VERSION,
    TRIAL_SCHEMA,
    LeaderboardWriteError,
    StorageLocation,
    connect,
    list_experiments,
    scan_parts,
    top_genotypes,
    write_fold_row,
    write_trial_status,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "leaderboard.md"
GENOTYPE = {
    "normal": [["sep_conv_3x3", 0], ["skip_connect", 1]],
    "normal_concat": [2],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]],
    "reduce_concat": [2],
}


def make_row(**overrides) -> dict:
    """A valid completed fold row with a genotype; ``overrides`` replace columns. Unless given,
    the validation UA equals the test UA, so that rankings read the same either way (the
    tests that tell the two apart set both)."""
    if "test_ua" in overrides and "valid_ua" not in overrides:
        overrides["valid_ua"] = overrides["test_ua"]
    return make_leaderboard_row(**{"genotype": GENOTYPE, "genotype_hash": "aaaaaaaaaaaa", **overrides})


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------- writing
def test_round_trip_of_a_row(tmp_path: Path) -> None:
    path = write_fold_row(tmp_path, make_row(fold=2, attempt=1))
    assert path == str(tmp_path / "leaderboard" / "exp" / "t1" / "fold=2-attempt=1.parquet")
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA, check_metadata=False) and table.num_rows == 1
    stored = table.to_pylist()[0]
    assert stored["schema_version"] == SCHEMA_VERSION == 4
    assert abs((datetime.now(UTC) - stored["written_at"]).total_seconds()) < 60
    assert json.loads(stored["genotype"]) == GENOTYPE
    assert stored["params_json"] == '{"layers":4,"seed":0}'  # canonical JSON
    assert json.loads(stored["confusion"])[2] == [1, 0, 6, 0] and stored["error"] is None
    with connect(tmp_path) as board:
        rows = board.sql("SELECT * FROM fold_rows")
        assert list(rows.columns) == SCHEMA.names and len(rows) == 1
        assert rows.loc[0, "test_ua"] == 0.5 and rows.loc[0, "fold"] == 2 and rows.loc[0, "darts_order"] == "first"
        assert str(rows["written_at"].dt.tz) == "UTC"


def test_json_columns_accept_text_and_store_it_canonically(tmp_path: Path) -> None:
    path = write_fold_row(
        tmp_path,
        make_row(params_json='{"seed": 0, "layers": 4}', genotype=json.dumps(GENOTYPE, indent=2), classes='["a", "b"]'),
    )
    stored = pq.read_table(path).to_pylist()[0]
    assert stored["params_json"] == '{"layers":4,"seed":0}' and stored["classes"] == '["a","b"]'
    assert "\n" not in stored["genotype"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_ua": "0.7"}, "column 'test_ua' must be a number"),
        ({"fold": 1.0}, "column 'fold' must be an integer"),
        ({"fold": True}, "column 'fold' must be an integer"),
        ({"layers": 2**40}, "column 'layers' must fit in int32"),
        ({"seed": None}, "column 'seed' must not be null"),
        ({"hostname": 3}, "column 'hostname' must be a string"),
        ({"test_ua": float("nan")}, "column 'test_ua' must be a finite number"),
        ({"test_ua": 1.5}, r"column 'test_ua' must be a fraction in \[0, 1\]"),
        ({"written_at": datetime(2024, 1, 1)}, "column 'written_at' must be a timezone-aware datetime"),
        ({"classes": "not json"}, "column 'classes' must be JSON"),
        ({"classes": {"a": 1}}, "column 'classes' must be a JSON list"),
        ({"status": "pruned"}, "column 'status' must be one of"),
        ({"status": "failed"}, "column 'error' must say what went wrong"),
        ({"test_ua": None}, "column 'test_ua' must not be null in a completed row"),
        ({"fold": 0}, "column 'fold' must be >= 1"),
        ({"schema_version": 1}, "column 'schema_version' must be 4"),
        ({"stage": "final"}, "column 'stage' must be one of"),
        ({"source_fold": 2}, "column 'source_fold' must be null in a search row"),
        ({"stage": "cross-eval", "test_seen_in_search": 1}, "column 'test_seen_in_search' must be a bool"),
        ({"experiment": "../etc"}, "column 'experiment' must be a non-empty name"),
        ({"trial_id": "a/b"}, "column 'trial_id' must be a non-empty name"),
        ({"notes": "hi"}, r"unknown column\(s\) \['notes'\]"),
    ],
)
def test_schema_errors_name_the_column(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_fold_row(tmp_path, make_row(**change))
    assert files_under(tmp_path) == []


def test_missing_column_is_named(tmp_path: Path) -> None:
    row = make_row()
    del row["genotype_hash"]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['genotype_hash'\]"):
        write_fold_row(tmp_path, row)


def test_failed_row_keeps_its_error_and_may_lack_metrics(tmp_path: Path) -> None:
    write_fold_row(
        tmp_path,
        make_row(
            status="failed",
            error="CUDA out of memory",
            test_ua=None,
            test_wa=None,
            test_macro_f1=None,
            genotype=None,
            genotype_hash=None,
            confusion=None,
        ),
    )
    with connect(tmp_path) as board:
        runs = board.sql("SELECT status, error FROM runs")
        assert runs.to_dict("records") == [{"status": "failed", "error": "CUDA out of memory"}]
        assert board.sql("SELECT count(*) AS n FROM genotypes")["n"][0] == 0


def test_failing_writer_leaves_nothing_and_names_the_destination(tmp_path: Path, monkeypatch) -> None:
    first = write_fold_row(tmp_path, make_row(fold=1))

    def disk_full(handle, data) -> None:
        handle.write(memoryview(data)[: len(data) // 2])  # half of the file reaches the disk, then ENOSPC
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage_module, "_write_all", disk_full)
    destination = tmp_path / "leaderboard" / "exp" / "t1" / "fold=2-attempt=0.parquet"
    with pytest.raises(LeaderboardWriteError) as caught:
        write_fold_row(tmp_path, make_row(fold=2))
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert str(destination) in str(caught.value) and "No space left on device" in str(caught.value)
    assert files_under(tmp_path / "leaderboard") == ["exp/t1/fold=1-attempt=0.parquet"]  # no temp file, no part
    monkeypatch.undo()
    with connect(tmp_path) as board:
        assert board.sql("SELECT fold FROM fold_rows")["fold"].tolist() == [1]
        assert board.damaged == ()
    assert pq.read_table(first).num_rows == 1


def test_rewriting_the_same_attempt_replaces_it(tmp_path: Path) -> None:
    write_fold_row(tmp_path, make_row(test_ua=0.4))
    write_fold_row(tmp_path, make_row(test_ua=0.6))
    with connect(tmp_path) as board:
        assert board.sql("SELECT test_ua FROM fold_rows")["test_ua"].tolist() == [0.6]


def test_trial_status_is_one_file_overwritten(tmp_path: Path) -> None:
    write_trial_status(
        tmp_path, experiment="exp", trial_id="t1", status="running", step=0, params_json={"seed": 0, "layers": 4}
    )
    path = write_trial_status(
        tmp_path, experiment="exp", trial_id="t1", status="pruned", step=2, reason="Wilcoxon p=0.03 after fold 2"
    )
    assert path == str(tmp_path / "trials" / "exp" / "t1.parquet")
    assert files_under(tmp_path / "trials") == ["exp/t1.parquet"]
    with connect(tmp_path) as board:
        trials = board.sql("SELECT * FROM trials")
    assert list(trials.columns) == TRIAL_SCHEMA.names
    assert trials[["status", "step", "reason"]].to_dict("records") == [
        {"status": "pruned", "step": 2, "reason": "Wilcoxon p=0.03 after fold 2"}
    ]
    with pytest.raises(ValueError, match="status must be one of"):
        write_trial_status(tmp_path, experiment="exp", trial_id="t1", status="stopped", step=1)
    with pytest.raises(ValueError, match="step must be >= 0"):
        write_trial_status(tmp_path, experiment="exp", trial_id="t1", status="running", step=-1)


# ----------------------------------------------------------------------------------- the views
def write_known_set(storage: Path) -> dict[str, list[float]]:
    """Genotype A on folds 1-3 (trials a1, a2), B on folds 1-3 (trial b1); each fold once."""
    uas = {"aaaaaaaaaaaa": [0.60, 0.70, 0.80], "bbbbbbbbbbbb": [0.50, 0.65, 0.71]}
    for fold, ua in enumerate(uas["aaaaaaaaaaaa"], start=1):
        trial, seed = ("a1", 1) if fold < 3 else ("a2", 2)
        write_fold_row(
            storage,
            make_row(
                trial_id=trial,
                seed=seed,
                fold=fold,
                test_ua=ua,
                test_wa=ua + 0.1,
                test_macro_f1=ua - 0.1,
                params=1000 * fold,
                search_seconds=10.0 * fold,
                eval_seconds=1.0,
            ),
        )
    for fold, ua in enumerate(uas["bbbbbbbbbbbb"], start=1):
        write_fold_row(
            storage,
            make_row(
                trial_id="b1",
                seed=1,
                fold=fold,
                test_ua=ua,
                test_wa=ua,
                test_macro_f1=ua,
                genotype_hash="bbbbbbbbbbbb",
                params=500,
                search_seconds=2.0,
                eval_seconds=3.0,
            ),
        )
    return uas


def test_genotype_aggregation_matches_hand_computed_values(tmp_path: Path) -> None:
    write_known_set(tmp_path)
    with connect(tmp_path) as board:
        table = board.sql("SELECT * FROM genotypes ORDER BY rank")
    a, b = table.iloc[0], table.iloc[1]
    assert (a["genotype_hash"], a["rank"], b["genotype_hash"], b["rank"]) == ("aaaaaaaaaaaa", 1, "bbbbbbbbbbbb", 2)
    # A: UAs 0.60, 0.70, 0.80 -> mean 0.70, sample std sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    assert a["mean_test_ua"] == pytest.approx(0.70) and a["std_test_ua"] == pytest.approx(0.1)
    assert a["mean_test_wa"] == pytest.approx(0.80) and a["mean_test_macro_f1"] == pytest.approx(0.60)
    # B: UAs 0.50, 0.65, 0.71 -> mean 0.62; deviations -0.12, 0.03, 0.09 -> sqrt(0.0234 / 2)
    assert b["mean_test_ua"] == pytest.approx(0.62) and b["std_test_ua"] == pytest.approx(math.sqrt(0.0234 / 2))
    assert b["std_test_ua"] == pytest.approx(statistics.stdev([0.50, 0.65, 0.71]))
    assert (a["folds_covered"], a["n_folds"], bool(a["complete"])) == (3, 3, True)
    assert (a["trials"], a["seeds"], a["runs"], a["pruned_runs"]) == (2, 2, 3, 0)
    assert (b["trials"], b["seeds"], b["runs"]) == (1, 1, 3)
    assert a["mean_params"] == pytest.approx(2000) and b["mean_params"] == pytest.approx(500)
    assert a["total_seconds"] == pytest.approx(10 + 20 + 30 + 3) and b["total_seconds"] == pytest.approx(15)


def test_each_fold_weighs_the_same_in_the_mean(tmp_path: Path) -> None:
    # fold 1 found by two trials (0.6, 0.8), fold 2 by one (0.5): fold means 0.7 and 0.5
    write_fold_row(tmp_path, make_row(trial_id="x1", fold=1, test_ua=0.6, n_folds=2))
    write_fold_row(tmp_path, make_row(trial_id="x2", fold=1, test_ua=0.8, n_folds=2))
    write_fold_row(tmp_path, make_row(trial_id="x2", fold=2, test_ua=0.5, n_folds=2))
    row = top_genotypes(tmp_path).iloc[0]
    assert row["mean_test_ua"] == pytest.approx(0.6) and row["std_test_ua"] == pytest.approx(math.sqrt(0.02))
    assert (row["runs"], row["trials"], row["folds_covered"], bool(row["complete"])) == (3, 2, 2, True)


def test_materialized_and_database_file_give_the_same_answers(tmp_path: Path) -> None:
    import duckdb

    write_known_set(tmp_path / "store")
    expected = top_genotypes(tmp_path / "store")
    with connect(tmp_path / "store", materialize=True) as board:
        pd.testing.assert_frame_equal(board.top_genotypes(), expected)
    with connect(tmp_path / "store", database=tmp_path / "lb.duckdb"):
        pass
    with duckdb.connect(str(tmp_path / "lb.duckdb"), read_only=True) as con:  # what `duckdb lb.duckdb` sees
        assert con.execute("SELECT genotype_hash FROM genotypes ORDER BY rank").fetchall() == [
            ("aaaaaaaaaaaa",),
            ("bbbbbbbbbbbb",),
        ]


def test_one_fold_has_no_std(tmp_path: Path) -> None:
    write_fold_row(tmp_path, make_row())
    assert pd.isna(top_genotypes(tmp_path).loc[0, "std_test_ua"])


def test_later_attempt_replaces_earlier_in_runs(tmp_path: Path) -> None:
    write_fold_row(tmp_path, make_row(fold=1, attempt=0, test_ua=0.40))
    write_fold_row(tmp_path, make_row(fold=1, attempt=1, test_ua=0.70))
    write_fold_row(tmp_path, make_row(fold=2, attempt=0, test_ua=0.50))
    with connect(tmp_path) as board:
        assert len(board.sql("SELECT * FROM fold_rows")) == 3
        runs = board.sql("SELECT fold, attempt, test_ua FROM runs ORDER BY fold")
        assert runs.to_dict("records") == [
            {"fold": 1, "attempt": 1, "test_ua": 0.70},
            {"fold": 2, "attempt": 0, "test_ua": 0.50},
        ]
        assert board.top_genotypes().loc[0, "mean_test_ua"] == pytest.approx(0.60)


def test_pruned_trial_marks_its_rows_pruned_and_they_still_count(tmp_path: Path) -> None:
    write_known_set(tmp_path)
    write_trial_status(tmp_path, experiment="exp", trial_id="b1", status="pruned", step=3, reason="wilcoxon")
    write_trial_status(tmp_path, experiment="exp", trial_id="a1", status="completed", step=2)
    with connect(tmp_path) as board:
        runs = board.con.execute(
            "SELECT DISTINCT trial_id, status, trial_status, trial_reason FROM runs ORDER BY trial_id"
        ).fetchall()
        assert runs == [
            ("a1", "completed", "completed", None),
            ("a2", "completed", None, None),
            ("b1", "pruned", "pruned", "wilcoxon"),
        ]
        assert board.sql("SELECT DISTINCT status FROM fold_rows")["status"].tolist() == ["completed"]  # immutable
        b = board.sql("SELECT * FROM genotypes WHERE genotype_hash = 'bbbbbbbbbbbb'").iloc[0]
    assert (b["runs"], b["pruned_runs"], b["folds_covered"]) == (3, 3, 3)
    assert b["mean_test_ua"] == pytest.approx(0.62)


def test_incomplete_genotype_is_flagged_and_ranked_after_complete_ones(tmp_path: Path) -> None:
    write_known_set(tmp_path)
    write_fold_row(tmp_path, make_row(trial_id="c1", fold=1, test_ua=0.95, genotype_hash="cccccccccccc"))
    write_fold_row(tmp_path, make_row(trial_id="c1", fold=2, test_ua=0.93, genotype_hash="cccccccccccc"))
    table = top_genotypes(tmp_path)
    assert table["genotype_hash"].tolist() == ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]
    assert table["complete"].tolist() == [True, True, False] and table["rank"].tolist() == [1, 2, 3]
    assert table["folds_covered"].tolist() == [3, 3, 2]
    assert top_genotypes(tmp_path, n=1)["genotype_hash"].tolist() == ["aaaaaaaaaaaa"]


def test_experiments_are_ranked_separately_and_can_be_selected(tmp_path: Path) -> None:
    write_known_set(tmp_path)
    write_fold_row(
        tmp_path, make_row(experiment="other", trial_id="z", n_folds=1, test_ua=0.3, genotype_hash="zzzzzzzzzzzz")
    )
    assert list_experiments(tmp_path) == ["exp", "other"]
    both = top_genotypes(tmp_path)
    assert both[["experiment", "rank"]].values.tolist() == [["exp", 1], ["exp", 2], ["other", 1]]
    only = top_genotypes(tmp_path, experiment="other")
    assert only["genotype_hash"].tolist() == ["zzzzzzzzzzzz"]


def test_summaries_by_trial_and_config_and_a_where_filter(tmp_path: Path) -> None:
    write_known_set(tmp_path)
    write_fold_row(
        tmp_path, make_row(trial_id="d1", seed=5, fold=1, test_ua=0.9, layers=8, params_json={"layers": 8, "seed": 5})
    )
    with connect(tmp_path) as board:
        trials = board.summary("trial")
        assert trials["trial_id"].tolist() == ["b1", "d1", "a2", "a1"]  # complete b1 first, then by mean UA
        assert trials["complete"].tolist() == [True, False, False, False]
        configs = board.summary("config")
        assert configs[["config_json", "layers", "seeds", "trials"]].values.tolist() == [
            ['{"layers":4}', 4, 2, 3],
            ['{"layers":8}', 8, 1, 1],
        ]
        assert board.summary("genotype", where="layers = 8")["mean_test_ua"].tolist() == pytest.approx([0.9])
        assert board.sql("SELECT count(*) AS n FROM config_scores")["n"][0] == 2
        with pytest.raises(ValueError, match="by must be one of"):
            board.summary("seed")


def test_empty_storage_has_typed_empty_views(tmp_path: Path) -> None:
    with connect(tmp_path) as board:
        assert list(board.sql("SELECT * FROM fold_rows").columns) == SCHEMA.names
        assert board.sql("SELECT * FROM genotypes").empty and board.sql("SELECT * FROM runs").empty
        assert "mean_test_ua" in board.sql("SELECT * FROM genotypes").columns
    with pytest.raises(FileNotFoundError, match="does not exist"):
        connect(tmp_path / "nowhere")


# ------------------------------------------------------------------------------ damaged files
def test_damaged_files_are_reported_by_name_and_skipped(tmp_path: Path) -> None:
    write_known_set(tmp_path)
    folder = tmp_path / "leaderboard" / "exp"
    garbage = folder / "t9" / "fold=1-attempt=0.parquet"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"this is not parquet at all" * 10)
    truncated = Path(write_fold_row(tmp_path, make_row(trial_id="t8", genotype_hash="dddddddddddd")))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    wrong = folder / "t7" / "fold=1-attempt=0.parquet"
    wrong.parent.mkdir(parents=True)
    pq.write_table(pa.table({"experiment": ["exp"], "test_ua": ["high"]}), wrong)
    stray = folder / "a1" / ".tmp-fold=9-attempt=0.parquet.x1y2"  # a writer killed mid-write
    stray.write_bytes(b"PAR1 half a file")
    with connect(tmp_path) as board:
        damaged = dict(board.damaged)
        assert set(damaged) == {str(garbage), str(truncated), str(wrong)}
        assert "not a readable Parquet file" in damaged[str(garbage)]
        assert "not a readable Parquet file" in damaged[str(truncated)]
        assert "missing column(s)" in damaged[str(wrong)]
        assert board.scan.temporary == (str(stray),)
        assert board.top_genotypes()["genotype_hash"].tolist() == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
        assert len(board.sql("SELECT * FROM fold_rows")) == 6
        report = board.scan.damage_report()
    assert len(report) == 3 and all(line.startswith("skipped damaged file ") for line in report)
    assert any(str(garbage) in line for line in report)
    assert {path for path, _ in top_genotypes(tmp_path).attrs["damaged"]} == set(damaged)


def test_wrong_column_type_is_damage(tmp_path: Path) -> None:
    write_fold_row(tmp_path, make_row())
    bad = SCHEMA.set(SCHEMA.get_field_index("test_ua"), pa.field("test_ua", pa.string()))
    path = tmp_path / "leaderboard" / "exp" / "t2" / "fold=1-attempt=0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(
            [{**pq.read_table(next((tmp_path / "leaderboard").rglob("*.parquet"))).to_pylist()[0], "test_ua": "0.9"}],
            schema=bad,
        ),
        path,
    )
    scan = scan_parts(tmp_path)
    assert [(d.path, d.reason) for d in scan.damaged] == [(str(path), "column 'test_ua' is string, expected double")]


def test_a_newer_schema_with_extra_columns_is_read_by_name(tmp_path: Path) -> None:
    write_fold_row(tmp_path, make_row())
    newer = SCHEMA.append(pa.field("energy_joules", pa.float64()))
    row = {
        **pq.read_table(next((tmp_path / "leaderboard").rglob("*.parquet"))).to_pylist()[0],
        "trial_id": "t2",
        "test_ua": 0.7,
        "energy_joules": 12.5,
    }
    path = tmp_path / "leaderboard" / "exp" / "t2" / "fold=1-attempt=0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=newer), path)
    with connect(tmp_path) as board:
        assert not board.scan.parts_uniform
        rows = board.sql("SELECT trial_id, test_ua, energy_joules FROM fold_rows ORDER BY trial_id")
    assert rows["test_ua"].tolist() == [0.5, 0.7] and pd.isna(rows["energy_joules"][0])


def test_footer_checks_are_cached_until_a_file_changes(tmp_path: Path) -> None:
    write_known_set(tmp_path)
    write_trial_status(tmp_path, experiment="exp", trial_id="a1", status="running", step=1)
    first = scan_parts(tmp_path)
    assert (first.footers_read, first.footers_cached) == (7, 0)
    assert (tmp_path / ".leaderboard-cache" / "footers.parquet").is_file()
    second = scan_parts(tmp_path)
    assert (second.footers_read, second.footers_cached) == (0, 7) and second.parts == first.parts
    victim = Path(first.parts[0])
    victim.write_bytes(b"garbage")  # same path, new size and mtime: checked again
    third = scan_parts(tmp_path)
    assert third.footers_read == 1 and [d.path for d in third.damaged] == [str(victim)]
    assert scan_parts(tmp_path).damaged == third.damaged  # the damage verdict is cached too
    victim.unlink()
    assert len(scan_parts(tmp_path).parts) == 5
    (tmp_path / ".leaderboard-cache" / "footers.parquet").write_bytes(b"broken cache")
    rebuilt = scan_parts(tmp_path)  # a damaged cache only costs a rebuild
    assert (rebuilt.footers_read, len(rebuilt.parts)) == (6, 5)


# ------------------------------------------------------------------------------------ storage
def test_file_uri_storage_works(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    assert uri.startswith("file://")
    path = write_fold_row(uri, make_row())
    assert path == str(tmp_path / "leaderboard" / "exp" / "t1" / "fold=1-attempt=0.parquet")
    write_trial_status(uri, experiment="exp", trial_id="t1", status="pruned", step=1)
    table = top_genotypes(uri)
    assert table["genotype_hash"].tolist() == ["aaaaaaaaaaaa"] and table.loc[0, "pruned_runs"] == 1


def test_object_store_storage_is_written_in_one_put_and_read_back() -> None:
    filesystem, _ = pafs.FileSystem.from_uri("mock:///")  # an in-memory object store
    storage = StorageLocation(filesystem, "bucket/lb", "mock://bucket/lb")
    path = write_fold_row(storage, make_row())
    assert path == "mock://bucket/lb/leaderboard/exp/t1/fold=1-attempt=0.parquet"
    write_fold_row(storage, make_row(fold=2, test_ua=0.7))
    write_trial_status(storage, experiment="exp", trial_id="t1", status="completed", step=2)
    with connect(storage) as board:
        assert board.scan.parts == (
            "mock://bucket/lb/leaderboard/exp/t1/fold=1-attempt=0.parquet",
            "mock://bucket/lb/leaderboard/exp/t1/fold=2-attempt=0.parquet",
        )
        assert board.top_genotypes().loc[0, "mean_test_ua"] == pytest.approx(0.6)
        assert board.sql("SELECT status FROM trials")["status"].tolist() == ["completed"]
    assert scan_parts(storage).footers_cached == 3


def test_bad_storage_uri_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="storage must be a local path or a URI"):
        write_fold_row("nosuchscheme://x/y", make_row())


def test_the_schema_is_documented() -> None:
    text = DOCS.read_text()
    assert f"schema_version = {SCHEMA_VERSION}" in text
    for name in SCHEMA.names + TRIAL_SCHEMA.names:
        assert f"| `{name}` |" in text, name
    for view in ("fold_rows", "trials", "runs", "genotypes", "trial_scores", "config_scores"):
        assert f"`{view}`" in text, view
