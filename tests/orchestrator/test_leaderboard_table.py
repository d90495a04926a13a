"""`sernas leaderboard` tables fit the terminal: at 80 columns every number is whole (never ``0.…``),
the first columns are rank, id, mean validation UA, test UA, folds, params; --columns picks
others; csv/json keep every column. Run as a user runs it: the console script with COLUMNS=80."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_leaderboard_row
from orchestrator.leaderboard import connect, write_fold_row, write_trial_status


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    """Three genotypes x 3 folds of experiment ``exp``, with UAs of several digits."""
    root = tmp_path_factory.mktemp("board") / "runs"
    for index, genotype in enumerate(("a1b2c3d4e5f6", "0123456789ab", "fedcba987654")):
        trial_id = f"trial_{index:05d}"
        for fold in (1, 2, 3):
            row = make_leaderboard_row(
                trial_id=trial_id,
                fold=fold,
                genotype_hash=genotype,
                test_ua=0.31234 + 0.1 * index + 0.01 * fold,
                valid_ua=0.45678 - 0.05 * index + 0.02 * fold,
                test_wa=0.5,
                params=123456 + index,
            )
            write_fold_row(root, row)
        write_trial_status(root, experiment="exp", trial_id=trial_id, status="completed", step=9)
    return root


def _sernas(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    script = shutil.which("sernas", path=str(Path(sys.executable).parent)) or shutil.which("sernas")
    assert script is not None, "no `sernas` console script (pip install -e .)"
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([script, *args], capture_output=True, text=True, env=env, timeout=120)


def _header_and_rows(out: str) -> tuple[list[str], list[list[str]]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if lines[i + 1].strip().startswith("─"))  # above the rule
    end = next(i for i in range(start + 2, len(lines)) if not lines[i].strip())
    return lines[start].split(), [line.split() for line in lines[start + 2 : end]]


@pytest.mark.parametrize("by", ["genotype", "trial", "config"])
def test_an_80_column_table_shows_every_number_whole(storage, by):
    result = _sernas("leaderboard", "--storage", str(storage), "--by", by)
    assert result.returncode == 0, result.stderr
    print(result.stdout)  # what the terminal shows (pytest -s)
    table = result.stdout[result.stdout.index("leaderboard by") :]  # (the nested estimate's line wraps as text)
    assert max(map(len, table.splitlines())) <= 80 and "…" not in table
    header, rows = _header_and_rows(result.stdout)
    first = {  # a search trial belongs to one outer fold: its row leads with that fold and its networks
        "genotype": ["rank", "genotype_hash", "mean_valid_ua", "mean_test_ua", "folds", "mean_params"],
        # (at 80 columns, mean_params no longer fits after the wider name mean_test_ua: the caption names it)
        "trial": ["rank", "trial_id", "outer_fold", "mean_valid_ua", "mean_test_ua", "runs"],
        "config": ["rank", "mean_valid_ua", "mean_test_ua", "folds", "mean_params"],
    }[by]
    assert header[: len(first)] == first
    with connect(storage) as board:
        frame = board.summary(by)
    assert len(rows) == len(frame)
    for cells, entry in zip(rows, frame.itertuples(), strict=True):
        shown = dict(zip(header, cells, strict=False))
        assert (
            shown["mean_valid_ua"] == f"{entry.mean_valid_ua:.3f}"
            and shown["mean_test_ua"] == f"{entry.mean_test_ua:.3f}"
        )
        assert shown.get("folds", "3/3") == "3/3"
        assert shown.get("mean_params", f"{entry.mean_params:,.0f}") == f"{entry.mean_params:,.0f}"
    assert "mean_params" in header or "mean_params" in result.stdout[result.stdout.index("more column(s)") :]
    assert "more column(s)" in result.stdout and "--columns" in result.stdout


def test_columns_picks_what_the_table_shows_and_names_the_valid_ones(storage):
    result = _sernas("leaderboard", "--storage", str(storage), "--columns", "genotype_hash,mean_test_wa,seeds")
    assert result.returncode == 0, result.stderr
    header, rows = _header_and_rows(result.stdout)
    assert header == ["genotype_hash", "mean_test_wa", "seeds"] and rows[0] == ["a1b2c3d4e5f6", "0.500", "1"]
    assert "more column(s)" not in result.stdout

    bad = _sernas("leaderboard", "--storage", str(storage), "--columns", "rank,mean_test_uaa")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--columns: unknown column(s) mean_test_uaa; the table has:" in bad.stderr and "mean_valid_ua" in bad.stderr

    wrong_format = _sernas("leaderboard", "--storage", str(storage), "--columns", "rank", "--format", "csv")
    assert wrong_format.returncode == 2 and "--format csv has every column" in wrong_format.stderr


def test_json_keeps_every_column(storage):
    result = _sernas("leaderboard", "--storage", str(storage), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    with connect(storage) as board:
        columns = list(board.summary("genotype").columns)
    assert len(rows) == 3 and list(rows[0]) == columns and len(columns) > 15


def test_runs_whose_splits_lack_a_class_get_a_note(tmp_path):
    root = tmp_path / "runs"
    write_fold_row(root, make_leaderboard_row(trial_id="t1", fold=1, test_absent_classes=["sad"]))
    write_fold_row(root, make_leaderboard_row(trial_id="t2", fold=2, valid_absent_classes=["ang", "hap"]))
    write_fold_row(root, make_leaderboard_row(trial_id="t3", fold=3))  # every class present: not noted
    table = _sernas("leaderboard", "--storage", str(root), columns=200)
    assert table.returncode == 0, table.stderr
    notes = [line for line in table.stdout.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: exp: 1 search run(s) (fold 1) had no test utterance of class sad: it counts as recall 0 in their "
        "test UA (and F1 0 in macro-F1); see docs/leaderboard.md, Metrics.",
        "note: exp: 1 search run(s) (fold 2) had no validation utterance of class ang, hap: it counts as recall 0 in "
        "their validation UA (and F1 0 in macro-F1); see docs/leaderboard.md, Metrics.",
    ]
    document = json.loads(_sernas("leaderboard", "--storage", str(root), "--format", "json").stdout)
    assert document["absent_classes"] == [note.removeprefix("note: ") for note in notes]


def test_runs_on_folds_that_are_not_speaker_independent_get_a_note(tmp_path):
    root = tmp_path / "runs"
    write_fold_row(root, make_leaderboard_row(trial_id="t1", fold=1, speaker_check="overlap"))
    write_fold_row(root, make_leaderboard_row(trial_id="t2", fold=2, speaker_check="independent"))
    table = _sernas("leaderboard", "--storage", str(root), columns=200)
    assert table.returncode == 0, table.stderr
    notes = [line for line in table.stdout.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: exp: 1 search run(s) on fold 1, whose speaker check is overlap: a test speaker also trains or "
        "validates there (or a speaker has two roles), so its test UA is measured on speakers the networks learnt "
        "from: optimistic (fold table column speaker_check; docs/data.md)."
    ]
    document = json.loads(_sernas("leaderboard", "--storage", str(root), "--format", "json").stdout)
    assert document["speaker_checks"] == [note.removeprefix("note: ") for note in notes]


def test_a_leaderboard_without_absent_classes_has_no_note(storage):
    result = _sernas("leaderboard", "--storage", str(storage), columns=200)
    assert result.returncode == 0 and "note:" not in result.stdout
    document = json.loads(_sernas("leaderboard", "--storage", str(storage), "--format", "json").stdout)
    assert document["absent_classes"] == [] and document["speaker_checks"] == []
