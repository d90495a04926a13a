"""Explicit device choice, and the rule that ties a device spec to the GPUs a trial is given.

Nothing in sernas calls ``.cuda()`` on its own; every tensor and module goes to the device
resolved here, from the ``--device`` option or the trial's configuration. This module owns
the device-spec rule: the config, the CLI, ``resolve_device`` and ``trial_device`` all check
it here.

Inside a Ray trial only the GPU(s) Ray assigned are visible (Ray sets ``CUDA_VISIBLE_DEVICES``),
numbered from ``cuda:0``; so a trial maps every ``cuda*`` spec (and ``auto``) to ``cuda:0``, and
a trial that was given a GPU either trains on it or fails at once, never on the CPU.
"""

from __future__ import annotations

import math
import os
import re

import torch

__all__ = [
    "DEVICE_SPEC_HELP",
    "DeviceUnavailableError",
    "check_device_spec",
    "device_spec_problem",
    "resolve_device",
    "trial_device",
]

_SPEC = re.compile(r"^(auto|cpu|cuda(:(?P<index>\d+))?)$")
DEVICE_SPEC_HELP = "auto, cpu, cuda or cuda:N"


class DeviceUnavailableError(RuntimeError):
    """The device a run was given cannot be used on this machine."""


def check_device_spec(spec: str) -> str:
    """Return ``spec`` if it is a device spec (auto, cpu, cuda, cuda:N), else raise ValueError."""
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise ValueError(f"device must be one of {DEVICE_SPEC_HELP}, but got {spec!r}.")
    return spec


def device_spec_problem(spec: str, *, gpus: float) -> str | None:
    """Why ``spec`` cannot run a trial that Ray gives ``gpus`` GPUs (``tune.resources.gpu``), or None.

    A trial trains on one device: with ``gpus > 0`` it must be a GPU (``auto``, ``cuda`` or
    ``cuda:0``; ``cpu`` would hold a GPU nobody uses), with ``gpus == 0`` the CPU (``auto`` or
    ``cpu``). Ray shows a trial only its own GPU, as ``cuda:0``, so ``cuda:N`` with N >= 1 can
    never exist there, and more than one GPU per trial would leave the others idle.
    """
    match = _SPEC.match(check_device_spec(spec))
    if gpus > 1:
        return f"a trial trains on one GPU, so tune.resources.gpu above 1 ({gpus:g}) leaves GPUs idle; use 1 or less"
    if gpus > 0 and spec == "cpu":
        return (
            f"device cpu with tune.resources.gpu {gpus:g} reserves GPU share that no trial uses; "
            "use device auto or cuda, or set tune.resources.gpu to 0"
        )
    if gpus == 0 and spec.startswith("cuda"):
        return (
            f"device {spec} needs a GPU per trial, but tune.resources.gpu is 0; set tune.resources.gpu "
            "(1 for a GPU per trial, 0.25 for four trials per GPU) or use device auto or cpu"
        )
    index = match["index"]
    if index is not None and int(index) >= max(1, math.ceil(gpus)):
        return (
            f"device {spec} cannot exist inside a trial: Ray makes only the trial's own GPU visible, as "
            "cuda:0 (tune.resources.gpu chooses how much of a GPU it gets); use device cuda or auto"
        )
    return None


def resolve_device(spec: str = "auto") -> torch.device:
    """Outside Ray (``sernas run-fold``): ``auto`` -> ``cuda`` when available else ``cpu``;
    ``cuda``/``cuda:N`` must exist on this machine."""
    check_device_spec(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {spec!r} was requested, but CUDA is not available on this machine (use --device cpu or auto)."
        )
    device = torch.device(spec)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"device {spec!r} was requested, but this machine has {count} CUDA device(s) (cuda:0 ..).")
    return device


def trial_device(spec: str, *, gpus: float, where: str) -> torch.device:
    """The device of a trial that Ray gave ``gpus`` GPUs, on the node described by ``where``.

    ``gpus > 0``: ``cuda:0`` (the assigned GPU, whatever ``cuda*`` or ``auto`` the config said),
    or ``DeviceUnavailableError`` naming the node when CUDA does not work there: a trial given
    a GPU never trains on the CPU without a word. ``gpus == 0``: the CPU.
    """
    problem = device_spec_problem(spec, gpus=gpus)
    if problem is not None:  # the config checks this; a trial built another way still may not run
        raise ValueError(problem)
    if gpus == 0:
        return torch.device("cpu")
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise DeviceUnavailableError(
            f"Ray gave this trial {gpus:g} GPU on {where}, but CUDA does not work there "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none: a CPU-only wheel'}, "
            f"CUDA_VISIBLE_DEVICES={visible!r}); the trial stops instead of training on the CPU. "
            "Install the CUDA torch wheel and check the driver on that node (python -m cluster.gpu_check)."
        )
    return torch.device("cuda", 0)
