"""Builders of tiny split-file folders in the published formats (EmoBox, s3prl, SpeechBrain).

Each writes a small fake IEMOCAP (real 16 kHz WAVs, ``conftest.build_fake_iemocap``) and the
split files by hand, as those toolkits publish them (not with sernas' own exporter), and
returns what a correct import must find: which utterances each fold's files put in which split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from conftest import FakeCorpus, build_fake_iemocap

KEPT = {"neu": "neu", "hap": "hap", "exc": "hap", "sad": "sad", "ang": "ang"}  # EmoBox's IEMOCAP label_map, merged
EMOBOX_LABEL_MAP = {"neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad", "exc": "Happy"}


@dataclass
class SplitFixture:
    root: Path  # the folder given to the reader
    audio_root: Path
    corpus: FakeCorpus
    folds: dict[int, dict[str, set[str]]] = field(default_factory=dict)  # fold -> split -> utt ids
    files: dict[tuple[int, str], Path] = field(default_factory=dict)  # (fold, split) -> file


def _session(utt_id: str) -> int:
    return int(utt_id[3:5])


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def build_emobox(home: Path, *, sessions=(1, 2, 3), per_dialog: int = 4) -> SplitFixture:
    """``home/downloads/iemocap`` (the audio) and ``home/data/iemocap`` (EmoBox's files): one fold
    per session, leave-one-session-out, the utterances of EmoBox's label_map only (no fru, xxx)."""
    corpus = build_fake_iemocap(home / "downloads" / "iemocap", sessions=sessions, per_dialog=per_dialog)
    data = home / "data" / "iemocap"
    data.mkdir(parents=True)
    (data / "label_map.json").write_text(json.dumps(EMOBOX_LABEL_MAP, indent=4))
    kept = sorted(utt for utt, facts in corpus.expected.items() if facts["label"] in KEPT)

    def line(utt: str) -> str:
        seconds = corpus.expected[utt]["duration_s"]
        return json.dumps(
            {
                "key": f"iemocap-{utt}",
                "dataset": "iemocap",
                "wav": _relative(corpus.wavs[utt], home),
                "type": "raw",
                "sample_rate": 16000,
                "num_frame": float(seconds * 16000),
                "task": "category",
                "length": seconds,
                "emo": corpus.expected[utt]["label"],
                "channel": 1,
            }
        )

    (data / "iemocap.jsonl").write_text("".join(line(utt) + "\n" for utt in kept))
    fixture = SplitFixture(root=data, audio_root=home, corpus=corpus)
    for fold, session in enumerate(sessions, start=1):
        folder = data / f"fold_{fold}"
        folder.mkdir()
        splits = {
            "train": [u for u in kept if _session(u) != session],
            "test": [u for u in kept if _session(u) == session],
        }
        for split, utts in splits.items():
            path = folder / f"iemocap_{split}_fold_{fold}.jsonl"
            path.write_text("".join(line(utt) + "\n" for utt in utts))
            fixture.files[(fold, split)] = path
        fixture.folds[fold] = {split: set(utts) for split, utts in splits.items()}
    return fixture


def build_s3prl(home: Path, *, sessions=(1, 2, 3), per_dialog: int = 4) -> SplitFixture:
    """``home/IEMOCAP_full_release`` and ``home/meta_data/Session<k>``, as s3prl's preprocessing
    writes them: exc relabelled hap, fru and xxx left out, ``speaker`` the dialog's prefix."""
    corpus = build_fake_iemocap(home / "IEMOCAP_full_release", sessions=sessions, per_dialog=per_dialog)
    kept = sorted(utt for utt, facts in corpus.expected.items() if facts["label"] in KEPT)
    labels = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
    fixture = SplitFixture(root=home / "meta_data", audio_root=corpus.root, corpus=corpus)
    for session in sessions:
        folder = home / "meta_data" / f"Session{session}"
        folder.mkdir(parents=True)
        splits = {
            "train": [u for u in kept if _session(u) != session],
            "test": [u for u in kept if _session(u) == session],
        }
        for split, utts in splits.items():
            meta = [
                {
                    "path": _relative(corpus.wavs[utt], corpus.root),
                    "label": KEPT[corpus.expected[utt]["label"]],
                    "speaker": utt.split("_")[0],  # s3prl's field: the dialog's, not the speaker's
                }
                for utt in utts
            ]
            path = folder / f"{split}_meta_data.json"
            path.write_text(json.dumps({"labels": labels, "meta_data": meta}))
            fixture.files[(session, split)] = path
        fixture.folds[session] = {split: set(utts) for split, utts in splits.items()}
    return fixture


def build_speechbrain(home: Path, *, test_session: int = 3, per_dialog: int = 4) -> SplitFixture:
    """One fold as SpeechBrain's IEMOCAP recipe writes it (``different_speakers``): test = one
    session's female speaker, valid = its male speaker, train = the other sessions; ``wav`` with
    the ``{data_root}`` placeholder, JSON indented."""
    corpus = build_fake_iemocap(home / "IEMOCAP_full_release", sessions=(1, 2, 3), per_dialog=per_dialog)
    kept = sorted(utt for utt, facts in corpus.expected.items() if facts["label"] in KEPT)
    speaker = {utt: corpus.expected[utt]["speaker"] for utt in kept}
    splits = {
        "train": [u for u in kept if _session(u) != test_session],
        "valid": [u for u in kept if speaker[u] == f"Ses{test_session:02d}M"],
        "test": [u for u in kept if speaker[u] == f"Ses{test_session:02d}F"],
    }
    folder = home / "speechbrain"
    folder.mkdir()
    fixture = SplitFixture(root=folder, audio_root=corpus.root, corpus=corpus)
    for split, utts in splits.items():
        content = {
            utt: {
                "wav": "{data_root}/" + _relative(corpus.wavs[utt], corpus.root),
                "length": corpus.expected[utt]["duration_s"],
                "emo": KEPT[corpus.expected[utt]["label"]],
            }
            for utt in utts
        }
        path = folder / f"{split}.json"
        path.write_text(json.dumps(content, indent=2))
        fixture.files[(1, split)] = path
    fixture.folds[1] = {split: set(utts) for split, utts in splits.items()}
    return fixture
