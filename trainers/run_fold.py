"""One fold of work without Ray: search (unless an architecture is given), then evaluation.

This is what a Tune trial runs per fold and what ``sernas run-fold`` runs on its own. Its work
folder holds the two checkpoints (``search.pt``, ``eval.pt``), so a rerun continues where it
stopped, and ``result.json``, written atomically once the fold is finished.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from search_space import Architecture, architecture_key, architecture_text, parse_architecture
from trainers.atomic_io import write_parquet_atomically, write_text_atomically
from trainers.evaluate import run_evaluation
from trainers.fold_data import FoldData
from trainers.gpu_memory import peak_memory_mib, reset_peak_memory
from trainers.normalization import Normalizer
from trainers.predictions import PREDICTIONS_NAME, prediction_frame
from trainers.reporting import Reporter, ignore_reports
from trainers.search import run_search
from trainers.settings import EvalSettings, SearchSettings

RESULT_NAME = "result.json"


@dataclass(frozen=True)
class FoldResult:
    fold: int
    classes: list[str]
    architecture: str  # architecture_text: genotype JSON or a model name ("baseline")
    genotype_hash: str  # architecture_key: the genotype's hash, or the model name
    test_ua: float  # UA, WA, macro-F1 over every protocol class (trainers.metrics)
    test_wa: float
    test_macro_f1: float
    confusion: list[list[int]]
    test_utterances: int
    test_absent_classes: list[str]  # classes with no test utterance (recall 0 in test_ua)
    best_epoch: int
    valid_ua: float
    valid_absent_classes: list[str]  # classes with no validation utterance (recall 0 in valid_ua)
    params: int
    search_seconds: float
    eval_seconds: float
    search_epochs_run: int
    search_stopped_early: str | None
    alpha_entropy: float | None  # at the end of the search; None without one
    device: str
    search_settings: dict[str, Any] | None
    eval_settings: dict[str, Any]
    peak_gpu_mib: float | None = None  # the most GPU memory the fold's process held (MiB); None on the CPU
    # search.score_controls: random control genotype_hash -> its shared-weight UA on the alpha speakers
    control_scores: dict[str, float] | None = None
    # every validation (chosen epoch) and test utterance's prediction (trainers.predictions); kept
    # out of result.json: it is written beside it, as predictions.parquet
    predictions: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        facts = asdict(replace(self, predictions=None))
        del facts["predictions"]
        return json.dumps(facts, indent=2, sort_keys=True)


def fold_provenance(data: FoldData, *, normalization: str, preset: str | None) -> dict[str, Any]:
    """What a fold's checkpoints record about their data besides the settings: the normalisation
    mode, the feature preset, and per split a hash of its utterances (``FoldData.utterance_digests``).

    A checkpoint resumed on data made otherwise would finish a search or a training begun on
    other inputs, silently; so these are compared on resume (``trainers.checkpoint``).
    """
    return {"normalization": normalization, "preset": preset, "utterances": data.utterance_digests()}


def run_fold(
    data: FoldData,
    *,
    evaluation: EvalSettings,
    search: SearchSettings | None = None,
    architecture: Architecture | str | None = None,
    device: torch.device,
    work_dir: str | Path,
    reporter: Reporter = ignore_reports,
    preset: str | None = None,
) -> FoldResult:
    """Search (when ``architecture`` is None) and evaluate; write ``work_dir/predictions.parquet``
    (every validation and test utterance's prediction, ``trainers.predictions``), then
    ``work_dir/result.json``.

    The fold's features are first normalised as ``evaluation.normalization`` says (statistics
    from the training speakers, per utterance, or per speaker over all of that speaker's audio,
    ``FoldData.speaker_stats``; never from labels).

    ``architecture`` may be its text (genotype JSON or a model name), parsed here. ``preset``
    names the feature preset ``data`` was loaded with (None: not known to the caller).

    The checkpoints in ``work_dir`` record the normalisation, the preset and a hash of each
    split's utterances (``fold_provenance``): a rerun with any of them changed stops with a
    ``CheckpointError`` naming the field and both values instead of resuming the other run.
    """
    if (architecture is None) == (search is None):
        raise ValueError("give either search settings (to search an architecture) or an architecture, not both.")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    reset_peak_memory(device)
    provenance = fold_provenance(data, normalization=evaluation.normalization, preset=preset)
    data, _ = data.normalized(Normalizer(evaluation.normalization))

    search_seconds, epochs_run, stopped_early, alpha_entropy, control_scores = 0.0, 0, None, None, None
    if architecture is not None:
        architecture = parse_architecture(architecture)
    else:
        found = run_search(
            data,
            settings=search,
            device=device,
            reporter=reporter,
            checkpoint_path=work_dir / "search.pt",
            provenance=provenance,
        )
        architecture, search_seconds = found.genotype, found.seconds
        epochs_run, stopped_early = found.epochs_run, found.stopped_early
        alpha_entropy = found.history[-1]["alpha_entropy"] if found.history else None
        control_scores = found.history[-1].get("control_scores") if found.history else None
    offset = search.epochs if search is not None else 0  # eval steps continue after the search's

    def report_eval(step: int, metrics: dict[str, Any]) -> None:
        reporter(offset + step, metrics)

    evaluated = run_evaluation(
        data,
        architecture=architecture,
        settings=evaluation,
        device=device,
        reporter=report_eval,
        checkpoint_path=work_dir / "eval.pt",
        provenance=provenance,
    )
    result = FoldResult(
        fold=data.fold,
        classes=list(data.classes),
        architecture=architecture_text(architecture),
        genotype_hash=architecture_key(architecture),
        test_ua=evaluated.test["ua"],
        test_wa=evaluated.test["wa"],
        test_macro_f1=evaluated.test["macro_f1"],
        confusion=evaluated.test["confusion"],
        test_utterances=evaluated.test["n"],
        test_absent_classes=[data.classes[k] for k in evaluated.test["absent_classes"]],
        best_epoch=evaluated.best_epoch,
        valid_ua=evaluated.valid["ua"],
        valid_absent_classes=[data.classes[k] for k in evaluated.valid["absent_classes"]],
        params=evaluated.params,
        search_seconds=search_seconds,
        eval_seconds=evaluated.seconds,
        search_epochs_run=epochs_run,
        search_stopped_early=stopped_early,
        alpha_entropy=alpha_entropy,
        device=str(device),
        search_settings=search.model_dump(mode="json") if search is not None else None,
        eval_settings=evaluation.model_dump(mode="json"),
        peak_gpu_mib=peak_memory_mib(device),
        control_scores=control_scores,
        predictions=prediction_frame(
            data, {"valid": evaluated.valid_probabilities, "test": evaluated.test_probabilities}
        ),
    )
    write_parquet_atomically(result.predictions, work_dir / PREDICTIONS_NAME)
    write_text_atomically(work_dir / RESULT_NAME, result.to_json() + "\n")
    return result
