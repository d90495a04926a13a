"""Which recurrent head? An evaluation-only sweep of ``shape.sequence_input`` x ``shape.pooling``.

    PYTHONPATH=. python benchmarks/head_sweep.py [--folds 1 2 3 4 5] [--seeds 1] [--out benchmarks/results/head_sweep.json]

On the built-in synthetic corpus, leave-one-session-out (``bench_recipe``'s corpus, features,
folds and recipe, imported from it), the hand-made CNN-LSTM and one fixed genotype (written
below, not searched on any fold, so no fold's speakers chose it) are trained from scratch with
each of the four head combinations (``search_space.head``): what the LSTM reads per time step
(``mean-frequency``: C features; ``frequency-channels``: C x 4 frequency bands) and how a clip
is pooled after it (``mean``; ``stats``: mean and standard deviation over the valid steps).
Each network's epoch is chosen on the fold's validation speakers and its test speakers are
scored once. The **mean validation UA** over folds, seeds and both networks decides; the test
UA is reported beside it and decides nothing. A non-default option replaces the default only if
it is clearly better on validation: a higher mean, and better on every fold (the one-sided
Wilcoxon test over the folds' mean validation UA, folds as the unit, p < 0.05; with 5 folds that
needs all 5). The per-speaker logistic regression's test UA (``bench_recipe``) is given for
reference. Not part of ``run_all``: 40 networks at the defaults (5 folds, 1 seed), 2,110 s on the
shared 2-core machine under a load of 9-16 from other work (``benchmarks/results/head_sweep.json``);
``--seeds 2`` doubles that. Results in docs/recipe.md ("The recurrent head").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_recipe  # noqa: E402
from paired_stats import fold_comparison  # noqa: E402

from search_space import Genotype  # noqa: E402
from trainers.atomic_io import write_text_atomically  # noqa: E402
from trainers.settings import EvalSettings  # noqa: E402

# A fixed genotype of the recipe's space (2 nodes): convolutions and a pooling edge in the normal
# cell, a max-pool reduction; chosen by hand before the sweep, the same on every fold.
GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 1), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("sep_conv_3x3", 2)],
    reduce_concat=[2, 3],
)
ARCHITECTURES = {"handmade": "baseline", "genotype": GENOTYPE.to_json()}
DEFAULT = "mean-frequency/mean"
OPTIONS: dict[str, dict[str, str]] = {
    DEFAULT: {"sequence_input": "mean-frequency", "pooling": "mean"},
    "mean-frequency/stats": {"sequence_input": "mean-frequency", "pooling": "stats"},
    "frequency-channels/mean": {"sequence_input": "frequency-channels", "pooling": "mean"},
    "frequency-channels/stats": {"sequence_input": "frequency-channels", "pooling": "stats"},
}


def settings(option: str, *, seed: int) -> EvalSettings:
    """The recipe with ``option``'s head (frequency_bins 4, no projection: the defaults), validated
    (a ``trainers`` without these settings fails here rather than training the default head)."""
    recipe = bench_recipe.RECIPE.model_dump()
    return EvalSettings.model_validate({**recipe, "shape": {**recipe["shape"], **OPTIONS[option]}, "seed": seed})


def _evaluate(corpus: bench_recipe.Corpus, root: Path, fold: int, seed: int, network: str, option: str) -> dict:
    torch.set_num_threads(1)
    work = root / f"{network}-{list(OPTIONS).index(option)}-{fold}-{seed}"
    result = bench_recipe.run_network(
        bench_recipe.fold_data(corpus, fold),
        work=work,
        evaluation=settings(option, seed=seed),
        architecture=ARCHITECTURES[network],
    )
    result.pop("architecture")
    return {"fold": fold, "seed": seed, "network": network, "option": option, **result}


def _fold_means(runs: list[dict], option: str, key: str, folds: list[int]) -> list[float]:
    """Per fold, the mean of ``key`` over that fold's seeds and networks with ``option``."""
    return [bench_recipe.mean([r[key] for r in runs if r["option"] == option and r["fold"] == f]) for f in folds]


def summarise(runs: list[dict], *, folds: list[int]) -> dict[str, Any]:
    """Mean validation and test UA per option (overall and per network), and the decision."""
    summary: dict[str, Any] = {}
    for option in OPTIONS:
        rows = [r for r in runs if r["option"] == option]
        summary[option] = {
            "mean_valid_ua": bench_recipe.mean([r["valid_ua"] for r in rows]),
            "mean_test_ua": bench_recipe.mean([r["test_ua"] for r in rows]),
            **{
                network: {
                    "mean_valid_ua": bench_recipe.mean([r["valid_ua"] for r in rows if r["network"] == network]),
                    "mean_test_ua": bench_recipe.mean([r["test_ua"] for r in rows if r["network"] == network]),
                    "params": sorted({r["params"] for r in rows if r["network"] == network}),
                }
                for network in ARCHITECTURES
            },
            "fold_valid_ua": _fold_means(runs, option, "valid_ua", folds),
            "fold_test_ua": _fold_means(runs, option, "test_ua", folds),
        }
    default_valid = summary[DEFAULT]["fold_valid_ua"]
    for option in OPTIONS:
        if option != DEFAULT:
            summary[option]["valid_vs_default"] = fold_comparison(
                dict(zip(folds, summary[option]["fold_valid_ua"])),
                dict(zip(folds, default_valid)),
                alternative="greater",
            )
    best = max(OPTIONS, key=lambda option: summary[option]["mean_valid_ua"])
    clearly = best != DEFAULT and summary[best]["valid_vs_default"]["p_value"] < 0.05
    return {
        "summary": summary,
        "best_by_validation": best,
        "chosen_by_validation": best if clearly else DEFAULT,
        "rule": "a non-default option replaces the default when its mean validation UA is the highest and the "
        "one-sided Wilcoxon test over the folds' mean validation UA against the default gives p < 0.05",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--seeds", type=int, default=1, help="seeds per fold (0..N-1)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/head_sweep.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(1)
    folds, seeds = sorted(args.folds), list(range(args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = bench_recipe.prepare(root, fold_numbers=folds)
        stats = bench_recipe.clip_statistics(corpus)
        scalers = bench_recipe.speaker_scalers(corpus, stats)
        logistic = {
            f: bench_recipe.logistic_regression(corpus, f, stats, per_speaker=scalers)["test_ua"] for f in folds
        }
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                pool.submit(_evaluate, corpus, root, fold, seed, network, option)
                for fold in folds
                for seed in seeds
                for network in ARCHITECTURES
                for option in OPTIONS
            ]
            runs = []
            for future in as_completed(futures):
                runs.append(future.result())
                run = runs[-1]
                print(
                    f"fold {run['fold']} seed {run['seed']} {run['network']} {run['option']}: valid UA "
                    f"{run['valid_ua']:.3f}, test UA {run['test_ua']:.3f} ({run['train_seconds']:.0f} s) "
                    f"[{len(runs)}/{len(futures)}]",
                    flush=True,
                )
    runs.sort(key=lambda r: (r["fold"], r["seed"], r["network"], list(OPTIONS).index(r["option"])))
    decision = summarise(runs, folds=folds)
    for option, row in decision["summary"].items():
        print(f"{option}: mean valid UA {row['mean_valid_ua']:.3f}, mean test UA {row['mean_test_ua']:.3f}")
    print(f"validation chooses {decision['chosen_by_validation']} (best mean: {decision['best_by_validation']})")
    out = {
        "corpus": "built-in synthetic corpus: 10 speakers, 5 sessions, 60 utterances per speaker",
        "protocol": f"loso folds {folds}, seeds {seeds}, classes {'/'.join(bench_recipe.CLASSES)}, "
        f"preset {bench_recipe.PRESET}, evaluation only",
        "eval_settings": bench_recipe.RECIPE.model_dump(mode="json"),
        "architectures": ARCHITECTURES,
        "options": OPTIONS,
        **decision,
        "logistic_per_speaker_test_ua": bench_recipe.mean(list(logistic.values())),
        "logistic_per_speaker_fold_test_ua": [logistic[f] for f in folds],
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out, json.dumps(out, indent=2) + "\n")
    print(f"{out['seconds']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
