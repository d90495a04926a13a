"""Speaker-independent folds with validation speakers carved from the training side.

A fold assigns every utterance of the protocol to ``train``, ``valid`` or ``test``. Test
speakers never appear in train or valid of the same fold (``check_folds`` proves it and every
fold table is checked before it is written). Class selection and merges (``exc -> hap``) are
applied here, because they are part of the experiment's protocol, not of the corpus.

Schemes:
- ``loso``: leave one session out; fold k tests on every speaker of the k-th session.
- ``speaker-pairs``: the paper's five folds; fold k tests on the male speaker of session k and
  the female speaker of session k+1 (cyclic), i.e. {Ses01M, Ses02F}, {Ses02M, Ses03F}, ...,
  {Ses05M, Ses01F} on IEMOCAP. Needs one F and one M speaker per session.

Validation speakers are drawn, per fold, from that fold's training speakers with a generator
seeded by (seed, fold), alternating genders when more than one is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trainers.atomic_io import read_parquet_metadata, write_parquet_atomically

SCHEMES = ("loso", "speaker-pairs")
SPLITS = ("train", "valid", "test")
METADATA_KEY = "sernas.folds"
FOLD_COLUMNS = ("utt_id", "fold", "split", "label", "speaker", "session")


@dataclass(frozen=True)
class FoldProtocol:
    """Everything that decides which utterance lands where; stored inside the fold table."""

    scheme: str
    classes: tuple[str, ...] | None = None
    merges: Mapping[str, str] = field(default_factory=dict)
    improvised_only: bool = False
    valid_speakers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, but got {self.scheme!r}.")
        if self.valid_speakers < 1:
            raise ValueError(f"valid_speakers must be >= 1, but got {self.valid_speakers}.")
        for source, target in self.merges.items():
            if self.classes is not None and target not in self.classes:
                raise ValueError(
                    f"merge {source}={target}: target {target!r} is not among classes {', '.join(self.classes)}."
                )
        object.__setattr__(self, "merges", dict(self.merges))


def parse_merges(items: Sequence[str]) -> dict[str, str]:
    """``["exc=hap", "fru=ang"]`` -> ``{"exc": "hap", "fru": "ang"}``; errors name the item."""
    merges = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"merge {item!r} must look like SOURCE=TARGET, e.g. exc=hap.")
        merges[source.strip()] = target.strip()
    return merges


def apply_protocol_labels(manifest: pd.DataFrame, protocol: FoldProtocol) -> pd.DataFrame:
    """Rows of the protocol with their protocol label (after merges, restricted to classes)."""
    frame = manifest.copy()
    if protocol.improvised_only:
        if frame["improvised"].isna().any():
            raise ValueError(
                "improvised_only needs an improvised flag on every row, but the manifest has "
                "rows without one (add an 'improvised' column to the CSV corpus)."
            )
        frame = frame[frame["improvised"].astype(bool)]
    frame["label"] = frame["label"].astype(str).replace(protocol.merges)
    if protocol.classes is not None:
        absent = [name for name in protocol.classes if name not in set(frame["label"])]
        if absent:
            raise ValueError(
                f"class(es) {', '.join(absent)} have no utterances in this manifest "
                f"(labels present: {', '.join(sorted(set(frame['label'])))})."
            )
        frame = frame[frame["label"].isin(protocol.classes)]
    if frame.empty:
        raise ValueError("no utterances left after applying the protocol (classes, merges, improvised_only).")
    return frame


def _test_speaker_sets(frame: pd.DataFrame, scheme: str) -> list[set[str]]:
    sessions = sorted(frame["session"].unique())
    if len(sessions) < 2:
        raise ValueError(f"{scheme} folds need at least 2 sessions, but the data has {len(sessions)}.")
    speakers_of = {s: set(frame.loc[frame["session"] == s, "speaker"]) for s in sessions}
    if scheme == "loso":
        return [speakers_of[s] for s in sessions]
    by_gender: dict[int, dict[str, str]] = {}
    for session in sessions:
        rows = frame.loc[frame["session"] == session, ["speaker", "gender"]].drop_duplicates()
        genders = dict(zip(rows["gender"], rows["speaker"]))
        if len(rows) != 2 or set(genders) != {"F", "M"}:
            raise ValueError(
                f"speaker-pairs folds need exactly one F and one M speaker in each session, but "
                f"session {session} has {sorted(rows['speaker'])} with genders {sorted(rows['gender'])}."
            )
        by_gender[session] = genders
    return [{by_gender[s]["M"], by_gender[sessions[(i + 1) % len(sessions)]]["F"]} for i, s in enumerate(sessions)]


def _pick_valid_speakers(train_speakers: pd.DataFrame, *, count: int, rng: np.random.Generator) -> set[str]:
    if count >= len(train_speakers):
        raise ValueError(
            f"valid_speakers={count} leaves no training speaker (only {len(train_speakers)} "
            "speakers remain outside the test set)."
        )
    order = train_speakers.iloc[rng.permutation(len(train_speakers))]
    picked: list[str] = []
    genders = list(dict.fromkeys(order["gender"]))
    while len(picked) < count:  # round-robin over genders so two valid speakers are one F, one M
        for gender in genders:
            candidates = [s for s in order.loc[order["gender"] == gender, "speaker"] if s not in picked]
            if candidates and len(picked) < count:
                picked.append(candidates[0])
    return set(picked)


def make_folds(manifest: pd.DataFrame, *, protocol: FoldProtocol, folds: Sequence[int] | None = None) -> pd.DataFrame:
    """Return the fold table (``FOLD_COLUMNS``), folds numbered from 1, checked for leakage."""
    frame = apply_protocol_labels(manifest, protocol)
    test_sets = _test_speaker_sets(frame, protocol.scheme)
    wanted = list(range(1, len(test_sets) + 1)) if folds is None else list(folds)
    for fold in wanted:
        if not 1 <= fold <= len(test_sets):
            raise ValueError(f"fold {fold} does not exist; the {protocol.scheme} scheme has folds 1..{len(test_sets)}.")
    speakers = frame[["speaker", "gender"]].drop_duplicates().sort_values("speaker").reset_index(drop=True)
    tables = []
    for fold in wanted:
        test = test_sets[fold - 1]
        missing = test - set(frame["speaker"])
        if missing:
            raise ValueError(f"fold {fold}: test speaker(s) {sorted(missing)} have no utterances.")
        rng = np.random.default_rng([protocol.seed, fold])
        valid = _pick_valid_speakers(speakers[~speakers["speaker"].isin(test)], count=protocol.valid_speakers, rng=rng)
        split = np.where(frame["speaker"].isin(test), "test", np.where(frame["speaker"].isin(valid), "valid", "train"))
        tables.append(
            pd.DataFrame(
                {
                    "utt_id": frame["utt_id"].to_numpy(),
                    "fold": fold,
                    "split": split,
                    "label": frame["label"].to_numpy(),
                    "speaker": frame["speaker"].to_numpy(),
                    "session": frame["session"].to_numpy(),
                }
            )
        )
    table = pd.concat(tables, ignore_index=True)
    table = table.astype(
        {
            "utt_id": "string",
            "split": "string",
            "label": "string",
            "speaker": "string",
            "fold": "int64",
            "session": "int64",
        }
    )
    check_folds(table)
    return table


def check_folds(table: pd.DataFrame) -> None:
    """Raise if any fold lets a test speaker into train or valid, or lacks a split."""
    for fold, rows in table.groupby("fold"):
        test_speakers = set(rows.loc[rows["split"] == "test", "speaker"])
        leaked = test_speakers & set(rows.loc[rows["split"] != "test", "speaker"])
        if leaked:
            raise RuntimeError(f"fold {fold}: test speaker(s) {sorted(leaked)} also in train/valid.")
        absent = [split for split in SPLITS if not (rows["split"] == split).any()]
        if absent:
            raise ValueError(f"fold {fold} has no {', '.join(absent)} utterances.")


def write_folds(table: pd.DataFrame, out: str | Path, *, protocol: FoldProtocol, manifest_path: str | Path) -> Path:
    check_folds(table)
    metadata = {
        **asdict(protocol),
        "classes": list(protocol.classes) if protocol.classes else None,
        "manifest": str(Path(manifest_path).resolve()),
    }
    return write_parquet_atomically(table, out, metadata={METADATA_KEY: json.dumps(metadata)})


def read_folds(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The fold table and the protocol it was made with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fold table {path} does not exist; create it with `sernas folds`.")
    table = pd.read_parquet(path)
    missing = [column for column in FOLD_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"fold table {path} lacks column(s) {', '.join(missing)}; is it a sernas fold table?")
    raw = read_parquet_metadata(path).get(METADATA_KEY)
    return table, (json.loads(raw) if raw else {})


def fold_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Utterances and speakers per fold x split, for the table the CLI prints."""
    grouped = table.groupby(["fold", "split"])
    counts = grouped.size().unstack("split", fill_value=0).reindex(columns=list(SPLITS), fill_value=0)
    speakers = grouped["speaker"].apply(lambda s: ",".join(sorted(set(s)))).unstack("split")
    counts["valid speakers"] = speakers.get("valid")
    counts["test speakers"] = speakers.get("test")
    return counts
