"""``folds.scheme: given`` in an experiment: the search prepares exactly the split files' folds,
and refuses folds that are not speaker-independent unless ``folds.accept_speaker_overlap``."""

import json
import shutil
import textwrap

import pytest
from split_files import build_emobox

from orchestrator.config import ConfigError, load_config
from orchestrator.config.models import SPLIT_FILE_DATASETS
from orchestrator.experiment import prepare_data, storage_root
from trainers.imports import SPLIT_FORMATS


def write_config(path, *, root, audio_root, extra_data: str = "", extra_folds: str = ""):
    path.write_text(
        textwrap.dedent(f"""\
        name: given
        device: cpu
        data:
          dataset: emobox
          root: {root}
          audio_root: {audio_root}
          preset: logmel-32
          cache_dir: {path.parent / "cache"}
          classes: [neu, hap, sad, ang]
          merges: {{exc: hap}}
          {extra_data}
        folds:
          scheme: given
          valid_speakers: 1
          {extra_folds}
        tune:
          storage: {path.parent / "runs"}
        """)
    )
    return path


def test_search_data_are_the_files_folds(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox")
    config = load_config(write_config(tmp_path / "x.yaml", root=emobox.root, audio_root=emobox.audio_root))
    prepared = prepare_data(config, progress=False)
    table = prepared.folds
    for fold, expected in emobox.folds.items():
        assert set(table.loc[(table["fold"] == fold) & (table["split"] == "test"), "utt_id"]) == expected["test"]
        assert set(table.loc[(table["fold"] == fold) & (table["split"] != "test"), "utt_id"]) == expected["train"]
    assert set(table["speaker_check"]) == {"independent"} and prepared.classes == ("neu", "hap", "sad", "ang")


def test_a_fold_sharing_speakers_is_refused_unless_opted_in(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox", sessions=(1, 2))
    # One fold that tests every speaker it trains on (every third utterance of the listing tested),
    # instead of the leave-one-session-out ones.
    listing = (emobox.root / "iemocap.jsonl").read_text().splitlines()
    for number in emobox.folds:
        shutil.rmtree(emobox.root / f"fold_{number}")
    fold = emobox.root / "fold_9"
    fold.mkdir()
    (fold / "iemocap_test_fold_9.jsonl").write_text(
        "".join(line + "\n" for n, line in enumerate(listing) if n % 3 == 0)
    )
    (fold / "iemocap_train_fold_9.jsonl").write_text("".join(line + "\n" for n, line in enumerate(listing) if n % 3))
    path = write_config(tmp_path / "x.yaml", root=emobox.root, audio_root=emobox.audio_root)
    config = load_config(path)
    with pytest.raises(ValueError) as caught:
        prepare_data(config, progress=False)
    message = str(caught.value)
    assert "1 fold(s) are not speaker-independent (fold 9: test speaker(s)" in message
    assert "--set folds.accept_speaker_overlap=true" in message
    assert not storage_root(config).experiment_data(config.name).exists()  # refused before anything is written
    config = load_config(path, overrides=["folds.accept_speaker_overlap=true"])
    prepared = prepare_data(config, progress=False)
    assert set(prepared.folds["speaker_check"]) == {"overlap"}
    rows = prepared.folds
    assert set(rows.loc[rows["split"] == "test", "speaker"]) & set(rows.loc[rows["split"] == "train", "speaker"])


def test_given_folds_need_split_files_and_split_file_options_need_split_files(tmp_path):
    emobox = build_emobox(tmp_path / "EmoBox", sessions=(1, 2))
    path = write_config(tmp_path / "x.yaml", root=emobox.root, audio_root=emobox.audio_root)
    with pytest.raises(ConfigError, match="folds.scheme: given folds come from split files: data.dataset must be"):
        load_config(path, overrides=["data.dataset=iemocap", "data.audio_root=null"])
    with pytest.raises(ConfigError, match="data.audio_root: applies to split files"):
        load_config(path, overrides=["data.dataset=iemocap", "folds.scheme=loso"])
    assert load_config(path, overrides=["folds.scheme=loso"]).folds.scheme == "loso"  # their data, sernas' folds
    assert SPLIT_FILE_DATASETS == SPLIT_FORMATS  # the config's list is the importer's
    json.loads(json.dumps(load_config(path).model_dump(mode="json")))  # (a dumpable config)
