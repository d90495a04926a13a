"""What every command group of the ``sernas`` CLI shares: its consoles, its user error, the hook
type by which a group adds its subcommands, and the options several commands take.

Nothing here imports torch: ``trainers.device`` (which does) is imported only when a ``--device``
option is parsed or its help is shown, so ``sernas --help`` stays instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.storage import RESTART_CHOICES, StorageAccessError, check_access, resolve_storage

__all__ = [
    "DEFAULT_PRESET",
    "EXIT_USER_ERROR",
    "DeviceSpec",
    "Handler",
    "Register",
    "Subcommands",
    "UserError",
    "add_device_option",
    "add_restart_option",
    "add_results_options",
    "check_storage",
    "console",
    "error_console",
    "frame_table",
]

EXIT_USER_ERROR = 2
DEFAULT_PRESET = "paper-mfcc"  # the feature preset of `sernas features` and `sernas run-fold`
console = Console(highlight=False, soft_wrap=True)  # never break paths across lines
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


class UserError(Exception):
    """A mistake in the user's input; printed without a traceback."""


Handler = Callable[[argparse.Namespace], int]
"""What a subcommand runs (``set_defaults(handler=...)``): the parsed arguments in, the exit code out."""


class Subcommands(Protocol):
    """The subparsers object a ``Register`` hook adds its commands to (``argparse``'s ``add_subparsers()``)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


Register = Callable[[Subcommands], None]
"""A command group's hook: adds its subcommands, each with ``set_defaults(handler=...)``."""


def frame_table(frame: pd.DataFrame, *, title: str, index_name: str | None = None) -> Table:
    """Render a small DataFrame (e.g. counts per session x label) as a rich table."""
    table = Table(title=title, title_justify="left")
    table.add_column(index_name or str(frame.index.name or ""), style="bold")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, row in frame.iterrows():
        table.add_row(escape(str(index)), *["" if pd.isna(value) else escape(str(value)) for value in row])
    return table


class DeviceSpec:
    """The argparse ``type`` of ``--device``: ``trainers.device``'s rule and its help text.

    ``str()`` of it is ``DEVICE_SPEC_HELP`` (the option's help is ``%(type)s``), so that module,
    which imports torch, is imported only when an option is parsed or its help is printed.
    """

    def __call__(self, text: str) -> str:
        from trainers.device import check_device_spec

        try:
            return check_device_spec(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    def __str__(self) -> str:
        from trainers.device import DEVICE_SPEC_HELP

        return DEVICE_SPEC_HELP


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device`` (default ``auto``), checked when parsed."""
    parser.add_argument("--device", type=DeviceSpec(), default="auto", help="%(type)s")


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """``--weights PATH``: an SSL preset's encoder weights (default: torch hub's cache)."""
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="PATH",
        help="weights of an SSL preset's encoder (default: torch hub's cache, "
        "$TORCH_HOME/hub/checkpoints/<torchaudio's file name>); never downloaded",
    )


def add_restart_option(parser: argparse.ArgumentParser, *, default: str | None = None, help: str) -> None:
    """``--restart archive|remove``: what to do with the results a used experiment name already has."""
    parser.add_argument("--restart", choices=RESTART_CHOICES, default=default, help=help)


def add_results_options(parser: argparse.ArgumentParser) -> None:
    """``--storage`` and ``--experiment`` of the commands that read what ``sernas search`` wrote."""
    parser.add_argument("--storage", required=True, help="the experiment storage (folder or URI)")
    parser.add_argument("--experiment", default=None, help="only this experiment")


def check_storage(storage: str, *, write: bool = False) -> None:
    """Raise ``UserError`` unless ``storage`` is an existing local folder or an object store that
    these credentials can read (and, with ``write``, write)."""
    try:
        location = resolve_storage(storage)
        check_access(location, write=write)
    except (ValueError, StorageAccessError) as error:
        raise UserError(str(error)) from None
    if location.is_local and not location.local_path().is_dir():
        raise UserError(f"storage {storage} does not exist (give the folder passed to sernas search --storage).")
