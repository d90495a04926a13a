"""The architecture gradient covers the sequence cell's alphas, first and second order (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from search_space import SuperNet
from trainers.architect import architecture_gradients
from trainers.training import weight_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEQUENCE = {"ops": ["none", "skip", "lstm", "gru", "bilstm", "conv_1d_3", "attention"], "nodes": 2, "hidden": 4}


def tiny_net() -> SuperNet:
    torch.manual_seed(0)
    net = SuperNet(
        layers=3,
        nodes=1,
        init_channels=2,
        n_classes=3,
        lstm_hidden=4,
        dropout=0.0,
        primitives=("none", "skip_connect", "avg_pool_3x3"),
        checkpoint=False,
        sequence=SEQUENCE,
    ).double()
    with torch.no_grad():  # away from uniform
        for p in net.arch_parameters():
            p.copy_(torch.randn_like(p))
    return net.train()


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64), torch.arange(4) % 3, torch.tensor([8, 5, 3, 8])


def test_the_sequence_alphas_are_architecture_weights_saved_and_derived() -> None:
    net = tiny_net()
    names = [name for name, _ in net.named_arch_parameters()]
    assert names == ["alphas_normal", "alphas_reduce", "alphas_sequence"]
    assert net.alphas_sequence.shape == (3, len(SEQUENCE["ops"]))
    assert "alphas_sequence" in net.state_dict()
    assert all(id(p) != id(net.alphas_sequence) for p in net.weight_parameters())
    assert net.genotype().sequence_nodes == 2
    rebuilt = SuperNet(**net.config)
    assert rebuilt.config == net.config and rebuilt.config["sequence"] == SEQUENCE
    path = net.path_mixing(net.genotype())
    assert path.sequence is not None and float(path.sequence.sum()) == 3.0  # one op per derived edge


def test_first_order_sequence_gradient_matches_central_differences() -> None:
    net, loss_fn = tiny_net(), nn.CrossEntropyLoss()
    x, y, lengths = batch(2)
    optimizer = torch.optim.SGD(list(net.weight_parameters()), lr=0.1)

    def loss() -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return float(loss_fn(net(x, lengths), y))

    grads, _ = architecture_gradients(
        net,
        train_batch=(x, y, lengths),
        arch_batch=(x, y, lengths),
        loss_fn=loss_fn,
        weight_optimizer=optimizer,
        order="first",
        seed=0,
    )
    analytic = grads[-1]  # alphas_sequence
    h = 1e-6
    alpha = net.alphas_sequence
    for e in range(alpha.shape[0]):
        for k in range(alpha.shape[1]):
            with torch.no_grad():
                alpha[e, k] += h
            up = loss()
            with torch.no_grad():
                alpha[e, k] -= 2 * h
            down = loss()
            with torch.no_grad():
                alpha[e, k] += h
            assert float(analytic[e, k]) == pytest.approx((up - down) / (2 * h), abs=1e-7)
    assert float(analytic.abs().max()) > 1e-4  # not trivially zero


def test_second_order_sequence_gradient_matches_the_exact_unrolled_gradient() -> None:
    net, loss_fn = tiny_net(), nn.CrossEntropyLoss()
    (wx, wy, _), (tx, ty, tl), (ax, ay, al) = batch(1), batch(2), batch(3)
    weights = list(net.weight_parameters())
    optimizer = torch.optim.SGD(weights, lr=0.2, momentum=0.9, weight_decay=3e-4)
    weight_step(net, wx, wy, loss_fn=loss_fn, optimizer=optimizer, parameters=weights, grad_clip=5.0)

    names, params = zip(*net.named_weight_parameters())
    group = optimizer.param_groups[0]
    torch.manual_seed(7)
    grads = torch.autograd.grad(loss_fn(net(tx, tl), ty), params, create_graph=True, allow_unused=True)
    unrolled = {
        name: p
        - group["lr"]
        * (
            group["momentum"] * optimizer.state[p]["momentum_buffer"]
            + (0 * p if g is None else g)
            + group["weight_decay"] * p
        )
        for name, p, g in zip(names, params, grads)
    }
    torch.manual_seed(8)
    val = loss_fn(functional_call(net, unrolled, (ax, al)), ay)
    exact = torch.autograd.grad(val, [net.alphas_sequence])[0]

    common = dict(
        train_batch=(tx, ty, tl), arch_batch=(ax, ay, al), loss_fn=loss_fn, weight_optimizer=optimizer, seed=7
    )
    second = architecture_gradients(net, order="second", fd_scale=1e-6, **common)[0][-1]
    first = architecture_gradients(net, order="first", **common)[0][-1]
    tolerance = 1e-3 * float(exact.abs().max())
    torch.testing.assert_close(second, exact, rtol=1e-3, atol=tolerance)
    assert float((second - first).abs().max()) > 5 * tolerance  # the second-order term is there
