"""The single passes ``bench_supernet.py`` times besides the search step (each in its own child).

* ``forward_backward``: one forward+backward of a supernet (ours: ``SuperNet`` with its defaults;
  the reference: ``benchmarks/reference_darts.py``), the issue's headline measure (#17).
* ``evaluation_step``: one weight step (``trainers.training.weight_step``) of the discrete
  ``Network`` of :data:`EVAL_GENOTYPE`, which holds every primitive but ``none`` (so the same
  operations serve), with ``channels_last=False`` ("before": PyTorch's default layout, the
  plain convolutions) or ``True`` ("after": channels_last activations and
  :mod:`search_space.fast_conv`, the network's default).
* ``profile``: torch.profiler over one forward+backward of ours, the top ops by self CPU time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from search_space import Genotype, Network
from trainers.settings import WeightOptimizer
from trainers.training import weight_step

# Every primitive but none, at stride 1 (normal cell) and 2 (reduction cell), 4 nodes.
EVAL_GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_3x3", 0), ("skip_connect", 2)]
    + [("dil_conv_5x5", 1), ("avg_pool_3x3", 2), ("sep_conv_3x3", 3), ("max_pool_3x3", 0)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_5x5", 0), ("skip_connect", 2)]
    + [("avg_pool_3x3", 1), ("dil_conv_3x3", 2), ("sep_conv_3x3", 3), ("skip_connect", 2)],
    reduce_concat=[2, 3, 4, 5],
)
EVAL_LAYOUTS = {"before": False, "after": True}  # name -> Network(channels_last=...)
PROFILE_TOP = 10


def timed(step: Callable[[], object], *, warmup: int, steps: int) -> list[float]:
    """Seconds of ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    seconds = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        step()
        if i >= warmup:
            seconds.append(time.perf_counter() - started)
    return seconds


def forward_backward(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One forward+backward of ``model`` on (x, y) (alphas get gradients too), grads then freed."""

    def step() -> None:
        loss_fn(model(x), y).backward()
        model.zero_grad(set_to_none=True)

    return step


def evaluation_step(
    *, layout: str, layers: int, channels: int, n_classes: int, dropout: float, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], float]:
    """One weight step of the discrete network of :data:`EVAL_GENOTYPE` in ``layout``."""
    torch.manual_seed(0)
    net = Network(
        EVAL_GENOTYPE,
        layers=layers,
        init_channels=channels,
        n_classes=n_classes,
        dropout=dropout,
        channels_last=EVAL_LAYOUTS[layout],
    ).train()
    weights = WeightOptimizer()
    optimizer = torch.optim.SGD(
        net.parameters(), lr=weights.lr, momentum=weights.momentum, weight_decay=weights.weight_decay
    )
    parameters = list(net.parameters())
    loss_fn = nn.CrossEntropyLoss()
    return lambda: weight_step(
        net, x, y, loss_fn=loss_fn, optimizer=optimizer, parameters=parameters, grad_clip=weights.grad_clip
    )


def profile(step: Callable[[], object]) -> dict:
    """Self CPU time of one ``step`` by op (torch.profiler): the top :data:`PROFILE_TOP`, with shares."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step()  # warm-up: allocator and kernels' first-call costs stay out of the profile
    started = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    wall = time.perf_counter() - started
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:PROFILE_TOP]
    return {
        "profiled_seconds": round(wall, 3),
        "self_cpu_seconds_total": round(total_us / 1e6, 3),
        "top_ops": [
            {
                "op": e.key,
                "self_cpu_seconds": round(e.self_cpu_time_total / 1e6, 4),
                "share": round(e.self_cpu_time_total / total_us, 4) if total_us else None,
                "calls": e.count,
                "ms_per_call": round(e.self_cpu_time_total / 1e3 / e.count, 3) if e.count else None,
            }
            for e in top
        ],
    }
