"""Experiment commands: ``search`` (many DARTS searches with Ray Tune) and ``demo`` (the same on
the built-in synthetic corpus), with the Ray start and the leaderboard summary they print."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import Subcommands, UserError, add_restart_option, console, error_console
from orchestrator.ray_runtime import start_ray
from orchestrator.storage import ARCHIVE_DIR

__all__ = [
    "DEMO_CONFIG",
    "cmd_demo",
    "cmd_search",
    "print_leaderboard_top",
    "ray_session",
    "register",
    "run_search_command",
    "start_ray",
]

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


@contextlib.contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the block (``start_ray``), its dashboard printed, and stopped afterwards only if
    this call started it; a ``ValueError`` from the block is a user error."""
    dashboard, started_ray = start_ray(address, num_cpus=num_cpus)
    if dashboard:
        console.print(f"Ray dashboard: {dashboard}")
    try:
        yield
    except ValueError as error:
        raise UserError(str(error)) from None
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def print_leaderboard_top(storage: str, experiment: str, *, n: int = 10) -> None:
    """The nested estimate, then the best trials ranked by mean validation UA (test UA beside)."""
    import json

    from orchestrator.leaderboard import connect
    from orchestrator.selection import nested_estimates

    with connect(storage, experiment=experiment) as board:
        top = board.summary("trial", top=n)
        estimate = nested_estimates(board).get(experiment)
        damaged = board.scan.damage_report()
    for line in damaged:
        error_console.print(f"[yellow]{escape(line)}[/]")
    if top.empty or estimate is None:
        console.print("The leaderboard has no finished folds yet.")
        return
    console.print(f"[bold]{experiment}[/]: {escape(estimate.headline())}")
    table = Table(
        title=f"Best trials of {experiment}, ranked by mean validation UA over their inner folds (each trial "
        "belongs to one outer fold's study; test UA: reported, never used; WA and F1: sernas leaderboard)",
        title_justify="left",
    )
    for column in ("rank", "trial", "outer fold", "valid UA", "test UA", "networks", "status", "params"):
        table.add_column(column, justify="left" if column in ("rank", "trial", "status") else "right", no_wrap=True)
    configs = []
    for row in top.itertuples():
        planned = 1 if pd.isna(row.n_inner_folds) else int(row.n_inner_folds)
        table.add_row(
            str(row.rank),
            row.trial_id,
            str(row.outer_fold) if row.folds_covered == 1 else f"{row.folds_covered}/{row.n_folds}",
            _mean_and_spread(row.mean_valid_ua, row.std_valid_ua),
            _mean_and_spread(row.mean_test_ua, row.std_test_ua),
            f"{row.runs}/{planned}" if row.folds_covered == 1 else str(row.runs),
            str(row.trial_status),
            f"{row.mean_params:,.0f}",
        )
        configs.append(
            f"  {row.trial_id}: "
            + ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in json.loads(row.params_json or "{}").items()
            )
        )
    console.print(table)
    console.print("Configurations:\n" + escape("\n".join(configs)))


def _mean_and_spread(mean: float, std: float) -> str:
    return f"{mean:.3f}" + ("" if pd.isna(std) else f"±{std:.3f}")


def _one_run_per_name(config, *, restart: str | None, command: str) -> None:
    """Refuse a name that already has results, or move them aside (``archive``) or delete them (``remove``)."""
    from orchestrator.experiment import storage_root
    from orchestrator.runs import archive_run, existing_run, experiment_inputs, remove_run

    run = existing_run(storage_root(config), config.name, inputs=experiment_inputs(config))
    if not run:
        return
    if restart is None:
        raise UserError(
            f"experiment {config.name!r} already has results ({run.describe()}); one name holds one run. "
            f"Continue it with {command} --resume, give the new run another name (--set name=...), or start "
            f"afresh with --restart archive (moves the old run to {ARCHIVE_DIR}/ of the storage) or "
            "--restart remove (deletes it)."
        )
    if restart == "archive":
        archived = archive_run(run)
        console.print(f"Experiment [bold]{config.name}[/] had results ({escape(run.describe())}): moved to {archived}.")
    else:
        remove_run(run)
        console.print(f"Experiment [bold]{config.name}[/] had results ({escape(run.describe())}): removed.")


def run_search_command(
    config_path: Path,
    *,
    overrides: Sequence[str],
    storage: str | None,
    address: str | None,
    resume: bool,
    restart: str | None = None,
    command: str = "sernas search",
) -> int:
    """``sernas search`` (and ``demo``): refuse a used name unless ``resume`` or ``restart``
    (``archive`` | ``remove``) says what to do with its results, prepare the data, run Tune, print the top."""
    from orchestrator.config import ConfigError, load_config
    from orchestrator.experiment import prepare_data, run_experiment, storage_root
    from orchestrator.resume_check import check_resume
    from orchestrator.storage import StorageAccessError, StorageWriteError, check_access
    from trainers.corpora.scan import CorpusError
    from trainers.features import FeaturesNotFoundError

    if resume and restart is not None:
        raise UserError(f"give --resume (continue the run) or --restart {restart} (start afresh), not both.")
    overrides = list(overrides) + ([f"tune.storage={storage}"] if storage else [])
    try:
        config = load_config(config_path, overrides=overrides)
        config.data.resolved_preset(check=True)  # an SSL preset's weights: found and loaded before any write
        check_access(storage_root(config), write=True)  # before any data is prepared or Ray starts
        if not resume:
            _one_run_per_name(config, restart=restart, command=command)
        else:  # refuses a changed config before anything is written (the data: in prepare_data)
            for warning in check_resume(config, data=storage_root(config).experiment_data(config.name)):
                console.print(f"[yellow]{escape(warning)}[/]")
        started = time.perf_counter()
        prepared = prepare_data(config, resume=resume)
    except (
        ConfigError,
        CorpusError,
        FeaturesNotFoundError,
        FileNotFoundError,
        ValueError,
        StorageAccessError,
        StorageWriteError,
    ) as error:
        raise UserError(str(error)) from None
    console.print(
        f"Prepared {prepared.folds['utt_id'].nunique()} utterances ({len(prepared.manifest)} clips of their speakers "
        f"for speaker statistics), {prepared.folds['fold'].nunique()} folds, classes "
        f"{', '.join(prepared.classes)} in {time.perf_counter() - started:.1f} s (data in {prepared.data_dir})."
    )
    if config.folds.scheme == "cross-corpus":  # which corpora train and test, and each corpus's class mapping
        from trainers.cross_corpus import cross_corpus_summary

        for line in cross_corpus_summary(prepared.folds, prepared.manifest, protocol=config.fold_protocol()):
            console.print(f"  {escape(line)}")
    with ray_session(address):
        summary = run_experiment(config, prepared=prepared, resume=resume, console=console)
    console.print(
        f"Experiment [bold]{summary.name}[/]: {summary.trials} trials ({summary.completed} completed, "
        f"{summary.pruned} pruned, {summary.failed} failed), {summary.epochs_reported} epochs and "
        f"{summary.folds_reported} folds reported in {summary.seconds:.0f} s."
    )
    print_leaderboard_top(summary.storage, summary.name)
    console.print(
        f"Leaderboard part files: {summary.storage}/leaderboard/{summary.name}/. Next: "
        f"sernas leaderboard --storage {summary.storage} --experiment {summary.name} --by trial, or "
        f"sernas report --storage {summary.storage} --experiment {summary.name} --out report.html"
    )
    return 0 if summary.failed == 0 else 1


def cmd_search(args: argparse.Namespace) -> int:
    return run_search_command(
        args.config,
        overrides=args.set,
        storage=args.storage,
        address=args.address,
        resume=args.resume,
        restart=args.restart,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo again in the same place starts afresh: the earlier run is archived (or removed)."""
    overrides = [f"data.root={args.corpus}"] if args.corpus else []
    return run_search_command(
        DEMO_CONFIG,
        overrides=overrides,
        storage=args.storage,
        address=None,
        resume=False,
        restart=args.restart,
        command="sernas demo",
    )


def register(commands: Subcommands) -> None:
    """Add ``search`` and ``demo``."""
    search = commands.add_parser("search", help="run an experiment of many DARTS searches with Ray Tune")
    search.add_argument("--config", required=True, type=Path, help="experiment YAML (see configs/)")
    search.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set tune.num_samples=8 (repeatable)",
    )
    search.add_argument("--storage", default=None, help="results path or URI (overrides tune.storage)")
    search.add_argument("--address", default=None, help="Ray address to join (auto, ray://host:10001); default: local")
    search.add_argument("--resume", action="store_true", help="finish an interrupted experiment (Tuner.restore)")
    add_restart_option(
        search,
        help="the experiment name already has results: start afresh, the old run moved to <storage>/_archive/ "
        "(archive) or deleted (remove); without it such a name is refused",
    )
    search.set_defaults(handler=cmd_search)

    demo = commands.add_parser("demo", help="the whole pipeline on the built-in synthetic corpus, in minutes")
    demo.add_argument("--storage", default=None, help="results folder (default runs/demo/storage)")
    demo.add_argument("--corpus", default=None, help="synthetic corpus folder (made if absent)")
    add_restart_option(
        demo,
        default="archive",
        help="an earlier demo run in the same storage is moved to <storage>/_archive/ (archive, the default) "
        "or deleted (remove) before the demo starts afresh",
    )
    demo.set_defaults(handler=cmd_demo)
