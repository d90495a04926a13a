"""The supernet's mixed edge: a softmax-weighted sum of all candidate operations.

Two economies over DARTS' MixedOp:

* ``none`` is never computed. Its output is zero, so ``w_none * 0`` adds nothing to the sum;
  its alpha still sits in the softmax that produces the other weights, so it still receives a
  gradient through the normalisation (raising ``none`` shrinks every real op's weight).
* Partial channel connections (PC-DARTS, Xu et al. 2020) with ``pc_k = K``: only the first
  ``C / K`` channels go through the candidate ops; the other channels bypass them (max-pooled
  when the edge reduces), the two parts are concatenated and the channels shuffled with K
  groups so that a different subset is searched at the next edge. Memory and compute of the
  ops drop by about K. ``pc_k = 1`` is plain DARTS.

And one optional trade of time for memory: ``checkpoint=True`` keeps none of an edge's inner
activations for the backward pass (only its input, which the cell keeps anyway) and recomputes
them there, edge by edge (``torch.utils.checkpoint``, non-reentrant). Results and gradients are
the same; BatchNorm running statistics are restored after the recomputation so they are
updated once per forward, as without checkpointing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint

from search_space.primitives import PRIMITIVES, DilConv, SepConv, build_op, validate_primitives

__all__ = ["MixedOp", "channel_shuffle", "frozen_batchnorm_stats"]


@contextlib.contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm running statistic of ``module`` on exit.

    For passes that must not count as training steps: a checkpoint's recomputation, or the
    extra forward passes of a DARTS architecture step (which stay in train mode).
    """
    saved = [
        (buf, buf.clone())
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
        if buf is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels across ``groups`` (ShuffleNet): (B, C, H, W) -> (B, C, H, W)."""
    B, C, H, W = x.shape
    if C % groups != 0:
        raise ValueError(f"channels ({C}) must be divisible by groups ({groups}).")
    x = x.view(B, groups, C // groups, H, W)  # (B, g, C/g, H, W)
    return x.transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)


class MixedOp(nn.Module):
    """One supernet edge: ``x -> sum_k w_k * op_k(x)`` over ``primitives`` (``none`` skipped).

    ``forward(x, weights)`` takes ``x`` of shape (B, C, H, W) and ``weights`` of shape
    ``(len(primitives),)`` (a softmaxed row of alphas, in ``primitives`` order, ``none``
    included) and returns (B, C, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self,
        C: int,
        stride: int,
        *,
        primitives: Sequence[str] = PRIMITIVES,
        pc_k: int = 1,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.primitives = validate_primitives(primitives)
        if pc_k < 1 or C % pc_k != 0:
            raise ValueError(f"pc_k must be >= 1 and divide the channel count, but got pc_k={pc_k} for C={C}.")
        self.C = C
        self.stride = stride
        self.pc_k = pc_k
        self.checkpoint = checkpoint
        c_ops = C // pc_k
        ops, index = [], []
        for k, name in enumerate(self.primitives):
            if name == "none":
                continue  # contributes zeros: never built, never run
            op = build_op(name, c_ops, stride, affine=False)
            if "pool" in name:  # DARTS: give parameter-free pools a BN like the conv ops
                op = nn.Sequential(op, nn.BatchNorm2d(c_ops, affine=False))
            ops.append(op)
            index.append(k)
        self.ops = nn.ModuleList(ops)
        self.op_index: tuple[int, ...] = tuple(index)  # column of each built op in `weights`

    def forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        x_relu: torch.Tensor | None = None,
        active: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """``x_relu``: ``relu(x)`` if the caller has it (one ReLU per node, shared by its edges).

        ``active``: the columns of ``weights`` to compute (None: all). A caller that knows the
        other weights are exactly 0 (a single path, an operation masked out) passes the rest: their
        terms ``0 * op(x)`` add nothing to the sum, nor to the gradient of ``weights`` through a
        softmax (it multiplies them by their weight, 0), so leaving them out changes no value."""
        if self.checkpoint and torch.is_grad_enabled():
            return _checkpoint(
                self._forward,
                x,
                weights,
                x_relu,
                active,
                use_reentrant=False,
                # the recomputation must not update BatchNorm running statistics a second time
                context_fn=lambda: (contextlib.nullcontext(), frozen_batchnorm_stats(self)),
            )
        return self._forward(x, weights, x_relu, active)

    def _forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        x_relu: torch.Tensor | None,
        active: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        if self.pc_k == 1:
            return self._weighted_sum(x, weights, x_relu, active)  # (B, C, H', W')
        c_ops = self.C // self.pc_k
        searched, bypass = x[:, :c_ops], x[:, c_ops:]  # (B, C/K, H, W), (B, C - C/K, H, W)
        relu = None if x_relu is None else x_relu[:, :c_ops]
        out = self._weighted_sum(searched, weights, relu, active)  # (B, C/K, H', W')
        if self.stride == 2:
            bypass = F.max_pool2d(bypass, 2, 2, ceil_mode=True)  # (B, C - C/K, H', W')
        return channel_shuffle(torch.cat([out, bypass], dim=1), self.pc_k)  # (B, C, H', W')

    def _weighted_sum(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        x_relu: torch.Tensor | None,
        active: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        out = None
        for k, op in zip(self.op_index, self.ops):
            if active is not None and k not in active:
                continue
            # they start with a ReLU (unless someone swapped it, say for Softplus): compute it once
            if isinstance(op, (SepConv, DilConv)) and type(op.op[0]) is nn.ReLU:
                if x_relu is None:
                    x_relu = F.relu(x)  # (B, C, H, W)
                y = op.forward_relu(x_relu)  # (B, C, H', W')
            else:
                y = op(x)  # (B, C, H', W')
            # out + w_k * y in one pass (addcmul): ~5 % less time per edge than mul then add
            out = weights[k] * y if out is None else torch.addcmul(out, weights[k], y)
        if out is None:  # no operation active: the sum is zero (the partial-channel bypass still flows)
            B, C, H, W = x.shape
            out = x.new_zeros(B, C, -(-H // self.stride), -(-W // self.stride))  # (B, C, H', W')
        return out
