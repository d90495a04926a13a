"""The Genotype value (a discrete cell pair), its canonical JSON and hash, and its derivation
from a supernet's architecture weights.

Convention (DARTS): a cell has two inputs, the outputs of the two previous cells (state
indices 0 and 1), and ``n`` intermediate nodes (state indices 2 .. n + 1). ``normal`` and
``reduce`` are flat tuples of ``(op_name, input_index)`` pairs, two per intermediate node, in
node order; node ``i`` (0-based) may read any state ``j < i + 2``. ``*_concat`` lists the states
whose outputs are concatenated (along channels) into the cell's output; only intermediate nodes
(2 .. n + 1) may be concatenated (a reduction cell's inputs have the wrong resolution).

``sequence`` (optional) is the derived sequence cell over time (search_space/sequence_cell.py):
``(op_name, input_index)`` pairs in node order, one for node 0 and two for every later node,
node ``i`` reading states ``0 .. i`` (state 0 is the projected CNN sequence). ``None`` (the
default, and what a JSON without the key reads as) is the fixed LSTM sernas always had; such a
genotype's JSON and hash are exactly what they were before the field existed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from search_space.primitives import OPS, validate_primitives
from search_space.sequence_cell import (
    SEQUENCE_OPS,
    sequence_edges_per_node,
    sequence_num_edges,
    validate_sequence_ops,
)

__all__ = [
    "Genotype",
    "alpha_entropy",
    "derive_genotype",
    "derive_sequence",
    "node_softmax",
    "num_edges",
]

_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_OPTIONAL_FIELDS = ("sequence",)


def num_edges(nodes: int) -> int:
    """Number of mixed edges in a search cell with ``nodes`` intermediate nodes."""
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, but got {nodes}.")
    return nodes * (nodes + 3) // 2  # sum over i of (i + 2) inputs


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _normalise_cell(kind: str, edges: object) -> tuple[tuple[str, int], ...]:
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence):
        raise ValueError(f"Genotype.{kind} must be a sequence of (op_name, input_index) pairs, but got {edges!r}.")
    if len(edges) == 0 or len(edges) % 2 != 0:
        raise ValueError(
            f"Genotype.{kind} must have two edges per node (an even, non-zero number), but got {len(edges)} edges."
        )
    out: list[tuple[str, int]] = []
    for e, edge in enumerate(edges):
        node = e // 2
        where = f"Genotype.{kind} edge {e} (node {node})"
        if isinstance(edge, (str, bytes)) or not isinstance(edge, Sequence) or len(edge) != 2:
            raise ValueError(f"{where} must be an (op_name, input_index) pair, but got {edge!r}.")
        op, index = edge
        if op == "none":
            raise ValueError(f"{where} chooses 'none', which is not a valid operation in a derived cell.")
        if not isinstance(op, str) or op not in OPS:
            known = ", ".join(name for name in OPS if name != "none")
            raise ValueError(f"{where} has unknown operation {op!r}; known operations are {known}.")
        if not _is_int(index) or not 0 <= index < node + 2:
            raise ValueError(f"{where} has input index {index!r}, but node {node} may only read states 0..{node + 1}.")
        out.append((op, index))
    return tuple(out)


def _normalise_concat(kind: str, concat: object, nodes: int) -> tuple[int, ...]:
    if isinstance(concat, (str, bytes)) or not isinstance(concat, Sequence) or len(concat) == 0:
        raise ValueError(f"Genotype.{kind} must be a non-empty sequence of state indices, but got {concat!r}.")
    for index in concat:
        if not _is_int(index) or not 2 <= index < nodes + 2:
            raise ValueError(
                f"Genotype.{kind} has state index {index!r}, but a cell with {nodes} nodes "
                f"concatenates intermediate nodes from 2..{nodes + 1}."
            )
    if len(set(concat)) != len(concat):
        raise ValueError(f"Genotype.{kind} has repeated state indices: {list(concat)}.")
    return tuple(concat)


def _normalise_sequence(edges: object) -> tuple[tuple[str, int], ...] | None:
    if edges is None:
        return None
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence):
        raise ValueError(f"Genotype.sequence must be a sequence of (op_name, input_index) pairs, but got {edges!r}.")
    if len(edges) % 2 != 1:
        raise ValueError(
            "Genotype.sequence must have one edge for node 0 and two for each later node (an odd number), "
            f"but got {len(edges)} edges."
        )
    out: list[tuple[str, int]] = []
    for e, edge in enumerate(edges):
        node = (e + 1) // 2
        where = f"Genotype.sequence edge {e} (node {node})"
        if isinstance(edge, (str, bytes)) or not isinstance(edge, Sequence) or len(edge) != 2:
            raise ValueError(f"{where} must be an (op_name, input_index) pair, but got {edge!r}.")
        op, index = edge
        if op == "none" or not isinstance(op, str) or op not in SEQUENCE_OPS:
            raise ValueError(f"{where} has invalid operation {op!r}; known sequence operations are {SEQUENCE_OPS[1:]}.")
        if not _is_int(index) or not 0 <= index <= node:
            raise ValueError(f"{where} has input index {index!r}, but node {node} may only read states 0..{node}.")
        out.append((op, index))
    return tuple(out)


@dataclass(frozen=True)
class Genotype:
    """A derived architecture: a normal and a reduction cell, validated on construction.

    Lists are accepted and stored as tuples, so a Genotype is hashable and immutable.
    Store and exchange it as :meth:`to_json`; :attr:`hash` identifies it.
    """

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]
    sequence: tuple[tuple[str, int], ...] | None = None  # None: the fixed LSTM

    def __post_init__(self) -> None:
        object.__setattr__(self, "sequence", _normalise_sequence(self.sequence))
        normal = _normalise_cell("normal", self.normal)
        reduce = _normalise_cell("reduce", self.reduce)
        object.__setattr__(self, "normal", normal)
        object.__setattr__(self, "reduce", reduce)
        object.__setattr__(
            self, "normal_concat", _normalise_concat("normal_concat", self.normal_concat, len(normal) // 2)
        )
        object.__setattr__(
            self, "reduce_concat", _normalise_concat("reduce_concat", self.reduce_concat, len(reduce) // 2)
        )

    @property
    def normal_nodes(self) -> int:
        """Intermediate nodes of the normal cell."""
        return len(self.normal) // 2

    @property
    def reduce_nodes(self) -> int:
        """Intermediate nodes of the reduction cell."""
        return len(self.reduce) // 2

    @property
    def sequence_nodes(self) -> int:
        """Intermediate nodes of the sequence cell (0: no sequence cell, the fixed LSTM)."""
        return 0 if self.sequence is None else (len(self.sequence) + 1) // 2

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain lists, JSON-ready: ``{"normal": [["sep_conv_3x3", 0], ...], ...}``; ``"sequence"``
        only when there is a sequence cell, so older genotypes keep their JSON and hash."""
        data = {
            "normal": [[op, index] for op, index in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, index] for op, index in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        if self.sequence is not None:
            data["sequence"] = [[op, index] for op, index in self.sequence]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        """Inverse of :meth:`to_dict`; the four cell keys are required, ``sequence`` is optional
        (absent: the fixed LSTM) and no others are allowed."""
        if not isinstance(data, dict):
            raise ValueError(f"A genotype must be a JSON object, but got {type(data).__name__}.")
        missing = [k for k in _FIELDS if k not in data]
        extra = sorted(k for k in data if k not in _FIELDS + _OPTIONAL_FIELDS)
        if missing or extra:
            raise ValueError(
                f"A genotype needs the keys {list(_FIELDS)} (and optionally {list(_OPTIONAL_FIELDS)}), "
                f"but {missing} are missing and {extra} are unexpected."
            )
        return cls(**{k: data[k] for k in _FIELDS + _OPTIONAL_FIELDS if k in data})

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace; equal genotypes give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Genotype:
        """Parse JSON (any whitespace) written by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"A genotype must be valid JSON: {exc}.") from exc
        return cls.from_dict(data)

    @property
    def hash(self) -> str:
        """Stable short id: the first 12 hex digits of the SHA-256 of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:12]


# ----------------------------------------------------------------------------- derivation


def _check_alpha(name: str, alpha: torch.Tensor, n_edges: int, n_ops: int) -> torch.Tensor:
    if not isinstance(alpha, torch.Tensor) or tuple(alpha.shape) != (n_edges, n_ops):
        shape = tuple(alpha.shape) if isinstance(alpha, torch.Tensor) else type(alpha).__name__
        raise ValueError(f"{name} must have shape ({n_edges}, {n_ops}), but got {shape}.")
    return alpha.detach().to(device="cpu", dtype=torch.float64)


def _edge_weights(
    name: str, alpha: torch.Tensor, beta: torch.Tensor | None, nodes: int, n_ops: int
) -> list[list[float]]:
    """Softmaxed op weights per edge, times PC-DARTS edge weights when betas are given."""
    n_edges = num_edges(nodes)
    weights = torch.softmax(_check_alpha(name, alpha, n_edges, n_ops), dim=-1)  # (E, n_ops)
    if beta is not None:
        beta_name = name.replace("alpha", "beta")
        if not isinstance(beta, torch.Tensor) or tuple(beta.shape) != (n_edges,):
            shape = tuple(beta.shape) if isinstance(beta, torch.Tensor) else type(beta).__name__
            raise ValueError(f"{beta_name} must have shape ({n_edges},), but got {shape}.")
        weights = weights * node_softmax(beta.detach().to("cpu", torch.float64), nodes)[:, None]
    return weights.tolist()


def node_softmax(beta: torch.Tensor, nodes: int) -> torch.Tensor:
    """Softmax of PC-DARTS edge weights over the incoming edges of each node: (E,) -> (E,)."""
    parts, start = [], 0
    for i in range(nodes):
        parts.append(torch.softmax(beta[start : start + i + 2], dim=-1))
        start += i + 2
    return torch.cat(parts)


def _parse_cell(
    weights: list[list[float]],
    primitives: tuple[str, ...],
    nodes: int,
    banned: set[tuple[int, str]],
) -> list[tuple[str, int, int, float]]:
    """Top-2 incoming edges per node by their strongest allowed op.

    Returns ``(op, input_index, edge, weight)`` per chosen edge. ``none`` is never allowed;
    ``banned`` holds ``(edge, op)`` pairs excluded by the skip cap. Ties go to the lower input
    index (and, within an edge, to the op listed first).
    """
    chosen: list[tuple[str, int, int, float]] = []
    start = 0
    for i in range(nodes):
        candidates = []  # (strength, input_index, op, edge)
        for j in range(i + 2):
            edge = start + j
            best_op, best_w = None, -math.inf
            for k, op in enumerate(primitives):
                if op == "none" or (edge, op) in banned:
                    continue
                if weights[edge][k] > best_w:
                    best_op, best_w = op, weights[edge][k]
            if best_op is not None:
                candidates.append((best_w, j, best_op, edge))
        if len(candidates) < 2:
            raise ValueError(
                f"Node {i} has fewer than two incoming edges with an allowed operation "
                f"(primitives {list(primitives)}, excluded by the skip cap: "
                f"{sorted(op for e, op in banned if start <= e < start + i + 2)}); "
                "loosen max_skip_normal or add operations."
            )
        candidates.sort(key=lambda c: (-c[0], c[1]))
        for w, j, op, edge in sorted(candidates[:2], key=lambda c: c[1]):
            chosen.append((op, j, edge, w))
        start += i + 2
    return chosen


def derive_genotype(
    alpha_normal: torch.Tensor,
    alpha_reduce: torch.Tensor,
    *,
    primitives: Sequence[str],
    nodes: int,
    max_skip_normal: int | None = 2,
    beta_normal: torch.Tensor | None = None,
    beta_reduce: torch.Tensor | None = None,
    alpha_sequence: torch.Tensor | None = None,
    sequence_ops: Sequence[str] | None = None,
    sequence_nodes: int | None = None,
) -> Genotype:
    """Discretise architecture weights into a Genotype (DARTS rule plus a P-DARTS skip cap).

    ``alpha_*`` have shape ``(num_edges(nodes), len(primitives))`` and are softmaxed per edge
    (over *all* primitives, ``none`` included). An edge's strength is the weight of its
    strongest op other than ``none``; each node keeps its two strongest incoming edges, each
    with that op. An edge where ``none`` dominates is therefore not dropped for that reason
    alone: it competes with the weight of its best real op, which the softmax has made small.

    Skip cap (normal cell only, P-DARTS): while the derived normal cell has more than
    ``max_skip_normal`` ``skip_connect`` edges, the chosen skip edge with the smallest skip
    weight loses ``skip_connect`` (it becomes unavailable on that edge) and the cell is derived
    again. That edge then competes with its next-best op, so its node either keeps it with that
    op or takes its next-best edge instead (which may itself be a skip, and the loop goes on).
    ``None`` disables the cap. Ties between equal skip weights drop the later edge.

    With PC-DARTS edge normalisation, pass the raw ``beta_*`` (shape ``(num_edges,)``); the op
    weights of each edge are multiplied by the softmax of the betas over its node's inputs.

    With ``alpha_sequence`` (and its ``sequence_ops`` and ``sequence_nodes``) the genotype also
    gets a sequence cell (:func:`derive_sequence`); without, the fixed LSTM.
    """
    primitives = validate_primitives(primitives)
    if max_skip_normal is not None and (not _is_int(max_skip_normal) or max_skip_normal < 0):
        raise ValueError(f"max_skip_normal must be None or an int >= 0, but got {max_skip_normal!r}.")
    n_ops = len(primitives)
    w_normal = _edge_weights("alpha_normal", alpha_normal, beta_normal, nodes, n_ops)
    w_reduce = _edge_weights("alpha_reduce", alpha_reduce, beta_reduce, nodes, n_ops)

    banned: set[tuple[int, str]] = set()
    normal = _parse_cell(w_normal, primitives, nodes, banned)
    if max_skip_normal is not None:
        while True:
            skips = [(w, edge) for op, _, edge, w in normal if op == "skip_connect"]
            if len(skips) <= max_skip_normal:
                break
            _, weakest_edge = min(skips, key=lambda s: (s[0], -s[1]))
            banned.add((weakest_edge, "skip_connect"))
            normal = _parse_cell(w_normal, primitives, nodes, banned)
    reduce = _parse_cell(w_reduce, primitives, nodes, set())

    sequence = None
    if alpha_sequence is not None:
        if sequence_ops is None or sequence_nodes is None:
            raise ValueError("alpha_sequence needs sequence_ops and sequence_nodes, but one of them is None.")
        sequence = derive_sequence(alpha_sequence, ops=sequence_ops, nodes=sequence_nodes)
    concat = tuple(range(2, nodes + 2))
    return Genotype(
        normal=tuple((op, j) for op, j, _, _ in normal),
        normal_concat=concat,
        reduce=tuple((op, j) for op, j, _, _ in reduce),
        reduce_concat=concat,
        sequence=sequence,
    )


def derive_sequence(alpha_sequence: torch.Tensor, *, ops: Sequence[str], nodes: int) -> tuple[tuple[str, int], ...]:
    """Discretise sequence-cell alphas ``(sequence_num_edges(nodes), len(ops))`` with the CNN
    cells' rule: softmax per edge over all ops (``none`` included), an edge's strength is the
    weight of its strongest op other than ``none``, and node ``i`` keeps its
    :func:`~search_space.sequence_cell.sequence_edges_per_node` strongest incoming edges (ties to
    the lower input index, and within an edge to the op listed first), each with that op."""
    ops = validate_sequence_ops(ops)
    n_edges = sequence_num_edges(nodes)
    weights = torch.softmax(_check_alpha("alpha_sequence", alpha_sequence, n_edges, len(ops)), dim=-1).tolist()
    chosen: list[tuple[str, int]] = []
    start = 0
    for i in range(nodes):
        candidates = []  # (strength, input_index, op)
        for j in range(i + 1):
            best = max(
                ((weights[start + j][k], -k, op) for k, op in enumerate(ops) if op != "none"),
            )
            candidates.append((best[0], j, best[2]))
        candidates.sort(key=lambda c: (-c[0], c[1]))
        keep = sorted(candidates[: sequence_edges_per_node(i)], key=lambda c: c[1])
        chosen.extend((op, j) for _, j, op in keep)
        start += i + 1
    return tuple(chosen)


def alpha_entropy(*alphas: torch.Tensor, normalized: bool = False) -> float:
    """Mean entropy (nats) of the softmaxed op weights of each edge, over all given tensors.

    Each tensor is ``(edges, ops)``. Uniform alphas give ``log(ops)``; a decided edge gives 0.
    ``normalized=True`` divides each edge's entropy by ``log(ops)`` (range 0..1).
    """
    if not alphas:
        raise ValueError("alpha_entropy needs at least one alpha tensor.")
    entropies = []
    for alpha in alphas:
        if alpha.dim() != 2 or alpha.shape[1] < 2:
            raise ValueError(f"Each alpha must have shape (edges, ops) with ops >= 2, but got {tuple(alpha.shape)}.")
        log_p = torch.log_softmax(alpha.detach().to(torch.float64), dim=-1)  # (E, n_ops)
        h = -(log_p.exp() * log_p).sum(dim=-1)  # (E,)
        if normalized:
            h = h / math.log(alpha.shape[1])
        entropies.append(h)
    return float(torch.cat(entropies).mean())
