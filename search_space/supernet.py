"""The DARTS supernet for speech features: stem -> search cells -> recurrent head.

Architecture weights (alphas, and PC-DARTS betas when edge normalisation is on) are
``nn.Parameter`` attributes of the module, so they are saved in ``state_dict()`` and in every
checkpoint. Because ``parameters()`` therefore yields them too, optimisers must be built from
:meth:`SuperNet.weight_parameters` (network weights) and :meth:`SuperNet.arch_parameters`
(architecture weights), which partition ``parameters()``.

``sequence`` (a mapping ``{"ops": [...], "nodes": n, "hidden": h}``; None, the default: the
fixed LSTM) searches the sequence stage too: the head runs a
:class:`~search_space.sequence_cell.SearchSequenceCell` in place of the LSTM, mixed by
``alphas_sequence`` (sequence_num_edges(n), len(ops)), an architecture weight like the others,
so the architect's gradient (first and second order) covers it and :meth:`SuperNet.genotype`
derives a sequence cell.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from search_space.cells import SearchCell, search_depth_problem, stack_cells
from search_space.frontend import LayerMix, LayerMixOptions, network_input
from search_space.genotype import (
    Genotype,
    alpha_entropy,
    derive_genotype,
    node_softmax,
    num_edges,
)
from search_space.head import HeadOptions, RecurrentHead
from search_space.primitives import PRIMITIVES, validate_primitives
from search_space.sequence_cell import SearchSequenceCell, sequence_num_edges, validate_sequence_ops

__all__ = ["MixingWeights", "SuperNet"]


def _check_int(name: str, value: object, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, but got {value!r}.")


@dataclass(frozen=True)
class MixingWeights:
    """What every supernet edge mixes, per cell kind: op weights and optional edge weights.

    The default is the softmax of the alphas (and the node-softmax of PC-DARTS' betas):
    :meth:`SuperNet.mixing_weights`. Other weights evaluate sub-networks with the shared weights:
    a genotype's single path (:meth:`SuperNet.path_mixing`, random search with weight sharing) or
    the supernet with one operation or edge masked out (DARTS-PT's perturbation). A weight that is
    exactly 0 is not computed (``SuperNet.forward``).
    """

    normal: torch.Tensor  # (E, n_ops)
    reduce: torch.Tensor  # (E, n_ops)
    normal_edges: torch.Tensor | None = None  # (E,), or None: every edge weighs 1
    reduce_edges: torch.Tensor | None = None  # (E,)
    sequence: torch.Tensor | None = None  # (E_seq, n_seq_ops); None: the softmax of the sequence alphas

    def detached(self) -> MixingWeights:
        """A copy cut from autograd (and from the alphas: editing it leaves them alone)."""
        copy = lambda t: None if t is None else t.detach().clone()  # noqa: E731
        return MixingWeights(
            copy(self.normal), copy(self.reduce), copy(self.normal_edges), copy(self.reduce_edges), copy(self.sequence)
        )


def _sequence_search(sequence: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``sequence`` checked and JSON-ready: ``{"ops": [...], "nodes": n, "hidden": h}`` or None."""
    if sequence is None:
        return None
    if not isinstance(sequence, Mapping) or set(sequence) != {"ops", "nodes", "hidden"}:
        raise ValueError(f"sequence must be None or a mapping with keys ops, nodes, hidden, but got {sequence!r}.")
    _check_int("sequence nodes", sequence["nodes"])
    _check_int("sequence hidden", sequence["hidden"])
    return {
        "ops": list(validate_sequence_ops(sequence["ops"])),
        "nodes": sequence["nodes"],
        "hidden": sequence["hidden"],
    }


def _edge_index(node: int, input_index: int) -> int:
    """Row of edge ``input_index -> node`` in the alphas: node i's inputs start at i (i + 3) / 2."""
    return node * (node + 3) // 2 + input_index


class SuperNet(nn.Module):
    """Differentiable search network: input (B, in_channels, F, T) -> logits (B, n_classes).

    ``layers`` search cells (reduction cells at ``reduction_layers(layers)``) each with
    ``nodes`` intermediate nodes over ``primitives``; channels start at ``init_channels`` and
    double at every reduction; the stem has ``stem_multiplier * init_channels`` channels.
    ``pc_k > 1`` turns on PC-DARTS partial channels (``init_channels`` must be divisible by
    ``pc_k``); ``edge_normalization=True`` adds PC-DARTS' per-edge betas. ``head``
    (:class:`search_space.head.HeadOptions`) is the recurrent head's options, as in the
    discrete networks.

    ``checkpoint=True`` (the default) recomputes each edge's inner activations in the backward
    pass instead of storing them (see :class:`search_space.MixedOp`): same values and
    gradients, far less memory. It only acts while autograd records (not under ``no_grad``).

    ``channels_last=True`` (the default) keeps the cells' activations (never the weights) in
    channels_last layout, where torch's CPU depthwise convolutions and 3x3 pools are several
    times faster; the edges share one ReLU per node, dilated depthwise convolutions run as
    undilated ones on polyphase sub-images and 1x1 convolutions as matrix products
    (:mod:`search_space.fast_conv`); results equal the default layout's up to float rounding.
    Measured (``benchmarks/results/supernet.json``; a 2-core CPU, one thread, paper setting:
    4 layers, 4 nodes, 8 channels, 1 x 128 x 128), one forward+backward at batch 8: 6.7 s at
    1.58 GiB peak RSS with the defaults vs 9.8 s at 4.99 GiB for the plain DARTS reference
    (``benchmarks/reference_darts.py``), 1.45x its speed at 0.32x its memory (batch 16: 1.89x at
    0.26x); in earlier alternating runs, ``checkpoint=False`` took ~0.7x the defaults' time at ~3x
    their memory and ``channels_last=False`` ~1.5x their time. Where the time goes
    (torch.profiler, self CPU): depthwise convolution backward 17 %, 1x1 convolutions as matrix
    products 11 %, batch norm 20 %, layout copies 10 %, depthwise convolution forward 8 %.
    Measured and not taken: stride-1 pools computed separably (slower than torch's channels_last
    pools), a weighted-sum backward with dot products (0.975x), ``torch.compile`` (still
    compiling after 15 minutes at 64 x 64 on this machine).
    """

    def __init__(
        self,
        *,
        layers: int,
        nodes: int,
        init_channels: int,
        n_classes: int,
        primitives: Sequence[str] = PRIMITIVES,
        stem_multiplier: int = 3,
        lstm_hidden: int = 128,
        lstm_layers: int = 1,
        dropout: float = 0.3,
        pc_k: int = 1,
        edge_normalization: bool = False,
        checkpoint: bool = True,
        channels_last: bool = True,
        in_channels: int = 1,
        head: HeadOptions | Mapping[str, Any] | None = None,
        sequence: Mapping[str, Any] | None = None,
        frontend: LayerMixOptions | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        primitives = validate_primitives(primitives)
        sequence = _sequence_search(sequence)
        head = HeadOptions.of(head)
        frontend = LayerMixOptions.of(frontend)
        for name, value in (
            ("nodes", nodes),
            ("init_channels", init_channels),
            ("n_classes", n_classes),
            ("stem_multiplier", stem_multiplier),
            ("pc_k", pc_k),
            ("in_channels", in_channels),
        ):
            _check_int(name, value)
        if init_channels % pc_k != 0:
            raise ValueError(f"init_channels ({init_channels}) must be divisible by pc_k ({pc_k}).")
        if frontend is not None and frontend.layers != in_channels:
            raise ValueError(
                f"SuperNet: in_channels ({in_channels}) must equal the frontend's layers ({frontend.layers}): "
                "the input stacks one map per encoder layer."
            )
        depth_problem = search_depth_problem(layers)
        if depth_problem is not None:
            raise ValueError(f"{depth_problem}.")
        self._config: dict[str, Any] = {
            "layers": layers,
            "nodes": nodes,
            "init_channels": init_channels,
            "n_classes": n_classes,
            "primitives": list(primitives),
            "stem_multiplier": stem_multiplier,
            "lstm_hidden": lstm_hidden,
            "lstm_layers": lstm_layers,
            "dropout": dropout,
            "pc_k": pc_k,
            "edge_normalization": bool(edge_normalization),
            "checkpoint": bool(checkpoint),
            "channels_last": bool(channels_last),
            "in_channels": in_channels,
            "head": head.to_dict(),
            "frontend": None if frontend is None else frontend.to_dict(),
        }
        if sequence is not None:  # absent, not None, in the config of a fixed-LSTM supernet (as before)
            self._config["sequence"] = sequence
        self.sequence = sequence
        self.primitives = primitives
        self.nodes = nodes
        self.in_channels = in_channels
        self.channels_last = bool(channels_last)
        self.frontend = None if frontend is None else LayerMix(frontend)

        self.stem, self.cells, C_p = stack_cells(
            layers=layers,
            in_channels=in_channels if frontend is None else 1,
            stem_multiplier=stem_multiplier,
            init_channels=init_channels,
            make_cell=functools.partial(
                SearchCell, nodes=nodes, primitives=primitives, pc_k=pc_k, checkpoint=checkpoint
            ),
        )
        self.head = RecurrentHead(
            C_p,
            n_classes=n_classes,
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            dropout=dropout,
            options=head,
            sequence_cell=None
            if sequence is None
            else SearchSequenceCell(hidden=sequence["hidden"], nodes=sequence["nodes"], ops=sequence["ops"]),
        )

        n_e, n_ops = num_edges(nodes), len(primitives)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(n_e, n_ops))  # (E, n_ops)
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(n_e, n_ops))  # (E, n_ops)
        if edge_normalization:
            self.betas_normal: nn.Parameter | None = nn.Parameter(1e-3 * torch.randn(n_e))  # (E,)
            self.betas_reduce: nn.Parameter | None = nn.Parameter(1e-3 * torch.randn(n_e))  # (E,)
        else:
            self.betas_normal = None
            self.betas_reduce = None
        self.alphas_sequence: nn.Parameter | None = None
        if sequence is not None:
            shape = (sequence_num_edges(sequence["nodes"]), len(sequence["ops"]))
            self.alphas_sequence = nn.Parameter(1e-3 * torch.randn(*shape))  # (E_seq, n_seq_ops)

    # ------------------------------------------------------------------ configuration

    @property
    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON-ready); ``SuperNet(**net.config)`` rebuilds the net."""
        frontend = self._config["frontend"]
        config = dict(
            self._config,
            primitives=list(self._config["primitives"]),
            head=dict(self._config["head"]),
            frontend=None if frontend is None else dict(frontend),
        )
        if "sequence" in config:
            config["sequence"] = dict(config["sequence"], ops=list(config["sequence"]["ops"]))
        return config

    # ------------------------------------------------------------------ parameters

    def named_arch_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Architecture weights by name: alphas, then betas if edge normalisation is on, then the
        sequence alphas if the sequence stage is searched."""
        for name in ("alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce", "alphas_sequence"):
            p = getattr(self, name)
            if p is not None:
                yield name, p

    def arch_parameters(self) -> Iterator[nn.Parameter]:
        """Architecture weights (optimised on the validation split)."""
        for _, p in self.named_arch_parameters():
            yield p

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Network weights by name: every parameter that is not an architecture weight."""
        arch = {id(p) for p in self.arch_parameters()}
        for name, p in self.named_parameters():
            if id(p) not in arch:
                yield name, p

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Network weights (optimised on the training split)."""
        for _, p in self.named_weight_parameters():
            yield p

    # ------------------------------------------------------------------ forward

    def mixing_weights(self) -> MixingWeights:
        """The edges' mixing weights of the current alphas (betas): what :meth:`forward` uses."""
        e_normal = e_reduce = None
        if self.betas_normal is not None and self.betas_reduce is not None:
            e_normal = node_softmax(self.betas_normal, self.nodes)  # (E,)
            e_reduce = node_softmax(self.betas_reduce, self.nodes)  # (E,)
        return MixingWeights(
            normal=torch.softmax(self.alphas_normal, dim=-1),  # (E, n_ops)
            reduce=torch.softmax(self.alphas_reduce, dim=-1),  # (E, n_ops)
            normal_edges=e_normal,
            reduce_edges=e_reduce,
            sequence=None if self.alphas_sequence is None else torch.softmax(self.alphas_sequence, dim=-1),
        )

    def _sequence_path(self, genotype: Genotype) -> torch.Tensor | None:
        """One-hot sequence mixing of ``genotype.sequence`` (None: the softmax of the sequence alphas)."""
        if self.alphas_sequence is None or genotype.sequence is None:
            return None
        if genotype.sequence_nodes != self.sequence["nodes"]:
            raise ValueError(
                f"genotype.sequence has {genotype.sequence_nodes} node(s), but the supernet's sequence cell has "
                f"{self.sequence['nodes']}."
            )
        ops = self.sequence["ops"]
        weights = self.alphas_sequence.new_zeros(self.alphas_sequence.shape)  # (E_seq, n_seq_ops)
        for e, (op, j) in enumerate(genotype.sequence):
            if op not in ops:
                raise ValueError(
                    f"genotype.sequence edge {e} uses {op!r}, not among the supernet's sequence ops {ops}."
                )
            node = (e + 1) // 2
            weights[node * (node + 1) // 2 + j, ops.index(op)] += 1.0
        return weights

    def path_mixing(self, genotype: Genotype) -> MixingWeights:
        """The single path of ``genotype`` through this supernet: weight 1 on each of its
        (edge, op) pairs, every other edge left out. ``forward(x, mixing=path_mixing(g))`` is the
        network of ``g`` with the supernet's (shared) weights, computing only that path."""
        n_e, n_ops = num_edges(self.nodes), len(self.primitives)
        concat = tuple(range(2, self.nodes + 2))
        weights = []
        for kind in ("normal", "reduce"):
            edges = getattr(genotype, kind)
            if len(edges) != 2 * self.nodes or getattr(genotype, f"{kind}_concat") != concat:
                raise ValueError(
                    f"genotype.{kind} has {len(edges) // 2} node(s) concatenating "
                    f"{list(getattr(genotype, f'{kind}_concat'))}, but the supernet's cells have {self.nodes} "
                    f"concatenating {list(concat)}."
                )
            ops = self.alphas_normal.new_zeros(n_e, n_ops)  # (E, n_ops)
            on = self.alphas_normal.new_zeros(n_e)  # (E,)
            for e, (op, j) in enumerate(edges):
                if op not in self.primitives:
                    raise ValueError(
                        f"genotype.{kind} edge {e} uses {op!r}, which is not among the supernet's primitives "
                        f"{list(self.primitives)}."
                    )
                row = _edge_index(e // 2, j)
                ops[row, self.primitives.index(op)] += 1.0  # a node reading one state twice sums both ops
                on[row] = 1.0
            weights.append((ops, on))
        (normal, normal_edges), (reduce, reduce_edges) = weights
        return MixingWeights(
            normal=normal,
            reduce=reduce,
            normal_edges=normal_edges,
            reduce_edges=reduce_edges,
            sequence=self._sequence_path(genotype),
        )

    def _plan(self, ops: torch.Tensor, edges: torch.Tensor | None) -> list[tuple[int, ...] | None]:
        """Per edge, None (left out) or the op columns with a non-zero weight: read once per
        forward (one device-to-host copy), so that a single path computes only its own ops."""
        nonzero = (ops != 0).tolist()
        edge_on = (edges != 0).tolist() if edges is not None else [True] * len(nonzero)
        plan: list[tuple[int, ...] | None] = []
        for row, on in zip(nonzero, edge_on):
            active = tuple(k for k, flag in enumerate(row) if flag)
            # with partial channels an edge without active ops still passes its bypass channels
            plan.append(active if on and (active or self._config["pc_k"] > 1) else None)
        return plan

    def _check_mixing(self, mixing: MixingWeights) -> None:
        n_e, n_ops = num_edges(self.nodes), len(self.primitives)
        for name in ("normal", "reduce"):
            ops, edges = getattr(mixing, name), getattr(mixing, f"{name}_edges")
            if tuple(ops.shape) != (n_e, n_ops):
                raise ValueError(f"mixing.{name} must have shape ({n_e}, {n_ops}), but got {tuple(ops.shape)}.")
            if edges is not None and tuple(edges.shape) != (n_e,):
                raise ValueError(f"mixing.{name}_edges must have shape ({n_e},), but got {tuple(edges.shape)}.")

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, mixing: MixingWeights | None = None
    ) -> torch.Tensor:
        """Logits (B, n_classes) of ``x`` (B, C_in, F, T); ``lengths`` (B,): valid frames per clip
        (None: all T), so that padding never reaches the head's pooling (see :mod:`search_space.head`).

        ``mixing`` (None: :meth:`mixing_weights`) replaces what the edges mix; then operations and
        edges whose weight is exactly 0 are not computed (same values, see :class:`MixedOp`)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SuperNet expects input of shape (B, {self.in_channels}, F, T), but got {tuple(x.shape)}."
            )
        plans: dict[str, list[tuple[int, ...] | None] | None] = {"normal": None, "reduce": None}
        if mixing is None:
            mixing = self.mixing_weights()
        else:
            self._check_mixing(mixing)
            plans = {
                "normal": self._plan(mixing.normal, mixing.normal_edges),
                "reduce": self._plan(mixing.reduce, mixing.reduce_edges),
            }
        s0 = s1 = self.stem(network_input(x, lengths, self.frontend))  # (B, C_stem, F, T)
        if self.channels_last:  # activations only: see the class docstring
            s0 = s1 = s0.contiguous(memory_format=torch.channels_last)  # (B, C_stem, F, T), strides (F T C, 1, T C, C)
        for cell in self.cells:
            if cell.reduction:
                s0, s1 = (
                    s1,
                    cell(s0, s1, mixing.reduce, mixing.reduce_edges, plans["reduce"]),
                )  # (B, nodes * C, F/2, T/2)
            else:
                s0, s1 = s1, cell(s0, s1, mixing.normal, mixing.normal_edges, plans["normal"])  # (B, nodes * C, F, T)
        sequence_weights = mixing.sequence
        if sequence_weights is None and self.alphas_sequence is not None:
            sequence_weights = torch.softmax(self.alphas_sequence, dim=-1)  # (E_seq, n_seq_ops)
        return self.head(s1, lengths, input_frames=x.shape[-1], sequence_weights=sequence_weights)  # (B, n_classes)

    # ------------------------------------------------------------------ architecture

    def genotype(self, *, max_skip_normal: int | None = 2) -> Genotype:
        """Derive the current genotype (see :func:`search_space.derive_genotype`)."""
        return derive_genotype(
            self.alphas_normal,
            self.alphas_reduce,
            primitives=self.primitives,
            nodes=self.nodes,
            max_skip_normal=max_skip_normal,
            beta_normal=self.betas_normal,
            beta_reduce=self.betas_reduce,
            alpha_sequence=self.alphas_sequence,
            sequence_ops=None if self.sequence is None else self.sequence["ops"],
            sequence_nodes=None if self.sequence is None else self.sequence["nodes"],
        )

    def alpha_entropy(self, *, normalized: bool = False) -> float:
        """Mean per-edge entropy of the softmaxed alphas of both cell kinds (and the sequence cell's)."""
        alphas = [self.alphas_normal, self.alphas_reduce]
        if self.alphas_sequence is not None:
            alphas.append(self.alphas_sequence)
        return alpha_entropy(*alphas, normalized=normalized)

    def dominant_ops(self) -> dict[str, list[str]]:
        """Argmax op of every edge (``none`` included), per cell kind, in edge order.

        Handy for a collapse guard: if every entry is parameter-free
        (:data:`search_space.PARAMETER_FREE_OPS`), the search has collapsed.
        """
        return {
            kind: [self.primitives[k] for k in alpha.detach().argmax(dim=-1).tolist()]
            for kind, alpha in (("normal", self.alphas_normal), ("reduce", self.alphas_reduce))
        }
