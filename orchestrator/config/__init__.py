"""Experiment configuration: one YAML file -> one validated, frozen ``ExperimentConfig``.

An experiment names its data (corpus, classes, merges, feature preset), its folds, the base
settings of every trial's search and evaluation (the trainers' own ``SearchSettings`` and
``EvalSettings``, so defaults and bounds live in one place), a *space* of parameters that Ray
Tune samples per trial, and how Tune runs (searcher, pruner, resources, storage). The schema is
documented, with an annotated example, in ``docs/config.md``.

Everything is checked at load time: an unknown or ill-typed key, a NaN learning rate, or a
space domain any of whose values would make invalid trial settings fails before Ray starts,
with a ``ConfigError`` naming the file and each bad key path, what was expected and what came::

    configs/x.yaml: tune.num_samples: Input should be greater than or equal to 1 (got 0)

Public API: ``load_config``, ``settings_for_trial``, ``tune_param_space``,
``config_fingerprint``, ``dump_config``, ``validation_message``; the models below.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from trainers.corpora.scan import DEFAULT_MIN_DURATION_S
from trainers.settings import EvalSettings, SearchSettings

if TYPE_CHECKING:
    from trainers.folds import FoldProtocol  # imported when used: it pulls in pandas

__all__ = [
    "DOMAIN_KINDS",
    "PRUNER_OPTIONS",
    "RESUME_SAFE_FIELDS",
    "SHORTHANDS",
    "ConfigError",
    "DataConfig",
    "Domain",
    "ExperimentConfig",
    "FoldsConfig",
    "PrunerConfig",
    "ResourcesConfig",
    "SyntheticOptions",
    "TuneConfig",
    "config_fingerprint",
    "dump_config",
    "load_config",
    "settings_for_trial",
    "tune_param_space",
    "validation_message",
]


class ConfigError(ValueError):
    """An experiment configuration that cannot be used; the message names file and key paths."""


# ------------------------------------------------------------------------------ error messages
def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _field_names(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str] | None:
    """The field names of the model found by walking ``loc`` from ``model`` (None if unknown)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
        if get_origin(current) is not None:  # Optional[X] / X | None
            models = [arg for arg in get_args(current) if isinstance(arg, type) and issubclass(arg, BaseModel)]
            current = models[0] if len(models) == 1 else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _error_lines(error: ValidationError, *, model: type[BaseModel] | None = None) -> list[str]:
    lines = []
    for item in error.errors():
        loc = item["loc"]
        key = ".".join(str(part) for part in loc) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        kind = item["type"]
        if kind == "extra_forbidden":
            known = _field_names(model, loc[:-1])
            expected = f"; expected one of: {', '.join(known)}" if known else ""
            lines.append(f"{key}: unknown key{expected} (got {_short_repr(item.get('input'))})")
        elif kind in ("missing", "value_error") or (kind == "config" and item.get("input") is None):
            lines.append(f"{key}: {message}")
        else:
            lines.append(f"{key}: {message} (got {_short_repr(item.get('input'))})")
    return lines


def validation_message(error: Exception, *, model: type[BaseModel] | None = None) -> str:
    """A pydantic ValidationError as ``key.path: what was expected (got value)`` items, ``; ``-joined.

    With ``model`` (the validated model class), an unknown key also lists the known ones.
    Any other exception is returned as ``str(error)``.
    """
    if not isinstance(error, ValidationError):
        return str(error)
    return "; ".join(_error_lines(error, model=model))


def _raise_at(errors: list[tuple[tuple[str | int, ...], str, Any]], title: str) -> None:
    """Raise one ValidationError with an error at each ``(loc, message, input)``.

    Raised inside a validator, pydantic prefixes each loc with the validator's own position, so
    ``space`` entries are reported as ``space.<name>`` rather than as one error on ``space``.
    """
    if errors:
        details = [
            InitErrorDetails(type=PydanticCustomError("config", message), loc=loc, input=value)
            for loc, message, value in errors
        ]
        raise ValidationError.from_exception_data(title, details)


# ----------------------------------------------------------------------------------- the models
class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _absolute(path: Path) -> Path:
    """Relative paths are taken relative to the current working directory, once, at load time.

    Ray Tune runs trials in their own working directories, so a relative path must not survive
    into a trial. ``~`` is expanded; symlinks are kept (no ``resolve()``).
    """
    path = path.expanduser()
    return path if path.is_absolute() else Path.cwd() / path


class SyntheticOptions(_Strict):
    """The built-in synthetic corpus (IEMOCAP layout), generated under ``data.root`` if absent."""

    speakers: int = Field(10, ge=2, le=10, description="even; two speakers (F, M) per session")
    per_speaker: int = Field(60, ge=4, description="utterances per speaker")
    seed: int = Field(0, ge=0)

    @field_validator("speakers")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"speakers must be even (one F and one M per session), but got {value}.")
        return value


Dataset = Literal["iemocap", "msp-improv", "csv", "synthetic"]


class DataConfig(_Strict):
    """Which utterances, with which labels, as which features."""

    dataset: Dataset
    root: Path | None = Field(None, description="corpus root (csv: the CSV file; synthetic: where it is generated)")
    manifest: Path | None = Field(None, description="an existing manifest .parquet, instead of scanning root")
    preset: str = Field("paper-mfcc", description="feature preset, see trainers.features.PRESETS")
    cache_dir: Path | None = Field(None, description="feature cache (default: $SERNAS_CACHE_DIR or ~/.cache)")
    classes: tuple[str, ...] | None = Field(None, min_length=1, description="classes kept after merges; None: all")
    merges: dict[str, str] = Field(default_factory=dict, description="source -> target, before selecting classes")
    improvised_only: bool = False
    min_duration_s: float = Field(
        DEFAULT_MIN_DURATION_S,
        ge=0,
        description=("clips shorter than this (seconds) are bad input when root is scanned; 0 keeps every clip"),
    )
    synthetic: SyntheticOptions | None = Field(None, description="options of dataset synthetic (filled in for it)")

    @model_validator(mode="before")
    @classmethod
    def _synthetic_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("dataset") == "synthetic" and data.get("synthetic") is None:
            data = {**data, "synthetic": {}}
        return data

    @field_validator("root", "manifest", "cache_dir")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return None if value is None else _absolute(value)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        from trainers.features import PRESETS

        if value not in PRESETS:
            raise ValueError(f"unknown feature preset {value!r}; expected one of: {', '.join(PRESETS)}")
        return value

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            duplicates = sorted({c for c in value if value.count(c) > 1})
            raise ValueError(f"classes must be unique, but {', '.join(duplicates)} appear more than once")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        errors: list[tuple[tuple[str | int, ...], str, Any]] = []
        if self.root is None and self.manifest is None:
            errors.append(((), "give root (a corpus to scan) or manifest (an existing manifest)", None))
        if self.dataset == "synthetic" and self.root is None:
            errors.append((("root",), "dataset synthetic needs root: the folder where the corpus is generated", None))
        if self.manifest is not None and self.min_duration_s != DEFAULT_MIN_DURATION_S:
            errors.append(
                (
                    ("min_duration_s",),
                    "applies when root is scanned, but manifest is given (a manifest "
                    "keeps the minimum it was made with: sernas manifest --min-duration)",
                    self.min_duration_s,
                )
            )
        if self.synthetic is not None and self.dataset != "synthetic":
            errors.append(
                (
                    ("synthetic",),
                    f"options for dataset synthetic, but dataset is {self.dataset!r}",
                    self.synthetic.model_dump(),
                )
            )
        for source, target in self.merges.items():
            if self.classes is not None and target not in self.classes:
                errors.append(
                    (
                        ("merges", source),
                        f"merge target {target!r} is not among classes {', '.join(self.classes)}",
                        target,
                    )
                )
        _raise_at(errors, "DataConfig")
        return self


class FoldsConfig(_Strict):
    """Speaker-independent folds (see ``trainers.folds``)."""

    scheme: Literal["loso", "speaker-pairs"]
    use: tuple[Annotated[int, Field(ge=1)], ...] | None = Field(
        None, min_length=1, description="fold numbers; None: all"
    )
    valid_speakers: int = Field(1, ge=1, description="validation speakers per fold, from its training side")
    seed: int = Field(0, description="seed of the validation speaker choice")

    @field_validator("use")
    @classmethod
    def _unique_folds(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"use must list each fold once, but got {list(value)}")
        return value


# ------------------------------------------------------------------------------- search space
DOMAIN_KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")
_RANGE_ARITY = {"uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}


def _frozen_value(value: Any) -> Any:
    """Lists become tuples (hashable, immutable); everything else is kept."""
    if isinstance(value, list | tuple):
        return tuple(_frozen_value(v) for v in value)
    return value


def _plain_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain_value(v) for v in value]
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
            raise ValueError(f"{kind} takes a list, but got {_short_repr(args)}")
        if kind in ("choice", "grid"):
            if not args:
                raise ValueError(f"{kind} needs at least one value")
            return cls(kind, _frozen_value(args))
        arity = _RANGE_ARITY[kind]
        shape = "[lower, upper, q]" if arity == 3 else "[lower, upper]"
        if len(args) != arity:
            raise ValueError(f"{kind} takes {shape}, but got {_short_repr(list(args))}")
        numbers = (int,) if kind == "randint" else (int, float)
        for value in args:
            if isinstance(value, bool) or not isinstance(value, numbers) or not math.isfinite(value):
                expected = "integers" if kind == "randint" else "finite numbers"
                raise ValueError(f"{kind} bounds must be {expected}, but got {_short_repr(list(args))}")
        lower, upper = args[0], args[1]
        if not lower < upper:
            raise ValueError(f"{kind} needs lower < upper, but got {lower} >= {upper}")
        if kind == "loguniform" and lower <= 0:
            raise ValueError(f"loguniform needs lower > 0, but got {lower}")
        if kind == "quniform" and not args[2] > 0:
            raise ValueError(f"quniform needs q > 0, but got {args[2]}")
        return cls(kind, tuple(args))

    def to_yaml(self) -> dict[str, list[Any]]:
        return {self.kind: _plain_value(self.args)}

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


def _dump_space_entry(value: Any) -> Any:
    return value.to_yaml() if isinstance(value, Domain) else _plain_value(value)


SpaceEntry = Annotated[Any, BeforeValidator(_parse_space_entry), PlainSerializer(_dump_space_entry)]

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
    "primitives": ("search.primitives",),
    "warmup_epochs": ("search.warmup_epochs",),
    "max_skip_normal": ("search.max_skip_normal",),
    "drop_path_prob": ("eval.drop_path_prob",),
}
"""Space parameter names that stand for one or more settings paths."""

_ROOTS: Mapping[str, type[BaseModel]] = {"search": SearchSettings, "eval": EvalSettings}


def _settings_path_error(path: str) -> str | None:
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


def _targets(name: str) -> tuple[str, ...]:
    return SHORTHANDS.get(name) or (name,)


def _trial_value(name: str, value: Any) -> Any:
    """A sampled value as the settings take it (Ray/Optuna may hand numpy scalars back)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if _targets(name) == ("search.primitives",) and isinstance(value, str):
        value = tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _assign(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree[part]
    tree[leaf] = value


class _TrialSettings(_Strict):
    search: SearchSettings
    eval: EvalSettings


def _build_settings(base: Mapping[str, BaseModel], values: Mapping[str, Any]) -> _TrialSettings:
    """Apply ``{space name: value}`` to the base settings and validate (bounds enforced)."""
    tree = {root: settings.model_dump() for root, settings in base.items()}
    for name, value in values.items():
        for path in _targets(name):
            _assign(tree, path, _trial_value(name, value))
    return _TrialSettings.model_validate(tree)


# ------------------------------------------------------------------------------------- tune
PRUNER_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "wilcoxon": {"p_threshold": 0.1, "n_startup_steps": 2},
    "median": {"n_startup_trials": 5, "n_warmup_steps": 0},
    "hyperband": {"min_resource": 1, "max_resource": "auto", "reduction_factor": 3},
    "none": {},
}
"""Options of each pruner kind with their defaults (Optuna's), passed to the Optuna pruner."""


class PrunerConfig(_Strict):
    """An Optuna pruner: ``wilcoxon`` across folds, ``median``/``hyperband`` across epochs, or none.

    Only the options of the chosen ``kind`` may be given; the others stay None.
    """

    kind: Literal["wilcoxon", "median", "hyperband", "none"] = "wilcoxon"
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
        kind = data.get("kind", "wilcoxon")
        if kind not in PRUNER_OPTIONS:
            return data  # the Literal reports it
        own = PRUNER_OPTIONS[kind]
        given = {key: value for key, value in data.items() if value is not None}  # a dump has None for others
        foreign = [key for key in given if key != "kind" and key not in own and key in cls.model_fields]
        _raise_at(
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


class ResourcesConfig(_Strict):
    """Resources of one trial; fractional GPUs share a device (0.25: four trials per GPU)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"gpu above 1 must be a whole number (Ray cannot split several GPUs), but got {value}")
        return value


class TuneConfig(_Strict):
    """How Ray Tune runs the trials."""

    num_samples: int = Field(8, ge=1, description="trials (times the grid size, with grid domains)")
    max_concurrent: int = Field(2, ge=1)
    searcher: Literal["optuna-tpe", "random", "grid"] = "optuna-tpe"
    multi_objective: bool = Field(False, description="optuna-tpe over (UA max, parameters min)")
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
        return str(_absolute(Path(value)))


# ---------------------------------------------------------------------------- the experiment
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # also a folder name in the leaderboard
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_FOLDS_PER_SCHEME = {"speaker-pairs": 5}  # loso: as many as the corpus has sessions


class ExperimentConfig(_Strict):
    """One experiment: see docs/config.md for every key."""

    name: str = Field(description="experiment name, used in file names: letters, digits, _ . -")
    description: str = ""
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    data: DataConfig
    folds: FoldsConfig
    search: SearchSettings = SearchSettings()
    eval: EvalSettings = EvalSettings()
    space: dict[str, SpaceEntry] = Field(default_factory=dict)
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_storage(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("name"), str):
            tune = data.get("tune", {})
            if isinstance(tune, Mapping) and tune.get("storage") is None:
                data = {**data, "tune": {**tune, "storage": "runs"}}
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME.match(value) or value in (".", ".."):
            raise ValueError(f"name must be letters, digits, '_', '.' or '-' (it names files), but got {value!r}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, but got {value!r}")
        return value

    @field_validator("space")
    @classmethod
    def _known_names(cls, space: dict[str, Any]) -> dict[str, Any]:
        errors: list[tuple[tuple[str | int, ...], str, Any]] = []
        claimed: dict[str, str] = {}
        for name, entry in space.items():
            if name not in SHORTHANDS:
                if not name.startswith(("search.", "eval.")):
                    errors.append(
                        (
                            (name,),
                            f"unknown parameter; expected one of: {', '.join(SHORTHANDS)}, "
                            "or a dotted setting path starting with search. or eval.",
                            _dump_space_entry(entry),
                        )
                    )
                    continue
                reason = _settings_path_error(name)
                if reason:
                    errors.append(((name,), reason, _dump_space_entry(entry)))
                    continue
            for path in _targets(name):
                if path in claimed:
                    errors.append(
                        ((name,), f"sets {path}, which {claimed[path]} already sets", _dump_space_entry(entry))
                    )
                claimed.setdefault(path, name)
        _raise_at(errors, "space")
        return space

    @model_validator(mode="after")
    def _coherent(self) -> ExperimentConfig:
        errors: list[tuple[tuple[str | int, ...], str, Any]] = []
        base = {"search": self.search, "eval": self.eval}
        fixed = {name: entry for name, entry in self.space.items() if not isinstance(entry, Domain)}
        for name, value in fixed.items():
            try:
                _build_settings(base, {name: value})
            except ValidationError as error:
                errors.append(
                    (("space", name), f"makes invalid settings: {validation_message(error)}", _plain_value(value))
                )
        if not errors:
            try:
                _build_settings(base, fixed)
            except ValidationError as error:
                errors.append(
                    (
                        ("space",),
                        f"the fixed values together make invalid settings: {validation_message(error)}",
                        {n: _plain_value(v) for n, v in fixed.items()},
                    )
                )
        _raise_at(errors, "ExperimentConfig")  # domains are probed on top of valid fixed values
        for name, entry in self.space.items():
            if not isinstance(entry, Domain):
                continue
            for value in entry.probe_values():
                try:
                    _build_settings(base, {**fixed, name: value})
                except ValidationError as error:
                    errors.append(
                        (
                            ("space", name),
                            f"{entry.kind} value {_short_repr(_plain_value(value))} makes "
                            f"invalid settings: {validation_message(error)}",
                            entry.to_yaml(),
                        )
                    )
                    break
            if entry.kind == "grid" and self.tune.searcher == "optuna-tpe":
                errors.append(
                    (
                        ("space", name),
                        "grid domains are not supported by searcher optuna-tpe; use "
                        "searcher grid or random, or a choice domain",
                        entry.to_yaml(),
                    )
                )
            if entry.kind != "grid" and self.tune.searcher == "grid":
                errors.append(
                    (
                        ("space", name),
                        f"searcher grid needs every domain to be a grid (or a fixed value), but this is {entry.kind}",
                        entry.to_yaml(),
                    )
                )
        if self.tune.multi_objective and self.tune.searcher != "optuna-tpe":
            errors.append(
                (
                    ("tune", "multi_objective"),
                    f"multi_objective needs searcher optuna-tpe, but searcher is {self.tune.searcher!r}",
                    True,
                )
            )
        errors.extend(self._wilcoxon_reachable())
        _raise_at(errors, "ExperimentConfig")
        return self

    def _wilcoxon_reachable(self) -> list[tuple[tuple[str | int, ...], str, Any]]:
        """A Wilcoxon pruner over too few folds can never reach its p threshold: say so now."""
        pruner = self.tune.pruner
        n_folds = len(self.folds.use) if self.folds.use else _FOLDS_PER_SCHEME.get(self.folds.scheme)
        if pruner.kind != "wilcoxon" or n_folds is None:
            return []
        # Before the last fold, at most n_folds - 1 paired differences exist, and the one-sided
        # exact Wilcoxon test on n differences cannot go below 0.5 ** n.
        steps = n_folds - 1
        p_threshold, n_startup_steps = pruner.options["p_threshold"], pruner.options["n_startup_steps"]
        if steps < max(2, n_startup_steps) or 0.5**steps >= p_threshold:
            return [
                (
                    ("tune", "pruner"),
                    f"wilcoxon cannot prune any trial before its last fold: with "
                    f"{n_folds} folds it compares at most {steps} fold UA(s), but it needs at least "
                    f"{max(2, n_startup_steps)} (2 and n_startup_steps) and the smallest possible p-value, "
                    f"{0.5 ** max(steps, 0):g}, must be below p_threshold {p_threshold}; use more folds "
                    "(folds.use), a higher p_threshold, or another pruner",
                    pruner.model_dump(),
                )
            ]
        return []

    def fold_protocol(self) -> FoldProtocol:
        """The ``FoldProtocol`` of this experiment (classes, merges, improvised-only, folds)."""
        from trainers.folds import FoldProtocol

        return FoldProtocol(
            scheme=self.folds.scheme,
            classes=self.data.classes,
            merges=self.data.merges,
            improvised_only=self.data.improvised_only,
            valid_speakers=self.folds.valid_speakers,
            seed=self.folds.seed,
        )


# -------------------------------------------------------------------------------- YAML loading
class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads ``1e-3`` as a float (YAML 1.2 style)."""


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_error(where: str, error: yaml.YAMLError) -> ConfigError:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    detail = f"{context}, {problem}" if context else problem
    if mark is not None:
        return ConfigError(f"{where}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: {detail}")
    return ConfigError(f"{where}: YAML syntax error: {detail}")


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _apply_override(tree: dict[str, Any], override: str) -> None:
    """``a.b.c=value``: value parsed as YAML; missing sections are created; ``space.<name>`` keeps
    the rest of the path as one key (space names may contain dots: ``space.search.epochs=...``)."""
    key, sep, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(_KEY.match(part) for part in parts):
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE with a dotted key, e.g. tune.num_samples=8")
    if parts[0] == "space" and len(parts) > 2:
        parts = ["space", ".".join(parts[1:])]
    try:
        value = yaml.load(text, Loader=_Loader) if text.strip() else None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"--set {override!r}: the value is not valid YAML ({problem})") from None
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"--set {override!r}: {where} is {_short_repr(child)}, not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path, *, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML, apply ``--set key.path=value`` overrides, validate.

    Relative paths inside are taken relative to the current working directory. Raises
    ``ConfigError`` naming the file (and line, for YAML syntax) and every bad key path.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{where}: cannot read the config ({error.strerror or error})") from None
    try:
        tree = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise _yaml_error(where, error) from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{where}: expected a mapping of sections (name, data, folds, ...), "
            f"but the file holds {type(tree).__name__}"
        )
    for override in overrides:
        _apply_override(tree, override)
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as error:
        lines = _error_lines(error, model=ExperimentConfig)
        raise ConfigError("\n".join(f"{where}: {line}" for line in lines)) from None


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML (every default filled in); ``load_config`` reads it back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------ trials
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
        built = _build_settings({"search": config.search, "eval": config.eval}, values)
    except ValidationError as error:
        raise ConfigError(
            f"trial parameters {dict(params)!r} make invalid settings: {validation_message(error)}"
        ) from None
    return built.search, built.eval


def _tune_value(name: str, value: Any) -> Any:
    """Lists of primitives travel as ``"a,b,c"`` strings: Optuna categories must be scalars."""
    if _targets(name) == ("search.primitives",) and isinstance(value, tuple):
        return ",".join(value)
    return _plain_value(value)


def tune_param_space(config: ExperimentConfig) -> dict[str, Any]:
    """The space as a Ray Tune ``param_space``: ``{space name: domain or fixed value}``.

    ``primitives`` values (lists) become comma-joined strings; ``settings_for_trial`` reads them.
    """
    from ray import tune  # lazily: loading a config must not import ray

    space: dict[str, Any] = {}
    for name, entry in config.space.items():
        if not isinstance(entry, Domain):
            space[name] = _tune_value(name, entry)
        elif entry.kind == "choice":
            space[name] = tune.choice([_tune_value(name, value) for value in entry.args])
        elif entry.kind == "grid":
            space[name] = tune.grid_search([_tune_value(name, value) for value in entry.args])
        else:
            space[name] = getattr(tune, entry.kind)(*entry.args)
    return space


# -------------------------------------------------------------------------------- fingerprint
RESUME_SAFE_FIELDS: tuple[str, ...] = (
    "description",
    "device",
    "data.cache_dir",
    "tune.max_concurrent",
    "tune.resources",
    "tune.max_failures",
    "tune.storage",
    "tune.reuse_actors",
    "tune.keep_checkpoints",
)
"""Keys left out of ``config_fingerprint``: where and how fast an experiment runs, not what it
computes; changing them does not stop a resume."""


def config_fingerprint(config: ExperimentConfig) -> str:
    """A short stable hash (16 hex digits) of the config's canonical JSON, minus
    ``RESUME_SAFE_FIELDS``; an experiment is resumed only under the same fingerprint."""
    tree = config.model_dump(mode="json")
    for key in RESUME_SAFE_FIELDS:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node.pop(leaf, None)
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
