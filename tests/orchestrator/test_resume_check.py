"""``--resume`` refuses a run whose config or prepared data changed, naming what changed, before
anything is overwritten; older runs (nothing stored to compare with) resume with a warning."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_experiment_config
from orchestrator.cli import main
from orchestrator.cli.common import UserError
from orchestrator.cli.search import run_search_command
from orchestrator.config import load_config
from orchestrator.experiment import prepare_data, storage_root
from orchestrator.resume_check import (
    ResumeRefused,
    check_prepared_data,
    check_resume,
    table_changes,
    write_data_fingerprint,
)
from orchestrator.storage import CONFIG_FILE, DATA_FINGERPRINT_FILE, FOLDS_FILE, resolve_storage
from trainers.manifest import build_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def prepared(tmp_path) -> Path:
    """The YAML of a tiny synthetic experiment whose data was prepared (as ``sernas search`` does first)."""
    path = write_experiment_config(tmp_path / "exp.yaml", name="resumed")
    prepare_data(load_config(path), progress=False)
    return path


def data_location(path: Path, *overrides: str):
    config = load_config(path, overrides=overrides)
    return config, storage_root(config).experiment_data(config.name)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Each stored file's bytes and modification time: equal snapshots mean nothing was rewritten."""
    return {file.name: (file.read_bytes(), file.stat().st_mtime_ns) for file in sorted(folder.iterdir())}


def test_the_same_config_and_data_resume_and_nothing_is_rewritten(prepared):
    config, data = data_location(prepared, "tune.max_concurrent=1", "description=again")  # resume-safe keys
    stored = snapshot(data.local_path())
    assert sorted(stored) == ["config.yaml", "fingerprint.json", "folds.parquet", "manifest.parquet"]
    assert check_resume(config, data=data) == []
    again = prepare_data(config, progress=False, resume=True)
    assert len(again.folds) > 0 and snapshot(data.local_path()) == stored


def test_an_edited_config_is_refused_naming_each_changed_key(prepared):
    config, data = data_location(prepared, "eval.epochs=3", "search.seed=4", "tune.max_concurrent=1")
    with pytest.raises(ResumeRefused) as refused:
        check_resume(config, data=data)
    message = str(refused.value)
    assert "cannot resume experiment 'resumed'" in message and str(data.local_path() / CONFIG_FILE) in message
    assert "eval.epochs: 2 -> 3; search.seed: 0 -> 4." in message  # only those: max_concurrent may change
    assert "tune.max_concurrent:" not in message


def test_a_changed_corpus_is_refused_naming_what_changed_and_nothing_is_rewritten(prepared):
    labels = prepared.parent / "corpus" / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    text = labels.read_text()
    relabelled = len(re.findall(r"^\[.*\t(Ses01\w+)\tneu\t", text, flags=re.MULTILINE))
    assert relabelled >= 2
    labels.write_text(re.sub(r"^(\[.*\tSes01\w+)\tneu\t", r"\1\tsad\t", text, flags=re.MULTILINE))
    config, data = data_location(prepared)
    stored = snapshot(data.local_path())
    assert check_resume(config, data=data) == []  # the config did not change
    with pytest.raises(ResumeRefused) as refused:
        prepare_data(config, progress=False, resume=True)
    message = str(refused.value)
    assert f"manifest: {relabelled} utterance(s) changed label (e.g. Ses01F_impro01_" in message
    assert f"fold table: {relabelled} utterance(s) changed label (e.g. Ses01F_impro01_" in message
    assert "restore the corpus" in message and snapshot(data.local_path()) == stored


def test_an_older_run_without_stored_config_or_fingerprint_resumes_with_warnings(prepared):
    config, data = data_location(prepared)
    (data.local_path() / CONFIG_FILE).unlink()
    (data.local_path() / DATA_FINGERPRINT_FILE).unlink()
    stored = snapshot(data.local_path())
    warnings = check_resume(load_config(prepared, overrides=["eval.epochs=3"]), data=data)
    assert len(warnings) == 2
    assert f"{data.local_path() / CONFIG_FILE} does not exist" in warnings[0] and "not compared" in warnings[0]
    assert "compared with its stored manifest and fold table only" in warnings[1]
    prepare_data(config, progress=False, resume=True)  # the stored tables are equal: kept as they are
    assert snapshot(data.local_path()) == stored


def test_table_changes_and_a_manifest_the_run_did_not_store(tmp_path):
    manifest = pd.DataFrame(
        {
            "utt_id": [f"u{i}" for i in range(6)],
            "path": [f"/c/u{i}.wav" for i in range(6)],
            "label": ["neu", "sad"] * 3,
            "speaker": ["a", "a", "b", "b", "c", "c"],
            "duration_s": [1.0] * 6,
            "extra": range(6),  # a corpus extra: not compared
        }
    )
    folds = pd.DataFrame(
        {
            "utt_id": manifest["utt_id"],
            "fold": 1,
            "split": ["train", "train", "valid", "valid", "test", "test"],
            "label": manifest["label"],
            "search_role": ["weights", "alphas", None, None, None, None],
        }
    )
    storage = resolve_storage(tmp_path / "runs")
    data = storage.experiment_data("old")
    folder = data.local_path()
    folder.mkdir(parents=True)
    folds.to_parquet(folder / FOLDS_FILE)  # (data.manifest given: no manifest.parquet)
    write_data_fingerprint(folder, manifest=manifest, folds=folds)
    assert check_prepared_data(data, manifest=manifest.assign(extra=0), folds=folds) is True

    grown = pd.concat([manifest, manifest.tail(3).assign(utt_id=["v1", "v2", "v3"])], ignore_index=True)
    moved = folds.assign(split=["train", "valid", "valid", "train", "test", "test"])
    with pytest.raises(ResumeRefused) as refused:
        check_prepared_data(data, manifest=grown, folds=moved)
    message = str(refused.value)
    assert (
        "manifest: its rows changed (6 then, 9 now; the run did not store its manifest, so which is not known)"
    ) in message
    assert "fold table: 2 utterance(s) changed split (e.g. u1, u3)" in message

    assert table_changes(manifest, manifest.drop(index=[0, 1]).assign(label="neu"), columns=("utt_id", "label")) == [
        "2 utterance(s) changed label (e.g. u3, u5)",
        "2 utterance(s) removed (e.g. u0, u1)",
    ]
    assert table_changes(folds, folds.drop(columns="search_role").assign(inner=0)) == [
        "column(s) inner added",
        "column(s) search_role removed",
    ]
    assert json.loads((folder / DATA_FINGERPRINT_FILE).read_text())["manifest"]["columns"] == [
        "utt_id",
        "path",
        "label",
        "speaker",
        "duration_s",
    ]


def test_sernas_search_resume_refuses_an_edited_config_before_ray_starts(prepared, capsys):
    _, data = data_location(prepared)
    stored = snapshot(data.local_path())
    with pytest.raises(UserError, match=r"eval\.epochs: 2 -> 5"):
        run_search_command(prepared, overrides=["eval.epochs=5"], storage=None, address=None, resume=True)
    code = main(["search", "--config", str(prepared), "--set", "eval.epochs=5", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "eval.epochs: 2 -> 5" in err and "Traceback" not in err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    assert snapshot(data.local_path()) == stored


def test_on_an_object_store_the_stored_config_and_data_are_read_through_the_storage(s3_server, tmp_path, monkeypatch):
    import uuid

    monkeypatch.chdir(tmp_path)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    storage = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/runs"
    path = write_experiment_config(tmp_path / "exp.yaml", name="resumed")
    prepared = prepare_data(load_config(path, overrides=[f"tune.storage={storage}"]), progress=False)
    config, data = data_location(path, f"tune.storage={storage}")
    assert not data.is_local and data.is_file(DATA_FINGERPRINT_FILE)
    assert check_resume(config, data=data) == []
    manifest = build_manifest(dataset="iemocap", root=tmp_path / "corpus").frame  # all of it, as prepare_data
    assert check_prepared_data(data, manifest=manifest, folds=prepared.folds) is True
    edited, _ = data_location(path, f"tune.storage={storage}", "eval.epochs=4")
    with pytest.raises(
        ResumeRefused, match=rf"\({re.escape(storage)}/resumed/data/config\.yaml\): eval\.epochs: 2 -> 4\."
    ):
        check_resume(edited, data=data)
    moved = prepared.folds.assign(fold=prepared.folds["fold"].where(prepared.folds.index != 0, 9))
    with pytest.raises(ResumeRefused, match=r"fold table: 1 utterance\(s\) changed fold \(e\.g\. "):
        check_prepared_data(data, manifest=manifest, folds=moved)
