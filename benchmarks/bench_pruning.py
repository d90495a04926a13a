"""What pruning saves: trial-epochs spent and best mean UA with the Wilcoxon and median pruners vs none.

    python benchmarks/bench_pruning.py [--trials 12] [--out benchmarks/results/pruning.json]

One real experiment without pruning (local Ray, real training, 2 trials at a time) runs every
trial of a seeded random search over all folds and records every epoch and fold result Tune
received (each trial's ``result.json``). The pruners are then replayed over those records:
our ``OptunaPruningScheduler`` with the real Optuna ``WilcoxonPruner`` (over folds) and
``MedianPruner`` (over epochs) sees the trials one after another, in the order Tune started
them, and stops each where it would have. Training is seeded per trial, so a pruned trial's
results are a prefix of its unpruned run: the replay gives what a live experiment with one
trial at a time and the same sampler seed would give, without paying for three experiments.
(With several trials at a time, a live pruner sees fewer finished trials when it decides, so
it prunes somewhat later.)

Per arm: trial-epochs (search and evaluation epochs over all folds), trials completed and
pruned, and the mean test UA of the trial that validation chooses (best mean validation UA over
the trials that ran every fold). Goal (issue #8): >= 40 % fewer trial-epochs than no pruning
with that test UA within 0.01 of it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import yaml

from orchestrator.selection import MEAN_TEST_UA, OBJECTIVE

ARMS = {
    "none": {"kind": "none"},
    # Optuna's default p_threshold is 0.1; with 5 folds that allows pruning only after fold 4
    # (the smallest p-value of n paired folds is 0.5 ** n), so this uses the demo's 0.3, which
    # allows it after fold 2. Both are recorded in the results.
    "wilcoxon": {"kind": "wilcoxon", "p_threshold": 0.3, "n_startup_steps": 2},
    "median": {"kind": "median", "n_startup_trials": 3, "n_warmup_steps": 5},
}


def make_config(root: Path, *, arm: str, trials: int, seed: int) -> dict:
    """A small experiment whose space has good and poor regions (learning rate over 3 decades)."""
    return {
        "name": f"prune-{arm}",
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "root": str(root / "corpus"),
            "preset": "logmel-32",
            "synthetic": {"speakers": 10, "per_speaker": 16, "seed": 0},
            "cache_dir": str(root / "cache"),
            "classes": ["neu", "hap", "sad", "ang"],
            "merges": {"exc": "hap"},
        },
        "folds": {"scheme": "speaker-pairs", "valid_speakers": 1, "seed": 0},
        "search": {"epochs": 1, "batch_size": 16, "order": "first", "weights": {"lr_min": 0.0}},
        "eval": {"epochs": 8, "batch_size": 16, "weights": {"lr_min": 0.0}},
        "space": {
            "layers": 2,
            "nodes": 1,
            "init_channels": 4,
            "lstm_hidden": {"choice": [16, 32]},
            "weights_lr": {"loguniform": [0.001, 0.3]},
            "seed": {"choice": [0, 1, 2]},
        },
        "tune": {
            "num_samples": trials,
            "max_concurrent": 2,
            "searcher": "random",
            "seed": seed,
            "pruner": ARMS[arm],
            "resources": {"cpu": 1},
            "storage": str(root / "runs"),
            "reuse_actors": True,
        },
    }


def run_unpruned(root: Path, *, trials: int, seed: int) -> tuple[dict, list[list[dict]]]:
    """Run the experiment without pruning; return its summary and every trial's results in start order."""
    from rich.console import Console

    from orchestrator.config import load_config
    from orchestrator.experiment import prepare_data, run_experiment, storage_root

    path = root / "none.yaml"
    path.write_text(yaml.safe_dump(make_config(root, arm="none", trials=trials, seed=seed)))
    config = load_config(path)
    prepared = prepare_data(config, progress=False)
    started = time.perf_counter()
    summary = run_experiment(config, prepared=prepared, console=Console(quiet=True))
    seconds = time.perf_counter() - started
    histories = []
    for result_file in storage_root(config).local_path(config.name).glob("*/result.json"):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        histories.append(rows)
    histories.sort(key=lambda rows: rows[0]["trial_id"])  # Tune numbers trials in the order it starts them
    info = {
        "trials": summary.trials,
        "completed": summary.completed,
        "failed": summary.failed,
        "trial_epochs_reported": summary.epochs_reported,
        "seconds": round(seconds, 1),
        "folds": int(prepared.folds["fold"].nunique()),
    }
    return info, histories


def replay(histories: list[list[dict]], *, arm: str, folds: int) -> dict:
    """Feed the recorded results to the pruning scheduler, one trial after another."""
    from ray.tune.schedulers import TrialScheduler

    from orchestrator.pruning import FOLD_REPORT, OptunaPruningScheduler, make_pruner

    options = {key: value for key, value in ARMS[arm].items() if key != "kind"}
    pruner, over = make_pruner(ARMS[arm]["kind"], **options)
    scheduler = None if pruner is None else OptunaPruningScheduler(pruner=pruner, over=over)
    epochs = completed = pruned = 0
    finals: list[tuple[float, dict]] = []
    for rows in histories:
        trial = SimpleNamespace(trial_id=rows[0]["trial_id"])
        if scheduler is not None:
            scheduler.on_trial_add(None, trial)
        stopped = False
        for result in rows:
            if result.get("report") != FOLD_REPORT:
                epochs += 1
            if scheduler is not None and scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                stopped = True
                break
        if stopped:
            pruned += 1
            continue
        last = rows[-1]
        if scheduler is not None:
            scheduler.on_trial_complete(None, trial, last)
        if int(last.get("folds_done", 0)) == folds and not math.isnan(float(last[OBJECTIVE])):
            completed += 1
            finals.append((float(last[OBJECTIVE]), float(last[MEAN_TEST_UA]), rows[0]["config"]))
    best = max(finals, key=lambda item: item[0]) if finals else None  # chosen by validation, as sernas does
    return {
        "pruner": ARMS[arm],
        "trials": len(histories),
        "completed": completed,
        "pruned": pruned,
        "trial_epochs": epochs,
        "chosen_mean_valid_ua": None if best is None else round(best[0], 4),
        "chosen_mean_test_ua": None if best is None else round(best[1], 4),
        "chosen_params": None if best is None else best[2],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="the random searcher's seed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pruning.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            live, histories = run_unpruned(Path(tmp), trials=args.trials, seed=args.seed)
        finally:
            ray.shutdown()
    arms = {arm: replay(histories, arm=arm, folds=live["folds"]) for arm in ARMS}
    baseline = arms["none"]
    if baseline["trial_epochs"] != live["trial_epochs_reported"]:
        raise RuntimeError(
            f"replay without a pruner counts {baseline['trial_epochs']} trial-epochs, the experiment "
            f"reported {live['trial_epochs_reported']}: the records are incomplete"
        )
    for name, arm in arms.items():
        if name == "none":
            continue
        arm["trial_epochs_saved"] = round(1 - arm["trial_epochs"] / baseline["trial_epochs"], 3)
        arm["chosen_mean_test_ua_gap"] = (
            None
            if arm["chosen_mean_test_ua"] is None or baseline["chosen_mean_test_ua"] is None
            else round(baseline["chosen_mean_test_ua"] - arm["chosen_mean_test_ua"], 4)
        )
        arm["goal_met"] = bool(
            arm["trial_epochs_saved"] >= 0.40
            and arm["chosen_mean_test_ua_gap"] is not None
            and arm["chosen_mean_test_ua_gap"] <= 0.01
        )
    results = {
        "trials": args.trials,
        "searcher": f"random, seed {args.seed}",
        "unpruned_run": live,
        "what": "synthetic 10 speakers x 16 utterances, logmel-32, 2-cell supernet with 1 node, 5 speaker-pair folds, per fold 1 first-order "
        "search epoch + 8 evaluation epochs; pruners replayed over the recorded results, one trial at a time",
        "arms": arms,
        "goal": ">= 40% fewer trial-epochs than none, test UA of the validation-chosen trial within 0.01",
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"unpruned: {live['trials']} trials, {baseline['trial_epochs']} trial-epochs, chosen trial's mean test UA "
        f"{baseline['chosen_mean_test_ua']} ({live['seconds']:.0f} s)"
    )
    for name in ("wilcoxon", "median"):
        arm = arms[name]
        print(
            f"{name}: {arm['pruned']} of {arm['trials']} pruned, {arm['trial_epochs_saved']:.0%} fewer trial-epochs, "
            f"chosen trial's mean test UA {arm['chosen_mean_test_ua']} (goal {'met' if arm['goal_met'] else 'NOT met'})"
        )
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
