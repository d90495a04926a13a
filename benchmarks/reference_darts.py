"""A reference DARTS search step, written from the paper's equations in the original code's style.

Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019; the structure
follows quark0/darts (``model_search.py``: ``MixedOp``, ``Cell``, ``Network``; ``architect.py``:
``Architect``). It is the baseline that ``benchmarks/bench_supernet.py`` measures our supernet
step against, and the oracle that ``tests/benchmarks/test_reference_darts.py`` checks our alpha
gradients and weight step with. It is deliberately plain: no gradient checkpointing, no partial
channels, no skipped operations, no saved passes.

What is re-implemented here (the reference's own code):

* the mixed edge, eq. (2): ``o(x) = sum_k softmax(alpha)_k * op_k(x)`` over EVERY primitive, in
  ``primitives`` order, ``none`` included as DARTS' ``Zero`` (``x.mul(0.)``, strided for a
  reduction edge), computed, weighted and kept in the autograd graph;
* the search cell (node ``i`` = sum of its mixed edges over all earlier states, output = concat
  of the intermediate nodes) and the network's forward (stem, cells with a softmax of the alphas
  per cell, head);
* the architecture step (``ReferenceArchitect``), eqs. (6)-(8) as in DARTS' ``architect.py``:

  - first order: ``loss.backward()`` of ``L_val(w, alpha)`` (this also fills the weights'
    ``.grad``, as DARTS' ``_backward_step`` does; the weight step clears them);
  - second order: ``_compute_unrolled_model`` flattens the weights into one vector ``theta``,
    takes ``grad_w L_train(w, alpha)`` and builds ``w' = theta - xi * (mu * m + dtheta)`` with
    ``dtheta = grad_w L_train + wd * theta`` in a separate ``copy.deepcopy`` of the network; one
    forward/backward of ``L_val(w', alpha)`` on that copy gives ``dalpha`` and ``v = grad_w'``;
    ``_hessian_vector_product`` then moves the live weights in place to ``w + R v``, takes
    ``grad_alpha L_train``, moves to ``w - R v``, takes it again, moves back (``+ R v``), and
    returns ``(g+ - g-) / (2 R)`` with ``R = 0.01 / ||v||``; ``dalpha -= xi * that``;
  - then one Adam step on the alphas;
* the weight step (DARTS' ``train`` loop): zero the grads, forward, backward, clip the weights'
  gradient norm, one SGD step.

What is shared with ``search_space`` (and why that is fair): the network is built from a copy of a
:class:`search_space.SuperNet` so that both implementations start from the same numbers. The copy
supplies the parameterised building blocks, unchanged: the stem, each cell's two preprocessing
``ReLUConvBN``/``FactorizedReduce``, the candidate operations' modules (``SepConv``, ``DilConv``,
the pools with their affine-free BatchNorm, ``Identity``, ``FactorizedReduce``), the recurrent
head, and the alpha tensors (copied into this network's own parameters). Nothing of
``MixedOp``, ``SearchCell.forward``, ``SuperNet.forward`` or ``trainers.search``/``trainers.architect`` is used.

To be comparable with ``trainers.architect.architecture_gradients``, the reference uses the same
conventions (each one costs nothing measurable): ``xi``, momentum ``mu`` (the momentum buffer
``m``, zeros where the optimiser has none yet) and weight decay ``wd`` are read from the weight
optimiser's single param group; every pass over the train batch runs with the CPU RNG (and the
device's, on CUDA) forked and seeded to ``seed``, the pass over the arch batch with ``seed + 1``,
so dropout masks match ours; BatchNorm running statistics are put back after the architecture
step (DARTS let its extra passes update them; ours freezes them). Unlike ours, the weights are
not restored from a copy after the finite difference but moved back in place, as in DARTS (they
then differ from the originals by rounding only).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from search_space import SuperNet

__all__ = [
    "ReferenceArchitect",
    "ReferenceCell",
    "ReferenceMixedOp",
    "ReferenceNetwork",
    "Zero",
    "reference_weight_step",
]


class Zero(nn.Module):
    """DARTS' ``none``: ``x * 0`` (subsampled first on a reduction edge)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)  # (B, C, H, W)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)  # (B, C, ceil(H/s), ceil(W/s))


class ReferenceMixedOp(nn.Module):
    """Eq. (2): the softmax-weighted sum of every candidate operation, ``none`` included."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self._ops = nn.ModuleList(ops)

    @classmethod
    def from_mixed_op(cls, edge: nn.Module) -> ReferenceMixedOp:
        """The candidate modules of a ``search_space.MixedOp`` (shared), with a ``Zero`` for
        ``none``, in ``primitives`` order (the column order of the alphas)."""
        if edge.pc_k != 1:
            raise ValueError(f"the reference is plain DARTS (pc_k=1), but the edge has pc_k={edge.pc_k}.")
        built = dict(zip(edge.op_index, edge.ops))
        return cls([Zero(edge.stride) if name == "none" else built[k] for k, name in enumerate(edge.primitives)])

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self._ops))  # (B, C, H', W')


class ReferenceCell(nn.Module):
    """DARTS' search cell: node i sums the mixed edges from all earlier states."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.reduction = cell.reduction
        self._steps = cell.nodes
        self._multiplier = cell.multiplier
        self.preprocess0 = cell.preprocess0
        self.preprocess1 = cell.preprocess1
        self._ops = nn.ModuleList(ReferenceMixedOp.from_mixed_op(edge) for edge in cell.edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        s0 = self.preprocess0(s0)  # (B, C, H, W)
        s1 = self.preprocess1(s1)  # (B, C, H, W)
        states = [s0, s1]
        offset = 0
        for _ in range(self._steps):
            s = sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier :], dim=1)  # (B, multiplier * C, H', W')


class ReferenceNetwork(nn.Module):
    """DARTS' search ``Network`` over the building blocks of a copy of ``supernet``.

    ``weight_parameters()`` yields the network weights in the order of
    ``supernet.weight_parameters()``; ``arch_parameters()`` yields ``[alphas_normal,
    alphas_reduce]``. ``supernet`` itself is not modified or referenced afterwards.
    """

    def __init__(self, supernet: SuperNet) -> None:
        super().__init__()
        if supernet.betas_normal is not None:
            raise ValueError("the reference is plain DARTS: it has no PC-DARTS edge normalisation (betas).")
        source = copy.deepcopy(supernet)
        self.stem = source.stem
        self.cells = nn.ModuleList(ReferenceCell(cell) for cell in source.cells)
        self.head = source.head
        self.alphas_normal = nn.Parameter(source.alphas_normal.detach().clone())  # (E, n_ops)
        self.alphas_reduce = nn.Parameter(source.alphas_reduce.detach().clone())  # (E, n_ops)
        names = {id(p): name for name, p in self.named_parameters()}
        try:
            self._weight_names = tuple(names[id(p)] for p in source.weight_parameters())
        except KeyError:
            raise RuntimeError("the reference network does not hold every weight of the supernet.") from None

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        params = dict(self.named_parameters())
        return [params[name] for name in self._weight_names]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)  # (B, C_stem, F, T)
        for cell in self.cells:
            alphas = self.alphas_reduce if cell.reduction else self.alphas_normal
            weights = F.softmax(alphas, dim=-1)  # (E, n_ops)
            s0, s1 = s1, cell(s0, s1, weights)  # (B, nodes * C, F', T')
        return self.head(s1)  # (B, n_classes)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The block runs on a forked torch RNG seeded to ``seed`` (CPU, and ``device`` on CUDA)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(seed)
        yield


def _concat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _grad_or_zeros(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """DARTS assumed every parameter is reached; a net without normal cells leaves alphas_normal out."""
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


class ReferenceArchitect:
    """DARTS' ``Architect``: the alphas' gradient (first or second order) and their Adam step."""

    def __init__(
        self,
        model: ReferenceNetwork,
        criterion: nn.Module,
        *,
        arch_lr: float,
        arch_betas: tuple[float, float],
        arch_weight_decay: float,
        r: float = 1e-2,
    ) -> None:
        self.model = model
        self.criterion = criterion
        self.r = r
        self.optimizer = torch.optim.Adam(
            model.arch_parameters(), lr=arch_lr, betas=arch_betas, weight_decay=arch_weight_decay
        )

    def step(
        self,
        input_train: torch.Tensor,
        target_train: torch.Tensor,
        input_valid: torch.Tensor,
        target_valid: torch.Tensor,
        network_optimizer: torch.optim.SGD,
        *,
        unrolled: bool,
        seed: int,
    ) -> None:
        self.gradients(
            input_train, target_train, input_valid, target_valid, network_optimizer, unrolled=unrolled, seed=seed
        )
        self.optimizer.step()

    def gradients(
        self,
        input_train: torch.Tensor,
        target_train: torch.Tensor,
        input_valid: torch.Tensor,
        target_valid: torch.Tensor,
        network_optimizer: torch.optim.SGD,
        *,
        unrolled: bool,
        seed: int,
    ) -> list[torch.Tensor]:
        """Fill (and return) the alphas' ``.grad``; BatchNorm running statistics are put back."""
        self.optimizer.zero_grad()
        running = [(b, b.detach().clone()) for b in self.model.buffers()]
        if unrolled:
            self._backward_step_unrolled(input_train, target_train, input_valid, target_valid, network_optimizer, seed)
        else:
            self._backward_step(input_valid, target_valid, seed)
        with torch.no_grad():
            for buffer, value in running:
                buffer.copy_(value)
        return [p.grad for p in self.model.arch_parameters()]

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        with _seeded(seed, x.device):
            return self.criterion(model(x), y)

    def _backward_step(self, input_valid: torch.Tensor, target_valid: torch.Tensor, seed: int) -> None:
        loss = self._loss(self.model, input_valid, target_valid, seed + 1)
        loss.backward()
        for p in self.model.arch_parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def _compute_unrolled_model(
        self, input: torch.Tensor, target: torch.Tensor, network_optimizer: torch.optim.SGD, seed: int
    ) -> ReferenceNetwork:
        group = network_optimizer.param_groups[0]
        eta, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        weights = self.model.weight_parameters()
        loss = self._loss(self.model, input, target, seed)
        theta = _concat(weights).detach()
        moment = _concat(
            [network_optimizer.state.get(v, {}).get("momentum_buffer", torch.zeros_like(v)) for v in weights]
        ).mul_(mu)
        dtheta = _concat(_grad_or_zeros(torch.autograd.grad(loss, weights, allow_unused=True), weights)) + wd * theta
        return self._construct_model_from_theta(theta.sub(moment + dtheta, alpha=eta))

    def _construct_model_from_theta(self, theta: torch.Tensor) -> ReferenceNetwork:
        model_new = copy.deepcopy(self.model)
        offset = 0
        with torch.no_grad():
            for p in model_new.parameters():
                p.grad = None
            for p in model_new.weight_parameters():
                n = p.numel()
                p.copy_(theta[offset : offset + n].view_as(p))
                offset += n
        if offset != len(theta):
            raise RuntimeError(f"theta has {len(theta)} entries but the weights take {offset}.")
        return model_new

    def _backward_step_unrolled(
        self,
        input_train: torch.Tensor,
        target_train: torch.Tensor,
        input_valid: torch.Tensor,
        target_valid: torch.Tensor,
        network_optimizer: torch.optim.SGD,
        seed: int,
    ) -> None:
        eta = network_optimizer.param_groups[0]["lr"]
        unrolled_model = self._compute_unrolled_model(input_train, target_train, network_optimizer, seed)
        unrolled_loss = self._loss(unrolled_model, input_valid, target_valid, seed + 1)
        unrolled_loss.backward()
        dalpha = _grad_or_zeros([v.grad for v in unrolled_model.arch_parameters()], unrolled_model.arch_parameters())
        vector = _grad_or_zeros(
            [v.grad for v in unrolled_model.weight_parameters()], unrolled_model.weight_parameters()
        )
        implicit_grads = self._hessian_vector_product(vector, input_train, target_train, seed)
        for g, ig in zip(dalpha, implicit_grads):
            g.sub_(ig, alpha=eta)
        for v, g in zip(self.model.arch_parameters(), dalpha):
            v.grad = g.detach().clone()

    def _hessian_vector_product(
        self, vector: list[torch.Tensor], input: torch.Tensor, target: torch.Tensor, seed: int
    ) -> list[torch.Tensor]:
        R = self.r / float(_concat(vector).norm())
        weights, arch = self.model.weight_parameters(), self.model.arch_parameters()
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(v, alpha=R)
        loss = self._loss(self.model, input, target, seed)
        grads_p = _grad_or_zeros(torch.autograd.grad(loss, arch, allow_unused=True), arch)

        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.sub_(v, alpha=2 * R)
        loss = self._loss(self.model, input, target, seed)
        grads_n = _grad_or_zeros(torch.autograd.grad(loss, arch, allow_unused=True), arch)

        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(v, alpha=R)
        return [(x - y).div_(2 * R) for x, y in zip(grads_p, grads_n)]


def reference_weight_step(
    model: ReferenceNetwork,
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    criterion: nn.Module,
    optimizer: torch.optim.SGD,
    grad_clip: float,
) -> float:
    """One step of DARTS' ``train`` loop on the weights; returns the batch loss."""
    optimizer.zero_grad()
    logits = model(input)
    loss = criterion(logits, target)
    loss.backward()
    nn.utils.clip_grad_norm_(model.weight_parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())
