"""Train an architecture from scratch on one fold and measure it honestly.

The epoch is chosen by UA on the fold's validation speakers (the released code of the paper
took the best epoch on the test fold, which inflates results). The test speakers are touched
exactly once, after training, with every test utterance counted (no ``drop_last``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from search_space import Genotype, build_model, count_parameters
from trainers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainers.fold_data import FoldData, Split, inverse_frequency_weights, iterate_batches
from trainers.reporting import Reporter, ignore_reports
from trainers.reproducibility import capture_rng_state, restore_rng_state, seed_everything
from trainers.settings import EvalSettings
from trainers.training import evaluate_split, make_loss, sgd_with_cosine, weight_step


@dataclass(frozen=True)
class EvaluationResult:
    architecture: str  # genotype JSON, or a model name such as "baseline"
    best_epoch: int
    valid: dict[str, Any]  # metrics of the chosen epoch on the validation speakers
    test: dict[str, Any]  # ua, wa, macro_f1, confusion, n: measured once on the test speakers
    params: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def architecture_text(architecture: Genotype | str) -> str:
    """Canonical text of an architecture: genotype JSON, or the model name."""
    if isinstance(architecture, Genotype):
        return architecture.to_json()
    text = architecture.strip()
    return Genotype.from_json(text).to_json() if text.startswith("{") else text


def build_network(
    architecture: Genotype | str, *, settings: EvalSettings, n_classes: int, in_channels: int
) -> torch.nn.Module:
    shape = settings.shape
    return build_model(
        architecture,
        layers=shape.layers,
        init_channels=shape.init_channels,
        n_classes=n_classes,
        lstm_hidden=shape.lstm_hidden,
        lstm_layers=shape.lstm_layers,
        dropout=shape.dropout,
        in_channels=in_channels,
    )


def _check_resumable(state: dict, *, settings: EvalSettings, architecture: str, data: FoldData, path: Path) -> None:
    expected = {
        "kind": "evaluate",
        "settings": settings.model_dump(mode="json"),
        "architecture": architecture,
        "fold": data.fold,
        "classes": list(data.classes),
    }
    for key, value in expected.items():
        if state.get(key) != value:
            raise CheckpointError(
                f"checkpoint {path} was written for a different run: its {key!r} is "
                f"{state.get(key)!r}, this run has {value!r}. Delete it or use another "
                "output folder."
            )


def run_evaluation(
    data: FoldData,
    *,
    architecture: Genotype | str,
    settings: EvalSettings,
    device: torch.device,
    reporter: Reporter = ignore_reports,
    checkpoint_path: Path | None = None,
) -> EvaluationResult:
    """Train ``architecture`` on train speakers, pick the epoch on valid speakers, test once."""
    text = architecture_text(architecture)
    generator = seed_everything(settings.seed)
    n_classes = len(data.classes)
    model = build_network(text, settings=settings, n_classes=n_classes, in_channels=data.input_shape[0]).to(device)
    weights = list(model.parameters())
    optimizer, scheduler = sgd_with_cosine(weights, settings=settings.weights, epochs=settings.epochs)
    loss_fn = make_loss(data, imbalance=settings.imbalance, device=device)
    start_epoch, history, elapsed = 1, [], 0.0
    best = {"epoch": 0, "ua": -1.0, "valid": {}, "state": copy.deepcopy(model.state_dict())}
    state = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    if state is not None:
        _check_resumable(state, settings=settings, architecture=text, data=data, path=checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"], generator)
        start_epoch, history, elapsed, best = state["epoch"] + 1, state["history"], state["seconds"], state["best"]

    for epoch in range(start_epoch, settings.epochs + 1):
        started = time.perf_counter()
        model.train()
        if hasattr(model, "drop_path_prob"):  # ramps up linearly over training, as in DARTS
            model.drop_path_prob = settings.drop_path_prob * (epoch - 1) / settings.epochs
        losses = [
            weight_step(
                model,
                x.to(device),
                y.to(device),
                loss_fn=loss_fn,
                optimizer=optimizer,
                parameters=weights,
                grad_clip=settings.weights.grad_clip,
                autocast=settings.mixed_precision,
            )
            for x, y in iterate_batches(
                data.train,
                batch_size=settings.batch_size,
                shuffle=True,
                generator=generator,
                balanced=settings.imbalance == "balanced-sampling",
            )
        ]
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        valid = evaluate_split(
            model,
            data.valid,
            n_classes=n_classes,
            batch_size=settings.batch_size,
            device=device,
            loss_fn=loss_fn,
            autocast=settings.mixed_precision,
        )
        if valid["ua"] > best["ua"]:  # first epoch reaching the best valid UA wins ties
            best = {"epoch": epoch, "ua": valid["ua"], "valid": valid, "state": copy.deepcopy(model.state_dict())}
        epoch_seconds = time.perf_counter() - started
        elapsed += epoch_seconds
        metrics = {
            "phase": "eval",
            "epoch": epoch,
            "train_loss": sum(losses) / max(len(losses), 1),
            "valid_ua": valid["ua"],
            "valid_wa": valid["wa"],
            "valid_macro_f1": valid["macro_f1"],
            "valid_loss": valid["loss"],
            "best_epoch": best["epoch"],
            "best_valid_ua": best["ua"],
            "lr": lr,
            "seconds": epoch_seconds,
            "elapsed_seconds": elapsed,
        }
        history.append(metrics)
        if checkpoint_path is not None and (epoch % settings.checkpoint_every == 0 or epoch == settings.epochs):
            save_checkpoint(
                {
                    "kind": "evaluate",
                    "settings": settings.model_dump(mode="json"),
                    "architecture": text,
                    "fold": data.fold,
                    "classes": list(data.classes),
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": capture_rng_state(generator),
                    "history": history,
                    "seconds": elapsed,
                    "best": best,
                },
                checkpoint_path,
            )
        reporter(epoch, metrics)

    model.load_state_dict(best["state"])
    test = evaluate_split(
        model,
        data.test,
        n_classes=n_classes,
        batch_size=settings.batch_size,
        device=device,
        autocast=settings.mixed_precision,
    )
    test["n"] = len(data.test)
    return EvaluationResult(
        architecture=text,
        best_epoch=best["epoch"],
        valid=best["valid"],
        test=test,
        params=count_parameters(model),
        seconds=elapsed,
        history=history,
    )


def train_final_model(
    split: Split,
    *,
    architecture: Genotype | str,
    settings: EvalSettings,
    n_classes: int,
    epochs: int,
    device: torch.device,
) -> torch.nn.Module:
    """Train from scratch on every sample of ``split`` for a fixed number of epochs.

    For a deployable model: ``split`` holds all non-test speakers of a fold and ``epochs`` is
    the epoch chosen on the validation speakers when the fold was evaluated, so nothing here
    selects on data it trains on.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, but got {epochs}.")
    generator = seed_everything(settings.seed)
    model = build_network(
        architecture_text(architecture), settings=settings, n_classes=n_classes, in_channels=split.x.shape[1]
    ).to(device)  # not channels_last: see run_search
    weights = list(model.parameters())
    optimizer, scheduler = sgd_with_cosine(weights, settings=settings.weights, epochs=epochs)
    weight = inverse_frequency_weights(split.y, n_classes=n_classes).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight if settings.imbalance == "weighted-loss" else None)
    model.train()
    for epoch in range(1, epochs + 1):
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = settings.drop_path_prob * (epoch - 1) / epochs
        for x, y in iterate_batches(
            split,
            batch_size=settings.batch_size,
            shuffle=True,
            generator=generator,
            balanced=settings.imbalance == "balanced-sampling",
        ):
            weight_step(
                model,
                x.to(device),
                y.to(device),
                loss_fn=loss_fn,
                optimizer=optimizer,
                parameters=weights,
                grad_clip=settings.weights.grad_clip,
                autocast=settings.mixed_precision,
            )
        scheduler.step()
    return model.eval()
