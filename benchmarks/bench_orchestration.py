"""Per-trial overhead of running folds as Ray Tune trials vs the same folds in a plain loop.

    python benchmarks/bench_orchestration.py [--trials 50] [--out benchmarks/results/orchestration.json]

Both sides run the same tiny trials (a 4-speaker synthetic corpus, one LOSO fold, 1 search and
1 evaluation epoch of a 3-cell supernet on logmel-32) one at a time: Tune with
``max_concurrent=1`` and ``reuse_actors=True``, including the outer fold's Optuna study (the
searcher's ask, the scheduler's tell), our per-epoch checkpoints, leaderboard row and trial
status file; the loop calls ``trainers.run_fold`` directly. The overhead per trial is the
difference of the two wall times divided by the number of trials. Ray's start-up is timed
separately and not counted.

Changed with nested selection (issue 24): the trials used to differ only by their seed (a
``seed`` grid of ``--trials`` values, which sernas now refuses: seeds are replicates, not a
hyperparameter), so the loop ran seeds 0..N-1. Now the space is fixed (seed 0) and Tune runs
``--trials`` identical trials on the one outer fold (``tune.num_samples`` counts trials per
outer fold; one fold here, so it is the trial count), each training one network on the outer
fold's own validation split (no ``folds.inner``), and the loop runs the same settings
``--trials`` times: the same work per trial on both sides, as before. The config also sets
``folds.valid_speakers: 1`` and ``search.arch_data: valid``, the defaults of the last
measurement: the 4-speaker corpus has 2 non-test speakers, too few for today's defaults (2
validation speakers; alphas on a share of the training speakers).
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
        "folds": {"scheme": "loso", "use": [1], "valid_speakers": 1},  # 4 speakers: 2 test, 1 valid, 1 train
        # One training speaker: the alphas learn on the validation speaker (the default splits the
        # training speakers, which needs two).
        "search": {"epochs": 1, "batch_size": 32, "arch_data": "valid", "weights": {"lr_min": 0.0}},
        "eval": {"epochs": 1, "batch_size": 32, "weights": {"lr_min": 0.0}},
        "space": {"layers": 3, "nodes": 1, "init_channels": 4, "lstm_hidden": 8, "seed": 0},
        "tune": {
            "num_samples": trials,  # per outer fold; one outer fold here
            "max_concurrent": 1,
            "searcher": "random",  # nothing sampled: every trial has the fixed space
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
    from orchestrator.config.optuna_space import fixed_tune_params
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
        search, evaluation = settings_for_trial(config, fixed_tune_params(config))  # what every Tune trial runs
        for number in range(args.trials):
            run_fold(
                data,
                evaluation=evaluation,
                search=search,
                device=torch.device("cpu"),
                work_dir=root / "loop" / str(number),
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
        "what": "1 outer fold (its own validation split, no inner folds) x (1 search + 1 eval epoch) per trial, "
        "identical trials (fixed space, seed 0), sequential on both sides, reuse_actors=True, with the outer fold's "
        "Optuna study",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{args.trials} trials: plain loop {loop_seconds:.1f} s, Tune {tune_seconds:.1f} s "
        f"(+{results['overhead_per_trial_seconds']:.3f} s per trial; Ray start {ray_start_seconds:.1f} s) -> {args.out}"
    )


if __name__ == "__main__":
    main()
