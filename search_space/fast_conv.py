"""Faster formulations of the convolutions inside the candidate operations (same results).

On CPU with channels_last activations, torch 2.13's depthwise convolution is fast for a plain
3x3 or 5x5 kernel but its backward is slow for dilated kernels, and a 1x1 convolution takes the
slow THNN path. These functions compute exactly the same convolutions another way (the sums are
only reordered, so results agree up to float rounding); ``tests/search_space/test_fast_conv.py``
compares them with ``F.conv2d`` forward and backward. Weights keep PyTorch's default layout
(channels_last *weights* crashed torch 2.13's multi-threaded CPU backward).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MATMUL_WIDTH", "conv2d", "dilated_depthwise_conv2d", "pixels_per_row", "pointwise_conv2d"]


MATMUL_WIDTH = 16
"""Channel counts below this that divide it are widened to it for the 1x1 convolution's matrix
product (see :func:`pointwise_conv2d`)."""


def pixels_per_row(c_in: int, c_out: int, pixels: int) -> int:
    """How many pixels :func:`pointwise_conv2d` puts in one row of its matrix product.

    CPU matrix products with 8 (or 4) columns are far slower per element than with 16: measured
    at (131072, 8) x (8, 8), forward+backward, one thread: 10.8 ms, vs 4.3 ms for the same
    product as (65536, 16) x (16, 16) with the weight twice on the block diagonal (torch 2.13).
    """
    width = max(c_in, c_out)
    if width >= MATMUL_WIDTH or MATMUL_WIDTH % c_in or MATMUL_WIDTH % c_out:
        return 1
    group = MATMUL_WIDTH // width
    return group if pixels % group == 0 else 1


def pointwise_conv2d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight)`` for a 1x1 kernel (C_out, C_in, 1, 1), as one matrix product.

    (B, C_in, H, W) -> (B, C_out, H, W); a channels_last ``x`` gives a channels_last output
    without copies (its (B, H, W, C) view is contiguous). With few channels, ``g`` neighbouring
    pixels share a row of the product and the weight sits ``g`` times on a block diagonal
    (:func:`pixels_per_row`): the zeros add nothing, so results agree up to float rounding.
    """
    B, C_in, H, W = x.shape
    C_out = weight.shape[0]
    # contiguous(): a no-op for a channels_last x; a strided view (say x[:, :, ::2, ::2]) is
    # copied, as torch 2.13's 2-thread backward of a matmul on such a view segfaults
    rows = x.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C_in)
    matrix = weight.flatten(1)  # (C_out, C_in)
    group = pixels_per_row(C_in, C_out, B * H * W)
    if group > 1:
        rows = rows.reshape(B * H * W // group, group * C_in)  # (BHW/g, g C_in), a view
        matrix = torch.block_diag(*[matrix] * group)  # (g C_out, g C_in)
    out = F.linear(rows, matrix).reshape(B, H, W, C_out)  # (B, H, W, C_out)
    return out.permute(0, 3, 1, 2)  # (B, C_out, H, W)


def dilated_depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, *, stride: int, padding: int) -> torch.Tensor:
    """A depthwise ``kxk`` convolution with dilation 2 and "same" padding ``padding = k - 1``,
    as an undilated convolution on the four polyphase sub-images (space-to-batch).

    ``x`` (B, C, H, W), ``weight`` (C, 1, k, k) -> (B, C, ceil(H / stride), ceil(W / stride)).
    With dilation 2, output pixel (i, j) reads only input pixels of the same parity as (i, j),
    so each parity class is an undilated convolution of its own sub-image. At stride 2 only the
    even sub-image is needed.
    """
    B, C, H, W = x.shape
    k = weight.shape[-1]
    if padding != k - 1:
        raise ValueError(f"padding must be k - 1 = {k - 1} for a 'same' dilated conv, but got {padding}.")
    pad = (k - 1) // 2  # the undilated kernel's "same" padding on a sub-image
    if stride == 2:
        sub = x[:, :, ::2, ::2]  # (B, C, ceil(H/2), ceil(W/2))
        return F.conv2d(sub, weight, padding=pad, groups=C)  # (B, C, ceil(H/2), ceil(W/2))
    Hp, Wp = H + H % 2, W + W % 2
    if (Hp, Wp) != (H, W):  # zero rows/columns read as the conv's own zero padding
        x = F.pad(x, (0, Wp - W, 0, Hp - H))  # (B, C, Hp, Wp)
    # In the (B, Hp, Wp, C) view of x (contiguous for a channels_last x), split rows and columns
    # by parity, (B, Hp/2, 2, Wp/2, 2, C) -> (2, 2, B, Hp/2, Wp/2, C): parity classes become batch
    # entries, in one copy, already channels_last for the conv (measured ~9 % faster than going
    # through the default layout, at (8, 8, 128, 128) forward+backward)
    sub = x.permute(0, 2, 3, 1).reshape(B, Hp // 2, 2, Wp // 2, 2, C).permute(2, 4, 0, 1, 3, 5)
    sub = sub.reshape(4 * B, Hp // 2, Wp // 2, C).permute(0, 3, 1, 2)  # (4B, C, Hp/2, Wp/2), channels_last
    out = F.conv2d(sub, weight, padding=pad, groups=C)  # (4B, C, Hp/2, Wp/2)
    out = out.permute(0, 2, 3, 1).reshape(2, 2, B, Hp // 2, Wp // 2, C).permute(2, 3, 0, 4, 1, 5)
    out = out.reshape(B, Hp, Wp, C).permute(0, 3, 1, 2)  # (B, C, Hp, Wp), channels_last
    if (Hp, Wp) != (H, W):
        out = out[:, :, :H, :W].contiguous(memory_format=torch.channels_last)  # (B, C, H, W)
    return out


def conv2d(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a bias-free Conv2d of a candidate op, through the faster forms above
    when ``x`` is channels_last; otherwise (PyTorch's default layout) ``layer(x)`` itself.

    A 1x1 convolution never reaches torch's own kernel with channels_last: at stride 2 that
    kernel's backward segfaults on 2 threads (torch 2.13; ``tests/search_space/test_fast_conv.py``).
    """
    if not x.is_contiguous(memory_format=torch.channels_last):
        return layer(x)
    if layer.bias is None and layer.padding_mode == "zeros":
        if layer.kernel_size == (1, 1) and layer.padding == (0, 0) and layer.groups == 1:
            s = layer.stride
            sub = x if s == (1, 1) else x[:, :, :: s[0], :: s[1]]  # (B, C_in, ceil(H/s), ceil(W/s))
            return pointwise_conv2d(sub, layer.weight)  # (B, C_out, ceil(H/s), ceil(W/s))
        if layer.dilation == (2, 2) and layer.groups == layer.in_channels == layer.out_channels:
            k = layer.kernel_size[0]
            if layer.kernel_size == (k, k) and layer.padding == (k - 1, k - 1) and layer.stride[0] == layer.stride[1]:
                return dilated_depthwise_conv2d(x, layer.weight, stride=layer.stride[0], padding=k - 1)
    return layer(x)
