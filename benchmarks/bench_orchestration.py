"""Per-trial overhead of running folds as Ray Tune trials vs the same folds in a plain loop.

    python benchmarks/bench_orchestration.py [--trials 50] [--out benchmarks/results/orchestration.json]

Both sides run the same tiny trials (a 4-speaker synthetic corpus, one LOSO fold, 1 search and
1 evaluation epoch of a 3-cell supernet on logmel-32) one at a time: Tune with
``max_concurrent=1`` and ``reuse_actors=True``, including our per-epoch checkpoints, leaderboard
row and trial status file; the loop calls ``trainers.run_fold`` directly. The overhead per
trial is the difference of the two wall times divided by the number of trials. Ray's start-up
is timed separately and not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml


def make_config(root: Path, trials: int) -> dict:
    return {
        "name": "overhead",
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "root": str(root / "corpus"),
            "preset": "logmel-32",
            "synthetic": {"speakers": 4, "per_speaker": 8, "seed": 0},
            "cache_dir": str(root / "cache"),
            "classes": ["neu", "hap", "sad", "ang"],
            "merges": {"exc": "hap"},
        },
        "folds": {"scheme": "loso", "use": [1]},
        "search": {"epochs": 1, "batch_size": 32, "weights": {"lr_min": 0.0}},
        "eval": {"epochs": 1, "batch_size": 32, "weights": {"lr_min": 0.0}},
        "space": {"layers": 3, "nodes": 1, "init_channels": 4, "lstm_hidden": 8, "seed": {"grid": list(range(trials))}},
        "tune": {
            "num_samples": 1,
            "max_concurrent": 1,
            "searcher": "grid",
            "pruner": {"kind": "none"},
            "resources": {"cpu": 1},
            "storage": str(root / "runs"),
            "reuse_actors": True,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/orchestration.json"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    import torch
    from rich.console import Console

    from orchestrator.config import load_config, settings_for_trial
    from orchestrator.experiment import prepare_data, run_experiment
    from trainers.fold_data import load_fold_data
    from trainers.run_fold import run_fold

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "exp.yaml").write_text(yaml.safe_dump(make_config(root, args.trials)))
        config = load_config(root / "exp.yaml")
        prepared = prepare_data(config, progress=False)

        started = time.perf_counter()
        data = load_fold_data(
            manifest=prepared.manifest,
            folds=prepared.folds,
            fold=1,
            preset="logmel-32",
            cache_dir=config.data.cache_dir,
            classes=prepared.classes,
        )
        for seed in range(args.trials):
            search, evaluation = settings_for_trial(config, {"seed": seed})
            run_fold(
                data,
                evaluation=evaluation,
                search=search,
                device=torch.device("cpu"),
                work_dir=root / "loop" / str(seed),
            )
        loop_seconds = time.perf_counter() - started

        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        ray_start_seconds = time.perf_counter() - started
        try:
            started = time.perf_counter()
            summary = run_experiment(config, prepared=prepared, console=Console(quiet=True))
            tune_seconds = time.perf_counter() - started
        finally:
            ray.shutdown()
    results = {
        "trials": args.trials,
        "completed": summary.completed,
        "plain_loop_seconds": round(loop_seconds, 2),
        "tune_seconds": round(tune_seconds, 2),
        "ray_start_seconds": round(ray_start_seconds, 2),
        "overhead_per_trial_seconds": round((tune_seconds - loop_seconds) / args.trials, 3),
        "tune_over_loop": round(tune_seconds / loop_seconds, 2),
        "what": "1 fold x (1 search + 1 eval epoch) per trial, sequential on both sides, reuse_actors=True",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{args.trials} trials: plain loop {loop_seconds:.1f} s, Tune {tune_seconds:.1f} s "
        f"(+{results['overhead_per_trial_seconds']:.3f} s per trial; Ray start {ray_start_seconds:.1f} s) -> {args.out}"
    )


if __name__ == "__main__":
    main()
