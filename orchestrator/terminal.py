"""What a person sees on the terminal: progress bars for the trainers' progress callback, tables
that fit the terminal's width.

Trainers only call a ``trainers.reporting.Progress``; what a person sees is decided here.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence

import pandas as pd
from rich import box
from rich import progress as rich_progress
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

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


def fitted_table(
    cells: pd.DataFrame,
    *,
    title: str,
    width: int,
    candidates: Sequence[str],
    right: Sequence[str] = (),
    longest: int = 40,
) -> tuple[Table, tuple[str, ...]]:
    """A table of the ``candidates`` columns of ``cells`` (text, already formatted) that fit in ``width``.

    Columns are taken in the order given while the table stays within ``width``; a column that
    does not fit (or whose longest cell exceeds ``longest`` characters: JSON blobs) is left out,
    and the names left out are returned, so that a number is always shown whole or not at all
    (rich would otherwise squeeze every column to ``0.…``). ``right`` columns are right-aligned.
    """

    def table_of(names: Sequence[str]) -> Table:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for name in names:
            table.add_column(name, justify="right" if name in right else "left", no_wrap=True)
        for row in cells[list(names)].itertuples(index=False):
            table.add_row(*(escape(value) for value in row))
        return table

    measure = Console(width=100_000, file=io.StringIO())  # measures only (unclamped by a narrow width); never prints
    chosen: list[str] = []
    for name in candidates:
        if max(map(len, cells[name]), default=0) > longest and name != candidates[0]:
            continue
        if Measurement.get(measure, measure.options, table_of([*chosen, name])).maximum <= width:
            chosen.append(name)
    return table_of(chosen), tuple(name for name in candidates if name not in chosen)
