"""Any other corpus (RAVDESS, CREMA-D, a lab's own) through a CSV: ``path,label,speaker``.

Optional columns: ``session`` (integer; without it every speaker is its own session, so
``loso`` becomes leave-one-speaker-out), ``gender`` (F/M, female/male; ``U`` when absent),
``improvised`` (true/false; unknown when absent) and ``utt_id`` (default: the file name without
extension). Paths are relative to the CSV's folder (absolute paths also work).
"""

from __future__ import annotations

import csv
from pathlib import Path

from trainers.corpora.scan import CorpusError, CorpusScan

DATASET = "csv"
REQUIRED_COLUMNS = ("path", "label", "speaker")
OPTIONAL_COLUMNS = ("session", "gender", "improvised", "utt_id")
GENDERS = {"f": "F", "female": "F", "m": "M", "male": "M", "u": "U", "": "U", "unknown": "U"}
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def scan_csv(csv_path: str | Path) -> CorpusScan:
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise CorpusError(f"CSV corpus file {csv_path} does not exist; expected a CSV with columns path,label,speaker.")
    scan = CorpusScan(dataset=DATASET, root=csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [column.strip() for column in (reader.fieldnames or [])]
        missing = [column for column in REQUIRED_COLUMNS if column not in columns]
        if missing:
            raise CorpusError(
                f"{csv_path}:1: missing column(s) {', '.join(missing)}; found {columns or 'no header'}, "
                f"expected at least {','.join(REQUIRED_COLUMNS)} (optional: {','.join(OPTIONAL_COLUMNS)})."
            )
        reader.fieldnames = columns
        rows = [(reader.line_num, row) for row in reader]
    has_session = "session" in columns
    speaker_sessions = {
        speaker: index
        for index, speaker in enumerate(sorted({(row.get("speaker") or "").strip() for _, row in rows}), start=1)
    }
    seen: dict[str, int] = {}
    for line, row in rows:
        values = {key: (value or "").strip() for key, value in row.items() if key is not None}
        empty = [column for column in REQUIRED_COLUMNS if not values.get(column)]
        if empty:
            scan.problem(csv_path, f"empty {', '.join(empty)}", line=line)
            continue
        audio = Path(values["path"])
        audio = audio if audio.is_absolute() else (csv_path.parent / audio)
        audio = audio.resolve()
        utt_id = values.get("utt_id") or audio.stem
        if utt_id in seen:
            scan.problem(csv_path, f"utt_id {utt_id!r} already used on line {seen[utt_id]}", line=line)
            continue
        gender = GENDERS.get(values.get("gender", "").lower())
        if gender is None:
            scan.problem(csv_path, f"gender {values['gender']!r} is not one of F, M, female, male, U", line=line)
            continue
        improvised_text = values.get("improvised", "").lower()
        if improvised_text and improvised_text not in BOOLEANS:
            scan.problem(csv_path, f"improvised {values['improvised']!r} is not true/false", line=line)
            continue
        if has_session:
            try:
                session = int(values.get("session", ""))
            except ValueError:
                scan.problem(csv_path, f"session {values.get('session')!r} is not an integer", line=line)
                continue
        else:
            session = speaker_sessions[values["speaker"]]
        if not audio.is_file():
            scan.problem(csv_path, f"label for {utt_id} but no audio at {audio}", line=line)
            continue
        seen[utt_id] = line
        scan.records.append(
            {
                "utt_id": utt_id,
                "path": str(audio),
                "dataset": DATASET,
                "session": session,
                "speaker": values["speaker"],
                "gender": gender,
                "label": values["label"],
                "improvised": BOOLEANS.get(improvised_text),
                "_label_line": line,
            }
        )
    return scan
