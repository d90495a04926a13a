"""What a reader of shared split files returns: utterances, their folds, and every problem found.

EmoBox, s3prl and SpeechBrain publish splits (which utterance is in which fold's train, valid or
test) rather than corpora. Their readers (``trainers.corpora.emobox``, ``.s3prl``,
``.speechbrain``) only parse; ``trainers.imports`` turns what they return into manifest records
(audio found under an audio root, speakers by ``trainers.corpora.speakers``) and checks across
files, and ``trainers.given_folds`` into a fold table. Like corpus readers, they collect
``CorpusProblem``s naming the file and line instead of stopping at the first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainers.corpora.scan import CorpusProblem

GIVEN_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True, slots=True)
class SplitEntry:
    """One line of a split file: ``utt_id`` is in ``split`` of ``fold``; said at ``source:line``."""

    utt_id: str
    fold: int
    split: str
    source: Path
    line: int | None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else str(self.source)


@dataclass(slots=True)
class GivenSplits:
    """``utterances``: utt_id -> record with ``utt_id``, ``source_key`` (the files' own id),
    ``dataset``, ``label``, ``wav`` (the path as written), optionally ``data_speaker``, and where it
    was first read (``_source``, ``_line``); ``entries``: every (utterance, fold, split) the files
    state; ``labels``: the files' label mapping (EmoBox's label_map.json, s3prl's ``labels``),
    whose keys every label must be one of, or None when they have none."""

    format: str
    root: Path
    utterances: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: list[SplitEntry] = field(default_factory=list)
    problems: list[CorpusProblem] = field(default_factory=list)
    labels: dict[str, Any] | None = None

    def problem(self, path: Path, reason: str, line: int | None = None) -> None:
        self.problems.append(CorpusProblem(path=path, reason=reason, line=line))

    def add_utterance(self, record: dict[str, Any]) -> bool:
        """Keep ``record`` (its first sighting); a later one must agree on label and audio, else a
        problem naming both places. Returns whether the utterance is usable."""
        utt_id = record["utt_id"]
        known = self.utterances.get(utt_id)
        if known is None:
            self.utterances[utt_id] = record
            return True
        for name in ("label", "wav"):
            if known[name] != record[name]:
                self.problem(
                    record["_source"],
                    f"{utt_id} has {name} {record[name]!r} here but {known[name]!r} at "
                    f"{known['_source']}:{known['_line']}",
                    line=record["_line"],
                )
                return False
        return True

    def add_entry(self, utt_id: str, *, fold: int, split: str, source: Path, line: int | None) -> None:
        self.entries.append(SplitEntry(utt_id=utt_id, fold=fold, split=split, source=source, line=line))

    def check_label(
        self, label: str, labels: Mapping[str, Any] | None, *, path: Path, line: int | None, mapping: str
    ) -> bool:
        """Whether ``label`` is a key of ``labels`` (None: the files have no mapping); if not, a problem."""
        if labels is None or label in labels:
            return True
        self.problem(
            path, f"label {label!r} is outside the mapping of {mapping} (expected one of {', '.join(labels)})", line
        )
        return False


def implied_merges(labels: Mapping[str, Any]) -> dict[str, str]:
    """The merges a label mapping makes: raw labels mapped to one class merge into the one named
    like the class (``{"exc": "hap", "hap": "hap"}``), else the first listed (EmoBox's IEMOCAP
    ``{"hap": "Happy", "exc": "Happy"}`` merges exc into hap). Numeric values (s3prl's class
    indices) merge labels sharing an index the same way."""
    groups: dict[str, list[str]] = {}
    for raw, target in labels.items():
        groups.setdefault(str(target), []).append(str(raw))
    merges = {}
    for target, raws in groups.items():
        into = target if target in raws else raws[0]
        merges.update({raw: into for raw in raws if raw != into})
    return merges


def fold_number(name: str) -> int | None:
    """The fold number a folder name ends in (``fold_3``, ``Session3``, ``3``), or None."""
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match and int(match.group(1)) >= 1 else None


def read_text(path: Path, splits: GivenSplits) -> str | None:
    """``path`` as UTF-8 text, or None after a problem saying why not."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        splits.problem(path, f"not UTF-8 text ({error.reason} at byte {error.start})")
    except OSError as error:
        splits.problem(path, f"cannot be read ({error.strerror})")
    return None


def read_json(path: Path, splits: GivenSplits) -> tuple[Any, str] | None:
    """``(value, text)`` of a JSON file, or None after a problem naming the line that does not parse."""
    text = read_text(path, splits)
    if text is None:
        return None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as error:
        splits.problem(path, f"does not parse as JSON: {error.msg} (column {error.colno})", line=error.lineno)
        return None


def json_lines(path: Path, splits: GivenSplits) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file; a line that is not
    a JSON object is a problem naming it."""
    text = read_text(path, splits)
    if text is None:
        return
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            splits.problem(path, f"line does not parse as JSON: {error.msg} (column {error.colno})", line=number)
            continue
        if not isinstance(value, dict):
            splits.problem(path, f"expected a JSON object per line, got {type(value).__name__}", line=number)
            continue
        yield number, value


class LineFinder:
    """Line numbers of successive strings in one JSON text (its keys or values, in file order),
    so problems in a JSON file (not JSON Lines) can still name a line."""

    def __init__(self, text: str) -> None:
        self.text, self.position, self.line = text, 0, 1

    def find(self, value: str) -> int | None:
        needle = json.dumps(value, ensure_ascii=False)
        found = self.text.find(needle, self.position)
        if found < 0:
            needle = json.dumps(value)  # written with \u escapes
            found = self.text.find(needle, self.position)
        if found < 0:
            return None
        self.line += self.text.count("\n", self.position, found)
        self.position = found + len(needle)
        return self.line
