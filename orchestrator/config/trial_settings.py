"""What a space name sets, and a trial's settings: the base ones with the space's values applied.

A space parameter is a shorthand (``weights_lr`` sets ``search.weights.lr`` and
``eval.weights.lr``) or a dotted settings path (``search.epochs``). This module owns those
names, checks that a path reaches a setting, and builds a trial's validated
``SearchSettings``/``EvalSettings``. It takes the experiment as a ``SpaceConfig`` (the three
attributes it reads), not as ``ExperimentConfig``, so ``orchestrator.config.experiment`` can
import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from orchestrator.config.domain import Domain
from orchestrator.config.errors import ConfigError, validation_message
from orchestrator.config.models import StrictModel
from trainers.settings import EvalSettings, SearchSettings

__all__ = [
    "SHORTHANDS",
    "SpaceConfig",
    "build_settings",
    "settings_for_trial",
    "settings_path_error",
    "targets",
]


class SpaceConfig(Protocol):
    """What trial settings are built from (``ExperimentConfig`` is one): a space over base settings."""

    @property
    def space(self) -> Mapping[str, Any]: ...

    @property
    def search(self) -> SearchSettings: ...

    @property
    def eval(self) -> EvalSettings: ...


_SHAPE = (
    "layers",
    "nodes",
    "init_channels",
    "lstm_hidden",
    "lstm_layers",
    "dropout",
    "sequence_input",
    "frequency_bins",
    "sequence_projection",
    "pooling",
    "ssl_projection",
)
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
    if targets(name) in (("search.primitives",), ("search.sequence.ops",)) and isinstance(value, str):
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


def settings_for_trial(config: SpaceConfig, params: Mapping[str, Any]) -> tuple[SearchSettings, EvalSettings]:
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
