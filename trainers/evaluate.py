"""Train an architecture from scratch on one fold and measure it honestly.

The epoch is chosen by UA on the fold's validation speakers (the released code of the paper
took the best epoch on the test fold, which inflates results). The test speakers are touched
exactly once, after training, with every test utterance counted (no ``drop_last``).

:func:`run_evaluation` and :func:`train_final_model` (a deployable model trained for a fixed
number of epochs) share one setup and one epoch loop, so the same seed gives the same network.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_space import (
    Architecture,
    LayerMixOptions,
    architecture_text,
    build_model,
    count_parameters,
    parse_architecture,
)
from trainers.augment import spec_augment
from trainers.checkpoint import check_resumable, load_checkpoint, save_checkpoint, save_then_report
from trainers.fold_data import FoldData, Split, iterate_batches
from trainers.metrics import absent_classes
from trainers.reporting import Reporter, ignore_reports
from trainers.reproducibility import capture_rng_state, restore_rng_state, seed_everything
from trainers.settings import EvalSettings, with_defaults_for_missing
from trainers.training import evaluate_split, make_loss, sgd_with_cosine, weight_step

__all__ = ["EvaluationResult", "build_network", "run_evaluation", "train_final_model"]


@dataclass(frozen=True)
class EvaluationResult:
    architecture: str  # architecture_text: genotype JSON, or a model name such as "baseline"
    best_epoch: int
    valid: dict[str, Any]  # metrics of the chosen epoch on the validation speakers
    test: dict[str, Any]  # ua, wa, macro_f1, absent_classes, confusion, n: measured once on the test speakers
    params: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    # softmax per utterance (N, K) float32, in split order: the chosen epoch's on the validation
    # speakers (None when resumed from a checkpoint written before they were kept), and the test's
    valid_probabilities: torch.Tensor | None = field(default=None, compare=False, repr=False)
    test_probabilities: torch.Tensor | None = field(default=None, compare=False, repr=False)


def build_network(
    architecture: Architecture,
    *,
    settings: EvalSettings,
    n_classes: int,
    in_channels: int,
    frontend: LayerMixOptions | None = None,
) -> nn.Module:
    """The untrained network of ``architecture``, sized by ``settings.shape`` widened and deepened
    by ``settings.widen`` / ``settings.deepen``, with ``settings.shape``'s head options (on the CPU)
    and ``frontend`` for SSL encoder layers (``ModelShape.frontend``)."""
    shape = settings.shape
    return build_model(
        architecture,
        layers=settings.network_layers,
        init_channels=settings.network_init_channels,
        n_classes=n_classes,
        lstm_hidden=shape.lstm_hidden,
        lstm_layers=shape.lstm_layers,
        dropout=shape.dropout,
        in_channels=in_channels,
        auxiliary=settings.auxiliary_weight > 0.0,
        mask_padding=settings.mask_padding,
        head=shape.head,
        frontend=frontend,
    )


@dataclass
class _Training:
    """A freshly seeded network with what trains it."""

    model: nn.Module
    weights: list[nn.Parameter]
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.CosineAnnealingLR
    loss_fn: nn.Module
    generator: torch.Generator  # shuffles the batches


@dataclass(frozen=True)
class _Epoch:
    epoch: int
    train_loss: float  # mean over the epoch's batches
    lr: float  # the lr the epoch trained with
    started: float  # time.perf_counter() when the epoch started


def _start_training(
    architecture: Architecture,
    *,
    train: Split,
    n_classes: int,
    settings: EvalSettings,
    epochs: int,
    device: torch.device,
) -> _Training:
    """Seed everything from ``settings.seed``, then build the network, optimiser and loss, in
    that order (building draws the initial weights from the seeded RNG)."""
    generator = seed_everything(settings.seed)
    frontend = settings.shape.frontend(tuple(train.x.shape[1:]), layered=train.layered)
    model = build_network(
        architecture, settings=settings, n_classes=n_classes, in_channels=train.x.shape[1], frontend=frontend
    )
    model = model.to(device)  # weights in the default layout; activations channels_last inside (see run_search)
    weights = list(model.parameters())
    optimizer, scheduler = sgd_with_cosine(weights, settings=settings.weights, epochs=epochs)
    loss_fn = make_loss(train.y, n_classes=n_classes, imbalance=settings.imbalance, device=device)
    return _Training(model, weights, optimizer, scheduler, loss_fn, generator)


def _train_epochs(
    run: _Training, train: Split, *, settings: EvalSettings, epochs: int, first_epoch: int, device: torch.device
) -> Iterator[_Epoch]:
    """Train epochs ``first_epoch..epochs`` on ``train``, yielding after each one's lr step."""
    for epoch in range(first_epoch, epochs + 1):
        started = time.perf_counter()
        run.model.train()
        if hasattr(run.model, "drop_path_prob"):  # ramps up linearly over training, as in DARTS
            run.model.drop_path_prob = settings.drop_path_prob * (epoch - 1) / epochs
        losses = [
            weight_step(
                run.model,
                spec_augment(x, settings.spec_augment, generator=run.generator).to(device),  # (B, C_in, F, T)
                y.to(device),  # (B,)
                loss_fn=run.loss_fn,
                optimizer=run.optimizer,
                parameters=run.weights,
                grad_clip=settings.weights.grad_clip,
                lengths=lengths,
                aux_weight=settings.auxiliary_weight,
                autocast=settings.mixed_precision,
            )
            for x, y, lengths in iterate_batches(
                train,
                batch_size=settings.batch_size,
                shuffle=True,
                generator=run.generator,
                balanced=settings.imbalance == "balanced-sampling",
            )
        ]
        lr = run.optimizer.param_groups[0]["lr"]
        run.scheduler.step()
        yield _Epoch(epoch=epoch, train_loss=sum(losses) / max(len(losses), 1), lr=lr, started=started)


def run_evaluation(
    data: FoldData,
    *,
    architecture: Architecture | str,
    settings: EvalSettings,
    device: torch.device,
    reporter: Reporter = ignore_reports,
    checkpoint_path: Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Train ``architecture`` on train speakers, pick the epoch on valid speakers, test once.

    ``architecture`` may be its text (genotype JSON or a model name). Resumes from
    ``checkpoint_path`` when it holds a checkpoint of the same settings, architecture, fold and
    classes (``CheckpointError`` naming what differs otherwise), and of the same ``provenance``
    (recorded as the checkpoint's ``data``, as in ``run_search``) unless it predates that record.

    ``data`` must be normalised as ``settings.normalization`` says (``FoldData.normalized``;
    ``run_fold`` does it): raw or otherwise normalised features are refused with a ValueError.
    """
    data.require_normalization(settings.normalization)
    architecture = parse_architecture(architecture)
    text = architecture_text(architecture)
    n_classes = len(data.classes)
    run = _start_training(
        architecture, train=data.train, n_classes=n_classes, settings=settings, epochs=settings.epochs, device=device
    )
    identity = {
        "kind": "evaluate",
        "settings": settings.model_dump(mode="json"),
        "architecture": text,
        "fold": data.fold,
        "classes": list(data.classes),
        **({"data": dict(provenance)} if provenance is not None else {}),
    }
    start_epoch, history, elapsed = 1, [], 0.0
    best = {"epoch": 0, "ua": -1.0, "valid": {}, "state": copy.deepcopy(run.model.state_dict())}
    state = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    if state is not None:
        if isinstance(state.get("settings"), Mapping):  # settings added since it was written: their defaults
            state = {**state, "settings": with_defaults_for_missing(state["settings"], EvalSettings)}
        check_resumable(state, identity=identity, path=checkpoint_path, optional=("data",))
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"], run.generator, device=device)
        start_epoch, history, elapsed, best = state["epoch"] + 1, state["history"], state["seconds"], state["best"]
        if "confusion" in best["valid"]:  # a checkpoint written before the metrics named absent classes
            best["valid"].setdefault("absent_classes", absent_classes(best["valid"]["confusion"]))

    def save() -> None:
        save_checkpoint(
            {
                **identity,
                "epoch": epoch,
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "rng": capture_rng_state(run.generator, device=device),
                "history": history,
                "seconds": elapsed,
                "best": best,
            },
            checkpoint_path,
        )

    for done in _train_epochs(
        run, data.train, settings=settings, epochs=settings.epochs, first_epoch=start_epoch, device=device
    ):
        epoch = done.epoch
        valid = evaluate_split(
            run.model,
            data.valid,
            n_classes=n_classes,
            batch_size=settings.batch_size,
            device=device,
            loss_fn=run.loss_fn,
            autocast=settings.mixed_precision,
            keep_probabilities=True,  # the chosen epoch's go into the run's predictions
        )
        valid_probabilities = valid.pop("probabilities")
        if valid["ua"] > best["ua"]:  # first epoch reaching the best valid UA wins ties
            best = {
                "epoch": epoch,
                "ua": valid["ua"],
                "valid": valid,
                "valid_probabilities": valid_probabilities,
                "state": copy.deepcopy(run.model.state_dict()),
            }
        epoch_seconds = time.perf_counter() - done.started
        elapsed += epoch_seconds
        metrics = {
            "phase": "eval",
            "epoch": epoch,
            "train_loss": done.train_loss,
            "valid_ua": valid["ua"],
            "valid_wa": valid["wa"],
            "valid_macro_f1": valid["macro_f1"],
            "valid_loss": valid["loss"],
            "best_epoch": best["epoch"],
            "best_valid_ua": best["ua"],
            "lr": done.lr,
            "seconds": epoch_seconds,
            "elapsed_seconds": elapsed,
        }
        history.append(metrics)
        due = epoch % settings.checkpoint_every == 0 or epoch == settings.epochs
        save_then_report(epoch, metrics, reporter=reporter, save=save if checkpoint_path is not None else None, due=due)

    run.model.load_state_dict(best["state"])
    test = evaluate_split(
        run.model,
        data.test,
        n_classes=n_classes,
        batch_size=settings.batch_size,
        device=device,
        autocast=settings.mixed_precision,
        keep_probabilities=True,
    )
    test["n"] = len(data.test)
    test_probabilities = test.pop("probabilities")
    return EvaluationResult(
        architecture=text,
        best_epoch=best["epoch"],
        valid=best["valid"],
        valid_probabilities=best.get("valid_probabilities"),
        test_probabilities=test_probabilities,
        test=test,
        params=count_parameters(run.model),
        seconds=elapsed,
        history=history,
    )


def train_final_model(
    split: Split,
    *,
    architecture: Architecture | str,
    settings: EvalSettings,
    n_classes: int,
    epochs: int,
    device: torch.device,
) -> nn.Module:
    """Train from scratch on every sample of ``split`` for a fixed number of epochs.

    For a deployable model: ``split`` holds all non-test speakers of a fold and ``epochs`` is
    the epoch chosen on the validation speakers when the fold was evaluated, so nothing here
    selects on data it trains on.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, but got {epochs}.")
    run = _start_training(
        parse_architecture(architecture),
        train=split,
        n_classes=n_classes,
        settings=settings,
        epochs=epochs,
        device=device,
    )
    for _ in _train_epochs(run, split, settings=settings, epochs=epochs, first_epoch=1, device=device):
        pass
    return run.model.eval()
