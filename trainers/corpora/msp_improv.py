"""MSP-IMPROV recipe: audio under ``sessionN/<scenario>/<part>/`` and labels in ``Evaluation.txt``.

Audio: ``sessionN/S01A/R/MSP-IMPROV-S01A-F01-R-FM01.wav`` (scenario = sentence 01 + target
emotion A/H/S/N, speaker F01, part R). Parts: ``R`` read target sentence, ``T`` improvised
target sentence, ``S`` other improvised speech, ``P`` natural interaction; only ``R`` is
scripted (``improvised`` false).

Labels: ``Evaluation.txt`` at the root (some copies spell it ``Evalution.txt``), a consensus
line per recording::

    UTD-IMPROV-S01A-F01-R-FM01.avi; A; A:4.0000; V:2.2000; D:3.4000 ; N:5.0000;

followed by one line per rater (they start with the rater id, not ``UTD-IMPROV-``). The
consensus letters A/H/S/N/O/X map to ang/hap/sad/neu/oth/xxx.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from trainers.corpora.scan import CorpusError, CorpusScan, is_macos_litter

DATASET = "msp-improv"
LABEL_FILES = ("Evaluation.txt", "Evalution.txt")
CONSENSUS_LABELS = {"A": "ang", "H": "hap", "S": "sad", "N": "neu", "O": "oth", "X": "xxx"}
TARGET_EMOTIONS = {"A": "ang", "H": "hap", "S": "sad", "N": "neu"}
RECORDING = re.compile(
    r"^(?:MSP|UTD)-IMPROV-(?P<scenario>S(?P<sentence>\d{2})(?P<target>[AHSN]))-(?P<speaker>(?P<gender>[FM])"
    r"(?P<speaker_number>\d{2}))-(?P<part>[PRST])-(?P<dyad>[FM]{2}\d{2})$"
)
SESSION_DIR = re.compile(r"^session([1-9])$")


@dataclass(frozen=True, slots=True)
class RecordingName:
    """What MSP-IMPROV's naming rule says about a recording such as ``MSP-IMPROV-S01A-F01-R-FM01``."""

    session: int  # the speaker id's digits: F01 and M01 recorded session 1
    speaker: str
    gender: str
    improvised: bool  # every part but R (read)


def parse_recording_name(name: str) -> RecordingName | None:
    """The speaker rule: ``MSP-IMPROV-S01A-F01-R-FM01`` (or ``UTD-IMPROV-...``) is spoken by ``F01``
    of session 1; None when ``name`` does not follow it."""
    match = RECORDING.match(name)
    if match is None:
        return None
    return RecordingName(
        session=int(match["speaker_number"]),
        speaker=match["speaker"],
        gender=match["gender"],
        improvised=match["part"] != "R",
    )


SCORE_KEYS = {"A": "arousal", "V": "valence", "D": "dominance", "N": "naturalness"}


def find_label_file(root: Path) -> Path:
    if not root.is_dir():
        raise CorpusError(f"MSP-IMPROV root {root} does not exist or is not a directory.")
    for name in LABEL_FILES:
        if (root / name).is_file():
            return root / name
    raise CorpusError(f"MSP-IMPROV root {root} has no label file; expected {' or '.join(LABEL_FILES)} at the root.")


def _parse_score(field: str) -> tuple[str, float] | None:
    key, sep, value = field.partition(":")
    key = key.strip()
    if not sep or key not in SCORE_KEYS:
        return None
    try:
        return SCORE_KEYS[key], float(value.strip())  # float("NaN") is NaN, as the file means
    except ValueError:
        return None


def _parse_labels(path: Path, scan: CorpusScan) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line.startswith("UTD-IMPROV-"):
            continue  # blank lines and per-rater lines
        fields = [field.strip() for field in line.split(";")]
        name = fields[0]
        stem = name[: -len(".avi")] if name.endswith(".avi") else name
        match = RECORDING.match(stem)
        if match is None or len(fields) < 2:
            scan.problem(
                path,
                f"cannot parse consensus line {line[:70]!r}; expected "
                "'UTD-IMPROV-S01A-F01-R-FM01.avi; A; A:4.0000; V:2.2000; D:3.4000 ; N:5.0000;'",
                line=number,
            )
            continue
        letter = fields[1]
        if letter not in CONSENSUS_LABELS:
            scan.problem(
                path,
                f"unknown consensus label {letter!r} for {stem}; expected one of {'/'.join(CONSENSUS_LABELS)}",
                line=number,
            )
            continue
        scores = {column: math.nan for column in SCORE_KEYS.values()}
        bad_fields = []
        for field in fields[2:]:
            if not field:
                continue
            parsed = _parse_score(field)
            if parsed is None:
                bad_fields.append(field)
            else:
                scores[parsed[0]] = parsed[1]
        if bad_fields:
            scan.problem(
                path,
                f"cannot parse {bad_fields[0]!r} for {stem}; expected KEY:number with KEY in "
                f"{'/'.join(SCORE_KEYS)} (NaN allowed)",
                line=number,
            )
            continue
        utt_id = "MSP-IMPROV-" + stem.split("-IMPROV-", 1)[1]
        if utt_id in records:
            scan.problem(path, f"recording {utt_id} has two consensus lines", line=number)
            continue
        records[utt_id] = {
            "utt_id": utt_id,
            "dataset": DATASET,
            "speaker": match["speaker"],
            "gender": match["gender"],
            "label": CONSENSUS_LABELS[letter],
            "improvised": match["part"] != "R",
            "scenario": match["scenario"],
            "target": match["target"],
            "target_label": TARGET_EMOTIONS[match["target"]],
            "part": match["part"],
            **scores,
            "_label_line": number,
            "_speaker_session": int(match["speaker_number"]),
        }
    return records


def scan_msp_improv(root: str | Path) -> CorpusScan:
    root = Path(root).expanduser().resolve()
    scan = CorpusScan(dataset=DATASET, root=root)
    label_file = find_label_file(root)
    labelled = _parse_labels(label_file, scan)
    sessions = sorted(child for child in root.iterdir() if child.is_dir() and SESSION_DIR.match(child.name))
    if not sessions:
        raise CorpusError(
            f"MSP-IMPROV root {root} has no session1..session6 folders; expected "
            "sessionN/<scenario>/<part>/MSP-IMPROV-S01A-F01-R-FM01.wav."
        )
    seen: set[str] = set()
    for session_dir in sessions:
        session = int(SESSION_DIR.match(session_dir.name).group(1))
        for wav in sorted(session_dir.glob("*/*/*.wav")):
            if is_macos_litter(wav) or not wav.is_file():
                continue
            record = labelled.get(wav.stem)
            if record is None:
                scan.problem(wav, f"audio without a label: no consensus line for {wav.stem} in {label_file.name}")
                continue
            scenario_dir, part_dir = wav.parent.parent.name, wav.parent.name
            if (scenario_dir, part_dir) != (record["scenario"], record["part"]):
                scan.problem(
                    wav,
                    f"{wav.stem} should be under {record['scenario']}/{record['part']}/, "
                    f"found under {scenario_dir}/{part_dir}/",
                )
                continue
            if record["_speaker_session"] != session:
                scan.problem(
                    wav,
                    f"speaker {record['speaker']} belongs to session{record['_speaker_session']}, "
                    f"but the file is under {session_dir.name}",
                )
                continue
            seen.add(wav.stem)
            scan.records.append({**record, "session": session, "path": str(wav)})
    for utt_id, record in labelled.items():
        if utt_id not in seen and not any(p.path.stem == utt_id for p in scan.problems):
            scan.problem(
                label_file,
                f"label for {utt_id} but no audio at session{record['_speaker_session']}/"
                f"{record['scenario']}/{record['part']}/{utt_id}.wav",
                line=record["_label_line"],
            )
    return scan
