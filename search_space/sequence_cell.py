"""The sequence cell: a DARTS cell over time, between the CNN cells and the pooling.

Design (issue 28; emoDARTS searched this stage too, but see "what differs" below):

- **One input.** State 0 is the CNN's per-step sequence after a linear projection to ``hidden``
  H: ``x`` (B, T', H), with each clip's valid steps ``lengths`` (B,) (None: all valid).
- **Nodes.** ``nodes`` intermediate nodes; node ``i`` (0-based) reads every earlier state
  ``0 .. i`` (the input and the nodes before it), so the search cell has
  ``sequence_num_edges(nodes) = nodes (nodes + 1) / 2`` mixed edges, ordered node by node.
- **Output.** The mean of the intermediate nodes: (B, T', H), so the pooling and the classifier
  after it see H features whatever ``nodes`` is.
- **Derived cell.** The same rule as the CNN cells: per node, its strongest incoming edges by
  their strongest op other than ``none`` -- two per node, except node 0, which has only one
  input (:func:`sequence_edges_per_node`). A derived cell is a flat tuple of ``(op, input)``
  pairs in node order, so its node count follows from its length (``2 nodes - 1`` edges).

Operations (``SEQUENCE_OPS``), each (B, T', H) -> (B, T', H), padded steps of the output zero:

- ``lstm``, ``gru``: unidirectional, hidden H, packed (``pack_padded_sequence``) so a clip's
  recurrence stops at its last valid step;
- ``bilstm``: bidirectional LSTM with H/2 per direction (H must be even), packed, so the backward
  direction starts at each clip's last valid step, not at the padding;
- ``conv_1d_3`` / ``dil_conv_1d_3``: ReLU, depthwise 1-D convolution over time (kernel 3,
  dilation 1 / 2, "same" padding), pointwise convolution; padded steps are zeroed before the
  convolution (so a valid step near the end reads zeros there, as at the clip's edge) and after;
- ``attention``: single-head scaled dot-product self-attention (query/key/value/output linear
  maps); padded keys are masked out, padded queries zeroed;
- ``skip``: the input (padded steps zeroed); ``none``: zeros (never computed in the mixed edge).

Padding never counts: in eval mode a sample's output on its valid steps depends neither on its
batch mates nor on how much padding follows it, for every op (tests/search_space/
test_sequence_cell.py). Recurrent ops run in float32 under autocast (as the fixed LSTM head).

What differs from the released emoDARTS code, deliberately: there the recurrent cells received
the globally pooled (B, C) tensor, so the LSTM ran across the batch; here every op runs along
each clip's own time axis. Its attention reshaped with the batch size (working only at 16); here
attention is per clip with a key padding mask. Its edges chose between whole stacked recurrent
layers; here an edge is one small operation, and depth comes from the DAG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = [
    "SEQUENCE_OPS",
    "MixedSequenceOp",
    "SearchSequenceCell",
    "SequenceCell",
    "build_sequence_op",
    "sequence_edges_per_node",
    "sequence_num_edges",
    "sequence_step_mask",
    "validate_sequence_ops",
]

SEQUENCE_OPS: tuple[str, ...] = (
    "none",
    "skip",
    "lstm",
    "gru",
    "bilstm",
    "conv_1d_3",
    "dil_conv_1d_3",
    "attention",
)


def sequence_num_edges(nodes: int) -> int:
    """Mixed edges of a search sequence cell with ``nodes`` intermediate nodes (node i reads i + 1 states)."""
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise ValueError(f"nodes must be an int >= 1, but got {nodes!r}.")
    return nodes * (nodes + 1) // 2


def sequence_edges_per_node(node: int) -> int:
    """Incoming edges a derived sequence cell keeps at ``node``: two, or one for node 0 (one input)."""
    return min(2, node + 1)


def validate_sequence_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """``ops`` as a tuple, checked: known names, no repeats, at least one op other than ``none``."""
    if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence):
        raise ValueError(f"sequence ops must be a sequence of names, but got {ops!r}.")
    ops = tuple(ops)
    unknown = [op for op in ops if op not in SEQUENCE_OPS]
    if unknown:
        raise ValueError(f"unknown sequence ops {unknown}; known are {list(SEQUENCE_OPS)}.")
    if len(set(ops)) != len(ops):
        raise ValueError(f"sequence ops repeat a name: {list(ops)}.")
    if not any(op != "none" for op in ops):
        raise ValueError(f"sequence ops need an op other than 'none', but got {list(ops)}.")
    return ops


def sequence_step_mask(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T, 1) of ``x.dtype``: 1 on each clip's first ``lengths[b]`` steps, else 0 (None: None)."""
    if lengths is None:
        return None
    steps = torch.arange(x.shape[1], device=x.device)  # (T,)
    return (steps[None, :] < lengths.to(x.device)[:, None])[:, :, None].to(x.dtype)  # (B, T, 1)


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask  # (B, T, H)


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return torch.zeros_like(x)  # (B, T, H)


class _Skip(nn.Module):
    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return _masked(x, sequence_step_mask(x, lengths))  # (B, T, H)


class _Recurrent(nn.Module):
    """LSTM / GRU / bidirectional LSTM over each clip's valid steps (packed), output H features."""

    def __init__(self, hidden: int, *, kind: str) -> None:
        super().__init__()
        if kind == "bilstm":
            if hidden % 2 != 0:
                raise ValueError(f"bilstm splits hidden between two directions, so it must be even, but got {hidden}.")
            self.rnn: nn.Module = nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True)
        elif kind == "lstm":
            self.rnn = nn.LSTM(hidden, hidden, batch_first=True)
        elif kind == "gru":
            self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        else:
            raise ValueError(f"kind must be lstm, gru or bilstm, but got {kind!r}.")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        dtype = x.dtype
        B, T, _ = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float() if dtype in (torch.float16, torch.bfloat16) else x
            if lengths is None:
                out, _ = self.rnn(x)  # (B, T, H)
            else:
                packed = pack_padded_sequence(x, lengths.to("cpu", torch.int64), batch_first=True, enforce_sorted=False)
                out, _ = self.rnn(packed)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, H), padding 0
        return out


class _SepConv1d(nn.Module):
    """ReLU -> depthwise conv over time (kernel ``kernel``, ``dilation``) -> pointwise conv."""

    def __init__(self, hidden: int, *, kernel: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(
            hidden, hidden, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, groups=hidden
        )
        self.pointwise = nn.Conv1d(hidden, hidden, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        mask = sequence_step_mask(x, lengths)  # (B, T, 1) or None
        h = F.relu(_masked(x, mask)).transpose(1, 2)  # (B, H, T): padding zero before the conv
        h = self.pointwise(self.depthwise(h)).transpose(1, 2)  # (B, T, H)
        return _masked(h, mask)  # (B, T, H): and after


class _Attention(nn.Module):
    """Single-head self-attention over each clip's valid steps (key padding mask)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.scale = 1.0 / math.sqrt(hidden)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, T, H)
        scores = torch.einsum("bqh,bkh->bqk", q, k) * self.scale  # (B, T, T)
        mask = sequence_step_mask(x, lengths)  # (B, T, 1) or None
        if mask is not None:
            valid_keys = mask[:, None, :, 0] > 0  # (B, 1, T)
            scores = scores.masked_fill(~valid_keys, float("-inf"))  # every clip has >= 1 valid key
        attended = torch.einsum("bqk,bkh->bqh", torch.softmax(scores, dim=-1), v)  # (B, T, H)
        return _masked(self.out(attended), mask)  # (B, T, H): padded queries zero


def build_sequence_op(name: str, hidden: int) -> nn.Module:
    """The sequence op ``name`` on (B, T, ``hidden``) sequences; ``forward(x, lengths)``."""
    if name == "none":
        return _Zero()
    if name == "skip":
        return _Skip()
    if name in ("lstm", "gru", "bilstm"):
        return _Recurrent(hidden, kind=name)
    if name == "conv_1d_3":
        return _SepConv1d(hidden, dilation=1)
    if name == "dil_conv_1d_3":
        return _SepConv1d(hidden, dilation=2)
    if name == "attention":
        return _Attention(hidden)
    raise ValueError(f"unknown sequence op {name!r}; known are {list(SEQUENCE_OPS)}.")


class MixedSequenceOp(nn.Module):
    """Softmax-weighted sum of the candidate sequence ops; ``none`` is never computed (its output is 0)."""

    def __init__(self, hidden: int, *, ops: Sequence[str]) -> None:
        super().__init__()
        self.names = validate_sequence_ops(ops)
        self.ops = nn.ModuleList(build_sequence_op(name, hidden) for name in self.names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B, T, H), ``weights`` (n_ops,) -> (B, T, H)."""
        out = None
        for w, name, op in zip(weights, self.names, self.ops, strict=True):
            if name == "none":
                continue
            term = w * op(x, lengths)  # (B, T, H)
            out = term if out is None else out + term
        if out is None:  # unreachable: validate_sequence_ops keeps an op other than none
            raise RuntimeError("a mixed sequence op has no op other than 'none'.")
        return out


class SearchSequenceCell(nn.Module):
    """Supernet sequence cell: every node mixes all earlier states (module docstring).

    ``forward(x, weights, lengths)``: ``x`` (B, T, H), ``weights`` (sequence_num_edges(nodes),
    n_ops) softmaxed alphas -> (B, T, H), the mean of the intermediate nodes.
    """

    def __init__(self, *, hidden: int, nodes: int, ops: Sequence[str]) -> None:
        super().__init__()
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ValueError(f"hidden must be an int >= 1, but got {hidden!r}.")
        self.hidden = hidden
        self.nodes = nodes
        self.ops = validate_sequence_ops(ops)
        self.edges = nn.ModuleList(MixedSequenceOp(hidden, ops=self.ops) for _ in range(sequence_num_edges(nodes)))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        expected = (len(self.edges), len(self.ops))
        if tuple(weights.shape) != expected:
            raise ValueError(f"sequence weights must have shape {expected}, but got {tuple(weights.shape)}.")
        states = [x]  # (B, T, H) each
        offset = 0
        for _ in range(self.nodes):
            node = sum(self.edges[offset + j](h, weights[offset + j], lengths) for j, h in enumerate(states))
            offset += len(states)
            states.append(node)  # (B, T, H)
        return torch.stack(states[1:]).mean(dim=0)  # (B, T, H)


class SequenceCell(nn.Module):
    """Discrete sequence cell of derived ``edges``: ``(op, input)`` pairs, one for node 0 and two
    for every later node, node ``i`` reading states ``0 .. i``. ``forward(x, lengths)``: (B, T, H)
    -> (B, T, H), the mean of the intermediate nodes."""

    def __init__(self, edges: Sequence[tuple[str, int]], *, hidden: int) -> None:
        super().__init__()
        edges = tuple((str(op), int(index)) for op, index in edges)
        if len(edges) % 2 != 1:
            raise ValueError(
                f"a sequence cell has one edge for node 0 and two for each later node (an odd number), "
                f"but got {len(edges)} edges."
            )
        self.nodes = (len(edges) + 1) // 2
        self.node_of_edge = tuple(0 if e == 0 else (e + 1) // 2 for e in range(len(edges)))
        for e, (op, index) in enumerate(edges):
            node = self.node_of_edge[e]
            if op == "none" or op not in SEQUENCE_OPS:
                raise ValueError(
                    f"sequence edge {e} (node {node}) has invalid op {op!r}; known are {SEQUENCE_OPS[1:]}."
                )
            if not 0 <= index <= node:
                raise ValueError(f"sequence edge {e} (node {node}) reads state {index}, but may only read 0..{node}.")
        self.edges = edges
        self.hidden = hidden
        self.ops = nn.ModuleList(build_sequence_op(op, hidden) for op, _ in edges)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        states = [x]  # (B, T, H) each
        node_sum: list[torch.Tensor | None] = [None] * self.nodes
        for e, ((_, index), op) in enumerate(zip(self.edges, self.ops, strict=True)):
            node = self.node_of_edge[e]
            out = op(states[index], lengths)  # (B, T, H)
            node_sum[node] = out if node_sum[node] is None else node_sum[node] + out
            if e == len(self.edges) - 1 or self.node_of_edge[e + 1] != node:
                states.append(node_sum[node])  # type: ignore[arg-type]
        return torch.stack(states[1:]).mean(dim=0)  # (B, T, H)
