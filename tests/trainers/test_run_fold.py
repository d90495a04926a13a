"""A fold's work folder resumes only the run it belongs to: same normalisation, preset and utterances."""

from dataclasses import replace

import pytest
import torch

from conftest import make_fold_data
from trainers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainers.fold_data import Split
from trainers.run_fold import RESULT_NAME, run_fold
from trainers.settings import EvalSettings, ModelShape, SearchSettings

CPU = torch.device("cpu")
SHAPE = ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_data():
    return make_fold_data(n_train=24, n_valid=12, n_test=12, normalization=None)  # run_fold normalises


def fold(data, work, *, normalization="train", preset="logmel-32"):
    return run_fold(
        data,
        evaluation=EvalSettings(shape=SHAPE, epochs=1, batch_size=8, normalization=normalization),
        search=SearchSettings(shape=SHAPE, epochs=1, batch_size=8),
        device=CPU,
        work_dir=work,
        preset=preset,
    )


def interrupted_after_the_search(work):
    """What a kill between the search and the evaluation leaves: search.pt only."""
    (work / "eval.pt").unlink()
    (work / RESULT_NAME).unlink()


def test_a_rerun_with_another_normalisation_is_refused_not_resumed(tmp_path):
    data = tiny_data()
    fold(data, tmp_path)
    interrupted_after_the_search(tmp_path)
    before = (tmp_path / "search.pt").read_bytes()
    with pytest.raises(CheckpointError) as refused:
        fold(data, tmp_path, normalization="utterance")
    message = str(refused.value)
    assert f"checkpoint {tmp_path / 'search.pt'} was written for a different run" in message
    assert "normalization is 'train' there but 'utterance' now" in message
    assert (tmp_path / "search.pt").read_bytes() == before and not (tmp_path / "eval.pt").exists()


def test_another_preset_or_other_utterances_are_refused_by_field(tmp_path):
    data = tiny_data()
    fold(data, tmp_path)
    with pytest.raises(CheckpointError, match="preset is 'logmel-32' there but 'paper-mfcc' now"):
        fold(data, tmp_path, preset="paper-mfcc")
    renamed = replace(data.test, utt_ids=("other", *data.test.utt_ids[1:]))
    with pytest.raises(CheckpointError, match=r"utterances\.test is '[0-9a-f]{16}' there but '[0-9a-f]{16}' now"):
        fold(replace(data, test=renamed), tmp_path)
    swapped = ("alphas", *data.train_roles[1:])  # a weight speaker's clip moved to the alpha speakers
    with pytest.raises(CheckpointError, match=r"utterances\.train is"):
        fold(replace(data, train_roles=swapped), tmp_path)
    relabelled = Split(x=data.valid.x, y=data.valid.y.roll(1), utt_ids=data.valid.utt_ids, speakers=data.valid.speakers)
    with pytest.raises(CheckpointError, match=r"utterances\.valid is"):
        fold(replace(data, valid=relabelled), tmp_path)
    assert fold(data, tmp_path).fold == 1  # the same run still resumes


def test_checkpoints_without_the_data_record_resume_as_before(tmp_path):
    data = tiny_data()
    first = fold(data, tmp_path)
    interrupted_after_the_search(tmp_path)
    state = load_checkpoint(tmp_path / "search.pt")
    assert state["data"]["normalization"] == "train" and state["data"]["preset"] == "logmel-32"
    assert set(state["data"]["utterances"]) == {"train", "valid", "test"}
    del state["data"]  # as written before checkpoints recorded their data
    save_checkpoint(state, tmp_path / "search.pt")
    again = fold(data, tmp_path)
    assert again.architecture == first.architecture and again.search_epochs_run == 1


def test_a_test_split_without_a_class_is_flagged_by_name_and_counts_it(tmp_path):
    import json

    data = tiny_data()
    keep = data.test.y != 2  # no test utterance of class c2
    test = Split(
        x=data.test.x[keep],
        y=data.test.y[keep],
        utt_ids=tuple(u for u, k in zip(data.test.utt_ids, keep.tolist()) if k),
        speakers=tuple(s for s, k in zip(data.test.speakers, keep.tolist()) if k),
    )
    result = run_fold(
        replace(data, test=test),
        evaluation=EvalSettings(shape=SHAPE, epochs=1, batch_size=8, normalization="train"),
        architecture="baseline",
        device=CPU,
        work_dir=tmp_path,
    )
    assert result.test_absent_classes == ["c2"] and result.valid_absent_classes == []
    assert result.test_ua <= 2 / 3  # c2 counts as recall 0 among the 3 classes
    assert sum(result.confusion[2]) == 0 and result.test_utterances == 8
    stored = json.loads((tmp_path / RESULT_NAME).read_text())
    assert stored["test_absent_classes"] == ["c2"] and stored["test_ua"] == result.test_ua
