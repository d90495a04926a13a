import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from search_space.fast_conv import MATMUL_WIDTH, conv2d, dilated_depthwise_conv2d, pixels_per_row, pointwise_conv2d
from search_space.mixed_op import MixedOp
from search_space.primitives import PRIMITIVES

SIZES = [(8, 6), (7, 5), (16, 16), (1, 1), (2, 3)]  # even, odd, square, 1x1 and tiny maps


def _forward_backward(fn, x, w):
    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    out = fn(x, w)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return (out, *torch.autograd.grad(out, (x, w), grad))


def _assert_same(ours, straightforward, atol=1e-12):
    assert ours[0].shape == straightforward[0].shape
    for a, b in zip(ours, straightforward):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5])
def test_dilated_depthwise_equals_conv2d_forward_and_backward(k, stride, size, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 4, *size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 1, k, k, dtype=torch.float64)
    ours = _forward_backward(lambda x, w: dilated_depthwise_conv2d(x, w, stride=stride, padding=k - 1), x, w)
    plain = _forward_backward(lambda x, w: F.conv2d(x, w, stride=stride, padding=k - 1, dilation=2, groups=4), x, w)
    _assert_same(ours, plain)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("c_in, c_out", [(4, 6), (8, 8), (4, 4), (2, 8), (16, 16)])
def test_pointwise_equals_conv2d_forward_and_backward(c_in, c_out, size, channels_last):
    torch.manual_seed(0)
    x = torch.randn(4, c_in, *size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(c_out, c_in, 1, 1, dtype=torch.float64)
    _assert_same(_forward_backward(pointwise_conv2d, x, w), _forward_backward(F.conv2d, x, w))


def test_few_channels_share_rows_only_when_the_pixels_divide():
    assert pixels_per_row(8, 8, 8 * 128 * 128) == 2 and pixels_per_row(4, 4, 64) == MATMUL_WIDTH // 4
    assert pixels_per_row(8, 8, 105) == 1  # an odd pixel count: one pixel per row
    assert pixels_per_row(4, 6, 64) == 1 and pixels_per_row(16, 16, 64) == 1 and pixels_per_row(24, 8, 64) == 1


def test_float32_differs_by_rounding_only():
    torch.manual_seed(0)
    x = torch.randn(8, 8, 33, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 1, 5, 5)
    ours = _forward_backward(lambda x, w: dilated_depthwise_conv2d(x, w, stride=1, padding=4), x, w)
    plain = _forward_backward(lambda x, w: F.conv2d(x, w, padding=4, dilation=2, groups=8), x, w)
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4 * float(b.abs().max()))


def test_conv2d_dispatch_keeps_other_convolutions():
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(conv2d(conv, x), conv(x))
    with pytest.raises(ValueError, match="padding must be k - 1"):
        dilated_depthwise_conv2d(x, torch.randn(4, 1, 3, 3), stride=1, padding=1)


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_fast_path_equals_the_plain_modules(stride):
    torch.manual_seed(0)
    op = MixedOp(4, stride).double()
    x = torch.randn(3, 4, 9, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    alpha = torch.randn(len(PRIMITIVES), dtype=torch.float64, requires_grad=True)
    outs = []
    for plain in (False, True):
        xi = x.detach().clone().requires_grad_(True)
        w = torch.softmax(alpha, dim=-1)
        out = sum(w[k] * m(xi) for k, m in zip(op.op_index, op.ops)) if plain else op(xi, w)
        outs.append((out, *torch.autograd.grad(out.pow(2).sum(), (xi, alpha, *op.parameters()))))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_channels_last_supernet_survives_two_threads():
    """The crash class of torch 2.13 (multi-threaded CPU backward with channels_last: dilated 5x5
    convs on small maps, a batch of 13, 2 threads) came with channels_last *weights*; the SuperNet
    makes only its activations channels_last. Train it on those shapes in a subprocess."""
    code = """
import torch
torch.set_num_threads(2)
from search_space import SuperNet
torch.manual_seed(0)
net = SuperNet(layers=3, nodes=2, init_channels=4, n_classes=4, lstm_hidden=8)
opt = torch.optim.SGD(net.weight_parameters(), lr=0.01)
for batch, size in ((13, 32), (13, 8), (16, 5), (29, 32)):
    x = torch.randn(batch, 1, size, size)
    loss = torch.nn.functional.cross_entropy(net(x), torch.arange(batch) % 4)
    opt.zero_grad(); loss.backward(); opt.step()
print("trained")
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]
