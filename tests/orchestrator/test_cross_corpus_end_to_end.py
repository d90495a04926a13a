"""Cross-corpus end to end through ``sernas search`` and ``sernas cross-eval`` (local Ray, real
training): two built-in synthetic corpora generated with different seeds under different names,
``source`` trains and validates, ``target`` tests. Their utterance ids and speaker names coincide
(both are IEMOCAP-shaped), which the combined manifest must keep apart."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.cli import main
from orchestrator.leaderboard import connect
from orchestrator.report import write_report
from orchestrator.selection import nested_estimates
from orchestrator.storage import FOLDS_FILE, MANIFEST_FILE
from trainers.folds import read_folds
from trainers.manifest import manifest_info, read_manifest

pytestmark = pytest.mark.slow

CLASSES = ["neu", "hap", "sad", "ang"]


def _config(path: Path) -> Path:
    path.write_text(
        textwrap.dedent(f"""\
        name: cc
        device: cpu
        data:
          preset: logmel-32
          cache_dir: {path.parent / "cache"}
          classes: {json.dumps(CLASSES)}
          sources:
            - name: source
              dataset: synthetic
              root: {path.parent / "source"}
              synthetic: {{speakers: 6, per_speaker: 12, seed: 0}}
              merges: {{exc: hap}}
            - name: target
              dataset: synthetic
              root: {path.parent / "target"}
              synthetic: {{speakers: 6, per_speaker: 12, seed: 1}}
              merges: {{}}
        folds: {{scheme: cross-corpus, test_corpora: [target], inner: 2, valid_speakers: 2}}
        search: {{epochs: 1, batch_size: 16, weights: {{lr_min: 0.0}}}}
        eval: {{epochs: 2, batch_size: 16, weights: {{lr_min: 0.0}}}}
        space:
          layers: 3
          nodes: 2
          init_channels: 4
          lstm_hidden: 8
          weights_lr: {{loguniform: [0.01, 0.1]}}
          seed: 0
        tune:
          num_samples: 2
          max_concurrent: 2
          searcher: optuna-tpe
          pruner: {{kind: none}}
          resources: {{cpu: 1}}
          storage: {path.parent / "runs"}
        """)
    )
    return path


def _corpus(values: pd.Series) -> set[str]:
    return set(values.astype(str).str.split("/").str[0])


def test_train_on_one_synthetic_corpus_test_on_another(local_ray, one_torch_thread, tmp_path: Path, capsys) -> None:
    config = _config(tmp_path / "cc.yaml")
    storage = tmp_path / "runs"
    assert main(["search", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    print(out)  # the figures, for whoever reads the log
    assert "fold 1 source->target: train " in out
    assert "classes of source: neu = neu" in out and "hap = hap+exc" in out
    assert "classes of target: " in out and "hap = hap (" in out  # target's exc is nobody's class: left out

    # The folds: test speakers all from the target corpus, training and validation all from the source.
    data = storage / "cc" / "data"
    folds, _ = read_folds(data / FOLDS_FILE)
    manifest = read_manifest(data / MANIFEST_FILE)
    assert manifest_info(data / MANIFEST_FILE)["sources"].keys() == {"source", "target"}
    assert sorted(folds["fold"].unique()) == [1]
    assert _corpus(folds.loc[folds["split"] == "test", "speaker"]) == {"target"}
    assert _corpus(folds.loc[folds["split"] != "test", "speaker"]) == {"source"}
    assert folds.loc[folds["split"] == "test", "speaker"].nunique() == 6
    assert folds.loc[folds["split"] == "valid", "speaker"].nunique() == 2
    assert set(folds["speaker_check"]) == {"independent"}
    # Both corpora use the same ids and speaker names; the combined manifest keeps them apart.
    assert manifest["utt_id"].is_unique
    assert set(manifest.loc[manifest["dataset"] == "source", "corpus_utt_id"]) & set(
        manifest.loc[manifest["dataset"] == "target", "corpus_utt_id"]
    )
    # The class mapping, per corpus: source's exc became hap, target's exc was left out.
    raw = folds.merge(manifest[["utt_id", "label", "dataset"]].rename(columns={"label": "raw"}), on="utt_id")
    assert set(raw.loc[(raw["dataset"] == "source") & (raw["raw"] == "exc"), "label"]) == {"hap"}
    assert "exc" not in set(raw.loc[raw["dataset"] == "target", "raw"])
    target_kept = manifest[(manifest["dataset"] == "target") & manifest["label"].isin(CLASSES)]
    assert (folds["split"] == "test").sum() == len(target_kept)

    with connect(storage, experiment="cc") as board:
        rows = board.sql("SELECT * FROM runs WHERE stage = 'search'")
        valid = board.sql("SELECT DISTINCT speaker FROM predictions WHERE stage = 'search' AND split = 'valid'")
        test = board.sql("SELECT DISTINCT utt_id, speaker FROM predictions WHERE stage = 'search' AND split = 'test'")
        estimate = nested_estimates(board)["cc"]
    # Two trials of the one outer fold, each over 2 inner folds made of the source's speakers only.
    assert len(rows) == 4 and set(rows["status"]) == {"completed"} and set(rows["inner_fold"]) == {1, 2}
    assert set(rows["dataset"]) == {"source->target"} and set(rows["fold_scheme"]) == {"cross-corpus"}
    assert set(rows["speaker_check"]) == {"independent"} and set(rows["n_folds"]) == {1}
    assert _corpus(valid["speaker"]) == {"source"} and valid["speaker"].nunique() == 6  # 3 per inner fold
    assert _corpus(test["speaker"]) == {"target"} and len(test) == len(target_kept)
    assert (rows["test_utterances"] == len(target_kept)).all()

    # The nested estimate, per test corpus: one outer fold, the one test corpus.
    assert [(pick.fold, pick.dataset, pick.candidates) for pick in estimate.picks] == [(1, "source->target", 2)]
    assert estimate.by_dataset() == {"source->target": estimate.mean_test_ua}
    print(estimate.headline())
    assert "per test corpus: source->target" in estimate.headline()
    page = write_report(storage, experiment="cc", out=tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Per test corpus" in page and "source-&gt;target" in page
    assert "not speaker-independent" not in page

    # Cross-eval: the chosen genotype and the baseline retrained on the fold, scored on the target corpus.
    arguments = ["--storage", str(storage), "--experiment", "cc", "--top", "1", "--genotype", "baseline"]
    assert main(["cross-eval", *arguments]) == 0
    print(capsys.readouterr().out)
    with connect(storage, experiment="cc") as board:
        crossed = board.sql("SELECT * FROM runs WHERE stage = 'cross-eval'")
        crossed_test = board.sql(
            "SELECT DISTINCT speaker FROM predictions WHERE stage = 'cross-eval' AND split = 'test'"
        )
    assert len(crossed) == 2 and set(crossed["status"]) == {"completed"}
    assert set(crossed["dataset"]) == {"source->target"} and set(crossed["speaker_check"]) == {"independent"}
    assert set(crossed["test_seen_in_search"].dropna()) <= {False}  # no search trained on the target corpus
    assert _corpus(crossed_test["speaker"]) == {"target"}
    for row in crossed.itertuples():
        print(f"cross-eval {row.genotype_hash} on fold {row.fold} ({row.dataset}): test UA {row.test_ua:.3f}")
