"""SpeechBrain's IEMOCAP recipe manifests: ``{utt_id: {"wav", "length", "emo"}}`` per split.

Layout: one fold is a folder holding ``train.json``, ``test.json`` and (as the recipe writes it)
``valid.json``; several folds are subfolders whose names end in the fold number (``fold_1``,
``fold_2`` ... or ``Session1`` ...), each holding those files. ``wav`` is an absolute path on the
machine that prepared the files, a path relative to the audio root, or starts with
``{data_root}`` (replaced by the audio root). There is no label mapping and no speaker field.
"""

from __future__ import annotations

from pathlib import Path

from trainers.corpora.given_splits import GivenSplits, LineFinder, fold_number, read_json
from trainers.corpora.scan import CorpusError

FORMAT = "speechbrain"
FILES = {"train": "train.json", "valid": "valid.json", "test": "test.json"}


def _fold_folders(root: Path) -> list[tuple[int, Path]]:
    if (root / FILES["test"]).is_file() or (root / FILES["train"]).is_file():
        return [(1, root)]
    return sorted(
        (number, child)
        for child in root.iterdir()
        if child.is_dir() and (number := fold_number(child.name)) is not None
    )


def read_speechbrain(root: str | Path, *, dataset: str = "iemocap") -> GivenSplits:
    """Parse SpeechBrain JSON manifests under ``root``; problems name the file and line."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"SpeechBrain manifest folder {root} does not exist or is not a directory.")
    folds = _fold_folders(root)
    if not folds:
        raise CorpusError(
            f"SpeechBrain manifest folder {root} holds neither train.json/test.json nor fold folders "
            "(fold_1/, fold_2/, ... each with train.json, valid.json, test.json)."
        )
    splits = GivenSplits(format=FORMAT, root=root)
    for fold, folder in folds:
        for split, name in FILES.items():
            path = folder / name
            if not path.is_file():
                if split != "valid":
                    splits.problem(folder, f"missing {name} (every fold needs train.json and test.json)")
                continue
            parsed = read_json(path, splits)
            if parsed is None:
                continue
            value, text = parsed
            if not isinstance(value, dict):
                splits.problem(path, 'expected {"<utt_id>": {"wav": ..., "length": ..., "emo": ...}, ...}', line=1)
                continue
            lines = LineFinder(text)
            for utt_id, item in value.items():
                line = lines.find(utt_id)
                if not isinstance(item, dict):
                    splits.problem(path, f"{utt_id}: expected an object with wav, length, emo", line=line)
                    continue
                wav, label = item.get("wav"), item.get("emo")
                if not isinstance(wav, str) or not wav.strip() or not isinstance(label, str) or not label.strip():
                    splits.problem(path, f"{utt_id}: lacks a wav or an emo (got {item!r:.80})", line=line)
                    continue
                record = {
                    "utt_id": utt_id,
                    "source_key": utt_id,
                    "dataset": dataset,
                    "label": label,
                    "wav": wav,
                    "_source": path,
                    "_line": line,
                }
                if not splits.add_utterance(record):
                    continue
                splits.add_entry(utt_id, fold=fold, split=split, source=path, line=line)
    return splits
