"""The DARTS reference of ``benchmarks/`` against our search step.

Both sides start from the same numbers (the reference is built from a copy of the supernet) and
the same batches and seeds, in float64. They evaluate the same expressions in a different order
(e.g. the reference sums ``w_none * 0`` too, flattens ``theta`` into one vector, takes ``||v||``
over that vector, and reaches ``w - eps v`` as ``(w + eps v) - 2 eps v`` in place), so they agree
up to rounding: ~1e-16 relative for a gradient, ~1e-14 for the second-order one, where the
finite difference divides weight rounding errors by ``2 eps`` (``eps = 0.01 / ||v||``). The
tolerance, 1e-10 of the largest entry, leaves four orders of magnitude for that and is still
eight orders below the second-order term the comparison must see (checked below).
"""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_supernet  # noqa: E402
import supernet_steps  # noqa: E402
from reference_darts import ReferenceMixedOp, ReferenceNetwork, Zero  # noqa: E402
from supernet_steps import Setting, build_supernet, make_batches, make_searcher  # noqa: E402

from search_space import PRIMITIVES, MixedOp  # noqa: E402

TINY = Setting(batch=4, layers=3, nodes=2, channels=4, height=16, width=16)  # normal and reduction cells
RELATIVE = 1e-10


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def assert_same(ours: torch.Tensor, reference: torch.Tensor) -> None:
    ours, reference = ours.detach(), reference.detach()
    torch.testing.assert_close(ours, reference, rtol=0.0, atol=RELATIVE * float(reference.abs().max()))


def pair(seed: int = 0):
    net = build_supernet(TINY, seed=seed, dtype=torch.float64, random_alphas=True)
    reference = make_searcher("reference", net, seed=seed + 2)  # copies net first
    return make_searcher("ours", net, seed=seed + 2), reference


def test_reference_mixed_op_computes_every_primitive_with_our_modules():
    torch.manual_seed(0)
    edge = MixedOp(4, 2).double().train()
    mixed = ReferenceMixedOp.from_mixed_op(edge)
    assert len(mixed._ops) == len(PRIMITIVES) == len(edge.ops) + 1
    assert isinstance(mixed._ops[PRIMITIVES.index("none")], Zero)
    assert [m for m in mixed._ops if not isinstance(m, Zero)] == list(edge.ops)  # shared, same order
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)  # odd sizes: the strided Zero must match
    weights = torch.softmax(torch.randn(len(PRIMITIVES), dtype=torch.float64), dim=0)
    with torch.no_grad():
        torch.testing.assert_close(mixed(x, weights), edge(x, weights), rtol=0, atol=1e-13)


def test_reference_network_holds_the_supernet_numbers_in_order():
    net = build_supernet(TINY, seed=0, dtype=torch.float64, random_alphas=True)
    reference = ReferenceNetwork(net)
    ours, theirs = list(net.weight_parameters()), reference.weight_parameters()
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    assert all(torch.equal(a, b) and a is not b for a, b in zip(ours, theirs))
    assert all(torch.equal(a, b) for a, b in zip(net.arch_parameters(), reference.arch_parameters()))
    assert len(list(reference.parameters())) == len(list(net.parameters()))  # nothing extra, nothing twice
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    for seed in (1, 2):  # train mode with dropout: the same masks from the same seed
        torch.manual_seed(seed)
        expected = net(x)
        torch.manual_seed(seed)
        assert_same(reference(x), expected)


@pytest.mark.parametrize("order", ["first", "second"])
def test_alpha_gradients_equal_the_reference(order):
    ours, reference = pair()
    train, arch = make_batches(TINY, seed=1, dtype=torch.float64)
    expected = flat(reference.alpha_gradients(train, arch, order=order, seed=5))
    got = flat(ours.alpha_gradients(train, arch, order=order, seed=5))
    assert_same(got, expected)
    if order == "second":  # the comparison sees the second-order term: it is far above the tolerance
        first = flat(reference.alpha_gradients(train, arch, order="first", seed=5))
        assert float((expected - first).abs().max()) > 1e6 * RELATIVE * float(expected.abs().max())


@pytest.mark.parametrize("order", ["first", "second"])
def test_search_step_equals_the_reference(order):
    ours, reference = pair()
    train, arch = make_batches(TINY, seed=1, dtype=torch.float64)
    for searcher in (ours, reference):
        for step in range(2):  # the second step also sees the first one's momentum and Adam state
            torch.manual_seed(10 + step)  # the weight step's dropout draws from the global RNG
            searcher.step(train, arch, order=order, seed=20 + step)
    for get in (
        lambda s: s.model.weight_parameters(),
        lambda s: s.model.arch_parameters(),
        lambda s: [b for b in s.model.buffers() if b.is_floating_point()],  # BatchNorm statistics
        lambda s: [s.weight_optimizer.state[p]["momentum_buffer"] for p in s.model.weight_parameters()],
    ):
        assert_same(flat(get(ours)), flat(get(reference)))
    assert all(p.grad is None for p in ours.model.arch_parameters())


def test_reference_architecture_step_restores_batchnorm_statistics():
    _, reference = pair()
    train, arch = make_batches(TINY, seed=1, dtype=torch.float64)
    before = {name: b.clone() for name, b in reference.model.named_buffers()}
    reference.alpha_gradients(train, arch, order="second", seed=3)
    assert all(torch.equal(b, before[name]) for name, b in reference.model.named_buffers())


def test_equivalence_report_is_within_tolerance():
    small = Setting(batch=2, layers=3, nodes=1, channels=2, height=8, width=8)
    result = supernet_steps.equivalence(small, dtype=torch.float64)
    for key in ("alpha_grad_first", "alpha_grad_second"):
        assert result[key]["max_rel"] < RELATIVE
    assert all(d["max_rel"] < RELATIVE for d in result["after_second_order_step"].values())
    assert result["second_minus_first_max_abs"] > 1e6 * RELATIVE * result["alpha_grad_second"]["max_abs_reference"]


def test_reference_peak_prediction_is_linear_above_setup():
    probe = {"probe_batches": [2, 4], "peak_rss_bytes": [3 * 2**30, 5 * 2**30], "setup_rss_bytes": 2**30}
    assert bench_supernet.predict_reference_peak(probe, 8, "first") == 9 * 2**30
    factor = bench_supernet.SECOND_ORDER_FACTOR
    assert bench_supernet.predict_reference_peak(probe, 8, "second") == 2**30 + 8 * 2**30 * factor


@pytest.mark.slow
def test_benchmark_cli_writes_results_and_skips_a_reference_that_would_not_fit(tmp_path, capsys):
    out = tmp_path / "supernet.json"
    argv = [
        "--batch",
        "2",
        "--layers",
        "3",  # the fewest that search a normal cell
        "--nodes",
        "1",
        "--channels",
        "2",
        "--height",
        "8",
        "--width",
        "8",
        "--orders",
        "first",
        "--check-size",
        "8",
        "--profile-batch",
        "2",
        "--out",
        str(out),
    ]
    assert bench_supernet.main([*argv, "--reference-max-gb", "0.001"]) == 0  # no reference run fits
    result = json.loads(out.read_text())
    assert [(r["impl"], r["batch"]) for r in result["runs"]] == [("ours", 2), ("reference", 2)]
    assert result["runs"][0]["samples_per_s"] > 0 and "skipped" in result["runs"][1]
    assert result["comparisons"][0]["reference_measured"] is False
    assert result["equivalence"]["float64"]["alpha_grad_second"]["max_rel"] < RELATIVE
    assert "reference not measured" in capsys.readouterr().out
    # the single passes: the forward+backward (reference skipped too), the evaluation network
    # before and after, the profile; and the SUMMARY rows built from them
    fb = result["forward_backward"]["comparisons"]
    assert [(c["batch"], c["reference_measured"]) for c in fb] == [(2, False)] and fb[0]["ours_seconds"] > 0
    runs = result["evaluation_network"]["runs"]
    assert [r["layout"] for r in runs] == ["before", "after"] and all(r["samples_per_s"] > 0 for r in runs)
    top = result["profile"]["top_ops"]
    assert 0 < len(top) <= 10 and 0 < sum(op["share"] for op in top) <= 1.0 + 1e-6
    import run_all

    rows = "\n".join(run_all._supernet(result))
    assert "one forward+backward, batch 2" in rows and "reference not run" in rows
    assert "evaluation Network training step" in rows and "where our forward+backward's time goes" in rows
