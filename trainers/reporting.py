"""How trainers tell the outside world about progress, without knowing who listens.

Trainers call ``report(step, metrics)`` after every epoch. The orchestrator adapts it to
``ray.tune.report``; the ``run-fold`` command prints a line; tests collect the calls. A
reporter may raise to stop the run (a pruner does); the trainer lets that propagate after its
checkpoint is safely on disk.

Long loops over items (feature extraction) call ``progress(stage, done, total)`` instead: once
with ``done == 0`` when a stage starts, then after every item. Trainers draw nothing themselves;
the orchestrator's terminal turns the calls into progress bars.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reporter = Callable[[int, dict[str, Any]], None]
Progress = Callable[[str, int, int], None]  # (stage description, items done, items in the stage)


def ignore_reports(step: int, metrics: dict[str, Any]) -> None:
    """The default reporter: nobody is listening."""


def ignore_progress(stage: str, done: int, total: int) -> None:
    """The default progress callback: nobody is watching."""
