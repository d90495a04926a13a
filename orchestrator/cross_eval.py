"""Cross-evaluation: retrain chosen genotypes (and the baseline) from scratch on every fold.

A search trial measures each genotype on the one fold it searched; ``sernas cross-eval`` gives
every chosen genotype a UA on every fold of the protocol, for K seeds, so genotypes can be
compared on the same folds and seeds. It reads the experiment's prepared data and config from
the storage (``orchestrator.experiment.load_experiment``, as ``sernas export`` does), chooses the ``top`` genotypes by mean validation UA of
the search rows (never by test UA) plus the ones named, and runs one Ray Tune trial per
(genotype, seed) with ``orchestrator.experiment.run_tune``, the same machinery as ``sernas
search``: resources, failure handling, ``--resume``, progress lines, trial status files. Its
Tune state lives in ``<storage>/<experiment>-cross-eval``; its leaderboard rows go under the
experiment's own name with ``stage = 'cross-eval'``, so the ``cross_eval`` view sits beside the
search views of the same experiment and neither counts the other's rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from orchestrator.candidates import CANDIDATE_KEY, SEED_KEY, Candidate, cross_eval_name
from orchestrator.config import ExperimentConfig
from orchestrator.experiment import ExperimentSummary, PreparedData, run_tune
from orchestrator.leaderboard import BASELINE, connect
from search_space.architecture import architecture_key, architecture_text, parse_architecture

__all__ = ["choose_candidates", "run_cross_eval"]

_SOURCE_SQL = """
SELECT trial_id, fold, params_json, genotype, valid_ua FROM runs
WHERE stage = 'search' AND experiment = ? AND genotype_hash = ? AND status IN ('completed', 'pruned')
ORDER BY valid_ua DESC NULLS LAST, fold, trial_id
"""


def _from_search(board: Any, experiment: str, genotype_hash: str) -> Candidate | None:
    runs: pd.DataFrame = board.sql(_SOURCE_SQL, [experiment, genotype_hash])
    if runs.empty:
        return None
    best = runs.iloc[0]
    architecture = best["genotype"] if isinstance(best["genotype"], str) else genotype_hash
    return Candidate(
        architecture=architecture_text(parse_architecture(architecture)),
        genotype_hash=genotype_hash,
        source_trial_id=str(best["trial_id"]),
        source_fold=int(best["fold"]),
        params=json.loads(best["params_json"]),
        found_on=tuple(sorted(int(fold) for fold in runs["fold"].unique())),
    )


def choose_candidates(
    storage: str, *, experiment: str, top: int | None, genotypes: Sequence[str] = ()
) -> list[Candidate]:
    """The ``top`` genotypes by mean validation UA of the search rows, then those in ``genotypes``
    (a hash found by the search, genotype JSON, or ``baseline``), without repeats.

    Raises ValueError naming ``--top`` or ``--genotype`` when there is nothing to choose.
    """
    if top is None and not genotypes:
        raise ValueError("give --top N and/or --genotype HASH|JSON|baseline: nothing to cross-evaluate.")
    if top is not None and top < 1:
        raise ValueError(f"--top must be >= 1, but got {top}.")
    chosen: dict[str, Candidate] = {}
    with connect(storage, experiment=experiment) as board:
        if top is not None:
            ranked = board.summary("genotype", top=top)  # search rows, by mean validation UA
            if ranked.empty:
                raise ValueError(f"--top {top}: experiment {experiment!r} has no finished search fold in {storage}.")
            for genotype_hash in ranked["genotype_hash"]:
                chosen[genotype_hash] = _from_search(board, experiment, genotype_hash)
        for given in genotypes:
            text = given.strip()
            if len(text) == 12 and all(c in "0123456789abcdef" for c in text):
                found = _from_search(board, experiment, text)
                if found is None:
                    raise ValueError(
                        f"--genotype {text}: no finished search row of experiment {experiment!r} has that hash."
                    )
                chosen.setdefault(text, found)
                continue
            try:
                architecture = parse_architecture(text)
            except ValueError as error:
                raise ValueError(
                    f"--genotype {given!r} is neither a 12-hex genotype hash, genotype JSON nor {BASELINE!r}: {error}"
                ) from None
            key = architecture_key(architecture)
            found = _from_search(board, experiment, key)
            chosen.setdefault(key, found or Candidate(architecture=architecture_text(architecture), genotype_hash=key))
    return list(chosen.values())


def run_cross_eval(
    config: ExperimentConfig,
    *,
    prepared: PreparedData,
    candidates: Sequence[Candidate] = (),
    seeds: int = 1,
    resume: bool = False,
    console=None,
) -> ExperimentSummary:
    """One evaluation-only trial per (candidate, seed), each over every fold (Ray must be up).

    With ``resume`` the candidates and seeds come from the interrupted run's Tune state.
    """
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from orchestrator.concurrency import decide_concurrency

    if not resume:
        if not candidates:
            raise ValueError("nothing to cross-evaluate: no candidates.")
        if seeds < 1:
            raise ValueError(f"--seeds must be >= 1, but got {seeds}.")
    param_space = (
        None
        if resume
        else {
            CANDIDATE_KEY: tune.grid_search([candidate.to_json() for candidate in candidates]),
            SEED_KEY: tune.grid_search(list(range(seeds))),
        }
    )
    tune_config = tune.TuneConfig(  # no searcher to steer and no pruner: every candidate is measured in full
        num_samples=1,
        search_alg=BasicVariantGenerator(max_concurrent=decide_concurrency(config.tune, console=console)),
        reuse_actors=config.tune.reuse_actors,
    )
    return run_tune(
        config,
        prepared=prepared,
        tune_name=cross_eval_name(config.name),
        param_space=param_space,
        tune_config=tune_config,
        pruner_name="none",
        resume=resume,
        console=console,
        params_first=("genotype", SEED_KEY, "from"),
    )
