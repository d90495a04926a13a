"""How many trials run at once: ``tune.max_concurrent``, or by default what the cluster holds.

Left unset (``null``), it is sized when the experiment starts from ``ray.cluster_resources()``:
with ``tune.resources.gpu > 0`` the cluster's GPUs divided by the trial's share (4 GPUs at
0.25: 16 trials), else its CPUs divided by the trial's CPUs. A fixed value that leaves GPUs
idle gets a warning. An autoscaling cluster shows only the nodes it has now: set
``max_concurrent`` to what its largest size holds, or the autoscaler never adds workers (it
adds nodes only for trials that wait for resources).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.config.tune import TuneConfig

__all__ = ["Concurrency", "decide_concurrency", "size_concurrency"]


@dataclass(frozen=True)
class Concurrency:
    trials: int  # the max_concurrent passed to Ray Tune
    reason: str  # one line: where the number came from
    warning: str | None  # the setting leaves resources idle, or cannot be sized


def _slots(available: float, share: float) -> int:
    return int(math.floor(available / share + 1e-9))


def size_concurrency(tune: TuneConfig, cluster: Mapping[str, float]) -> Concurrency:
    """``tune``'s concurrency on a cluster with resources ``cluster`` (``ray.cluster_resources()``)."""
    gpu, cpu = tune.resources.gpu, tune.resources.cpu
    gpus, cpus = float(cluster.get("GPU", 0.0)), float(cluster.get("CPU", 0.0))
    by_gpu = gpu > 0
    capacity = _slots(gpus, gpu) if by_gpu else _slots(cpus, cpu)
    what = f"{gpus:g} GPU(s) / gpu {gpu:g}" if by_gpu else f"{cpus:g} CPU(s) / cpu {cpu:g}"
    if tune.max_concurrent is None:
        if capacity < 1:
            return Concurrency(
                1,
                f"max_concurrent 1: the cluster has {what} = {capacity} trial slots now",
                f"the cluster has no room for a trial now ({what}); trials wait for the autoscaler. "
                "On an autoscaling cluster set tune.max_concurrent to what its largest size holds.",
            )
        return Concurrency(capacity, f"max_concurrent {capacity}: the cluster's {what}", None)
    chosen = tune.max_concurrent
    warning = None
    if by_gpu and chosen < capacity:
        used = chosen * gpu
        warning = (
            f"tune.max_concurrent {chosen} at tune.resources.gpu {gpu:g} uses {used:g} of the cluster's "
            f"{gpus:g} GPU(s), so {gpus - used:g} stay idle; set max_concurrent to {capacity} (or leave it "
            "unset: it is then sized from the cluster)"
        )
    return Concurrency(chosen, f"max_concurrent {chosen} (tune.max_concurrent)", warning)


def decide_concurrency(tune: TuneConfig, *, console=None) -> int:
    """``size_concurrency`` on the running Ray cluster; says where the number came from (and
    any warning) on ``console``."""
    import ray

    decided = size_concurrency(tune, ray.cluster_resources())
    if console is not None:
        console.print(f"[dim]{decided.reason}[/]")
        if decided.warning:
            console.print(f"[yellow]warning: {decided.warning}[/]")
    return decided.trials
