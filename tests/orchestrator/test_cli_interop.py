"""``sernas manifest --dataset emobox|s3prl|speechbrain`` and ``sernas folds --from/--export`` on
split-file folders the tests write: what a user sees, exit codes, nothing written on bad input."""

import json

import pandas as pd
import pytest
from split_files import build_emobox, build_s3prl

from orchestrator.cli import main


def _import(emobox, tmp_path, *extra: str) -> tuple[int, object, object]:
    manifest, folds = tmp_path / "m.parquet", tmp_path / "f.parquet"
    code = main(
        [
            "manifest",
            "--dataset",
            "emobox",
            "--root",
            str(emobox.root),
            "--audio-root",
            str(emobox.audio_root),
            "--out",
            str(manifest),
            *extra,
        ]
    )
    return code, manifest, folds


def test_emobox_import_export_and_import_again_through_the_cli(tmp_path, capsys):
    emobox = build_emobox(tmp_path / "EmoBox")
    code, manifest, folds = _import(emobox, tmp_path)
    assert code == 0
    out = capsys.readouterr().out
    assert "Speakers from: rule" in out
    argv = [
        "folds",
        "--manifest",
        str(manifest),
        "--from",
        "emobox",
        "--root",
        str(emobox.root),
        "--valid-speakers",
        "1",
    ]
    assert main([*argv, "--classes", "neu,hap,sad,ang", "--out", str(folds)]) == 0
    out = capsys.readouterr().out
    assert "--merge exc=hap" in out  # label_map.json merges exc into Happy; the protocol did not
    assert "emobox folds: utterances per split" in out
    assert main([*argv, "--classes", "neu,hap,sad,ang", "--merge", "exc=hap", "--out", str(folds)]) == 0
    assert "--merge exc=hap" not in capsys.readouterr().out
    table = pd.read_parquet(folds)
    for fold, expected in emobox.folds.items():
        assert set(table.loc[(table["fold"] == fold) & (table["split"] == "test"), "utt_id"]) == expected["test"]
    exported = tmp_path / "out" / "iemocap"
    export = ["folds", "--manifest", str(manifest), "--folds", str(folds), "--export", "emobox", "--out", str(exported)]
    assert main([*export, "--audio-root", str(emobox.audio_root)]) == 0
    assert "as emobox split files" in capsys.readouterr().out
    for fold, expected in emobox.folds.items():
        lines = (exported / f"fold_{fold}" / f"iemocap_test_fold_{fold}.jsonl").read_text().splitlines()
        assert {json.loads(line)["key"].removeprefix("iemocap-") for line in lines} == expected["test"]
    again = tmp_path / "again.parquet"
    argv = ["folds", "--manifest", str(manifest), "--from", "emobox", "--root", str(exported), "--valid-speakers", "1"]
    assert main([*argv, "--classes", "neu,hap,sad,ang", "--merge", "exc=hap", "--out", str(again)]) == 0
    assert pd.read_parquet(again).equals(table)
    s3prl = tmp_path / "meta_data"
    assert (
        main(["folds", "--manifest", str(manifest), "--folds", str(folds), "--export", "s3prl", "--out", str(s3prl)])
        == 0
    )
    assert json.loads((s3prl / "Session2" / "test_meta_data.json").read_text())["labels"] == {
        "neu": 0,
        "hap": 1,
        "sad": 2,
        "ang": 3,
    }


def test_s3prl_import_says_where_the_files_speaker_field_was_overruled(tmp_path, capsys):
    s3prl = build_s3prl(tmp_path)
    manifest = tmp_path / "m.parquet"
    argv = ["manifest", "--dataset", "s3prl", "--root", str(s3prl.root), "--audio-root", str(s3prl.audio_root)]
    assert main([*argv, "--out", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "The files' speaker field differs from the speaker used for" in out and "by the rule" in out


def test_bad_split_files_exit_2_naming_file_and_line_and_write_nothing(tmp_path, capsys):
    emobox = build_emobox(tmp_path / "EmoBox")
    broken = emobox.files[(1, "train")]
    broken.write_text(broken.read_text() + "{not json\n")
    code, manifest, _ = _import(emobox, tmp_path)
    err = capsys.readouterr().err
    lines = len(broken.read_text().splitlines())
    assert code == 2 and not manifest.exists() and "Traceback" not in err
    assert f"{broken.name}:{lines}: line does not parse as JSON" in err.replace("\n", "")


def test_folds_from_files_the_manifest_lacks_exit_2(tmp_path, capsys):
    emobox = build_emobox(tmp_path / "EmoBox")
    code, manifest, folds = _import(emobox, tmp_path)
    assert code == 0
    other = build_emobox(tmp_path / "Other", sessions=(4, 5))
    argv = ["folds", "--manifest", str(manifest), "--from", "emobox", "--root", str(other.root), "--out", str(folds)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is not in the manifest" in err and "no fold table was made" in err and not folds.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["folds", "--manifest", "m.parquet", "--out", "f.parquet"], "give one of --scheme"),
        (
            ["folds", "--manifest", "m.parquet", "--scheme", "loso", "--from", "emobox", "--out", "f"],
            "got --scheme and --from",
        ),
        (["folds", "--manifest", "m.parquet", "--from", "emobox", "--out", "f"], "--root names the folder"),
        (["folds", "--manifest", "m.parquet", "--export", "emobox", "--out", "d"], "give it with --folds"),
        (["manifest", "--dataset", "iemocap", "--root", ".", "--audio-root", ".", "--out", "m"], "audio_root apply to"),
    ],
)
def test_mistaken_folds_and_manifest_options_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_run_fold_refuses_a_fold_whose_test_speakers_train_unless_asked(tmp_path, capsys):
    emobox = build_emobox(tmp_path / "EmoBox", sessions=(1, 2))
    listing = (emobox.root / "iemocap.jsonl").read_text().splitlines()
    for number in emobox.folds:  # one fold testing every third utterance: its speakers also train
        for path in (emobox.root / f"fold_{number}").iterdir():
            path.unlink()
        (emobox.root / f"fold_{number}").rmdir()
    (emobox.root / "fold_1").mkdir()
    (emobox.root / "fold_1" / "iemocap_test_fold_1.jsonl").write_text("\n".join(listing[::3]) + "\n")
    train = [line for n, line in enumerate(listing) if n % 3]
    (emobox.root / "fold_1" / "iemocap_train_fold_1.jsonl").write_text("\n".join(train) + "\n")
    code, manifest, folds = _import(emobox, tmp_path)
    assert code == 0
    argv = ["folds", "--manifest", str(manifest), "--from", "emobox", "--root", str(emobox.root), "--out", str(folds)]
    assert main([*argv, "--valid-speakers", "1"]) == 0
    assert "not speaker-independent" in capsys.readouterr().out
    run = ["run-fold", "--manifest", str(manifest), "--folds", str(folds), "--fold", "1", "--out", str(tmp_path / "r")]
    assert main(run) == 2
    err = capsys.readouterr().err
    assert "fold 1: test speaker(s)" in err and "--accept-speaker-overlap" in err and not (tmp_path / "r").exists()
