"""IEMOCAP recipe: walk the release's own layout and return one record per labelled utterance.

Layout (IEMOCAP_full_release)::

    SessionN/sentences/wav/<dialog>/<utt_id>.wav           16 kHz mono
    SessionN/dialog/EmoEvaluation/<dialog>.txt             labels, one block per utterance

A label block starts with ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]``
and is followed by per-rater lines (``C-E2:``, ``A-E3:`` ...) that are not labels. The speaker
is the session plus the gender letter of the utterance's own suffix (``Ses01F_impro01_M003`` is
``Ses01M``), not the dialog's. Subfolders (``Categorical/``, ``Attribute/``,
``Self-evaluation/``) and macOS ``._*`` litter are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from trainers.corpora.scan import CorpusError, CorpusScan, is_macos_litter

DATASET = "iemocap"
LABELS = ("neu", "hap", "sad", "ang", "exc", "fru", "sur", "fea", "dis", "oth", "xxx")
SESSION_DIR = re.compile(r"^Session([1-9])$")
UTTERANCE_LINE = re.compile(
    r"^\[(?P<start>\d+(?:\.\d+)?) - (?P<end>\d+(?:\.\d+)?)\]\t(?P<utt>\S+)\t(?P<label>\S+)\t"
    r"\[(?P<v>[^,\]]+), (?P<a>[^,\]]+), (?P<d>[^,\]]+)\]\s*$"
)
RATER_LINE = re.compile(r"^[A-Z]-[A-Z]+\d*:")
UTT_ID = re.compile(r"^Ses(?P<session>\d{2})(?P<dialog_gender>[FM])_(?P<kind>impro|script)\w*_(?P<gender>[FM])\w*$")


@dataclass(frozen=True, slots=True)
class UtteranceName:
    """What IEMOCAP's naming rule says about an utterance id such as ``Ses01F_impro04_M003``."""

    session: int
    speaker: str  # session + the gender letter of the utterance's own suffix: Ses01M
    gender: str
    improvised: bool


def parse_utterance_name(utt_id: str) -> UtteranceName | None:
    """The speaker rule: ``Ses01F_impro01_M003`` is spoken by ``Ses01M`` (the last ``_F``/``_M``
    before the index, not the dialog's letter); None when ``utt_id`` does not follow it."""
    match = UTT_ID.match(utt_id)
    if match is None:
        return None
    session, gender = int(match["session"]), match["gender"]
    return UtteranceName(
        session=session, speaker=f"Ses{session:02d}{gender}", gender=gender, improvised=match["kind"] == "impro"
    )


def find_sessions(root: Path) -> dict[int, Path]:
    """``{session number: SessionN folder}``; raises ``CorpusError`` when there are none."""
    if not root.is_dir():
        raise CorpusError(f"IEMOCAP root {root} does not exist or is not a directory.")
    sessions = {
        int(match.group(1)): child
        for child in sorted(root.iterdir())
        if child.is_dir() and (match := SESSION_DIR.match(child.name))
    }
    if not sessions:
        raise CorpusError(
            f"IEMOCAP root {root} has no Session1..Session5 folders; expected the layout "
            "SessionN/sentences/wav/<dialog>/<utt>.wav and SessionN/dialog/EmoEvaluation/<dialog>.txt."
        )
    return sessions


def _parse_label_file(path: Path, session: int, scan: CorpusScan) -> dict[str, dict]:
    """Return ``{utt_id: record}`` for one EmoEvaluation file, adding problems to ``scan``."""
    dialog = path.stem
    records: dict[str, dict] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("%") or RATER_LINE.match(line):
            continue
        match = UTTERANCE_LINE.match(line)
        if match is None:
            expected = (
                "'[START - END]<TAB>UTT_ID<TAB>LABEL<TAB>[V, A, D]'"
                if line.startswith("[")
                else (
                    "a header '%', an utterance line '[START - END]<TAB>UTT_ID<TAB>LABEL<TAB>[V, A, D]' "
                    "or a rater line like 'C-E2:'"
                )
            )
            scan.problem(path, f"cannot parse line {line[:60]!r}; expected {expected}", line=number)
            continue
        utt_id, label = match["utt"], match["label"]
        name = parse_utterance_name(utt_id)
        if name is None or not utt_id.startswith(dialog + "_"):
            scan.problem(
                path,
                f"utterance id {utt_id!r} does not look like '{dialog}_F000' (dialog name + _F/_M + number)",
                line=number,
            )
            continue
        if name.session != session:
            scan.problem(
                path,
                f"utterance {utt_id} belongs to session {name.session}, but its label file is under Session{session}",
                line=number,
            )
            continue
        if label not in LABELS:
            scan.problem(
                path, f"unknown label {label!r} for {utt_id}; expected one of {', '.join(LABELS)}", line=number
            )
            continue
        if utt_id in records:
            scan.problem(path, f"utterance {utt_id} is labelled twice", line=number)
            continue
        try:
            valence, arousal, dominance = (float(match[key]) for key in ("v", "a", "d"))
        except ValueError:
            scan.problem(path, f"V/A/D values of {utt_id} are not numbers", line=number)
            continue
        records[utt_id] = {
            "utt_id": utt_id,
            "dataset": DATASET,
            "session": session,
            "speaker": name.speaker,
            "gender": name.gender,
            "label": label,
            "improvised": name.improvised,
            "dialog": dialog,
            "start_s": float(match["start"]),
            "end_s": float(match["end"]),
            "valence": valence,
            "arousal": arousal,
            "dominance": dominance,
            "_label_file": str(path),
            "_label_line": number,
        }
    return records


def scan_iemocap(root: str | Path) -> CorpusScan:
    """Read every session under ``root``; label/audio mismatches become problems."""
    root = Path(root).expanduser().resolve()
    scan = CorpusScan(dataset=DATASET, root=root)
    for session, session_dir in find_sessions(root).items():
        labels_dir = session_dir / "dialog" / "EmoEvaluation"
        wav_dir = session_dir / "sentences" / "wav"
        missing = [folder for folder in (labels_dir, wav_dir) if not folder.is_dir()]
        for folder in missing:
            scan.problem(folder, "missing folder (expected in every SessionN of IEMOCAP)")
        if missing:
            continue
        labelled: dict[str, dict] = {}
        for label_file in sorted(labels_dir.glob("*.txt")):
            if is_macos_litter(label_file) or not label_file.is_file():
                continue
            for utt_id, record in _parse_label_file(label_file, session, scan).items():
                if utt_id in labelled:
                    scan.problem(
                        label_file, f"utterance {utt_id} is also labelled in {labelled[utt_id]['_label_file']}"
                    )
                    continue
                labelled[utt_id] = record
        audio = {wav.stem: wav for wav in sorted(wav_dir.glob("*/*.wav")) if not is_macos_litter(wav) and wav.is_file()}
        for utt_id, record in labelled.items():
            wav = audio.get(utt_id)
            if wav is None:
                scan.problem(
                    Path(record["_label_file"]),
                    f"label for {utt_id} but no audio at {wav_dir / record['dialog'] / (utt_id + '.wav')}",
                    line=record["_label_line"],
                )
                continue
            if wav.parent.name != record["dialog"]:
                scan.problem(wav, f"audio of {utt_id} is in folder {wav.parent.name}, expected {record['dialog']}")
                continue
            scan.records.append({**record, "path": str(wav)})
        for utt_id, wav in audio.items():
            if utt_id not in labelled:
                scan.problem(wav, f"audio without a label: no line for {utt_id} in {labels_dir}")
    return scan
