"""s3prl's emotion task meta-data: one leave-one-session-out fold per ``Session<k>`` folder.

Layout (``s3prl/downstream/emotion/meta_data``)::

    meta_data/Session<k>/train_meta_data.json
    meta_data/Session<k>/test_meta_data.json

Each file is ``{"labels": {"neu": 0, "hap": 1, ...}, "meta_data": [{"path", "label", "speaker"}, ...]}``
with ``path`` relative to the IEMOCAP root (``Session1/sentences/wav/<dialog>/<utt>.wav``). The
utterance id is the path's stem (as s3prl names it). ``speaker`` is kept as ``data_speaker``; for
IEMOCAP it is the dialog's first speaker (``Ses01F`` for ``Ses01F_script02_2_M000``), so the
naming rule wins over it (``trainers.corpora.speakers``). Fold k is ``Session<k>``; s3prl carves
its own validation set out of the train file at random, sernas draws validation speakers from it.
"""

from __future__ import annotations

from pathlib import Path

from trainers.corpora.given_splits import GivenSplits, LineFinder, fold_number, read_json
from trainers.corpora.scan import CorpusError

FORMAT = "s3prl"
FILES = {"train": "train_meta_data.json", "test": "test_meta_data.json"}
EXPECTED = '{"labels": {"neu": 0, ...}, "meta_data": [{"path": ..., "label": ..., "speaker": ...}, ...]}'


def _fold_folders(root: Path) -> list[tuple[int, Path]]:
    base = root / "meta_data" if (root / "meta_data").is_dir() else root
    return sorted(
        (number, child)
        for child in base.iterdir()
        if child.is_dir() and child.name.startswith("Session") and (number := fold_number(child.name)) is not None
    )


def read_s3prl(root: str | Path, *, dataset: str = "iemocap") -> GivenSplits:
    """Parse s3prl's ``meta_data`` folder (or the folder holding it); problems name the file and line."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"s3prl meta-data folder {root} does not exist or is not a directory.")
    folds = _fold_folders(root)
    if not folds:
        raise CorpusError(
            f"s3prl meta-data folder {root} has no Session<k> folders; expected "
            "meta_data/Session<k>/{train,test}_meta_data.json."
        )
    splits = GivenSplits(format=FORMAT, root=root)
    for fold, folder in folds:
        for split, name in FILES.items():
            path = folder / name
            if not path.is_file():
                splits.problem(folder, f"missing {name} (every Session<k> needs {' and '.join(FILES.values())})")
                continue
            parsed = read_json(path, splits)
            if parsed is None:
                continue
            value, text = parsed
            if not (
                isinstance(value, dict)
                and isinstance(value.get("labels"), dict)
                and isinstance(value.get("meta_data"), list)
            ):
                splits.problem(path, f"expected {EXPECTED}", line=1)
                continue
            labels = value["labels"]
            if splits.labels is None:
                splits.labels = dict(labels)
            lines = LineFinder(text)
            for index, item in enumerate(value["meta_data"]):
                where = f"meta_data[{index}]"
                if not isinstance(item, dict):
                    splits.problem(path, f"{where} is not an object; expected {{'path', 'label', 'speaker'}}")
                    continue
                wav, label = item.get("path"), item.get("label")
                line = lines.find(wav) if isinstance(wav, str) else None
                if not isinstance(wav, str) or not wav.strip() or not isinstance(label, str) or not label.strip():
                    splits.problem(path, f"{where} lacks a path or a label (got {item!r:.80})", line=line)
                    continue
                if not splits.check_label(label, labels, path=path, line=line, mapping="this file's labels"):
                    continue
                speaker = item.get("speaker")
                record = {
                    "utt_id": Path(wav).stem,
                    "source_key": wav,
                    "dataset": dataset,
                    "label": label,
                    "wav": wav,
                    "_source": path,
                    "_line": line,
                }
                if isinstance(speaker, str) and speaker.strip():
                    record["data_speaker"] = speaker.strip()
                if not splits.add_utterance(record):
                    continue
                splits.add_entry(record["utt_id"], fold=fold, split=split, source=path, line=line)
    return splits
