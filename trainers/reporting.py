"""How trainers tell the outside world about progress, without knowing who listens.

Trainers call ``report(step, metrics)`` after every epoch. The orchestrator adapts it to
``ray.tune.report``; the ``run-fold`` command prints a line; tests collect the calls. A
reporter may raise to stop the run (a pruner does); the trainer lets that propagate after its
checkpoint is safely on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reporter = Callable[[int, dict[str, Any]], None]


def ignore_reports(step: int, metrics: dict[str, Any]) -> None:
    """The default reporter: nobody is listening."""
