import math

import pytest
import torch
from torch import nn

from search_space.primitives import (
    OPS,
    PARAMETER_FREE_OPS,
    PRIMITIVES,
    FactorizedReduce,
    Identity,
    Zero,
    build_op,
    validate_primitives,
)


def test_default_primitives_are_the_darts_eight():
    assert PRIMITIVES == (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )
    assert set(OPS) == set(PRIMITIVES)
    assert PARAMETER_FREE_OPS < set(PRIMITIVES)


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 6), (7, 5)])  # even and odd (F, T)
def test_every_primitive_keeps_channels_and_rounds_up_the_reduction(name, stride, size):
    torch.manual_seed(0)
    F_, T_ = size
    op = build_op(name, 4, stride, affine=False)
    out = op(torch.randn(2, 4, F_, T_))  # (B, C, F, T)
    assert out.shape == (2, 4, math.ceil(F_ / stride), math.ceil(T_ / stride))


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_affine_follows_the_flag(affine):
    op = build_op("sep_conv_3x3", 4, 1, affine=affine)
    bns = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.affine is affine for bn in bns)


def test_skip_connect_is_identity_at_stride_1_and_factorized_reduce_at_stride_2():
    assert isinstance(build_op("skip_connect", 4, 1, affine=True), Identity)
    assert isinstance(build_op("skip_connect", 4, 2, affine=True), FactorizedReduce)


def test_none_yields_zeros_of_the_reduced_shape():
    op = build_op("none", 3, 2, affine=False)
    assert isinstance(op, Zero)
    out = op(torch.randn(2, 3, 9, 4))
    assert out.shape == (2, 3, 5, 2)
    assert torch.count_nonzero(out) == 0


def test_factorized_reduce_handles_odd_channels_and_sizes():
    out = FactorizedReduce(4, 5, affine=True)(torch.randn(2, 4, 7, 3))
    assert out.shape == (2, 5, 4, 2)


def test_unknown_op_names_the_bad_op_and_the_known_ones():
    with pytest.raises(ValueError, match="conv_7x7") as info:
        build_op("conv_7x7", 4, 1, affine=True)
    assert "sep_conv_3x3" in str(info.value)


def test_bad_stride_is_rejected():
    with pytest.raises(ValueError, match="stride must be 1 or 2, but got 3"):
        build_op("sep_conv_3x3", 4, 3, affine=True)


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        OPS["mine"] = lambda C, stride, affine: Identity()  # type: ignore[index]


def test_validate_primitives():
    assert validate_primitives(["none", "skip_connect"]) == ("none", "skip_connect")
    with pytest.raises(ValueError, match="lstm"):
        validate_primitives(["none", "lstm"])
    with pytest.raises(ValueError, match="more than once"):
        validate_primitives(["skip_connect", "skip_connect"])
    with pytest.raises(ValueError, match="other than 'none'"):
        validate_primitives(["none"])
