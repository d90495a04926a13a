"""Cross-corpus folds: train (and validate) on the speakers of some corpora, test on another.

An experiment of several corpora (``data.sources``) reads each corpus into its own manifest, then
``combine_manifests`` makes one: every utterance id and speaker is prefixed by its corpus's name
(``iemocap/Ses01F_impro01_F000``, speaker ``iemocap/Ses01F``; an unknown speaker stays marked,
``unknown:iemocap/...``), so two corpora may use the same ids and speaker names (two synthetic
corpora do) without one utterance or speaker standing for two; the ``dataset`` column then holds
the corpus's name, and ``corpus_utt_id``, ``corpus_speaker``, ``corpus_dataset`` what the corpus
itself said. The same audio file in two corpora is refused: it would train and test at once.

Labels: each corpus maps its raw labels to the protocol's classes with its own merges
(``FoldProtocol.corpus_merges``; ``exc -> hap`` for IEMOCAP, nothing for MSP-IMPROV), and a raw
label that is a class name is that class (``trainers.folds.apply_protocol_labels``);
``class_mapping`` shows, per corpus and class, which raw labels became it and how many
utterances.

Folds (``cross_corpus_folds``): fold k tests on every speaker of the corpus
``protocol.test_corpora[k-1]`` and trains on the speakers of its training corpora
(``protocol.train_corpora`` without the test corpus; default: every other corpus). The validation
speakers are drawn from the training corpora only, by ``trainers.folds.make_folds``' rules
(``valid_speakers``, seeded by (seed, fold), genders in turn), the rest of the training speakers
are split into weight and alpha speakers (``arch_share``, seeded by (seed, fold, 1)). Inner folds
(``make_inner_folds``) are then built from the fold's non-test speakers, so from the training
corpora only too. Every class must have training utterances in each fold; a class the test corpus
lacks is flagged by the metrics (``test_absent_classes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainers.corpora.speakers import UNKNOWN_SPEAKER_PREFIX, is_unknown_speaker
from trainers.folds import (
    FoldProtocol,
    apply_protocol_labels,
    check_folds,
    draw_alpha_speakers,
    draw_valid_speakers,
    typed_fold_table,
)

__all__ = [
    "CORPUS_SEPARATOR",
    "FoldCorpora",
    "class_mapping",
    "combine_manifests",
    "cross_corpus_summary",
    "cross_corpus_folds",
    "fold_corpora",
    "qualified_speaker",
    "qualified_utt_id",
]

CORPUS_SEPARATOR = "/"  # corpus names follow orchestrator.names' rule, which has no "/"
CORPUS_COLUMNS = ("corpus_utt_id", "corpus_speaker", "corpus_dataset")  # what each corpus said itself


def qualified_utt_id(corpus: str, utt_id: str) -> str:
    """``iemocap/Ses01F_impro01_F000``: an utterance id unique across the corpora of an experiment."""
    return f"{corpus}{CORPUS_SEPARATOR}{utt_id}"


def qualified_speaker(corpus: str, speaker: str) -> str:
    """``iemocap/Ses01F``; an unknown speaker stays unknown (``unknown:iemocap/<utt_id>``)."""
    if is_unknown_speaker(speaker):
        return UNKNOWN_SPEAKER_PREFIX + qualified_utt_id(corpus, speaker.removeprefix(UNKNOWN_SPEAKER_PREFIX))
    return f"{corpus}{CORPUS_SEPARATOR}{speaker}"


def combine_manifests(manifests: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One manifest of several corpora (name -> that corpus's manifest), ids and speakers qualified
    by the corpus name, ``dataset`` = the name; raises ValueError naming the corpus (and the id or
    file) for a name with ``/``, an empty manifest, an id twice in one manifest, or one audio file
    in two corpora."""
    if len(manifests) < 2:
        raise ValueError(f"a cross-corpus manifest needs at least 2 corpora, but got {list(manifests)}.")
    frames = []
    where_path: dict[str, str] = {}
    for corpus, frame in manifests.items():
        if not corpus or CORPUS_SEPARATOR in corpus:
            raise ValueError(f"corpus name {corpus!r} must be non-empty and without {CORPUS_SEPARATOR!r}.")
        if frame.empty:
            raise ValueError(f"corpus {corpus}: its manifest has no utterance.")
        ids = frame["utt_id"].astype(str)
        twice = ids[ids.duplicated()]
        if not twice.empty:
            raise ValueError(f"corpus {corpus}: utterance id {twice.iloc[0]} appears twice in its manifest.")
        for path in frame["path"].astype(str):
            if path in where_path:
                raise ValueError(
                    f"audio file {path} is in corpus {where_path[path]} and in corpus {corpus}: one recording "
                    "would be trained on and tested on; give each corpus its own files."
                )
            where_path[path] = corpus
        speakers = frame["speaker"].astype(str)
        frames.append(
            frame.assign(
                corpus_utt_id=ids,
                corpus_speaker=speakers,
                corpus_dataset=frame["dataset"].astype(str),
                utt_id=[qualified_utt_id(corpus, utt) for utt in ids],
                speaker=[qualified_speaker(corpus, speaker) for speaker in speakers],
                dataset=corpus,
            )
        )
    combined = pd.concat(frames, ignore_index=True)
    for column in ("utt_id", "path", "dataset", "speaker", "gender", "label", *CORPUS_COLUMNS):
        combined[column] = combined[column].astype("string")
    combined = combined.astype({"session": "int64", "improvised": "boolean"})
    order = list(dict.fromkeys([*frames[0].columns, *combined.columns]))  # core columns first, as each manifest
    return (
        combined[order].sort_values(["dataset", "session", "speaker", "utt_id"], kind="stable").reset_index(drop=True)
    )


@dataclass(frozen=True)
class FoldCorpora:
    """Which corpora a fold trains (and validates) on and which it tests on."""

    fold: int
    train: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def label(self) -> str:
        """``iemocap->msp-improv`` (training corpora joined by ``+``): the leaderboard's ``dataset``."""
        return f"{'+'.join(self.train)}->{'+'.join(self.test)}"


def fold_corpora(folds: pd.DataFrame, manifest: pd.DataFrame) -> dict[int, FoldCorpora]:
    """Per fold of ``folds``, the corpora (``dataset`` of ``manifest``) of its test rows and of the rest."""
    corpus_of = dict(zip(manifest["utt_id"].astype(str), manifest["dataset"].astype(str)))
    found = {}
    for fold, rows in folds.groupby("fold"):
        corpora = rows["utt_id"].astype(str).map(corpus_of)
        if corpora.isna().any():
            missing = rows.loc[corpora.isna(), "utt_id"].iloc[0]
            raise ValueError(f"fold {fold}: utterance {missing} is not in the manifest.")
        tested = rows["split"] == "test"
        found[int(fold)] = FoldCorpora(
            fold=int(fold),
            train=tuple(sorted(set(corpora[~tested]))),
            test=tuple(sorted(set(corpora[tested]))),
        )
    return found


def class_mapping(manifest: pd.DataFrame, *, protocol: FoldProtocol) -> pd.DataFrame:
    """Per corpus and protocol class: the raw labels that became it and their utterances (columns
    ``corpus, class, raw_labels, utterances``; a class a corpus lacks has no raw label and 0)."""
    if protocol.classes is None:
        raise ValueError("class_mapping needs the protocol's classes.")
    raw = manifest.assign(raw_label=manifest["label"].astype(str))
    mapped = apply_protocol_labels(raw, protocol)
    rows = []
    for corpus in protocol.corpus_merges or sorted(set(manifest["dataset"].astype(str))):
        of_corpus = mapped[mapped["dataset"].astype(str) == corpus]
        for name in protocol.classes:
            hits = of_corpus[of_corpus["label"] == name]
            counts = hits["raw_label"].value_counts()
            labels = sorted(counts.index, key=lambda label: (label != name, label))  # the class's own name first
            rows.append(
                {
                    "corpus": corpus,
                    "class": name,
                    "raw_labels": "+".join(labels),
                    "utterances": int(len(hits)),
                }
            )
    return pd.DataFrame(rows, columns=["corpus", "class", "raw_labels", "utterances"])


def cross_corpus_folds(
    manifest: pd.DataFrame, *, protocol: FoldProtocol, folds: Sequence[int] | None = None
) -> pd.DataFrame:
    """The fold table (``trainers.folds.FOLD_COLUMNS`` + ``speaker_check``) of a cross-corpus protocol
    on a combined manifest (``combine_manifests``); fold k tests on ``protocol.test_corpora[k-1]``."""
    if protocol.scheme != "cross-corpus":
        raise ValueError(
            f"cross_corpus_folds needs a protocol with scheme 'cross-corpus', but got {protocol.scheme!r}."
        )
    missing = [c for c in protocol.corpus_merges if not (manifest["dataset"].astype(str) == c).any()]
    if missing:
        raise ValueError(f"corpus(es) {', '.join(missing)} have no utterance in the manifest.")
    available = list(range(1, len(protocol.test_corpora) + 1))
    wanted = available if folds is None else list(folds)
    for fold in wanted:
        if fold not in available:
            raise ValueError(
                f"fold {fold} does not exist; the cross-corpus scheme has folds {available} (one per test corpus: "
                f"{', '.join(protocol.test_corpora)})."
            )
    frame = apply_protocol_labels(manifest, protocol)
    frame = frame.assign(dataset=frame["dataset"].astype(str))
    tables = [_one_fold(frame, fold=fold, protocol=protocol) for fold in wanted]
    table = typed_fold_table(pd.concat(tables, ignore_index=True))
    check_folds(table)
    return table


def _one_fold(frame: pd.DataFrame, *, fold: int, protocol: FoldProtocol) -> pd.DataFrame:
    test_corpus = protocol.test_corpora[fold - 1]
    training_corpora = protocol.training_corpora(test_corpus)
    named = f"fold {fold} ({'+'.join(training_corpora)} -> {test_corpus})"
    rows = frame[frame["dataset"].isin([*training_corpora, test_corpus])]
    tested = rows["dataset"] == test_corpus
    if not tested.any():
        raise ValueError(
            f"{named}: test corpus {test_corpus} has no utterance of classes {', '.join(protocol.classes)}."
        )
    trained_labels = set(rows.loc[~tested, "label"])
    unlearnt = [name for name in protocol.classes or () if name not in trained_labels]
    if unlearnt:
        raise ValueError(
            f"{named}: class(es) {', '.join(unlearnt)} have no utterance in the training corpora "
            f"{', '.join(training_corpora)}, so no network could learn them; map a raw label of those corpora to "
            "each (data.sources[].merges) or leave the class out (data.classes)."
        )
    pool = rows.loc[~tested, ["speaker", "gender"]].drop_duplicates().sort_values("speaker").reset_index(drop=True)
    valid = draw_valid_speakers(
        pool, protocol=protocol, fold=fold, where=f"in the training corpora {', '.join(training_corpora)}"
    )
    training = pool[~pool["speaker"].isin(valid)].reset_index(drop=True)
    alphas = draw_alpha_speakers(training, protocol=protocol, fold=fold)
    split = np.where(tested, "test", np.where(rows["speaker"].isin(valid), "valid", "train"))
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


def cross_corpus_summary(folds: pd.DataFrame, manifest: pd.DataFrame, *, protocol: FoldProtocol) -> list[str]:
    """Lines for people: per fold, which corpora train, validate and test (speakers, utterances), then
    each corpus's class mapping (``class = raw labels (utterances)``)."""
    lines = []
    corpora = fold_corpora(folds, manifest)
    for fold, rows in folds.groupby("fold"):
        parts = []
        for split in ("train", "valid", "test"):
            chosen = rows[rows["split"] == split]
            parts.append(f"{split} {chosen['speaker'].nunique()} speakers / {len(chosen)} utterances")
        lines.append(f"fold {fold} {corpora[int(fold)].label}: {', '.join(parts)}")
    for corpus, mapped in class_mapping(manifest, protocol=protocol).groupby("corpus", sort=False):
        pairs = ", ".join(
            f"{row['class']} = {row['raw_labels'] or '(none)'} ({row['utterances']})" for _, row in mapped.iterrows()
        )
        lines.append(f"classes of {corpus}: {pairs}")
    return lines
