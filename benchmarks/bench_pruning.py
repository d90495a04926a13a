"""What pruning saves under nested selection: trial-epochs and the nested test UA estimate, Wilcoxon and median pruners vs none.

    python benchmarks/bench_pruning.py [--trials 6] [--out benchmarks/results/pruning.json]

One real experiment without pruning (local Ray, real training, 2 trials at a time) runs a
seeded random search with ``--trials`` trials PER OUTER FOLD (``tune.num_samples``): 10
synthetic speakers in 5 speaker-pair outer folds, so 5 x ``--trials`` trials, each belonging to
one outer fold and training one network on each of its 4 inner folds (``folds.inner: 4``: the
outer fold's 8 non-test speakers dealt into 4 groups of 2, each group validating once). It
records every epoch and inner-fold result Tune received (each trial's ``result.json``).

The pruners are then replayed over those records, per arm in a fresh journal with one Optuna
study per outer fold (``orchestrator.study``), one trial after another in the order the
searcher handed them out (read from the run's own studies). For each trial the replay does what ``orchestrator.nested.OuterFoldSearcher`` does (in
the trial's outer-fold study: enqueue the recorded parameters, ``ask``, tag the trial with its
Tune trial id), then feeds its results to our ``OptunaPruningScheduler`` with the real Optuna
``WilcoxonPruner`` (over inner folds: each inner fold's validation UA, step = its position) or
``MedianPruner`` (over epochs: the validation UA at each ``prune_step`` of the trial's fixed
schedule), which stops it where it would have and tells the study how it ended. A trial is
never pruned after its last inner fold or at its last epoch. Every study's random sampler is
seeded by (seed, outer fold) and proposes independently of its history, and training is seeded
(fixed ``seed: 0``), so a pruned trial's results are a prefix of its unpruned run: the replay
gives what a live experiment with one trial at a time and the same sampler seed would give,
without paying for three experiments. (Trials are handed to the outer folds in turn, so of 2
trials running at once neither is usually waiting on the other's study; with more at a time, a
live pruner may see fewer finished trials of its fold when it decides, and prune later.)

Per arm, as the studies record it: trial-epochs (search and evaluation epochs over all inner
folds), trials completed and pruned, and the nested estimate (``orchestrator.selection``): on
each outer fold, the trial its study records COMPLETE with the best mean validation UA over
its inner folds (ties: the earliest trial), that trial's test UA on the outer fold's test
speakers (mean over its 4 inner-fold networks), then the mean over the 5 outer folds. Goal
(issue #8): >= 40 % fewer trial-epochs than no pruning, with that nested test UA within 0.01
of no pruning's.

Changed with nested selection (issue 24): before, each trial ran all 5 outer folds, one study
held every trial, the Wilcoxon pruner compared outer folds and ``--trials`` counted all trials
(default 12: 12 x 5 folds x 9 epochs = 540 trial-epochs); ``seed`` was sampled from {0, 1, 2};
and the "chosen" trial was the one with the best mean validation UA over all trials. Now
``--trials`` is per outer fold (default 6: 6 x 5 outer folds x 4 inner folds x 9 epochs = 1080
trial-epochs), each outer fold's study prunes against its own trials only, the seed is fixed
(a sampled seed is refused: it is a replicate, not a hyperparameter) and the figure compared
is the nested estimate above. The replay order used to be Tune's trial ids, which are random
(not the start order); it is now the order each study was asked. Results from before are not
comparable with these.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from orchestrator.selection import MEAN_TEST_UA

OUTER_FOLDS = 5  # speaker-pair folds of the 10 synthetic speakers
INNER_FOLDS = 4  # per outer fold, from its 8 non-test speakers: 2 validation speakers each

ARMS = {
    "none": {"kind": "none"},
    # Steps are inner folds, and the last one is never pruned, so a trial can be pruned after
    # inner fold 2 or 3 (the smallest p-value of n paired inner folds is 0.5 ** n). Optuna's
    # default p_threshold 0.1 would need 4 differences before the last fold, more than 4 inner
    # folds give (the config refuses it), so this uses the demo's 0.3, which allows pruning
    # after inner fold 2. Both are recorded in the results.
    "wilcoxon": {"kind": "wilcoxon", "p_threshold": 0.3, "n_startup_steps": 2},
    # Per outer fold's study: its first 3 complete trials are never pruned.
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
        "folds": {"scheme": "speaker-pairs", "valid_speakers": 1, "seed": 0, "inner": INNER_FOLDS},
        "search": {"epochs": 1, "batch_size": 16, "order": "first", "weights": {"lr_min": 0.0}},
        "eval": {"epochs": 8, "batch_size": 16, "weights": {"lr_min": 0.0}},
        "space": {
            "layers": 3,  # the fewest that search a normal cell
            "nodes": 1,
            "init_channels": 4,
            "lstm_hidden": {"choice": [16, 32]},
            "weights_lr": {"loguniform": [0.001, 0.3]},
            "seed": 0,  # a replicate, fixed: sernas refuses a sampled seed
        },
        "tune": {
            "num_samples": trials,  # per outer fold
            "max_concurrent": 2,
            "searcher": "random",
            "seed": seed,
            "pruner": ARMS[arm],
            "resources": {"cpu": 1},
            "storage": str(root / "runs"),
            "reuse_actors": True,
        },
    }


def check_arm_configs(root: Path, *, trials: int, seed: int) -> None:
    """Every arm is an experiment sernas accepts (the Wilcoxon arm needs its inner folds)."""
    from orchestrator.config import load_config

    for arm in ARMS:
        path = root / f"{arm}.yaml"
        path.write_text(yaml.safe_dump(make_config(root, arm=arm, trials=trials, seed=seed)))
        load_config(path)


def run_unpruned(root: Path, *, trials: int, seed: int) -> tuple[dict, list[list[dict]], dict]:
    """Run the experiment without pruning; return its summary, every trial's results in start
    order and the space's Optuna distributions."""
    from rich.console import Console

    from orchestrator.config import load_config
    from orchestrator.config.optuna_space import optuna_distributions
    from orchestrator.experiment import prepare_data, run_experiment, storage_root
    from orchestrator.study import TUNE_TRIAL_ID, StudyHandle

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
    # The order the searcher handed trials out: Tune's trial ids are random, but each outer fold's
    # study numbers its trials in the order it was asked for them (trials go to the folds in turn).
    asked = {
        frozen.user_attrs[TUNE_TRIAL_ID]: (frozen.number, fold)
        for fold, study in StudyHandle(storage=storage_root(config).uri, experiment=config.name).studies().items()
        for frozen in study.get_trials(deepcopy=False)
    }
    missing = [rows[0]["trial_id"] for rows in histories if rows[0]["trial_id"] not in asked]
    if missing:
        raise RuntimeError(f"trial(s) {missing} are in no outer fold's study")
    histories.sort(key=lambda rows: asked[rows[0]["trial_id"]])
    info = {
        "trials": summary.trials,
        "completed": summary.completed,
        "failed": summary.failed,
        "trial_epochs_reported": summary.epochs_reported,
        "seconds": round(seconds, 1),
        "outer_folds": int(prepared.folds["fold"].nunique()),
        "inner_folds": config.folds.inner,
    }
    return info, histories, optuna_distributions(config)


def nested_pick(study: Any) -> dict | None:
    """The trial ``study`` chooses: best mean validation UA among its COMPLETE trials (ties: earliest)."""
    from optuna.trial import TrialState

    from orchestrator.study import TUNE_TRIAL_ID

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = max(complete, key=lambda frozen: (frozen.value, -frozen.number))
    return {
        "trial_id": best.user_attrs.get(TUNE_TRIAL_ID),
        "params": dict(best.params),
        "mean_valid_ua": round(float(best.value), 4),
        "mean_test_ua": round(float(best.user_attrs.get(MEAN_TEST_UA, math.nan)), 4),
        "candidates": len(complete),
    }


def replay(histories: list[list[dict]], *, arm: str, distributions: dict, root: Path) -> dict:
    """Feed the recorded results to the pruning scheduler, one trial after another, each first
    asked from its outer fold's study as the searcher would; read the outcome from the studies."""
    import optuna
    from optuna.trial import TrialState
    from ray.tune.schedulers import TrialScheduler

    from orchestrator.pruning import FOLD_REPORT, OptunaPruningScheduler, make_pruner
    from orchestrator.study import OUTER_FOLD_KEY, TUNE_TRIAL_ID, StudyHandle

    options = {key: value for key, value in ARMS[arm].items() if key != "kind"}
    pruner, over = make_pruner(ARMS[arm]["kind"], **options)
    handle = StudyHandle(storage=str(root / arm), experiment=f"prune-{arm}")
    # As run_experiment does: always a scheduler, which records every end ("none": NopPruner).
    scheduler = OptunaPruningScheduler(
        pruner=pruner or optuna.pruners.NopPruner(), over=over, study=handle, distributions=distributions
    )
    searcher_storage = handle.storage_for_use()  # the searcher's own, as in a live driver
    searcher_studies: dict[int, optuna.Study] = {}
    epochs = 0
    for rows in histories:
        config, trial_id = rows[0]["config"], rows[0]["trial_id"]
        fold = int(config[OUTER_FOLD_KEY])
        if fold not in searcher_studies:
            searcher_studies[fold] = handle.open(
                fold=fold, storage=searcher_storage, sampler=optuna.samplers.RandomSampler(seed=0)
            )
        study = searcher_studies[fold]
        study.enqueue_trial({name: config[name] for name in distributions})  # the recorded parameters
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            asked = study.ask(fixed_distributions=distributions)
        asked.set_user_attr(TUNE_TRIAL_ID, trial_id)
        trial = SimpleNamespace(trial_id=trial_id, config=dict(config), status="RUNNING", last_result=None)
        scheduler.on_trial_add(None, trial)
        stopped = False
        for result in rows:
            if result.get("report") != FOLD_REPORT:
                epochs += 1
            trial.last_result = result
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                stopped = True
                break
        if not stopped:
            scheduler.on_trial_complete(None, trial, rows[-1])
    studies = handle.studies()
    states = [frozen.state for fold_study in studies.values() for frozen in fold_study.get_trials(deepcopy=False)]
    picks = {str(fold): nested_pick(fold_study) for fold, fold_study in studies.items()}
    chosen = [pick["mean_test_ua"] for pick in picks.values() if pick is not None]
    return {
        "pruner": ARMS[arm],
        "trials": len(histories),
        "completed": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
        "trial_epochs": epochs,
        # the nested estimate: mean over outer folds of the validation-chosen trial's test UA
        "nested_mean_test_ua": round(sum(chosen) / len(chosen), 4) if len(chosen) == len(studies) else None,
        "picks_per_outer_fold": picks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per outer fold (tune.num_samples; 5 outer folds)")
    parser.add_argument("--seed", type=int, default=0, help="the random searcher's seed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pruning.json"))
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be >= 1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        check_arm_configs(Path(tmp), trials=args.trials, seed=args.seed)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            live, histories, distributions = run_unpruned(Path(tmp), trials=args.trials, seed=args.seed)
        finally:
            ray.shutdown()
    with tempfile.TemporaryDirectory(prefix="bench-pruning-replay-") as tmp:
        arms = {arm: replay(histories, arm=arm, distributions=distributions, root=Path(tmp)) for arm in ARMS}
    baseline = arms["none"]
    if baseline["trial_epochs"] != live["trial_epochs_reported"] or baseline["completed"] != live["completed"]:
        raise RuntimeError(
            f"replay without a pruner counts {baseline['trial_epochs']} trial-epochs and {baseline['completed']} "
            f"complete trials, the experiment reported {live['trial_epochs_reported']} and {live['completed']}: "
            "the records are incomplete"
        )
    for name, arm in arms.items():
        if name == "none":
            continue
        arm["trial_epochs_saved"] = round(1 - arm["trial_epochs"] / baseline["trial_epochs"], 3)
        arm["nested_mean_test_ua_gap"] = (
            None
            if arm["nested_mean_test_ua"] is None or baseline["nested_mean_test_ua"] is None
            else round(baseline["nested_mean_test_ua"] - arm["nested_mean_test_ua"], 4)
        )
        arm["outer_folds_same_pick_as_none"] = sum(
            1
            for fold, pick in arm["picks_per_outer_fold"].items()
            if pick is not None
            and (baseline["picks_per_outer_fold"].get(fold) or {}).get("trial_id") == pick["trial_id"]
        )
        arm["goal_met"] = bool(
            arm["trial_epochs_saved"] >= 0.40
            and arm["nested_mean_test_ua_gap"] is not None
            and arm["nested_mean_test_ua_gap"] <= 0.01
        )
    results = {
        "trials_per_outer_fold": args.trials,
        "trials": live["trials"],
        "searcher": f"random, seed {args.seed} (each outer fold's study seeded by (seed, fold))",
        "unpruned_run": live,
        "what": "synthetic 10 speakers x 16 utterances, logmel-32, 3-cell supernet with 1 node, 5 speaker-pair "
        f"outer folds, {args.trials} trials per outer fold, each over {INNER_FOLDS} inner folds (2 validation "
        "speakers each) x (1 first-order search epoch + 8 evaluation epochs), seed fixed at 0; pruners replayed "
        "over the recorded results, one trial at a time, one Optuna study per outer fold",
        "arms": arms,
        "goal": ">= 40% fewer trial-epochs than none, with the nested estimate (per outer fold the complete trial "
        "with the best mean validation UA; its test UA; mean over outer folds) within 0.01 of none's",
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"unpruned: {live['trials']} trials ({args.trials} per outer fold), {baseline['trial_epochs']} trial-epochs, "
        f"nested test UA {baseline['nested_mean_test_ua']} ({live['seconds']:.0f} s)"
    )
    for name in ("wilcoxon", "median"):
        arm = arms[name]
        print(
            f"{name}: {arm['pruned']} of {arm['trials']} pruned, {arm['trial_epochs_saved']:.0%} fewer trial-epochs, "
            f"nested test UA {arm['nested_mean_test_ua']} (same pick as none on "
            f"{arm['outer_folds_same_pick_as_none']} of {live['outer_folds']} outer folds; goal "
            f"{'met' if arm['goal_met'] else 'NOT met'})"
        )
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
