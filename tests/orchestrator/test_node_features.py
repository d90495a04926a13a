"""A trial's node fills its own feature cache, or names itself and the audio it cannot read."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.node_features import CorpusNotOnNodeError, fill_node_cache
from trainers.audio import write_wav


def test_a_node_without_the_corpus_names_itself_and_the_path(tmp_path: Path) -> None:
    here = tmp_path / "corpus" / "a.wav"
    here.parent.mkdir()
    write_wav(here, (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32), 16000)
    elsewhere = tmp_path / "other-node-path" / "b.wav"  # where the manifest says, not on this node
    rows = pd.DataFrame({"utt_id": ["a", "b"], "path": [str(here), str(elsewhere)]})
    with pytest.raises(CorpusNotOnNodeError) as caught:
        fill_node_cache(rows, preset="logmel-32", cache_dir=tmp_path / "cache", node="worker-7 (Ray node abc)")
    message = str(caught.value)
    assert "node worker-7 (Ray node abc) cannot read 1 of 2 audio file(s)" in message
    assert str(elsewhere) in message and "same path on every node" in message
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1  # the readable one was cached all the same
    fill_node_cache(rows.iloc[:1], preset="logmel-32", cache_dir=tmp_path / "cache")  # and suffices alone
