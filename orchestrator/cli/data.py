"""Data preparation commands: ``synth``, ``manifest``, ``features``, ``folds``."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd
from rich.markup import escape

from orchestrator.cli.common import (
    DEFAULT_PRESET,
    Subcommands,
    UserError,
    add_device_option,
    add_weights_option,
    console,
    error_console,
    frame_table,
)
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
        result = build_manifest(
            dataset=args.dataset,
            root=args.root,
            min_duration_s=args.min_duration,
            audio_root=args.audio_root,
            speakers=args.speakers,
            corpus=args.corpus,
        )
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
    if "speaker_source" in frame.columns:
        _print_speaker_sources(frame)
    console.print(
        f"Wrote {len(frame)} utterances from {frame['speaker'].nunique()} speakers "
        f"({frame['duration_s'].sum() / 3600:.2f} h) to [bold]{out}[/] in {time.perf_counter() - started:.1f} s."
    )
    if result.problems:
        console.print(f"[yellow]Skipped {len(result.problems)} bad file(s); see {rejects_path(out)}[/]")
    return 0


def _print_speaker_sources(frame: pd.DataFrame) -> None:
    """Where the speakers of imported split files came from, and where the files' own field was overruled."""
    sources = frame["speaker_source"].value_counts()
    console.print("Speakers from: " + ", ".join(f"{source} {count}" for source, count in sources.items()))
    if "source_speaker" in frame.columns:
        given = frame["source_speaker"].notna()
        differ = given & (frame["source_speaker"].astype("string") != frame["speaker"].astype("string"))
        if differ.any():
            first = frame[differ].iloc[0]
            console.print(
                f"[yellow]The files' speaker field differs from the speaker used for {int(differ.sum())} utterance(s) "
                f"(e.g. {escape(str(first['utt_id']))}: {escape(str(first['source_speaker']))} in the files, "
                f"{escape(str(first['speaker']))} by the {escape(str(first['speaker_source']))}); kept as "
                "source_speaker.[/]"
            )
    if "unknown" in sources:
        console.print(
            f"[yellow]{sources['unknown']} utterance(s) have no known speaker: each is its own speaker "
            "(unknown:<utt_id>) and folds holding them are flagged unknown; give --speakers map.csv.[/]"
        )


# ------------------------------------------------------------------------------------- features
def cmd_features(args: argparse.Namespace) -> int:
    from orchestrator.terminal import progress_bars
    from trainers.device import resolve_device
    from trainers.features import WeightsError, extract_features, get_preset, resolve_preset
    from trainers.manifest import read_manifest

    try:
        manifest = read_manifest(args.manifest)
        preset = resolve_preset(get_preset(args.preset), weights=args.weights)  # WeightsError before any write
        device = resolve_device(args.device)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, but got {args.workers}.")
    try:
        with progress_bars(enabled=not args.quiet) as progress:
            summary = extract_features(
                manifest, preset=preset, cache_dir=args.cache, workers=args.workers, progress=progress, device=device
            )
    except WeightsError as error:  # loaded (and checked) before anything is written
        raise UserError(str(error)) from None
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
    """Make (``--scheme``), import (``--from``) or export (``--export``) a fold table."""
    modes = [
        flag for flag, value in (("--scheme", args.scheme), ("--from", args.source), ("--export", args.export)) if value
    ]
    if len(modes) != 1:
        got = f"; got {' and '.join(modes)}" if modes else ""
        raise UserError(
            "give one of --scheme (make folds), --from FORMAT --root DIR (import split files) or --export FORMAT "
            f"--folds TABLE (write split files){got}."
        )
    if args.export:
        return _export_folds(args)
    if (args.root is None) != (args.source is None):
        raise UserError("--root names the folder of the split files that --from reads; give both or neither.")
    from trainers.folds import FoldProtocol, fold_counts, make_folds, parse_merges, write_folds
    from trainers.manifest import read_manifest

    try:
        manifest = read_manifest(args.manifest)
        classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None
        protocol = FoldProtocol(
            scheme=args.scheme or "given",
            classes=classes,
            merges=parse_merges(args.merge),
            improvised_only=args.improvised_only,
            valid_speakers=args.valid_speakers,
            arch_share=args.arch_share,
            seed=args.seed,
        )
        source = None
        if args.source:
            from trainers.given_folds import given_folds
            from trainers.imports import read_given_splits

            splits = read_given_splits(args.source, args.root, corpus=args.corpus)
            _hint_label_map_merges(splits.labels, protocol.merges)
            table = given_folds(manifest, splits, protocol=protocol)
            source = {"format": args.source, "root": str(splits.root)}
        else:
            table = make_folds(manifest, protocol=protocol)
    except (FileNotFoundError, ValueError) as error:  # (a CorpusError is a ValueError: its problems are listed)
        raise UserError(str(error)) from None
    out = write_folds(table, args.out, protocol=protocol, manifest_path=args.manifest, source=source)
    title = f"{args.source} folds" if args.source else f"{protocol.scheme} folds"
    console.print(frame_table(fold_counts(table), title=f"{title}: utterances per split", index_name="fold"))
    per_label = pd.crosstab([table["fold"], table["split"]], table["label"])
    per_label.index = [f"{fold} {split}" for fold, split in per_label.index]
    console.print(frame_table(per_label, title="utterances per fold/split x label", index_name="fold split"))
    flagged = sorted(int(f) for f in table.loc[table["speaker_check"] != "independent", "fold"].unique())
    if flagged:
        console.print(
            f"[yellow]Fold(s) {', '.join(map(str, flagged))} are not speaker-independent (column speaker_check): "
            "sernas search refuses them unless folds.accept_speaker_overlap is true.[/]"
        )
    console.print(f"Wrote {table['fold'].nunique()} folds to [bold]{out}[/].")
    return 0


def _hint_label_map_merges(labels: dict | None, merges: dict[str, str]) -> None:
    """Say which merges the files' label mapping implies that the protocol does not make (EmoBox's
    IEMOCAP label_map maps exc and hap to Happy: --merge exc=hap)."""
    from trainers.corpora.given_splits import implied_merges

    missing = {
        source: target for source, target in implied_merges(labels or {}).items() if merges.get(source) != target
    }
    if missing:
        flags = " ".join(f"--merge {source}={target}" for source, target in missing.items())
        console.print(
            f"[yellow]The files' label mapping merges labels that this protocol keeps apart; to follow it: {flags}[/]"
        )


def _export_folds(args: argparse.Namespace) -> int:
    from trainers.fold_export import export_folds
    from trainers.folds import read_folds
    from trainers.manifest import read_manifest

    if args.folds is None:
        raise UserError("--export writes the folds of a fold table: give it with --folds TABLE.")
    try:
        manifest = read_manifest(args.manifest)
        table, metadata = read_folds(args.folds)
        written = export_folds(
            table,
            manifest,
            format=args.export,
            out_dir=args.out,
            audio_root=args.audio_root,
            corpus=args.corpus,
            classes=metadata.get("classes"),
        )
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    console.print(
        f"Wrote {table['fold'].nunique()} folds of {args.folds} as {args.export} split files ({len(written)} files) "
        f"to [bold]{args.out}[/]."
    )
    return 0


# ------------------------------------------------------------------------------------- commands
def register(commands: Subcommands) -> None:
    """Add ``synth``, ``manifest``, ``features`` and ``folds``."""
    from trainers.fold_export import EXPORT_FORMATS
    from trainers.folds import MADE_SCHEMES, FoldProtocol  # its defaults are the flags' defaults
    from trainers.imports import SPLIT_FORMATS

    synth = commands.add_parser("synth", help="write the built-in synthetic corpus (IEMOCAP layout)")
    synth.add_argument("--out", required=True, type=Path, help="corpus folder to create")
    synth.add_argument("--speakers", type=int, default=10, help="even number 2..10 (two per session)")
    synth.add_argument("--per-speaker", type=int, default=60, help="utterances per speaker")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=cmd_synth)

    manifest = commands.add_parser("manifest", help="scan a corpus (or import split files) into a Parquet manifest")
    manifest.add_argument(
        "--dataset",
        required=True,
        choices=["iemocap", "msp-improv", "csv", *SPLIT_FORMATS],
        help="a corpus reader, or split files to import: emobox, s3prl, speechbrain (docs/data.md)",
    )
    manifest.add_argument(
        "--root",
        required=True,
        type=Path,
        help="corpus root (csv: the CSV file with path,label,speaker; emobox: data/<corpus>; s3prl: meta_data; "
        "speechbrain: the folder of train/valid/test.json or of fold folders)",
    )
    manifest.add_argument(
        "--audio-root", type=Path, default=None, help="split files: the folder their wav paths are relative to"
    )
    manifest.add_argument(
        "--speakers",
        type=Path,
        default=None,
        metavar="MAP.csv",
        help="split files: CSV utt_id (or key),speaker[,gender,session] naming each utterance's speaker",
    )
    manifest.add_argument(
        "--corpus",
        default=None,
        help="split files: the corpus they describe (picks its speaker naming rule; default: EmoBox's dataset "
        "field, iemocap for s3prl and speechbrain)",
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
    features.add_argument(
        "--workers", type=int, default=1, help="processes computing features (SSL presets: CPU threads)"
    )
    add_weights_option(features)
    add_device_option(features)  # where an SSL preset's encoder runs (spectral presets: the CPU)
    features.add_argument("--quiet", action="store_true", help="no progress bar")
    features.set_defaults(handler=cmd_features)

    folds = commands.add_parser(
        "folds", help="make speaker-independent folds from a manifest, import split files' folds, or export folds"
    )
    folds.add_argument("--manifest", required=True, type=Path)
    folds.add_argument("--scheme", default=None, choices=list(MADE_SCHEMES), help="make folds by this scheme")
    folds.add_argument(
        "--from",
        dest="source",
        default=None,
        choices=list(SPLIT_FORMATS),
        help="import the folds of these split files (with --root; the manifest made from them)",
    )
    folds.add_argument("--root", type=Path, default=None, help="with --from: the split files' folder")
    folds.add_argument("--corpus", default=None, help="with --from/--export: the corpus name (see sernas manifest)")
    folds.add_argument(
        "--export", default=None, choices=list(EXPORT_FORMATS), help="write the fold table --folds as these split files"
    )
    folds.add_argument("--folds", type=Path, default=None, help="with --export: the fold table to write")
    folds.add_argument(
        "--audio-root", type=Path, default=None, help="with --export: write wav paths relative to this folder"
    )
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
    folds.add_argument("--out", required=True, type=Path, help="fold table to write (--export: the folder)")
    folds.set_defaults(handler=cmd_folds)
