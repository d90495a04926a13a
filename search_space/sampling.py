"""Genotypes drawn uniformly at random from a search space (pure torch/python).

Random architectures are the control every NAS result must beat (Yang et al., ICLR 2020; Lindauer
& Hutter, JMLR 2020), and random search with weight sharing (Li & Talwalkar, UAI 2019) trains a
supernet on them. Both must draw from the *experiment's own* space, so the draw takes the same
``primitives`` and ``nodes`` the supernet was built with, and emits only what a derived genotype
may be: per node, two inputs from distinct earlier states, each with an operation other than
``none``; every intermediate node concatenated.

Uniform over genotypes: per node, the unordered pair of inputs is uniform over the
``C(i + 2, 2)`` pairs and each of its two operations is uniform over the real primitives,
independently, for the normal and the reduction cell alike. A genotype lists a node's inputs in
increasing order (as ``derive_genotype`` does), so each genotype has exactly one draw.

With ``sequence_ops`` (and ``sequence_nodes``) the draw adds a sequence cell from that space, after
both CNN cells (so a seed gives the same CNN cells with or without it): node 0 reads the input with
a uniform real op, every later node ``i`` a uniform unordered pair of the ``i + 1`` earlier states,
each with a uniform real op (what ``derive_sequence`` may emit).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from search_space.genotype import Genotype
from search_space.primitives import validate_primitives
from search_space.sequence_cell import validate_sequence_ops

__all__ = ["genotype_space_size", "sample_genotype", "sample_genotypes"]


def _real_ops(primitives: Sequence[str]) -> tuple[str, ...]:
    return tuple(op for op in validate_primitives(primitives) if op != "none")


def _check_nodes(nodes: object) -> int:
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise ValueError(f"nodes must be an int >= 1, but got {nodes!r}.")
    return nodes


def _generator(rng: torch.Generator | int) -> torch.Generator:
    if isinstance(rng, torch.Generator):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return torch.Generator().manual_seed(rng)
    raise TypeError(f"rng must be a torch.Generator or an int seed, but got {type(rng).__name__}.")


def genotype_space_size(*, primitives: Sequence[str], nodes: int) -> int:
    """How many distinct genotypes ``sample_genotype`` can emit: per cell, the product over nodes
    of ``C(i + 2, 2) * m ** 2`` (``m`` real primitives), squared for the two cells."""
    m = len(_real_ops(primitives))
    per_cell = math.prod(math.comb(i + 2, 2) * m * m for i in range(_check_nodes(nodes)))
    return per_cell * per_cell


def _sample_cell(generator: torch.Generator, ops: tuple[str, ...], nodes: int) -> tuple[tuple[str, int], ...]:
    edges: list[tuple[str, int]] = []
    for i in range(nodes):
        pairs = list(itertools.combinations(range(i + 2), 2))  # increasing input indices
        pair = pairs[int(torch.randint(len(pairs), (), generator=generator))]
        for j in pair:
            edges.append((ops[int(torch.randint(len(ops), (), generator=generator))], j))
    return tuple(edges)


def _sample_sequence(generator: torch.Generator, ops: tuple[str, ...], nodes: int) -> tuple[tuple[str, int], ...]:
    edges: list[tuple[str, int]] = [(ops[int(torch.randint(len(ops), (), generator=generator))], 0)]
    for i in range(1, nodes):
        pairs = list(itertools.combinations(range(i + 1), 2))  # increasing input indices
        pair = pairs[int(torch.randint(len(pairs), (), generator=generator))]
        for j in pair:
            edges.append((ops[int(torch.randint(len(ops), (), generator=generator))], j))
    return tuple(edges)


def sample_genotype(
    rng: torch.Generator | int,
    *,
    primitives: Sequence[str],
    nodes: int,
    sequence_ops: Sequence[str] | None = None,
    sequence_nodes: int | None = None,
) -> Genotype:
    """One genotype drawn uniformly from the space of ``primitives`` and ``nodes`` (see the module),
    with a sequence cell of ``sequence_ops`` and ``sequence_nodes`` when given (None: the fixed LSTM).

    ``rng``: a ``torch.Generator`` (advanced by the draw: a search's own, checkpointed stream) or
    an int seed (a fresh generator: the same seed gives the same genotype on every machine).
    """
    generator, ops, nodes = _generator(rng), _real_ops(primitives), _check_nodes(nodes)
    normal = _sample_cell(generator, ops, nodes)
    reduce = _sample_cell(generator, ops, nodes)
    sequence = None
    if sequence_ops is not None:
        real = tuple(op for op in validate_sequence_ops(sequence_ops) if op != "none")
        if sequence_nodes is None:
            raise ValueError("sequence_ops needs sequence_nodes, but got None.")
        sequence = _sample_sequence(generator, real, _check_nodes(sequence_nodes))
    concat = tuple(range(2, nodes + 2))
    return Genotype(normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=concat, sequence=sequence)


def sample_genotypes(
    rng: torch.Generator | int,
    n: int,
    *,
    primitives: Sequence[str],
    nodes: int,
    distinct: bool = True,
    sequence_ops: Sequence[str] | None = None,
    sequence_nodes: int | None = None,
) -> list[Genotype]:
    """``n`` genotypes from ``sample_genotype`` (with a sequence cell when ``sequence_ops`` is
    given), in draw order; ``distinct`` redraws repeats (a control set of K random cells should be
    K cells), which needs ``n <= genotype_space_size`` (the CNN cells' space, a lower bound)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be an int >= 0, but got {n!r}.")
    generator = _generator(rng)
    if distinct:
        size = genotype_space_size(primitives=primitives, nodes=nodes)
        if n > size:
            raise ValueError(
                f"cannot draw {n} distinct genotypes: the space of primitives {list(primitives)} with "
                f"{nodes} node(s) holds only {size}."
            )
    drawn: list[Genotype] = []
    seen: set[Genotype] = set()
    while len(drawn) < n:
        genotype = sample_genotype(
            generator, primitives=primitives, nodes=nodes, sequence_ops=sequence_ops, sequence_nodes=sequence_nodes
        )
        if distinct and genotype in seen:
            continue
        seen.add(genotype)
        drawn.append(genotype)
    return drawn
