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

Every candidate trains under the experiment's base settings unless ``settings="source"``
(``orchestrator.candidates.CROSS_EVAL_SETTINGS``); one experiment's cross-eval keeps to one of the
two (``check_settings``), so that no entry of the ``cross_eval`` view pools runs trained otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from orchestrator.candidates import (
    CANDIDATE_KEY,
    CROSS_EVAL_SETTINGS,
    RANDOM_CONTROL,
    SEED_KEY,
    Candidate,
    CrossEvalSettings,
    cross_eval_name,
    settings_from,
)
from orchestrator.config import ExperimentConfig
from orchestrator.experiment import ExperimentSummary, PreparedData, run_tune
from orchestrator.leaderboard import BASELINE, connect
from search_space.architecture import architecture_key, architecture_text, parse_architecture

__all__ = ["check_settings", "choose_candidates", "random_controls", "run_cross_eval"]

# A cross-eval row's params_json says what it trained under (canonical JSON, so equal settings are equal
# text): the space parameters applied to the base settings, "{}" for the base settings themselves.
_BASE = "{}"

_SOURCE_SQL = """
SELECT trial_id, fold, params_json, genotype, valid_ua FROM runs
WHERE stage = 'search' AND experiment = ? AND genotype_hash = ? AND status IN ('completed', 'pruned')
ORDER BY valid_ua DESC NULLS LAST, fold, trial_id
"""

_TRAINED_SQL = """
WITH source AS (  -- each search trial's parameters (the same in each of its rows)
    SELECT trial_id, any_value(params_json) AS source_settings FROM runs
    WHERE stage = 'search' AND experiment = ? GROUP BY trial_id
)
SELECT c.genotype_hash, c.source_trial_id, c.params_json AS settings, s.source_settings,
       CAST(count(*) AS INTEGER) AS rows
FROM runs AS c LEFT JOIN source AS s ON s.trial_id = c.source_trial_id
WHERE c.stage = 'cross-eval' AND c.experiment = ?
GROUP BY ALL ORDER BY c.genotype_hash, c.source_trial_id NULLS FIRST, settings
"""


def _from_search(board: Any, experiment: str, genotype_hash: str) -> tuple[Candidate, str] | None:
    """The candidate the search found (``params``: its source trial's) and those parameters as stored."""
    runs: pd.DataFrame = board.sql(_SOURCE_SQL, [experiment, genotype_hash])
    if runs.empty:
        return None
    best = runs.iloc[0]
    architecture = best["genotype"] if isinstance(best["genotype"], str) else genotype_hash
    candidate = Candidate(
        architecture=architecture_text(parse_architecture(architecture)),
        genotype_hash=genotype_hash,
        source_trial_id=str(best["trial_id"]),
        source_fold=int(best["fold"]),
        params=json.loads(best["params_json"]),
        found_on=tuple(sorted(int(fold) for fold in runs["fold"].unique())),
    )
    return candidate, str(best["params_json"])


def _check_settings(board: Any, *, experiment: str, settings: CrossEvalSettings) -> None:
    if settings not in CROSS_EVAL_SETTINGS:
        raise ValueError(f"--settings must be one of {', '.join(CROSS_EVAL_SETTINGS)}, but got {settings!r}.")
    trained: pd.DataFrame = board.sql(_TRAINED_SQL, [experiment, experiment])
    for row in trained.itertuples():
        sourced = isinstance(row.source_trial_id, str)
        expected = row.source_settings if settings == "source" and sourced else _BASE
        if not isinstance(expected, str) or row.settings == expected:
            continue  # (no search row of its source trial left to compare with: nothing to say)
        other = next(name for name in CROSS_EVAL_SETTINGS if name != settings)
        under = "the base settings" if row.settings == _BASE else f"parameters {row.settings}"
        raise ValueError(
            f"--settings {settings}: experiment {experiment!r} already has cross-eval rows trained under "
            f"--settings {other} (genotype {row.genotype_hash}"
            + (f" of source trial {row.source_trial_id}" if sourced else "")
            + f": {row.rows} row(s) under {under}, where --settings {settings} trains it under "
            + ("the base settings" if expected == _BASE else f"parameters {expected}")
            + f"). One experiment's cross-eval trains under one --settings, so that no genotype's entry pools "
            f"runs trained otherwise: run it with --settings {other}."
        )


def check_settings(storage: str, *, experiment: str, settings: CrossEvalSettings) -> None:
    """Refuse (ValueError) to cross-evaluate ``experiment`` under ``settings`` when its cross-eval rows
    were trained under the other value of ``CROSS_EVAL_SETTINGS``; the message names a row that was."""
    with connect(storage, experiment=experiment) as board:
        _check_settings(board, experiment=experiment, settings=settings)


def _under(chosen: dict[str, tuple[Candidate, str]], settings: CrossEvalSettings) -> list[Candidate]:
    """The chosen candidates with the parameters they train under (``CROSS_EVAL_SETTINGS``): none with
    ``base``; with ``source`` their source trial's, and the baseline once per distinct settings of the others."""
    if settings == "base":
        return [replace(candidate, params=None) for candidate, _ in chosen.values()]
    first_under: dict[str, Candidate] = {}  # params_json -> the first other candidate trained under it
    for candidate, key in chosen.values():
        if candidate.genotype_hash != BASELINE:
            first_under.setdefault(key, candidate)
    under: list[Candidate] = []
    for candidate, _ in chosen.values():
        if candidate.genotype_hash != BASELINE:
            under.append(candidate)
            continue
        under += [  # its source_fold stays None: no search found the baseline
            replace(candidate, source_trial_id=other.source_trial_id, params=other.params)
            for other in first_under.values()
        ] or [candidate]  # nothing else chosen: the base settings
    return under


def random_controls(config: ExperimentConfig, *, count: int, seed: int = 0) -> list[Candidate]:
    """``count`` distinct genotypes drawn uniformly from the experiment's own search space (the
    primitives and nodes of its base search settings with the space's fixed values), seeded by
    ``seed``: the random-architecture controls (Yang et al., ICLR 2020) a searched cell must beat.

    Raises ValueError when the space holds fewer than ``count`` distinct genotypes.
    """
    from search_space.sampling import genotype_space_size, sample_genotypes

    if count < 1:
        raise ValueError(f"--random must be >= 1, but got {count}.")
    search, _ = settings_from(config, None)
    primitives, nodes = tuple(search.primitives), search.shape.nodes
    size = genotype_space_size(primitives=primitives, nodes=nodes)
    if size < count:
        raise ValueError(
            f"--random {count}: the search space ({nodes} nodes, {len(primitives)} primitives) holds {size}."
        )
    return [
        Candidate(
            architecture=architecture_text(genotype),
            genotype_hash=architecture_key(genotype),
            control=RANDOM_CONTROL,
        )
        for genotype in sample_genotypes(
            seed,
            count,
            primitives=primitives,
            nodes=nodes,
            # a searched sequence stage: the controls draw their sequence cell from the same space
            sequence_ops=search.sequence.ops if search.sequence.enabled else None,
            sequence_nodes=search.sequence.nodes if search.sequence.enabled else None,
        )
    ]


def choose_candidates(
    storage: str,
    *,
    experiment: str,
    top: int | None,
    genotypes: Sequence[str] = (),
    settings: CrossEvalSettings = "base",
    controls: Sequence[Candidate] = (),
) -> list[Candidate]:
    """The ``top`` genotypes by mean validation UA of the search rows, then those in ``genotypes``
    (a hash found by the search, genotype JSON, or ``baseline``), without repeats, each with the
    parameters it trains under (``settings``: see ``CROSS_EVAL_SETTINGS``; with ``source`` the
    baseline comes once per distinct source settings).

    ``controls`` (``random_controls``) come last, trained like the rest (base settings in either mode).

    Raises ValueError naming ``--top`` or ``--genotype`` when there is nothing to choose, and
    naming ``--settings`` when the experiment's cross-eval rows were trained under the other settings.
    """
    if top is None and not genotypes and not controls:
        raise ValueError("give --top N, --genotype HASH|JSON|baseline and/or --random K: nothing to cross-evaluate.")
    if top is not None and top < 1:
        raise ValueError(f"--top must be >= 1, but got {top}.")
    chosen: dict[str, tuple[Candidate, str]] = {}  # genotype hash -> (candidate, its source params_json)
    with connect(storage, experiment=experiment) as board:
        _check_settings(board, experiment=experiment, settings=settings)
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
            given_only = Candidate(architecture=architecture_text(architecture), genotype_hash=key)
            chosen.setdefault(key, found or (given_only, _BASE))
        for control in controls:  # a random draw the search also found stays the searched candidate
            chosen.setdefault(control.genotype_hash, (control, _BASE))
    return _under(chosen, settings)


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
        params_first=("genotype", SEED_KEY, "from", "settings"),
    )
