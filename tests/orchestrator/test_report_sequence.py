"""The report draws a genotype's sequence cell beside its CNN cells."""

from __future__ import annotations

from orchestrator.report.cells import cells_section
from search_space import Genotype

CELLS = {
    "normal": [("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 1), ("max_pool_3x3", 2)],
    "normal_concat": [2, 3],
    "reduce": [("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 2), ("skip_connect", 0)],
    "reduce_concat": [2, 3],
}


def test_the_sequence_cell_is_drawn_when_the_genotype_has_one() -> None:
    searched = Genotype(**CELLS, sequence=[("bilstm", 0), ("attention", 0), ("conv_1d_3", 1)])
    page = cells_section((searched.hash, searched.to_json()))
    assert "normal, reduction and sequence cells" in page and "the sequence cell over time" in page
    fixed = Genotype(**CELLS)
    page = cells_section((fixed.hash, fixed.to_json()))
    assert "normal and reduction cells" in page and "the fixed LSTM" in page
