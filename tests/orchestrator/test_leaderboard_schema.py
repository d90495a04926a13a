"""The typed fold row and the schema it defines: constructors, validation, the documented table."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import make_leaderboard_row
from orchestrator.leaderboard import COLUMN_DOCS, SCHEMA, TRIAL_SCHEMA, FoldRow, write_fold_row
from orchestrator.leaderboard.schema import FOLD_COLUMNS, RESULT_COLUMNS, TRIAL_COLUMNS, Column

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
    assert COLUMN_DOCS["fold_rows"]["ua"].startswith("test unweighted accuracy")
    assert set(COLUMN_DOCS) == {"fold_rows", "trials"}


def test_a_failed_row_has_no_results(tmp_path: Path) -> None:
    row = FoldRow.failed(error="CUDA out of memory", **_facts())
    assert row.status == "failed" and all(getattr(row, name) is None for name in RESULT_COLUMNS)
    stored = pq.read_table(write_fold_row(tmp_path, row)).to_pylist()[0]
    assert stored["error"] == "CUDA out of memory" and stored["ua"] is None and stored["written_at"] is not None


def test_a_failed_row_refuses_results() -> None:
    with pytest.raises(TypeError, match="ua"):
        FoldRow.failed(error="boom", ua=0.5, **_facts())


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
