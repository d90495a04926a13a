"""Nested by construction, end to end through ``sernas search`` (local Ray, TPE, Wilcoxon over
inner folds, real training): relabelling only outer fold 1's test speakers leaves study 1's
sampled parameters, validation figures, pruning decisions and chosen trial identical, while it
does reach fold 1's test UA and fold 2 (where those speakers train and validate)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.leaderboard import connect
from orchestrator.selection import nested_estimates
from orchestrator.study import StudyHandle
from trainers.corpora.synthetic import generate_synthetic_corpus
from trainers.manifest import build_manifest, write_manifest

pytestmark = pytest.mark.slow

# A permutation of the selected classes (exc merges into hap, so it moves with hap).
RELABEL = {"neu": "hap", "hap": "sad", "exc": "sad", "sad": "ang", "ang": "neu"}


def _config(path: Path, *, name: str, manifest: Path) -> Path:
    path.write_text(
        textwrap.dedent(f"""\
        name: {name}
        device: cpu
        data:
          dataset: iemocap
          manifest: {manifest}
          preset: logmel-32
          cache_dir: {path.parent / "cache"}
          classes: [neu, hap, sad, ang]
          merges: {{exc: hap}}
        folds: {{scheme: loso, use: [1, 2], inner: 3, valid_speakers: 2}}
        search: {{epochs: 1, batch_size: 16, weights: {{lr_min: 0.0}}}}
        eval: {{epochs: 4, batch_size: 16, weights: {{lr_min: 0.0}}}}
        space:
          layers: 3
          nodes: 2
          init_channels: {{choice: [4, 8]}}
          lstm_hidden: 8
          weights_lr: {{loguniform: [0.01, 0.1]}}
          seed: 0
        tune:
          num_samples: 3
          max_concurrent: 1
          searcher: optuna-tpe
          startup_trials: 1
          pruner: {{kind: wilcoxon, p_threshold: 0.3, n_startup_steps: 2}}
          resources: {{cpu: 1}}
          storage: {path.parent / "runs"}
        """)
    )
    return path


def _study_record(storage: Path, experiment: str, fold: int) -> list[tuple]:
    """Study ``fold``'s trials in order: parameters, state, inner-fold validation values, pruning reason."""
    study = StudyHandle(storage=str(storage), experiment=experiment).studies()[fold]
    return [
        (
            trial.params,
            trial.state.name,
            tuple(round(v, 9) for _, v in sorted(trial.intermediate_values.items())),
            trial.user_attrs.get("pruned_reason"),
        )
        for trial in study.trials
    ]


def _chosen_position(storage: Path, experiment: str, fold: int) -> tuple[int, float, float]:
    """Which of study ``fold``'s trials the nested estimate chose (by its number), and its valid / test UA."""
    study = StudyHandle(storage=str(storage), experiment=experiment).studies()[fold]
    numbers = {trial.user_attrs["tune_trial_id"]: trial.number for trial in study.trials}
    with connect(storage, experiment=experiment) as board:
        pick = next(p for p in nested_estimates(board)[experiment].picks if p.fold == fold)
    return numbers[pick.trial_id], pick.valid_ua, pick.test_ua


def test_relabelling_one_outer_folds_test_speakers_changes_nothing_its_study_decides(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    generate_synthetic_corpus(corpus, speakers=8, per_speaker=24, seed=0)
    scanned = build_manifest(dataset="iemocap", root=corpus)
    write_manifest(scanned, tmp_path / "original.parquet")
    frame = scanned.frame.copy()
    fold1_test = frame["session"] == 1  # LOSO: outer fold 1 tests on session 1's two speakers
    frame.loc[fold1_test, "label"] = frame.loc[fold1_test, "label"].map(lambda label: RELABEL.get(label, label))
    write_manifest(dataclasses.replace(scanned, frame=frame), tmp_path / "relabelled.parquet")

    storage = tmp_path / "runs"
    for name, manifest in (("original", "original.parquet"), ("relabelled", "relabelled.parquet")):
        config = _config(tmp_path / f"{name}.yaml", name=name, manifest=tmp_path / manifest)
        assert main(["search", "--config", str(config)]) == 0

    original, relabelled = (_study_record(storage, name, 1) for name in ("original", "relabelled"))
    assert len(original) == 3
    assert original == relabelled  # parameters, pruning decisions, validation values: identical
    assert _chosen_position(storage, "original", 1)[:2] == _chosen_position(storage, "relabelled", 1)[:2]
    # The relabelling did reach the data: fold 1's test UA and fold 2's study (those speakers train there).
    assert _chosen_position(storage, "original", 1)[2] != _chosen_position(storage, "relabelled", 1)[2]
    assert _study_record(storage, "original", 2) != _study_record(storage, "relabelled", 2)
