"""The DARTS architecture gradient: how the alphas of a SuperNet should move.

``order="first"``: ``grad_alpha L_val(w, alpha)``.

``order="second"``: the gradient of ``L_val(w', alpha)`` at the unrolled weights
``w' = w - xi * (mu * m + grad_w L_train(w, alpha) + wd * w)``, which is exactly the next SGD
step of the weight optimiser (``xi`` its current lr, ``mu`` its momentum, ``m`` its momentum
buffer, ``wd`` its weight decay; as in DARTS, without gradient clipping). The chain rule term
``-xi * grad2_{alpha,w} L_train(w, alpha) . v`` with ``v = grad_w' L_val(w', alpha)`` is a
central finite difference::

    grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+, alpha)
                                        - grad_alpha L_train(w-, alpha)) / (2 * eps)

with ``w+- = w +- eps * v`` and ``eps = 0.01 / ||v||`` (divided by ``2 eps``; the released
code multiplied by ``eps / 2``, which made the term vanish).

Every forward pass of an architecture step runs with a forked torch RNG seeded from one number
drawn per step: all passes over the train batch (the unrolling one and both finite-difference
ones) with the same seed, so they see the same dropout masks and the finite difference measures
the Hessian of one function, not mask noise; the arch batch with that seed + 1. The global RNG
advances by exactly that one draw per step (made by the caller). An architecture step changes
nothing but the alphas: the weights are restored bit for bit (from a copy, not by adding
``eps * v`` back) and BatchNorm running statistics are restored, so they only follow the weight
steps' batches (in both orders; DARTS let the first-order arch pass update them).

``beta_decay > 0`` adds beta-DARTS' regulariser (Ye et al., CVPR 2022, "beta-DARTS: Beta-Decay
Regularization for Differentiable Architecture Search") to the architecture loss:
``L_val + beta_decay * L_beta`` with ``L_beta`` the mean over the edges of both cell kinds of
``logsumexp_k alpha_{e,k}`` (:func:`beta_decay_loss`; their code's ``mlc_loss``). Its gradient,
``softmax(alpha_e) / E_total`` per edge, pulls every alpha of an edge down in proportion to its
weight, which keeps the softmaxed weights from saturating early (a decay of the betas, their name
for the softmaxed alphas). ``L_beta`` does not depend on the weights, so in both orders it adds
exactly ``beta_decay * grad L_beta`` to the gradient. PC-DARTS' edge betas are not regularised.

The whole step runs in exact float32 (``trainers.precision.exact_float32``: TF32 and autocast
off), whatever the weight steps use: the finite difference would amplify TF32's rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from search_space import SuperNet, frozen_batchnorm_stats
from trainers.precision import exact_float32

__all__ = ["DARTS_FD_SCALE", "architecture_gradients", "beta_decay_loss"]

DARTS_FD_SCALE = 0.01  # eps = fd_scale / ||v|| (DARTS)

Batch = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""(B, C_in, F, T) features, (B,) labels and optionally (B,) valid frames per clip (None: all)."""


def _unpack(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    x, y, *rest = batch
    return x, y, (rest[0] if rest else None)


@contextlib.contextmanager
def _seeded_randomness(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the torch RNG of the CPU (and of ``device``) seeded to ``seed``; the
    previous states are put back afterwards, so the global streams do not notice."""
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``d loss / d params`` (zeros for parameters the loss does not reach); frees the graph."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _arch_loss_and_grads(
    model: nn.Module, batch: Batch, *, loss_fn: nn.Module, arch: list[nn.Parameter]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``L(model(x), y)`` and its gradient w.r.t. ``arch`` alone.

    The input's gradient is requested too (and dropped): a backward pass that only needs the
    alphas skips the edges of the first cell whose inputs need no gradient, and the activations
    that the supernet's recomputing edges rebuilt for them then stay alive until the pass ends,
    doubling its peak memory (measured: 2.2 GB instead of 1.1 GB at batch 8 of the paper's
    setting). Walking back to the input frees them edge by edge, for ~10 % more time.
    """
    x, y, lengths = _unpack(batch)
    x = x.detach().requires_grad_(True)  # (B, C_in, F, T)
    loss = loss_fn(model(x, lengths), y)
    grads = _grads(loss, [*arch, x])
    return loss.detach(), grads[: len(arch)]


def beta_decay_loss(alphas: Sequence[torch.Tensor]) -> torch.Tensor:
    """beta-DARTS' ``L_beta``: the mean over all edges (rows) of ``alphas`` of the log-sum-exp of
    their op weights; each tensor is (E, n_ops). Scalar, differentiable."""
    if not alphas:
        raise ValueError("beta_decay_loss needs at least one alpha tensor.")
    rows = torch.cat([a.reshape(-1, a.shape[-1]) for a in alphas])  # (sum E, n_ops)
    return torch.logsumexp(rows, dim=-1).mean()


def _with_beta_decay(model: SuperNet, d_alpha: list[torch.Tensor], beta_decay: float) -> list[torch.Tensor]:
    """``d_alpha`` plus ``beta_decay * grad L_beta`` on the alphas (not on PC-DARTS' betas)."""
    if beta_decay == 0.0:
        return d_alpha
    named = list(model.named_arch_parameters())
    alphas = [p for name, p in named if name.startswith("alphas")]
    with torch.enable_grad():
        leaves = [a.detach().requires_grad_(True) for a in alphas]
        grads = iter(torch.autograd.grad(beta_decay_loss(leaves), leaves))
    return [d + beta_decay * next(grads) if name.startswith("alphas") else d for (name, _), d in zip(named, d_alpha)]


def _sgd_hyperparameters(optimizer: torch.optim.SGD) -> tuple[float, float, float]:
    """``(xi, mu, wd)``: lr, momentum and weight decay of the weight optimiser's only group."""
    if len(optimizer.param_groups) != 1:
        raise ValueError(
            "the second-order step needs a weight optimiser with exactly one param group, "
            f"but got {len(optimizer.param_groups)}."
        )
    group = optimizer.param_groups[0]
    return float(group["lr"]), float(group.get("momentum", 0.0)), float(group.get("weight_decay", 0.0))


@torch.no_grad()
def _set_weights(weights: list[nn.Parameter], values: Sequence[torch.Tensor]) -> None:
    for p, w in zip(weights, values):
        p.copy_(w)


def _unroll(
    model: SuperNet,
    weights: list[nn.Parameter],
    train_batch: Batch,
    *,
    loss_fn: nn.Module,
    optimizer: torch.optim.SGD,
    seed: int,
    device: torch.device,
) -> None:
    """Move ``weights`` in place to ``w' = w - xi * (mu * m + grad_w L_train(w) + wd * w)``: the
    coming SGD step, unclipped."""
    xi, mu, wd = _sgd_hyperparameters(optimizer)
    x_train, y_train, lengths = _unpack(train_batch)
    with _seeded_randomness(seed, device):
        train_loss = loss_fn(model(x_train, lengths), y_train)
    grads = _grads(train_loss, weights)
    with torch.no_grad():
        for p, g in zip(weights, grads):
            step = g.add(p, alpha=wd) if wd else g
            buffer = optimizer.state.get(p, {}).get("momentum_buffer") if mu else None
            if buffer is not None:
                step = step.add(buffer, alpha=mu)
            p.sub_(step, alpha=xi)


def _finite_difference_terms(
    model: SuperNet,
    *,
    arch: list[nn.Parameter],
    weights: list[nn.Parameter],
    saved: list[torch.Tensor],
    v: list[torch.Tensor],
    eps: float,
    train_batch: Batch,
    loss_fn: nn.Module,
    seed: int,
    device: torch.device,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``grad_alpha L_train`` at ``w+ = w + eps v`` and at ``w- = w - eps v`` (same dropout masks)."""
    terms = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, w, g in zip(weights, saved, v):
                p.copy_(w).add_(g, alpha=sign * eps)
        with _seeded_randomness(seed, device):
            terms.append(_arch_loss_and_grads(model, train_batch, loss_fn=loss_fn, arch=arch)[1])
    return terms[0], terms[1]


def _second_order(
    model: SuperNet,
    *,
    arch: list[nn.Parameter],
    train_batch: Batch,
    arch_batch: Batch,
    loss_fn: nn.Module,
    weight_optimizer: torch.optim.SGD,
    seed: int,
    fd_scale: float,
) -> tuple[list[torch.Tensor], float]:
    """The unrolled gradient of the module docstring; the weights are put back bit for bit."""
    device = arch[0].device
    xi = _sgd_hyperparameters(weight_optimizer)[0]
    weights = list(model.weight_parameters())
    saved = [p.detach().clone() for p in weights]
    try:
        _unroll(model, weights, train_batch, loss_fn=loss_fn, optimizer=weight_optimizer, seed=seed, device=device)
        x_arch, y_arch, arch_lengths = _unpack(arch_batch)
        with _seeded_randomness(seed + 1, device):
            val_loss = loss_fn(model(x_arch, arch_lengths), y_arch)
        grads = _grads(val_loss, arch + weights)
        d_alpha, v = grads[: len(arch)], grads[len(arch) :]  # v = grad_w' L_val(w', alpha)
        del grads
        v_norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in v])))
        if v_norm > 0.0 and xi > 0.0:
            eps = fd_scale / v_norm
            plus, minus = _finite_difference_terms(
                model,
                arch=arch,
                weights=weights,
                saved=saved,
                v=v,
                eps=eps,
                train_batch=train_batch,
                loss_fn=loss_fn,
                seed=seed,
                device=device,
            )
            d_alpha = [d - (xi / (2.0 * eps)) * (gp - gn) for d, gp, gn in zip(d_alpha, plus, minus)]
    finally:
        _set_weights(weights, saved)
    return d_alpha, float(val_loss.detach())


def architecture_gradients(
    model: SuperNet,
    *,
    train_batch: Batch,
    arch_batch: Batch,
    loss_fn: nn.Module,
    weight_optimizer: torch.optim.SGD,
    order: str,
    seed: int,
    fd_scale: float = DARTS_FD_SCALE,
    beta_decay: float = 0.0,
) -> tuple[list[torch.Tensor], float]:
    """The alphas' gradient (aligned with ``list(model.arch_parameters())``) and ``L_val``.

    ``order="first"``: ``grad_alpha L_val(w, alpha)`` on ``arch_batch``. ``order="second"``: the
    unrolled DARTS gradient of the module docstring; ``xi``, momentum, momentum buffers and
    weight decay come from ``weight_optimizer`` (one param group over the weights), and
    ``train_batch`` is the batch of the weight step that follows. Passes over ``train_batch``
    run with the torch RNG seeded to ``seed``, the pass over ``arch_batch`` with ``seed + 1``.
    Touches no ``.grad``; on return the weights and BatchNorm statistics are as on entry.

    ``fd_scale`` sets ``eps = fd_scale / ||v||`` (DARTS: 0.01). The supernet is only piecewise
    smooth (ReLU, max-pooling), so at DARTS' scale the difference quotient is a smoothed
    Hessian-vector product: it matches the exact one closely on smooth operations, and tends to
    it as ``fd_scale -> 0`` on all of them (both are tested).

    ``beta_decay``: the weight of beta-DARTS' ``L_beta`` (module docstring), added to the gradient
    in both orders; the returned loss stays ``L_val`` (the data term).
    """
    if order not in ("first", "second"):
        raise ValueError(f"order must be 'first' or 'second', but got {order!r}.")
    if not beta_decay >= 0.0:
        raise ValueError(f"beta_decay must be >= 0, but got {beta_decay!r}.")
    arch = list(model.arch_parameters())
    with frozen_batchnorm_stats(model), exact_float32(arch[0].device):  # no TF32 noise in the differences
        if order == "first":
            with _seeded_randomness(seed + 1, arch[0].device):
                loss, d_alpha = _arch_loss_and_grads(model, arch_batch, loss_fn=loss_fn, arch=arch)
            return _with_beta_decay(model, d_alpha, beta_decay), float(loss)
        d_alpha, loss = _second_order(
            model,
            arch=arch,
            train_batch=train_batch,
            arch_batch=arch_batch,
            loss_fn=loss_fn,
            weight_optimizer=weight_optimizer,
            seed=seed,
            fd_scale=fd_scale,
        )
        return _with_beta_decay(model, d_alpha, beta_decay), loss
