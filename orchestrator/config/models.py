"""The data and fold sections of an experiment: which utterances, labels, features and folds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.config.errors import Issue, raise_at
from trainers.corpora.scan import DEFAULT_MIN_DURATION_S
from trainers.folds import FoldProtocol

__all__ = [
    "SPLIT_FILE_DATASETS",
    "DataConfig",
    "Dataset",
    "FoldsConfig",
    "StrictModel",
    "SyntheticOptions",
    "absolute_path",
]


class StrictModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def absolute_path(path: Path) -> Path:
    """Relative paths are taken relative to the current working directory, once, at load time.

    Ray Tune runs trials in their own working directories, so a relative path must not survive
    into a trial. ``~`` is expanded; symlinks are kept (no ``resolve()``).
    """
    path = path.expanduser()
    return path if path.is_absolute() else Path.cwd() / path


class SyntheticOptions(StrictModel):
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


Dataset = Literal["iemocap", "msp-improv", "csv", "synthetic", "emobox", "s3prl", "speechbrain"]
SPLIT_FILE_DATASETS = ("emobox", "s3prl", "speechbrain")  # = trainers.imports.SPLIT_FORMATS (a test holds it)


class DataConfig(StrictModel):
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
    audio_root: Path | None = Field(
        None, description="split files (emobox, s3prl, speechbrain): the folder their wav paths are relative to"
    )
    speakers: Path | None = Field(
        None, description="split files: a CSV map utt_id (or key),speaker[,gender,session] of each utterance's speaker"
    )
    corpus: str | None = Field(
        None,
        min_length=1,
        description="split files: the corpus they describe (its speaker naming rule); default: EmoBox's dataset "
        "field, iemocap for s3prl and speechbrain",
    )

    @model_validator(mode="before")
    @classmethod
    def _synthetic_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("dataset") == "synthetic" and data.get("synthetic") is None:
            data = {**data, "synthetic": {}}
        return data

    @field_validator("root", "manifest", "cache_dir", "audio_root", "speakers")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return None if value is None else absolute_path(value)

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
        errors: list[Issue] = []
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
        if self.dataset not in SPLIT_FILE_DATASETS:
            for name in ("audio_root", "speakers", "corpus"):
                value = getattr(self, name)
                if value is not None:
                    errors.append(
                        (
                            (name,),
                            f"applies to split files (dataset {', '.join(SPLIT_FILE_DATASETS)}), but dataset is "
                            f"{self.dataset!r}",
                            str(value),
                        )
                    )
        raise_at(errors, "DataConfig")
        return self


class FoldsConfig(StrictModel):
    """Speaker-independent folds (see ``trainers.folds``)."""

    scheme: Literal["loso", "speaker-pairs", "given"] = Field(
        description="loso | speaker-pairs (made from the manifest's sessions) | given (the folds of data.root's split "
        "files, dataset emobox, s3prl or speechbrain)"
    )
    use: tuple[Annotated[int, Field(ge=1)], ...] | None = Field(
        None, min_length=1, description="fold numbers; None: all"
    )
    valid_speakers: int = Field(
        FoldProtocol.valid_speakers, ge=1, description="validation speakers per fold, from its non-test speakers"
    )
    arch_share: float = Field(
        FoldProtocol.arch_share,
        gt=0,
        lt=1,
        description="share of the training speakers whose utterances train the alphas in the search (by speaker)",
    )
    seed: int = Field(FoldProtocol.seed, description="seed of the speaker roles (validation, weights, alphas)")
    inner: int | None = Field(
        None,
        ge=2,
        description="inner speaker folds per outer fold, built from its non-test speakers; null: choose on the "
        "outer fold's validation speakers (docs/selection.md)",
    )
    accept_speaker_overlap: bool = Field(
        False,
        description="search folds that are not speaker-independent (column speaker_check of the fold table: a test "
        "speaker also trains or validates, or speakers are unknown); false: sernas search refuses them",
    )

    @field_validator("use")
    @classmethod
    def _unique_folds(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"use must list each fold once, but got {list(value)}")
        return value
