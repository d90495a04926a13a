"""One experiment name, one run: finding an earlier run's results, archiving or removing them."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from conftest import make_leaderboard_row
from orchestrator.leaderboard import compact, connect, write_fold_row, write_trial_status
from orchestrator.runs import archive_run, existing_run, remove_run
from orchestrator.storage import StorageLocation, resolve_storage


def _earlier_run(storage: StorageLocation, experiment: str = "exp") -> None:
    """What a finished search and cross-eval leave: Tune's files, the prepared data, rows, statuses."""
    for relative, text in (
        (f"{experiment}/experiment_state-2026-01-01_00-00-00.json", "{}"),
        (f"{experiment}/run_trial_a1/result.json", "{}"),
        (f"{experiment}/data/config.yaml", f"name: {experiment}\n"),
        (f"{experiment}-cross-eval/experiment_state-2026-01-02_00-00-00.json", "{}"),
    ):
        storage.write_bytes(relative, text.encode(), what=relative)
    for trial_id, fold in (("a1", 1), ("a1", 2), ("b2", 1)):
        row = make_leaderboard_row(experiment=experiment, trial_id=trial_id, fold=fold, n_folds=2)
        write_fold_row(storage, row)
        write_trial_status(storage, experiment=experiment, trial_id=trial_id, status="completed", step=3)


def test_a_fresh_name_has_no_run_and_prepared_data_alone_is_none(tmp_path: Path) -> None:
    storage = resolve_storage(tmp_path / "runs")
    assert not existing_run(storage, "exp")
    storage.write_bytes("exp/data/config.yaml", b"name: exp\n", what="config")  # the driver writes it before Tune
    assert not existing_run(storage, "exp")
    _earlier_run(storage, "other")
    assert not existing_run(storage, "exp")  # another experiment's results are not this one's


def test_archive_moves_the_whole_run_aside_and_keeps_the_inputs(tmp_path: Path) -> None:
    storage = resolve_storage(tmp_path / "runs")
    _earlier_run(storage)
    _earlier_run(storage, "other")
    corpus = tmp_path / "runs" / "exp" / "corpus"  # the demo generates its corpus inside its experiment folder
    corpus.mkdir(parents=True)
    (corpus / "a.wav").write_bytes(b"RIFF")
    compact(storage, experiment="exp", grace_seconds=0)  # a snapshot of the rows, derived from them

    run = existing_run(storage, "exp", inputs=[corpus])
    assert run.found == (
        f"Tune state in {tmp_path}/runs/exp",
        f"cross-eval Tune state in {tmp_path}/runs/exp-cross-eval",
        f"3 leaderboard part files in {tmp_path}/runs/leaderboard/exp",
        f"2 trial status files in {tmp_path}/runs/trials/exp",
    )
    archived = archive_run(run, now=0.0)
    assert archived == f"{tmp_path}/runs/_archive/exp-19700101T000000Z"
    moved = Path(archived)
    assert (moved / "exp/experiment_state-2026-01-01_00-00-00.json").is_file()
    assert (moved / "exp/data/config.yaml").read_text() == "name: exp\n"
    assert (moved / "exp-cross-eval").is_dir() and len(list((moved / "leaderboard/exp").rglob("*.parquet"))) == 3
    assert (moved / "trials/exp").is_dir() and not (moved / "exp/corpus").exists()
    assert (corpus / "a.wav").read_bytes() == b"RIFF"  # the corpus stayed where the config reads it
    assert not existing_run(storage, "exp", inputs=[corpus])  # the name is free again
    with connect(storage) as board:  # the leaderboard no longer sees the archived rows; the other run is intact
        counts = board.sql("SELECT experiment, count(*) AS n FROM runs GROUP BY ALL")
    assert counts.to_dict("records") == [{"experiment": "other", "n": 3}]
    # A second archive within the same second gets its own folder.
    _earlier_run(storage)
    assert archive_run(existing_run(storage, "exp", inputs=[corpus]), now=0.0) == f"{archived}-2"


def test_remove_deletes_the_run_and_only_it(tmp_path: Path) -> None:
    storage = resolve_storage(tmp_path / "runs")
    _earlier_run(storage)
    _earlier_run(storage, "other")
    remove_run(existing_run(storage, "exp"))
    assert not existing_run(storage, "exp") and not (tmp_path / "runs/exp").exists()
    assert existing_run(storage, "other")


def test_object_stores_remove_but_refuse_to_archive() -> None:
    filesystem, _ = pafs.FileSystem.from_uri("mock:///")
    storage = StorageLocation(filesystem, "bucket/runs", "mock://bucket/runs")
    _earlier_run(storage)
    run = existing_run(storage, "exp")
    assert "3 leaderboard part files in mock://bucket/runs/leaderboard/exp" in run.describe()
    with pytest.raises(ValueError, match=r"rename, which the object store mock://bucket/runs does not have.*remove"):
        archive_run(run)
    assert existing_run(storage, "exp").found == run.found  # nothing moved
    remove_run(run)
    assert not existing_run(storage, "exp")
