"""The search-space language: fixed values and sampled ``Domain``s over trial settings.

A space maps a parameter name (a shorthand such as ``weights_lr``, or a dotted settings path
such as ``search.epochs``) to a fixed value or a domain (``{choice: [...]}``, ``{uniform: [a,
b]}``, ...). This module parses and dumps those entries, checks that a name reaches a setting,
turns a trial's sampled values into validated ``SearchSettings``/``EvalSettings``, and
translates the space into the Optuna distributions each outer fold's study samples a trial's
parameters from (``orchestrator.nested``), and the fixed values every trial's config holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, PlainSerializer, ValidationError

from orchestrator.config.errors import ConfigError, short_repr, validation_message
from orchestrator.config.models import StrictModel
from trainers.settings import EvalSettings, SearchSettings

if TYPE_CHECKING:
    from orchestrator.config.experiment import ExperimentConfig

__all__ = [
    "DOMAIN_KINDS",
    "SHORTHANDS",
    "Domain",
    "SpaceEntry",
    "build_settings",
    "dump_space_entry",
    "fixed_tune_params",
    "optuna_category",
    "optuna_distributions",
    "plain_value",
    "settings_for_trial",
    "settings_path_error",
    "targets",
]

DOMAIN_KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")
_RANGE_ARITY = {"uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}


def _frozen_value(value: Any) -> Any:
    """Lists become tuples (hashable, immutable); everything else is kept."""
    if isinstance(value, list | tuple):
        return tuple(_frozen_value(v) for v in value)
    return value


def plain_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [plain_value(v) for v in value]
    return value


@dataclass(frozen=True)
class Domain:
    """A sampled parameter: ``choice``/``grid`` over ``args`` (values), or a range over ``args``.

    Ranges: ``uniform``/``loguniform`` ``(lower, upper)``, ``randint`` ``(lower, upper)`` with
    ``upper`` exclusive, ``quniform`` ``(lower, upper, q)`` (Ray: rounded to multiples of q).
    """

    kind: str
    args: tuple[Any, ...]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Domain:
        """``{choice: [...]}`` and friends, as written in YAML; errors say what was expected."""
        if len(raw) != 1 or next(iter(raw)) not in DOMAIN_KINDS:
            keys = ", ".join(map(str, raw)) or "none"
            raise ValueError(
                f"a domain is a mapping with one key out of {', '.join(DOMAIN_KINDS)}, but got keys {keys}"
            )
        kind, args = next(iter(raw.items()))
        if not isinstance(args, list | tuple):
            raise ValueError(f"{kind} takes a list, but got {short_repr(args)}")
        if kind in ("choice", "grid"):
            if not args:
                raise ValueError(f"{kind} needs at least one value")
            return cls(kind, _frozen_value(args))
        arity = _RANGE_ARITY[kind]
        shape = "[lower, upper, q]" if arity == 3 else "[lower, upper]"
        if len(args) != arity:
            raise ValueError(f"{kind} takes {shape}, but got {short_repr(list(args))}")
        numbers = (int,) if kind == "randint" else (int, float)
        for value in args:
            if isinstance(value, bool) or not isinstance(value, numbers) or not math.isfinite(value):
                expected = "integers" if kind == "randint" else "finite numbers"
                raise ValueError(f"{kind} bounds must be {expected}, but got {short_repr(list(args))}")
        lower, upper = args[0], args[1]
        if not lower < upper:
            raise ValueError(f"{kind} needs lower < upper, but got {lower} >= {upper}")
        if kind == "loguniform" and lower <= 0:
            raise ValueError(f"loguniform needs lower > 0, but got {lower}")
        if kind == "quniform" and not args[2] > 0:
            raise ValueError(f"quniform needs q > 0, but got {args[2]}")
        return cls(kind, tuple(args))

    def to_yaml(self) -> dict[str, list[Any]]:
        return {self.kind: plain_value(self.args)}

    def probe_values(self) -> list[Any]:
        """Values that must all make valid settings: every listed value, or a range's ends plus
        one inner non-integral point (so an int setting under ``uniform`` is caught)."""
        if self.kind in ("choice", "grid"):
            return list(self.args)
        lower, upper = self.args[0], self.args[1]
        if self.kind == "randint":
            return [lower, upper - 1]
        if self.kind == "quniform":
            q = self.args[2]
            return [lower, upper, math.floor(lower / q + 1) * q] if lower + q <= upper else [lower, upper]
        inner = math.sqrt(lower * upper) * 1.0123 if self.kind == "loguniform" else lower + (upper - lower) * 0.3719
        return [lower, upper, inner if inner < upper else (lower + upper) / 2]


def _parse_space_entry(value: Any) -> Any:
    if isinstance(value, Domain):
        return value
    if isinstance(value, Mapping):
        return Domain.parse(value)
    return _frozen_value(value)


def dump_space_entry(value: Any) -> Any:
    return value.to_yaml() if isinstance(value, Domain) else plain_value(value)


SpaceEntry = Annotated[Any, BeforeValidator(_parse_space_entry), PlainSerializer(dump_space_entry)]

_SHAPE = ("layers", "nodes", "init_channels", "lstm_hidden", "lstm_layers", "dropout")
SHORTHANDS: Mapping[str, tuple[str, ...]] = {
    **{name: (f"search.shape.{name}", f"eval.shape.{name}") for name in _SHAPE},
    "seed": ("search.seed", "eval.seed"),
    "batch_size": ("search.batch_size", "eval.batch_size"),
    "weights_lr": ("search.weights.lr", "eval.weights.lr"),
    "weight_decay": ("search.weights.weight_decay", "eval.weights.weight_decay"),
    "alphas_lr": ("search.alphas.lr",),
    "order": ("search.order",),
    "pc_k": ("search.pc_k",),
    "edge_normalization": ("search.edge_normalization",),
    "primitives": ("search.primitives",),
    "warmup_epochs": ("search.warmup_epochs",),
    "max_skip_normal": ("search.max_skip_normal",),
    "drop_path_prob": ("eval.drop_path_prob",),
}
"""Space parameter names that stand for one or more settings paths."""

_ROOTS: Mapping[str, type[BaseModel]] = {"search": SearchSettings, "eval": EvalSettings}


def settings_path_error(path: str) -> str | None:
    """Why a dotted ``search.``/``eval.`` path names no setting (None when it does)."""
    root, _, rest = path.partition(".")
    model: Any = _ROOTS.get(root)
    if model is None or not rest:
        return "not a setting path; expected search.<setting> or eval.<setting>"
    parts = rest.split(".")
    walked = root
    for part in parts:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return f"{walked} is a single value, it has no {part!r}"
        if part not in model.model_fields:
            return f"{walked} has no setting {part!r}; expected one of: {', '.join(model.model_fields)}"
        model = model.model_fields[part].annotation
        walked = f"{walked}.{part}"
    if isinstance(model, type) and issubclass(model, BaseModel):
        return f"{walked} is a group; name one of its settings: {', '.join(model.model_fields)}"
    return None


def targets(name: str) -> tuple[str, ...]:
    return SHORTHANDS.get(name) or (name,)


def _trial_value(name: str, value: Any) -> Any:
    """A sampled value as the settings take it (Ray/Optuna may hand numpy scalars back)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if targets(name) == ("search.primitives",) and isinstance(value, str):
        value = tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _assign(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree[part]
    tree[leaf] = value


class _TrialSettings(StrictModel):
    search: SearchSettings
    eval: EvalSettings


def build_settings(base: Mapping[str, BaseModel], values: Mapping[str, Any]) -> _TrialSettings:
    """Apply ``{space name: value}`` to the base settings and validate (bounds enforced)."""
    tree = {root: settings.model_dump() for root, settings in base.items()}
    for name, value in values.items():
        for path in targets(name):
            _assign(tree, path, _trial_value(name, value))
    return _TrialSettings.model_validate(tree)


def settings_for_trial(config: ExperimentConfig, params: Mapping[str, Any]) -> tuple[SearchSettings, EvalSettings]:
    """The trial's search and evaluation settings: the base ones with the space's fixed values
    and the sampled ``params`` (``{space name: value}``) applied, validated.

    Every sampled (non-fixed) space parameter must be given; unknown names are refused.
    """
    unknown = sorted(set(params) - set(config.space))
    if unknown:
        raise ConfigError(
            f"trial parameters {', '.join(unknown)} are not in the space "
            f"(expected: {', '.join(config.space) or 'none'})"
        )
    missing = sorted(name for name, entry in config.space.items() if isinstance(entry, Domain) and name not in params)
    if missing:
        raise ConfigError(f"trial parameters lack the sampled {', '.join(missing)}")
    values = {name: entry for name, entry in config.space.items() if not isinstance(entry, Domain)}
    values.update(params)
    try:
        built = build_settings({"search": config.search, "eval": config.eval}, values)
    except ValidationError as error:
        raise ConfigError(
            f"trial parameters {dict(params)!r} make invalid settings: {validation_message(error)}"
        ) from None
    return built.search, built.eval


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


def optuna_distributions(config: ExperimentConfig) -> dict[str, Any]:
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


def fixed_tune_params(config: ExperimentConfig) -> dict[str, Any]:
    """The space's fixed (non-sampled) entries as a trial's config holds them (``primitives`` joined)."""
    return {name: _tune_value(name, entry) for name, entry in config.space.items() if not isinstance(entry, Domain)}
