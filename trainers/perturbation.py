"""Perturbation-based architecture selection (DARTS-PT: Wang et al., ICLR 2021, "Rethinking
Architecture Selection in Differentiable NAS").

The argmax of the alphas is a poor guide to how much an operation contributes to the supernet;
DARTS-PT asks the supernet instead. After the search, edge by edge (in a random order, as the
paper's ``--edge_decision random``), each operation other than ``none`` is masked out of the
edge's mix (its weight set to 0, the others left as they are) and the supernet measured; the
operation whose removal leaves the lowest UA is the one the edge keeps, and the edge is then fixed
to it (weight 1, "projected"). Once every edge has its operation, node by node (again in a random
order) the incoming edges are masked one at a time and the one whose removal costs least is
dropped, until two remain. Normal and reduction cells are decided in turn, one decision each per
step, as in the paper's code. ``pt_finetune_epochs`` trains the supernet's weights on the weight
speakers for that many epochs between two steps, with the decisions so far in place (the paper:
5 epochs, at a tenth of the search's learning rate, cosine-annealed over all of them).

Measured on the **alpha speakers** (never validation, never test), with each batch's BatchNorm
statistics as DARTS-PT's code does (``trainers.shared_weights``). The paper's criterion is
accuracy; here it is UA, the project's metric (mean per-class recall), with the loss breaking ties
(higher loss after removal = more important), then the order of the primitives (operations) or the
higher input index being dropped (edges). Unlike the paper, the alphas do not train during the
fine-tuning: only the weights do, under the mixing weights of the decisions so far.

Cost: per cell kind, ``E * m`` measurements for the operations (E edges, m real operations;
none when m = 1) and ``sum_i sum_{r=3}^{i+2} r`` for the edges, each a forward pass over the alpha
speakers; for 4 nodes and the 7 DARTS operations, 98 + 22 = 120 per cell kind. The P-DARTS skip cap
(``max_skip_normal``) is an argmax rule and does not apply here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from search_space import Genotype, MixingWeights, SuperNet, num_edges
from trainers.augment import spec_augment
from trainers.fold_data import Split, iterate_batches
from trainers.settings import SearchSettings
from trainers.shared_weights import shared_weight_metrics, with_mixing
from trainers.training import weight_step

__all__ = ["perturbation_selection", "select_by_perturbation"]

Score = Callable[[MixingWeights], tuple[float, float]]
"""``(ua, loss)`` of the supernet computing a mixing, on the alpha speakers."""

_KINDS = ("normal", "reduce")


@dataclass
class _Cell:
    ops: torch.Tensor  # (E, n_ops): the softmaxed alphas, an edge's row one-hot once decided
    edges: torch.Tensor  # (E,): edge weights, 0 for dropped edges
    decided: list[int | None]  # op column chosen per edge
    dropped: set[int]  # edges removed by the node decisions


def _node_rows(node: int) -> list[int]:
    start = node * (node + 3) // 2
    return list(range(start, start + node + 2))


def _mixing(cells: dict[str, _Cell]) -> MixingWeights:
    return MixingWeights(
        normal=cells["normal"].ops,
        reduce=cells["reduce"].ops,
        normal_edges=cells["normal"].edges,
        reduce_edges=cells["reduce"].edges,
    )


def _masked(
    cells: dict[str, _Cell], kind: str, *, op: tuple[int, int] | None = None, edge: int | None = None
) -> MixingWeights:
    """The current mixing with one op (edge row, column) or one edge of ``kind`` set to 0."""
    cell = cells[kind]
    ops, edges = cell.ops, cell.edges
    if op is not None:
        ops = ops.clone()
        ops[op] = 0.0
    if edge is not None:
        edges = edges.clone()
        edges[edge] = 0.0
    return _mixing({**cells, kind: _Cell(ops=ops, edges=edges, decided=cell.decided, dropped=cell.dropped)})


def _decide_op(cells: dict[str, _Cell], kind: str, edge: int, real: list[int], score: Score) -> int:
    """The column whose removal from ``edge`` costs most: lowest UA, then highest loss, then first."""
    if len(real) == 1:
        best = real[0]
    else:
        measured = [(score(_masked(cells, kind, op=(edge, k))), k) for k in real]
        best = min(measured, key=lambda m: (m[0][0], -m[0][1], real.index(m[1])))[1]
    cell = cells[kind]
    cell.ops[edge] = 0.0
    cell.ops[edge, best] = 1.0
    cell.decided[edge] = best
    return len(real) if len(real) > 1 else 0


def _decide_edges(cells: dict[str, _Cell], kind: str, node: int, score: Score) -> int:
    """Drop ``node``'s incoming edges one at a time, the least costly first, until two remain."""
    remaining, evaluations = _node_rows(node), 0
    while len(remaining) > 2:
        measured = [(score(_masked(cells, kind, edge=e)), e) for e in remaining]
        evaluations += len(measured)
        # least harm: highest UA without it, then lowest loss, then the higher input index
        _, dropped = max(measured, key=lambda m: (m[0][0], -m[0][1], m[1]))
        cells[kind].edges[dropped] = 0.0
        cells[kind].dropped.add(dropped)
        remaining.remove(dropped)
    return evaluations


def _cell_genotype(cell: _Cell, primitives: Sequence[str], nodes: int) -> tuple[tuple[str, int], ...]:
    edges: list[tuple[str, int]] = []
    for i in range(nodes):
        rows = _node_rows(i)
        kept = [j for j, e in enumerate(rows) if e not in cell.dropped]
        for j in kept:
            edges.append((primitives[cell.decided[rows[j]]], j))
    return tuple(edges)


def perturbation_selection(
    initial: MixingWeights,
    *,
    primitives: Sequence[str],
    nodes: int,
    score: Score,
    generator: torch.Generator,
    finetune: Callable[[MixingWeights], None] | None = None,
) -> tuple[Genotype, int]:
    """DARTS-PT's decisions (module docstring) from the supernet's ``initial`` mixing weights;
    ``score`` measures a mixing, ``generator`` orders the edges and nodes, ``finetune`` (if any)
    runs between two steps. Returns the genotype and the number of measurements made."""
    n_e = num_edges(nodes)
    real = [k for k, op in enumerate(primitives) if op != "none"]
    cells = {}
    for kind in _KINDS:
        ops = getattr(initial, kind).detach().clone()  # (E, n_ops)
        edges = getattr(initial, f"{kind}_edges")
        edges = torch.ones(n_e, dtype=ops.dtype, device=ops.device) if edges is None else edges.detach().clone()
        cells[kind] = _Cell(ops=ops, edges=edges, decided=[None] * n_e, dropped=set())

    edge_orders = {kind: torch.randperm(n_e, generator=generator).tolist() for kind in _KINDS}
    node_orders = {kind: (torch.randperm(nodes - 1, generator=generator) + 1).tolist() for kind in _KINDS}
    steps: list[Callable[[str], int]] = [
        lambda kind, t=t: _decide_op(cells, kind, edge_orders[kind][t], real, score) for t in range(n_e)
    ] + [lambda kind, t=t: _decide_edges(cells, kind, node_orders[kind][t], score) for t in range(nodes - 1)]
    evaluations = 0
    for s, step in enumerate(steps):
        if s > 0 and finetune is not None:
            finetune(_mixing(cells).detached())  # a snapshot: the decisions go on editing theirs
        for kind in _KINDS:
            evaluations += step(kind)

    concat = tuple(range(2, nodes + 2))
    genotype = Genotype(
        normal=_cell_genotype(cells["normal"], primitives, nodes),
        normal_concat=concat,
        reduce=_cell_genotype(cells["reduce"], primitives, nodes),
        reduce_concat=concat,
    )
    return genotype, evaluations


class _FineTune:
    """Weight training between DARTS-PT's steps: a fresh SGD at a tenth of the search's lr,
    cosine-annealed over all of the fine-tuning epochs (the paper's ``reset_optimizer(lr / 10)``)."""

    def __init__(
        self,
        model: SuperNet,
        *,
        weight_data: Split,
        settings: SearchSettings,
        loss_fn: nn.Module,
        device: torch.device,
        generator: torch.Generator,
        steps: int,
    ) -> None:
        self.model, self.weight_data, self.settings = model, weight_data, settings
        self.loss_fn, self.device, self.generator = loss_fn, device, generator
        self.weights = list(model.weight_parameters())
        w = settings.weights
        lr = w.lr / 10
        self.optimizer = torch.optim.SGD(self.weights, lr=lr, momentum=w.momentum, weight_decay=w.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(1, steps * settings.pt_finetune_epochs), eta_min=min(w.lr_min, lr)
        )

    def __call__(self, mixing: MixingWeights) -> None:
        settings = self.settings
        net = with_mixing(self.model, mixing).train()
        for _ in range(settings.pt_finetune_epochs):
            batches = iterate_batches(
                self.weight_data,
                batch_size=settings.batch_size,
                shuffle=True,
                generator=self.generator,
                balanced=settings.imbalance == "balanced-sampling",
            )
            for x, y, lengths in batches:
                x = spec_augment(x, settings.spec_augment, generator=self.generator).to(self.device)  # (B, 1, F, T)
                weight_step(
                    net,
                    x,
                    y.to(self.device),
                    loss_fn=self.loss_fn,
                    optimizer=self.optimizer,
                    parameters=self.weights,
                    grad_clip=settings.weights.grad_clip,
                    lengths=lengths,
                    autocast=settings.mixed_precision,
                )
            self.scheduler.step()


def select_by_perturbation(
    model: SuperNet,
    *,
    weight_data: Split,
    arch_data: Split,
    settings: SearchSettings,
    loss_fn: nn.Module,
    device: torch.device,
    generator: torch.Generator,
) -> tuple[Genotype, dict]:
    """DARTS-PT on a searched ``model``: decisions measured on ``arch_data`` (the alpha speakers),
    fine-tuning (``settings.pt_finetune_epochs``) on ``weight_data``; fine-tuning trains the model's
    weights in place. Returns the genotype and what to record (measurements, seconds)."""
    started = time.perf_counter()
    nodes = settings.shape.nodes

    def score(mixing: MixingWeights) -> tuple[float, float]:
        (metrics,) = shared_weight_metrics(
            model,
            [mixing],
            arch_data,
            batch_size=settings.batch_size,
            device=device,
            loss_fn=loss_fn,
            autocast=settings.mixed_precision,
            batch_statistics=True,
        )
        return float(metrics["ua"]), float(metrics["loss"])

    finetune = None
    if settings.pt_finetune_epochs > 0:
        steps = num_edges(nodes) + nodes - 2  # fine-tuning runs between the E + nodes - 1 steps
        finetune = _FineTune(
            model,
            weight_data=weight_data,
            settings=settings,
            loss_fn=loss_fn,
            device=device,
            generator=generator,
            steps=steps,
        )
    with torch.no_grad():
        initial = model.mixing_weights().detached()
    genotype, evaluations = perturbation_selection(
        initial, primitives=settings.primitives, nodes=nodes, score=score, generator=generator, finetune=finetune
    )
    return genotype, {"pt_evaluations": evaluations, "pt_seconds": time.perf_counter() - started}
