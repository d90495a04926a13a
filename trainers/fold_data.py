"""One fold's tensors: features and class indices per split, loaded once from the feature cache.

A trial keeps the whole fold in memory as stacked tensors (IEMOCAP's ~5.5k utterances at
1 x 128 x 128 float32 are ~360 MB), so a batch is plain indexing and training never waits for
I/O. Class order is fixed by the experiment (``classes``), never by what one split contains,
so class indices mean the same thing on every fold.

The manifest given to ``load_fold_data`` may hold more rows than the fold table: every
utterance of the fold's speakers, whatever its label (``fold_speaker_rows``). The fold table
alone decides what is in train/valid/test; the other rows only feed the per-speaker statistics
of ``speaker`` normalisation (``trainers.normalization``), which come from all of a speaker's
audio, never from the utterances that the protocol's classes kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from trainers.features import AnyPreset, SSLPreset, get_preset, load_features
from trainers.folds import SEARCH_ROLES, SPLITS, protocol_classes
from trainers.normalization import Normalization, Normalizer, SpeakerStatistics, pooled_statistics


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, 1, F, T) float32, or SSL layers (N, L, D, T) float16 (batches are float32)
    y: torch.Tensor  # (N,) int64 class indices
    utt_ids: tuple[str, ...]
    lengths: torch.Tensor | None = None  # (N,) int64 frames carrying signal (None: all T)
    speakers: tuple[str, ...] = ()  # speaker of each utterance, when known
    # x stacks an SSL encoder's layers, (N, L, D, T): networks mix them first (search_space.frontend)
    layered: bool = False

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def valid_lengths(self) -> torch.Tensor:
        """``(N,)`` frames carrying each clip's own signal (every frame when unknown)."""
        if self.lengths is not None:
            return self.lengths
        return torch.full((len(self),), self.x.shape[-1], dtype=torch.int64)

    def subset(self, index: torch.Tensor) -> Split:
        """The samples at ``index`` (a 1-D int64 tensor), in that order."""
        rows = index.tolist()
        return Split(
            x=self.x[index],
            y=self.y[index],
            utt_ids=tuple(self.utt_ids[i] for i in rows),
            lengths=None if self.lengths is None else self.lengths[index],
            speakers=tuple(self.speakers[i] for i in rows) if self.speakers else (),
            layered=self.layered,
        )

    def normalized(self, normalizer: Normalizer) -> Split:
        """The same samples with ``normalizer`` applied (see ``trainers.normalization``)."""
        x = normalizer(self.x, self.valid_lengths, self.speakers or None)  # (N, 1, F, T)
        return replace(self, x=x)


def concat_splits(*parts: Split) -> Split:
    """One split holding ``parts`` in order (lengths and speakers kept when every part has them)."""
    lengths = [part.lengths for part in parts]
    if len({part.layered for part in parts}) > 1:
        raise ValueError("cannot concatenate splits of SSL encoder layers with splits of spectrograms.")
    return Split(
        x=torch.cat([part.x for part in parts]),
        y=torch.cat([part.y for part in parts]),
        utt_ids=tuple(utt for part in parts for utt in part.utt_ids),
        lengths=None if any(length is None for length in lengths) else torch.cat(lengths),
        speakers=tuple(s for part in parts for s in part.speakers) if all(part.speakers for part in parts) else (),
        layered=parts[0].layered if parts else False,
    )


@dataclass(frozen=True)
class FoldData:
    fold: int
    classes: tuple[str, ...]
    train: Split
    valid: Split
    test: Split
    train_roles: tuple[str | None, ...] = ()  # search role of each train utterance (weights/alphas)
    # speaker -> (mean, std) (1, C, F, 1) over all of that speaker's audio in the manifest (any label)
    speaker_stats: SpeakerStatistics | None = None
    # the normalisation mode applied to every split (``normalized``); None: raw features, which
    # run_search and run_evaluation refuse (require_normalization)
    normalization: Normalization | None = None

    def normalized(self, normalizer: Normalizer) -> tuple[FoldData, Normalizer]:
        """Every split normalised; ``train`` statistics come from the training split only, ``speaker``
        statistics from all of each speaker's audio (``speaker_stats``, from ``load_fold_data``).

        Returns the data, which records the mode it was normalised with, and the fitted normaliser
        (what an exported model must apply). Raises ValueError for data normalised already (twice
        would standardise standardised features), and for ``speaker`` when the fold carries no
        ``speaker_stats``: statistics of the fold's own utterances would depend on which of a
        speaker's clips the protocol kept."""
        if self.normalization is not None:
            raise ValueError(
                f"fold {self.fold} is normalised already ({self.normalization!r}); normalise the raw fold "
                "from load_fold_data once."
            )
        if normalizer.mode == "speaker" and self.speaker_stats is None:
            raise ValueError(
                f"fold {self.fold} carries no speaker statistics, but speaker normalisation needs each speaker's "
                "statistics over all of that speaker's audio: load the fold with load_fold_data, which computes them "
                "from the manifest."
            )
        fitted = normalizer.fit(self.train.x, self.train.valid_lengths, speaker_stats=self.speaker_stats)
        data = replace(
            self,
            train=self.train.normalized(fitted),
            valid=self.valid.normalized(fitted),
            test=self.test.normalized(fitted),
            normalization=normalizer.mode,
        )
        return data, fitted

    def require_normalization(self, expected: Normalization | None = None) -> None:
        """Refuse to train on features that were not normalised (or not as ``expected`` says).

        ``load_fold_data`` returns raw features; ``run_fold`` normalises them as
        ``EvalSettings.normalization`` says. Called from Python, ``run_search`` or
        ``run_evaluation`` on the raw fold would silently train on unnormalised inputs.
        """
        if self.normalization is None:
            wanted = expected or "train"
            raise ValueError(
                f"fold {self.fold} holds raw features: normalise them first, e.g. "
                f"data, _ = data.normalized(Normalizer({wanted!r})) (Normalizer('none') keeps them as computed), "
                "or call run_fold, which normalises as EvalSettings.normalization says."
            )
        if expected is not None and self.normalization != expected:
            raise ValueError(
                f"fold {self.fold} was normalised with {self.normalization!r}, but the settings say "
                f"normalization={expected!r}: normalise the raw fold with Normalizer({expected!r})."
            )

    def search_splits(self) -> tuple[Split, Split]:
        """``(weight_data, alpha_data)``: the training speakers split by speaker for the search.

        Raises ValueError naming the fold when it has no alpha (or no weight) speakers.
        """
        if len(self.train_roles) != len(self.train):
            raise ValueError(
                f"fold {self.fold} carries no search roles for its training speakers; its fold table predates "
                "them: make it again with `sernas folds`."
            )
        roles = list(self.train_roles)
        parts = []
        for role in SEARCH_ROLES:
            index = torch.tensor([i for i, r in enumerate(roles) if r == role], dtype=torch.int64)
            if len(index) == 0:
                raise ValueError(
                    f"fold {self.fold} has no speaker in the search role {role!r} among its {len(self.train)} training utterances: the "
                    "search splits the training speakers into weight and alpha speakers and needs at least two "
                    "training speakers (fewer validation speakers, or search.arch_data: valid)."
                )
            parts.append(self.train.subset(index))
        return parts[0], parts[1]

    def utterance_digests(self) -> dict[str, str]:
        """Per split (``train``, ``valid``, ``test``), 16 hex digits of SHA-256 over its sorted
        ``utt_id``, class index and, on ``train``, search role: checkpoints record them, so that a
        rerun on other utterances (an edited corpus or fold table) is refused instead of resumed."""
        roles = {"train": self.train_roles} if len(self.train_roles) == len(self.train) else {}
        digests = {}
        for name in SPLITS:
            split: Split = getattr(self, name)
            role = roles.get(name) or ("",) * len(split)
            entries = sorted(f"{utt}\t{int(y)}\t{r or ''}" for utt, y, r in zip(split.utt_ids, split.y.tolist(), role))
            digests[name] = hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()[:16]
        return digests

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # (1, F, T), or SSL layers (L, D, T)

    @property
    def layered(self) -> bool:
        """The features stack an SSL encoder's layers (``Split.layered``)."""
        return self.train.layered

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights from the training split (``N / (K * count_k)``)."""
        return inverse_frequency_weights(self.train.y, n_classes=len(self.classes))


def inverse_frequency_weights(labels: torch.Tensor, *, n_classes: int) -> torch.Tensor:
    """``N / (K * count_k)`` per class (0 for absent classes): balances a cross-entropy loss."""
    counts = torch.bincount(labels, minlength=n_classes).to(torch.float32)
    return torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), torch.zeros(()))


def fold_speaker_rows(manifest: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """Every row of ``manifest`` whose speaker appears in ``folds``, any label: what a fold's data
    and its speakers' statistics read (``load_fold_data``), so what needs features."""
    return manifest[manifest["speaker"].isin(folds["speaker"])]


def speaker_statistics(
    manifest: pd.DataFrame,
    *,
    speakers: Iterable[str],
    preset: AnyPreset | str,
    cache_dir: str | Path | None = None,
    manifest_path: str | Path | None = None,
    loaded: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each of ``speakers``' per-bin mean and std ``(1, C, F, 1)`` over the valid frames of all of
    that speaker's rows in ``manifest`` (every label), one speaker in memory at a time.

    ``loaded`` (utt_id -> features ``(C, F, T)``) are features already in memory; the other rows
    are read from the feature cache. Rows are taken in manifest order, so the statistics do not
    depend on which of them were loaded before. Raises ValueError naming a speaker with no row.
    """
    preset = get_preset(preset)
    loaded = loaded or {}
    wanted = list(dict.fromkeys(str(s) for s in speakers))
    rows_of = {
        str(name): rows for name, rows in manifest[manifest["speaker"].isin(wanted)].groupby("speaker", sort=False)
    }
    absent = [s for s in wanted if s not in rows_of]
    if absent:
        raise ValueError(
            f"speaker(s) {', '.join(absent[:5])} have no row in the manifest: their speaker statistics need at "
            "least one utterance of each."
        )
    stats = {}
    dtype = torch.float16 if isinstance(preset, SSLPreset) else torch.float32  # as load_features gives them
    for speaker in wanted:
        rows = rows_of[speaker]
        in_memory = torch.tensor([utt in loaded for utt in rows["utt_id"]], dtype=torch.bool)  # (n,)
        x = torch.empty((len(rows), *preset.output_shape), dtype=dtype)  # (n, C, F, T) of this speaker
        if in_memory.any():
            x[in_memory] = torch.stack([loaded[utt] for utt in rows.loc[in_memory.numpy(), "utt_id"]])
        if not in_memory.all():
            x[~in_memory] = load_features(
                rows[(~in_memory).numpy()], preset=preset, cache_dir=cache_dir, manifest_path=manifest_path
            )
        lengths = torch.tensor([preset.valid_frames(float(d)) for d in rows["duration_s"]], dtype=torch.int64)
        stats[speaker] = pooled_statistics(x, lengths)  # (1, C, F, 1) each
    return stats


def load_fold_data(
    *,
    manifest: pd.DataFrame,
    folds: pd.DataFrame,
    fold: int,
    preset: AnyPreset | str,
    cache_dir: str | Path | None = None,
    classes: Sequence[str] | None = None,
    manifest_path: str | Path | None = None,
) -> FoldData:
    """Join the fold table with the manifest and load the cached features of its utterances.

    ``manifest`` may hold more rows than the fold's utterances (``fold_speaker_rows``: every
    utterance of its speakers, any label); each speaker's statistics (``FoldData.speaker_stats``,
    for ``speaker`` normalisation) come from all of that speaker's rows in it, so their features
    must be in the cache too.
    """
    table = folds[folds["fold"] == fold]
    if table.empty:
        raise ValueError(f"fold {fold} is not in the fold table (folds present: {sorted(folds['fold'].unique())}).")
    classes = protocol_classes(folds, classes=classes)
    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise ValueError(f"fold {fold} has labels {unknown} outside the classes {list(classes)}.")
    rows = manifest.set_index("utt_id", drop=False)
    missing = table.loc[~table["utt_id"].isin(rows.index), "utt_id"]
    if len(missing):
        raise ValueError(
            f"{len(missing)} utterance(s) of fold {fold} are not in the manifest "
            f"(first: {', '.join(missing.head(3))}); was the fold table made from another manifest?"
        )
    subset = rows.loc[table["utt_id"]].reset_index(drop=True)
    moved = (subset["speaker"].astype(str).to_numpy() != table["speaker"].astype(str).to_numpy()).nonzero()[0]
    if len(moved):
        first = moved[0]
        raise ValueError(
            f"{len(moved)} utterance(s) of fold {fold} have another speaker in the manifest than in the fold table "
            f"(first: {subset['utt_id'].iloc[first]}: {subset['speaker'].iloc[first]} vs "
            f"{table['speaker'].iloc[first]}); was the fold table made from another manifest?"
        )
    preset = get_preset(preset)
    features = load_features(subset, preset=preset, cache_dir=cache_dir, manifest_path=manifest_path)
    class_index = {name: index for index, name in enumerate(classes)}
    labels = torch.tensor([class_index[label] for label in table["label"]], dtype=torch.int64)
    lengths = torch.tensor([preset.valid_frames(float(d)) for d in subset["duration_s"]], dtype=torch.int64)
    splits = {}
    for split in SPLITS:
        in_split = (table["split"] == split).to_numpy()
        mask = torch.from_numpy(in_split)
        splits[split] = Split(
            x=features[mask],
            y=labels[mask],
            utt_ids=tuple(table.loc[in_split, "utt_id"]),
            lengths=lengths[mask],
            speakers=tuple(str(s) for s in table.loc[in_split, "speaker"]),
            layered=isinstance(preset, SSLPreset),
        )
    roles = ()
    if "search_role" in table.columns:
        train_rows = table.loc[(table["split"] == "train").to_numpy(), "search_role"]
        roles = tuple(None if pd.isna(role) else str(role) for role in train_rows)
    stats = speaker_statistics(
        manifest,
        speakers=table["speaker"],
        preset=preset,
        cache_dir=cache_dir,
        manifest_path=manifest_path,
        loaded=dict(zip(subset["utt_id"], features)),
    )
    return FoldData(fold=fold, classes=classes, **splits, train_roles=roles, speaker_stats=stats)


def iterate_batches(
    split: Split, *, batch_size: int, shuffle: bool, generator: torch.Generator | None = None, balanced: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x (B,C,F,T) float32, y (B,), lengths (B,))``; every sample once per pass unless ``balanced``.

    ``lengths`` are the valid frames of each clip (``Split.valid_lengths``): networks pool over
    those only, so the padding never counts.

    ``balanced`` draws ``len(split)`` samples with replacement, each class equally likely (the
    alternative to a class-weighted loss on imbalanced corpora). The last batch may be short:
    no sample is ever dropped.
    """
    n = len(split)
    if balanced:
        counts = torch.bincount(split.y).to(torch.float64)
        order = torch.multinomial(1.0 / counts[split.y], n, replacement=True, generator=generator)
    elif shuffle:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    lengths = split.valid_lengths  # (N,)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield split.x[index].to(torch.float32), split.y[index], lengths[index]  # SSL features are kept in float16
