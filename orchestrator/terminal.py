"""The terminal side of the trainers' progress callback: rich progress bars on stderr.

Trainers only call a ``trainers.reporting.Progress``; what a person sees is decided here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich import progress as rich_progress
from rich.console import Console

from trainers.reporting import Progress, ignore_progress


@contextlib.contextmanager
def progress_bars(*, enabled: bool = True) -> Iterator[Progress]:
    """A ``Progress`` that draws one bar per stage while the block runs; ``ignore_progress`` when not enabled."""
    if not enabled:
        yield ignore_progress
        return
    bars = rich_progress.Progress(
        rich_progress.TextColumn("{task.description}"),
        rich_progress.BarColumn(),
        rich_progress.MofNCompleteColumn(),
        rich_progress.TimeElapsedColumn(),
        rich_progress.TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    stages: dict[str, rich_progress.TaskID] = {}

    def show(stage: str, done: int, total: int) -> None:
        if stage not in stages:
            stages[stage] = bars.add_task(stage, total=total)
        bars.update(stages[stage], completed=done, total=total)

    with bars:
        yield show
