"""Run an experiment: prepare the data once on the driver, then let Ray Tune run the trials.

Preparation (synthesise the built-in corpus if asked and absent, scan the corpus into a
manifest, compute features into the node's cache, make the folds) happens before Tune starts,
so trials only read. The manifest and fold table travel to the trials through Ray's object
store; feature caches are per node and every trial fills in whatever its node lacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from orchestrator.config import ExperimentConfig, dump_config, load_config
from orchestrator.config.models import CorpusConfig
from orchestrator.resume_check import check_prepared_data, write_data_fingerprint
from orchestrator.storage import (
    CONFIG_FILE,
    DATA_FILES,
    FOLDS_FILE,
    MANIFEST_FILE,
    StorageLocation,
    folder_to_read,
    folder_to_write,
    resolve_storage,
)
from orchestrator.terminal import progress_bars
from trainers.atomic_io import write_parquet_atomically, write_text_atomically
from trainers.corpora.scan import CorpusError
from trainers.corpora.synthetic import generate_synthetic_corpus
from trainers.cross_corpus import combine_manifests, cross_corpus_folds
from trainers.features import extract_features
from trainers.fold_data import fold_speaker_rows
from trainers.folds import make_folds, protocol_classes, read_folds, require_speaker_independence
from trainers.given_folds import given_folds
from trainers.imports import read_given_splits
from trainers.manifest import ManifestResult, build_manifest, read_manifest, write_manifest


@dataclass(frozen=True)
class PreparedData:
    manifest: pd.DataFrame
    folds: pd.DataFrame
    classes: tuple[str, ...]
    data_dir: str  # where the manifest, folds and config were written (a local path or a URI)


def storage_root(config: ExperimentConfig) -> StorageLocation:
    """Where Tune state, checkpoints, prepared data and the leaderboard of ``config`` go."""
    return resolve_storage(config.tune.storage)


def prepare_data(config: ExperimentConfig, *, progress: bool = True, resume: bool = False) -> PreparedData:
    """Manifest, features and folds for ``config``, written under ``<storage>/<name>/data`` (local or not).

    With ``resume`` they must equal the run's, which are then left as they are
    (``orchestrator.resume_check.check_prepared_data`` raises ``ResumeRefused`` naming what changed)."""
    data = config.data
    preset = data.resolved_preset(check=True)  # an SSL preset's weights: found and loaded before anything is written
    data_location = storage_root(config).experiment_data(config.name)
    if data.sources is None:
        scanned, manifest = corpus_manifest(data)
    else:  # cross-corpus: one manifest of every source, ids and speakers prefixed by the source's name
        frames = {}
        for index, source in enumerate(data.sources):
            frames[source.name] = corpus_manifest(source, where=f"data.sources.{index}")[1]
        manifest = combine_manifests(frames)
        scanned = ManifestResult(
            frame=manifest,
            problems=(),
            dataset="cross-corpus",
            root=Path(os.path.commonpath([str(path) for source in data.sources for path in source.input_paths()])),
            sources=tuple(
                (source.name, f"{source.dataset} at {source.manifest or source.root}") for source in data.sources
            ),
        )
    folds = fold_table(config, manifest)
    if not config.folds.accept_speaker_overlap:  # checked, never assumed: flagged folds are searched only on request
        require_speaker_independence(
            folds, opt_in="folds.accept_speaker_overlap: true (--set folds.accept_speaker_overlap=true)"
        )
    if not (resume and check_prepared_data(data_location, manifest=manifest, folds=folds)):
        with folder_to_write(data_location) as folder:
            if scanned is not None:
                write_manifest(scanned, folder / MANIFEST_FILE)
            write_parquet_atomically(folds, folder / FOLDS_FILE)
            write_text_atomically(folder / CONFIG_FILE, dump_config(config))  # `sernas export` rebuilds from it
            write_data_fingerprint(folder, manifest=manifest, folds=folds)  # what --resume compares with
    used = fold_speaker_rows(manifest, folds)  # every clip of the folds' speakers: speaker statistics read them all
    with progress_bars(enabled=progress) as show_progress:
        summary = extract_features(
            used, preset=preset, cache_dir=data.cache_dir, progress=show_progress, device=_driver_device(config)
        )
    if summary.failed:
        first = summary.failed[0]
        raise ValueError(
            f"{len(summary.failed)} utterance(s) could not be turned into features "
            f"(first: {first.path}: {first.reason}); fix or exclude them (sernas manifest --skip-bad)."
        )
    return PreparedData(
        manifest=used.reset_index(drop=True),
        folds=folds,
        classes=protocol_classes(folds, classes=data.classes),
        data_dir=data_location.shown(data_location.root),
    )


def _driver_device(config: ExperimentConfig) -> torch.device:
    """Where the driver runs an SSL preset's encoder: the CPU when the experiment says ``device: cpu``,
    else this machine's GPU when it has one (the trials' device is checked in the trials)."""
    if config.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def corpus_manifest(corpus: CorpusConfig, *, where: str = "data") -> tuple[ManifestResult | None, pd.DataFrame]:
    """The manifest of one corpus (``data``, or one of ``data.sources``, named by ``where``): read from
    ``manifest``, or scanned from ``root`` (the synthetic corpus generated there first), with its scan
    (None when read) to be written beside the run. A scan with problems raises ``CorpusError``."""
    if corpus.manifest is not None:
        return None, read_manifest(corpus.manifest)
    dataset, root = corpus.dataset, Path(corpus.root)
    if dataset == "synthetic":
        synthetic = corpus.synthetic
        try:
            generate_synthetic_corpus(
                root, speakers=synthetic.speakers, per_speaker=synthetic.per_speaker, seed=synthetic.seed
            )
        except FileExistsError as error:  # a user's folder, or another synthetic corpus: never written into
            raise CorpusError(f"{where}.root {root}: {error}") from None
        dataset = "iemocap"
    result = build_manifest(
        dataset=dataset,
        root=root,
        min_duration_s=corpus.min_duration_s,
        audio_root=corpus.audio_root,
        speakers=corpus.speakers,
        corpus=corpus.corpus,
    )
    if result.problems:  # (write_manifest's advice, --skip-bad, is an option of sernas manifest)
        raise CorpusError(
            f"{len(result.problems)} problem(s) in {dataset} corpus at {result.root}; the experiment did not "
            f"start. Fix them, or leave those files out: sernas manifest --dataset {dataset} --root {root} "
            f"--min-duration {corpus.min_duration_s:g} --out manifest.parquet --skip-bad, then give that file as "
            f"{where}.manifest instead of {where}.root:",
            result.problems,
        )
    return result, result.frame


def fold_table(config: ExperimentConfig, manifest: pd.DataFrame) -> pd.DataFrame:
    """The fold table of ``config``: made from the manifest's sessions, (``folds.scheme: given``)
    the folds of the split files at ``data.root``, exactly, or (``cross-corpus``) one fold per test
    corpus of the combined manifest of ``data.sources``."""
    if config.folds.scheme == "cross-corpus":
        return cross_corpus_folds(manifest, protocol=config.fold_protocol(), folds=config.folds.use)
    if config.folds.scheme != "given":
        return make_folds(manifest, protocol=config.fold_protocol(), folds=config.folds.use)
    splits = read_given_splits(config.data.dataset, config.data.root, corpus=config.data.corpus)
    return given_folds(manifest, splits, protocol=config.fold_protocol(), folds=config.folds.use)


def load_experiment(storage: str, experiment: str, *, needed_by: str) -> tuple[ExperimentConfig, PreparedData]:
    """The config and prepared data (manifest, folds, classes) that ``sernas search`` left in
    ``storage``, as ``prepare_data`` returned them, for the commands that come after a search.

    A missing experiment is a FileNotFoundError naming the config file and ``needed_by`` (the
    command), so that the CLI shows a user's mistake as a sentence, never a traceback."""
    location = resolve_storage(storage).experiment_data(experiment)
    with folder_to_read(location, DATA_FILES) as data_dir:  # a local copy when the storage is an object store
        if not (data_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{location.shown(location.path(CONFIG_FILE))} is missing: {needed_by} needs the prepared data of "
                f"the experiment {experiment!r} (written by sernas search in {location.shown(location.root)})."
            )
        config = load_config(data_dir / CONFIG_FILE, overrides=[f"tune.storage={storage}"])
        manifest = read_manifest(config.data.manifest or data_dir / MANIFEST_FILE)
        folds, _ = read_folds(data_dir / FOLDS_FILE)
    used = fold_speaker_rows(manifest, folds).reset_index(drop=True)
    classes = protocol_classes(folds, classes=config.data.classes)
    prepared = PreparedData(manifest=used, folds=folds, classes=classes, data_dir=location.shown(location.root))
    return config, prepared


@dataclass(frozen=True)
class ExperimentSummary:
    name: str
    storage: str
    trials: int
    completed: int
    pruned: int
    failed: int
    epochs_reported: int
    folds_reported: int
    seconds: float
    infeasible: int = 0  # trials stopped by CUDA out-of-memory (counted in failed too; never retried)


def run_experiment(
    config: ExperimentConfig,
    *,
    prepared: PreparedData,
    resume: bool = False,
    console=None,
    trial_function: Callable[..., None] | None = None,
) -> ExperimentSummary:
    """Run (or, with ``resume``, finish) the experiment's trials with Ray Tune (Ray must be up).

    Nested by construction (docs/selection.md): every trial belongs to one outer fold, whose
    Optuna study (``orchestrator.study``) proposes it (``orchestrator.nested.OuterFoldSearcher``),
    prunes it and records how it ended (``orchestrator.pruning.OptunaPruningScheduler``);
    ``tune.num_samples`` trials per outer fold.

    ``trial_function`` replaces ``orchestrator.trial.run_trial`` (same signature), for
    benchmarks that measure the driver without paying for training.
    """
    import optuna
    from ray import tune
    from rich.console import Console
    from rich.markup import escape

    from orchestrator.concurrency import decide_concurrency
    from orchestrator.config.optuna_space import fixed_tune_params, optuna_distributions
    from orchestrator.nested import OuterFoldSearcher, grid_size
    from orchestrator.pruning import OptunaPruningScheduler, make_pruner
    from orchestrator.study import OUTER_FOLD_KEY, StudyHandle

    console = console or Console(highlight=False, soft_wrap=True)
    pruner, over = make_pruner(config.tune.pruner.kind, **config.tune.pruner.options)
    study = StudyHandle(storage=storage_root(config).uri, experiment=config.name)
    if resume and not study.trials() and console is not None:
        console.print(
            f"[yellow]No Optuna study of {escape(config.name)} at {escape(str(study.journal))}: the pruner "
            "resumes without the trials finished before (the experiment may predate study journals).[/]"
        )
    if not resume and study.trials():
        raise ValueError(
            f"the Optuna studies of experiment {config.name!r} in {study.journal} already hold {study.trials()} "
            "trial(s): finish that run with --resume, or choose another experiment name."
        )
    multi = config.tune.searcher == "optuna-tpe" and config.tune.multi_objective
    distributions = optuna_distributions(config)
    folds = tuple(sorted(int(fold) for fold in prepared.folds["fold"].unique()))
    per_fold = config.tune.num_samples * (grid_size(distributions) if config.tune.searcher == "grid" else 1)
    searcher = OuterFoldSearcher(
        study=study,
        folds=folds,
        trials_per_fold=per_fold,
        distributions=distributions,
        fixed=fixed_tune_params(config),
        sampler=config.tune.searcher,
        seed=config.tune.seed,
        multi_objective=multi,
        startup_trials=config.tune.startup_trials,
    )
    tune_config = tune.TuneConfig(
        num_samples=searcher.total,
        max_concurrent_trials=decide_concurrency(config.tune, console=console),
        search_alg=searcher,
        # Always a scheduler: it records every trial's end in its study ("none": NopPruner).
        scheduler=OptunaPruningScheduler(
            pruner=pruner or optuna.pruners.NopPruner(),
            over=over,
            study=study,
            distributions=distributions,
            multi_objective=multi,
        ),
        reuse_actors=config.tune.reuse_actors,
    )
    return run_tune(
        config,
        prepared=prepared,
        tune_name=config.name,
        param_space={},
        tune_config=tune_config,
        pruner_name=config.tune.pruner.kind,
        resume=resume,
        console=console,
        trial_function=trial_function,
        study=study,
        params_first=(OUTER_FOLD_KEY, *distributions),
    )


def _checkpoints_to_keep(config: ExperimentConfig) -> int | None:
    """``tune.keep_checkpoints`` on a local or shared disk; every checkpoint on an object store.

    There Tune uploads its experiment state asynchronously (and skips an upload while one is in
    flight) but deletes old checkpoints at once, so a driver killed in between leaves a state
    that names a deleted checkpoint and ``--resume`` fails that trial ("Could not recover from
    checkpoint as it does not exist on storage anymore", seen against an S3 server). Keeping
    them all costs object-store space (a trial's checkpoint is its fold state and the search's
    weights), never a lost trial.
    """
    return config.tune.keep_checkpoints if storage_root(config).is_local else None


def run_tune(
    config: ExperimentConfig,
    *,
    prepared: PreparedData,
    tune_name: str,
    param_space: dict[str, Any] | None,
    tune_config: Any,
    pruner_name: str,
    resume: bool = False,
    console=None,
    trial_function: Callable[..., None] | None = None,
    study: Any = None,
    params_first: tuple[str, ...] = (),
) -> ExperimentSummary:
    """What ``sernas search`` and ``sernas cross-eval`` share: run ``orchestrator.trial.run_trial``
    over ``param_space`` as the Tune experiment ``<storage>/<tune_name>`` with the experiment's
    resources, failure handling, checkpoints, progress lines and trial status files (under the
    experiment's name), or with ``resume`` finish it (``Tuner.restore``); count what happened.
    ``tune_config`` (a ``tune.TuneConfig``) and ``param_space`` are only needed when starting.
    ``study`` (an ``orchestrator.study.StudyHandle``) is where a search's trial states are
    decided: the progress lines, status files and counts read completed / pruned / failed there.
    ``params_first``: the parameters that tell trials apart, shown first in the progress lines.
    """
    import functools
    import time

    from ray import tune
    from rich.console import Console

    from orchestrator.leaderboard import write_trial_status
    from orchestrator.progress import ExperimentProgress
    from orchestrator.trial import INFEASIBLE_REPORT, TrialInputs, run_trial

    console = console or Console(highlight=False, soft_wrap=True)
    storage = storage_root(config).uri
    started = time.perf_counter()

    write_status = functools.partial(write_trial_status, storage, experiment=config.name)  # picklable
    # Networks per trial: a search trial's inner folds (or its one validation split), a cross-eval trial's folds.
    n_folds = int(prepared.folds["fold"].nunique()) if study is None else (config.folds.inner or 1)
    progress = ExperimentProgress(
        console=console,
        write_status=write_status,
        n_folds=n_folds,
        pruner_name=pruner_name,
        study=study,
        first=params_first,
    )
    inputs = TrialInputs(
        experiment=config, manifest=prepared.manifest, folds=prepared.folds, classes=prepared.classes, storage=storage
    )
    resources = {"cpu": config.tune.resources.cpu, "gpu": config.tune.resources.gpu}
    trainable = tune.with_resources(tune.with_parameters(trial_function or run_trial, inputs=inputs), resources)
    experiment_path = storage_root(config).child(tune_name).uri
    if resume:
        if not tune.Tuner.can_restore(experiment_path):
            raise ValueError(f"nothing to resume at {experiment_path}: no Tune experiment state there.")
        tuner = tune.Tuner.restore(
            experiment_path,
            trainable=trainable,
            param_space=param_space,
            resume_unfinished=True,
            resume_errored=True,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune_config,
            run_config=tune.RunConfig(
                name=tune_name,
                storage_path=storage,
                verbose=0,
                callbacks=[progress],
                failure_config=tune.FailureConfig(max_failures=config.tune.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=_checkpoints_to_keep(config)),
            ),
        )
    try:
        results = tuner.fit()
    finally:
        progress.close()  # the live table stops even when fit raises (on --resume Tune's restored copy draws)
    # Counted from Tune's results and the studies, not from the progress callback: on --resume
    # Tune restores the callback it pickled, so this process's instance never sees the trials.
    infeasible = [r for r in results if r.error is None and (r.metrics or {}).get("report") == INFEASIBLE_REPORT]
    last = [r.metrics or {} for r in results]
    folds = sum(int(m.get("folds_done", 0)) for m in last)
    states = trial_states(study) if study is not None else {}

    def ended(result) -> str:
        """completed / pruned / failed: the study's word for a search trial, the folds done for cross-eval."""
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id")
        if trial_id in states:
            return states[trial_id]
        if result.error is not None or any(result is i for i in infeasible):
            return "failed"
        return "completed" if metrics.get("folds_done", 0) == metrics.get("n_folds", n_folds) else "pruned"

    verdicts = [ended(r) for r in results]
    return ExperimentSummary(
        name=tune_name,
        storage=storage,
        trials=len(results),
        completed=verdicts.count("completed"),
        pruned=verdicts.count("pruned"),
        failed=len(results) - verdicts.count("completed") - verdicts.count("pruned"),
        infeasible=len(infeasible),
        epochs_reported=sum(int(m.get("training_iteration", 0)) for m in last) - folds,
        folds_reported=folds,
        seconds=time.perf_counter() - started,
    )


def trial_states(study: Any) -> dict[str, str]:
    """Tune trial id -> ``completed`` / ``pruned`` / ``failed`` / ``running`` as the experiment's
    studies record it (the one place that says whether a trial was pruned)."""
    from orchestrator.study import TRIAL_STATUS, TUNE_TRIAL_ID

    states = {}
    for fold_study in study.studies().values():
        for frozen in fold_study.get_trials(deepcopy=False):  # the newest Optuna trial of a Tune trial wins
            if TUNE_TRIAL_ID in frozen.user_attrs:
                states[frozen.user_attrs[TUNE_TRIAL_ID]] = TRIAL_STATUS[frozen.state.name]
    return states
