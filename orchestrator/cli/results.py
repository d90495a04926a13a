"""Result commands: ``leaderboard`` (DuckDB over the part files), ``report`` (one HTML page),
``export`` (retrain a leaderboard genotype into a model bundle) and ``predict`` (with that bundle)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import (
    EXIT_USER_ERROR,
    Subcommands,
    UserError,
    add_device_option,
    add_results_options,
    check_storage,
    console,
    error_console,
    frame_table,
)

__all__ = ["SUMMARY_TABLE_COLUMNS", "cmd_export", "cmd_leaderboard", "cmd_predict", "cmd_report", "register"]


# ---------------------------------------------------------------------------------- leaderboard
# What the table shows of a summary (csv/json/parquet carry every column).
SUMMARY_TABLE_COLUMNS = (
    "rank",
    "experiment",
    "genotype_hash",
    "trial_id",
    "config_json",
    "mean_valid_ua",
    "std_valid_ua",
    "mean_ua",
    "std_ua",
    "mean_wa",
    "mean_macro_f1",
    "folds_covered",
    "n_folds",
    "complete",
    "seeds",
    "mean_params",
)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import json

    import duckdb

    from orchestrator.leaderboard import AUTO_COMPACT_FILES, connect, cross_eval_summary
    from orchestrator.leaderboard.cross_eval import CROSS_EVAL_COLUMNS
    from orchestrator.selection import OPTIMISTIC_NOTE, nested_estimates

    if args.top is not None and args.top < 1:
        raise UserError(f"--top must be >= 1, but got {args.top}.")
    if args.format == "parquet" and args.out is None:
        raise UserError("--format parquet needs --out FILE.parquet.")
    cross_eval = args.by == "cross-eval" and not args.sql
    if cross_eval and (args.where or args.rank_by != "valid"):
        raise UserError("--by cross-eval ranks by mean validation UA only; drop --where and --rank-by.")
    check_storage(args.storage)
    with connect(
        args.storage, experiment=args.experiment, compact_at=0 if args.compact else AUTO_COMPACT_FILES
    ) as board:
        for line in board.scan.damage_report():
            error_console.print(f"[yellow]{escape(line)}[/]")
        try:
            if args.sql:
                frame = board.sql(args.sql)
            elif cross_eval:
                frame = cross_eval_summary(board, experiment=args.experiment, top=args.top)
            else:
                frame = board.summary(args.by, where=args.where, top=args.top, rank_by=args.rank_by)
        except duckdb.Error as error:
            raise UserError(f"query failed: {str(error).splitlines()[0]}") from None
        estimates = {} if args.sql else nested_estimates(board)
    optimistic = not args.sql and args.rank_by == "test"
    if optimistic:
        error_console.print(f"[yellow]{OPTIMISTIC_NOTE}.[/]")
    if args.format == "table":
        for estimate in estimates.values():
            console.print(f"[bold]{escape(estimate.experiment)}[/]: {escape(estimate.headline())}")
        if frame.empty:
            console.print("No rows.")
        else:
            wanted = CROSS_EVAL_COLUMNS if cross_eval else SUMMARY_TABLE_COLUMNS
            shown = frame if args.sql else frame[[c for c in wanted if c in frame.columns]]
            shown = shown.copy()
            for column in shown.select_dtypes("float").columns:
                pattern = "{:,.0f}" if column == "mean_params" else "{:.4g}"
                shown[column] = shown[column].map(lambda v, p=pattern: "" if pd.isna(v) else p.format(v))
            ranked_by = "test UA (optimistic)" if optimistic else "validation UA; mean_ua is test, never used to rank"
            title = "query" if args.sql else f"leaderboard by {args.by}, ranked by {ranked_by}"
            if cross_eval:
                title += (
                    "; cross-eval rows only (seen_folds: folds whose test speakers the genotype's search saw, "
                    "optimistic there; the nested estimate is the number to publish)"
                )
            first = shown.columns[0]
            console.print(frame_table(shown.set_index(first), title=title, index_name=str(first)))
    elif args.format == "csv":
        text = frame.to_csv(index=False)
        Path(args.out).write_text(text) if args.out else sys.stdout.write(text)
    elif args.format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=2) + "\n"
        if not args.sql:  # a summary: its rows with the nested estimate of each experiment beside them
            document = {
                "by": args.by,
                "rank_by": args.rank_by,
                "optimistic": optimistic,
                "nested_estimate": {name: estimate.to_dict() for name, estimate in estimates.items()},
                "rows": json.loads(text),
            }
            text = json.dumps(document, indent=2) + "\n"
        Path(args.out).write_text(text) if args.out else sys.stdout.write(text)
    else:
        from trainers.atomic_io import write_parquet_atomically

        write_parquet_atomically(frame, args.out)
        console.print(f"Wrote {len(frame)} rows to {args.out}.")
    return 0


# ---------------------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.report import write_report

    check_storage(args.storage)
    out = write_report(args.storage, experiment=args.experiment, out=args.out)
    console.print(f"Report written to {out} (one self-contained HTML file; open it in any browser, offline).")
    return 0


# ------------------------------------------------------------------------------ export / predict
def cmd_export(args: argparse.Namespace) -> int:
    from orchestrator.config import ConfigError
    from orchestrator.export import export_model
    from trainers.device import resolve_device

    if args.rank is not None and args.genotype is not None:
        raise UserError("give --rank or --genotype, not both.")
    if args.rank is not None and args.rank < 1:
        raise UserError(f"--rank must be >= 1, but got {args.rank}.")
    if args.fold is not None and args.fold < 1:
        raise UserError(f"--fold must be >= 1, but got {args.fold}.")
    check_storage(args.storage)
    try:
        result = export_model(
            args.storage,
            out=args.out,
            device=resolve_device(args.device),
            experiment=args.experiment,
            rank=args.rank,
            genotype=args.genotype,
            fold=args.fold,
        )
    except (ConfigError, FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    console.print(
        f"Exported genotype [bold]{escape(result.genotype_hash)}[/] of {result.experiment} (chosen by validation "
        f"UA; settings of trial {result.trial_id}): retrained from scratch on {escape(result.trained_on)} -> "
        f"{result.out}"
    )
    if result.nested_estimate is not None:
        console.print(f"What to expect on new speakers: {escape(result.nested_estimate.headline())}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from trainers.device import resolve_device
    from trainers.model_bundle import load_bundle, predict_files

    try:
        device = resolve_device(args.device)
        loaded = load_bundle(args.model, device=device)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    predictions = predict_files(loaded, [str(path) for path in args.files], device=device)
    if args.format == "json":
        sys.stdout.write(json.dumps([p.__dict__ for p in predictions], indent=2) + "\n")
    else:
        table = Table(title=f"Predictions of {escape(str(args.model))}", title_justify="left")
        table.add_column("file")
        table.add_column("emotion", style="bold")
        for name in loaded.classes:
            table.add_column(name, justify="right")
        for p in predictions:
            if p.error is not None:
                table.add_row(escape(p.path), "[red]error[/]", *[""] * len(loaded.classes))
            else:
                table.add_row(escape(p.path), p.label, *[f"{p.probabilities[c]:.3f}" for c in loaded.classes])
        console.print(table)
    failed = [p for p in predictions if p.error is not None]
    for p in failed:
        error_console.print(f"[red]{escape(p.path)}: {escape(p.error)}[/]")
    return EXIT_USER_ERROR if failed else 0


def register(commands: Subcommands) -> None:
    """Add ``leaderboard``, ``report``, ``export`` and ``predict``."""
    from orchestrator.selection import RANK_BY

    board = commands.add_parser("leaderboard", help="rank genotypes, trials or configs over folds (DuckDB)")
    add_results_options(board)
    board.add_argument(
        "--by",
        choices=["genotype", "trial", "config", "cross-eval"],
        default="genotype",
        help="search rows per genotype, trial or config; or cross-eval rows per genotype (sernas cross-eval)",
    )
    board.add_argument("--top", type=int, default=None, help="best N per experiment")
    board.add_argument(
        "--rank-by",
        choices=RANK_BY,
        default="valid",
        help="valid (default): mean validation UA; test: mean test UA, optimistic (the output says so)",
    )
    board.add_argument("--where", default=None, help='SQL condition on runs, e.g. "layers = 4"')
    board.add_argument(
        "--sql",
        default=None,
        help="any SQL over the views fold_rows, runs, trials, genotypes, trial_scores, config_scores",
    )
    board.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    board.add_argument("--out", type=Path, default=None, help="write csv/json/parquet here instead of stdout")
    board.add_argument(
        "--compact",
        action="store_true",
        help="first fold every part file into one snapshot per experiment (done by itself past "
        "1,000 loose files); later queries open a few files instead of thousands",
    )
    board.set_defaults(handler=cmd_leaderboard)

    report = commands.add_parser("report", help="one self-contained HTML page about an experiment")
    add_results_options(report)
    report.add_argument("--out", required=True, type=Path, help="HTML file to write")
    report.set_defaults(handler=cmd_report)

    export = commands.add_parser("export", help="retrain a leaderboard genotype and save a model bundle")
    add_results_options(export)
    export.add_argument("--rank", type=int, default=None, help="genotype rank by validation UA (default 1)")
    export.add_argument("--genotype", default=None, help="genotype hash instead of a rank")
    export.add_argument(
        "--fold",
        type=int,
        default=None,
        help="train on fold K's training and validation speakers only (default: every speaker of the protocol)",
    )
    add_device_option(export)
    export.add_argument("--out", required=True, type=Path, help="model file to write (.pt)")
    export.set_defaults(handler=cmd_export)

    predict = commands.add_parser("predict", help="predict the emotion of WAV files with an exported model")
    predict.add_argument("--model", required=True, type=Path)
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE.wav")
    predict.add_argument("--format", choices=["table", "json"], default="table")
    add_device_option(predict)
    predict.set_defaults(handler=cmd_predict)
