"""The ``sernas`` command line: thin argument parsing over the library, readable output.

Each subcommand calls one library function and prints a short rich table; user mistakes (bad
paths, bad corpus files, bad options) end with a message naming the thing and exit code 2,
never a traceback. Heavy imports happen inside the subcommands so ``sernas --help`` is instant.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainers.corpora.scan import DEFAULT_MIN_DURATION_S  # a constant of a light module (no pandas/torch)

EXIT_USER_ERROR = 2
console = Console(highlight=False, soft_wrap=True)  # never break paths across lines
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


class UserError(Exception):
    """A mistake in the user's input; printed without a traceback."""


def frame_table(frame: pd.DataFrame, *, title: str, index_name: str | None = None) -> Table:
    """Render a small DataFrame (e.g. counts per session x label) as a rich table."""
    table = Table(title=title, title_justify="left")
    table.add_column(index_name or str(frame.index.name or ""), style="bold")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, row in frame.iterrows():
        table.add_row(escape(str(index)), *["" if pd.isna(value) else escape(str(value)) for value in row])
    return table


# ---------------------------------------------------------------------------------------- synth
def cmd_synth(args: argparse.Namespace) -> int:
    from trainers.corpora.synthetic import generate_synthetic_corpus

    started = time.perf_counter()
    summary = generate_synthetic_corpus(args.out, speakers=args.speakers, per_speaker=args.per_speaker,
                                        seed=args.seed)
    console.print(f"Synthetic corpus (IEMOCAP layout) at [bold]{summary.root}[/]: {summary.n_utterances} utterances, "
                  f"{summary.n_speakers} speakers in sessions {', '.join(map(str, summary.sessions))}, "
                  f"{summary.seconds_of_audio / 60:.1f} min of audio ({time.perf_counter() - started:.1f} s).")
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
    console.print(frame_table(counts_by(frame, rows="session", columns="label"),
                              title=f"{result.dataset}: utterances per session x label", index_name="session"))
    console.print(f"Wrote {len(frame)} utterances from {frame['speaker'].nunique()} speakers "
                  f"({frame['duration_s'].sum() / 3600:.2f} h) to [bold]{out}[/] in {time.perf_counter() - started:.1f} s.")
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
        summary = extract_features(manifest, preset=preset, cache_dir=args.cache, workers=args.workers,
                                   progress=progress)
    total = summary.computed + summary.reused
    rate = summary.computed / summary.seconds if summary.seconds > 0 else float("inf")
    console.print(f"Features [bold]{preset.name}[/] {tuple(preset.output_shape)} for {total} utterances in "
                  f"{summary.seconds:.1f} s: {summary.computed} computed ({rate:.1f} utt/s), {summary.reused} from cache "
                  f"at {summary.cache_dir}.")
    if summary.failed:
        for failure in summary.failed:
            error_console.print(f"[red]{escape(str(failure.path))}: {escape(failure.reason)}[/] (utt {escape(failure.utt_id)})")
        raise UserError(f"{len(summary.failed)} file(s) could not be turned into features (listed above).")
    return 0


# ---------------------------------------------------------------------------------------- folds
def cmd_folds(args: argparse.Namespace) -> int:
    from trainers.folds import FoldProtocol, fold_counts, make_folds, parse_merges, write_folds
    from trainers.manifest import read_manifest

    try:
        manifest = read_manifest(args.manifest)
        classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None
        protocol = FoldProtocol(scheme=args.scheme, classes=classes, merges=parse_merges(args.merge),
                                improvised_only=args.improvised_only, valid_speakers=args.valid_speakers,
                                seed=args.seed)
        table = make_folds(manifest, protocol=protocol)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    out = write_folds(table, args.out, protocol=protocol, manifest_path=args.manifest)
    console.print(frame_table(fold_counts(table), title=f"{protocol.scheme} folds: utterances per split",
                              index_name="fold"))
    per_label = pd.crosstab([table["fold"], table["split"]], table["label"])
    per_label.index = [f"{fold} {split}" for fold, split in per_label.index]
    console.print(frame_table(per_label, title="utterances per fold/split x label", index_name="fold split"))
    console.print(f"Wrote {table['fold'].nunique()} folds to [bold]{out}[/].")
    return 0


# ------------------------------------------------------------------------------------- run-fold
def read_architecture(value: str) -> str:
    """``baseline``, genotype JSON, or a file holding genotype JSON or a result.json."""
    import json

    from search_space import MODEL_NAMES, Genotype

    text = value.strip()
    if text in MODEL_NAMES:
        return text
    source = "--genotype"
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"--genotype {value!r} is neither a model name ({', '.join(MODEL_NAMES)}), "
                            "genotype JSON, nor an existing file.")
        text = path.read_text()
        source = f"--genotype file {path}"
        try:
            stored = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"--genotype file {path} is not JSON ({error}).") from None
        if isinstance(stored, dict) and "architecture" in stored:  # a result.json of an earlier run
            text = stored["architecture"]
            if text in MODEL_NAMES:
                return text
    try:
        return Genotype.from_json(text).to_json()
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None


def cmd_run_fold(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from orchestrator.config import validation_message
    from trainers.checkpoint import CheckpointError
    from trainers.device import resolve_device
    from trainers.features import FeaturesNotFoundError
    from trainers.fold_data import load_fold_data
    from trainers.folds import read_folds
    from trainers.manifest import read_manifest
    from trainers.run_fold import RESULT_NAME, run_fold
    from trainers.settings import EvalSettings, ModelShape, SearchSettings

    import torch

    architecture = read_architecture(args.genotype) if args.genotype else None
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, but got {args.threads}.")
    torch.set_num_threads(args.threads)
    try:
        shape = ModelShape(layers=args.layers, nodes=args.nodes, init_channels=args.init_channels,
                           lstm_hidden=args.lstm_hidden)
        common = {"batch_size": args.batch_size, "seed": args.seed, "shape": shape}
        search = None if architecture else SearchSettings(epochs=args.search_epochs, order=args.order,
                                                          pc_k=args.pc_k, **common)
        evaluation = EvalSettings(epochs=args.eval_epochs, **common)
        device = resolve_device(args.device)
        manifest = read_manifest(args.manifest)
        folds, protocol = read_folds(args.folds)
        data = load_fold_data(manifest=manifest, folds=folds, fold=args.fold, preset=args.preset,
                              cache_dir=args.cache, classes=protocol.get("classes"), manifest_path=args.manifest)
    except ValidationError as error:
        raise UserError(validation_message(error)) from None
    except (FileNotFoundError, ValueError, FeaturesNotFoundError) as error:
        raise UserError(str(error)) from None

    console.print(f"fold {data.fold}: {len(data.train)} train / {len(data.valid)} valid / {len(data.test)} test "
                  f"utterances, classes {', '.join(data.classes)}, input {tuple(data.input_shape)}, device {device}")

    def report(step: int, metrics: dict) -> None:
        phase = metrics["phase"]
        total = search.epochs if phase == "search" else evaluation.epochs
        extra = f" genotype {metrics['genotype_hash']}" if phase == "search" else f" best epoch {metrics['best_epoch']}"
        console.print(f"  {phase:6} epoch {metrics['epoch']:>3}/{total}  loss {metrics['train_loss']:.3f}  "
                      f"valid UA {metrics['valid_ua']:.3f}{extra}  ({metrics['seconds']:.1f} s)")

    try:
        result = run_fold(data, evaluation=evaluation, search=search, architecture=architecture, device=device,
                          work_dir=args.out, reporter=report)
    except CheckpointError as error:  # a damaged checkpoint, or one of another run, in --out
        raise UserError(str(error)) from None
    name = result.genotype_hash or result.architecture
    console.print(f"fold {result.fold} [bold]{escape(name)}[/]: test UA {result.ua:.3f}  WA {result.wa:.3f}  "
                  f"macro-F1 {result.macro_f1:.3f} on {result.test_utterances} utterances; epoch {result.best_epoch} "
                  f"chosen on valid (UA {result.valid_ua:.3f}); {result.params:,} parameters; search "
                  f"{result.search_seconds:.0f} s, evaluation {result.eval_seconds:.0f} s -> {Path(args.out) / RESULT_NAME}")
    return 0


# ------------------------------------------------------------------------------- search / demo
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def start_ray(address: str | None, *, num_cpus: int | None = None) -> tuple[str | None, bool]:
    """Join ``address`` or start a local Ray (dashboard on loopback).

    Returns the dashboard URL and whether this call started Ray (so only then is it stopped);
    a Ray already initialised in this process (a notebook, a test) is used as it is.
    """
    import os

    # A compact view: our own progress lines instead of Tune's tables, worker logs and
    # checkpoint chatter (trial errors still reach the console through their error files).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    if ray.is_initialized():
        return None, False
    if address:
        context = ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    else:
        context = ray.init(num_cpus=num_cpus, dashboard_host="127.0.0.1", logging_level="WARNING",
                           log_to_driver=False)
    url = getattr(context, "dashboard_url", None)
    return (f"http://{url}" if url and not url.startswith("http") else url), True


def print_leaderboard_top(storage: str, experiment: str, *, n: int = 10) -> None:
    """The best trials of the experiment: mean test UA over their folds, complete ones first."""
    import json

    from orchestrator.leaderboard import connect

    with connect(storage, experiment=experiment) as board:
        top = board.summary("trial", top=n)
        damaged = board.scan.damage_report()
    for line in damaged:
        error_console.print(f"[yellow]{escape(line)}[/]")
    if top.empty:
        console.print("The leaderboard has no finished folds yet.")
        return
    table = Table(title=f"Best trials of {experiment} (mean over folds; test speakers unseen in training and selection)",
                  title_justify="left")
    for column in ("rank", "trial", "UA", "WA", "F1", "folds", "status", "params"):
        table.add_column(column, justify="right" if column in ("UA", "WA", "F1", "params") else "left")
    configs = []
    for row in top.itertuples():
        spread = "" if pd.isna(row.std_ua) else f" ± {row.std_ua:.3f}"
        table.add_row(str(row.rank), row.trial_id, f"{row.mean_ua:.3f}{spread}", f"{row.mean_wa:.3f}",
                      f"{row.mean_macro_f1:.3f}", f"{row.folds_covered}/{row.n_folds}", str(row.trial_status),
                      f"{row.mean_params:,.0f}")
        configs.append(f"  {row.trial_id}: " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in json.loads(row.params_json or "{}").items()))
    console.print(table)
    console.print("Configurations:\n" + escape("\n".join(configs)))


def run_search_command(config_path: Path, *, overrides: Sequence[str], storage: str | None, address: str | None,
                       resume: bool) -> int:
    from orchestrator.config import ConfigError, load_config
    from orchestrator.experiment import prepare_data, run_experiment
    from trainers.corpora.scan import CorpusError
    from trainers.features import FeaturesNotFoundError

    overrides = list(overrides) + ([f"tune.storage={storage}"] if storage else [])
    try:
        config = load_config(config_path, overrides=overrides)
        started = time.perf_counter()
        prepared = prepare_data(config)
    except (ConfigError, CorpusError, FeaturesNotFoundError, FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    console.print(f"Prepared {len(prepared.manifest)} utterances, {prepared.folds['fold'].nunique()} folds, classes "
                  f"{', '.join(prepared.classes)} in {time.perf_counter() - started:.1f} s (data in {prepared.data_dir}).")
    dashboard, started_ray = start_ray(address, num_cpus=None)
    if dashboard:
        console.print(f"Ray dashboard: {dashboard}")
    try:
        summary = run_experiment(config, prepared=prepared, resume=resume, console=console)
    except ValueError as error:
        raise UserError(str(error)) from None
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    console.print(f"Experiment [bold]{summary.name}[/]: {summary.trials} trials ({summary.completed} completed, "
                  f"{summary.pruned} pruned, {summary.failed} failed), {summary.epochs_reported} epochs and "
                  f"{summary.folds_reported} folds reported in {summary.seconds:.0f} s.")
    print_leaderboard_top(summary.storage, summary.name)
    console.print(f"Leaderboard part files: {summary.storage}/leaderboard/{summary.name}/. Next: "
                  f"sernas leaderboard --storage {summary.storage} --experiment {summary.name} --by trial, or "
                  f"sernas report --storage {summary.storage} --experiment {summary.name} --out report.html")
    return 0 if summary.failed == 0 else 1


def cmd_search(args: argparse.Namespace) -> int:
    return run_search_command(args.config, overrides=args.set, storage=args.storage, address=args.address,
                              resume=args.resume)


def cmd_demo(args: argparse.Namespace) -> int:
    overrides = [f"data.root={args.corpus}"] if args.corpus else []
    return run_search_command(DEMO_CONFIG, overrides=overrides, storage=args.storage, address=None,
                              resume=False)


# ---------------------------------------------------------------------------------- leaderboard
# What the table shows of a summary (csv/json/parquet carry every column).
SUMMARY_TABLE_COLUMNS = ("rank", "experiment", "genotype_hash", "trial_id", "config_json", "mean_ua", "std_ua",
                         "mean_wa", "mean_macro_f1", "folds_covered", "n_folds", "complete", "seeds", "mean_params")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import duckdb

    from orchestrator.leaderboard import AUTO_COMPACT_FILES, connect

    if args.top is not None and args.top < 1:
        raise UserError(f"--top must be >= 1, but got {args.top}.")
    if args.format == "parquet" and args.out is None:
        raise UserError("--format parquet needs --out FILE.parquet.")
    storage = Path(args.storage)
    if "://" not in args.storage and not storage.is_dir():
        raise UserError(f"storage {storage} does not exist (give the folder passed to sernas search --storage).")
    with connect(args.storage, experiment=args.experiment, compact_at=0 if args.compact else AUTO_COMPACT_FILES) as board:
        for line in board.scan.damage_report():
            error_console.print(f"[yellow]{escape(line)}[/]")
        try:
            frame = board.sql(args.sql) if args.sql else board.summary(args.by, where=args.where, top=args.top)
        except duckdb.Error as error:
            raise UserError(f"query failed: {str(error).splitlines()[0]}") from None
    if args.format == "table":
        if frame.empty:
            console.print("No rows.")
        else:
            shown = frame if args.sql else frame[[c for c in SUMMARY_TABLE_COLUMNS if c in frame.columns]]
            shown = shown.copy()
            for column in shown.select_dtypes("float").columns:
                pattern = "{:,.0f}" if column == "mean_params" else "{:.4g}"
                shown[column] = shown[column].map(lambda v, p=pattern: "" if pd.isna(v) else p.format(v))
            title = "query" if args.sql else f"leaderboard by {args.by}"
            first = shown.columns[0]
            console.print(frame_table(shown.set_index(first), title=title, index_name=str(first)))
    elif args.format == "csv":
        text = frame.to_csv(index=False)
        Path(args.out).write_text(text) if args.out else sys.stdout.write(text)
    elif args.format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=2) + "\n"
        Path(args.out).write_text(text) if args.out else sys.stdout.write(text)
    else:
        from trainers.atomic_io import write_parquet_atomically

        write_parquet_atomically(frame, args.out)
        console.print(f"Wrote {len(frame)} rows to {args.out}.")
    return 0


# ---------------------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.report import write_report

    if "://" not in args.storage and not Path(args.storage).is_dir():
        raise UserError(f"storage {args.storage} does not exist (give the folder passed to sernas search --storage).")
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
    try:
        result = export_model(args.storage, out=args.out, device=resolve_device(args.device),
                              experiment=args.experiment, rank=args.rank, genotype=args.genotype)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    console.print(f"Exported genotype [bold]{escape(result.genotype_hash)}[/] of {result.experiment}/{result.trial_id}: "
                  f"retrained from scratch on the {result.train_utterances} train+validation utterances of fold "
                  f"{result.fold} for {result.epochs} epochs (the epoch chosen on validation; that fold's test UA "
                  f"was {result.fold_test_ua:.3f}) -> {result.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from trainers.device import resolve_device
    from trainers.model_bundle import load_bundle, predict_files

    device = resolve_device(args.device)
    try:
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


# ----------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sernas", description="DARTS and hyperparameter search for speech emotion recognition.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write the built-in synthetic corpus (IEMOCAP layout)")
    synth.add_argument("--out", required=True, type=Path, help="corpus folder to create")
    synth.add_argument("--speakers", type=int, default=10, help="even number 2..10 (two per session)")
    synth.add_argument("--per-speaker", type=int, default=60, help="utterances per speaker")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=cmd_synth)

    manifest = commands.add_parser("manifest", help="scan a corpus into a Parquet manifest")
    manifest.add_argument("--dataset", required=True, choices=["iemocap", "msp-improv", "csv"])
    manifest.add_argument("--root", required=True, type=Path,
                          help="corpus root (for csv: the CSV file with path,label,speaker)")
    manifest.add_argument("--out", required=True, type=Path, help="manifest .parquet to write")
    manifest.add_argument("--skip-bad", action="store_true",
                          help="write the manifest without bad files and list them in OUT.rejects.csv")
    manifest.add_argument("--min-duration", type=seconds, default=DEFAULT_MIN_DURATION_S, metavar="SECONDS",
                          help="clips shorter than this are bad input (default %(default)s; 0 keeps every clip)")
    manifest.set_defaults(run=cmd_manifest)

    features = commands.add_parser("features", help="compute and cache features for a manifest")
    features.add_argument("--manifest", required=True, type=Path)
    features.add_argument("--preset", default="paper-mfcc")
    features.add_argument("--cache", type=Path, default=None,
                          help="feature cache folder (default: $SERNAS_CACHE_DIR or ~/.cache/sernas/features)")
    features.add_argument("--workers", type=int, default=1, help="processes computing features")
    features.add_argument("--quiet", action="store_true", help="no progress bar")
    features.set_defaults(run=cmd_features)

    folds = commands.add_parser("folds", help="make speaker-independent folds from a manifest")
    folds.add_argument("--manifest", required=True, type=Path)
    folds.add_argument("--scheme", required=True, choices=["loso", "speaker-pairs"])
    folds.add_argument("--classes", default=None, help="comma-separated classes to keep, e.g. neu,hap,sad,ang")
    folds.add_argument("--merge", action="append", default=[], metavar="SRC=DST",
                       help="relabel SRC as DST before selecting classes (repeatable), e.g. exc=hap")
    folds.add_argument("--improvised-only", action="store_true")
    folds.add_argument("--valid-speakers", type=int, default=1, help="validation speakers per fold (from training side)")
    folds.add_argument("--seed", type=int, default=0, help="seed of the validation speaker choice")
    folds.add_argument("--out", required=True, type=Path)
    folds.set_defaults(run=cmd_folds)

    fold = commands.add_parser("run-fold", help="search and evaluate one fold without Ray")
    fold.add_argument("--manifest", required=True, type=Path)
    fold.add_argument("--folds", required=True, type=Path)
    fold.add_argument("--fold", required=True, type=int)
    fold.add_argument("--genotype", default=None,
                      help="skip the search: 'baseline', genotype JSON, or a file with one (or a result.json)")
    fold.add_argument("--search-epochs", type=int, default=50)
    fold.add_argument("--eval-epochs", type=int, default=50)
    fold.add_argument("--layers", type=int, default=4)
    fold.add_argument("--nodes", type=int, default=4)
    fold.add_argument("--init-channels", type=int, default=8)
    fold.add_argument("--lstm-hidden", type=int, default=128)
    fold.add_argument("--batch-size", type=int, default=32)
    fold.add_argument("--order", choices=["first", "second"], default="first", help="DARTS approximation")
    fold.add_argument("--pc-k", type=int, default=1, help="PC-DARTS: search 1/K of the channels")
    fold.add_argument("--seed", type=int, default=0)
    fold.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    fold.add_argument("--threads", type=int, default=1,
                      help="torch CPU threads (1 is fastest for small models and on shared machines)")
    fold.add_argument("--preset", default="paper-mfcc", help="feature preset the features were computed with")
    fold.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    fold.add_argument("--out", required=True, type=Path, help="work folder: checkpoints and result.json")
    fold.set_defaults(run=cmd_run_fold)

    search = commands.add_parser("search", help="run an experiment of many DARTS searches with Ray Tune")
    search.add_argument("--config", required=True, type=Path, help="experiment YAML (see configs/)")
    search.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set tune.num_samples=8 (repeatable)")
    search.add_argument("--storage", default=None, help="results path or URI (overrides tune.storage)")
    search.add_argument("--address", default=None, help="Ray address to join (auto, ray://host:10001); default: local")
    search.add_argument("--resume", action="store_true", help="finish an interrupted experiment (Tuner.restore)")
    search.set_defaults(run=cmd_search)

    demo = commands.add_parser("demo", help="the whole pipeline on the built-in synthetic corpus, in minutes")
    demo.add_argument("--storage", default=None, help="results folder (default runs/demo/storage)")
    demo.add_argument("--corpus", default=None, help="synthetic corpus folder (made if absent)")
    demo.set_defaults(run=cmd_demo)

    board = commands.add_parser("leaderboard", help="rank genotypes, trials or configs over folds (DuckDB)")
    board.add_argument("--storage", required=True, help="the experiment storage (folder or URI)")
    board.add_argument("--experiment", default=None, help="only this experiment")
    board.add_argument("--by", choices=["genotype", "trial", "config"], default="genotype")
    board.add_argument("--top", type=int, default=None, help="best N per experiment")
    board.add_argument("--where", default=None, help='SQL condition on runs, e.g. "layers = 4"')
    board.add_argument("--sql", default=None,
                       help="any SQL over the views fold_rows, runs, trials, genotypes, trial_scores, config_scores")
    board.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    board.add_argument("--out", type=Path, default=None, help="write csv/json/parquet here instead of stdout")
    board.add_argument("--compact", action="store_true",
                       help="first fold every part file into one snapshot per experiment (done by itself past "
                            "1,000 loose files); later queries open a few files instead of thousands")
    board.set_defaults(run=cmd_leaderboard)

    report = commands.add_parser("report", help="one self-contained HTML page about an experiment")
    report.add_argument("--storage", required=True, help="the experiment storage (folder or URI)")
    report.add_argument("--experiment", default=None)
    report.add_argument("--out", required=True, type=Path, help="HTML file to write")
    report.set_defaults(run=cmd_report)

    export = commands.add_parser("export", help="retrain a leaderboard genotype and save a model bundle")
    export.add_argument("--storage", required=True, help="the experiment storage folder")
    export.add_argument("--experiment", default=None)
    export.add_argument("--rank", type=int, default=None, help="genotype rank (default 1)")
    export.add_argument("--genotype", default=None, help="genotype hash instead of a rank")
    export.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    export.add_argument("--out", required=True, type=Path, help="model file to write (.pt)")
    export.set_defaults(run=cmd_export)

    predict = commands.add_parser("predict", help="predict the emotion of WAV files with an exported model")
    predict.add_argument("--model", required=True, type=Path)
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE.wav")
    predict.add_argument("--format", choices=["table", "json"], default="table")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    predict.set_defaults(run=cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None, *, parser: argparse.ArgumentParser | None = None) -> int:
    """Parse and run a subcommand; ``parser`` lets a higher layer (``cluster.cli``) add its own."""
    args = (parser or build_parser()).parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UserError as error:
        error_console.print(f"[red]error:[/] {escape(str(error))}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        error_console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
