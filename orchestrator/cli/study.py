"""``sernas dashboard``: optuna-dashboard on an experiment's Optuna study (``orchestrator.study``).

The study is a plain Optuna journal, so ``optuna-dashboard <journal>`` works as well; this
command finds the journal from ``--storage`` and ``--experiment`` (fetching an object store's
copy when this machine has none), says which file it serves, and keeps the server on loopback
unless told otherwise.
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from orchestrator.cli.common import Subcommands, UserError, console

__all__ = ["cmd_dashboard", "register"]

DASHBOARD_EXTRA = "pip install 'sernas[dashboard]'"


def cmd_dashboard(args: argparse.Namespace) -> int:
    from orchestrator.study import StudyHandle, journal_storage

    try:
        import optuna_dashboard
    except ImportError:
        raise UserError(f"optuna-dashboard is not installed; install the extra: {DASHBOARD_EXTRA}") from None
    try:
        handle = StudyHandle(storage=args.storage, experiment=args.experiment)
        trials = handle.trials()
    except (ValueError, OSError) as error:
        raise UserError(str(error)) from None
    if not trials:
        raise UserError(
            f"no Optuna study of experiment {args.experiment!r} with trials at {handle.journal}; "
            "check --storage and --experiment (the study is written by sernas search)."
        )
    journal = handle.journal
    console.print(
        f"Optuna study [bold]{escape(args.experiment)}[/] ({trials} trials) in {escape(str(journal))}\n"
        f"optuna-dashboard on http://{args.host}:{args.port}/ (Ctrl-C stops it); the same as: "
        f"optuna-dashboard {escape(str(journal))} --host {args.host} --port {args.port}"
    )
    optuna_dashboard.run_server(journal_storage(journal), host=args.host, port=args.port)
    return 0


def register(commands: Subcommands) -> None:
    """Add ``dashboard``."""
    dashboard = commands.add_parser(
        "dashboard", help=f"optuna-dashboard on an experiment's Optuna study (needs {DASHBOARD_EXTRA})"
    )
    dashboard.add_argument("--storage", required=True, help="the experiment's storage (path or URI, as tune.storage)")
    dashboard.add_argument("--experiment", required=True, help="experiment name")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to serve on (default: loopback only)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    dashboard.set_defaults(handler=cmd_dashboard)
