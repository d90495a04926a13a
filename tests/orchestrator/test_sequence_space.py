"""search.sequence is reachable from the YAML space like any other setting."""

from __future__ import annotations

from orchestrator.config.trial_settings import build_settings, settings_path_error
from trainers.settings import EvalSettings, ModelShape, SearchSettings, SequenceSearch

SHAPE = ModelShape(layers=3, nodes=1, init_channels=2, lstm_hidden=4)


def test_the_yaml_space_reaches_the_sequence_settings() -> None:
    for path in ("search.sequence.enabled", "search.sequence.ops", "search.sequence.nodes", "search.sequence.hidden"):
        assert settings_path_error(path) is None, path
    assert "no setting 'depth'" in settings_path_error("search.sequence.depth")
    built = build_settings(
        {"search": SearchSettings(shape=SHAPE), "eval": EvalSettings()},
        {"search.sequence.enabled": True, "search.sequence.ops": "none, lstm,attention", "search.sequence.nodes": 3},
    )
    assert built.search.sequence == SequenceSearch(enabled=True, ops=("none", "lstm", "attention"), nodes=3)
