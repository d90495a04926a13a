"""The genotype's optional sequence cell: JSON, hash, validation, derivation, the derived network."""

from __future__ import annotations

import pytest
import torch

from search_space import build_model
from search_space.genotype import Genotype, derive_genotype, derive_sequence
from search_space.network import Network
from search_space.primitives import PRIMITIVES
from search_space.sequence_cell import SequenceCell

CELLS = {
    "normal": [("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 1), ("max_pool_3x3", 2)],
    "normal_concat": [2, 3],
    "reduce": [("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 2), ("skip_connect", 0)],
    "reduce_concat": [2, 3],
}
# The hash this genotype had before Genotype had a sequence field (commit 9c07698).
STORED_HASH = "4293c68a413d"
SEQUENCE = [("bilstm", 0), ("attention", 0), ("conv_1d_3", 1)]


def test_a_genotype_without_a_sequence_keeps_its_json_and_hash() -> None:
    old = Genotype(**CELLS)
    assert old.sequence is None and old.sequence_nodes == 0
    assert old.hash == STORED_HASH
    assert "sequence" not in old.to_json()
    assert Genotype.from_json(old.to_json()) == old


def test_a_sequence_round_trips_and_changes_the_hash() -> None:
    new = Genotype(**CELLS, sequence=SEQUENCE)
    assert new.sequence == tuple(SEQUENCE) and new.sequence_nodes == 2
    assert Genotype.from_json(new.to_json()) == new
    assert new.hash != STORED_HASH
    assert '"sequence":[["bilstm",0],["attention",0],["conv_1d_3",1]]' in new.to_json()


@pytest.mark.parametrize(
    ("sequence", "message"),
    [
        ([("lstm", 0), ("gru", 0)], "odd number"),
        ([("sep_conv_3x3", 0)], "invalid operation 'sep_conv_3x3'"),
        ([("none", 0)], "invalid operation 'none'"),
        ([("lstm", 1)], "node 0 may only read states 0..0"),
        ([("lstm", 0), ("gru", 0), ("skip", 2)], "node 1 may only read states 0..1"),
        ("lstm", "sequence of"),
    ],
)
def test_a_bad_sequence_is_named(sequence: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Genotype(**CELLS, sequence=sequence)
    with pytest.raises(ValueError, match="unexpected"):
        Genotype.from_dict({**Genotype(**CELLS).to_dict(), "sequences": []})


def test_derive_sequence_keeps_the_strongest_non_none_edges() -> None:
    ops = ("none", "skip", "lstm", "attention")
    alpha = torch.zeros(6, 4)  # 3 nodes: edges (0->0), (0->1, 1->1), (0->2, 1->2, 2->2)
    alpha[0, 0] = 9.0  # node 0's only edge: none dominates, its best real op (first listed) stays
    alpha[1, 2] = 3.0  # node 1 keeps both of its edges
    alpha[2, 3] = 2.0
    alpha[3, 1] = 1.0  # node 2: edges from 1 and 2 are stronger than from 0
    alpha[4, 3] = 4.0
    alpha[5, 2] = 5.0
    assert derive_sequence(alpha, ops=ops, nodes=3) == (
        ("skip", 0),
        ("lstm", 0),
        ("attention", 1),
        ("attention", 1),
        ("lstm", 2),
    )
    with pytest.raises(ValueError, match="shape"):
        derive_sequence(torch.zeros(5, 4), ops=ops, nodes=3)
    g = derive_genotype(
        torch.zeros(5, len(PRIMITIVES)),
        torch.zeros(5, len(PRIMITIVES)),
        primitives=PRIMITIVES,
        nodes=2,
        alpha_sequence=alpha,
        sequence_ops=ops,
        sequence_nodes=3,
    )
    assert g.sequence_nodes == 3
    assert (
        derive_genotype(
            torch.zeros(5, len(PRIMITIVES)), torch.zeros(5, len(PRIMITIVES)), primitives=PRIMITIVES, nodes=2
        ).sequence
        is None
    )


def _net(sequence: list[tuple[str, int]] | None) -> Network:
    torch.manual_seed(0)
    return Network(Genotype(**CELLS, sequence=sequence), layers=3, init_channels=4, n_classes=3, lstm_hidden=6).eval()


def test_the_derived_network_builds_the_sequence_cell_and_ignores_padding() -> None:
    fixed, searched = _net(None), _net(SEQUENCE)
    assert fixed.head.lstm is not None and fixed.head.sequence_cell is None
    assert searched.head.lstm is None and isinstance(searched.head.sequence_cell, SequenceCell)
    assert searched.head.sequence_cell.edges == tuple(SEQUENCE)
    x = torch.randn(3, 1, 16, 24)  # (B, C_in, F, T)
    lengths = torch.tensor([24, 9, 15])
    with torch.no_grad():
        logits = searched(x, lengths)  # (3, 3)
        alone = torch.cat([searched(x[b : b + 1], lengths[b : b + 1]) for b in range(3)])  # no batch mates
        torch.testing.assert_close(alone, logits, atol=1e-5, rtol=1e-5)
        junk = x.clone()
        for b, n in enumerate(lengths.tolist()):
            junk[b, :, :, n:] = 50.0 * torch.randn_like(junk[b, :, :, n:])  # other padding content
        torch.testing.assert_close(searched(junk, lengths), logits, atol=1e-5, rtol=1e-5)
        config = searched.config
        rebuilt = build_model(Genotype.from_dict(config.pop("genotype")), **config)
        rebuilt.load_state_dict(searched.state_dict())
        torch.testing.assert_close(rebuilt.eval()(x, lengths), logits)


def test_random_genotypes_can_draw_a_sequence_cell_without_changing_their_cnn_cells() -> None:
    from search_space import sample_genotype

    ops = ("none", "skip", "lstm", "attention")
    plain = sample_genotype(3, primitives=PRIMITIVES, nodes=2)
    with_sequence = sample_genotype(3, primitives=PRIMITIVES, nodes=2, sequence_ops=ops, sequence_nodes=3)
    assert plain.sequence is None and with_sequence.normal == plain.normal and with_sequence.reduce == plain.reduce
    seen = set()
    for seed in range(200):
        g = sample_genotype(seed, primitives=PRIMITIVES, nodes=1, sequence_ops=ops, sequence_nodes=3)
        assert g.sequence_nodes == 3 and all(op != "none" for op, _ in g.sequence)
        assert g.sequence[1][1] < g.sequence[2][1] and g.sequence[3][1] < g.sequence[4][1]  # distinct, increasing
        seen.add(g.sequence)
    assert len(seen) > 100  # 3 * (1 * 9) * (3 * 9) = 729 cells
