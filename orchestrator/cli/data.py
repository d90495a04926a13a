"""Data preparation commands: ``synth``, ``manifest``, ``features``, ``folds``."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd
from rich.markup import escape

from orchestrator.cli.common import DEFAULT_PRESET, Subcommands, UserError, console, error_console, frame_table
from trainers.corpora.scan import DEFAULT_MIN_DURATION_S  # a constant of a light module (no pandas/torch)

__all__ = ["cmd_features", "cmd_folds", "cmd_manifest", "cmd_synth", "register", "seconds"]


# ---------------------------------------------------------------------------------------- synth
def cmd_synth(args: argparse.Namespace) -> int:
    from trainers.corpora.synthetic import generate_synthetic_corpus

    started = time.perf_counter()
    try:
        summary = generate_synthetic_corpus(
            args.out, speakers=args.speakers, per_speaker=args.per_speaker, seed=args.seed
        )
    except (ValueError, FileExistsError) as error:  # bad sizes; --out holds something else
        raise UserError(f"synth --out {args.out}: {error}") from None
    console.print(
        f"Synthetic corpus (IEMOCAP layout) at [bold]{summary.root}[/]: {summary.n_utterances} utterances, "
        f"{summary.n_speakers} speakers in sessions {', '.join(map(str, summary.sessions))}, "
        f"{summary.seconds_of_audio / 60:.1f} min of audio ({time.perf_counter() - started:.1f} s)."
    )
    console.print("Labels: " + ", ".join(f"{label} {count}" for label, count in sorted(summary.label_counts.items())))
    console.print(f"Next: sernas manifest --dataset iemocap --root {summary.root} --out manifest.parquet")
    return 0


# ------------------------------------------------------------------------------------- manifest
def seconds(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, but got {text!r}")
    return value


def cmd_manifest(args: argparse.Namespace) -> int:
    from trainers.corpora.scan import CorpusError
    from trainers.manifest import build_manifest, counts_by, rejects_path, write_manifest

    started = time.perf_counter()
    try:
        result = build_manifest(dataset=args.dataset, root=args.root, min_duration_s=args.min_duration)
        out = write_manifest(result, args.out, skip_bad=args.skip_bad)
    except CorpusError as error:
        raise UserError(str(error)) from None
    frame = result.frame
    console.print(
        frame_table(
            counts_by(frame, rows="session", columns="label"),
            title=f"{result.dataset}: utterances per session x label",
            index_name="session",
        )
    )
    console.print(
        f"Wrote {len(frame)} utterances from {frame['speaker'].nunique()} speakers "
        f"({frame['duration_s'].sum() / 3600:.2f} h) to [bold]{out}[/] in {time.perf_counter() - started:.1f} s."
    )
    if result.problems:
        console.print(f"[yellow]Skipped {len(result.problems)} bad file(s); see {rejects_path(out)}[/]")
    return 0


# ------------------------------------------------------------------------------------- features
def cmd_features(args: argparse.Namespace) -> int:
    from orchestrator.terminal import progress_bars
    from trainers.features import extract_features, get_preset
    from trainers.manifest import read_manifest

    try:
        manifest = read_manifest(args.manifest)
        preset = get_preset(args.preset)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, but got {args.workers}.")
    with progress_bars(enabled=not args.quiet) as progress:
        summary = extract_features(
            manifest, preset=preset, cache_dir=args.cache, workers=args.workers, progress=progress
        )
    total = summary.computed + summary.reused
    rate = summary.computed / summary.seconds if summary.seconds > 0 else float("inf")
    console.print(
        f"Features [bold]{preset.name}[/] {tuple(preset.output_shape)} for {total} utterances in "
        f"{summary.seconds:.1f} s: {summary.computed} computed ({rate:.1f} utt/s), {summary.reused} from cache "
        f"at {summary.cache_dir}."
    )
    if summary.failed:
        for failure in summary.failed:
            error_console.print(
                f"[red]{escape(str(failure.path))}: {escape(failure.reason)}[/] (utt {escape(failure.utt_id)})"
            )
        raise UserError(f"{len(summary.failed)} file(s) could not be turned into features (listed above).")
    return 0


# ---------------------------------------------------------------------------------------- folds
def cmd_folds(args: argparse.Namespace) -> int:
    from trainers.folds import FoldProtocol, fold_counts, make_folds, parse_merges, write_folds
    from trainers.manifest import read_manifest

    try:
        manifest = read_manifest(args.manifest)
        classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None
        protocol = FoldProtocol(
            scheme=args.scheme,
            classes=classes,
            merges=parse_merges(args.merge),
            improvised_only=args.improvised_only,
            valid_speakers=args.valid_speakers,
            arch_share=args.arch_share,
            seed=args.seed,
        )
        table = make_folds(manifest, protocol=protocol)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    out = write_folds(table, args.out, protocol=protocol, manifest_path=args.manifest)
    console.print(
        frame_table(fold_counts(table), title=f"{protocol.scheme} folds: utterances per split", index_name="fold")
    )
    per_label = pd.crosstab([table["fold"], table["split"]], table["label"])
    per_label.index = [f"{fold} {split}" for fold, split in per_label.index]
    console.print(frame_table(per_label, title="utterances per fold/split x label", index_name="fold split"))
    console.print(f"Wrote {table['fold'].nunique()} folds to [bold]{out}[/].")
    return 0


# ------------------------------------------------------------------------------------- commands
def register(commands: Subcommands) -> None:
    """Add ``synth``, ``manifest``, ``features`` and ``folds``."""
    from trainers.folds import FoldProtocol  # its defaults are the flags' defaults

    synth = commands.add_parser("synth", help="write the built-in synthetic corpus (IEMOCAP layout)")
    synth.add_argument("--out", required=True, type=Path, help="corpus folder to create")
    synth.add_argument("--speakers", type=int, default=10, help="even number 2..10 (two per session)")
    synth.add_argument("--per-speaker", type=int, default=60, help="utterances per speaker")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=cmd_synth)

    manifest = commands.add_parser("manifest", help="scan a corpus into a Parquet manifest")
    manifest.add_argument("--dataset", required=True, choices=["iemocap", "msp-improv", "csv"])
    manifest.add_argument(
        "--root", required=True, type=Path, help="corpus root (for csv: the CSV file with path,label,speaker)"
    )
    manifest.add_argument("--out", required=True, type=Path, help="manifest .parquet to write")
    manifest.add_argument(
        "--skip-bad", action="store_true", help="write the manifest without bad files and list them in OUT.rejects.csv"
    )
    manifest.add_argument(
        "--min-duration",
        type=seconds,
        default=DEFAULT_MIN_DURATION_S,
        metavar="SECONDS",
        help="clips shorter than this are bad input (default %(default)s; 0 keeps every clip)",
    )
    manifest.set_defaults(handler=cmd_manifest)

    features = commands.add_parser("features", help="compute and cache features for a manifest")
    features.add_argument("--manifest", required=True, type=Path)
    features.add_argument("--preset", default=DEFAULT_PRESET)
    features.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="feature cache folder (default: $SERNAS_CACHE_DIR or ~/.cache/sernas/features)",
    )
    features.add_argument("--workers", type=int, default=1, help="processes computing features")
    features.add_argument("--quiet", action="store_true", help="no progress bar")
    features.set_defaults(handler=cmd_features)

    folds = commands.add_parser("folds", help="make speaker-independent folds from a manifest")
    folds.add_argument("--manifest", required=True, type=Path)
    folds.add_argument("--scheme", required=True, choices=["loso", "speaker-pairs"])
    folds.add_argument("--classes", default=None, help="comma-separated classes to keep, e.g. neu,hap,sad,ang")
    folds.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="SRC=DST",
        help="relabel SRC as DST before selecting classes (repeatable), e.g. exc=hap",
    )
    folds.add_argument("--improvised-only", action="store_true")
    folds.add_argument(
        "--valid-speakers",
        type=int,
        default=FoldProtocol.valid_speakers,
        help="validation speakers per fold, from its non-test speakers (default %(default)s)",
    )
    folds.add_argument(
        "--arch-share",
        type=float,
        default=FoldProtocol.arch_share,
        help="share of the training speakers whose utterances train the alphas in the search (default %(default)s)",
    )
    folds.add_argument("--seed", type=int, default=FoldProtocol.seed, help="seed of the speaker roles")
    folds.add_argument("--out", required=True, type=Path)
    folds.set_defaults(handler=cmd_folds)
