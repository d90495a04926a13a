"""Does the search earn its keep? Searched CNN-LSTM vs the hand-made one vs a linear model.

    python benchmarks/bench_recipe.py [--seeds 3] [--folds 1 2 3 4 5] [--out benchmarks/results/recipe.json]

On the built-in synthetic corpus (10 speakers, 5 sessions), leave-one-session-out, for every
fold and seed: a DARTS search on the fold's training speakers, the derived network trained
from scratch; the hand-made CNN-LSTM trained from scratch under the same recipe (same
normalisation, masking, augmentation, width, epochs); and, once per fold, a logistic
regression on the mean and standard deviation of 40 MFCCs over each clip's valid frames,
standardised on the training speakers. Each network's epoch is chosen on the fold's
validation speakers; the test speakers are scored once. Reported: every fold's test UA, a
paired one-sided Wilcoxon test of searched vs hand-made over the (fold, seed) pairs, and both
against the logistic regression.

Ablation (evaluation only, on the genotypes the first seed found, to keep it affordable):
each recipe component turned off in turn, with the UA it costs.

This takes long on 2 CPUs (about an hour at the defaults, two worker processes) and is not part of ``run_all``'s
default set: run it by name (``python benchmarks/run_all.py --only recipe``) or directly.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import wilcoxon
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from trainers.atomic_io import write_text_atomically
from trainers.corpora.synthetic import generate_synthetic_corpus
from trainers.features import extract_features, get_preset
from trainers.fold_data import FoldData, load_fold_data
from trainers.folds import FoldProtocol, make_folds
from trainers.manifest import build_manifest
from trainers.metrics import classification_metrics
from trainers.run_fold import run_fold
from trainers.settings import EvalSettings, ModelShape, SearchSettings, SpecAugment

CLASSES = ("neu", "hap", "sad", "ang")
PRESET = "logmel-32"
# 40 MFCCs from 64 mel bands on the same window and hop as logmel-32, unpooled (128 frames).
MFCC_PRESET = get_preset(PRESET).model_copy(
    update={"name": "mfcc-40-stats", "kind": "mfcc", "n_mels": 64, "n_mfcc": 40, "time_pool": 1}
)
SHAPE = ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=16)

# The recipe under test (the defaults this benchmark argues for), and its ablations: each
# component reverted to what the project did before the recipe issue.
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
# Each component turned off (or, for the two the recipe leaves off, turned on) in turn.
ABLATIONS: dict[str, dict[str, Any]] = {
    "training-speaker normalisation instead of per speaker": {"normalization": "train"},
    "no normalisation": {"normalization": "none"},
    "no masking": {"mask_padding": False},
    "no widening": {"widen": 1.0},
    "no auxiliary head": {"auxiliary_weight": 0.0},
    "with drop-path 0.1": {"drop_path_prob": 0.1},
    "with SpecAugment (1 freq + 1 time mask)": {"spec_augment": SpecAugment(freq_masks=1, time_masks=1)},
}


@dataclass(frozen=True)
class Corpus:
    manifest: Any
    folds: Any
    cache_dir: Path


def prepare(root: Path, *, fold_numbers: list[int]) -> Corpus:
    corpus = generate_synthetic_corpus(root / "corpus")
    manifest = build_manifest(dataset="iemocap", root=corpus.root).frame
    cache = root / "features"
    extract_features(manifest, preset=PRESET, cache_dir=cache)
    extract_features(manifest, preset=MFCC_PRESET, cache_dir=cache)
    folds = make_folds(manifest, protocol=FoldProtocol(scheme="loso", classes=CLASSES), folds=fold_numbers)
    return Corpus(manifest=manifest, folds=folds, cache_dir=cache)


def fold_data(corpus: Corpus, fold: int, preset: Any = PRESET) -> FoldData:
    return load_fold_data(
        manifest=corpus.manifest,
        folds=corpus.folds,
        fold=fold,
        preset=preset,
        cache_dir=corpus.cache_dir,
        classes=CLASSES,
    )


def mfcc_statistics(x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """Per clip, mean and std of each MFCC over its valid frames: (N, 2 * 40)."""
    mask = (torch.arange(x.shape[-1])[None, :] < lengths[:, None]).to(x.dtype)[:, None, None, :]  # (N,1,1,T)
    count = mask.sum(dim=-1)  # (N, 1, 1)
    mean = (x * mask).sum(dim=-1) / count  # (N, 1, 40)
    std = ((((x - mean[..., None]) * mask) ** 2).sum(dim=-1) / count).sqrt()
    return torch.cat([mean, std], dim=-1)[:, 0].numpy()


def _per_speaker_standardised(x: np.ndarray, speakers: tuple[str, ...]) -> np.ndarray:
    out = np.empty_like(x)
    names = np.asarray(speakers)
    for speaker in set(speakers):
        rows = names == speaker
        out[rows] = StandardScaler().fit_transform(x[rows])
    return out


def logistic_regression_ua(corpus: Corpus, fold: int, *, per_speaker: bool = False) -> float:
    """Fitted on the training and validation speakers (nothing is chosen), standardised on the
    training speakers (``per_speaker``: each speaker on its own unlabelled clips, the
    information the networks' per-speaker normalisation uses), scored on the test speakers."""
    data = fold_data(corpus, fold, MFCC_PRESET)
    splits = (data.train, data.valid, data.test)
    train, valid, test = (mfcc_statistics(s.x, s.valid_lengths) for s in splits)
    if per_speaker:
        train, valid, test = (_per_speaker_standardised(x, s.speakers) for x, s in zip((train, valid, test), splits))
    scaler = StandardScaler().fit(train)
    fit_x = scaler.transform(np.concatenate([train, valid]))
    fit_y = np.concatenate([data.train.y.numpy(), data.valid.y.numpy()])
    model = LogisticRegression(max_iter=5000).fit(fit_x, fit_y)
    predicted = model.predict(scaler.transform(test))
    return float(classification_metrics(data.test.y.numpy(), predicted, n_classes=len(data.classes))["ua"])


def run_network(data: FoldData, *, work: Path, evaluation: EvalSettings, **kind: Any) -> dict:
    started = time.perf_counter()
    result = run_fold(data, evaluation=evaluation, device=torch.device("cpu"), work_dir=work, **kind)
    return {
        "ua": result.test_ua,
        "valid_ua": result.valid_ua,
        "best_epoch": result.best_epoch,
        "architecture": result.architecture,
        "params": result.params,
        "search_stopped_early": result.search_stopped_early,
        "seconds": round(time.perf_counter() - started, 1),
    }


def paired_test(a: list[float], b: list[float]) -> dict:
    """One-sided Wilcoxon signed-rank test that ``a`` beats ``b`` (pairs in order)."""
    differences = np.asarray(a) - np.asarray(b)
    if np.allclose(differences, 0.0):
        return {"n_pairs": len(a), "mean_difference": 0.0, "p_value": 1.0, "wins": 0}
    test = wilcoxon(a, b, alternative="greater")
    return {
        "n_pairs": len(a),
        "mean_difference": float(differences.mean()),
        "wins": int((differences > 0).sum()),
        "losses": int((differences < 0).sum()),
        "statistic": float(test.statistic),
        "p_value": float(test.pvalue),
    }


def mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _pair(corpus: Corpus, root: Path, fold: int, seed: int) -> dict:
    """One (fold, seed): the search and its network, and the hand-made network, same recipe."""
    torch.set_num_threads(1)
    data = fold_data(corpus, fold)
    search = SEARCH.model_copy(update={"seed": seed})
    evaluation = RECIPE.model_copy(update={"seed": seed})
    searched = run_network(data, work=root / f"s{fold}-{seed}", evaluation=evaluation, search=search)
    handmade = run_network(data, work=root / f"b{fold}-{seed}", evaluation=evaluation, architecture="baseline")
    return {"fold": fold, "seed": seed, "searched": searched, "handmade": handmade}


def _ablation(corpus: Corpus, root: Path, name: str, fold: int, seed: int, genotype: str) -> float:
    torch.set_num_threads(1)
    evaluation = RECIPE.model_copy(update={**({} if name == "full recipe" else ABLATIONS[name]), "seed": seed})
    work = root / f"a{list(ABLATIONS).index(name) if name in ABLATIONS else 'full'}-{fold}"
    return run_network(fold_data(corpus, fold), work=work, evaluation=evaluation, architecture=genotype)["ua"]


def run(root: Path, *, seeds: list[int], fold_numbers: list[int], jobs: int, say: Callable[[str], None]) -> dict:
    corpus = prepare(root, fold_numbers=fold_numbers)
    logistic = {fold: logistic_regression_ua(corpus, fold) for fold in fold_numbers}
    logistic_speaker = {fold: logistic_regression_ua(corpus, fold, per_speaker=True) for fold in fold_numbers}
    say(
        "logistic regression on MFCC statistics: "
        + ", ".join(f"fold {f} {logistic[f]:.3f} (per speaker {logistic_speaker[f]:.3f})" for f in fold_numbers)
    )
    rows = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = [pool.submit(_pair, corpus, root, fold, seed) for fold in fold_numbers for seed in seeds]
        for future in as_completed(pending):
            row = future.result()
            row["logistic_ua"] = logistic[row["fold"]]
            row["logistic_per_speaker_ua"] = logistic_speaker[row["fold"]]
            rows.append(row)
            say(
                f"fold {row['fold']} seed {row['seed']}: searched {row['searched']['ua']:.3f} "
                f"({row['searched']['seconds']:.0f} s), hand-made {row['handmade']['ua']:.3f} "
                f"({row['handmade']['seconds']:.0f} s), logistic {row['logistic_ua']:.3f} [{len(rows)}/{len(pending)}]"
            )
        rows.sort(key=lambda r: (r["fold"], r["seed"]))
        genotypes = {r["fold"]: r["searched"]["architecture"] for r in rows if r["seed"] == seeds[0]}
        names = ["full recipe", *ABLATIONS]
        futures = {
            (name, fold): pool.submit(_ablation, corpus, root, name, fold, seeds[0], genotypes[fold])
            for name in names
            for fold in fold_numbers
        }
        ablation = {}
        for name in names:
            uas = [futures[name, fold].result() for fold in fold_numbers]
            ablation[name] = {"fold_ua": uas, "mean_ua": mean(uas)}
            say(f"ablation {name}: mean UA {mean(uas):.3f}")
    full = ablation["full recipe"]["mean_ua"]
    for name in ABLATIONS:
        ablation[name]["cost"] = full - ablation[name]["mean_ua"]

    searched_ua = [r["searched"]["ua"] for r in rows]
    handmade_ua = [r["handmade"]["ua"] for r in rows]
    logistic_ua = [r["logistic_ua"] for r in rows]
    logistic_speaker_ua = [r["logistic_per_speaker_ua"] for r in rows]
    searched_vs_handmade = paired_test(searched_ua, handmade_ua)
    results = {
        "corpus": "built-in synthetic corpus: 10 speakers, 5 sessions, 60 utterances per speaker",
        "protocol": f"loso folds {fold_numbers}, seeds {seeds}, classes {'/'.join(CLASSES)}, preset {PRESET}",
        "search_settings": SEARCH.model_dump(mode="json"),
        "eval_settings": RECIPE.model_dump(mode="json"),
        "chance_ua": 1 / len(CLASSES),
        "mean_ua": {
            "searched": mean(searched_ua),
            "handmade": mean(handmade_ua),
            "logistic": mean(logistic_ua),
            "logistic_per_speaker": mean(logistic_speaker_ua),
        },
        "searched_vs_handmade": searched_vs_handmade,
        "searched_vs_logistic": paired_test(searched_ua, logistic_ua),
        "handmade_vs_logistic": paired_test(handmade_ua, logistic_ua),
        "searched_vs_logistic_per_speaker": paired_test(searched_ua, logistic_speaker_ua),
        "pairs": rows,
        "ablation": ablation,
    }
    results["goal"] = {
        "searched_beats_handmade_p_below_0.05": searched_vs_handmade["p_value"] < 0.05,
        "both_beat_logistic": mean(searched_ua) > mean(logistic_ua) and mean(handmade_ua) > mean(logistic_ua),
    }
    results["goal"]["met"] = all(results["goal"].values())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per fold (0..N-1)")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recipe.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = run(
            Path(tmp),
            seeds=list(range(args.seeds)),
            fold_numbers=args.folds,
            jobs=args.jobs,
            say=lambda line: print(line, flush=True),
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out, json.dumps(results, indent=2) + "\n")
    means, test = results["mean_ua"], results["searched_vs_handmade"]
    print(
        f"mean test UA: searched {means['searched']:.3f}, hand-made {means['handmade']:.3f}, "
        f"logistic {means['logistic']:.3f}; searched > hand-made: p = {test['p_value']:.3g} "
        f"over {test['n_pairs']} pairs; goal {'met' if results['goal']['met'] else 'NOT met'} "
        f"({results['seconds']:.0f} s) -> {args.out}"
    )


if __name__ == "__main__":
    main()
