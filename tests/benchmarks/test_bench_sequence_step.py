"""benchmarks/bench_sequence_step.py: one search step per head, in-process at a tiny batch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_sequence_step as bench  # noqa: E402
import run_all  # noqa: E402
from supernet_steps import Setting  # noqa: E402


@pytest.fixture
def tiny_shape(monkeypatch):
    shape = Setting(batch=4, layers=3, nodes=2, channels=2, height=8, width=16)
    monkeypatch.setattr(bench, "SHAPES", {"tiny": (shape, 8)})
    return "tiny"


def test_the_sequence_cell_adds_weights_and_alphas_and_each_step_is_timed(tiny_shape):
    spec = {"shape": tiny_shape, "steps": 2, "warmup": 1, "threads": 1}
    fixed = bench._child({**spec, "head": "fixed-lstm"})
    searched = bench._child({**spec, "head": "sequence-cell"})
    assert searched["alphas"] > fixed["alphas"]  # the sequence cell's own architecture weights
    assert len(fixed["seconds"]) == len(searched["seconds"]) == 2
    assert all(s > 0 for s in fixed["seconds"] + searched["seconds"])
    assert searched["peak_rss_bytes"] >= searched["setup_rss_bytes"] > 0


def test_summary_row_reads_the_results_file(tiny_shape, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "measure", bench._child)  # in-process: no spawned interpreter
    result = bench.main(["--steps", "1", "--warmup", "0", "--out", str(tmp_path / "sequence_step.json")])
    assert set(result["ratios"]) == {tiny_shape} and result["ratios"][tiny_shape]["step_time"] > 0
    (row,) = run_all._sequence_step(result)
    assert row.startswith("| search step with a searched sequence cell") and "tiny:" in row
