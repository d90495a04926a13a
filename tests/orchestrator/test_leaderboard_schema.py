"""The typed fold row and the schema it defines: constructors, validation, the documented table."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_leaderboard_row
from orchestrator.leaderboard import (
    COLUMN_DOCS,
    RENAMED_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SNAPSHOT_DIR,
    TRIAL_SCHEMA,
    FoldRow,
    compact,
    connect,
    part_path,
    write_fold_row,
)
from orchestrator.leaderboard.schema import (
    ADDED_COLUMNS,
    FOLD_COLUMNS,
    METADATA_KEY,
    RESULT_COLUMNS,
    TRIAL_COLUMNS,
    Column,
)
from orchestrator.leaderboard.validation import validate_fold_row
from orchestrator.selection import nested_estimates

DOCS = Path(__file__).resolve().parents[2] / "docs" / "leaderboard.md"
_ROW = re.compile(r"^\| `(?P<name>[a-z_0-9]+)` \| (?P<type>[^|]+) \| (?P<required>yes|no) \| (?P<doc>.+) \|$")


def _facts() -> dict:
    """The columns every row has, finished or failed."""
    row = make_leaderboard_row()
    return {name: value for name, value in row.items() if name not in (*RESULT_COLUMNS, "status", "error")}


def _documented(section: str) -> list[tuple[str, str, bool, str]]:
    """(name, type, required, meaning) of each row of the column table under ``section``."""
    text = DOCS.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = [_ROW.match(line) for line in text.splitlines() if line.startswith("| `")]
    assert all(rows), [line for line, row in zip(text.splitlines(), rows) if not row]
    return [(m["name"], m["type"].strip(), m["required"] == "yes", m["doc"].strip()) for m in rows]


def _as_documented(column: Column) -> tuple[str, str, bool, str]:
    arrow = str(column.type).replace("tz=", "")  # the docs write timestamp[us, UTC]
    return column.name, "float64" if arrow == "double" else arrow, column.required, column.doc


@pytest.mark.parametrize(
    ("section", "columns"), [("Fold row schema", FOLD_COLUMNS), ("Trial status schema", TRIAL_COLUMNS)]
)
def test_the_docs_table_is_the_schema(section: str, columns: tuple[Column, ...]) -> None:
    assert _documented(section) == [_as_documented(column) for column in columns]


def test_fold_row_fields_are_the_columns_in_file_order() -> None:
    assert [f.name for f in dataclasses.fields(FoldRow)] == SCHEMA.names
    assert [c.name for c in TRIAL_COLUMNS] == TRIAL_SCHEMA.names
    assert COLUMN_DOCS["fold_rows"]["test_ua"].startswith("test unweighted accuracy")
    assert set(COLUMN_DOCS) == {"fold_rows", "trials"}


def test_a_failed_row_has_no_results(tmp_path: Path) -> None:
    row = FoldRow.failed(error="CUDA out of memory", **_facts())
    assert row.status == "failed" and all(getattr(row, name) is None for name in RESULT_COLUMNS)
    stored = pq.read_table(write_fold_row(tmp_path, row)).to_pylist()[0]
    assert stored["error"] == "CUDA out of memory" and stored["test_ua"] is None and stored["written_at"] is not None


def test_a_failed_row_refuses_results() -> None:
    with pytest.raises(TypeError, match="test_ua"):
        FoldRow.failed(error="boom", test_ua=0.5, **_facts())


def test_a_finished_row_is_written_like_its_mapping(tmp_path: Path) -> None:
    results = {name: make_leaderboard_row()[name] for name in RESULT_COLUMNS}
    row = FoldRow.finished(**_facts(), **results)
    assert row.status == "completed" and row.error is None and row.written_at is None
    typed = pq.read_table(write_fold_row(tmp_path / "typed", row)).to_pylist()[0]
    plain = pq.read_table(write_fold_row(tmp_path / "plain", make_leaderboard_row())).to_pylist()[0]
    assert {**typed, "written_at": None} == {**plain, "written_at": None}
    assert json.loads(typed["classes"]) == ["ang", "hap", "neu", "sad"]


def test_a_finished_row_names_a_missing_column() -> None:
    facts = _facts()
    del facts["hostname"]
    with pytest.raises(TypeError, match="hostname"):
        FoldRow.finished(**facts, **{name: None for name in RESULT_COLUMNS})


def test_a_typed_row_is_still_validated(tmp_path: Path) -> None:
    row = FoldRow.failed(error="boom", **{**_facts(), "fold": 0})
    with pytest.raises(ValueError, match="column 'fold' must be >= 1"):
        write_fold_row(tmp_path, row)
    with pytest.raises(ValueError, match="must be a FoldRow or a mapping"):
        write_fold_row(tmp_path, [("fold", 1)])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- older schema versions
def _write_schema_3_row(storage: Path, **overrides) -> Path:
    """A fold row as schema 3 wrote it: the test figures under ``ua``, ``wa``, ``macro_f1``, no absent classes."""
    row = validate_fold_row(make_leaderboard_row(**overrides))
    former = {new: old for old, new in RENAMED_COLUMNS.items()}
    kept = [f for f in SCHEMA if ADDED_COLUMNS.get(f.name, 1) <= 3]
    schema = pa.schema([f.with_name(former.get(f.name, f.name)) for f in kept], metadata={METADATA_KEY: b"3"})
    values = {former.get(f.name, f.name): row[f.name] for f in kept} | {"schema_version": 3}
    path = storage / part_path(
        experiment=row["experiment"], trial_id=row["trial_id"], fold=row["fold"], attempt=row["attempt"]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([values], schema=schema), path)
    return path


def test_the_renamed_columns_are_the_test_figures() -> None:
    assert RENAMED_COLUMNS == {"ua": "test_ua", "wa": "test_wa", "macro_f1": "test_macro_f1"}
    assert SCHEMA_VERSION == 4 and ADDED_COLUMNS["test_absent_classes"] == ADDED_COLUMNS["valid_absent_classes"] == 4


def test_schema_3_files_are_read_under_the_new_names_in_every_view(tmp_path: Path) -> None:
    common = {"n_folds": 2, "genotype_hash": "aaaaaaaaaaaa", "params_json": {"layers": 4, "seed": 0}}
    old = _write_schema_3_row(
        tmp_path, trial_id="old", fold=1, test_ua=0.61, test_wa=0.71, test_macro_f1=0.51, valid_ua=0.6, **common
    )
    names = pq.read_schema(old).names
    assert {"ua", "wa", "macro_f1"} <= set(names) and not {"test_ua", "test_wa", "test_macro_f1"} & set(names)
    legacy = {"ua", "wa", "macro_f1", "mean_ua", "std_ua", "mean_wa", "mean_macro_f1"}

    with connect(tmp_path) as board:  # only schema-3 files
        assert board.damaged == ()
        rows = board.sql("SELECT test_ua, test_wa, test_macro_f1, test_absent_classes FROM fold_rows")
        assert rows.to_dict("records") == [
            {"test_ua": 0.61, "test_wa": 0.71, "test_macro_f1": 0.51, "test_absent_classes": None}
        ]
        assert not legacy & set(board.sql("SELECT * FROM runs").columns)

    write_fold_row(
        tmp_path,
        make_leaderboard_row(
            trial_id="new", fold=2, test_ua=0.81, test_wa=0.91, test_macro_f1=0.71, valid_ua=0.8, **common
        ),
    )
    _write_schema_3_row(
        tmp_path, trial_id="ce", fold=1, stage="cross-eval", test_ua=0.41, test_wa=0.42, test_macro_f1=0.43, **common
    )

    def check(board) -> None:
        assert board.damaged == ()
        runs = board.sql("SELECT trial_id, schema_version, test_ua, test_wa, test_macro_f1 FROM runs ORDER BY trial_id")
        assert runs.to_dict("records") == [
            {"trial_id": "ce", "schema_version": 3, "test_ua": 0.41, "test_wa": 0.42, "test_macro_f1": 0.43},
            {"trial_id": "new", "schema_version": 4, "test_ua": 0.81, "test_wa": 0.91, "test_macro_f1": 0.71},
            {"trial_id": "old", "schema_version": 3, "test_ua": 0.61, "test_wa": 0.71, "test_macro_f1": 0.51},
        ]
        for view in ("fold_rows", "runs", "genotypes", "trial_scores", "config_scores", "cross_eval"):
            assert not legacy & set(board.sql(f"SELECT * FROM {view}").columns), view
        genotype = board.sql("SELECT * FROM genotypes").iloc[0]  # both search rows, one per fold
        assert genotype["mean_test_ua"] == pytest.approx(0.71) and genotype["mean_test_wa"] == pytest.approx(0.81)
        assert genotype["mean_test_macro_f1"] == pytest.approx(0.61) and genotype["folds_covered"] == 2
        trials = board.sql("SELECT trial_id, mean_test_ua FROM trial_scores ORDER BY trial_id")
        assert trials["mean_test_ua"].tolist() == pytest.approx([0.81, 0.61])
        assert board.sql("SELECT mean_test_ua FROM config_scores")["mean_test_ua"].tolist() == pytest.approx([0.71])
        cross = board.sql("SELECT mean_test_ua, mean_test_wa, mean_test_macro_f1 FROM cross_eval").iloc[0]
        assert cross.tolist() == pytest.approx([0.41, 0.42, 0.43])
        assert nested_estimates(board)["exp"].mean_test_ua == pytest.approx(0.71)

    with connect(tmp_path) as board:  # schema 3 and 4 files side by side
        check(board)
    compact(tmp_path)  # a snapshot holds the rows under the current names only
    (snapshot,) = (tmp_path / SNAPSHOT_DIR / "leaderboard" / "exp").glob("*.parquet")
    assert {"test_ua", "test_wa", "test_macro_f1"} <= set(pq.read_schema(snapshot).names)
    assert not {"ua", "wa", "macro_f1"} & set(pq.read_schema(snapshot).names)
    with connect(tmp_path, compact_at=None) as board:  # now read through the snapshot
        assert len(board.scan.snapshots) == 1
        check(board)


def test_a_file_without_the_test_ua_under_either_name_is_damaged(tmp_path: Path) -> None:
    path = _write_schema_3_row(tmp_path, trial_id="old", fold=1)
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["ua"]), path)
    with connect(tmp_path) as board:
        assert [item.reason for item in board.damaged] == ["missing column(s) ['test_ua']"]


def test_absent_classes_are_names_out_of_the_classes(tmp_path: Path) -> None:
    stored = pq.read_table(
        write_fold_row(tmp_path, make_leaderboard_row(test_absent_classes=["sad", "ang"], valid_absent_classes="[]"))
    ).to_pylist()[0]
    assert (stored["test_absent_classes"], stored["valid_absent_classes"]) == ('["sad","ang"]', "[]")
    with pytest.raises(ValueError, match=r"column 'test_absent_classes' must list names out of column 'classes'"):
        write_fold_row(tmp_path, make_leaderboard_row(test_absent_classes=["fear"]))
    with pytest.raises(ValueError, match="column 'valid_absent_classes' must be a JSON list"):
        write_fold_row(tmp_path, make_leaderboard_row(valid_absent_classes='"sad"'))
