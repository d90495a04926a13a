"""Which dtype a trainer's convolutions compute in, per phase: proof that autocast is in effect.

Finite losses alone would not notice if bf16 autocast were silently dropped; the dtype of a
convolution's output does (bf16 under autocast, fp32 without).
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

PHASES = ("weight_step", "evaluate_split")


def probe_conv_dtypes(monkeypatch: pytest.MonkeyPatch, module: ModuleType, *, builder: str) -> dict[str, set]:
    """Patch ``module``: the network ``module.<builder>`` returns gets a hook on its first conv,
    and ``module.weight_step`` / ``module.evaluate_split`` mark the phase they run. Returns
    ``{phase: dtypes of that conv's outputs seen inside it}``, filled while the trainer runs."""
    seen: dict[str, set] = {phase: set() for phase in PHASES}
    running: list[str] = []

    def record(conv: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if running:
            seen[running[-1]].add(output.dtype)

    original_build = getattr(module, builder)

    def build(*args, **kwargs):
        network = original_build(*args, **kwargs)
        next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(record)
        return network

    def marked(phase: str):
        original = getattr(module, phase)

        def run(*args, **kwargs):
            running.append(phase)
            try:
                return original(*args, **kwargs)
            finally:
                running.pop()

        return run

    monkeypatch.setattr(module, builder, build)
    for phase in PHASES:
        monkeypatch.setattr(module, phase, marked(phase))
    return seen


def expected_dtypes(mixed_precision: bool) -> dict[str, set]:
    dtype = torch.bfloat16 if mixed_precision else torch.float32
    return {phase: {dtype} for phase in PHASES}
