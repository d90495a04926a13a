"""How wide should the from-scratch network be? An evaluation-only sweep of ``eval.widen``.

    python benchmarks/recipe_widen_sweep.py [--widen 2 3 4] [--out benchmarks/results/recipe_widen.json]

Takes the seed-0 genotype of each fold from ``benchmarks/results/recipe.json`` (written by
``bench_recipe.py``), trains it from scratch under the recipe at each width (everything else as
``bench_recipe.RECIPE``), and reports the mean validation UA (what chooses the default) beside the
mean test UA (reported only). About 15 minutes on 2 CPUs for three widths.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_recipe  # noqa: E402

from trainers.atomic_io import write_text_atomically  # noqa: E402


def _evaluate(corpus: bench_recipe.Corpus, root: Path, fold: int, genotype: str, widen: float) -> dict:
    torch.set_num_threads(1)
    evaluation = bench_recipe.RECIPE.model_copy(update={"widen": widen, "seed": 0})
    result = bench_recipe.run_network(
        bench_recipe.fold_data(corpus, fold),
        work=root / f"w{widen}-{fold}",
        evaluation=evaluation,
        architecture=genotype,
    )
    return {"fold": fold, "widen": widen, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widen", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    parser.add_argument("--recipe", type=Path, default=Path("benchmarks/results/recipe.json"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recipe_widen.json"))
    args = parser.parse_args()
    recipe = json.loads(args.recipe.read_text())
    genotypes = {pair["fold"]: pair["searched"]["architecture"] for pair in recipe["pairs"] if pair["seed"] == 0}
    folds = sorted(genotypes)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = bench_recipe.prepare(root, fold_numbers=folds)
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_evaluate, corpus, root, f, genotypes[f], w) for w in args.widen for f in folds]
            runs = [future.result() for future in futures]
    summary = {}
    for widen in args.widen:
        rows = [run for run in runs if run["widen"] == widen]
        summary[str(widen)] = {
            "mean_valid_ua": bench_recipe.mean([r["valid_ua"] for r in rows]),
            "mean_test_ua": bench_recipe.mean([r["test_ua"] for r in rows]),
            "params": [r["params"] for r in rows],
        }
        print(f"widen {widen}: " + json.dumps(summary[str(widen)]), flush=True)
    chosen = max(summary, key=lambda widen: summary[widen]["mean_valid_ua"])
    print(f"validation chooses widen {chosen}")
    out = {"folds": folds, "summary": summary, "chosen_by_validation": float(chosen), "runs": runs}
    write_text_atomically(args.out, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
