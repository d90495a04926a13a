"""Driver memory over a long experiment: resident memory of the ``sernas search`` driver as trials finish.

    python benchmarks/bench_driver_memory.py [--trials 500] [--out benchmarks/results/driver_memory.json]

The driver is the real one (``run_experiment``: Ray Tune with our ``OuterFoldSearcher`` asking
each outer fold's Optuna TPE study, the Optuna Wilcoxon pruning scheduler reporting to those
studies, the progress callback and its trial status files, per-epoch checkpoints), on a local
Ray with 2 CPUs. Only the trials are stand-ins: each reports what a real search trial reports
(``orchestrator.trial.run_trial``: per inner fold an epoch result with a checkpoint, then an
inner-fold summary) without training, so 500 trials finish in minutes. The driver never trains,
so what it holds per trial is the same either way.

A thread samples the driver's RSS every 0.25 s together with the number of finished trials (their
status files); the result is the RSS when 0, 50, 100, 250 and 500 trials had finished, and the
growth per finished trial between 100 and the last.

Changed with nested selection (issue 24): a trial used to run 3 outer folds and one study held
every trial. Now ``tune.num_samples`` counts trials per outer fold, so the experiment has 5
outer folds (LOSO over 10 synthetic speakers) and ``--trials`` is rounded up to a multiple of 5
(500: 100 per outer fold's study); each stand-in belongs to one outer fold and reports its 3
inner folds (``folds.inner: 3``, which the Wilcoxon pruner with p_threshold 0.3 needs), so a
trial reports as much as before (3 x (1 epoch + 1 fold summary)). The space samples
``lstm_hidden`` where it sampled ``seed`` (a sampled seed is refused), so TPE still has 4
parameters.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.selection import FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE

OUTER_FOLDS = 5  # LOSO over 10 speakers (5 sessions)
INNER_FOLDS = 3  # units per trial, from each outer fold's 8 non-test speakers
EPOCHS_PER_UNIT = 1  # the stand-in's one epoch report per inner fold (its prune_step schedule)


def stand_in_trial(params: dict[str, Any], *, inputs: Any) -> None:
    """Report like ``orchestrator.trial.run_trial`` (per inner fold an epoch result with a
    checkpoint, then an inner-fold summary), for the outer fold in ``params``."""
    from ray import tune

    from orchestrator.pruning import FINAL_STEP, FOLD_REPORT, PRUNE_STEP
    from orchestrator.study import MEAN_PARAMS, OUTER_FOLD_KEY
    from orchestrator.trial import EPOCH_REPORT

    outer_fold = int(params[OUTER_FOLD_KEY])
    rng = random.Random(json.dumps(params, sort_keys=True, default=str))
    quality = rng.random()
    with tempfile.TemporaryDirectory(prefix="sernas-stand-in-") as work:
        Path(work, "state.json").write_text(json.dumps({"attempt": 1, "done": {}}))
        uas: list[float] = []
        for unit in range(1, INNER_FOLDS + 1):
            ua = min(1.0, 0.25 + 0.5 * quality + 0.05 * rng.random())
            facts = {"fold": outer_fold, "inner_fold": unit, "unit": unit, "n_folds": INNER_FOLDS}
            tune.report(
                {
                    **facts,
                    "report": EPOCH_REPORT,
                    "phase": "eval",
                    "epoch": 1,
                    "valid_ua": ua,
                    PRUNE_STEP: unit * EPOCHS_PER_UNIT,
                    FINAL_STEP: unit == INNER_FOLDS,
                    "folds_done": len(uas),
                    OBJECTIVE: sum(uas) / len(uas) if uas else float("nan"),
                    MEAN_TEST_UA: sum(uas) / len(uas) if uas else float("nan"),
                },
                checkpoint=tune.Checkpoint.from_directory(work),
            )
            uas.append(ua)
            tune.report(
                {
                    **facts,
                    "report": FOLD_REPORT,
                    FOLD_OBJECTIVE: ua,
                    FOLD_TEST_UA: ua,
                    "fold_test_wa": ua,
                    "fold_test_macro_f1": ua,
                    "genotype_hash": f"{rng.getrandbits(48):012x}",
                    "params": 50_000,
                    "folds_done": len(uas),
                    OBJECTIVE: sum(uas) / len(uas),
                    MEAN_TEST_UA: sum(uas) / len(uas),
                    MEAN_PARAMS: 50_000.0,
                    "search_seconds": 0.0,
                    "eval_seconds": 0.0,
                },
                checkpoint=tune.Checkpoint.from_directory(work),
            )


def trials_per_fold(trials: int) -> int:
    """``tune.num_samples`` for at least ``trials`` trials over the outer folds."""
    return max(1, math.ceil(trials / OUTER_FOLDS))


def make_config(root: Path, trials: int) -> dict:
    return {
        "name": "driver-memory",
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "root": str(root / "corpus"),
            "preset": "logmel-32",
            "synthetic": {"speakers": 2 * OUTER_FOLDS, "per_speaker": 4, "seed": 0},
            "cache_dir": str(root / "cache"),
            "classes": ["neu", "hap", "sad", "ang"],
            "merges": {"exc": "hap"},
        },
        "folds": {"scheme": "loso", "use": list(range(1, OUTER_FOLDS + 1)), "inner": INNER_FOLDS},
        "space": {
            "layers": {"choice": [3, 4, 5]},
            "init_channels": {"choice": [4, 8, 16]},
            "weights_lr": {"loguniform": [0.001, 0.1]},
            "lstm_hidden": {"choice": [16, 32, 64]},
            "seed": 0,
        },
        "tune": {
            "num_samples": trials_per_fold(trials),  # per outer fold
            "max_concurrent": 2,
            "searcher": "optuna-tpe",
            "pruner": {"kind": "wilcoxon", "p_threshold": 0.3, "n_startup_steps": 2},
            "resources": {"cpu": 1},
            "storage": str(root / "runs"),
            "reuse_actors": True,
        },
    }


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/driver_memory.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    from rich.console import Console

    from orchestrator.config import load_config
    from orchestrator.experiment import prepare_data, run_experiment

    samples: list[tuple[float, int, int]] = []  # (seconds, finished trials, rss)
    with tempfile.TemporaryDirectory(prefix="bench-driver-memory-") as tmp:
        root = Path(tmp)
        (root / "exp.yaml").write_text(yaml.safe_dump(make_config(root, args.trials)))
        total = trials_per_fold(args.trials) * OUTER_FOLDS
        config = load_config(root / "exp.yaml")
        prepared = prepare_data(config, progress=False)
        status_dir = root / "runs" / "trials" / config.name
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        stop = threading.Event()
        started = time.perf_counter()

        def sample() -> None:
            while not stop.is_set():
                finished = len(os.listdir(status_dir)) if status_dir.is_dir() else 0
                samples.append((time.perf_counter() - started, finished, _rss_bytes()))
                stop.wait(0.25)

        try:
            gc.collect()
            rss_start = _rss_bytes()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            summary = run_experiment(
                config, prepared=prepared, console=Console(quiet=True), trial_function=stand_in_trial
            )
            stop.set()
            sampler.join()
            finished = len(os.listdir(status_dir)) if status_dir.is_dir() else 0
            samples.append((time.perf_counter() - started, finished, _rss_bytes()))  # as the run returns
            gc.collect()
            rss_after = _rss_bytes()
            finished_files = len(os.listdir(status_dir))
        finally:
            stop.set()
            ray.shutdown()
    seconds = time.perf_counter() - started

    def rss_at(finished: int) -> int | None:
        """The RSS of the first sample taken once ``finished`` trials had finished (None if never)."""
        hits = [rss for _, done, rss in samples if done >= finished]
        return hits[0] if hits else None

    milestones = sorted({0, 50, 100, 250, total} & set(range(total + 1)))
    at = {str(m): rss_at(m) for m in milestones}
    last_done = max(done for _, done, _ in samples)
    rss_last = max(rss for _, done, rss in samples if done == last_done)
    base = at.get("100") or at.get("0")
    growth = (rss_last - base) / max(1, last_done - (100 if at.get("100") else 0)) if base else None
    results = {
        "trials": total,
        "trials_per_outer_fold": trials_per_fold(args.trials),
        "completed": summary.completed,
        "pruned": summary.pruned,
        "failed": summary.failed,
        "finished_status_files": finished_files,
        "seconds": round(seconds, 1),
        "driver_rss_mib_at_start": round(rss_start / 2**20, 1),
        "driver_rss_mib_when_finished": {k: None if v is None else round(v / 2**20, 1) for k, v in at.items()},
        "driver_rss_mib_peak": round(max(rss for _, _, rss in samples) / 2**20, 1),
        "driver_rss_mib_after_run": round(rss_after / 2**20, 1),
        "growth_kib_per_finished_trial": None if growth is None else round(growth / 1024, 1),
        "what": f"real driver (Tune + {OUTER_FOLDS} outer folds' Optuna TPE studies + Wilcoxon scheduler + progress "
        f"callback + status files), stand-in trials, each on one outer fold, reporting {INNER_FOLDS} inner folds x "
        "(1 epoch + 1 fold summary) with checkpoints",
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{total} trials in {seconds:.0f} s ({summary.completed} completed, {summary.pruned} pruned): driver RSS "
        + ", ".join(f"{v} MiB at {k}" for k, v in results["driver_rss_mib_when_finished"].items())
        + f"; {results['growth_kib_per_finished_trial']} KiB per finished trial -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
