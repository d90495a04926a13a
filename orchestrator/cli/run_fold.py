"""``sernas run-fold``: search and evaluate one fold without Ray.

Its model and training options default to ``trainers.settings`` (the defaults in the help name
the fields): an option not given is left out of the namespace and the settings model fills in
its own default, so a default changed there is this command's default too. Reading the values
to print them would import torch for every ``sernas --help``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from orchestrator.cli.common import (
    DEFAULT_PRESET,
    Subcommands,
    UserError,
    add_device_option,
    add_weights_option,
    console,
)

if TYPE_CHECKING:
    from search_space.architecture import Architecture

__all__ = ["cmd_run_fold", "read_architecture", "register"]

FROM_SETTINGS = {"default": argparse.SUPPRESS}  # absent from the namespace unless given: see _given


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def read_architecture(value: str) -> Architecture:
    """``--genotype``: a model name or genotype JSON, or a file holding genotype JSON or a result.json."""
    from search_space.architecture import MODEL_NAMES, parse_architecture

    text = value.strip()
    try:
        return parse_architecture(text)
    except ValueError as error:
        if _is_json(text):
            raise UserError(f"--genotype: {error}") from None
        if not os.path.isfile(text):
            raise UserError(
                f"--genotype {value!r} is neither a model name ({', '.join(MODEL_NAMES)}), "
                "genotype JSON, nor an existing file."
            ) from None
    path = Path(text)
    text = path.read_text()
    try:
        stored = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"--genotype file {path} is not JSON ({error}).") from None
    if isinstance(stored, dict) and "architecture" in stored:  # a result.json of an earlier run
        text = stored["architecture"]
    try:
        return parse_architecture(text)
    except ValueError as error:
        raise UserError(f"--genotype file {path}: {error}") from None


def _given(args: argparse.Namespace, **fields: str) -> dict[str, object]:
    """``{field: args.<dest>}`` for each ``field=dest`` whose option was given on the command line."""
    given = vars(args)
    return {field: given[dest] for field, dest in fields.items() if dest in given}


def cmd_run_fold(args: argparse.Namespace) -> int:
    import torch
    from pydantic import ValidationError

    from orchestrator.config import validation_message
    from search_space.architecture import architecture_text
    from trainers.checkpoint import CheckpointError
    from trainers.device import resolve_device
    from trainers.features import FeaturesNotFoundError, get_preset, resolve_preset
    from trainers.fold_data import load_fold_data
    from trainers.folds import read_folds, require_speaker_independence
    from trainers.manifest import read_manifest
    from trainers.run_fold import RESULT_NAME, run_fold
    from trainers.settings import EvalSettings, ModelShape, SearchSettings

    architecture = read_architecture(args.genotype) if args.genotype else None
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, but got {args.threads}.")
    torch.set_num_threads(args.threads)
    try:
        shape = ModelShape(
            **_given(
                args,
                layers="layers",
                nodes="nodes",
                init_channels="init_channels",
                lstm_hidden="lstm_hidden",
                ssl_projection="ssl_projection",
            )
        )
        common = {"shape": shape, **_given(args, batch_size="batch_size", seed="seed")}
        search = (
            None
            if architecture is not None
            else SearchSettings(**common, **_given(args, epochs="search_epochs", order="order", pc_k="pc_k"))
        )
        evaluation = EvalSettings(**common, **_given(args, epochs="eval_epochs", normalization="normalization"))
        device = resolve_device(args.device)
        manifest = read_manifest(args.manifest)
        folds, protocol = read_folds(args.folds)
        if not args.accept_speaker_overlap:  # checked, never assumed (trainers.folds.speaker_check)
            require_speaker_independence(folds[folds["fold"] == args.fold], opt_in="--accept-speaker-overlap")
        preset = resolve_preset(
            get_preset(args.preset), weights=args.weights
        )  # SSL: the weights' checksum keys the cache
        data = load_fold_data(
            manifest=manifest,
            folds=folds,
            fold=args.fold,
            preset=preset,
            cache_dir=args.cache,
            classes=protocol.get("classes"),
            manifest_path=args.manifest,
        )
    except ValidationError as error:
        raise UserError(validation_message(error)) from None
    except (FileNotFoundError, ValueError, FeaturesNotFoundError) as error:
        raise UserError(str(error)) from None

    console.print(
        f"fold {data.fold}: {len(data.train)} train / {len(data.valid)} valid / {len(data.test)} test "
        f"utterances, classes {', '.join(data.classes)}, input {tuple(data.input_shape)}, device {device}"
    )

    def report(step: int, metrics: dict) -> None:
        phase = metrics["phase"]
        total = search.epochs if phase == "search" else evaluation.epochs
        extra = f" genotype {metrics['genotype_hash']}" if phase == "search" else f" best epoch {metrics['best_epoch']}"
        console.print(
            f"  {phase:6} epoch {metrics['epoch']:>3}/{total}  loss {metrics['train_loss']:.3f}  "
            f"valid UA {metrics['valid_ua']:.3f}{extra}  ({metrics['seconds']:.1f} s)"
        )

    # trainers.run_fold takes the architecture's text until it takes the value itself.
    text = architecture_text(architecture) if architecture is not None else None
    try:
        result = run_fold(
            data,
            evaluation=evaluation,
            search=search,
            architecture=text,
            device=device,
            work_dir=args.out,
            reporter=report,
            preset=args.preset,
        )
    except CheckpointError as error:  # a damaged checkpoint, or one of another run (other data too), in --out
        raise UserError(str(error)) from None
    name = result.genotype_hash or result.architecture
    console.print(
        f"fold {result.fold} [bold]{escape(name)}[/]: test UA {result.test_ua:.3f}  WA {result.test_wa:.3f}  "
        f"macro-F1 {result.test_macro_f1:.3f} on {result.test_utterances} utterances; epoch {result.best_epoch} "
        f"chosen on valid (UA {result.valid_ua:.3f}); {result.params:,} parameters; search "
        f"{result.search_seconds:.0f} s, evaluation {result.eval_seconds:.0f} s -> {Path(args.out) / RESULT_NAME}"
    )
    for split, absent in (("test", result.test_absent_classes), ("validation", result.valid_absent_classes)):
        if absent:  # UA averages over every protocol class: these count as recall 0
            console.print(
                f"[yellow]note: no {split} utterance of class {escape(', '.join(absent))}: it counts as recall 0 "
                f"in the {split} UA (and F1 0 in macro-F1).[/]"
            )
    return 0


def register(commands: Subcommands) -> None:
    """Add ``run-fold``."""
    from trainers.normalization import NORMALIZATIONS

    fold = commands.add_parser("run-fold", help="search and evaluate one fold without Ray")
    fold.add_argument("--manifest", required=True, type=Path)
    fold.add_argument("--folds", required=True, type=Path)
    fold.add_argument("--fold", required=True, type=int)
    fold.add_argument(
        "--accept-speaker-overlap",
        action="store_true",
        help="run a fold that is not speaker-independent (its test speakers also train or validate, or are unknown)",
    )
    fold.add_argument(
        "--genotype",
        default=None,
        help="skip the search: a model name such as baseline, genotype JSON, or a file with one (or a result.json)",
    )
    fold.add_argument("--search-epochs", type=int, **FROM_SETTINGS, help="default: SearchSettings.epochs")
    fold.add_argument("--eval-epochs", type=int, **FROM_SETTINGS, help="default: EvalSettings.epochs")
    fold.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        **FROM_SETTINGS,
        help="input normalisation for search and evaluation (default: EvalSettings.normalization)",
    )
    fold.add_argument("--layers", type=int, **FROM_SETTINGS, help="default: ModelShape.layers")
    fold.add_argument("--nodes", type=int, **FROM_SETTINGS, help="default: ModelShape.nodes")
    fold.add_argument("--init-channels", type=int, **FROM_SETTINGS, help="default: ModelShape.init_channels")
    fold.add_argument("--lstm-hidden", type=int, **FROM_SETTINGS, help="default: ModelShape.lstm_hidden")
    fold.add_argument(
        "--ssl-projection", type=int, **FROM_SETTINGS, help="SSL presets only (default: ModelShape.ssl_projection)"
    )
    fold.add_argument(
        "--batch-size", type=int, **FROM_SETTINGS, help="search and evaluation (default: their settings')"
    )
    fold.add_argument("--order", **FROM_SETTINGS, help="DARTS approximation (default: SearchSettings.order)")
    fold.add_argument(
        "--pc-k", type=int, **FROM_SETTINGS, help="PC-DARTS: search 1/K of the channels (default: SearchSettings.pc_k)"
    )
    fold.add_argument("--seed", type=int, **FROM_SETTINGS, help="search and evaluation (default: their settings')")
    add_device_option(fold)
    fold.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is fastest for small models and on shared machines)",
    )
    fold.add_argument("--preset", default=DEFAULT_PRESET, help="feature preset the features were computed with")
    fold.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    add_weights_option(fold)
    fold.add_argument("--out", required=True, type=Path, help="work folder: checkpoints and result.json")
    fold.set_defaults(handler=cmd_run_fold)
