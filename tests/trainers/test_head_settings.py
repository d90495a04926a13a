"""The head options travel from the settings to every network: search, evaluation, bundle."""

from __future__ import annotations

import pytest
import torch

from conftest import make_fold_data
from search_space import Genotype, HeadOptions
from trainers.evaluate import build_network
from trainers.features import get_preset
from trainers.model_bundle import load_bundle, save_bundle
from trainers.normalization import Normalizer
from trainers.search import build_supernet
from trainers.settings import EvalSettings, ModelShape, SearchSettings

CPU = torch.device("cpu")
GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 2), ("sep_conv_3x3", 0)],
    reduce_concat=[2, 3],
)
STATS = {"sequence_input": "frequency-channels", "frequency_bins": 2, "sequence_projection": 6, "pooling": "stats"}
SHAPE = ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8, **STATS)


def test_model_shape_defaults_are_the_old_head():
    assert ModelShape().head == HeadOptions()
    assert HeadOptions() == HeadOptions(sequence_input="mean-frequency", pooling="mean")
    assert SHAPE.head == HeadOptions(**STATS)


def test_model_shape_refuses_unknown_options_by_name():
    with pytest.raises(ValueError, match="pooling"):
        ModelShape(pooling="max")
    with pytest.raises(ValueError, match="sequence_input"):
        ModelShape(sequence_input="frequency")


@pytest.mark.parametrize("architecture", ["baseline", GENOTYPE])
def test_evaluated_networks_get_the_shape_head(architecture):
    net = build_network(architecture, settings=EvalSettings(shape=SHAPE), n_classes=4, in_channels=1)
    assert net.head.options == SHAPE.head
    assert net.head.lstm.input_size == 6 and net.head.classifier.in_features == 16


def test_the_supernet_gets_the_shape_head():
    net = build_supernet(make_fold_data(shape=(1, 16, 16)), SearchSettings(shape=SHAPE))
    assert net.head.options == SHAPE.head and net.config["head"] == SHAPE.head.to_dict()


def bundle_of(tmp_path, settings: EvalSettings, architecture) -> tuple[torch.nn.Module, dict]:
    preset = get_preset("logmel-32")
    torch.manual_seed(0)
    model = build_network(architecture, settings=settings, n_classes=3, in_channels=preset.output_shape[0]).eval()
    path = save_bundle(
        tmp_path / "model.pt",
        model=model,
        architecture=architecture,
        settings=settings,
        classes=("neu", "hap", "sad"),
        preset=preset,
        source={"test": "heads"},
        normalizer=Normalizer("utterance"),
    )
    return model, path


@pytest.mark.parametrize("architecture", ["baseline", GENOTYPE])
def test_a_bundle_rebuilds_the_same_head_and_logits(tmp_path, architecture):
    model, path = bundle_of(tmp_path, EvalSettings(shape=SHAPE), architecture)
    loaded = load_bundle(path, device=CPU)
    assert loaded.model.head.options == SHAPE.head
    x, lengths = torch.randn(2, 1, 32, 32), torch.tensor([32, 7])
    with torch.no_grad():
        assert torch.equal(loaded.model(x, lengths), model(x, lengths))


def test_a_bundle_written_before_the_options_loads_with_the_old_head(tmp_path):
    settings = EvalSettings(shape=ModelShape(layers=3, init_channels=4, lstm_hidden=8))
    _, path = bundle_of(tmp_path, settings, "baseline")
    bundle = torch.load(path, weights_only=True)
    for name in STATS:  # what a bundle of an earlier version stored
        del bundle["eval_settings"]["shape"][name]
    torch.save(bundle, path)
    assert load_bundle(path, device=CPU).model.head.options == HeadOptions()
