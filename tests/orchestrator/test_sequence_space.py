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


def test_random_controls_draw_a_sequence_cell_when_the_experiment_searches_one(tmp_path) -> None:
    from conftest import write_experiment_config
    from orchestrator.config import load_config
    from orchestrator.cross_eval import random_controls
    from search_space.architecture import parse_architecture

    path = write_experiment_config(tmp_path / "exp.yaml", name="exp")
    assert all(parse_architecture(c.architecture).sequence is None for c in random_controls(load_config(path), count=3))
    config = load_config(path, overrides=["search.sequence.enabled=true", "search.sequence.nodes=3"])
    for control in random_controls(config, count=3):
        assert parse_architecture(control.architecture).sequence_nodes == 3
