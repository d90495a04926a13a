"""The ``sernas`` command line: thin argument parsing over the library, readable output.

Each subcommand calls one library function and prints a short rich table; user mistakes (bad
paths, bad corpus files, bad options) end with a message naming the thing and exit code 2,
never a traceback. Heavy imports happen inside the subcommands so ``sernas --help`` is instant.

Commands come in groups, one module each (``data``, ``run_fold``, ``search``, ``cross_eval``,
``results``, ``study``);
a group's ``register(subcommands)`` adds its commands. ``build_parser`` and ``main`` take the
groups to register, so a higher layer adds its own the same way (``cluster.cli``: ``submit``,
``cluster``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.markup import escape

from orchestrator.cli import cross_eval, data, results, run_fold, search, study
from orchestrator.cli.common import (
    EXIT_USER_ERROR,
    Handler,
    Register,
    Subcommands,
    UserError,
    console,
    error_console,
    frame_table,
)
from orchestrator.cli.run_fold import read_architecture
from orchestrator.cli.search import DEMO_CONFIG, print_leaderboard_top, run_search_command, start_ray

__all__ = [
    "COMMAND_GROUPS",
    "DEMO_CONFIG",
    "EXIT_USER_ERROR",
    "Handler",
    "Register",
    "Subcommands",
    "UserError",
    "build_parser",
    "console",
    "error_console",
    "frame_table",
    "main",
    "print_leaderboard_top",
    "read_architecture",
    "run_search_command",
    "start_ray",
]

COMMAND_GROUPS: tuple[Register, ...] = (
    data.register,
    run_fold.register,
    search.register,
    cross_eval.register,
    results.register,
    study.register,
)
"""The orchestrator's command groups, in the order ``--help`` lists them."""


def build_parser(*, groups: Sequence[Register] = COMMAND_GROUPS) -> argparse.ArgumentParser:
    """The ``sernas`` parser with the subcommands of ``groups``."""
    parser = argparse.ArgumentParser(
        prog="sernas", description="DARTS and hyperparameter search for speech emotion recognition."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in groups:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, groups: Sequence[Register] = COMMAND_GROUPS) -> int:
    """Parse ``argv`` and run its subcommand; a ``UserError`` becomes a message and exit code 2."""
    args = build_parser(groups=groups).parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UserError as error:
        error_console.print(f"[red]error:[/] {escape(str(error))}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        error_console.print("interrupted")
        return 130
