"""The two search steps ``bench_supernet.py`` compares, their equivalence check, and its child side.

* ``Searcher``: one implementation's model and optimisers, ``step`` = one search step (ours:
  ``trainers.architect.architecture_gradients`` + ``trainers.training.weight_step`` on a
  :class:`search_space.SuperNet`; the reference: ``benchmarks/reference_darts.py``), both built
  from the same supernet so that they start from the same numbers;
* ``equivalence``: our alpha gradients and search step vs the reference's;
* ``run_child``: what one measuring subprocess of ``bench_supernet.py`` does (its peak RSS is
  then its own).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # run from a checkout
sys.path.insert(0, str(_HERE))

import supernet_passes as passes  # noqa: E402
from reference_darts import ReferenceArchitect, ReferenceNetwork, reference_weight_step  # noqa: E402

from search_space import SuperNet  # noqa: E402
from trainers.architect import architecture_gradients  # noqa: E402
from trainers.settings import ArchOptimizer, WeightOptimizer  # noqa: E402
from trainers.training import weight_step  # noqa: E402

IMPLEMENTATIONS = ("ours", "reference")
ORDERS = ("first", "second")
N_CLASSES = 4
WEIGHTS, ALPHAS = WeightOptimizer(), ArchOptimizer()  # the search's defaults (DARTS, the paper)


@dataclass(frozen=True)
class Setting:
    batch: int
    layers: int
    nodes: int
    channels: int
    height: int
    width: int
    dropout: float = 0.3


# ---------------------------------------------------------------------------- the two steps


@dataclass
class Searcher:
    """One implementation's model and optimisers; ``step`` is one search step."""

    impl: str
    model: nn.Module
    weight_optimizer: torch.optim.SGD
    loss_fn: nn.Module
    arch_optimizer: torch.optim.Adam | None = None  # ours
    architect: ReferenceArchitect | None = None  # the reference's (holds its Adam)

    def alpha_gradients(self, train: tuple, arch: tuple, *, order: str, seed: int) -> list[torch.Tensor]:
        """The alphas' gradient alone (no step taken)."""
        if self.impl == "ours":
            grads, _ = architecture_gradients(
                self.model,
                train_batch=train,
                arch_batch=arch,
                loss_fn=self.loss_fn,
                weight_optimizer=self.weight_optimizer,
                order=order,
                seed=seed,
            )
            return grads
        grads = self.architect.gradients(*train, *arch, self.weight_optimizer, unrolled=order == "second", seed=seed)
        return [g.detach().clone() for g in grads]

    def step(self, train: tuple, arch: tuple, *, order: str, seed: int) -> float:
        """Architecture step then weight step (as ``run_search``); returns the train loss."""
        if self.impl == "ours":
            alphas = list(self.model.arch_parameters())
            grads = self.alpha_gradients(train, arch, order=order, seed=seed)
            self.arch_optimizer.zero_grad(set_to_none=True)
            for p, g in zip(alphas, grads):
                p.grad = g
            self.arch_optimizer.step()
            self.arch_optimizer.zero_grad(set_to_none=True)
            del grads
            loss = weight_step(
                self.model,
                *train,
                loss_fn=self.loss_fn,
                optimizer=self.weight_optimizer,
                parameters=list(self.model.weight_parameters()),
                grad_clip=WEIGHTS.grad_clip,
            )
            for p in alphas:
                p.grad = None
            return loss
        self.architect.step(*train, *arch, self.weight_optimizer, unrolled=order == "second", seed=seed)
        return reference_weight_step(
            self.model, *train, criterion=self.loss_fn, optimizer=self.weight_optimizer, grad_clip=WEIGHTS.grad_clip
        )


def build_supernet(
    setting: Setting, *, seed: int, dtype: torch.dtype = torch.float32, random_alphas: bool = False
) -> SuperNet:
    """The search's supernet (``build_supernet``'s defaults: recomputing edges, LSTM head)."""
    torch.manual_seed(seed)
    net = (
        SuperNet(
            layers=setting.layers,
            nodes=setting.nodes,
            init_channels=setting.channels,
            n_classes=N_CLASSES,
            dropout=setting.dropout,
        )
        .to(dtype)
        .train()
    )
    if random_alphas:  # away from uniform, so that a comparison is generic
        with torch.no_grad():
            for p in net.arch_parameters():
                p.copy_(torch.randn_like(p))
    return net


def make_searcher(impl: str, net: SuperNet, *, seed: int) -> Searcher:
    """``impl``'s searcher over ``net``'s numbers (the reference copies them; ours uses ``net``);
    the weight optimiser's momentum buffers are filled from ``seed``, the same for both."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, but got {impl!r}.")
    model = net if impl == "ours" else ReferenceNetwork(net).train()
    weights = list(model.weight_parameters())
    weight_optimizer = torch.optim.SGD(
        weights, lr=WEIGHTS.lr, momentum=WEIGHTS.momentum, weight_decay=WEIGHTS.weight_decay
    )
    generator = torch.Generator().manual_seed(seed)
    for p in weights:
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
        weight_optimizer.state[p]["momentum_buffer"] = (1e-3 * noise).to(p.dtype)
    loss_fn = nn.CrossEntropyLoss()
    if impl == "ours":
        arch_optimizer = torch.optim.Adam(
            list(model.arch_parameters()),
            lr=ALPHAS.lr,
            betas=(ALPHAS.beta1, ALPHAS.beta2),
            weight_decay=ALPHAS.weight_decay,
        )
        return Searcher(impl, model, weight_optimizer, loss_fn, arch_optimizer=arch_optimizer)
    architect = ReferenceArchitect(
        model,
        loss_fn,
        arch_lr=ALPHAS.lr,
        arch_betas=(ALPHAS.beta1, ALPHAS.beta2),
        arch_weight_decay=ALPHAS.weight_decay,
    )
    return Searcher(impl, model, weight_optimizer, loss_fn, architect=architect)


def make_batches(setting: Setting, *, seed: int, dtype: torch.dtype = torch.float32) -> tuple[tuple, tuple]:
    """A train and an arch batch: (B, 1, H, W) inputs, labels cycling over the classes."""
    generator = torch.Generator().manual_seed(seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(setting.batch, 1, setting.height, setting.width, generator=generator, dtype=dtype)
        return x, torch.arange(setting.batch) % N_CLASSES  # (B, 1, H, W), (B,)

    return batch(), batch()


# ---------------------------------------------------------------------------- equivalence


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def _difference(ours: torch.Tensor, reference: torch.Tensor) -> dict:
    abs_diff = float((ours - reference).abs().max())
    scale = float(reference.abs().max())
    return {"max_abs": abs_diff, "max_rel": abs_diff / scale if scale else abs_diff, "max_abs_reference": scale}


def equivalence(setting: Setting, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict:
    """Our alpha gradients and search step vs the reference's, from the same numbers and batches.

    ``max_rel`` is the largest absolute difference over the largest reference magnitude.
    """
    train, arch = make_batches(setting, seed=seed + 1, dtype=dtype)
    net = build_supernet(setting, seed=seed, dtype=dtype, random_alphas=True)
    reference = make_searcher("reference", net, seed=seed + 2)
    ours = make_searcher("ours", net, seed=seed + 2)
    result: dict = {"setting": asdict(setting), "dtype": str(dtype).removeprefix("torch.")}
    grads = {}
    for order in ORDERS:
        grads[order] = [_flat(s.alpha_gradients(train, arch, order=order, seed=seed + 3)) for s in (ours, reference)]
        result[f"alpha_grad_{order}"] = _difference(*grads[order])
    # The second-order term is not negligible (the released code's eps^2 scaling made it vanish):
    result["second_minus_first_max_abs"] = float((grads["second"][1] - grads["first"][1]).abs().max())
    after = {}
    for searcher in (ours, reference):
        torch.manual_seed(seed + 4)  # the weight step's dropout draws from the global RNG
        searcher.step(train, arch, order="second", seed=seed + 3)
        model = searcher.model
        after[searcher.impl] = {
            "weights": _flat(model.weight_parameters()),
            "alphas": _flat(model.arch_parameters()),
            "batchnorm_stats": _flat([b for b in model.buffers() if b.is_floating_point()]),
        }
    result["after_second_order_step"] = {
        key: _difference(after["ours"][key], after["reference"][key]) for key in after["ours"]
    }
    return result


# ---------------------------------------------------------------------------- the child


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _limit_address_space(extra_bytes: int | None) -> None:
    """Allow ``extra_bytes`` of address space beyond what the process maps now."""
    if extra_bytes is None:
        return
    limit = _vm_size_bytes() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _timed_result(spec: dict, setting: Setting, seconds: list[float]) -> dict:
    median = sorted(seconds)[len(seconds) // 2]
    return {
        "impl": spec["impl"],
        "batch": setting.batch,
        "seconds": [round(s, 3) for s in seconds],
        "seconds_median": round(median, 3),
        "samples_per_s": round(setting.batch / median, 4),
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def run_child(spec: dict) -> dict:
    """Measure one (implementation, order) in this process (called in a fresh subprocess)."""
    torch.set_num_threads(spec["threads"])
    setting = Setting(**spec["setting"])
    if spec["mode"] == "evaluation":  # the discrete network: no supernet built in this process
        x, y = make_batches(setting, seed=1)[0]
        step = passes.evaluation_step(
            layout=spec["impl"],
            layers=setting.layers,
            channels=setting.channels,
            n_classes=N_CLASSES,
            dropout=setting.dropout,
            x=x,
            y=y,
        )
        return _timed_result(spec, setting, passes.timed(step, warmup=spec["warmup"], steps=spec["steps"]))
    net = build_supernet(setting, seed=0)
    searcher = make_searcher(spec["impl"], net, seed=2)
    del net
    train, arch = make_batches(setting, seed=1)
    torch.manual_seed(3)
    setup_rss = _peak_rss_bytes()
    _limit_address_space(spec.get("address_space_extra_bytes"))
    if spec["mode"] in ("forward_backward", "profile"):
        step = passes.forward_backward(searcher.model, searcher.loss_fn, *train)
        if spec["mode"] == "profile":
            return passes.profile(step)
        return _timed_result(spec, setting, passes.timed(step, warmup=spec["warmup"], steps=spec["steps"]))
    if spec["mode"] == "probe":  # forward + backward peaks at growing batches (reference-only use)
        peaks = []
        for batch in spec["probe_batches"]:
            x, y = train[0][:batch], train[1][:batch]
            searcher.loss_fn(searcher.model(x), y).backward()
            searcher.model.zero_grad(set_to_none=True)
            peaks.append(_peak_rss_bytes())
        return {"probe_batches": spec["probe_batches"], "peak_rss_bytes": peaks, "setup_rss_bytes": setup_rss}
    seconds, losses = [], []
    for i in range(spec["warmup"] + spec["steps"]):
        seed = int(torch.randint(0, 2**62, ()))
        started = time.perf_counter()
        losses.append(searcher.step(train, arch, order=spec["order"], seed=seed))
        if i >= spec["warmup"]:
            seconds.append(time.perf_counter() - started)
    median = sorted(seconds)[len(seconds) // 2]
    return {
        "impl": spec["impl"],
        "order": spec["order"],
        "batch": setting.batch,
        "step_seconds": [round(s, 3) for s in seconds],
        "step_seconds_median": round(median, 3),
        "samples_per_s": round(setting.batch / median, 4),
        "peak_rss_bytes": _peak_rss_bytes(),
        "setup_rss_bytes": setup_rss,
        "train_losses": [round(v, 6) for v in losses],
    }
