"""What storing per-utterance predictions costs: file size and write time per 1,000 utterances.

    python benchmarks/bench_predictions.py [--utterances 1000] [--classes 4] [--repeats 20] [--out ...]

A trial writes one predictions file (``orchestrator.leaderboard.write_predictions``) per network,
beside its fold row (``write_fold_row``). Both are written ``--repeats`` times into a temporary
storage folder, in the same run, so the predictions' write time is also given as a ratio to the
fold row's (the baseline every trial already paid). Probabilities are random (incompressible,
the worst case for size); ids and speakers look like IEMOCAP's.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.leaderboard import predictions_path, write_fold_row, write_predictions
from orchestrator.leaderboard.schema import FoldRow
from trainers.atomic_io import write_text_atomically

HERE = Path(__file__).resolve().parent


def predictions_frame(utterances: int, classes: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = [f"class{k}" for k in range(classes)]
    probabilities = rng.dirichlet(np.ones(classes), size=utterances).astype(np.float32)
    return pd.DataFrame(
        {
            "split": np.where(np.arange(utterances) < utterances // 2, "valid", "test"),
            "utt_id": [f"Ses0{1 + i % 5}F_impro0{i % 9}_F{i:03d}" for i in range(utterances)],
            "speaker": [f"Ses0{1 + i % 5}{'FM'[i % 2]}" for i in range(utterances)],
            "label": [names[k] for k in rng.integers(classes, size=utterances)],
            "predicted": [names[k] for k in probabilities.argmax(axis=1)],
            "probabilities": list(probabilities),
        }
    )


def fold_row(attempt: int) -> FoldRow:
    return FoldRow.finished(
        experiment="bench",
        trial_id="t1",
        fold=1,
        n_folds=5,
        attempt=attempt,
        node_id="local",
        hostname="bench",
        seed=0,
        params_json={"seed": 0},
        **dict.fromkeys(
            ("layers", "nodes", "init_channels", "lstm_hidden", "darts_order", "pc_k", "weights_lr", "search_epochs")
        ),
        eval_epochs=None,
        dataset="synthetic",
        feature_preset="logmel-32",
        fold_scheme="loso",
        classes=["a", "b", "c", "d"],
        genotype=None,
        genotype_hash="baseline",
        test_ua=0.5,
        test_wa=0.5,
        test_macro_f1=0.5,
        test_absent_classes=[],
        valid_absent_classes=[],
        confusion=[[1]],
        test_utterances=1,
        valid_ua=0.5,
        best_epoch=1,
        params=1,
        search_seconds=0.0,
        eval_seconds=1.0,
        search_epochs_run=0,
        device="cpu",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "predictions.json")
    args = parser.parse_args(argv)
    frame = predictions_frame(args.utterances, args.classes)
    rows, predictions = [], []
    with tempfile.TemporaryDirectory() as folder:
        storage = Path(folder)
        for attempt in range(1, args.repeats + 1):
            started = time.perf_counter()
            write_fold_row(storage, fold_row(attempt))
            rows.append(time.perf_counter() - started)
            started = time.perf_counter()
            write_predictions(
                storage, frame, experiment="bench", stage="search", trial_id="t1", fold=1, attempt=attempt
            )
            predictions.append(time.perf_counter() - started)
        size = (
            (storage / predictions_path(experiment="bench", stage="search", trial_id="t1", fold=1, attempt=1))
            .stat()
            .st_size
        )
    per_thousand = 1000 / args.utterances
    row_ms, predictions_ms = statistics.median(rows) * 1e3, statistics.median(predictions) * 1e3
    results = {
        "what": "one network's predictions file vs its fold row, written to a local folder (median of repeats)",
        "utterances": args.utterances,
        "classes": args.classes,
        "repeats": args.repeats,
        "bytes_per_1000_utterances": round(size * per_thousand),
        "write_ms_per_1000_utterances": round(predictions_ms * per_thousand, 2),
        "fold_row_write_ms": round(row_ms, 2),
        "predictions_over_fold_row_write": round(predictions_ms / row_ms, 2),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    write_text_atomically(args.out, json.dumps(results, indent=2) + "\n")
    print(
        f"predictions of {args.utterances} utterances x {args.classes} classes: {size / 1024:.1f} KiB, "
        f"{predictions_ms:.1f} ms to write ({results['predictions_over_fold_row_write']}x the fold row's "
        f"{row_ms:.1f} ms); per 1,000 utterances {results['bytes_per_1000_utterances'] / 1024:.1f} KiB, "
        f"{results['write_ms_per_1000_utterances']} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
