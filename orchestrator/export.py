"""Export a genotype from the leaderboard as a deployable model bundle.

Validation chooses everything here: the genotype is the one ranked first by mean validation UA
(or the one named), and its settings come from the run (trial, fold) with the best validation
UA among its finished runs. By default the model is trained from scratch on every utterance of
the protocol (train, validation and test speakers of the folds alike: the folds already gave
the estimate, so nothing needs to be held out) for the median of the epoch counts that its
folds chose on their validation speakers. ``fold=K`` keeps the per-fold export: fold K's
training and validation speakers, for the epoch that fold chose; its held-out test speakers are
then scored once (reported, choosing nothing) and each test utterance's prediction is written
beside the bundle (``<bundle>.predictions.parquet``). The bundle's provenance
carries the nested estimate of the experiment and how the model was trained, never a maximum
over test UAs. Weights are never taken from the search runs: trials keep no final weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from orchestrator.candidates import settings_from
from orchestrator.experiment import load_experiment
from orchestrator.leaderboard import connect
from orchestrator.selection import NestedEstimate, nested_estimates
from search_space.architecture import architecture_text, parse_architecture
from trainers.atomic_io import write_parquet_atomically
from trainers.evaluate import train_final_model
from trainers.features import extract_features
from trainers.fold_data import concat_splits, fold_speaker_rows, load_fold_data
from trainers.model_bundle import save_bundle
from trainers.normalization import Normalizer
from trainers.predictions import prediction_frame
from trainers.training import evaluate_split


@dataclass(frozen=True)
class ExportResult:
    out: Path
    experiment: str
    trial_id: str  # the run whose settings were used (best validation UA of the genotype)
    fold: int | None  # None: trained on every speaker of the protocol
    genotype_hash: str
    epochs: int
    train_utterances: int
    trained_on: str
    nested_estimate: NestedEstimate | None
    # fold=K only: the model scored once on fold K's test speakers (held out from its training):
    # UA, WA, macro-F1, n, and where each utterance's prediction went (trainers.predictions)
    test: dict[str, float] | None = None
    predictions: Path | None = None


def predictions_path_of(bundle: Path) -> Path:
    """Where the per-utterance test predictions of a per-fold export go: beside the bundle."""
    return Path(bundle).with_name(Path(bundle).stem + ".predictions.parquet")


def choose_runs(
    storage: str, *, experiment: str | None, rank: int | None, genotype: str | None
) -> tuple[pd.DataFrame, NestedEstimate | None]:
    """The finished runs of the genotype at ``rank`` by validation (or of ``genotype``), best
    validation UA first; with them the nested estimate of their experiment.

    The rank reads search rows only (the ``genotypes`` view); the runs are every finished row of
    the genotype, search or cross-eval, so a genotype that only ``sernas cross-eval`` ran (the
    baseline, one given as JSON) exports too."""
    with connect(storage, experiment=experiment) as board:
        if genotype is None:
            ranked = board.summary("genotype")
            ranked = ranked[ranked["rank"] == (rank or 1)]
            if ranked.empty:
                raise ValueError(
                    f"no genotype at rank {rank or 1} in {storage}"
                    + (f" for experiment {experiment!r}" if experiment else "")
                    + "."
                )
            if ranked["experiment"].nunique() > 1:
                raise ValueError(
                    "several experiments are in this storage; choose one with --experiment "
                    f"({', '.join(sorted(ranked['experiment']))})."
                )
            genotype = ranked["genotype_hash"].iloc[0]
        runs = board.sql(
            "SELECT * FROM runs WHERE genotype_hash = ? AND status IN ('completed', 'pruned') "
            + ("AND experiment = ? " if experiment else "")
            + "ORDER BY valid_ua DESC NULLS LAST, fold, trial_id",
            [genotype, experiment] if experiment else [genotype],
        )
        estimates = nested_estimates(board)
    if runs.empty:
        raise ValueError(f"genotype {genotype!r} has no finished fold in {storage}.")
    if runs["experiment"].nunique() > 1:
        raise ValueError(
            f"genotype {genotype!r} was found in several experiments; choose one with --experiment "
            f"({', '.join(sorted(runs['experiment'].unique()))})."
        )
    return runs, estimates.get(str(runs["experiment"].iloc[0]))


def export_model(
    storage: str,
    *,
    out: Path,
    device: torch.device,
    experiment: str | None = None,
    rank: int | None = None,
    genotype: str | None = None,
    fold: int | None = None,
) -> ExportResult:
    runs, estimate = choose_runs(storage, experiment=experiment, rank=rank, genotype=genotype)
    epochs_per_fold = runs.groupby("fold")["best_epoch"].median()  # the epoch each fold chose on validation
    if fold is not None:
        on_fold = runs[runs["fold"] == fold]
        if on_fold.empty:
            raise ValueError(
                f"genotype {runs['genotype_hash'].iloc[0]!r} has no finished run on fold {fold}; it has folds "
                f"{sorted(int(f) for f in runs['fold'].unique())}."
            )
        run, epochs = on_fold.iloc[0], int(on_fold["best_epoch"].iloc[0])
    else:
        run = runs.iloc[0]
        epochs = max(1, round(float(epochs_per_fold.median())))
    name = str(run["experiment"])
    config, prepared = load_experiment(storage, name, needed_by="export")
    classes = tuple(json.loads(run["classes"]))
    if classes != prepared.classes:  # the run's list (the bundle's numbering) must be the data's
        raise ValueError(
            f"run {run['trial_id']} of the experiment {name!r} has classes {list(classes)}, but its prepared data "
            f"in {prepared.data_dir} give {list(prepared.classes)}; were they written again since that run?"
        )
    _, evaluation = settings_from(config, json.loads(run["params_json"]))
    folds = prepared.folds
    data_fold = int(fold if fold is not None else folds["fold"].min())
    rows = fold_speaker_rows(prepared.manifest, folds[folds["fold"] == data_fold])  # any label: speaker statistics
    preset = config.data.resolved_preset()  # an SSL preset's weights, checksummed: the bundle records it
    extract_features(rows, preset=preset, cache_dir=config.data.cache_dir, device=device)
    data = load_fold_data(
        manifest=rows,
        folds=folds,
        fold=data_fold,
        preset=preset,
        cache_dir=config.data.cache_dir,
        classes=classes,
    )
    parts = (data.train, data.valid) if fold is not None else (data.train, data.valid, data.test)
    raw = concat_splits(*parts)
    normalizer = Normalizer(evaluation.normalization).fit(  # train: stats of what it trains on
        raw.x, raw.valid_lengths, speaker_stats=data.speaker_stats
    )
    training = raw.normalized(normalizer)
    if fold is not None:
        trained_on = (
            f"the training and validation speakers of fold {fold} ({len(training)} utterances) for {epochs} "
            "epochs, the epoch that fold chose on its validation speakers"
        )
    else:
        chosen = {int(f): int(e) for f, e in epochs_per_fold.items()}
        trained_on = (
            f"every speaker of the protocol ({len(training)} utterances) for {epochs} epochs, the median of the "
            f"epochs chosen on validation per fold {chosen}"
        )
    architecture = parse_architecture(run["genotype"] if isinstance(run["genotype"], str) else run["genotype_hash"])
    model = train_final_model(
        training,
        architecture=architecture,
        settings=evaluation,
        n_classes=len(classes),
        epochs=epochs,
        device=device,
    )
    source = {
        "experiment": name,
        "trial_id": str(run["trial_id"]),
        "fold": fold,
        "genotype_hash": str(run["genotype_hash"]),
        "chosen_by": "validation figures, no study: mean validation UA of the genotype's runs over folds (the "
        "genotypes view's rank), then its run with the best validation UA (settings); a deployment study over all "
        "speakers is not built yet (docs/selection.md)",
        "genotype_mean_valid_ua": float(runs.groupby("fold")["valid_ua"].mean().mean()),
        "epochs": epochs,
        "trained_on": trained_on,
        "nested_estimate": None if estimate is None else estimate.to_dict(),
    }
    save_bundle(
        out,
        model=model,
        architecture=architecture_text(architecture),
        settings=evaluation,
        classes=classes,
        preset=preset,
        source=source,
        normalizer=normalizer,
    )
    test, predictions = None, None
    if fold is not None:  # fold K's test speakers were held out: score them once, reported, never choosing
        scored = evaluate_split(
            model,
            data.test.normalized(normalizer),
            n_classes=len(classes),
            batch_size=evaluation.batch_size,
            device=device,
            keep_probabilities=True,
        )
        test = {key: scored[key] for key in ("ua", "wa", "macro_f1")} | {"n": len(data.test)}
        predictions = write_parquet_atomically(
            prediction_frame(data, {"test": scored["probabilities"]}), predictions_path_of(out)
        )
    return ExportResult(
        out=Path(out),
        experiment=name,
        trial_id=str(run["trial_id"]),
        fold=fold,
        genotype_hash=str(run["genotype_hash"]),
        epochs=epochs,
        train_utterances=len(training),
        trained_on=trained_on,
        nested_estimate=estimate,
        test=test,
        predictions=predictions,
    )
