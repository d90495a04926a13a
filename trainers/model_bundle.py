"""A trained model as one file anyone can load safely, and prediction on WAV files with it.

The bundle is a plain dict of tensors, strings and numbers (``torch.load(weights_only=True)``
loads it, so opening a model never runs code): the network's ``state_dict``, its architecture
(genotype JSON or ``baseline``), the evaluation settings that size it, the class names in
output order, the feature preset it was trained on, the input normalisation (mode and, for
``train``, its statistics), and where it came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_space import Architecture, architecture_text, parse_architecture
from trainers.audio import AudioError, read_audio
from trainers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainers.evaluate import build_network
from trainers.features import FeatureExtractor, FeaturePreset
from trainers.normalization import Normalizer
from trainers.settings import EvalSettings

BUNDLE_FORMAT = "sernas-model"
BUNDLE_VERSION = 1


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    classes: tuple[str, ...]
    preset: FeaturePreset
    architecture: str
    source: dict[str, Any]
    normalizer: Normalizer


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str | None
    probabilities: dict[str, float] | None
    error: str | None = None


def save_bundle(
    path: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    architecture: Architecture | str,
    settings: EvalSettings,
    classes: tuple[str, ...],
    preset: FeaturePreset,
    source: dict[str, Any],
    normalizer: Normalizer,
) -> Path:
    """Write the bundle; ``normalizer`` is the fitted input normalisation the model was trained with."""
    bundle = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "architecture": architecture_text(parse_architecture(architecture)),
        "eval_settings": settings.model_dump(mode="json"),
        "classes": list(classes),
        "preset": preset.model_dump(mode="json"),
        "source": source,
        "normalization": normalizer.state(),
    }
    return save_checkpoint(bundle, path)


def load_bundle(path: str | os.PathLike[str], *, device: torch.device) -> LoadedModel:
    """Rebuild the network of a bundle in eval mode; errors name the file and what is wrong."""
    try:
        bundle = load_checkpoint(path)
    except CheckpointError as error:
        raise ValueError(str(error).replace("checkpoint", "model file", 1)) from None
    if bundle is None:
        raise FileNotFoundError(f"model file {path} does not exist; create one with `sernas export`.")
    if bundle.get("format") != BUNDLE_FORMAT or bundle.get("version") != BUNDLE_VERSION:
        raise ValueError(
            f"model file {path} is not a sernas model bundle (format {bundle.get('format')!r}, "
            f"version {bundle.get('version')!r}; expected {BUNDLE_FORMAT!r} version {BUNDLE_VERSION})."
        )
    settings = EvalSettings.model_validate(bundle["eval_settings"])
    preset = FeaturePreset.model_validate(bundle["preset"])
    classes = tuple(bundle["classes"])
    model = build_network(
        parse_architecture(bundle["architecture"]),
        settings=settings,
        n_classes=len(classes),
        in_channels=preset.output_shape[0],
    )
    model.load_state_dict(bundle["state_dict"])
    return LoadedModel(
        model=model.to(device).eval(),
        classes=classes,
        preset=preset,
        architecture=bundle["architecture"],
        source=dict(bundle["source"]),
        normalizer=Normalizer.from_state(bundle.get("normalization")),
    )


@torch.no_grad()
def predict_files(loaded: LoadedModel, paths: list[str], *, device: torch.device) -> list[Prediction]:
    """Class probabilities per file; an unreadable file gets its error and the rest still run."""
    extractor = FeatureExtractor(loaded.preset)
    errors: dict[str, str] = {}
    features, lengths, readable = [], [], []
    for path in paths:
        try:
            samples, sample_rate = read_audio(path)
        except (AudioError, OSError) as error:
            errors[path] = str(error)
            continue
        features.append(extractor(samples, sample_rate))  # (1, F, T)
        lengths.append(loaded.preset.valid_frames(len(samples) / sample_rate))
        readable.append(path)
    probabilities: dict[str, torch.Tensor] = {}
    if readable:
        x = loaded.normalizer(  # the files of one call count as one speaker for speaker normalisation
            torch.stack(features), torch.tensor(lengths), ("predict",) * len(readable)
        ).to(device)  # (N, 1, F, T)
        for path, row, length in zip(readable, x, lengths):
            logits = loaded.model(row[None], torch.tensor([length]))  # (1, n_classes)
            probabilities[path] = torch.softmax(logits, dim=1)[0].cpu()  # (n_classes,)
    predictions = []
    for path in paths:
        if path in errors:
            predictions.append(Prediction(path=path, label=None, probabilities=None, error=errors[path]))
            continue
        p = probabilities[path]
        predictions.append(
            Prediction(
                path=path,
                label=loaded.classes[int(p.argmax())],
                probabilities={c: float(v) for c, v in zip(loaded.classes, p)},
            )
        )
    return predictions
