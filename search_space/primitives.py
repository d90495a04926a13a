"""Candidate operations of a DARTS cell and the registry that builds them by name.

Every operation maps ``(B, C, H, W) -> (B, C, ceil(H / s), ceil(W / s))`` for stride ``s`` in
{1, 2}, for *any* H and W (odd sizes included), so that the outputs of different operations on
one edge, and of different edges into one node, can always be summed. In this project H is the
frequency axis and W the time axis of a feature map.

BatchNorm is ``affine=False`` inside the supernet (as in DARTS: the architecture weights
already scale each op) and ``affine=True`` in the discrete network.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import torch
from torch import nn
from torch.nn import functional as F

from search_space import fast_conv

__all__ = [
    "OPS",
    "PARAMETER_FREE_OPS",
    "PRIMITIVES",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "OpFactory",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "build_op",
    "validate_primitives",
]


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _after_relu(op: nn.Sequential, x_relu: torch.Tensor) -> torch.Tensor:
    """``op(x)`` for a Sequential that starts with a ReLU, given ``x_relu = relu(x)``; its
    convolutions run through :func:`search_space.fast_conv.conv2d` (same results)."""
    for layer in itertools.islice(op, 1, None):
        x_relu = fast_conv.conv2d(layer, x_relu) if isinstance(layer, nn.Conv2d) else layer(x_relu)
    return x_relu


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d -> BatchNorm; used for the 1x1 preprocessing of cell inputs."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu, conv, bn = self.op
        return bn(fast_conv.conv2d(conv, relu(x)))  # (B, C_out, H', W')


class DilConv(nn.Module):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BatchNorm."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=C_in,
                bias=False,
            ),
            nn.Conv2d(C_in, C_out, kernel_size=1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _after_relu(self.op, self.op[0](x))  # self.op(x), convolutions as in forward_relu

    def forward_relu(self, x_relu: torch.Tensor) -> torch.Tensor:
        """The op on an input that is already ``relu(x)`` (shared by the edges leaving a node)."""
        return _after_relu(self.op, x_relu)


class SepConv(nn.Module):
    """Two stacked depthwise-separable convolutions (the first carries the stride)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, kernel_size=1, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            # In place is safe here (BatchNorm's backward needs its input, not its output) and
            # saves one full-size activation per SepConv, which matters in the supernet.
            nn.ReLU(inplace=True),
            nn.Conv2d(C_in, C_in, kernel_size, stride=1, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, kernel_size=1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _after_relu(self.op, self.op[0](x))  # self.op(x), convolutions as in forward_relu

    def forward_relu(self, x_relu: torch.Tensor) -> torch.Tensor:
        """The op on an input that is already ``relu(x)`` (shared by the edges leaving a node)."""
        return _after_relu(self.op, x_relu)


class Identity(nn.Module):
    """``skip_connect`` at stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """``none``: zeros of the output shape (the reduced shape when ``stride == 2``).

    The supernet's MixedOp never calls it (a zero contributes nothing to the weighted sum);
    it exists so that ``none`` is a real, shape-correct operation for anyone who builds it.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape  # (B, C, H, W)
        s = self.stride
        return x.new_zeros(B, C, math.ceil(H / s), math.ceil(W / s))  # (B, C, H/s, W/s)


class FactorizedReduce(nn.Module):
    """Halve H and W with two offset 1x1 stride-2 convolutions (``skip_connect`` at stride 2).

    The second path sees the input shifted by one pixel; the input is zero-padded on the
    bottom/right first so that both paths give ``ceil(H / 2) x ceil(W / 2)`` for odd sizes too
    (DARTS' version breaks on odd sizes). An odd ``C_out`` is split ``C_out // 2`` + the rest.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out - C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In PyTorch's default layout: with channels_last, torch 2.13's 2-thread CPU backward of
        # this op segfaults (tests/search_space/test_fast_conv.py); the output keeps x's layout.
        layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        x = self.relu(x.contiguous())  # (B, C_in, H, W)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]  # (B, C_in, H, W), shifted by one pixel
        out = torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)  # (B, C_out, H/2, W/2)
        return self.bn(out).contiguous(memory_format=layout)


OpFactory = Callable[[int, int, bool], nn.Module]
"""``factory(C, stride, affine) -> nn.Module``: (B, C, H, W) -> (B, C, H/stride, W/stride)."""


def _skip_connect(C: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


_REGISTRY: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": _skip_connect,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
}

OPS: Mapping[str, OpFactory] = MappingProxyType(_REGISTRY)
"""Read-only registry: operation name -> ``factory(C, stride, affine)``."""

PRIMITIVES: tuple[str, ...] = tuple(_REGISTRY)
"""The default candidate set of a search (DARTS' eight operations, in DARTS' order)."""

PARAMETER_FREE_OPS: frozenset[str] = frozenset({"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"})
"""Operations without learnable weights (at stride 1); a supernet whose alphas favour only these
everywhere has collapsed. ``skip_connect`` at stride 2 is a FactorizedReduce, but is counted here
as DARTS and P-DARTS count it."""


def _check_known(name: object) -> str:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"Unknown operation {name!r}; known operations are {', '.join(_REGISTRY)}.")
    return name


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Build operation ``name`` for ``C`` channels at ``stride`` (1 or 2)."""
    _check_known(name)
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, but got {stride}.")
    if C < 1:
        raise ValueError(f"C must be >= 1, but got {C}.")
    return _REGISTRY[name](C, stride, affine)


def validate_primitives(primitives: Iterable[str]) -> tuple[str, ...]:
    """Check a candidate set for a search and return it as a tuple.

    Names must be registered and unique, and at least one must be a real operation (not
    ``none``); the order is kept (it is the column order of the alphas).
    """
    names = tuple(primitives)
    for name in names:
        _check_known(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"primitives must be unique, but {duplicates} appear more than once.")
    if not any(n != "none" for n in names):
        raise ValueError(f"primitives must contain at least one operation other than 'none', but got {names}.")
    return names
