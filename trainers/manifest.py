"""Corpus -> manifest: one Parquet row per labelled utterance, every later stage's input.

The manifest keeps raw labels (class selection and merges belong to an experiment's protocol,
see ``trainers.folds``) and the audio facts read from each file's header. A corpus with
problems is not written at all unless ``skip_bad`` is asked for, in which case the rejected
files go to ``<out>.rejects.csv`` beside it: a manifest that silently lost utterances would make
results incomparable across users. Clips shorter than ``min_duration_s`` are problems too: the
feature presets would silently zero-pad them into an input that is almost all silence.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trainers.atomic_io import read_parquet_metadata, write_parquet_atomically, write_text_atomically
from trainers.audio import AudioError, probe_audio
from trainers.corpora.csv_corpus import scan_csv
from trainers.corpora.iemocap import scan_iemocap
from trainers.corpora.msp_improv import scan_msp_improv
from trainers.corpora.scan import DEFAULT_MIN_DURATION_S, CorpusError, CorpusProblem, CorpusScan
from trainers.imports import SPLIT_FORMATS, scan_given_splits

MANIFEST_VERSION = 1
METADATA_KEY = "sernas.manifest"
SCANNERS: dict[str, Callable[[Path], CorpusScan]] = {
    "iemocap": scan_iemocap,
    "msp-improv": scan_msp_improv,
    "csv": scan_csv,
}
# Columns every manifest has, in this order; corpus extras (dialog, V/A/D, scenario ...) follow.
CORE_COLUMNS = (
    "utt_id",
    "path",
    "dataset",
    "session",
    "speaker",
    "gender",
    "label",
    "improvised",
    "duration_s",
    "sample_rate",
    "channels",
)


@dataclass(frozen=True, slots=True)
class ManifestResult:
    frame: pd.DataFrame
    problems: tuple[CorpusProblem, ...]
    dataset: str
    root: Path
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    # a manifest of several corpora (trainers.cross_corpus.combine_manifests): name -> "dataset at root"
    sources: tuple[tuple[str, str], ...] = ()


def build_manifest(
    *,
    dataset: str,
    root: str | Path,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    audio_root: str | Path | None = None,
    speakers: str | Path | None = None,
    corpus: str | None = None,
) -> ManifestResult:
    """Scan a corpus and probe every audio file; nothing is written here.

    ``dataset`` is a corpus reader (``SCANNERS``) or a format of shared split files
    (``trainers.imports.SPLIT_FORMATS``: ``root`` is their folder); for those, ``audio_root`` is
    the folder their wav paths are relative to, ``speakers`` a CSV map ``utt_id,speaker`` and
    ``corpus`` the corpus they describe (``trainers.imports.scan_given_splits``). Audio shorter
    than ``min_duration_s`` seconds (0 keeps everything) becomes a problem naming the file and
    its duration, like unreadable audio.
    """
    if dataset not in SCANNERS and dataset not in SPLIT_FORMATS:
        raise CorpusError(f"unknown dataset {dataset!r}; expected one of {', '.join([*SCANNERS, *SPLIT_FORMATS])}.")
    if not math.isfinite(min_duration_s) or min_duration_s < 0:
        raise ValueError(f"min_duration_s must be a finite number of seconds >= 0, but got {min_duration_s!r}.")
    if dataset in SPLIT_FORMATS:
        scan = scan_given_splits(dataset, root, audio_root=audio_root, speakers=speakers, corpus=corpus)
    else:
        given = [
            name for name, value in (("audio_root", audio_root), ("speakers", speakers), ("corpus", corpus)) if value
        ]
        if given:
            raise CorpusError(
                f"{', '.join(given)} apply to split files ({', '.join(SPLIT_FORMATS)}), not to dataset {dataset!r}."
            )
        scan = SCANNERS[dataset](Path(root))
    problems = list(scan.problems)
    rows = []
    for record in scan.records:
        try:
            info = probe_audio(record["path"])
        except AudioError as error:
            problems.append(CorpusProblem(path=Path(record["path"]), reason=str(error)))
            continue
        if info.duration_s < min_duration_s:
            problems.append(
                CorpusProblem(
                    path=Path(record["path"]),
                    reason=(
                        f"clip too short: {info.duration_s:.3f} s of audio, expected at least {min_duration_s:g} s "
                        "(the minimum duration: --min-duration of sernas manifest, data.min_duration_s of an experiment)"
                    ),
                )
            )
            continue
        rows.append(
            {**record, "duration_s": info.duration_s, "sample_rate": info.sample_rate, "channels": info.channels}
        )
    return ManifestResult(
        frame=_to_frame(rows),
        problems=tuple(problems),
        dataset=dataset,
        root=scan.root,
        min_duration_s=float(min_duration_s),
    )


def _to_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(CORE_COLUMNS))
    frame = frame[[column for column in frame.columns if not column.startswith("_")]]
    extras = sorted(column for column in frame.columns if column not in CORE_COLUMNS)
    frame = frame[list(CORE_COLUMNS) + extras]
    frame = frame.astype(
        {
            "session": "int64",
            "sample_rate": "int64",
            "channels": "int64",
            "duration_s": "float64",
            "improvised": "boolean",
        }
    )
    for column in ("utt_id", "path", "dataset", "speaker", "gender", "label"):
        frame[column] = frame[column].astype("string")
    return frame.sort_values(["session", "speaker", "utt_id"], kind="stable").reset_index(drop=True)


def rejects_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".rejects.csv")


def write_manifest(result: ManifestResult, out: str | Path, *, skip_bad: bool = False) -> Path:
    """Write the manifest atomically; with problems, refuse unless ``skip_bad`` (then log rejects)."""
    out = Path(out)
    if result.problems and not skip_bad:
        raise CorpusError(
            f"{len(result.problems)} problem(s) in {result.dataset} corpus at {result.root}; nothing was written. "
            "Fix them, or pass --skip-bad to write the manifest without these files "
            f"(they are then listed in {rejects_path(out).name}):",
            result.problems,
        )
    if result.frame.empty:
        raise CorpusError(f"no usable labelled utterances found in {result.root}; nothing was written.")
    metadata = {
        "version": MANIFEST_VERSION,
        "dataset": result.dataset,
        "root": str(result.root),
        "rejected": len(result.problems),
        "min_duration_s": result.min_duration_s,
    }
    if result.sources:
        metadata["sources"] = dict(result.sources)
    if result.problems:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["path", "line", "reason"])
        writer.writerows([str(p.path), "" if p.line is None else p.line, p.reason] for p in result.problems)
        write_text_atomically(rejects_path(out), buffer.getvalue())
    else:
        rejects_path(out).unlink(missing_ok=True)  # a stale list from an earlier run would mislead
    return write_parquet_atomically(result.frame, out, metadata={METADATA_KEY: json.dumps(metadata)})


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Load a manifest written by ``write_manifest``, checking it is one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist; create it with `sernas manifest`.")
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for non-Parquet input
        raise ValueError(f"manifest {path} is not a readable Parquet file ({error}).") from None
    missing = [column for column in CORE_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"manifest {path} lacks column(s) {', '.join(missing)}; is it a sernas manifest?")
    return frame


def manifest_info(path: str | Path) -> dict:
    """The dataset/root/version a manifest was written with (empty for foreign files)."""
    raw = read_parquet_metadata(path).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def counts_by(frame: pd.DataFrame, *, rows: str, columns: str) -> pd.DataFrame:
    """Counts per ``rows`` x ``columns`` with totals, for the tables the CLI prints."""
    return pd.crosstab(frame[rows], frame[columns], margins=True, margins_name="total")
