"""Result commands: ``leaderboard`` (DuckDB over the part files), ``report`` (one HTML page),
``export`` (retrain a leaderboard genotype into a model bundle) and ``predict`` (with that bundle)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
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
    add_weights_option,
    check_storage,
    console,
    error_console,
)
from orchestrator.terminal import fitted_table

__all__ = ["TABLE_FIRST", "cmd_export", "cmd_leaderboard", "cmd_predict", "cmd_report", "register"]


# ---------------------------------------------------------------------------------- leaderboard
# The columns a table shows first, per --by, while they fit the terminal; then the frame's others in
# its order (csv/json/parquet carry every column). "folds" is folds_covered/n_folds in one cell.
FOLDS = "folds"
TABLE_FIRST: dict[str, tuple[str, ...]] = {
    "genotype": (
        "rank",
        "genotype_hash",
        "mean_valid_ua",
        "mean_test_ua",
        FOLDS,
        "mean_params",
        "std_valid_ua",
        "std_test_ua",
    ),
    "trial": (  # a search trial belongs to one outer fold; runs = its networks (inner folds) finished
        "rank",
        "trial_id",
        "outer_fold",
        "mean_valid_ua",
        "mean_test_ua",
        "runs",
        "mean_params",
        "trial_status",
        FOLDS,
        "std_valid_ua",
        "std_test_ua",
    ),
    "config": ("rank", "mean_valid_ua", "mean_test_ua", FOLDS, "mean_params"),  # then leaderboard.views.CONFIG_COLUMNS
    "cross-eval": (
        "rank",
        "genotype_hash",
        "mean_valid_ua",
        "mean_test_ua",
        FOLDS,
        "seeds",
        "seen_folds",
        "mean_params",
    ),
}
_RIGHT_TEXT = {FOLDS}  # text columns aligned like numbers


def _cell_text(column: str, values: pd.Series) -> pd.Series:
    """How a table shows a column: UAs and other scores with 3 decimals, parameter counts with commas."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return values.map(lambda v: "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v))
    if pd.api.types.is_integer_dtype(values):
        return values.map(str)
    if column.endswith("params"):
        pattern = "{:,.0f}"
    elif column.endswith(("ua", "wa", "f1", "_p", "diff_vs_baseline")):
        pattern = "{:.3f}"
    else:
        pattern = "{:.4g}"
    return values.map(lambda v: "" if pd.isna(v) else pattern.format(v))


def leaderboard_table(
    frame: pd.DataFrame, *, by: str | None, title: str, width: int, columns: Sequence[str] | None = None
) -> Table:
    """``frame`` as a table ``width`` characters wide: ``columns`` if given (``UserError`` naming the
    valid ones for an unknown name), else the first of ``TABLE_FIRST[by]`` (then the rest) that fit."""
    cells = pd.DataFrame({column: _cell_text(column, frame[column]) for column in frame.columns})
    if {"folds_covered", "n_folds"} <= set(frame.columns):
        cells.insert(0, FOLDS, [f"{a}/{b}" for a, b in zip(frame["folds_covered"], frame["n_folds"], strict=True)])
    valid = list(cells.columns)
    if columns:
        unknown = [name for name in columns if name not in valid]
        if unknown:
            raise UserError(f"--columns: unknown column(s) {', '.join(unknown)}; the table has: {', '.join(valid)}.")
        candidates = list(dict.fromkeys(columns))
    else:
        first = [name for name in TABLE_FIRST.get(by or "", ()) if name in valid]
        if by == "config":
            from orchestrator.leaderboard.views import CONFIG_COLUMNS

            first += [name for name in CONFIG_COLUMNS if name in valid]
        if "experiment" in valid and frame["experiment"].nunique() > 1:  # ranks restart per experiment
            first.insert(1, "experiment")
        rest = [name for name in valid if name not in first and name not in ("folds_covered", "n_folds")]
        candidates = first + rest
    right = [name for name in valid if name in _RIGHT_TEXT or pd.api.types.is_numeric_dtype(frame.get(name))]
    table, left_out = fitted_table(cells, title=title, width=width, candidates=candidates, right=right)
    if left_out:
        table.caption = (
            f"{len(left_out)} more column(s) ({', '.join(left_out)}): pick with --columns NAME,...; "
            "--format csv|json|parquet has every column"
        )
        table.caption_justify = "left"
    return table


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import json

    import duckdb

    from orchestrator.leaderboard import (
        AUTO_COMPACT_FILES,
        BASELINE,
        absent_class_notes,
        connect,
        cross_eval_summary,
        search_verdicts,
        speaker_check_notes,
        supernet_rankings,
    )
    from orchestrator.selection import OPTIMISTIC_NOTE, nested_estimates

    if args.top is not None and args.top < 1:
        raise UserError(f"--top must be >= 1, but got {args.top}.")
    if args.columns is not None and args.format != "table":
        raise UserError(f"--columns picks what a table shows; --format {args.format} has every column.")
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
                verdicts = search_verdicts(board, frame, baseline=BASELINE)
                rankings = supernet_rankings(board)
            else:
                frame = board.summary(args.by, where=args.where, top=args.top, rank_by=args.rank_by)
        except duckdb.Error as error:
            raise UserError(f"query failed: {str(error).splitlines()[0]}") from None
        estimates = {} if args.sql else nested_estimates(board)
        absent = [] if args.sql else absent_class_notes(board)
        overlap = [] if args.sql else speaker_check_notes(board)
    optimistic = not args.sql and args.rank_by == "test"
    if optimistic:
        error_console.print(f"[yellow]{OPTIMISTIC_NOTE}.[/]")
    if not cross_eval:
        verdicts, rankings = [], {}
    if args.format == "table":
        for estimate in estimates.values():
            console.print(f"[bold]{escape(estimate.experiment)}[/]: {escape(estimate.headline())}")
        for verdict in verdicts:
            console.print(f"[bold]{escape(verdict.experiment)}[/]: {escape(verdict.line())}")
        for name, ranking in rankings.items():
            console.print(f"[bold]{escape(name)}[/]: {escape(ranking.text())}")
        if frame.empty:
            console.print("No rows.")
        else:
            ranked_by = (
                "test UA (optimistic)" if optimistic else "validation UA; mean_test_ua is test, never used to rank"
            )
            title = "query" if args.sql else f"leaderboard by {args.by}, ranked by {ranked_by}"
            if cross_eval:
                title += (
                    "; cross-eval rows only (seen_folds: folds whose test speakers the genotype's search saw, "
                    "optimistic there; the nested estimate is the number to publish)"
                )
            console.print(
                leaderboard_table(
                    frame, by=None if args.sql else args.by, title=title, width=console.width, columns=args.columns
                ),
                soft_wrap=False,  # the title and the caption wrap at the table's width
            )
        for note in overlap:  # a fold whose test speakers also train (or are unknown): optimistic test figures
            console.print(f"[yellow]note: {escape(note)}[/]")
        for note in absent:  # a split without some class: its UA counts that class as recall 0
            console.print(f"[yellow]note: {escape(note)}[/]")
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
                **({"search_verdicts": [verdict.to_dict() for verdict in verdicts]} if cross_eval else {}),
                **({"supernet_rankings": {n: r.to_dict() for n, r in rankings.items()}} if cross_eval else {}),
                "absent_classes": absent,
                "speaker_checks": overlap,
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
        f"Exported genotype [bold]{escape(result.genotype_hash)}[/] of {result.experiment} (chosen from validation "
        f"figures, not by a study: no deployment study over all speakers yet; settings of trial {result.trial_id}): "
        f"retrained from scratch on {escape(result.trained_on)} -> {result.out}"
    )
    if result.test is not None:
        console.print(
            f"Scored once on fold {result.fold}'s held-out test speakers: UA {result.test['ua']:.3f}, WA "
            f"{result.test['wa']:.3f}, macro-F1 {result.test['macro_f1']:.3f} ({result.test['n']} utterances; "
            f"each prediction -> {result.predictions})"
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
    from trainers.normalization import SPEAKER_MIN_CLIPS

    if loaded.normalizer.mode == "speaker" and len(args.files) < SPEAKER_MIN_CLIPS:
        error_console.print(
            f"[yellow]This model normalises each speaker by the statistics of their clips; the "
            f"{len(args.files)} file(s) of this call count as one speaker's clips. With fewer than "
            f"{SPEAKER_MIN_CLIPS} those statistics are mostly the clips' own (which removes their level cues): "
            "pass several clips of the same speaker in one call.[/]"
        )
    try:
        predictions = predict_files(loaded, [str(path) for path in args.files], device=device, weights=args.weights)
    except ValueError as error:  # an SSL model's encoder weights: missing, broken or not the ones it was trained on
        raise UserError(str(error)) from None
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
    board.add_argument(
        "--columns",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        metavar="NAME,...",
        help="the table's columns (default: rank, id, mean validation UA, test UA, folds, params, then "
        "whatever else fits the terminal); folds is folds_covered/n_folds",
    )
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
    add_weights_option(predict)
    add_device_option(predict)
    predict.set_defaults(handler=cmd_predict)
