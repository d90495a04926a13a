"""Sub-networks of a supernet measured with its shared weights: a genotype's single path, or the
supernet with operations or edges masked out.

Random search with weight sharing (Li & Talwalkar, UAI 2019) ranks random genotypes by the
accuracy of their paths through a supernet trained on random paths; DARTS-PT (Wang et al., ICLR
2021) chooses operations by what masking them out costs. Both measure a sub-network with the
supernet's weights, which is what :func:`with_mixing` gives: the supernet computing given
``MixingWeights`` (zero weights not computed) as a plain ``model(x, lengths)`` module, so the
project's one evaluation loop (``trainers.training.evaluate_split``) and weight step measure and
train it.

BatchNorm: the supernet's running statistics were gathered on other paths (random-ws) or with every
operation on (DARTS), so they do not describe a masked supernet. ``batch_statistics=True``
normalises with each batch's own statistics instead (BatchNorm in training mode, running
statistics left untouched, dropout still off), as DARTS-PT's code measures its masked supernets
(``infer(..., _eval=False)``); Li & Talwalkar's code evaluates in eval mode (running statistics),
the default here. Batches are then the split in order, so a measure is deterministic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from search_space import Genotype, MixingWeights, SuperNet, frozen_batchnorm_stats
from trainers.fold_data import Split
from trainers.training import evaluate_split

__all__ = ["score_genotypes_with_shared_weights", "shared_weight_metrics", "with_mixing"]


@contextlib.contextmanager
def _batchnorm_in_training_mode(module: nn.Module) -> Iterator[None]:
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in norms]
    try:
        for m in norms:
            m.train(True)
        with frozen_batchnorm_stats(module):
            yield
    finally:
        for m, mode in zip(norms, modes):
            m.train(mode)


def _device(supernet: SuperNet, device: torch.device | str | None) -> torch.device:
    return next(supernet.parameters()).device if device is None else torch.device(device)


class _Mixed(nn.Module):
    """``supernet`` computing ``mixing`` instead of its alphas' mix (see :func:`with_mixing`)."""

    def __init__(self, supernet: SuperNet, mixing: MixingWeights, *, batch_statistics: bool) -> None:
        super().__init__()
        self.supernet = supernet
        self.mixing = mixing
        self.batch_statistics = batch_statistics

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.batch_statistics and not self.training:
            with _batchnorm_in_training_mode(self.supernet):
                return self.supernet(x, lengths, mixing=self.mixing)  # (B, n_classes)
        return self.supernet(x, lengths, mixing=self.mixing)  # (B, n_classes)


def with_mixing(supernet: SuperNet, mixing: MixingWeights, *, batch_statistics: bool = False) -> nn.Module:
    """``supernet`` as a module whose ``forward(x, lengths)`` computes ``mixing`` (same parameters,
    trained in place by a weight step on it). In eval mode, ``batch_statistics`` normalises with
    each batch's statistics (module docstring)."""
    return _Mixed(supernet, mixing, batch_statistics=batch_statistics)


def shared_weight_metrics(
    supernet: SuperNet,
    mixings: Sequence[MixingWeights],
    split: Split,
    *,
    batch_size: int,
    device: torch.device | str | None = None,
    loss_fn: nn.Module | None = None,
    autocast: bool = False,
    batch_statistics: bool = False,
) -> list[dict]:
    """``evaluate_split`` of the supernet computing each of ``mixings`` on ``split`` (every sample
    once, eval mode): UA, WA, macro-F1, confusion and, with ``loss_fn``, the mean loss. ``device``
    (None: the supernet's) is where the batches go."""
    n_classes = int(supernet.config["n_classes"])
    device = _device(supernet, device)
    return [
        evaluate_split(
            with_mixing(supernet, mixing, batch_statistics=batch_statistics),
            split,
            n_classes=n_classes,
            batch_size=batch_size,
            device=device,
            loss_fn=loss_fn,
            autocast=autocast,
        )
        for mixing in mixings
    ]


def score_genotypes_with_shared_weights(
    supernet: SuperNet,
    genotypes: Sequence[Genotype],
    split: Split,
    *,
    batch_size: int,
    device: torch.device | str | None = None,
    autocast: bool = False,
    batch_statistics: bool = False,
) -> list[float]:
    """UA on ``split`` of each genotype's path through ``supernet`` with its shared weights.

    What random search with weight sharing ranks its candidates by; comparing these scores with
    the genotypes' stand-alone UA (Kendall tau) measures how well a supernet ranks architectures.
    Each genotype must fit the supernet (its nodes, its primitives). The supernet stays where it
    is; ``split`` goes batch by batch to ``device`` (None: the supernet's).
    """
    mixings = [supernet.path_mixing(genotype) for genotype in genotypes]
    metrics = shared_weight_metrics(
        supernet,
        mixings,
        split,
        batch_size=batch_size,
        device=device,
        autocast=autocast,
        batch_statistics=batch_statistics,
    )
    return [float(m["ua"]) for m in metrics]
