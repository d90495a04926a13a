"""The data and fold sections of an experiment: which utterances, labels, features and folds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.config.errors import Issue, raise_at
from orchestrator.names import NAME_RULE, check_name
from trainers.corpora.scan import DEFAULT_MIN_DURATION_S
from trainers.folds import FoldProtocol

__all__ = [
    "SPLIT_FILE_DATASETS",
    "CorpusConfig",
    "DataConfig",
    "Dataset",
    "FoldsConfig",
    "SourceConfig",
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


class CorpusConfig(StrictModel):
    """One corpus: where it is and how it is read (the data section itself, or one of ``data.sources``)."""

    dataset: Dataset
    root: Path | None = Field(None, description="corpus root (csv: the CSV file; synthetic: where it is generated)")
    manifest: Path | None = Field(None, description="an existing manifest .parquet, instead of scanning root")
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

    @field_validator("root", "manifest", "audio_root", "speakers")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return None if value is None else absolute_path(value)

    @model_validator(mode="after")
    def _consistent(self) -> CorpusConfig:
        raise_at(self.corpus_problems(), type(self).__name__)
        return self

    def corpus_problems(self) -> list[Issue]:
        """What is wrong with this corpus's keys (a key path relative to the corpus, a message, the value)."""
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
        return errors

    def input_paths(self) -> tuple[Path, ...]:
        """The paths this corpus is read from (root, manifest, audio root, speaker map), as given."""
        return tuple(p for p in (self.root, self.manifest, self.audio_root, self.speakers) if p is not None)


_CORPUS_KEYS = tuple(CorpusConfig.model_fields)


class SourceConfig(CorpusConfig):
    """One corpus of a cross-corpus experiment (``data.sources``): the corpus keys, its name and its class mapping."""

    name: str = Field(
        description="the corpus's name in the experiment (default: corpus, else dataset): it prefixes utterance ids "
        "and speakers (name/Ses01F) and folds.test_corpora / train_corpora name it; " + NAME_RULE
    )
    merges: dict[str, str] = Field(
        default_factory=dict,
        description="this corpus's raw label -> class of data.classes (a raw label named like a class is that "
        "class; any other is left out)",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("name") is None:
            named = data.get("corpus") or data.get("dataset")
            if isinstance(named, str):
                data = {**data, "name": named}
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name("name", value)


class DataConfig(CorpusConfig):
    """Which utterances, with which labels, as which features: one corpus (``dataset`` and its keys)
    or several (``sources``, for ``folds.scheme: cross-corpus``)."""

    dataset: Dataset | None = Field(  # type: ignore[assignment]  (None with sources)
        None, description="the corpus reader or split-file format; leave out with sources"
    )
    preset: str = Field(
        "paper-mfcc", description="feature preset, see trainers.features.PRESETS, or a preset file (.json)"
    )
    weights: Path | None = Field(
        None,
        description="an SSL preset's encoder weights (default: torch hub's cache, $TORCH_HOME/hub/checkpoints/"
        "<torchaudio's file name>); never downloaded",
    )
    cache_dir: Path | None = Field(None, description="feature cache (default: $SERNAS_CACHE_DIR or ~/.cache)")
    classes: tuple[str, ...] | None = Field(None, min_length=1, description="classes kept after merges; None: all")
    merges: dict[str, str] = Field(default_factory=dict, description="source -> target, before selecting classes")
    improvised_only: bool = False
    sources: tuple[SourceConfig, ...] | None = Field(
        None,
        min_length=2,
        description="several corpora in one experiment (folds.scheme cross-corpus), each with the corpus keys, a name "
        "and its own merges; the corpus keys of data itself are then left out",
    )

    @field_validator("cache_dir", "weights")
    @classmethod
    def _absolute_cache(cls, value: Path | None) -> Path | None:
        return None if value is None else absolute_path(value)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        from trainers.features import get_preset

        if value.endswith(".json"):
            value = str(absolute_path(Path(value)))
        get_preset(value)  # a built-in name or a valid preset file; the error says which are known
        return value

    def resolved_preset(self, *, check: bool = False) -> Any:
        """The preset to compute and load with: for an SSL preset its weights (``weights``, else torch
        hub's cache) found and checksummed, and with ``check`` loaded once, or
        ``trainers.features.WeightsError`` naming the file."""
        from trainers.features import check_weights, get_preset, resolve_preset

        if check:
            return check_weights(get_preset(self.preset), weights=self.weights)
        return resolve_preset(get_preset(self.preset), weights=self.weights)

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            duplicates = sorted({c for c in value if value.count(c) > 1})
            raise ValueError(f"classes must be unique, but {', '.join(duplicates)} appear more than once")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        errors = self._source_problems() if self.sources is not None else self._one_corpus_problems()
        raise_at(errors, "DataConfig")
        return self

    def _one_corpus_problems(self) -> list[Issue]:
        if self.dataset is None:
            return [(("dataset",), "give dataset (one corpus) or sources (several corpora, cross-corpus)", None)]
        errors = self.corpus_problems()
        errors += self._merge_targets(self.merges, ("merges",))
        return errors

    def _source_problems(self) -> list[Issue]:
        errors: list[Issue] = []
        for name in _CORPUS_KEYS:  # set on data itself (dataset's default is None there)
            value = getattr(self, name)
            if value != type(self).model_fields[name].default:
                errors.append(
                    (
                        (name,),
                        f"with sources, give {name} per corpus (data.sources[i].{name}), not for data as a whole",
                        str(value) if isinstance(value, Path) else value,
                    )
                )
        if self.merges:
            errors.append(
                (
                    ("merges",),
                    "with sources, each corpus maps its own labels: give merges per corpus (data.sources[i].merges)",
                    dict(self.merges),
                )
            )
        if self.classes is None:
            errors.append(
                (
                    ("classes",),
                    "sources need the classes every corpus is mapped to (e.g. [neu, hap, sad, ang]): the class "
                    "mapping across corpora is explicit",
                    None,
                )
            )
        seen: dict[str, int] = {}
        for index, source in enumerate(self.sources or ()):
            if source.name in seen:
                errors.append(
                    (
                        ("sources", index, "name"),
                        f"sources {seen[source.name]} and {index} are both named {source.name!r}: give each corpus "
                        "its own name (it prefixes utterance ids and speakers)",
                        source.name,
                    )
                )
            seen.setdefault(source.name, index)
            errors += self._merge_targets(source.merges, ("sources", index, "merges"))
        return errors

    def _merge_targets(self, merges: Mapping[str, str], where: tuple[str | int, ...]) -> list[Issue]:
        if self.classes is None:
            return []
        return [
            (
                (*where, source),
                f"merge target {target!r} is not among classes {', '.join(self.classes)}",
                target,
            )
            for source, target in merges.items()
            if target not in self.classes
        ]

    def corpora(self) -> tuple[CorpusConfig, ...]:
        """The corpora of the experiment: its sources, or the data section itself."""
        return self.sources if self.sources is not None else (self,)

    def source_names(self) -> tuple[str, ...]:
        """The names of ``sources`` (empty with one corpus)."""
        return tuple(source.name for source in self.sources or ())


class FoldsConfig(StrictModel):
    """Speaker-independent folds (see ``trainers.folds``)."""

    scheme: Literal["loso", "speaker-pairs", "given", "cross-corpus"] = Field(
        description="loso | speaker-pairs (made from the manifest's sessions) | given (the folds of data.root's split "
        "files, dataset emobox, s3prl or speechbrain) | cross-corpus (data.sources: train on some corpora, test on "
        "another; one fold per test corpus)"
    )
    test_corpora: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        description="cross-corpus: the corpora (data.sources names) tested on, one fold each, in fold order",
    )
    train_corpora: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        description="cross-corpus: the corpora that train and validate (a fold never trains on its test corpus); "
        "null: every corpus but the fold's test corpus",
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

    @field_validator("test_corpora", "train_corpora")
    @classmethod
    def _unique_corpora(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"must name each corpus once, but got {list(value)}")
        return value

    @model_validator(mode="after")
    def _corpora_with_cross_corpus(self) -> FoldsConfig:
        errors: list[Issue] = []
        if self.scheme == "cross-corpus" and self.test_corpora is None:
            errors.append((("test_corpora",), "scheme cross-corpus needs the corpora to test on (one fold each)", None))
        if self.scheme != "cross-corpus":
            for name in ("test_corpora", "train_corpora"):
                if getattr(self, name) is not None:
                    errors.append(
                        (
                            (name,),
                            f"applies to scheme cross-corpus, but scheme is {self.scheme!r}",
                            list(getattr(self, name)),
                        )
                    )
        raise_at(errors, "FoldsConfig")
        return self
