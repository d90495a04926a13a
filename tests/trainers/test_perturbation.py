"""DARTS-PT's decisions: a hand-computed case with a known score, then on a real supernet."""

import math
from dataclasses import replace

import pytest
import torch

from conftest import make_fold_data
from search_space import Genotype, MixingWeights, num_edges
from trainers.checkpoint import load_checkpoint
from trainers.fold_data import Split
from trainers.perturbation import perturbation_selection
from trainers.search import build_supernet, run_search, split_for_arch_data
from trainers.settings import ModelShape, SearchSettings
from trainers.shared_weights import shared_weight_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRIMITIVES = ("none", "skip_connect", "avg_pool_3x3", "sep_conv_3x3")
NODES = 2  # edges: node 0 reads states 0, 1 (rows 0, 1); node 1 reads 0, 1, 2 (rows 2, 3, 4)

# What each (edge, op) adds to the score while it is in the mix: removing it costs exactly that.
IMPORTANCE = {
    "normal": [
        [0.0, 0.1, 0.5, 0.2],  # avg_pool_3x3 matters most
        [0.0, 0.3, 0.3, 0.1],  # skip and avg_pool tie on UA: the loss decides (TIE_LOSS)
        [0.0, 0.1, 0.1, 0.9],  # sep_conv_3x3
        [0.0, 0.4, 0.2, 0.3],  # skip_connect
        [0.0, 0.05, 0.3, 0.1],  # avg_pool_3x3, but the weakest edge of node 1: dropped
    ],
    "reduce": [
        [0.0, 0.2, 0.1, 0.6],  # sep_conv_3x3
        [0.0, 0.7, 0.1, 0.1],  # skip_connect
        [0.0, 0.2, 0.1, 0.1],  # skip_connect, node 1's weakest edge: dropped
        [0.0, 0.1, 0.6, 0.1],  # avg_pool_3x3
        [0.0, 0.3, 0.2, 0.8],  # sep_conv_3x3
    ],
}
TIE_LOSS = {("normal", 1, 2): 1.0}  # removing avg_pool from normal edge 1 raises the loss more


def hand_score(mixing: MixingWeights) -> tuple[float, float]:
    """UA = sum of the importance of every (edge, op) still mixed (weights not 0); the loss falls
    with the same sum plus the tie-breaking extras."""
    ua = loss = 0.0
    for kind in ("normal", "reduce"):
        ops, edges = getattr(mixing, kind), getattr(mixing, f"{kind}_edges")
        for e in range(num_edges(NODES)):
            if float(edges[e]) == 0.0:
                continue
            for k in range(len(PRIMITIVES)):
                if float(ops[e, k]) != 0.0:
                    ua += IMPORTANCE[kind][e][k]
                    loss -= IMPORTANCE[kind][e][k] + TIE_LOSS.get((kind, e, k), 0.0)
    return ua, loss


def initial_mixing() -> MixingWeights:
    uniform = torch.full((num_edges(NODES), len(PRIMITIVES)), 1 / len(PRIMITIVES))
    return MixingWeights(normal=uniform.clone(), reduce=uniform.clone())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decisions_by_hand(seed):
    """Per edge the op whose removal costs most (lowest UA; on a UA tie the higher loss); per node
    the two edges whose removal costs most, by their chosen op. The score is additive, so the random
    order of the decisions does not change them. 36 measurements: per kind 5 edges x 3 real ops,
    then node 1's three edges."""
    finetuned = []
    genotype, evaluations = perturbation_selection(
        initial_mixing(),
        primitives=PRIMITIVES,
        nodes=NODES,
        score=hand_score,
        generator=torch.Generator().manual_seed(seed),
        finetune=lambda mixing: finetuned.append(mixing),
    )
    assert genotype == Genotype(
        normal=[("avg_pool_3x3", 0), ("avg_pool_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 1)],
        normal_concat=[2, 3],
        reduce=[("sep_conv_3x3", 0), ("skip_connect", 1), ("avg_pool_3x3", 1), ("sep_conv_3x3", 2)],
        reduce_concat=[2, 3],
    )
    assert evaluations == 2 * (5 * 3 + 3)
    # Fine-tuning between the 5 + 1 steps (5 gaps), each time with one more edge decided per kind.
    assert len(finetuned) == 5
    for step, mixing in enumerate(finetuned, start=1):
        for kind in ("normal", "reduce"):
            ops = getattr(mixing, kind)
            assert int((ops == 1.0).all(dim=0).sum()) == 0
            assert int(((ops == 1.0).sum(dim=1) == 1).sum()) == step  # one-hot rows: the decided edges
    assert float(finetuned[-1].normal_edges.sum()) == num_edges(NODES)  # edges are decided last


def test_one_real_operation_needs_no_measurement_and_edges_still_do():
    primitives = ("none", "sep_conv_3x3")
    uniform = torch.full((num_edges(NODES), 2), 0.5)
    calls = []

    def score(mixing):
        calls.append(mixing)
        edges = mixing.normal_edges.tolist() + mixing.reduce_edges.tolist()
        return sum(w * (e + 1) for e, w in enumerate(edges)), 0.0  # later edges matter more

    genotype, evaluations = perturbation_selection(
        MixingWeights(uniform, uniform.clone()),
        primitives=primitives,
        nodes=NODES,
        score=score,
        generator=torch.Generator().manual_seed(0),
    )
    assert evaluations == len(calls) == 2 * 3
    assert genotype.normal == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2))


# ------------------------------------------------------------------ on a real supernet


def tiny_data(**overrides):
    return make_fold_data(**{"n_train": 24, "n_valid": 12, "n_test": 12, **overrides})


def settings(**overrides) -> SearchSettings:
    values = dict(
        shape=ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8),
        primitives=("none", "skip_connect", "sep_conv_3x3"),
        epochs=1,
        batch_size=8,
        selection="perturbation",
    )
    return SearchSettings(**{**values, **overrides})


def test_on_a_real_supernet_the_first_decision_is_the_costliest_removal_measured_by_hand():
    """The first normal edge of the seeded order keeps the op whose masking, measured directly on the
    alpha speakers with batch statistics, leaves the lowest UA (then the highest loss)."""
    data, config = tiny_data(), settings()
    torch.manual_seed(0)
    net = build_supernet(data, config)
    with torch.no_grad():  # alphas away from uniform, so the masks differ
        for p in net.arch_parameters():
            p.copy_(torch.randn_like(p))
    _, alpha_speakers = split_for_arch_data(data, config)
    loss_fn = torch.nn.CrossEntropyLoss()

    def measure(mixing):
        (m,) = shared_weight_metrics(
            net, [mixing], alpha_speakers, batch_size=8, device="cpu", loss_fn=loss_fn, batch_statistics=True
        )
        return m["ua"], m["loss"]

    snapshots = []
    initial = net.mixing_weights().detached()
    perturbation_selection(
        initial,
        primitives=config.primitives,
        nodes=2,
        score=measure,
        generator=torch.Generator().manual_seed(4),
        finetune=snapshots.append,
    )
    first_edge = int(torch.randperm(num_edges(2), generator=torch.Generator().manual_seed(4))[0])
    by_hand = {}
    for k in (1, 2):  # skip_connect, sep_conv_3x3 ('none' is never a candidate)
        masked = initial.detached()
        masked.normal[first_edge, k] = 0.0
        by_hand[k] = measure(masked)
    expected = min(by_hand, key=lambda k: (by_hand[k][0], -by_hand[k][1]))
    assert snapshots[0].normal[first_edge].tolist() == [1.0 if k == expected else 0.0 for k in range(3)]
    assert by_hand[1] != by_hand[2]  # the two removals are told apart


def test_a_search_with_perturbation_selection_records_it_and_uses_only_alpha_speakers(tmp_path):
    data = tiny_data()
    result = run_search(data, settings=settings(), device="cpu", checkpoint_path=tmp_path / "a.pt")
    last = result.history[-1]
    assert last["method"] == "darts" and last["selection"] == "perturbation"
    assert last["pt_evaluations"] == 2 * (5 * 2 + 3) and last["pt_seconds"] > 0
    assert result.genotype.hash == last["genotype_hash"] and Genotype.from_json(last["genotype"]) == result.genotype
    assert len(last["argmax_genotype_hash"]) == 12
    assert all(op != "none" for op, _ in result.genotype.normal + result.genotype.reduce)

    # Other validation speakers and NaN test speakers change nothing that was chosen.
    noise = torch.randn(data.valid.x.shape, generator=torch.Generator().manual_seed(9))
    other = replace(
        data,
        valid=Split(x=noise, y=data.valid.y.flip(0), utt_ids=data.valid.utt_ids),
        test=Split(x=torch.full_like(data.test.x, math.nan), y=data.test.y, utt_ids=data.test.utt_ids),
    )
    again = run_search(other, settings=settings(), device="cpu")
    assert again.genotype == result.genotype

    # A finished search resumes to the perturbation genotype, not to the argmax of its alphas.
    resumed = run_search(data, settings=settings(), device="cpu", checkpoint_path=tmp_path / "a.pt")
    assert resumed.genotype == result.genotype


def test_fine_tuning_between_decisions_trains_the_weights_and_not_the_alphas(tmp_path):
    data = tiny_data()
    run_search(data, settings=settings(), device="cpu", checkpoint_path=tmp_path / "plain.pt")
    run_search(data, settings=settings(pt_finetune_epochs=1), device="cpu", checkpoint_path=tmp_path / "tuned.pt")
    plain, tuned = load_checkpoint(tmp_path / "plain.pt")["model"], load_checkpoint(tmp_path / "tuned.pt")["model"]
    for name in ("alphas_normal", "alphas_reduce"):
        assert torch.equal(plain[name], tuned[name])
    assert not torch.equal(plain["stem.0.weight"], tuned["stem.0.weight"])
    assert any(not torch.equal(plain[k], tuned[k]) for k in plain if "running_mean" in k)  # BN followed the tuning
