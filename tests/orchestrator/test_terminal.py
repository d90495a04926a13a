"""Tests for orchestrator.terminal: the rich side of the trainers' progress callback."""

from __future__ import annotations

import pytest

from orchestrator.terminal import progress_bars
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
