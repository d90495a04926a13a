"""The fold table of shared split files: their folds, exactly, with sernas' speaker roles added.

Each fold holds the utterances its files list (``trainers.imports.read_given_splits``), in the
splits they list them: their test split is the fold's test, their train split is sernas' training
side, and a ``valid`` file (EmoBox has one for a few corpora, SpeechBrain's recipe writes one) is
the fold's validation split as it is. Without one, ``valid_speakers`` validation speakers are
drawn from the training side only, by the rules of ``trainers.folds.make_folds`` (seeded by
(seed, fold), genders in turn), from the training speakers who are not also test speakers of the
fold where enough of them are left; the rest of the training speakers are split into weight and
alpha speakers (``arch_share``, seeded by (seed, fold, 1)). The protocol (merges, classes,
improvised-only) then decides which of the listed utterances a fold keeps, as for made folds.

Nothing is assumed about speakers: every fold gets its ``speaker_check`` (``trainers.folds``),
``overlap`` where the files put a speaker in test and in train (or valid), ``unknown`` where a
speaker is not known.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from trainers.corpora.given_splits import GivenSplits
from trainers.corpora.scan import CorpusError, CorpusProblem
from trainers.folds import (
    FoldProtocol,
    apply_protocol_labels,
    check_folds,
    draw_alpha_speakers,
    draw_valid_speakers,
    typed_fold_table,
)

__all__ = ["given_folds"]


def given_folds(
    manifest: pd.DataFrame,
    splits: GivenSplits,
    *,
    protocol: FoldProtocol,
    folds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The fold table (``trainers.folds.FOLD_COLUMNS`` + ``speaker_check``) of ``splits``.

    ``manifest`` must hold every utterance the files list (the manifest made from the same
    files); an utterance it lacks, or problems in the files, raise ``CorpusError`` naming each
    file and line. ``folds`` picks fold numbers (default: all the files have)."""
    if protocol.scheme != "given":
        raise ValueError(f"given_folds needs a protocol with scheme 'given', but got {protocol.scheme!r}.")
    problems = list(splits.problems)
    known = set(manifest["utt_id"].astype(str))
    problems += [
        CorpusProblem(entry.source, f"utterance {entry.utt_id} is not in the manifest", line=entry.line)
        for entry in splits.entries
        if entry.utt_id not in known
    ]
    if problems:
        raise CorpusError(
            f"{len(problems)} problem(s) in the {splits.format} split files at {splits.root}; no fold table was made "
            "(a manifest made from the same files, without --skip-bad, holds every utterance they list):",
            problems,
        )
    entries = pd.DataFrame(
        {
            "utt_id": [entry.utt_id for entry in splits.entries],
            "fold": [entry.fold for entry in splits.entries],
            "given": [entry.split for entry in splits.entries],
        }
    )
    available = sorted(int(fold) for fold in entries["fold"].unique())
    wanted = available if folds is None else list(folds)
    for fold in wanted:
        if fold not in available:
            raise ValueError(
                f"fold {fold} does not exist; the {splits.format} files at {splits.root} have folds {available}."
            )
    frame = apply_protocol_labels(manifest, protocol)[["utt_id", "label", "speaker", "gender", "session"]]
    frame = frame.assign(utt_id=frame["utt_id"].astype(str))
    tables = [_one_fold(frame, entries[entries["fold"] == fold], fold=fold, protocol=protocol) for fold in wanted]
    table = typed_fold_table(pd.concat(tables, ignore_index=True))
    check_folds(table)
    return table


def _one_fold(frame: pd.DataFrame, entries: pd.DataFrame, *, fold: int, protocol: FoldProtocol) -> pd.DataFrame:
    rows = frame.merge(entries[["utt_id", "given"]], on="utt_id", how="inner")  # the manifest's order
    for split in ("train", "test"):
        if not (rows["given"] == split).any():
            raise ValueError(
                f"fold {fold}: none of its {split} utterances is left after the protocol (classes, merges, "
                "improvised_only)."
            )
    test_speakers = set(rows.loc[rows["given"] == "test", "speaker"])
    train_side = rows[rows["given"] == "train"]
    pool = train_side[["speaker", "gender"]].drop_duplicates().sort_values("speaker").reset_index(drop=True)
    if (rows["given"] == "valid").any():
        valid: set[str] = set()  # the files' own validation split
    else:
        clean = pool[~pool["speaker"].isin(test_speakers)]
        candidates = clean if len(clean) > protocol.valid_speakers else pool
        where = "on the training side outside the test set" if candidates is clean else "on the training side"
        valid = draw_valid_speakers(candidates.reset_index(drop=True), protocol=protocol, fold=fold, where=where)
    training = pool[~pool["speaker"].isin(valid)].reset_index(drop=True)
    alphas = draw_alpha_speakers(training, protocol=protocol, fold=fold)
    moved = (rows["given"] == "train") & rows["speaker"].isin(valid)
    split = np.where(moved, "valid", rows["given"])
    role = np.where(split != "train", None, np.where(rows["speaker"].isin(alphas), "alphas", "weights"))
    return pd.DataFrame(
        {
            "utt_id": rows["utt_id"].to_numpy(),
            "fold": fold,
            "split": split,
            "label": rows["label"].to_numpy(),
            "speaker": rows["speaker"].to_numpy(),
            "session": rows["session"].to_numpy(),
            "search_role": role,
        }
    )
