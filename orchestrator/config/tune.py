"""How Ray Tune runs an experiment's trials: searcher, pruner, resources, storage."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from orchestrator.config.errors import raise_at
from orchestrator.config.models import StrictModel, absolute_path

__all__ = ["PRUNER_KINDS", "PRUNER_OPTIONS", "PrunerConfig", "ResourcesConfig", "TuneConfig"]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

PRUNER_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "wilcoxon": {"p_threshold": 0.1, "n_startup_steps": 2},
    "median": {"n_startup_trials": 5, "n_warmup_steps": 0},
    "hyperband": {"min_resource": 1, "max_resource": "auto", "reduction_factor": 3},
    "none": {},
}
"""Options of each pruner kind with their defaults (Optuna's), passed to the Optuna pruner.

This table owns the pruner kinds: ``PrunerConfig`` and ``orchestrator.pruning.make_pruner``
take the list of kinds from it."""

PRUNER_KINDS: tuple[str, ...] = tuple(PRUNER_OPTIONS)


class PrunerConfig(StrictModel):
    """An Optuna pruner: ``wilcoxon`` across folds, ``median``/``hyperband`` across epochs, or none.

    Only the options of the chosen ``kind`` may be given; the others stay None.
    """

    kind: Literal[PRUNER_KINDS] = "wilcoxon"  # (a tuple subscript is the same Literal as listed kinds)
    p_threshold: float | None = Field(None, gt=0, le=1, description="wilcoxon")
    n_startup_steps: int | None = Field(None, ge=0, description="wilcoxon: folds before any pruning")
    n_startup_trials: int | None = Field(None, ge=0, description="median")
    n_warmup_steps: int | None = Field(None, ge=0, description="median: epochs before any pruning")
    min_resource: int | None = Field(None, ge=1, description="hyperband, in epochs")
    max_resource: int | Literal["auto"] | None = Field(None, description="hyperband, in epochs")
    reduction_factor: int | None = Field(None, ge=2, description="hyperband")

    @model_validator(mode="before")
    @classmethod
    def _fill_kind_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        kind = data.get("kind", cls.model_fields["kind"].default)
        if kind not in PRUNER_OPTIONS:
            return data  # the Literal reports it
        own = PRUNER_OPTIONS[kind]
        given = {key: value for key, value in data.items() if value is not None}  # a dump has None for others
        foreign = [key for key in given if key != "kind" and key not in own and key in cls.model_fields]
        raise_at(
            [
                ((key,), f"not an option of pruner {kind!r} (its options: {', '.join(own) or 'none'})", given[key])
                for key in foreign
            ],
            "PrunerConfig",
        )
        return {**own, **given}

    @model_validator(mode="after")
    def _max_above_min(self) -> PrunerConfig:
        low, high = self.min_resource, self.max_resource
        if isinstance(high, int) and low is not None and high < low:
            raise ValueError(f"hyperband max_resource ({high}) must be >= min_resource ({low})")
        return self

    @model_serializer(mode="wrap")
    def _only_own_options(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        own = PRUNER_OPTIONS[self.kind]  # the other kinds' options (all None) are left out
        return {key: value for key, value in handler(self).items() if key == "kind" or key in own}

    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments for the Optuna pruner of this kind."""
        return {key: getattr(self, key) for key in PRUNER_OPTIONS[self.kind]}


class ResourcesConfig(StrictModel):
    """Resources of one trial; fractional GPUs share a device (0.25: four trials per GPU)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"gpu above 1 must be a whole number (Ray cannot split several GPUs), but got {value}")
        return value


class TuneConfig(StrictModel):
    """How Ray Tune runs the trials."""

    num_samples: int = Field(8, ge=1, description="trials (times the grid size, with grid domains)")
    max_concurrent: int | None = Field(
        None,
        ge=1,
        description="trials at once; null: what the cluster holds when the experiment starts (its GPUs / "
        "resources.gpu, or CPUs / resources.cpu without GPUs; orchestrator.concurrency). On an autoscaling "
        "cluster set it to what the largest cluster holds",
    )
    searcher: Literal["optuna-tpe", "random", "grid"] = "optuna-tpe"
    multi_objective: bool = Field(False, description="optuna-tpe over (UA max, parameters min)")
    startup_trials: int = Field(
        10,
        ge=0,
        description="optuna-tpe: trials of each outer fold's study sampled at random before TPE models its "
        "history (Optuna's n_startup_trials)",
    )
    pruner: PrunerConfig = PrunerConfig()
    resources: ResourcesConfig = ResourcesConfig()
    max_failures: int = Field(1, ge=0, description="restarts of a crashed trial from its checkpoint")
    storage: str | None = Field(
        None,
        description="path or URI; default runs (Tune state in <storage>/<name>, leaderboard in <storage>/leaderboard/<name>)",
    )
    reuse_actors: bool = True
    seed: int | None = Field(0, description="sampler seed; None: not reproducible")
    checkpoint_every: int = Field(1, ge=1, description="epochs between trial checkpoints (and after every fold)")
    keep_checkpoints: int = Field(
        2,
        ge=1,
        description=(
            "Tune checkpoints kept per trial; Tune saves its experiment state every time a trial has made this many, "
            "so raise it (disk permitting) when hundreds of trials checkpoint every epoch"
        ),
    )

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is None or _URI.match(value):
            return value
        if not value.strip():
            raise ValueError("storage must not be empty")
        return str(absolute_path(Path(value)))
