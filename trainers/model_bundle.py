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
from trainers.features import AnyPreset, FeatureExtractor, SSLFeatureExtractor, SSLPreset, parse_preset, resolve_preset
from trainers.normalization import Normalizer
from trainers.settings import EvalSettings

BUNDLE_FORMAT = "sernas-model"
BUNDLE_VERSION = 1


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    classes: tuple[str, ...]
    preset: AnyPreset
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
    preset: AnyPreset,
    source: dict[str, Any],
    normalizer: Normalizer,
) -> Path:
    """Write the bundle; ``normalizer`` is the fitted input normalisation the model was trained with.

    An SSL preset is stored with its weights' sha256 (never their path or the weights)."""
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
    preset = parse_preset(bundle["preset"])
    classes = tuple(bundle["classes"])
    model = build_network(
        parse_architecture(bundle["architecture"]),
        settings=settings,
        n_classes=len(classes),
        in_channels=preset.output_shape[0],
        frontend=settings.shape.frontend(preset.output_shape, layered=isinstance(preset, SSLPreset)),
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
def predict_files(
    loaded: LoadedModel, paths: list[str], *, device: torch.device, weights: str | os.PathLike[str] | None = None
) -> list[Prediction]:
    """Class probabilities per file; an unreadable file gets its error and the rest still run.

    A model on SSL features needs its encoder's weights: ``weights``, else torch hub's cache; they
    must be the ones it was trained with (the bundle's preset records their sha256), else
    ``WeightsError``."""
    preset = loaded.preset
    if isinstance(preset, SSLPreset):
        extractor: FeatureExtractor | SSLFeatureExtractor = SSLFeatureExtractor(
            resolve_preset(preset, weights=weights), device=device
        )
    else:
        extractor = FeatureExtractor(preset)
    errors: dict[str, str] = {}
    features, lengths, readable = [], [], []
    for path in paths:
        try:
            samples, sample_rate = read_audio(path)
        except (AudioError, OSError) as error:
            errors[path] = str(error)
            continue
        values = extractor(samples, sample_rate).float()  # (1, F, T), or SSL (L, D, t <= T)
        shape = preset.output_shape
        features.append(torch.nn.functional.pad(values, (0, shape[-1] - values.shape[-1])))  # (C, F, T)
        lengths.append(preset.valid_frames(len(samples) / sample_rate))
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
