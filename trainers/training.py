"""Pieces both the search and the from-scratch evaluation use: loss, optimiser, one weight step,
and measuring a model on a split (every sample once, in eval mode)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from trainers.fold_data import Split, inverse_frequency_weights, iterate_batches
from trainers.metrics import classification_metrics
from trainers.settings import Imbalance, WeightOptimizer


def make_loss(
    labels: torch.Tensor, *, n_classes: int, imbalance: Imbalance, device: torch.device
) -> nn.CrossEntropyLoss:
    """Cross-entropy weighted by the inverse class frequencies of the training ``labels`` (B,)
    for ``weighted-loss``; plain otherwise (``balanced-sampling`` balances the batches instead)."""
    weight = inverse_frequency_weights(labels, n_classes=n_classes).to(device) if imbalance == "weighted-loss" else None
    return nn.CrossEntropyLoss(weight=weight)


def sgd_with_cosine(
    parameters: Iterable[nn.Parameter], *, settings: WeightOptimizer, epochs: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    optimizer = torch.optim.SGD(
        list(parameters), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=settings.lr_min)
    return optimizer, scheduler


def mixed_precision(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled`` (bf16 keeps fp32's range: no loss scaling)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def weight_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[nn.Parameter],
    grad_clip: float,
    lengths: torch.Tensor | None = None,
    aux_weight: float = 0.0,
    autocast: bool = False,
) -> float:
    """One SGD step on ``parameters`` (the weights; never the alphas); returns the batch loss.

    ``lengths`` (B,): valid frames per clip. ``aux_weight > 0`` adds that share of the auxiliary
    head's loss (models with ``forward_with_aux``, DARTS: 0.4); the returned loss is the main one.
    """
    optimizer.zero_grad(set_to_none=True)
    with mixed_precision(x.device, autocast):
        if aux_weight > 0.0 and hasattr(model, "forward_with_aux"):
            logits, aux_logits = model.forward_with_aux(x, lengths)  # (B, n_classes) each
            main = loss_fn(logits, y)
            loss = main if aux_logits is None else main + aux_weight * loss_fn(aux_logits, y)
        else:
            main = loss = loss_fn(model(x, lengths), y)
    loss.backward()
    nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()
    return float(main.detach())


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    split: Split,
    *,
    n_classes: int,
    batch_size: int,
    device: torch.device,
    loss_fn: nn.Module | None = None,
    autocast: bool = False,
    keep_probabilities: bool = False,
) -> dict:
    """UA, WA, macro-F1 (over all ``n_classes`` classes), ``absent_classes``, confusion and mean loss over
    every sample of ``split`` (eval mode); see ``trainers.metrics``.

    ``keep_probabilities`` adds ``probabilities``: the softmax of each sample's logits,
    ``(N, n_classes)`` float32 on the CPU, in ``split`` order (what ``trainers.predictions`` stores).
    """
    was_training = model.training
    model.eval()
    predictions, probabilities, total_loss = [], [], 0.0
    for x, y, lengths in iterate_batches(split, batch_size=batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        with mixed_precision(device, autocast):
            logits = model(x, lengths).float()  # (B, n_classes)
        if loss_fn is not None:
            total_loss += float(loss_fn(logits, y)) * len(y)
        predictions.append(logits.argmax(dim=1).cpu())
        if keep_probabilities:
            probabilities.append(torch.softmax(logits, dim=1).cpu())
    model.train(was_training)
    predicted = torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.int64)
    metrics = classification_metrics(split.y.numpy(), predicted.numpy(), n_classes=n_classes)
    if loss_fn is not None:
        metrics["loss"] = total_loss / max(len(split), 1)
    if keep_probabilities:
        metrics["probabilities"] = torch.cat(probabilities) if probabilities else torch.empty(0, n_classes)
    return metrics
