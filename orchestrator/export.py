"""Export a genotype from the leaderboard as a deployable model bundle.

The chosen genotype's best fold (highest test UA among its finished folds) is retrained from
scratch on all non-test speakers of that fold (its train and validation speakers) for the
number of epochs that the fold's evaluation chose on its validation speakers. Weights are not
taken from the search runs: trials keep no final weights, and retraining on the validation
speakers too uses all the data the protocol allows without selecting on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from orchestrator.config import load_config, settings_for_trial
from orchestrator.leaderboard import connect
from orchestrator.storage import CONFIG_FILE, DATA_FILES, FOLDS_FILE, MANIFEST_FILE, folder_to_read, resolve_storage
from trainers.evaluate import train_final_model
from trainers.features import extract_features, get_preset
from trainers.fold_data import Split, load_fold_data
from trainers.folds import read_folds
from trainers.manifest import read_manifest
from trainers.model_bundle import save_bundle


@dataclass(frozen=True)
class ExportResult:
    out: Path
    experiment: str
    trial_id: str
    fold: int
    genotype_hash: str
    fold_test_ua: float
    epochs: int
    train_utterances: int


def choose_run(storage: str, *, experiment: str | None, rank: int | None, genotype: str | None) -> pd.Series:
    """The leaderboard row to export: the best fold of the genotype at ``rank`` (or of ``genotype``)."""
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
            "ORDER BY ua DESC, fold, trial_id",
            [genotype],
        )
    if runs.empty:
        raise ValueError(f"genotype {genotype!r} has no finished fold in {storage}.")
    return runs.iloc[0]


def export_model(
    storage: str,
    *,
    out: Path,
    device: torch.device,
    experiment: str | None = None,
    rank: int | None = None,
    genotype: str | None = None,
) -> ExportResult:
    run = choose_run(storage, experiment=experiment, rank=rank, genotype=genotype)
    data = resolve_storage(storage).experiment_data(run["experiment"])
    with folder_to_read(data, DATA_FILES) as data_dir:  # a local copy when the storage is an object store
        if not (data_dir / CONFIG_FILE).is_file():
            shown = data.shown(data.root)
            raise FileNotFoundError(
                f"{data.shown(data.path(CONFIG_FILE))} is missing: export needs the prepared data "
                f"of the experiment {run['experiment']!r} (written by sernas search in {shown})."
            )
        config = load_config(data_dir / CONFIG_FILE)
        manifest = read_manifest(config.data.manifest or data_dir / MANIFEST_FILE)
        folds, _ = read_folds(data_dir / FOLDS_FILE)
    _, evaluation = settings_for_trial(config, json.loads(run["params_json"]))
    fold = int(run["fold"])
    rows = manifest[manifest["utt_id"].isin(folds.loc[folds["fold"] == fold, "utt_id"])]
    extract_features(rows, preset=config.data.preset, cache_dir=config.data.cache_dir)
    classes = tuple(json.loads(run["classes"]))
    data = load_fold_data(
        manifest=rows,
        folds=folds,
        fold=fold,
        preset=config.data.preset,
        cache_dir=config.data.cache_dir,
        classes=classes,
    )
    everything_but_test = Split(
        x=torch.cat([data.train.x, data.valid.x]),
        y=torch.cat([data.train.y, data.valid.y]),
        utt_ids=data.train.utt_ids + data.valid.utt_ids,
    )
    architecture = run["genotype"] if isinstance(run["genotype"], str) else run["genotype_hash"]  # baseline
    epochs = int(run["best_epoch"])
    model = train_final_model(
        everything_but_test,
        architecture=architecture,
        settings=evaluation,
        n_classes=len(classes),
        epochs=epochs,
        device=device,
    )
    source = {
        "experiment": run["experiment"],
        "trial_id": run["trial_id"],
        "fold": fold,
        "genotype_hash": run["genotype_hash"],
        "fold_test_ua": float(run["ua"]),
        "epochs": epochs,
        "trained_on": f"train and validation speakers of fold {fold} ({len(everything_but_test)} utterances)",
    }
    save_bundle(
        out,
        model=model,
        architecture=architecture,
        settings=evaluation,
        classes=classes,
        preset=get_preset(config.data.preset),
        source=source,
    )
    return ExportResult(
        out=Path(out),
        experiment=run["experiment"],
        trial_id=run["trial_id"],
        fold=fold,
        genotype_hash=run["genotype_hash"],
        fold_test_ua=float(run["ua"]),
        epochs=epochs,
        train_utterances=len(everything_but_test),
    )
