"""Sub-networks measured with a supernet's shared weights."""

import pytest
import torch

from conftest import make_fold_data
from search_space import SuperNet, sample_genotypes
from trainers.shared_weights import score_genotypes_with_shared_weights, shared_weight_metrics, with_mixing

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRIMITIVES = ("none", "skip_connect", "avg_pool_3x3", "sep_conv_3x3")


def supernet() -> SuperNet:
    """A tiny supernet trained for a few steps on random paths (random-ws' own training)."""
    torch.manual_seed(0)
    net = SuperNet(layers=3, nodes=2, init_channels=4, n_classes=3, lstm_hidden=6, primitives=PRIMITIVES).train()
    train = make_fold_data(n_train=24, n_valid=6, n_test=6).train
    optimizer = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    for step, g in enumerate(sample_genotypes(1, 12, primitives=PRIMITIVES, nodes=2)):
        index = torch.arange(8) + 8 * (step % 3)
        loss = torch.nn.functional.cross_entropy(net(train.x[index], mixing=net.path_mixing(g)), train.y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net


def recall_by_hand(logits: torch.Tensor, y: torch.Tensor) -> float:
    predicted = logits.argmax(dim=1)
    recalls = [float((predicted[y == k] == k).float().mean()) for k in y.unique()]
    return sum(recalls) / len(recalls)


def test_each_genotypes_score_is_its_paths_ua_with_the_shared_weights():
    net, data = supernet(), make_fold_data(n_train=16, n_valid=12, n_test=6)
    genotypes = sample_genotypes(7, 5, primitives=PRIMITIVES, nodes=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scores = score_genotypes_with_shared_weights(net, genotypes, data.valid, batch_size=5)
    net.eval()
    with torch.no_grad():
        expected = [recall_by_hand(net(data.valid.x, mixing=net.path_mixing(g)), data.valid.y) for g in genotypes]
    assert scores == pytest.approx(expected, abs=1e-12)
    assert len(set(scores)) > 1  # the paths differ
    # Eval mode: a sample's prediction does not depend on its batch, so neither does the score.
    assert score_genotypes_with_shared_weights(net, genotypes, data.valid, batch_size=12) == scores
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # nothing trained, nothing moved


def test_batch_statistics_normalise_each_batch_and_leave_the_running_statistics_alone():
    net, data = supernet(), make_fold_data(n_train=16, n_valid=12, n_test=6)
    (genotype,) = sample_genotypes(3, 1, primitives=PRIMITIVES, nodes=2)
    mixing = net.path_mixing(genotype)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    (metrics,) = shared_weight_metrics(net, [mixing], data.valid, batch_size=6, device="cpu", batch_statistics=True)
    # By hand: BatchNorm in training mode on each batch of 6 (in order), dropout off.
    net.eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.train()
    with torch.no_grad():
        logits = torch.cat([net(data.valid.x[i : i + 6], mixing=mixing) for i in (0, 6)])
    for k, v in net.state_dict().items():  # undo what the hand computation did to the statistics
        v.copy_(before[k])
    assert metrics["ua"] == pytest.approx(recall_by_hand(logits, data.valid.y), abs=1e-12)
    assert set(metrics) >= {"ua", "wa", "macro_f1", "confusion"}
    (again,) = shared_weight_metrics(net, [mixing], data.valid, batch_size=6, device="cpu", batch_statistics=True)
    assert again == metrics
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_a_weight_step_on_a_path_trains_the_supernets_own_parameters():
    net = supernet()
    (genotype,) = sample_genotypes(5, 1, primitives=PRIMITIVES, nodes=2)
    module = with_mixing(net, net.path_mixing(genotype)).train()
    assert {id(p) for p in module.parameters()} == {id(p) for p in net.parameters()}
    stem = net.stem[0].weight.detach().clone()
    x, y = torch.randn(4, 1, 12, 12), torch.tensor([0, 1, 2, 0])
    torch.nn.functional.cross_entropy(module(x), y).backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert not torch.equal(stem, net.stem[0].weight)
