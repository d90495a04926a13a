"""sernas folds written as other toolkits' split files, so models outside sernas are scored on
exactly the sernas splits (and ``trainers.given_folds`` reads them back to the same table).

- ``emobox``: ``OUT/<corpus>.jsonl`` (every utterance of the table), ``OUT/label_map.json`` (raw
  label -> protocol label, as EmoBox maps ``exc`` to Happy) and per fold
  ``OUT/fold_<n>/<corpus>_{train,valid,test}_fold_<n>.jsonl``: train holds the weight and alpha
  speakers, valid the validation speakers, test the test speakers. ``key`` is
  ``<dataset>-<utt_id>``, ``emo`` the manifest's raw label, ``wav`` the audio path relative to
  ``audio_root`` (absolute without one), ``length``/``num_frame``/``sample_rate``/``channel``
  from the manifest.
- ``s3prl``: ``OUT/Session<n>/{train,test}_meta_data.json`` per fold n; ``labels`` numbers the
  protocol classes, ``label`` is the protocol label; train holds train and valid (s3prl carves
  its own validation set from it at random; sernas, reading it back, draws the same validation
  speakers again).

Every file is built in memory first and written atomically: bad input (an utterance missing
from the manifest, audio outside ``audio_root``) writes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from trainers.atomic_io import write_text_atomically
from trainers.corpora.emobox import split_file_name
from trainers.folds import SPLITS, protocol_classes

__all__ = ["EXPORT_FORMATS", "export_folds"]

EXPORT_FORMATS = ("emobox", "s3prl")


def _rows(table: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Fold rows with the manifest's audio facts and raw label (``raw_label``)."""
    columns = ["utt_id", "path", "dataset", "label", "duration_s", "sample_rate", "channels"]
    facts = manifest[columns].rename(columns={"label": "raw_label"}).assign(utt_id=lambda f: f["utt_id"].astype(str))
    rows = table.assign(utt_id=table["utt_id"].astype(str)).merge(facts, on="utt_id", how="left")
    missing = rows.loc[rows["path"].isna(), "utt_id"].unique()
    if len(missing):
        raise ValueError(
            f"{len(missing)} utterance(s) of the fold table are not in the manifest (first: {', '.join(missing[:3])}); "
            "give the manifest the folds were made from."
        )
    return rows


def _relative(path: str, audio_root: Path | None) -> str:
    if audio_root is None:
        return str(Path(path))
    try:
        return Path(path).resolve().relative_to(audio_root).as_posix()
    except ValueError:
        raise ValueError(f"audio {path} is not under the audio root {audio_root}; give another --audio-root.") from None


def _emobox(rows: pd.DataFrame, *, corpus: str, audio_root: Path | None) -> dict[Path, str]:
    def line(row) -> str:
        return json.dumps(
            {
                "key": f"{row.dataset}-{row.utt_id}",
                "dataset": row.dataset,
                "wav": _relative(row.path, audio_root),
                "type": "raw",
                "sample_rate": int(row.sample_rate),
                "num_frame": int(round(float(row.duration_s) * int(row.sample_rate))),
                "task": "category",
                "length": float(row.duration_s),
                "emo": row.raw_label,
                "channel": int(row.channels),
            },
            ensure_ascii=False,
        )

    def lines(frame: pd.DataFrame) -> str:
        return "".join(line(row) + "\n" for row in frame.itertuples(index=False))

    files = {Path(f"{corpus}.jsonl"): lines(rows.drop_duplicates("utt_id"))}
    label_map: dict[str, str] = {}
    for raw, label in rows[["raw_label", "label"]].drop_duplicates().itertuples(index=False):
        if label_map.setdefault(str(raw), str(label)) != str(label):
            raise ValueError(
                f"raw label {raw!r} has two protocol labels ({label_map[str(raw)]}, {label}) in the folds."
            )
    files[Path("label_map.json")] = json.dumps(dict(sorted(label_map.items())), indent=4) + "\n"
    for fold, frame in rows.groupby("fold"):
        for split in SPLITS:
            part = frame[frame["split"] == split]
            if len(part):
                files[Path(f"fold_{fold}") / split_file_name(corpus, split, int(fold))] = lines(part)
    return files


def _s3prl(rows: pd.DataFrame, *, classes: Sequence[str], audio_root: Path | None) -> dict[Path, str]:
    labels = {name: index for index, name in enumerate(classes)}
    files = {}
    for fold, frame in rows.groupby("fold"):
        for name, part in (("train", frame[frame["split"] != "test"]), ("test", frame[frame["split"] == "test"])):
            meta = [
                {"path": _relative(row.path, audio_root), "label": str(row.label), "speaker": str(row.speaker)}
                for row in part.itertuples(index=False)
            ]
            files[Path(f"Session{fold}") / f"{name}_meta_data.json"] = json.dumps({"labels": labels, "meta_data": meta})
    return files


def export_folds(
    table: pd.DataFrame,
    manifest: pd.DataFrame,
    *,
    format: str,
    out_dir: str | Path,
    audio_root: str | Path | None = None,
    corpus: str | None = None,
    classes: Sequence[str] | None = None,
) -> list[Path]:
    """Write ``table``'s folds as ``format`` split files under ``out_dir``; returns the files.

    ``corpus`` names EmoBox's files (default: the manifest's one dataset); ``classes`` orders
    s3prl's label numbers (default: ``trainers.folds.protocol_classes``)."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(EXPORT_FORMATS)}.")
    root = None if audio_root is None else Path(audio_root).expanduser().resolve()
    rows = _rows(table, manifest)
    if format == "emobox":
        datasets = sorted(rows["dataset"].astype(str).unique())
        if corpus is None and len(datasets) != 1:
            raise ValueError(
                f"the folds hold several datasets ({', '.join(datasets)}); name the EmoBox corpus (--corpus)."
            )
        name = corpus or datasets[0]
        if not name or os.sep in name or name in (".", ".."):
            raise ValueError(f"corpus name {name!r} cannot name a file.")
        files = _emobox(rows, corpus=name, audio_root=root)
    else:
        files = _s3prl(rows, classes=protocol_classes(table, classes=classes), audio_root=root)
    out_dir = Path(out_dir)
    return [write_text_atomically(out_dir / relative, text) for relative, text in files.items()]
