"""The sequence cell: shapes, and padding never counts for every op, the cells and the mix."""

from __future__ import annotations

import pytest
import torch

from search_space.sequence_cell import (
    SEQUENCE_OPS,
    MixedSequenceOp,
    SearchSequenceCell,
    SequenceCell,
    build_sequence_op,
    sequence_num_edges,
    validate_sequence_ops,
)

H = 6
REAL_OPS = [op for op in SEQUENCE_OPS if op != "none"]


def _batch(lengths: list[int], steps: int, *, seed: int = 0) -> torch.Tensor:
    """(B, steps, H) with garbage (large values) in each clip's padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), steps, H, generator=g)  # (B, T, H)
    for b, n in enumerate(lengths):
        x[b, n:] = 100.0 * torch.randn(steps - n, H, generator=g)
    return x


def _check_padding_never_counts(run) -> None:
    """``run(x, lengths) -> (B, T, H)``: a clip's valid outputs do not depend on its batch mates,
    on its padding's content or on its padding's length; padded outputs are zero."""
    lengths = [5, 2, 7, 1]
    x = _batch(lengths, 7)
    out = run(x, torch.tensor(lengths))  # (4, 7, H)
    for b, n in enumerate(lengths):
        assert torch.all(out[b, n:] == 0), f"sample {b}: padded steps are not zero"
        alone = run(x[b : b + 1, :n], torch.tensor([n]))  # (1, n, H): no mates, no padding
        torch.testing.assert_close(out[b, :n], alone[0], atol=1e-5, rtol=1e-5)
        longer = torch.cat([x[b : b + 1, :n], 7.0 * torch.ones(1, 11, H)], dim=1)  # (1, n + 11, H)
        padded = run(longer, torch.tensor([n]))
        torch.testing.assert_close(out[b, :n], padded[0, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", REAL_OPS)
def test_every_op_keeps_shape_and_ignores_padding(name: str) -> None:
    torch.manual_seed(0)
    op = build_sequence_op(name, H).eval()
    with torch.no_grad():
        assert op(torch.randn(3, 4, H), None).shape == (3, 4, H)
        _check_padding_never_counts(op)


def test_bilstm_backward_direction_starts_at_the_last_valid_step() -> None:
    """The backward half at a clip's last valid step has read that step only (a fresh state)."""
    torch.manual_seed(0)
    op = build_sequence_op("bilstm", H).eval()
    x = _batch([3], 8)
    with torch.no_grad():
        out = op(x, torch.tensor([3]))  # (1, 8, H)
        last_only = op(x[:, 2:3], None)  # (1, 1, H): the backward direction from step 2 alone
    torch.testing.assert_close(out[0, 2, H // 2 :], last_only[0, 0, H // 2 :])


def test_bilstm_needs_even_hidden() -> None:
    with pytest.raises(ValueError, match="even"):
        build_sequence_op("bilstm", 5)


def test_attention_works_at_any_batch_size() -> None:
    op = build_sequence_op("attention", H).eval()
    for batch in (1, 3, 16, 17):
        assert op(torch.randn(batch, 5, H), torch.full((batch,), 5)).shape == (batch, 5, H)


def test_search_cell_and_mixed_op_ignore_padding() -> None:
    torch.manual_seed(0)
    cell = SearchSequenceCell(hidden=H, nodes=3, ops=SEQUENCE_OPS).eval()
    assert len(cell.edges) == sequence_num_edges(3) == 6
    weights = torch.softmax(torch.randn(6, len(SEQUENCE_OPS)), dim=-1)  # (E, n_ops)
    with torch.no_grad():
        _check_padding_never_counts(lambda x, lengths: cell(x, weights, lengths))
    mixed = MixedSequenceOp(H, ops=("none", "skip", "gru")).eval()
    with torch.no_grad():
        _check_padding_never_counts(lambda x, lengths: mixed(x, torch.tensor([0.2, 0.3, 0.5]), lengths))


def test_search_cell_gradient_reaches_every_weight() -> None:
    torch.manual_seed(0)
    cell = SearchSequenceCell(hidden=H, nodes=2, ops=("none", "skip", "lstm", "attention"))
    alpha = torch.zeros(3, 4, requires_grad=True)
    cell(torch.randn(2, 5, H), torch.softmax(alpha, dim=-1), torch.tensor([5, 3])).square().sum().backward()
    assert alpha.grad is not None and torch.all(alpha.grad != 0)
    with pytest.raises(ValueError, match="shape"):
        cell(torch.randn(2, 5, H), torch.zeros(3, 3))


def test_discrete_cell_builds_its_edges_and_ignores_padding() -> None:
    torch.manual_seed(0)
    edges = [("bilstm", 0), ("attention", 0), ("conv_1d_3", 1), ("gru", 2), ("dil_conv_1d_3", 1), ("skip", 0)]
    with pytest.raises(ValueError, match="odd"):
        SequenceCell(edges, hidden=H)
    cell = SequenceCell(edges[:5], hidden=H).eval()
    assert cell.nodes == 3 and cell.node_of_edge == (0, 1, 1, 2, 2)
    with torch.no_grad():
        _check_padding_never_counts(cell)
    with pytest.raises(ValueError, match="reads state 2"):
        SequenceCell([("lstm", 0), ("lstm", 2), ("gru", 0)], hidden=H)
    with pytest.raises(ValueError, match="invalid op 'none'"):
        SequenceCell([("none", 0)], hidden=H)


def test_validate_sequence_ops_names_the_problem() -> None:
    assert validate_sequence_ops(["lstm", "none"]) == ("lstm", "none")
    with pytest.raises(ValueError, match="unknown sequence ops \\['transformer'\\]"):
        validate_sequence_ops(["lstm", "transformer"])
    with pytest.raises(ValueError, match="repeat"):
        validate_sequence_ops(["lstm", "lstm"])
    with pytest.raises(ValueError, match="other than 'none'"):
        validate_sequence_ops(["none"])
