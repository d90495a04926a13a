"""The space as a sampler sees it: Optuna distributions for sampled entries, Tune values for fixed ones.

Each outer fold's study samples a trial's parameters from these distributions
(``orchestrator.nested``); the fixed values go into every trial's config as they are. Both hold
values as a trial's config does: Optuna categories must be scalars, so a list of primitives
travels as one ``"a,b,c"`` string (``trial_settings`` splits it again).
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.config.domain import Domain, plain_value
from orchestrator.config.trial_settings import SpaceConfig, targets

__all__ = ["fixed_tune_params", "optuna_category", "optuna_distributions"]


def _tune_value(name: str, value: Any) -> Any:
    """Lists of primitives travel as ``"a,b,c"`` strings: Optuna categories must be scalars."""
    if targets(name) == ("search.primitives",) and isinstance(value, tuple):
        return ",".join(value)
    return plain_value(value)


def optuna_category(value: Any) -> Any:
    """A Tune value as an Optuna category, which must be None, bool, int, float or str: numpy
    scalars become Python ones, anything else (a list) its JSON text."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def optuna_distributions(config: SpaceConfig) -> dict[str, Any]:
    """The sampled (non-fixed) parameters of the space as Optuna distributions, keyed by space
    name, with values as a trial's config holds them (``primitives`` joined).

    ``quniform`` becomes a plain float range: Ray rounds to multiples of q, which need not
    line up with the lower bound as Optuna's ``step`` would require.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distributions: dict[str, Any] = {}
    for name, entry in config.space.items():
        if not isinstance(entry, Domain):
            continue
        if entry.kind in ("choice", "grid"):
            distributions[name] = CategoricalDistribution([optuna_category(_tune_value(name, v)) for v in entry.args])
        elif entry.kind == "randint":
            distributions[name] = IntDistribution(entry.args[0], entry.args[1] - 1)  # Ray's upper bound is exclusive
        else:
            distributions[name] = FloatDistribution(entry.args[0], entry.args[1], log=entry.kind == "loguniform")
    return distributions


def fixed_tune_params(config: SpaceConfig) -> dict[str, Any]:
    """The space's fixed (non-sampled) entries as a trial's config holds them (``primitives`` joined)."""
    return {name: _tune_value(name, entry) for name, entry in config.space.items() if not isinstance(entry, Domain)}
