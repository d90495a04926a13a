"""Eight processes append leaderboard rows while this one keeps querying the leaderboard."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from conftest import make_leaderboard_row
from orchestrator.leaderboard import connect, write_fold_row

pytestmark = pytest.mark.slow  # 8 spawned interpreters import pyarrow + duckdb: ~10 s on a 2-core node

WORKERS, ROWS = 8, 20


def _write_many(storage: str, worker: int, rows: int) -> None:
    for index in range(rows):
        write_fold_row(
            storage,
            make_leaderboard_row(
                trial_id=f"w{worker}-{index}",
                fold=1 + index % 3,
                test_ua=0.5 + worker / 100,
                seed=worker,
                genotype_hash=f"{worker:012d}",
            ),
        )


def test_concurrent_writers_and_a_reader(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_many, args=(str(tmp_path), worker, ROWS)) for worker in range(WORKERS)]
    for process in processes:
        process.start()
    queries, seen = 0, []
    deadline = time.monotonic() + 120
    try:
        while any(process.is_alive() for process in processes) and time.monotonic() < deadline:
            with connect(tmp_path) as board:  # must never fail, nor see half a file, while files appear
                assert board.damaged == ()
                seen.append(int(board.sql("SELECT count(*) AS n FROM runs")["n"][0]))
                board.top_genotypes(3)
            queries += 1
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    expected = {(f"w{worker}-{index}", 1 + index % 3) for worker in range(WORKERS) for index in range(ROWS)}
    with connect(tmp_path) as board:
        rows = board.sql("SELECT trial_id, fold, test_ua FROM fold_rows")
        assert set(zip(rows["trial_id"], rows["fold"])) == expected and len(rows) == len(expected)  # every row, once
        assert board.sql("SELECT count(*) AS n FROM runs")["n"][0] == WORKERS * ROWS
        assert len(board.top_genotypes(100)) == WORKERS
        assert board.damaged == () and board.scan.temporary == ()
    assert queries >= 1 and seen == sorted(seen)  # a reader never sees a row disappear
