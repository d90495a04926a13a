import itertools
import math
from collections import Counter

import pytest
import torch

from search_space import PRIMITIVES, Genotype, genotype_space_size, sample_genotype, sample_genotypes


def test_same_seed_same_genotype_and_a_generator_advances():
    assert sample_genotype(3, primitives=PRIMITIVES, nodes=4) == sample_genotype(3, primitives=PRIMITIVES, nodes=4)
    generator = torch.Generator().manual_seed(3)
    first = sample_genotype(generator, primitives=PRIMITIVES, nodes=4)
    second = sample_genotype(generator, primitives=PRIMITIVES, nodes=4)
    assert first == sample_genotype(3, primitives=PRIMITIVES, nodes=4) and second != first
    assert {sample_genotype(s, primitives=PRIMITIVES, nodes=4).hash for s in range(20)}.__len__() == 20


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_only_valid_genotypes_of_the_experiments_space(nodes):
    primitives = ("none", "skip_connect", "sep_conv_3x3")
    for seed in range(50):
        genotype = sample_genotype(seed, primitives=primitives, nodes=nodes)
        Genotype.from_json(genotype.to_json())  # what files hold validates
        assert genotype.normal_concat == genotype.reduce_concat == tuple(range(2, nodes + 2))
        for cell in (genotype.normal, genotype.reduce):
            assert len(cell) == 2 * nodes
            for i in range(nodes):
                (op_a, a), (op_b, b) = cell[2 * i : 2 * i + 2]
                assert 0 <= a < b < i + 2  # two distinct earlier states, in increasing order
                assert {op_a, op_b} <= {"skip_connect", "sep_conv_3x3"}  # never 'none', only its primitives


def test_the_draw_is_uniform_over_a_small_space():
    """2 real ops, 2 nodes: per cell 1 * 4 (node 0) x 3 * 4 (node 1) = 48, so 48**2 genotypes; every
    input pair and op of a node appears about equally often."""
    primitives, nodes = ("none", "avg_pool_3x3", "skip_connect"), 2
    assert genotype_space_size(primitives=primitives, nodes=nodes) == 48**2
    draws = [sample_genotype(g, primitives=primitives, nodes=nodes) for g in range(3000)]
    pairs = Counter((g.reduce[2][1], g.reduce[3][1]) for g in draws)
    assert set(pairs) == set(itertools.combinations(range(3), 2))
    assert all(abs(count / 3000 - 1 / 3) < 0.04 for count in pairs.values()), pairs
    ops = Counter(op for g in draws for op, _ in g.normal + g.reduce)
    assert set(ops) == {"avg_pool_3x3", "skip_connect"}
    assert abs(ops["skip_connect"] / sum(ops.values()) - 0.5) < 0.02


def test_every_primitive_appears():
    draws = sample_genotypes(0, 40, primitives=PRIMITIVES, nodes=4)
    used = {op for g in draws for op, _ in g.normal + g.reduce}
    assert used == set(PRIMITIVES) - {"none"}


def test_distinct_draws_and_the_space_size():
    primitives = ("skip_connect",)  # one op, one node: one genotype
    assert genotype_space_size(primitives=primitives, nodes=1) == 1
    assert sample_genotypes(0, 1, primitives=primitives, nodes=1) == [
        sample_genotype(0, primitives=primitives, nodes=1)
    ]
    with pytest.raises(ValueError, match="cannot draw 2 distinct genotypes.*holds only 1"):
        sample_genotypes(0, 2, primitives=primitives, nodes=1)
    assert len(sample_genotypes(0, 3, primitives=primitives, nodes=1, distinct=False)) == 3
    # A space of 4 genotypes (2 ops, 1 node) is drawn completely, each once.
    four = sample_genotypes(5, 4, primitives=("skip_connect", "avg_pool_3x3"), nodes=1)
    assert len(set(four)) == 4
    assert (
        genotype_space_size(primitives=PRIMITIVES, nodes=4)
        == (math.prod(math.comb(i + 2, 2) for i in range(4)) * 7**8) ** 2
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="nodes must be an int >= 1, but got 0"):
        sample_genotype(0, primitives=PRIMITIVES, nodes=0)
    with pytest.raises(ValueError, match="at least one operation other than 'none'"):
        sample_genotype(0, primitives=("none",), nodes=1)
    with pytest.raises(TypeError, match="torch.Generator or an int seed"):
        sample_genotype(0.5, primitives=PRIMITIVES, nodes=1)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        sample_genotypes(0, -1, primitives=PRIMITIVES, nodes=1)
