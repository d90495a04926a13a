import pytest
import torch

from search_space.mixed_op import MixedOp, channel_shuffle
from search_space.primitives import PRIMITIVES


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    out = channel_shuffle(x, 2)
    assert out.flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_none_is_never_built():
    op = MixedOp(4, 1, primitives=PRIMITIVES)
    assert len(op.ops) == len(PRIMITIVES) - 1
    assert op.op_index == tuple(range(1, len(PRIMITIVES)))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pc_k", [1, 2, 4])
def test_shapes(stride, pc_k):
    op = MixedOp(8, stride, pc_k=pc_k)
    w = torch.softmax(torch.randn(len(PRIMITIVES)), dim=-1)
    out = op(torch.randn(2, 8, 7, 10), w)
    assert out.shape == (2, 8, 4 if stride == 2 else 7, 5 if stride == 2 else 10)


def test_output_is_the_weighted_sum_with_none_as_zero():
    torch.manual_seed(0)
    op = MixedOp(4, 1).eval()
    x = torch.randn(2, 4, 6, 5)
    w = torch.softmax(torch.randn(len(PRIMITIVES)), dim=-1)
    expected = sum(w[k] * m(x) for k, m in zip(op.op_index, op.ops))
    torch.testing.assert_close(op(x, w), expected)


def test_none_alpha_gets_a_gradient_through_the_softmax():
    torch.manual_seed(0)
    op = MixedOp(4, 1)
    alpha = torch.zeros(len(PRIMITIVES), requires_grad=True)
    op(torch.randn(2, 4, 6, 5), torch.softmax(alpha, dim=-1)).pow(2).sum().backward()
    assert alpha.grad is not None
    assert alpha.grad[PRIMITIVES.index("none")] != 0


def test_partial_channels_leave_the_bypass_untouched():
    torch.manual_seed(0)
    op = MixedOp(4, 1, pc_k=2)
    x = torch.randn(1, 4, 5, 5)
    out = op(x, torch.softmax(torch.randn(len(PRIMITIVES)), dim=-1))
    # after the shuffle with 2 groups, bypass channels 2, 3 land at positions 1, 3
    torch.testing.assert_close(out[:, [1, 3]], x[:, [2, 3]])


def test_pc_k_must_divide_channels():
    with pytest.raises(ValueError, match="pc_k=3 for C=8"):
        MixedOp(8, 1, pc_k=3)


@pytest.mark.parametrize("pc_k", [1, 2])
def test_checkpointing_changes_neither_values_gradients_nor_running_stats(pc_k):
    x = torch.randn(2, 4, 6, 5)
    results = []
    for checkpoint in (False, True):
        torch.manual_seed(0)
        op = MixedOp(4, 2, pc_k=pc_k, checkpoint=checkpoint)
        alpha = torch.zeros(len(PRIMITIVES), requires_grad=True)
        xi = x.clone().requires_grad_(True)
        out = op(xi, torch.softmax(alpha, dim=-1))
        out.pow(2).sum().backward()
        stats = [b.clone() for name, b in op.named_buffers()]
        grads = [p.grad.clone() for p in op.parameters()]
        results.append((out.detach(), alpha.grad, xi.grad, stats, grads))
    for a, b in zip(*results):
        if isinstance(a, list):
            for u, v in zip(a, b):
                torch.testing.assert_close(u, v)
        else:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("pc_k", [2, 4])
def test_exactly_one_kth_of_the_channels_pass_through_the_operations(pc_k):
    """PC-DARTS: the first C/K channels go through the weighted operations, the other C - C/K
    bypass them unchanged, and the two are shuffled back together."""
    C = 8
    op = MixedOp(C, 1, primitives=["none", "skip_connect", "sep_conv_3x3"], pc_k=pc_k).eval()
    x = torch.randn(2, C, 6, 6)
    none_only = torch.tensor([1.0, 0.0, 0.0])  # the searched channels come out as zeros
    with torch.no_grad():
        out = op(x, none_only)  # (2, C, 6, 6)
    zero = [c for c in range(C) if torch.count_nonzero(out[:, c]) == 0]
    assert len(zero) == C // pc_k
    passed = sorted(c for c in range(C) if c not in zero)
    unshuffled = channel_shuffle(torch.cat([torch.zeros_like(x[:, : C // pc_k]), x[:, C // pc_k :]], dim=1), pc_k)
    assert torch.equal(out, unshuffled) and len(passed) == C - C // pc_k
    convs = [m for m in op.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(conv.in_channels == C // pc_k for conv in convs if conv.groups == 1)
