"""What a cross-eval trial evaluates: a chosen architecture, the search that found it, its settings.

``sernas cross-eval`` retrains chosen genotypes (and the hand-made ``baseline``) from scratch on
every fold. Each Tune trial of it gets one ``Candidate`` (as JSON under the parameter
``CANDIDATE_KEY``, so a restored experiment needs nothing else) and one seed (``SEED_KEY``).
This module owns those names, the settings a candidate trains with (``CROSS_EVAL_SETTINGS``: the
same base settings for every candidate, or each searched genotype's source trial's, the baseline
then trained under each of them), and the seen-speakers fact: whether a fold's test speakers took
part in a search that found the genotype.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import pandas as pd

if TYPE_CHECKING:  # (the config models import torch: the CLI reads this module's names when it starts)
    from orchestrator.config import ExperimentConfig

__all__ = [
    "CANDIDATE_KEY",
    "CROSS_EVAL_SETTINGS",
    "CROSS_EVAL_SUFFIX",
    "RANDOM_CONTROL",
    "SEED_KEY",
    "Candidate",
    "CrossEvalSettings",
    "candidate_of",
    "cross_eval_name",
    "settings_from",
    "seen_in_search",
]

CANDIDATE_KEY = "candidate"  # a cross-eval trial's parameter: its Candidate as JSON
SEED_KEY = "eval_seed"  # a cross-eval trial's parameter: the evaluation seed (0 .. K-1, the same for every candidate)
CROSS_EVAL_SUFFIX = "-cross-eval"
RANDOM_CONTROL = "random"  # Candidate.control and the rows' ``control`` of a random-architecture control

CrossEvalSettings = Literal["base", "source"]
CROSS_EVAL_SETTINGS: tuple[str, ...] = get_args(CrossEvalSettings)
"""What the candidates of one cross-eval train under (``sernas cross-eval --settings``):

- ``base`` (the default): every candidate, searched or given, and the baseline, under the same
  settings: the experiment's base settings with the space's fixed values (``settings_from(config,
  None)``), so that they differ by architecture only;
- ``source``: each searched genotype under its source trial's tuned settings (the sampled
  parameters of the search trial whose run found it), and the baseline once under each distinct
  one of those (carrying that trial's parameters and id), so that every genotype is compared with
  a baseline trained exactly like it. A candidate without a source trial (a genotype given as JSON
  that no search found) trains under the base settings, and so does a baseline then.
"""


def cross_eval_name(experiment: str) -> str:
    """The Tune experiment (its own folder) of ``experiment``'s cross-evaluation; rows stay under ``experiment``."""
    return f"{experiment}{CROSS_EVAL_SUFFIX}"


@dataclass(frozen=True)
class Candidate:
    """One architecture to cross-evaluate, where it came from, and the settings it trains under.

    ``source_trial_id`` and ``source_fold`` name the search trial whose run (best validation UA)
    found it; ``found_on`` lists every fold on which some search trial found it. ``params`` are the
    space parameters it trains under, recorded as its rows' ``params_json``: None (``{}`` in the
    rows) for the experiment's base settings, or, with ``--settings source``, the sampled
    parameters of that source trial (of a baseline: of the trial whose settings it is trained
    under, named by its ``source_trial_id``; its ``source_fold`` stays None).
    """

    architecture: str  # genotype JSON or a model name (``baseline``)
    genotype_hash: str
    source_trial_id: str | None = None
    source_fold: int | None = None
    params: Mapping[str, Any] | None = None
    found_on: tuple[int, ...] = field(default=())
    control: str | None = None  # "random": a random-architecture control (RANDOM_CONTROL), never searched

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        data = json.loads(text)
        data["found_on"] = tuple(int(fold) for fold in data.get("found_on", ()))
        return cls(**data)

    def settings(self, config: ExperimentConfig, *, seed: int):
        """(search, evaluation) settings of its ``params`` (or the base ones), evaluation seeded with ``seed``."""
        search, evaluation = settings_from(config, self.params)
        return search, evaluation.model_copy(update={"seed": int(seed)})


def settings_from(config: ExperimentConfig, params: Mapping[str, Any] | None):
    """(search, evaluation) settings of a row's ``params_json``: a search trial's sampled parameters,
    or none (``{}``: cross-eval rows under the base settings): the base settings with the space's fixed values."""
    from orchestrator.config import settings_for_trial
    from orchestrator.config.domain import Domain
    from orchestrator.config.trial_settings import build_settings

    if params:
        return settings_for_trial(config, params)
    fixed = {name: entry for name, entry in config.space.items() if not isinstance(entry, Domain)}
    built = build_settings({"search": config.search, "eval": config.eval}, fixed)
    return built.search, built.eval


def candidate_of(params: Mapping[str, Any]) -> Candidate | None:
    """The candidate of a cross-eval trial's ``params``; None for a search trial."""
    text = params.get(CANDIDATE_KEY)
    return None if text is None else Candidate.from_json(text)


def seen_in_search(folds: pd.DataFrame, *, found_on: Iterable[int], fold: int) -> bool | None:
    """Whether a search on one of the ``found_on`` folds trained or validated on ``fold``'s test speakers.

    Training speakers (weights and alphas) shaped the genotype; validation speakers chose it (the
    trial ranking, ``--top``). Either way that fold's cross-eval test UA is optimistic for this
    genotype. None when no search found it (the baseline, a genotype given as JSON).
    """
    found_on = list(found_on)
    if not found_on:
        return None
    test = set(folds.loc[(folds["fold"] == fold) & (folds["split"] == "test"), "speaker"])
    seen = set(folds.loc[folds["fold"].isin(found_on) & (folds["split"] != "test"), "speaker"])
    return bool(test & seen)
