"""Does the search earn its keep? Searched CNN-LSTM vs the hand-made one vs a linear model.

    python benchmarks/bench_recipe.py [--seeds 3] [--ablation-seeds N] [--folds 1 2 3 4 5] [--jobs 2]
                                      [--work-dir DIR] [--out benchmarks/results/recipe.json]

On the built-in synthetic corpus (10 speakers, 5 sessions), leave-one-session-out, for every
fold and seed: a DARTS search on the fold's training speakers, the derived network trained
from scratch; the hand-made CNN-LSTM trained from scratch under the same recipe (same
normalisation, masking, augmentation, width, epochs); and, once per fold, a logistic
regression on the mean and standard deviation of 40 MFCCs over each clip's valid frames.
Each network's epoch is chosen on the fold's validation speakers; the test speakers are scored
once. Every network is also scored per speaker (its chosen weights, from its ``eval.pt``).

Main comparison (the evaluation): mean test UA per model, validation UA beside. Paired tests
never count seeds as samples (``paired_stats``): seeds are averaged within each fold, then an
exact Wilcoxon signed-rank test runs over the folds (the primary test: with 5 folds its
smallest one-sided p is 1/32 = 0.031, so searched must beat hand-made on every fold), and a
sign-flip permutation test runs over the test speakers (each speaker's UA averaged over seeds).
Every p comes with the mean difference and a seeded 95 % bootstrap interval over the same units.

Ablation (evaluation only, on the genotypes the ablation seeds found): each recipe component
changed in turn. It is decided on VALIDATION UA only: a component's cost is the drop in mean
validation UA (seeds averaged per fold), tested two-sided over folds and over the validation
speakers, Holm-corrected across the ablations; test UA is reported beside it and decides nothing.

This takes long on 2 CPUs (40-60 minutes at the defaults, two worker processes) and is not part
of ``run_all``'s default set: run it by name (``python benchmarks/run_all.py --only recipe``) or
directly.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from paired_stats import fold_comparison, speaker_comparison  # benchmarks/, beside this script
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from orchestrator.statistics import holm
from search_space import parse_architecture
from trainers.atomic_io import write_text_atomically
from trainers.checkpoint import load_checkpoint
from trainers.corpora.synthetic import generate_synthetic_corpus
from trainers.evaluate import build_network
from trainers.features import extract_features, get_preset, load_features
from trainers.fold_data import FoldData, Split, load_fold_data
from trainers.folds import FoldProtocol, make_folds
from trainers.manifest import build_manifest
from trainers.metrics import classification_metrics, metrics_from_confusion
from trainers.normalization import Normalizer
from trainers.run_fold import FoldResult, run_fold
from trainers.settings import EvalSettings, ModelShape, SearchSettings, SpecAugment
from trainers.training import evaluate_split

CLASSES = ("neu", "hap", "sad", "ang")
PRESET = "logmel-32"
# 40 MFCCs from 64 mel bands on the same window and hop as logmel-32, unpooled (128 frames).
MFCC_PRESET = get_preset(PRESET).model_copy(
    update={"name": "mfcc-40-stats", "kind": "mfcc", "n_mels": 64, "n_mfcc": 40, "time_pool": 1}
)
SHAPE = ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=16)
ALPHA = 0.05
CPU = torch.device("cpu")

# The recipe under test (the project's evaluation defaults at this benchmark's size), and its
# ablations: each component reverted to what the project did before the recipe issue, or an
# alternative turned on.
SEARCH = SearchSettings(shape=SHAPE, epochs=6, batch_size=16, warmup_epochs=2)
RECIPE = EvalSettings(
    shape=SHAPE,
    epochs=20,
    batch_size=16,
    normalization="speaker",
    mask_padding=True,
    widen=2.0,
    drop_path_prob=0.0,
    auxiliary_weight=0.4,
    spec_augment=SpecAugment(),
)
ABLATIONS: dict[str, dict[str, Any]] = {
    "training-speaker normalisation instead of per speaker": {"normalization": "train"},
    "per-utterance normalisation instead of per speaker": {"normalization": "utterance"},
    "no normalisation": {"normalization": "none"},
    "no masking": {"mask_padding": False},
    "no widening": {"widen": 1.0},
    "wider (widen 3.0)": {"widen": 3.0},
    "no auxiliary head": {"auxiliary_weight": 0.0},
    "with drop-path 0.1": {"drop_path_prob": 0.1},
    "with SpecAugment (1 freq + 1 time mask)": {"spec_augment": SpecAugment(freq_masks=1, time_masks=1)},
}

Run = dict[str, Any]  # one evaluated model on one (fold, seed): UAs, per-speaker UAs, details


@dataclass(frozen=True)
class Corpus:
    manifest: pd.DataFrame
    folds: pd.DataFrame
    cache_dir: Path


def prepare(root: Path, *, fold_numbers: list[int]) -> Corpus:
    """The synthetic corpus, its features in both presets, and its LOSO folds."""
    corpus = generate_synthetic_corpus(root / "corpus")
    manifest = build_manifest(dataset="iemocap", root=corpus.root).frame
    cache = root / "features"
    extract_features(manifest, preset=PRESET, cache_dir=cache)
    extract_features(manifest, preset=MFCC_PRESET, cache_dir=cache)
    folds = make_folds(manifest, protocol=FoldProtocol(scheme="loso", classes=CLASSES), folds=fold_numbers)
    return Corpus(manifest=manifest, folds=folds, cache_dir=cache)


def fold_data(corpus: Corpus, fold: int) -> FoldData:
    """The fold's raw (unnormalised) log-mel features; ``run_fold`` normalises them."""
    return load_fold_data(
        manifest=corpus.manifest,
        folds=corpus.folds,
        fold=fold,
        preset=PRESET,
        cache_dir=corpus.cache_dir,
        classes=CLASSES,
    )


def mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


# -- logistic regression on MFCC statistics ------------------------------------------------------


def mfcc_statistics(x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """Per clip, mean and std of each MFCC over its valid frames: (N, 2 * 40)."""
    mask = (torch.arange(x.shape[-1])[None, :] < lengths[:, None]).to(x.dtype)[:, None, None, :]  # (N,1,1,T)
    count = mask.sum(dim=-1)  # (N, 1, 1)
    mean = (x * mask).sum(dim=-1) / count  # (N, 1, 40)
    std = ((((x - mean[..., None]) * mask) ** 2).sum(dim=-1) / count).sqrt()
    return torch.cat([mean, std], dim=-1)[:, 0].numpy()


def clip_statistics(corpus: Corpus) -> pd.DataFrame:
    """MFCC statistics of every clip of the manifest (every label), indexed by utterance id."""
    x = load_features(corpus.manifest, preset=MFCC_PRESET, cache_dir=corpus.cache_dir)  # (N, 1, 40, T)
    lengths = torch.tensor([MFCC_PRESET.valid_frames(float(d)) for d in corpus.manifest["duration_s"]])
    return pd.DataFrame(mfcc_statistics(x, lengths), index=corpus.manifest["utt_id"].to_numpy())


def speaker_scalers(corpus: Corpus, stats: pd.DataFrame) -> dict[str, StandardScaler]:
    """Per speaker, a standardiser fitted on all of that speaker's clips (unlabelled use, every
    label: the information the networks' ``speaker`` normalisation uses)."""
    speakers = corpus.manifest.set_index("utt_id")["speaker"].astype(str)
    return {
        speaker: StandardScaler().fit(stats.loc[rows.index].to_numpy()) for speaker, rows in speakers.groupby(speakers)
    }


def _ua(truth: np.ndarray, predicted: np.ndarray) -> float:
    """UA over every protocol class (``trainers.metrics``: a class absent from ``truth`` counts)."""
    return float(classification_metrics(truth, predicted, n_classes=len(CLASSES))["ua"])


def logistic_regression(
    corpus: Corpus, fold: int, stats: pd.DataFrame, *, per_speaker: Mapping[str, StandardScaler] | None = None
) -> Run:
    """Fitted on the training and validation speakers (nothing is chosen, so no validation UA),
    standardised on the training speakers (after each speaker's own standardisation when
    ``per_speaker`` is given), scored on the test speakers, overall and per speaker."""
    table = corpus.folds[corpus.folds["fold"] == fold]
    x = stats.loc[table["utt_id"]].to_numpy(copy=True)
    speakers = table["speaker"].astype(str).to_numpy()
    if per_speaker is not None:
        for speaker in set(speakers):
            x[speakers == speaker] = per_speaker[speaker].transform(x[speakers == speaker])
    y = table["label"].map({name: index for index, name in enumerate(CLASSES)}).to_numpy(dtype=np.int64)
    split = table["split"].to_numpy()
    scaler = StandardScaler().fit(x[split == "train"])
    fit = split != "test"
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(x[fit]), y[fit])
    test = split == "test"
    predicted = model.predict(scaler.transform(x[test]))
    by_speaker = {
        speaker: _ua(y[test][speakers[test] == speaker], predicted[speakers[test] == speaker])
        for speaker in sorted(set(speakers[test]))
    }
    return {
        "fold": fold,
        "seed": None,
        "test_ua": _ua(y[test], predicted),
        "valid_ua": None,
        "test_speaker_ua": by_speaker,
    }


# -- networks ------------------------------------------------------------------------------------


def _split_by_speaker(model: torch.nn.Module, split: Split, *, n_classes: int, batch_size: int) -> dict[str, dict]:
    """Metrics (with confusion) of ``model`` on each speaker's samples of ``split``."""
    names = np.asarray(split.speakers)
    return {
        speaker: evaluate_split(
            model,
            split.subset(torch.from_numpy(np.flatnonzero(names == speaker))),
            n_classes=n_classes,
            batch_size=batch_size,
            device=CPU,
        )
        for speaker in sorted(set(split.speakers))
    }


def speaker_uas(data: FoldData, result: FoldResult, *, work: Path, evaluation: EvalSettings) -> dict[str, dict]:
    """UA per validation and per test speaker of the network ``run_fold`` chose (the
    best-validation weights its ``eval.pt`` keeps), checked against the fold's own figures."""
    state = load_checkpoint(work / "eval.pt")
    if state is None:
        raise RuntimeError(f"{work / 'eval.pt'} is missing: run_fold keeps the chosen weights there.")
    normalised, _ = data.normalized(Normalizer(evaluation.normalization))
    model = build_network(
        parse_architecture(result.architecture),
        settings=evaluation,
        n_classes=len(data.classes),
        in_channels=normalised.train.x.shape[1],
    )
    model.load_state_dict(state["best"]["state"])
    valid = _split_by_speaker(model, normalised.valid, n_classes=len(data.classes), batch_size=evaluation.batch_size)
    test = _split_by_speaker(model, normalised.test, n_classes=len(data.classes), batch_size=evaluation.batch_size)
    test_confusion = np.sum([m["confusion"] for m in test.values()], axis=0)
    valid_ua = metrics_from_confusion(np.sum([m["confusion"] for m in valid.values()], axis=0))["ua"]
    if test_confusion.tolist() != result.confusion or abs(valid_ua - result.valid_ua) > 1e-9:
        raise RuntimeError(
            f"fold {data.fold}: per-speaker scoring of {work / 'eval.pt'} does not reproduce the fold's test "
            f"confusion / validation UA ({valid_ua} vs {result.valid_ua})."
        )
    return {
        "valid_speaker_ua": {speaker: m["ua"] for speaker, m in valid.items()},
        "test_speaker_ua": {speaker: m["ua"] for speaker, m in test.items()},
    }


def run_network(data: FoldData, *, work: Path, evaluation: EvalSettings, **kind: Any) -> Run:
    """``run_fold`` (``kind``: ``search=`` or ``architecture=``) plus its per-speaker UAs; resumes
    from the checkpoints in ``work`` (a finished run is only scored again)."""
    result = run_fold(data, evaluation=evaluation, device=CPU, work_dir=work, **kind)
    return {
        "fold": data.fold,
        "seed": evaluation.seed,
        "test_ua": result.test_ua,
        "valid_ua": result.valid_ua,
        **speaker_uas(data, result, work=work, evaluation=evaluation),
        "best_epoch": result.best_epoch,
        "architecture": result.architecture,
        "params": result.params,
        "search_stopped_early": result.search_stopped_early,
        "train_seconds": round(result.search_seconds + result.eval_seconds, 1),  # what the checkpoints recorded
    }


def _pair(corpus: Corpus, root: Path, fold: int, seed: int) -> dict:
    """One (fold, seed): the search and its network, and the hand-made network, same recipe."""
    torch.set_num_threads(1)
    data = fold_data(corpus, fold)
    search = SEARCH.model_copy(update={"seed": seed})
    evaluation = RECIPE.model_copy(update={"seed": seed})
    searched = run_network(data, work=root / f"s{fold}-{seed}", evaluation=evaluation, search=search)
    handmade = run_network(data, work=root / f"b{fold}-{seed}", evaluation=evaluation, architecture="baseline")
    return {"fold": fold, "seed": seed, "searched": searched, "handmade": handmade}


def _ablation(corpus: Corpus, root: Path, name: str, fold: int, seed: int, genotype: str) -> Run:
    torch.set_num_threads(1)
    evaluation = RECIPE.model_copy(update={**ABLATIONS[name], "seed": seed})
    work = root / f"a{list(ABLATIONS).index(name)}-{fold}-{seed}"
    return run_network(fold_data(corpus, fold), work=work, evaluation=evaluation, architecture=genotype)


# -- statistics ------------------------------------------------------------------------------------


def fold_means(runs: list[Run], key: str) -> dict[int, float]:
    """Per fold, ``key`` averaged over the fold's seeds."""
    by_fold: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        by_fold[run["fold"]].append(run[key])
    return {fold: mean(values) for fold, values in sorted(by_fold.items())}


def speaker_means(runs: list[Run], key: str) -> dict[str, float]:
    """Per speaker, the UA in ``key`` (speaker -> UA of each run) averaged over every run scoring it."""
    by_speaker: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for speaker, ua in run[key].items():
            by_speaker[speaker].append(ua)
    return {speaker: mean(values) for speaker, values in sorted(by_speaker.items())}


def compare_on_test(a: list[Run], b: list[Run]) -> dict:
    """One-sided ``a`` > ``b`` on test UA, folds and test speakers as units; validation beside."""
    valid = None
    if all(run["valid_ua"] is not None for run in a + b):
        valid = fold_comparison(fold_means(a, "valid_ua"), fold_means(b, "valid_ua"), alternative="greater")
    return {
        "outcome": "test UA",
        "folds": fold_comparison(fold_means(a, "test_ua"), fold_means(b, "test_ua"), alternative="greater"),
        "speakers": speaker_comparison(
            speaker_means(a, "test_speaker_ua"), speaker_means(b, "test_speaker_ua"), alternative="greater"
        ),
        "valid_mean_difference": None if valid is None else valid["mean_difference"],
    }


def _jsonable(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def decide_ablations(full: list[Run], ablations: Mapping[str, list[Run]]) -> dict:
    """Each ablation's cost (recipe minus change) on validation UA, two-sided tests over folds and
    over validation speakers, Holm-corrected across the ablations; test UA beside, untested."""
    rows: dict[str, dict] = {
        "full recipe": {
            "mean_valid_ua": mean(list(fold_means(full, "valid_ua").values())),
            "mean_test_ua": mean(list(fold_means(full, "test_ua").values())),
        }
    }
    for name, runs in ablations.items():
        valid_folds = fold_comparison(
            fold_means(full, "valid_ua"), fold_means(runs, "valid_ua"), alternative="two-sided"
        )
        valid_speakers = speaker_comparison(
            speaker_means(full, "valid_speaker_ua"), speaker_means(runs, "valid_speaker_ua"), alternative="two-sided"
        )
        test_folds = fold_comparison(fold_means(full, "test_ua"), fold_means(runs, "test_ua"), alternative="two-sided")
        rows[name] = {
            "change": {key: _jsonable(value) for key, value in ABLATIONS[name].items()},
            "mean_valid_ua": mean(list(fold_means(runs, "valid_ua").values())),
            "mean_test_ua": mean(list(fold_means(runs, "test_ua").values())),
            "valid_cost": valid_folds["mean_difference"],
            "valid_cost_interval_95": valid_folds["interval_95"],
            "test_cost": test_folds["mean_difference"],
            "test_cost_interval_95": test_folds["interval_95"],
            "valid_folds": valid_folds,
            "valid_speakers": valid_speakers,
        }
    names = list(ablations)
    for unit in ("valid_folds", "valid_speakers"):
        for name, adjusted in zip(names, holm([rows[name][unit]["p_value"] for name in names])):
            rows[name][unit]["p_holm"] = adjusted
    for name in names:
        row = rows[name]
        row["validation_prefers"] = "recipe" if row["valid_cost"] > 0 else "change" if row["valid_cost"] < 0 else "tie"
        row["resolved"] = row["valid_folds"]["p_holm"] < ALPHA
        row["resolved_over_speakers"] = row["valid_speakers"]["p_holm"] < ALPHA
    return {
        "decided_on": "validation UA (mean over folds of the seed-averaged fold UA); test UA reported only",
        "cost": "recipe minus change: positive when the recipe's setting is better",
        "tests": (
            "two-sided, Holm-corrected across the ablations: exact Wilcoxon over folds, and a sign-flip "
            "permutation over the validation speakers (each speaker's UA averaged over its folds and seeds)"
        ),
        "resolved": (
            f"the Holm-corrected fold-level p below {ALPHA} (primary; unreachable with 5 folds, whose floor is "
            "0.0625 before the correction); resolved_over_speakers: the same over validation speakers (secondary: "
            "a fold's speakers share its network)"
        ),
        "rows": rows,
    }


# -- the benchmark -------------------------------------------------------------------------------------


def run(
    root: Path,
    *,
    seeds: list[int],
    ablation_seeds: list[int],
    fold_numbers: list[int],
    jobs: int,
    say: Callable[[str], None],
) -> dict:
    """Every model on every fold and seed, then ``summarise``."""
    corpus = prepare(root, fold_numbers=fold_numbers)
    stats = clip_statistics(corpus)
    scalers = speaker_scalers(corpus, stats)
    logistic = {
        "train_standardised": [logistic_regression(corpus, fold, stats) for fold in fold_numbers],
        "speaker_standardised": [
            logistic_regression(corpus, fold, stats, per_speaker=scalers) for fold in fold_numbers
        ],
    }
    say(
        "logistic regression on MFCC statistics, test UA: "
        + ", ".join(
            f"fold {a['fold']} {a['test_ua']:.3f} (per speaker {b['test_ua']:.3f})" for a, b in zip(*logistic.values())
        )
    )
    pairs: list[dict] = []
    ablation_runs: dict[str, list[Run]] = {name: [] for name in ABLATIONS}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = [pool.submit(_pair, corpus, root, fold, seed) for fold in fold_numbers for seed in seeds]
        ablations: dict[Future, str] = {}
        for future in as_completed(pending):
            pair = future.result()
            pairs.append(pair)
            searched, handmade = pair["searched"], pair["handmade"]
            say(
                f"fold {pair['fold']} seed {pair['seed']}: searched valid {searched['valid_ua']:.3f} test "
                f"{searched['test_ua']:.3f} ({searched['train_seconds']:.0f} s), hand-made valid {handmade['valid_ua']:.3f} "
                f"test {handmade['test_ua']:.3f} ({handmade['train_seconds']:.0f} s) [{len(pairs)}/{len(pending)}]"
            )
            if pair["seed"] in ablation_seeds:  # the ablations of this genotype start at once
                for name in ABLATIONS:
                    args = (corpus, root, name, pair["fold"], pair["seed"], searched["architecture"])
                    ablations[pool.submit(_ablation, *args)] = name
        for done, future in enumerate(as_completed(ablations), start=1):
            result = future.result()
            ablation_runs[ablations[future]].append(result)
            say(
                f"ablation {ablations[future]}, fold {result['fold']} seed {result['seed']}: valid "
                f"{result['valid_ua']:.3f} test {result['test_ua']:.3f} [{done}/{len(ablations)}]"
            )
    results = summarise(pairs, logistic, ablation_runs, ablation_seeds=ablation_seeds)
    results["protocol"] = f"loso folds {fold_numbers}, seeds {seeds}, classes {'/'.join(CLASSES)}, preset {PRESET}"
    return results


def summarise(
    pairs: list[dict],
    logistic: Mapping[str, list[Run]],
    ablation_runs: Mapping[str, list[Run]],
    *,
    ablation_seeds: list[int],
) -> dict:
    """The comparisons on test UA (validation beside), the ablation decided on validation, the goal."""
    pairs = sorted(pairs, key=lambda p: (p["fold"], p["seed"]))
    models = {
        "searched": [p["searched"] for p in pairs],
        "handmade": [p["handmade"] for p in pairs],
        "logistic": logistic["train_standardised"],
        "logistic_per_speaker": logistic["speaker_standardised"],
    }
    comparisons = {
        f"{a}_vs_{b}": compare_on_test(models[a], models[b])
        for a, b in [
            ("searched", "handmade"),
            ("searched", "logistic"),
            ("handmade", "logistic"),
            ("searched", "logistic_per_speaker"),
            ("handmade", "logistic_per_speaker"),
        ]
    }
    # The full recipe is the searched networks' own evaluation (same genotype, settings and seed).
    full = [run for run in models["searched"] if run["seed"] in ablation_seeds]
    ablation = {**decide_ablations(full, ablation_runs), "seeds": ablation_seeds}
    mean_test = {name: mean(list(fold_means(runs, "test_ua").values())) for name, runs in models.items()}
    results = {
        "corpus": "built-in synthetic corpus: 10 speakers, 5 sessions, 60 utterances per speaker",
        "search_settings": SEARCH.model_dump(mode="json"),
        "eval_settings": RECIPE.model_dump(mode="json"),
        "chance_ua": 1 / len(CLASSES),
        "statistics": (
            "seeds averaged within each fold (and per speaker) before any test; one-sided tests that the first "
            "model beats the second on test UA: exact Wilcoxon signed-rank over folds (primary) and a sign-flip "
            "permutation over test speakers; mean difference with a seeded 95 % bootstrap interval over the same "
            "units beside every p; logistic regressions have no validation UA (fitted on the validation speakers)"
        ),
        "mean_test_ua": mean_test,
        "mean_valid_ua": {
            name: mean(list(fold_means(models[name], "valid_ua").values())) for name in ("searched", "handmade")
        },
        "comparisons": comparisons,
        "pairs": pairs,
        "logistic": dict(logistic),
        "ablation": ablation,
        "ablation_runs": dict(ablation_runs),
    }
    results["goal"] = {
        "searched_beats_handmade_fold_p_below_0.05": comparisons["searched_vs_handmade"]["folds"]["p_value"] < ALPHA,
        # The linear models' strongest form: per-speaker standardisation is the networks' own input.
        "both_beat_logistic": min(mean_test["searched"], mean_test["handmade"])
        > max(mean_test["logistic"], mean_test["logistic_per_speaker"]),
    }
    results["goal"]["met"] = all(results["goal"].values())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per fold (0..N-1)")
    parser.add_argument("--ablation-seeds", type=int, default=None, help="seeds the ablation uses (default: all)")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recipe.json"))
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="keep the corpus, features and every run's checkpoints here, so that a rerun resumes "
        "(default: a temporary directory)",
    )
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    ablation_seeds = seeds[: args.ablation_seeds] if args.ablation_seeds is not None else seeds
    started = time.perf_counter()
    torch.set_num_threads(1)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    with nullcontext(args.work_dir) if args.work_dir is not None else tempfile.TemporaryDirectory() as work:
        results = run(
            Path(work),
            seeds=seeds,
            ablation_seeds=ablation_seeds,
            fold_numbers=args.folds,
            jobs=args.jobs,
            say=lambda line: print(line, flush=True),
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out, json.dumps(results, indent=2) + "\n")
    test, valid = results["mean_test_ua"], results["mean_valid_ua"]
    folds, speakers = (
        results["comparisons"]["searched_vs_handmade"]["folds"],
        results["comparisons"]["searched_vs_handmade"]["speakers"],
    )
    print(
        f"mean test UA (valid): searched {test['searched']:.3f} ({valid['searched']:.3f}), hand-made "
        f"{test['handmade']:.3f} ({valid['handmade']:.3f}), logistic {test['logistic']:.3f}; searched > hand-made: "
        f"{folds['mean_difference']:+.3f} [{folds['interval_95'][0]:+.3f}, {folds['interval_95'][1]:+.3f}], "
        f"p = {folds['p_value']:.3g} over {folds['n']} folds, p = {speakers['p_value']:.3g} over {speakers['n']} "
        f"speakers; goal {'met' if results['goal']['met'] else 'NOT met'} ({results['seconds']:.0f} s) -> {args.out}"
    )
    for name, row in results["ablation"]["rows"].items():
        if name != "full recipe":
            print(
                f"ablation {name}: valid cost {row['valid_cost']:+.3f} (Holm p {row['valid_folds']['p_holm']:.3g} "
                f"folds, {row['valid_speakers']['p_holm']:.3g} speakers), test cost {row['test_cost']:+.3f}"
            )


if __name__ == "__main__":
    main()
