import pytest
import torch

from search_space.cells import Cell, SearchCell, drop_path
from search_space.genotype import Genotype, num_edges
from search_space.primitives import PRIMITIVES

GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 2), ("avg_pool_3x3", 0)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("skip_connect", 1), ("sep_conv_5x5", 2), ("dil_conv_5x5", 1)],
    reduce_concat=[2, 3],
)


@pytest.mark.parametrize("reduction", [False, True])
@pytest.mark.parametrize("reduction_prev", [False, True])
def test_search_cell_shapes(reduction, reduction_prev):
    torch.manual_seed(0)
    nodes, C = 3, 4
    cell = SearchCell(nodes=nodes, C_pp=6, C_p=5, C=C, reduction=reduction, reduction_prev=reduction_prev)
    assert len(cell.edges) == num_edges(nodes) == 9
    s1 = torch.randn(2, 5, 9, 5)
    s0 = torch.randn(2, 6, 17, 10) if reduction_prev else torch.randn(2, 6, 9, 5)
    w = torch.softmax(torch.randn(num_edges(nodes), len(PRIMITIVES)), dim=-1)
    out = cell(s0, s1, w)
    expected = (5, 3) if reduction else (9, 5)
    assert out.shape == (2, nodes * C, *expected)


def test_search_cell_with_edge_weights():
    cell = SearchCell(nodes=2, C_pp=4, C_p=4, C=4, reduction=False, reduction_prev=False)
    w = torch.softmax(torch.randn(5, len(PRIMITIVES)), dim=-1)
    x = torch.randn(1, 4, 6, 6)
    assert cell(x, x, w, torch.full((5,), 0.5)).shape == (1, 8, 6, 6)


@pytest.mark.parametrize("reduction", [False, True])
@pytest.mark.parametrize("reduction_prev", [False, True])
def test_discrete_cell_shapes(reduction, reduction_prev):
    torch.manual_seed(0)
    cell = Cell(GENOTYPE, C_pp=6, C_p=5, C=4, reduction=reduction, reduction_prev=reduction_prev)
    assert cell.multiplier == 2
    s1 = torch.randn(2, 5, 9, 5)
    s0 = torch.randn(2, 6, 17, 10) if reduction_prev else torch.randn(2, 6, 9, 5)
    out = cell(s0, s1)
    assert out.shape == (2, 8, *((5, 3) if reduction else (9, 5)))


def test_discrete_cell_bn_is_affine():
    cell = Cell(GENOTYPE, C_pp=4, C_p=4, C=4, reduction=False, reduction_prev=False)
    bns = [m for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(bn.affine for bn in bns)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    cell = Cell(GENOTYPE, C_pp=4, C_p=4, C=4, reduction=False, reduction_prev=False).eval()
    x = torch.randn(3, 4, 6, 6)
    torch.testing.assert_close(cell(x, x, 0.9), cell(x, x, 0.0))


def test_drop_path_drops_whole_samples():
    torch.manual_seed(0)
    out = drop_path(torch.ones(64, 2, 3, 3), 0.5)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.all(per_sample.min(dim=1).values == per_sample.max(dim=1).values)
    assert torch.equal(drop_path(torch.ones(2, 1, 1, 1), 0.0), torch.ones(2, 1, 1, 1))
