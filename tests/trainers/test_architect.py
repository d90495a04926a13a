"""beta-DARTS' regulariser in the architecture gradient (the DARTS gradient itself: test_search.py)."""

import math

import pytest
import torch
from torch import nn

from search_space import SuperNet
from trainers.architect import architecture_gradients, beta_decay_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PRIMITIVES = ("none", "skip_connect", "avg_pool_3x3", "sep_conv_3x3")


def test_beta_decay_loss_and_its_gradient_by_hand():
    """Rows [0, ln 3] and [ln 2, ln 2]: log-sum-exp ln 4 each, mean ln 4; gradient softmax / 2 rows:
    [1/8, 3/8] and [1/4, 1/4]."""
    a = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[math.log(2.0), math.log(2.0)]], dtype=torch.float64, requires_grad=True)
    loss = beta_decay_loss([a, b])
    assert float(loss.detach()) == pytest.approx(math.log(4.0), abs=1e-15)
    loss.backward()
    torch.testing.assert_close(a.grad, torch.tensor([[1 / 8, 3 / 8]], dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(b.grad, torch.tensor([[1 / 4, 1 / 4]], dtype=torch.float64), rtol=0, atol=1e-15)


def test_beta_decay_gradient_matches_central_differences():
    generator = torch.Generator().manual_seed(0)
    alphas = [torch.randn(5, 4, generator=generator, dtype=torch.float64) for _ in range(2)]
    leaves = [a.clone().requires_grad_(True) for a in alphas]
    grads = torch.autograd.grad(beta_decay_loss(leaves), leaves)
    h = 1e-6
    for t, alpha in enumerate(alphas):
        for e, k in [(0, 0), (2, 3), (4, 1)]:
            plus, minus = [a.clone() for a in alphas], [a.clone() for a in alphas]
            plus[t][e, k] += h
            minus[t][e, k] -= h
            numeric = (beta_decay_loss(plus) - beta_decay_loss(minus)) / (2 * h)
            assert float(grads[t][e, k]) == pytest.approx(float(numeric), abs=1e-9)
            assert float(grads[t][e, k]) == pytest.approx(float(torch.softmax(alpha[e], 0)[k]) / 10, abs=1e-15)


def double_net(*, edge_normalization: bool = False) -> SuperNet:
    torch.manual_seed(0)
    net = SuperNet(
        layers=3,
        nodes=2,
        init_channels=4,
        n_classes=3,
        lstm_hidden=6,
        dropout=0.0,
        primitives=PRIMITIVES,
        checkpoint=False,
        edge_normalization=edge_normalization,
    ).double()
    with torch.no_grad():
        for p in net.arch_parameters():
            p.copy_(torch.randn_like(p))
    return net.train()


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.arange(6) % 3


@pytest.mark.parametrize("order", ["first", "second"])
def test_beta_decay_adds_exactly_its_closed_form_to_the_architecture_gradient(order):
    """In float64: gradient with beta_decay=lam minus gradient without = lam * softmax(alpha_e) / 10
    (5 edges per cell kind, 10 rows) on the alphas, 0 on PC-DARTS' betas; the loss stays L_val."""
    net, loss_fn = double_net(edge_normalization=True), nn.CrossEntropyLoss()
    weights = list(net.weight_parameters())
    optimizer = torch.optim.SGD(weights, lr=0.1, momentum=0.9)
    args = dict(
        train_batch=batch(1), arch_batch=batch(2), loss_fn=loss_fn, weight_optimizer=optimizer, order=order, seed=5
    )
    plain, plain_loss = architecture_gradients(net, **args)
    lam = 3.5
    decayed, decayed_loss = architecture_gradients(net, **args, beta_decay=lam)
    assert decayed_loss == plain_loss
    names = [name for name, _ in net.named_arch_parameters()]
    assert names == ["alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"]
    for name, p, g0, g1 in zip(names, net.arch_parameters(), plain, decayed):
        expected = lam * torch.softmax(p.detach(), dim=-1) / 10 if name.startswith("alphas") else torch.zeros_like(p)
        torch.testing.assert_close(g1 - g0, expected, rtol=0, atol=1e-14)


def test_first_order_gradient_is_that_of_the_regularised_loss():
    """d/d alpha of L_val(w, alpha) + lam * L_beta(alpha), by autograd on the whole objective."""
    net, loss_fn = double_net(), nn.CrossEntropyLoss()
    x, y = batch(2)
    lam = 0.7
    objective = loss_fn(net(x), y) + lam * beta_decay_loss([net.alphas_normal, net.alphas_reduce])
    expected = torch.autograd.grad(objective, list(net.arch_parameters()))
    optimizer = torch.optim.SGD(list(net.weight_parameters()), lr=0.1)
    got, _ = architecture_gradients(
        net,
        train_batch=batch(1),
        arch_batch=(x, y),
        loss_fn=loss_fn,
        weight_optimizer=optimizer,
        order="first",
        seed=0,
        beta_decay=lam,
    )
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def test_negative_beta_decay_is_refused():
    net = double_net()
    with pytest.raises(ValueError, match="beta_decay must be >= 0, but got -1"):
        architecture_gradients(
            net,
            train_batch=batch(1),
            arch_batch=batch(2),
            loss_fn=nn.CrossEntropyLoss(),
            weight_optimizer=torch.optim.SGD(list(net.weight_parameters()), lr=0.1),
            order="first",
            seed=0,
            beta_decay=-1.0,
        )
