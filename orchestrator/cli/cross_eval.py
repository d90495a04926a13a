"""``sernas cross-eval``: retrain the best genotypes (and the baseline) from scratch on every fold.

The genotypes come from the search rows, ranked by mean validation UA (``--top N``), plus the
ones named (``--genotype HASH|JSON|baseline``, repeatable); each runs every fold of the
experiment's protocol for ``--seeds K`` seeds as a Ray Tune experiment of evaluation-only
trials (see ``orchestrator.cross_eval``), and the cross-eval genotype table is printed. Every
candidate trains under the experiment's base settings, or with ``--settings source`` under its
source trial's (the baseline under each of those): ``orchestrator.candidates.CROSS_EVAL_SETTINGS``.
"""

from __future__ import annotations

import argparse

import pandas as pd
from rich import box
from rich.markup import escape
from rich.table import Table

from orchestrator.candidates import CROSS_EVAL_SETTINGS
from orchestrator.cli.common import Subcommands, UserError, check_storage, console, error_console
from orchestrator.cli.search import ray_session

__all__ = ["cmd_cross_eval", "print_cross_eval", "register"]


def _number(value: float, pattern: str = "{:.3f}") -> str:
    return "" if pd.isna(value) else pattern.format(value)


def _short_note(note: str) -> str:
    return "" if note == "the baseline" else note.removeprefix("n/a: ")


def print_cross_eval(storage: str, experiment: str) -> None:
    """The cross-eval genotypes of ``experiment``, ranked by mean validation UA, with the baseline comparison."""
    from orchestrator.leaderboard import BASELINE, connect, cross_eval_summary, search_verdicts, supernet_rankings

    with connect(storage, experiment=experiment) as board:
        frame = cross_eval_summary(board, experiment=experiment)
        verdicts = search_verdicts(board, frame, baseline=BASELINE)
        ranking = supernet_rankings(board).get(experiment)
        damaged = board.scan.damage_report()
    for line in damaged:
        error_console.print(f"[yellow]{escape(line)}[/]")
    if frame.empty:
        console.print("No cross-eval fold has finished yet.")
        return
    table = Table(
        title=f"Cross-eval of {experiment}, ranked by mean validation UA over folds x seeds (test UA reported; "
        "seen: folds whose test speakers its search saw; vs baseline: mean test UA difference / pairs, Wilcoxon p)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for column in ("#", "genotype", "valid", "test", "folds", "seen", "params", "vs base", "p"):
        table.add_column(column, justify="left" if column in ("#", "genotype") else "right", no_wrap=True)
    for row in frame.itertuples():
        table.add_row(
            str(row.rank),
            str(row.genotype_hash) + (" (random)" if getattr(row, "random_control", False) else ""),
            _number(row.mean_valid_ua),
            _number(row.mean_test_ua) + ("" if pd.isna(row.std_test_ua) else f"±{row.std_test_ua:.3f}"),
            f"{row.folds_covered}/{row.n_folds}" + ("" if row.seeds == 1 else f"x{row.seeds}"),
            str(row.seen_folds),
            _number(row.mean_params / 1000, "{:,.0f}k"),
            "" if pd.isna(row.mean_diff_vs_baseline) else f"{row.mean_diff_vs_baseline:+.3f}/{row.baseline_pairs}",
            _number(row.wilcoxon_p, "{:.2f}") if not pd.isna(row.wilcoxon_p) else _short_note(row.wilcoxon_note),
        )
    console.print(table)
    for verdict in verdicts:
        console.print(escape(verdict.line()))
    if ranking is not None:
        console.print(escape(ranking.text()))


def _candidate_label(candidate) -> str:
    """``hash (trial T, fold F)`` for a genotype the search found, ``baseline (trial T's settings)``."""
    if candidate.source_fold is not None:
        return f"{candidate.genotype_hash} (trial {candidate.source_trial_id}, fold {candidate.source_fold})"
    if candidate.source_trial_id is not None:
        return f"{candidate.genotype_hash} (trial {candidate.source_trial_id}'s settings)"
    if candidate.control is not None:
        return f"{candidate.genotype_hash} ({candidate.control} control)"
    return candidate.genotype_hash


def cmd_cross_eval(args: argparse.Namespace) -> int:
    from orchestrator.config import ConfigError
    from orchestrator.cross_eval import check_settings, choose_candidates, random_controls, run_cross_eval
    from orchestrator.experiment import load_experiment

    check_storage(args.storage)
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, but got {args.seeds}.")
    if args.top is not None and args.top < 1:
        raise UserError(f"--top must be >= 1, but got {args.top}.")
    if args.random is not None and args.random < 1:
        raise UserError(f"--random must be >= 1, but got {args.random}.")
    if not args.resume and args.top is None and not args.genotype and not args.random:
        raise UserError("give --top N, --genotype HASH|JSON|baseline and/or --random K: nothing to cross-evaluate.")
    settings = args.settings or "base"  # (on --resume: the interrupted run's, checked against its rows if given)
    try:
        if args.resume and args.settings is not None:
            check_settings(args.storage, experiment=args.experiment, settings=settings)
        controls, loaded = [], None
        if args.random and not args.resume:  # drawn from the experiment's own space: its config first
            loaded = load_experiment(args.storage, args.experiment, needed_by="cross-eval")
            controls = random_controls(loaded[0], count=args.random, seed=args.random_seed)
        candidates = (  # otherwise first: it only reads the leaderboard
            []
            if args.resume
            else choose_candidates(
                args.storage,
                experiment=args.experiment,
                top=args.top,
                genotypes=args.genotype,
                settings=settings,
                controls=controls,
            )
        )
        config, prepared = loaded or load_experiment(args.storage, args.experiment, needed_by="cross-eval")
    except (ConfigError, FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    n_folds = prepared.folds["fold"].nunique()
    if args.resume:
        console.print("Resuming: the genotypes, seeds and settings are those of the interrupted cross-eval.")
    else:
        console.print(
            f"Cross-evaluating {len(candidates)} candidate(s) x {n_folds} folds x {args.seeds} seed(s) under "
            + (
                "the experiment's base settings"
                if settings == "base"
                else "each source trial's settings (the baseline under each of them)"
            )
            + f" (--settings {settings}): "
            + ", ".join(_candidate_label(candidate) for candidate in candidates)
        )
    with ray_session(args.address):
        summary = run_cross_eval(
            config, prepared=prepared, candidates=candidates, seeds=args.seeds, resume=args.resume, console=console
        )
    console.print(
        f"Cross-eval [bold]{summary.name}[/]: {summary.trials} trials ({summary.completed} completed, "
        f"{summary.failed} failed), {summary.folds_reported} folds in {summary.seconds:.0f} s."
    )
    print_cross_eval(summary.storage, config.name)
    console.print(
        f"Next: sernas leaderboard --storage {args.storage} --experiment {config.name} --by cross-eval, or "
        f"sernas report --storage {args.storage} --experiment {config.name} --out report.html"
    )
    return 0 if summary.failed == 0 else 1


def register(commands: Subcommands) -> None:
    """Add ``cross-eval``."""
    parser = commands.add_parser(
        "cross-eval", help="retrain the best genotypes (and the baseline) from scratch on every fold"
    )
    parser.add_argument("--storage", required=True, help="the experiment storage (folder or URI) of sernas search")
    parser.add_argument("--experiment", required=True, help="the experiment whose genotypes to cross-evaluate")
    parser.add_argument("--top", type=int, default=None, help="the N best genotypes by mean validation UA")
    parser.add_argument(
        "--genotype",
        action="append",
        default=[],
        metavar="HASH|JSON|baseline",
        help="also this genotype (a hash the search found, genotype JSON, or baseline); repeatable",
    )
    parser.add_argument("--seeds", type=int, default=1, help="evaluation seeds per genotype and fold (0..K-1)")
    parser.add_argument(
        "--random",
        type=int,
        default=None,
        metavar="K",
        help="also K random-architecture controls: genotypes drawn uniformly from the experiment's own search space "
        "(its primitives and nodes), trained exactly like the other candidates; the cross-eval table then says where "
        "each searched genotype falls among them",
    )
    parser.add_argument(
        "--random-seed",
        type=int,
        default=None,
        help="seed of the random controls' draw (recorded by their genotypes; default: the draw that "
        "search.score_controls scores, search_space.sampling.CONTROL_SEED)",
    )
    parser.add_argument(
        "--settings",
        choices=CROSS_EVAL_SETTINGS,
        default=None,
        help="what the candidates train under: base (the default) = every candidate, searched, given and the "
        "baseline, under the experiment's base settings with the space's fixed values; source = each searched "
        "genotype under the tuned settings of the search trial that found it, and the baseline once under each of "
        "those, so that every genotype is compared with a baseline trained like it (candidates no search found: "
        "base). One experiment's cross-eval keeps to one; --resume keeps the interrupted run's",
    )
    parser.add_argument("--address", default=None, help="Ray address to join (auto, ray://host:10001); default: local")
    parser.add_argument(
        "--resume", action="store_true", help="finish an interrupted cross-eval (its genotypes and seeds)"
    )
    parser.set_defaults(handler=cmd_cross_eval)
