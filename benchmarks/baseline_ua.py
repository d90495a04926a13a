"""A trivial speaker-independent baseline on the synthetic corpus: what any searched model must beat.

    python benchmarks/baseline_ua.py [--corpus DIR] [--out benchmarks/results/baseline_ua.json]

Pipeline: the default synthetic corpus (generated if absent) -> manifest -> ``paper-mfcc``
features -> LOSO folds over neu/hap/sad/ang -> per utterance the MFCC means over time (128
values) -> standardised on the fold's training speakers -> multinomial logistic regression
fitted on train + valid speakers (no model selection happens, so valid is plain training data)
-> unweighted accuracy (mean per-class recall) on the test session. Needs scikit-learn (dev extra).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, recall_score
from sklearn.preprocessing import StandardScaler

from trainers.corpora.synthetic import generate_synthetic_corpus
from trainers.features import extract_features, load_features
from trainers.folds import FoldProtocol, make_folds
from trainers.manifest import build_manifest

CLASSES = ("neu", "hap", "sad", "ang")


def run(corpus_dir: Path, cache_dir: Path) -> dict:
    corpus = generate_synthetic_corpus(corpus_dir)
    manifest = build_manifest(dataset="iemocap", root=corpus.root).frame
    extract_features(manifest, preset="paper-mfcc", cache_dir=cache_dir)
    features = load_features(manifest, preset="paper-mfcc", cache_dir=cache_dir)  # (N, 1, 128, 128)
    mean_mfcc = features[:, 0].mean(dim=-1).numpy()  # (N, 128)
    row_of = {utt_id: row for row, utt_id in enumerate(manifest["utt_id"])}
    folds = make_folds(manifest, protocol=FoldProtocol(scheme="loso", classes=CLASSES))
    per_fold = []
    for fold, table in folds.groupby("fold"):
        rows = table["utt_id"].map(row_of).to_numpy()
        is_test = (table["split"] == "test").to_numpy()
        x, y = mean_mfcc[rows], table["label"].to_numpy()
        scaler = StandardScaler().fit(x[~is_test])
        model = LogisticRegression(max_iter=2000).fit(scaler.transform(x[~is_test]), y[~is_test])
        predicted = model.predict(scaler.transform(x[is_test]))
        per_fold.append(
            {
                "fold": int(fold),
                "test_utterances": int(is_test.sum()),
                # UA as trainers.metrics defines it: mean recall over every protocol class
                "ua": recall_score(y[is_test], predicted, labels=list(CLASSES), average="macro", zero_division=0),
                "wa": accuracy_score(y[is_test], predicted),
            }
        )
    return {
        "corpus": {"utterances": corpus.n_utterances, "speakers": corpus.n_speakers},
        "protocol": "loso, classes neu/hap/sad/ang, mean paper-mfcc over time, logistic regression",
        "chance_ua": 1 / len(CLASSES),
        "mean_ua": float(np.mean([f["ua"] for f in per_fold])),
        "mean_wa": float(np.mean([f["wa"] for f in per_fold])),
        "folds": per_fold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help="synthetic corpus folder (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/baseline_ua.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        corpus_dir = args.corpus or Path(tmp) / "corpus"
        results = run(corpus_dir, Path(tmp) / "features")
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    folds = ", ".join(f"{f['ua']:.3f}" for f in results["folds"])
    print(
        f"LOSO logistic regression on mean paper-mfcc: UA {results['mean_ua']:.3f} (folds {folds}; "
        f"chance {results['chance_ua']:.2f}), WA {results['mean_wa']:.3f} -> {args.out}"
    )


if __name__ == "__main__":
    main()
