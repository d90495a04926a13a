"""Tests for orchestrator.terminal: the rich side of the trainers' progress callback."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from orchestrator.terminal import TrialBoard, progress_bars
from trainers.reporting import ignore_progress


def test_progress_bars_draw_one_bar_per_stage_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bars() as progress:
        progress("hashing audio", 0, 3)
        progress("hashing audio", 3, 3)
        progress("computing paper-mfcc", 0, 2)
        progress("computing paper-mfcc", 1, 2)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "hashing audio" in captured.err and "3/3" in captured.err
    assert "computing paper-mfcc" in captured.err and "1/2" in captured.err


def test_disabled_progress_bars_draw_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bars(enabled=False) as progress:
        assert progress is ignore_progress
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------------------------ the trial board
def _events(board: TrialBoard) -> None:
    """What Tune's callback tells the board during a small experiment of 3 trials and 2 folds."""
    board.pending("t3", params="lr=0.05")
    board.started("t1", params="init_channels=4 lr=0.0354")
    board.started("t2", params="init_channels=8 lr=0.0871")
    board.epoch("t1", fold=1, phase="search", epoch=1, valid_ua=0.41234)
    board.epoch("t2", fold=1, phase="eval", epoch=2, valid_ua=0.25)
    board.fold_done("t1", fold=1, folds_done=1, mean_valid_ua=0.456, message="[bold]t1[/] fold 1: valid UA 0.456")
    board.epoch("t1", fold=2, phase="eval", epoch=3, valid_ua=0.5)
    board.ended("t2", state="pruned", message="[yellow]t2 pruned[/]: median pruner stopped it")
    board.close()


def test_on_a_terminal_the_board_is_a_live_table() -> None:
    console = Console(force_terminal=True, width=100, record=True, file=io.StringIO())
    board = TrialBoard(console=console, n_folds=2)
    _events(board)
    text = console.export_text()
    assert "t1 fold 1: valid UA 0.456" in text and "t2 pruned: median pruner stopped it" in text
    assert "started" not in text  # a trial's start shows in the table, not as a line
    # The table as it stands at the end (the last frame the live display drew):
    final = Console(width=100, record=True, file=io.StringIO())
    final.print(board.render())
    shown = final.export_text()
    rows = {line.split()[0]: line.split() for line in shown.splitlines() if line.strip().startswith("t")}
    assert rows["t1"] == ["t1", "init_channels=4", "lr=0.0354", "2", "(1/2)", "eval", "3", "0.500", "0.456", "running"]
    assert rows["t2"][-1] == "pruned" and "0.250" in rows["t2"] and "t3" not in rows  # pending: counted only
    assert "3 trials: 1 running, 1 pending, 0 finished, 1 pruned, 0 failed" in shown
    for header in ("trial", "params", "fold", "epoch", "valid UA", "mean valid", "state"):
        assert header in text


def test_the_table_keeps_its_numbers_at_80_columns() -> None:
    board = TrialBoard(console=Console(quiet=True), n_folds=5, max_rows=2)
    for index in range(4):
        board.started(f"run_trial_{index:05d}", params="init_channels=16 layers=8 lstm_hidden=128 weights_lr=0.0123")
        board.epoch(f"run_trial_{index:05d}", fold=3, phase="search", epoch=12, valid_ua=0.61234)
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(board.render(width=80))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80 and text.count("0.612") == 2  # params shortened, never numbers
    assert "2 more" in text and "(0/5)" in text and "search 12" in text and "running" in text
    assert "init_channels" not in text  # no room left for the parameters at 80 columns with such trial names
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(board.render(width=120))
    wide = console.export_text()
    assert max(map(len, wide.splitlines())) <= 120 and "init_channels=16 layers=8" in wide


def test_off_a_terminal_every_event_is_one_plain_line() -> None:
    stream = io.StringIO()
    console = Console(file=stream, width=200)
    assert not console.is_terminal
    board = TrialBoard(console=console, n_folds=2, every_s=0.0)  # a status line at every epoch
    _events(board)
    lines = stream.getvalue().splitlines()
    assert lines[0] == (
        "t1 started init_channels=4 lr=0.0354 (2 trials: 1 running, 1 pending, 0 finished, 0 pruned, 0 failed)"
    )
    assert lines[1].startswith("t2 started init_channels=8 lr=0.0871 (3 trials: 2 running")
    assert "t1 fold 1 search epoch 1 valid UA 0.412" in lines[2]
    assert any(line.startswith("t1 fold 1: valid UA 0.456 (3 trials") for line in lines)
    assert lines[-1] == (
        "t2 pruned: median pruner stopped it (3 trials: 1 running, 1 pending, 0 finished, 1 pruned, 0 failed)"
    )
    assert "\x1b" not in stream.getvalue() and "┃" not in stream.getvalue() and "valid UA  " not in stream.getvalue()
    with pytest.raises(ValueError, match="state must be one of"):
        board.ended("t1", state="done", message="")


def test_a_trial_that_has_not_reported_reads_as_starting_in_the_status_line() -> None:
    stream = io.StringIO()
    board = TrialBoard(console=Console(file=stream, width=200), n_folds=1, every_s=0.0)
    board.started("t1", params="lr=0.1")
    board.started("t2", params="lr=0.2")
    board.epoch("t1", fold=1, phase="search", epoch=1, valid_ua=0.4)
    status = [line for line in stream.getvalue().splitlines() if "t1 fold 1 search epoch 1" in line]
    assert status and "t2 starting" in status[0] and "None" not in status[0] and "nan" not in status[0]
