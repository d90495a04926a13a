"""Shared split files (EmoBox, s3prl, SpeechBrain) -> manifest records, checked across files.

``read_given_splits`` parses a folder of split files with its format's reader and adds the checks
that hold for every format: an utterance is in at most one split of a fold, and in the test set
of at most one fold (published folds test disjoint sets: a key in two folds' test files is an
error, not a choice). ``scan_given_splits`` turns the utterances into manifest records: the audio
found under ``audio_root``, the speaker from ``trainers.corpora.speakers`` (a user's map, the
corpus's naming rule, the files' own field, else unknown), recorded in the extra column
``speaker_source``. ``trainers.manifest.build_manifest`` probes the audio and writes the manifest;
``trainers.given_folds.given_folds`` makes the fold table from the same splits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers.corpora.emobox import read_emobox
from trainers.corpora.given_splits import GivenSplits, SplitEntry
from trainers.corpora.s3prl import read_s3prl
from trainers.corpora.scan import CorpusError, CorpusScan
from trainers.corpora.speakers import (
    SpeakerFacts,
    SpeakerMap,
    is_unknown_speaker,
    naming_rule,
    read_speaker_map,
    unknown_speaker,
)
from trainers.corpora.speechbrain import read_speechbrain

__all__ = ["DEFAULT_CORPUS", "SPLIT_FORMATS", "read_given_splits", "resolve_audio", "scan_given_splits"]

SPLIT_FORMATS = ("emobox", "s3prl", "speechbrain")
DEFAULT_CORPUS = "iemocap"  # what s3prl's and SpeechBrain's emotion recipes describe; EmoBox names its own


def read_given_splits(format: str, root: str | Path, *, corpus: str | None = None) -> GivenSplits:
    """Parse the split files of ``format`` under ``root`` and check them across files.

    ``corpus`` names the corpus they describe (the manifest's ``dataset`` column, which picks the
    speaker naming rule); default: EmoBox's ``dataset`` field, ``iemocap`` for s3prl and SpeechBrain.
    Raises ``CorpusError`` when ``root`` cannot be read at all; other problems are collected."""
    if format not in SPLIT_FORMATS:
        raise CorpusError(f"unknown split format {format!r}; expected one of {', '.join(SPLIT_FORMATS)}.")
    if format == "emobox":
        splits = read_emobox(root)
        if corpus:
            for record in splits.utterances.values():
                record["dataset"] = corpus
    else:
        reader = read_s3prl if format == "s3prl" else read_speechbrain
        splits = reader(root, dataset=corpus or DEFAULT_CORPUS)
    _check_entries(splits)
    return splits


def _check_entries(splits: GivenSplits) -> None:
    """Drop (as problems) an utterance listed twice in one fold and one in two folds' test sets."""
    in_fold: dict[tuple[int, str], SplitEntry] = {}
    tested: dict[str, SplitEntry] = {}
    kept = []
    for entry in splits.entries:
        earlier = in_fold.get((entry.fold, entry.utt_id))
        if earlier is not None:
            said = (
                f"listed twice in {earlier.split} of fold {entry.fold} (also {earlier.where})"
                if earlier.split == entry.split
                else f"in both {earlier.split} ({earlier.where}) and {entry.split} of fold {entry.fold}"
            )
            splits.problem(entry.source, f"utterance {entry.utt_id} is {said}", line=entry.line)
            continue
        if entry.split == "test" and entry.utt_id in tested:
            first = tested[entry.utt_id]
            splits.problem(
                entry.source,
                f"utterance {entry.utt_id} is in the test set of fold {entry.fold} and of fold {first.fold} "
                f"({first.where}); each utterance may be tested in one fold only",
                line=entry.line,
            )
            continue
        in_fold[(entry.fold, entry.utt_id)] = entry
        if entry.split == "test":
            tested[entry.utt_id] = entry
        kept.append(entry)
    splits.entries = kept
    for fold in sorted({entry.fold for entry in kept}):
        present = {entry.split for entry in kept if entry.fold == fold}
        for split in ("train", "test"):
            if split not in present:
                splits.problem(splits.root, f"fold {fold} has no usable {split} utterances")


def resolve_audio(wav: str, audio_root: Path | None) -> tuple[Path | None, str | None]:
    """``(path, None)`` of an existing audio file named by ``wav``, or ``(None, why not)``.

    ``{data_root}`` (SpeechBrain's placeholder) and relative paths are taken under ``audio_root``."""
    text = wav
    if "{data_root}" in text:
        if audio_root is None:
            return None, f"wav {wav!r} starts with {{data_root}}: give the folder it stands for (--audio-root)"
        text = text.replace("{data_root}", str(audio_root))
    path = Path(text).expanduser()
    if not path.is_absolute():
        if audio_root is None:
            return None, f"wav {wav!r} is a relative path: give the folder it is relative to (--audio-root)"
        path = audio_root / path
    if not path.is_file():
        return None, f"no audio at {path} (wav {wav!r})"
    return path, None


def _speaker(
    record: dict[str, Any],
    *,
    rule: Callable[[str], SpeakerFacts | None] | None,
    speaker_map: SpeakerMap | None,
) -> tuple[SpeakerFacts, str, SpeakerFacts | None]:
    """``(facts, source, what the naming rule says)``; precedence map > rule > data > unknown."""
    names = [record["utt_id"], str(record["source_key"]), Path(record["wav"]).stem]
    ruled = next((facts for name in names if rule is not None and (facts := rule(name)) is not None), None)
    if speaker_map is not None:
        mapped = next((speaker_map.entries[name][0] for name in names if name in speaker_map.entries), None)
        if mapped is not None:
            return mapped, "map", ruled
    if ruled is not None:
        return ruled, "rule", ruled
    if record.get("data_speaker"):
        return SpeakerFacts(speaker=record["data_speaker"]), "data", None
    return SpeakerFacts(speaker=unknown_speaker(record["utt_id"])), "unknown", None


def scan_given_splits(
    format: str,
    root: str | Path,
    *,
    audio_root: str | Path | None = None,
    speakers: str | Path | None = None,
    corpus: str | None = None,
) -> CorpusScan:
    """Manifest records (without audio facts) of every utterance of the split files under ``root``.

    Problems name the split file and line: a line that does not parse, a label outside the
    files' mapping, a wav with no audio under ``audio_root``, an utterance in two folds' test
    sets or twice in one fold, a speaker map row that is not ``utt_id,speaker[,gender,session]``,
    a speaker given two genders. Extra columns: ``source_key`` (the files' own id),
    ``speaker_source`` (map, rule, data or unknown) and, where the files name a speaker,
    ``source_speaker``. Sessions: the naming rule's or the map's; otherwise each known speaker is
    its own session (numbered after the known ones, in speaker order) and unknown speakers are
    session 0."""
    splits = read_given_splits(format, root, corpus=corpus)
    scan = CorpusScan(dataset=format, root=splits.root, problems=list(splits.problems))
    resolved_root = None
    if audio_root is not None:
        resolved_root = Path(audio_root).expanduser().resolve()
        if not resolved_root.is_dir():
            raise CorpusError(f"audio root {resolved_root} does not exist or is not a directory.")
    speaker_map = None
    if speakers is not None:
        speaker_map, map_problems = read_speaker_map(speakers)
        scan.problems.extend(map_problems)
    genders: dict[str, tuple[str, dict]] = {}
    for record in splits.utterances.values():
        path, reason = resolve_audio(record["wav"], resolved_root)
        if path is None:
            scan.problem(record["_source"], f"{record['utt_id']}: {reason}", line=record["_line"])
            continue
        facts, source, ruled = _speaker(record, rule=naming_rule(record["dataset"]), speaker_map=speaker_map)
        gender = (
            facts.gender if facts.gender != "U" or ruled is None or ruled.speaker != facts.speaker else ruled.gender
        )
        earlier = genders.setdefault(facts.speaker, (gender, record))
        if earlier[0] != gender:
            scan.problem(
                record["_source"],
                f"speaker {facts.speaker} of {record['utt_id']} is {gender} here but {earlier[0]} for "
                f"{earlier[1]['utt_id']} ({earlier[1]['_source']}:{earlier[1]['_line']}); a speaker has one gender",
                line=record["_line"],
            )
            continue
        session = facts.session
        if session is None and ruled is not None and ruled.speaker == facts.speaker:
            session = ruled.session
        entry = {
            "utt_id": record["utt_id"],
            "path": str(path),
            "dataset": record["dataset"],
            "session": session,
            "speaker": facts.speaker,
            "gender": gender,
            "label": record["label"],
            "improvised": ruled.improvised if ruled is not None else None,
            "source_key": str(record["source_key"]),
            "speaker_source": source,
            "_label_file": str(record["_source"]),
            "_label_line": record["_line"],
        }
        if record.get("data_speaker"):
            entry["source_speaker"] = record["data_speaker"]
        scan.records.append(entry)
    _number_sessions(scan.records)
    return scan


def _number_sessions(records: list[dict[str, Any]]) -> None:
    """Give each known speaker without a session its own (after the known sessions); unknown: 0."""
    known: dict[str, int] = {}
    for record in records:
        if record["session"] is not None:
            known.setdefault(record["speaker"], record["session"])
    start = max(known.values(), default=0) + 1
    alone = sorted(
        {r["speaker"] for r in records if r["speaker"] not in known and not is_unknown_speaker(r["speaker"])}
    )
    known.update({speaker: start + index for index, speaker in enumerate(alone)})
    for record in records:
        if record["session"] is None:
            record["session"] = 0 if is_unknown_speaker(record["speaker"]) else known[record["speaker"]]
