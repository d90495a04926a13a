"""search.sequence: off by default (the fixed LSTM), validated, and a tiny search that derives a sequence cell."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from conftest import make_fold_data
from search_space import Genotype
from trainers.search import build_supernet, run_search
from trainers.settings import ModelShape, SearchSettings, SequenceSearch, with_defaults_for_missing

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHAPE = ModelShape(layers=3, nodes=1, init_channels=2, lstm_hidden=4)


def test_off_by_default_and_old_settings_read_as_off() -> None:
    assert SearchSettings().sequence.enabled is False
    assert SequenceSearch().for_supernet(lstm_hidden=8) is None
    stored = SearchSettings().model_dump()
    del stored["sequence"]  # a checkpoint written before the setting existed
    assert SearchSettings(**with_defaults_for_missing(stored, SearchSettings)).sequence == SequenceSearch()
    data = make_fold_data(n_train=6, n_valid=3, n_test=3)
    net = build_supernet(data, SearchSettings(shape=SHAPE))
    assert net.alphas_sequence is None and "sequence" not in net.config and net.head.lstm is not None


def test_settings_are_checked_and_name_the_problem() -> None:
    on = SequenceSearch(enabled=True, ops=("none", "lstm", "attention"), nodes=3, hidden=6)
    assert on.for_supernet(lstm_hidden=8) == {"ops": ["none", "lstm", "attention"], "nodes": 3, "hidden": 6}
    assert SequenceSearch(enabled=True).for_supernet(lstm_hidden=8)["hidden"] == 8
    with pytest.raises(ValidationError, match="unknown sequence ops"):
        SequenceSearch(ops=("lstm", "mamba"))
    with pytest.raises(ValidationError, match="even"):
        SequenceSearch(hidden=5)
    with pytest.raises(ValidationError, match="even width"):
        SearchSettings(shape=ModelShape(layers=3, lstm_hidden=5), sequence=SequenceSearch(enabled=True))
    with pytest.raises(ValidationError, match="method='darts'"):
        SearchSettings(method="random-ws", sequence=SequenceSearch(enabled=True))
    with pytest.raises(ValidationError, match="nodes"):
        SequenceSearch(nodes=0)


def test_a_tiny_search_with_the_sequence_stage_derives_a_sequence_cell() -> None:
    settings = SearchSettings(
        shape=SHAPE,
        epochs=1,
        batch_size=8,
        order="second",
        sequence=SequenceSearch(enabled=True, ops=("none", "skip", "gru", "conv_1d_3"), nodes=2),
    )
    result = run_search(
        make_fold_data(n_train=16, n_valid=8, n_test=8),
        settings=settings,
        device=torch.device("cpu"),
        reporter=lambda step, metrics: None,
    )
    genotype = Genotype.from_json(result.genotype.to_json())
    assert genotype.sequence_nodes == 2 and genotype.sequence is not None
    assert all(op in ("skip", "gru", "conv_1d_3") for op, _ in genotype.sequence)
