"""EmoBox (Ma et al., Interspeech 2024) split files: one corpus folder of its ``data/``.

Layout::

    data/<corpus>/<corpus>.jsonl                                 every utterance (optional here)
    data/<corpus>/label_map.json                                 raw label -> class (optional)
    data/<corpus>/fold_<n>/<corpus>_train_fold_<n>.jsonl
    data/<corpus>/fold_<n>/<corpus>_valid_fold_<n>.jsonl          a few corpora only
    data/<corpus>/fold_<n>/<corpus>_test_fold_<n>.jsonl

One JSON object per line: ``key`` (``iemocap-Ses01F_impro04_F000``), ``dataset``, ``wav`` (a path
relative to the user's download folder: ``downloads/iemocap/Session1/...``), ``sample_rate``,
``num_frame``, ``length`` (seconds), ``emo`` (the raw label: IEMOCAP keeps ``exc``, which
``label_map.json`` maps to Happy like ``hap``), ``channel``, ``type`` (``raw``), ``task``. There is no
speaker field. The sernas utterance id is the key without its ``<dataset>-`` prefix
(``Ses01F_impro04_F000``, the id of sernas' own IEMOCAP reader), kept whole as ``source_key``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from trainers.corpora.given_splits import GIVEN_SPLITS, GivenSplits, json_lines, read_json
from trainers.corpora.scan import CorpusError

FORMAT = "emobox"
FOLD_DIR = re.compile(r"^fold_(\d+)$")
REQUIRED_FIELDS = ("key", "wav", "emo")


def split_file_name(corpus: str, split: str, fold: int) -> str:
    return f"{corpus}_{split}_fold_{fold}.jsonl"


def utt_id_of(key: str, dataset: str) -> str:
    """EmoBox's key without its ``<dataset>-`` prefix (the key itself when it has none)."""
    prefix = f"{dataset}-"
    return key[len(prefix) :] if dataset and key.startswith(prefix) and len(key) > len(prefix) else key


def _record(path: Path, line: int, item: dict[str, Any], *, corpus: str, splits: GivenSplits) -> dict | None:
    bad = [name for name in REQUIRED_FIELDS if not isinstance(item.get(name), str) or not item[name].strip()]
    if bad:
        splits.problem(path, f"missing or empty field(s) {', '.join(bad)}; expected {', '.join(REQUIRED_FIELDS)}", line)
        return None
    if item.get("type", "raw") != "raw":
        splits.problem(path, f"type {item['type']!r}: sernas reads audio, so only type 'raw' is imported", line)
        return None
    if "start_time" in item or "end_time" in item:
        splits.problem(path, "segments of a file (start_time/end_time) are not supported: one wav per utterance", line)
        return None
    if not splits.check_label(item["emo"], splits.labels, path=path, line=line, mapping="label_map.json"):
        return None
    dataset = str(item.get("dataset") or corpus)
    return {
        "utt_id": utt_id_of(item["key"], dataset),
        "source_key": item["key"],
        "dataset": dataset,
        "label": item["emo"],
        "wav": item["wav"],
        "_source": path,
        "_line": line,
    }


def read_emobox(root: str | Path) -> GivenSplits:
    """Parse the EmoBox folder ``root`` (``data/<corpus>``); problems name the file and line."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"EmoBox corpus folder {root} does not exist or is not a directory.")
    corpus = root.name
    folds = sorted(
        (int(match.group(1)), child)
        for child in root.iterdir()
        if child.is_dir() and (match := FOLD_DIR.match(child.name)) and int(match.group(1)) >= 1
    )
    if not folds:
        raise CorpusError(
            f"EmoBox corpus folder {root} has no fold_<n> folders; expected data/<corpus>/<corpus>.jsonl and "
            "data/<corpus>/fold_<n>/<corpus>_{train,test}_fold_<n>.jsonl (give the data/<corpus> folder)."
        )
    splits = GivenSplits(format=FORMAT, root=root)
    label_map = root / "label_map.json"
    if label_map.is_file():
        parsed = read_json(label_map, splits)
        if parsed is not None and not isinstance(parsed[0], dict):
            splits.problem(label_map, f"expected a JSON object (raw label -> class), got {type(parsed[0]).__name__}")
        elif parsed is not None:
            splits.labels = dict(parsed[0])
    listing = root / f"{corpus}.jsonl"
    listed = listing.is_file()
    if listed:
        for line, item in json_lines(listing, splits):
            record = _record(listing, line, item, corpus=corpus, splits=splits)
            if record is None:
                continue
            if record["utt_id"] in splits.utterances:
                first = splits.utterances[record["utt_id"]]
                splits.problem(
                    listing, f"key {record['source_key']!r} is listed twice (also line {first['_line']})", line
                )
                continue
            splits.add_utterance(record)
    for fold, folder in folds:
        for split in GIVEN_SPLITS:
            path = folder / split_file_name(corpus, split, fold)
            if not path.is_file():
                if split != "valid":
                    splits.problem(folder, f"missing {path.name} (every fold_<n> needs a train and a test file)")
                continue
            for line, item in json_lines(path, splits):
                record = _record(path, line, item, corpus=corpus, splits=splits)
                if record is None:
                    continue
                if listed and record["utt_id"] not in splits.utterances:
                    splits.problem(path, f"key {record['source_key']!r} is not in {listing.name}", line)
                    continue
                if not splits.add_utterance(record):  # the same label and wav wherever it is listed
                    continue
                splits.add_entry(record["utt_id"], fold=fold, split=split, source=path, line=line)
    return splits
