"""Who spoke an utterance of imported split files: a user's map, a corpus's naming rule, the data.

Shared split files (EmoBox, s3prl, SpeechBrain) say which utterance is in which fold, but not
always who spoke it, and speaker independence can only be checked with speakers. The speaker of
an utterance comes from, in this order:

1. ``map``: the user's CSV map (``--speakers map.csv``: columns ``utt_id`` or ``key``, ``speaker``,
   optional ``gender``, ``session``), matched on the sernas utterance id, the file's own key or
   the audio file's stem. The user's word is final.
2. ``rule``: the corpus's naming rule where one is known (``NAMING_RULES``): IEMOCAP's
   ``Ses01F_impro04_M003`` is ``Ses01M`` (``trainers.corpora.iemocap``), MSP-IMPROV's
   ``MSP-IMPROV-S01A-F01-R-FM01`` is ``F01`` (``trainers.corpora.msp_improv``). The rule beats the
   data because the data can be wrong: s3prl's IEMOCAP meta-data gives the dialog's first
   speaker (``Ses01F`` for ``Ses01F_impro04_M003``, spoken by ``Ses01M``).
3. ``data``: a speaker field of the files (s3prl's ``speaker``).
4. ``unknown``: none of these. The utterance gets the speaker id ``unknown:<utt_id>`` (its own
   speaker, so nothing groups it with others) and every fold holding it is flagged ``unknown``
   (``trainers.folds.speaker_check``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainers.corpora.csv_corpus import GENDERS
from trainers.corpora.iemocap import parse_utterance_name
from trainers.corpora.msp_improv import parse_recording_name
from trainers.corpora.scan import CorpusError, CorpusProblem

__all__ = [
    "NAMING_RULES",
    "SPEAKER_SOURCES",
    "UNKNOWN_SPEAKER_PREFIX",
    "SpeakerFacts",
    "SpeakerMap",
    "is_unknown_speaker",
    "naming_rule",
    "read_speaker_map",
    "unknown_speaker",
]

UNKNOWN_SPEAKER_PREFIX = "unknown:"
SPEAKER_SOURCES = ("map", "rule", "data", "unknown")  # the manifest's speaker_source column, by precedence


@dataclass(frozen=True, slots=True)
class SpeakerFacts:
    speaker: str
    gender: str = "U"
    session: int | None = None
    improvised: bool | None = None


def _iemocap(name: str) -> SpeakerFacts | None:
    parsed = parse_utterance_name(name)
    if parsed is None:
        return None
    return SpeakerFacts(
        speaker=parsed.speaker, gender=parsed.gender, session=parsed.session, improvised=parsed.improvised
    )


def _msp_improv(name: str) -> SpeakerFacts | None:
    parsed = parse_recording_name(name)
    if parsed is None:
        return None
    return SpeakerFacts(
        speaker=parsed.speaker, gender=parsed.gender, session=parsed.session, improvised=parsed.improvised
    )


# Corpus name (the manifest's dataset column, lower case) -> its rule on an utterance id or file stem.
NAMING_RULES: dict[str, Callable[[str], SpeakerFacts | None]] = {
    "iemocap": _iemocap,
    "msp-improv": _msp_improv,
    "msp_improv": _msp_improv,
    "mspimprov": _msp_improv,
}


def naming_rule(corpus: str) -> Callable[[str], SpeakerFacts | None] | None:
    """The naming rule of ``corpus``, or None when sernas knows none."""
    return NAMING_RULES.get(corpus.strip().lower())


def unknown_speaker(utt_id: str) -> str:
    """The speaker id of an utterance whose speaker nobody knows: its own, marked."""
    return UNKNOWN_SPEAKER_PREFIX + utt_id


def is_unknown_speaker(speaker: object) -> bool:
    return isinstance(speaker, str) and speaker.startswith(UNKNOWN_SPEAKER_PREFIX)


@dataclass(frozen=True, slots=True)
class SpeakerMap:
    path: Path
    entries: dict[str, tuple[SpeakerFacts, int]]  # id -> (facts, line)


ID_COLUMNS = ("utt_id", "key")
MAP_COLUMNS = ("speaker", "gender", "session")


def read_speaker_map(path: str | Path) -> tuple[SpeakerMap, list[CorpusProblem]]:
    """Read ``path`` (CSV: ``utt_id`` or ``key``, ``speaker``, optional ``gender``, ``session``).

    A missing file or header raises ``CorpusError``; a bad row is a problem naming its line."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise CorpusError(f"speaker map {path} does not exist; expected a CSV with columns utt_id,speaker.")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [column.strip() for column in (reader.fieldnames or [])]
        id_column = next((column for column in ID_COLUMNS if column in columns), None)
        if id_column is None or "speaker" not in columns:
            raise CorpusError(
                f"{path}:1: the speaker map needs columns utt_id (or key) and speaker (optional: gender, session); "
                f"found {columns or 'no header'}."
            )
        reader.fieldnames = columns
        rows = [(reader.line_num, row) for row in reader]
    problems: list[CorpusProblem] = []
    entries: dict[str, tuple[SpeakerFacts, int]] = {}
    for line, row in rows:
        values = {key: (value or "").strip() for key, value in row.items() if key is not None}
        utt, speaker = values.get(id_column, ""), values.get("speaker", "")
        if not utt or not speaker:
            problems.append(CorpusProblem(path, f"empty {id_column if not utt else 'speaker'}", line=line))
            continue
        if utt in entries:
            problems.append(CorpusProblem(path, f"{id_column} {utt!r} already mapped on line {entries[utt][1]}", line))
            continue
        gender = GENDERS.get(values.get("gender", "").lower())
        if gender is None:
            problems.append(
                CorpusProblem(path, f"gender {values['gender']!r} is not one of F, M, female, male, U", line)
            )
            continue
        session = None
        if values.get("session"):
            try:
                session = int(values["session"])
            except ValueError:
                problems.append(CorpusProblem(path, f"session {values['session']!r} is not an integer", line=line))
                continue
        entries[utt] = (SpeakerFacts(speaker=speaker, gender=gender, session=session), line)
    return SpeakerMap(path=path, entries=entries), problems
