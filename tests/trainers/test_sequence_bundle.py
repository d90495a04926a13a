"""A bundle whose genotype has a sequence cell loads and predicts (sernas predict's path)."""

from __future__ import annotations

import numpy as np
import soundfile
import torch

from search_space import Genotype
from search_space.sequence_cell import SequenceCell
from trainers.evaluate import build_network
from trainers.features import get_preset
from trainers.model_bundle import load_bundle, predict_files, save_bundle
from trainers.normalization import Normalizer
from trainers.settings import EvalSettings, ModelShape

CPU = torch.device("cpu")
GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 2), ("sep_conv_3x3", 0)],
    reduce_concat=[2, 3],
    sequence=[("bilstm", 0), ("attention", 0), ("dil_conv_1d_3", 1)],
)


def test_a_bundle_with_a_sequence_cell_rebuilds_it_and_predicts(tmp_path) -> None:
    preset = get_preset("logmel-32")
    settings = EvalSettings(shape=ModelShape(layers=3, init_channels=4, lstm_hidden=8))
    torch.manual_seed(0)
    model = build_network(GENOTYPE, settings=settings, n_classes=3, in_channels=preset.output_shape[0]).eval()
    path = save_bundle(
        tmp_path / "model.pt",
        model=model,
        architecture=GENOTYPE,
        settings=settings,
        classes=("neu", "hap", "sad"),
        preset=preset,
        source={"test": "sequence"},
        normalizer=Normalizer("utterance"),
    )
    loaded = load_bundle(path, device=CPU)
    assert isinstance(loaded.model.head.sequence_cell, SequenceCell)
    assert Genotype.from_json(loaded.architecture) == GENOTYPE
    x, lengths = torch.randn(2, 1, 32, 32), torch.tensor([32, 7])
    with torch.no_grad():
        assert torch.equal(loaded.model(x, lengths), model(x, lengths))
    wav = tmp_path / "clip.wav"
    soundfile.write(wav, (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16000)
    (prediction,) = predict_files(loaded, [str(wav)], device=CPU)
    assert prediction.error is None and prediction.label in ("neu", "hap", "sad")
    assert abs(sum(prediction.probabilities.values()) - 1.0) < 1e-5
