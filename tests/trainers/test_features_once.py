"""A node's features are computed once, under a lock: a second caller waits, then reuses them."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from filelock import FileLock

from conftest import _tone
from trainers.features import extract_features_once
from trainers.features.node import features_lock_path

PRESET = "logmel-32"


def tiny_manifest(root: Path, n: int = 4) -> pd.DataFrame:
    rows = []
    for i in range(n):
        path = root / f"u{i}.wav"
        sf.write(path, _tone(0.5, seed=i), 16000)
        rows.append({"utt_id": f"u{i}", "path": str(path)})
    return pd.DataFrame(rows)


def test_a_second_caller_waits_for_the_lock_then_reuses_everything(tmp_path):
    manifest, cache = tiny_manifest(tmp_path), tmp_path / "cache"
    results = {}

    def call(name: str) -> None:
        results[name] = extract_features_once(manifest, preset=PRESET, cache_dir=cache, workers=2)

    lock = FileLock(str(features_lock_path(cache, PRESET)))
    features_lock_path(cache, PRESET).parent.mkdir(parents=True, exist_ok=True)
    with lock:  # another trial of this node is extracting
        first = threading.Thread(target=call, args=("first",))
        first.start()
        first.join(timeout=1.0)
        assert first.is_alive() and "first" not in results  # it cannot pass the held lock
    first.join()
    assert results["first"].computed == 4 and results["first"].ok
    call("second")
    assert results["second"].computed == 0 and results["second"].reused == 4


def test_unreadable_audio_names_the_node(tmp_path):
    manifest = pd.DataFrame([{"utt_id": "gone", "path": str(tmp_path / "gone.wav")}])
    with pytest.raises(ValueError, match="could not be turned into features on node n1 .*same path"):
        extract_features_once(manifest, preset=PRESET, cache_dir=tmp_path / "cache", where="node n1")
