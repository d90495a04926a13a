"""What a person sees on the terminal: progress bars for the trainers' progress callback, tables
that fit the terminal's width, and the live table of a running experiment's trials.

Trainers only call a ``trainers.reporting.Progress``; what a person sees is decided here.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
from rich import box
from rich import progress as rich_progress
from rich.console import Console
from rich.live import Live
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


@dataclass
class TrialLine:
    """What the trial table shows of one trial."""

    trial_id: str
    params: str = ""
    state: str = "pending"
    fold: int | None = None
    phase: str = ""
    epoch: int | None = None
    valid_ua: float = math.nan  # the latest epoch's validation UA
    mean_valid_ua: float = math.nan  # over the finished folds
    folds_done: int = 0
    order: int = 0  # when it last changed state (ended trials: newest first)


_STATE_STYLE = {"running": "bold", "pending": "dim", "completed": "green", "pruned": "yellow", "failed": "red"}
_ENDED = ("completed", "pruned", "failed")


class TrialBoard:
    """The trials of a running experiment, for a person: a live table on a terminal, plain lines elsewhere.

    On a terminal (``console.is_terminal``) a rich ``Live`` table shows every running trial (its
    parameters, fold, epoch, latest validation UA, state) and the newest ended ones, with the
    counts of finished, pruned and failed trials; fold and trial-end lines scroll above it.
    Elsewhere (CI, the log of ``ray job submit``) each event is one plain line, and epochs show
    up in one status line every ``every_s`` seconds. Nothing here knows Ray Tune: the
    orchestrator's callback (``orchestrator.progress``) calls these methods.
    """

    def __init__(self, *, console: Console, n_folds: int, every_s: float = 30.0, max_rows: int = 20) -> None:
        self.console = console
        self.n_folds = n_folds
        self.every_s = every_s
        self.max_rows = max_rows
        self.trials: dict[str, TrialLine] = {}
        self._events = 0
        self._started = time.monotonic()
        self._last_status = time.monotonic()
        self._live: Live | None = None

    @property
    def live(self) -> bool:
        return self.console.is_terminal

    def counts(self) -> dict[str, int]:
        states = [line.state for line in self.trials.values()]
        return {state: states.count(state) for state in ("running", "pending", *_ENDED)}

    def counts_text(self) -> str:
        c = self.counts()
        return (
            f"{len(self.trials)} trials: {c['running']} running, {c['pending']} pending, {c['completed']} finished, "
            f"{c['pruned']} pruned, {c['failed']} failed"
        )

    def _line(self, trial_id: str, params: str | None) -> TrialLine:
        line = self.trials.setdefault(trial_id, TrialLine(trial_id))
        if params is not None:
            line.params = params
        return line

    def _touch(self, line: TrialLine, state: str) -> None:
        self._events += 1
        line.state, line.order = state, self._events

    # ------------------------------------------------------------------------------------ events
    def pending(self, trial_id: str, *, params: str | None = None) -> None:
        """A trial Tune knows of but has not started (shown in the counts)."""
        if trial_id not in self.trials:
            self._touch(self._line(trial_id, params), "pending")

    def started(self, trial_id: str, *, params: str | None = None) -> None:
        line = self._line(trial_id, params)
        self._touch(line, "running")
        self._say(f"[bold]{trial_id}[/] started [dim]{escape(line.params)}[/]", terminal=False)

    def epoch(
        self, trial_id: str, *, fold: int, phase: str, epoch: int, valid_ua: float, params: str | None = None
    ) -> None:
        line = self._line(trial_id, params)
        if line.state != "running":
            self._touch(line, "running")
        line.fold, line.phase, line.epoch, line.valid_ua = fold, phase, epoch, valid_ua
        if not self.live and time.monotonic() - self._last_status > self.every_s:
            self._last_status = time.monotonic()
            running = [t for t in self.trials.values() if t.state == "running"]
            self._say(
                f"[dim]{self.counts_text()}; "
                + "; ".join(
                    f"{t.trial_id} starting"
                    if t.epoch is None
                    else f"{t.trial_id} fold {t.fold} {t.phase} epoch {t.epoch} valid UA {t.valid_ua:.3f}"
                    for t in running
                )
                + "[/]"
            )
        self._refresh()

    def fold_done(
        self,
        trial_id: str,
        *,
        fold: int,
        folds_done: int,
        mean_valid_ua: float,
        message: str,
        params: str | None = None,
    ) -> None:
        """A finished fold: ``message`` (rich markup) says what it found."""
        line = self._line(trial_id, params)
        line.fold, line.folds_done, line.mean_valid_ua = fold, folds_done, mean_valid_ua
        self._say(message)

    def ended(self, trial_id: str, *, state: str, message: str) -> None:
        """``state`` is completed, pruned or failed; ``message`` (rich markup) says why."""
        if state not in _ENDED:
            raise ValueError(f"state must be one of {_ENDED}, but got {state!r}.")
        self._touch(self._line(trial_id, None), state)
        self._say(message)

    def close(self) -> None:
        """Stop the live table (its last state stays on the screen)."""
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None

    # --------------------------------------------------------------------------------- drawing
    def _say(self, message: str, *, terminal: bool = True) -> None:
        """One line: plain (with the counts) off a terminal; above the live table on one."""
        if not self.live:
            self.console.print(f"{message} [dim]({self.counts_text()})[/]")
            return
        if terminal:
            self._refresh()  # (starts the live table if needed, so the line lands above it)
            self.console.print(message)
        self._refresh()

    def _refresh(self) -> None:
        if not self.live:
            return
        if self._live is None:
            self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(self.render(), refresh=True)

    def render(self, *, width: int | None = None) -> Table:
        """The table: running trials first, then the newest ended ones, at most ``max_rows``; at most
        ``width`` (default: the console's) wide, by shortening the parameters, never a number."""
        lines = sorted(
            self.trials.values(), key=lambda t: (t.state != "running", t.state == "pending", -t.order, t.trial_id)
        )
        others = [t for t in lines if t.state != "pending"]
        shown = others[: self.max_rows]
        elapsed = time.monotonic() - self._started
        table = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            caption=f"{self.counts_text()} · {elapsed:.0f} s",
            caption_justify="left",
        )
        rows = [
            (
                t.trial_id,
                escape(t.params),
                "" if t.fold is None else f"{t.fold} ({t.folds_done}/{self.n_folds})",
                "" if t.epoch is None else f"{t.phase} {t.epoch}",
                "" if math.isnan(t.valid_ua) else f"{t.valid_ua:.3f}",
                "" if math.isnan(t.mean_valid_ua) else f"{t.mean_valid_ua:.3f}",
                t.state,
            )
            for t in shown
        ]
        headers = ("trial", "params", "fold", "epoch", "valid UA", "mean valid", "state")
        wholes = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
        # Columns are 3 apart (padding, rule, padding); the parameters get what the others leave.
        room = (width or self.console.width) - (sum(wholes) - wholes[1]) - 3 * (len(headers) - 1)
        with_params = room >= 6  # else the parameters give way: every other column stays whole
        for header, whole in zip(headers, wholes, strict=True):
            if header == "params" and not with_params:
                continue
            table.add_column(
                header,
                justify="right" if header in ("fold", "valid UA", "mean valid") else "left",
                no_wrap=True,
                overflow="ellipsis",
                width=min(whole, room) if header == "params" else whole,
            )
        for row in rows:
            cells = [*row[:-1], f"[{_STATE_STYLE[row[-1]]}]{row[-1]}[/]"]
            table.add_row(*(cells if with_params else cells[:1] + cells[2:]))
        if len(others) > len(shown):
            table.add_row(f"{len(others) - len(shown)} more", *[""] * (len(table.columns) - 1))
        return table
