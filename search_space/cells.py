"""Cells: the supernet's search cell (all edges mixed) and the discrete cell of a Genotype.

A cell reads the outputs of the two previous cells, ``s0`` (B, C_pp, H0, W0) and ``s1``
(B, C_p, H, W), maps both to C channels at s1's resolution (``s0`` is reduced when the
previous cell was a reduction cell, i.e. H0 = 2H up to rounding), builds its intermediate
nodes and concatenates them along channels. A reduction cell halves H and W (rounding up)
on the edges that read the cell inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from search_space.genotype import Genotype
from search_space.mixed_op import MixedOp
from search_space.primitives import (
    PRIMITIVES,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    build_op,
)

__all__ = ["Cell", "SearchCell", "drop_path"]


def _preprocess(C_pp: int, C_p: int, C: int, reduction_prev: bool, affine: bool):
    if reduction_prev:  # s0 has twice s1's resolution
        pre0: nn.Module = FactorizedReduce(C_pp, C, affine=affine)
    else:
        pre0 = ReLUConvBN(C_pp, C, 1, 1, 0, affine=affine)
    return pre0, ReLUConvBN(C_p, C, 1, 1, 0, affine=affine)


class SearchCell(nn.Module):
    """Supernet cell with ``nodes`` intermediate nodes; every node mixes all earlier states.

    ``forward(s0, s1, weights, edge_weights=None)``: ``weights`` is (num_edges, n_ops), the
    softmaxed alphas; ``edge_weights`` (num_edges,) are PC-DARTS' per-node softmaxed betas or
    None. Edges are ordered node by node, inputs 0..i+1 for node i. Output:
    (B, nodes * C, H', W') with H' = ceil(H / 2) for a reduction cell, else H.
    """

    def __init__(
        self,
        *,
        nodes: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        primitives: Sequence[str] = PRIMITIVES,
        pc_k: int = 1,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.nodes = nodes
        self.reduction = reduction
        self.multiplier = nodes
        self.preprocess0, self.preprocess1 = _preprocess(C_pp, C_p, C, reduction_prev, False)
        self.edges = nn.ModuleList(
            MixedOp(
                C,
                2 if reduction and j < 2 else 1,
                primitives=primitives,
                pc_k=pc_k,
                checkpoint=checkpoint,
            )
            for i in range(nodes)
            for j in range(i + 2)
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        plan: Sequence[tuple[int, ...] | None] | None = None,
    ) -> torch.Tensor:
        """``plan`` (None: every edge, every op): per edge, None to leave the edge out (its edge
        weight is 0) or the op columns to compute (see :meth:`MixedOp.forward`)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # 2 x (B, C, H, W)
        relus = [F.relu(h) for h in states]  # 2 x (B, C, H, W): one ReLU per state, shared by its edges
        offset = 0
        for i in range(self.nodes):
            node = None
            for j, h in enumerate(states):
                e = offset + j
                if plan is not None and plan[e] is None:
                    continue
                out = self.edges[e](h, weights[e], relus[j], None if plan is None else plan[e])  # (B, C, H', W')
                if edge_weights is not None:
                    out = edge_weights[e] * out
                node = out if node is None else node + out
            if node is None:
                raise ValueError(f"node {i} of the cell has no incoming edge left: every edge weight into it is 0.")
            offset += len(states)
            states.append(node)
            if len(relus) < self.nodes + 1:  # the last node feeds no edge
                relus.append(F.relu(node))  # (B, C, H', W')
        return torch.cat(states[2:], dim=1)  # (B, nodes * C, H', W')


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Drop whole samples' paths with probability ``drop_prob`` (per sample, rescaled)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep  # (B, C, H, W)


class Cell(nn.Module):
    """Discrete cell built from ``genotype.normal`` or ``genotype.reduce`` (affine BatchNorm).

    ``forward(s0, s1, drop_prob=0.0)`` returns (B, len(concat) * C, H', W'); in training mode,
    ``drop_prob > 0`` applies drop-path to every non-identity op output.
    """

    def __init__(
        self,
        genotype: Genotype,
        *,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.reduction = reduction
        self.nodes = len(edges) // 2
        self.multiplier = len(self.concat)
        self.out_channels = self.multiplier * C
        self.preprocess0, self.preprocess1 = _preprocess(C_pp, C_p, C, reduction_prev, True)
        self.indices = tuple(index for _, index in edges)
        self.ops = nn.ModuleList(
            build_op(name, C, 2 if reduction and index < 2 else 1, affine=True) for name, index in edges
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # 2 x (B, C, H, W)
        for i in range(self.nodes):
            node = None
            for e in (2 * i, 2 * i + 1):
                op = self.ops[e]
                h = op(states[self.indices[e]])  # (B, C, H', W')
                if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                node = h if node is None else node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)  # (B, multiplier * C, H', W')


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells: at 1/3 and 2/3 of the depth (DARTS), deduplicated."""
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
        raise ValueError(f"layers must be an int >= 1, but got {layers!r}.")
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def search_depth_problem(layers: int) -> str | None:
    """Why a supernet of ``layers`` cells cannot search a normal cell (None when it can): below 3
    layers every cell is a reduction cell, so ``alphas_normal`` never gets a gradient and the
    "derived" normal cell would be the initial noise."""
    if len(reduction_layers(layers)) < layers:
        return None
    return (
        f"a search needs at least 3 layers, but got {layers}: with fewer, every cell is a reduction cell "
        "(they sit at 1/3 and 2/3 depth), so the normal cell's alphas would never train and its derived "
        "genotype would be initial noise"
    )


def stack_cells(
    *, layers: int, in_channels: int, stem_multiplier: int, init_channels: int, make_cell: Callable[..., nn.Module]
) -> tuple[nn.Sequential, nn.ModuleList, int]:
    """The DARTS macro-structure the supernet and the discrete network share.

    A 3x3 conv stem with ``stem_multiplier * init_channels`` channels, then ``layers`` cells
    with reduction cells (channels doubled) at ``reduction_layers(layers)``. ``make_cell`` is
    called with ``C_pp, C_p, C, reduction, reduction_prev`` and returns a cell with a
    ``multiplier`` (its output has ``multiplier * C`` channels). Returns the stem, the cells
    and the channel count of the last cell's output.
    """
    reductions = reduction_layers(layers)
    C_stem = stem_multiplier * init_channels
    stem = nn.Sequential(
        nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
        nn.BatchNorm2d(C_stem),
    )
    C_pp, C_p, C = C_stem, C_stem, init_channels
    cells, reduction_prev = [], False
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            C *= 2
        cell = make_cell(C_pp=C_pp, C_p=C_p, C=C, reduction=reduction, reduction_prev=reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        C_pp, C_p = C_p, cell.multiplier * C
    return stem, nn.ModuleList(cells), C_p
