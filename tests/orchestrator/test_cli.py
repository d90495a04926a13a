"""The ``sernas`` command line on real files: exit codes and messages a user sees."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_fold_args
from orchestrator.cli import main


def test_manifest_then_folds_through_the_cli(fake_iemocap, tmp_path, capsys):
    manifest = tmp_path / "m.parquet"
    assert main(["manifest", "--dataset", "iemocap", "--root", str(fake_iemocap.root), "--out", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "utterances per session x label" in out and f"Wrote {len(fake_iemocap.expected)} utterances" in out
    folds = tmp_path / "folds.parquet"
    assert (
        main(
            [
                "folds",
                "--manifest",
                str(manifest),
                "--scheme",
                "loso",
                "--classes",
                "neu,hap,sad,ang",
                "--merge",
                "exc=hap",
                "--valid-speakers",
                "1",  # two sessions of two speakers: 2 test, 1 validation, 1 training speaker per fold
                "--out",
                str(folds),
            ]
        )
        == 0
    )
    table = pd.read_parquet(folds)
    assert set(table["fold"]) == {1, 2} and set(table["label"]) == {"neu", "hap", "sad", "ang"}
    assert "loso folds" in capsys.readouterr().out


def test_bad_corpus_exits_2_with_every_file_listed_and_no_traceback(fake_iemocap, tmp_path, capsys):
    fake_iemocap.wavs["Ses01F_impro01_F000"].write_bytes(b"")
    label_file = fake_iemocap.label_files[1]
    label_file.write_text(label_file.read_text() + "[oops]\n")
    out = tmp_path / "m.parquet"
    code = main(["manifest", "--dataset", "iemocap", "--root", str(fake_iemocap.root), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "Ses01F_impro01_F000.wav: empty file (0 bytes)" in err
    assert f"{label_file.name}:" in err and "[oops]" in err  # rich markup in user text is escaped
    assert "Traceback" not in err


def test_skip_bad_writes_rejects(fake_iemocap, tmp_path):
    fake_iemocap.wavs["Ses01F_impro01_F000"].write_text("not audio")
    out = tmp_path / "m.parquet"
    assert (
        main(["manifest", "--dataset", "iemocap", "--root", str(fake_iemocap.root), "--out", str(out), "--skip-bad"])
        == 0
    )
    assert len(pd.read_csv(tmp_path / "m.rejects.csv")) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["manifest", "--dataset", "iemocap", "--root", "/no/such/root", "--out", "x.parquet"], "does not exist"),
        (["folds", "--manifest", "/no/such.parquet", "--scheme", "loso", "--out", "f.parquet"], "sernas manifest"),
        (["features", "--manifest", "/no/such.parquet", "--out", "x"], None),  # argparse usage error
    ],
)
def test_user_mistakes_exit_2(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse reports unknown options this way
        code = exit_.code
    assert code == 2
    if message:
        assert message in capsys.readouterr().err


def installed_script(name: str = "sernas") -> str | None:
    """The console script ``pip install`` put beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def test_console_script_is_installed():
    script = installed_script()
    assert script is not None, "no `sernas` console script beside the interpreter or on PATH (pip install -e .)"
    result = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for command in ("synth", "folds", "submit", "cluster"):  # the orchestrator's commands and the cluster's
        assert command in result.stdout


@pytest.mark.slow
def test_readme_main_job_on_a_small_synthetic_corpus(tmp_path, capsys):
    """synth -> manifest -> features -> folds, as the README runs it, on 4 speakers."""
    from trainers.features import load_features
    from trainers.manifest import read_manifest

    corpus, manifest, cache, folds = (tmp_path / name for name in ("corpus", "m.parquet", "features", "f.parquet"))
    assert main(["synth", "--out", str(corpus), "--speakers", "4", "--per-speaker", "12"]) == 0
    assert main(["manifest", "--dataset", "iemocap", "--root", str(corpus), "--out", str(manifest)]) == 0
    frame = read_manifest(manifest)
    assert len(frame) == 48 and frame["speaker"].nunique() == 4  # the real reader found every utterance
    assert main(["features", "--manifest", str(manifest), "--cache", str(cache), "--quiet"]) == 0
    assert "48 computed" in capsys.readouterr().out
    assert main(["features", "--manifest", str(manifest), "--cache", str(cache), "--quiet"]) == 0
    assert "0 computed" in capsys.readouterr().out  # the second run computes nothing
    assert load_features(frame, preset="paper-mfcc", cache_dir=cache).shape == (48, 1, 128, 128)
    assert (
        main(
            [
                "folds",
                "--manifest",
                str(manifest),
                "--scheme",
                "loso",
                "--merge",
                "exc=hap",
                "--classes",
                "neu,hap,sad,ang",
                "--valid-speakers",
                "1",
                "--out",
                str(folds),
            ]
        )
        == 0
    )
    assert pd.read_parquet(folds)["fold"].nunique() == 2


@pytest.mark.slow
def test_run_fold_searches_then_evaluates_and_writes_result_json(tiny_prepared, tmp_path, capsys):
    import json

    from search_space import Genotype

    assert main(run_fold_args(tiny_prepared, tmp_path / "fold2")) == 0
    result = json.loads((tmp_path / "fold2" / "result.json").read_text())
    assert Genotype.from_json(result["architecture"]).hash == result["genotype_hash"]
    assert 0.0 <= result["test_ua"] <= 1.0 and result["test_utterances"] == sum(map(sum, result["confusion"]))
    assert result["best_epoch"] in (1, 2) and result["search_epochs_run"] == 1
    out = capsys.readouterr().out
    assert "search epoch   1/1" in out and "eval   epoch   2/2" in out and "test UA" in out
    # The found genotype can be evaluated again by passing the result file.
    assert (
        main(run_fold_args(tiny_prepared, tmp_path / "again", "--genotype", str(tmp_path / "fold2" / "result.json")))
        == 0
    )
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert again["architecture"] == result["architecture"] and again["search_settings"] is None


@pytest.mark.slow
def test_run_fold_in_the_same_folder_with_another_normalisation_is_refused(tiny_prepared, tmp_path, capsys):
    out = tmp_path / "fold2"
    assert main(run_fold_args(tiny_prepared, out, "--normalization", "speaker")) == 0
    capsys.readouterr()
    assert main(run_fold_args(tiny_prepared, out, "--normalization", "utterance")) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {out / 'search.pt'} was written for a different run" in err
    assert "normalization is 'speaker' there but 'utterance' now" in err and "Traceback" not in err


@pytest.mark.slow
def test_run_fold_with_the_baseline_and_bad_options(tiny_prepared, tmp_path, capsys):
    import json

    assert main(run_fold_args(tiny_prepared, tmp_path / "b", "--genotype", "baseline")) == 0
    assert json.loads((tmp_path / "b" / "result.json").read_text())["architecture"] == "baseline"
    assert main(run_fold_args(tiny_prepared, tmp_path / "c", "--genotype", '{"normal": 1}')) == 2
    assert main(run_fold_args(tiny_prepared, tmp_path / "d", "--genotype", "resnet")) == 2
    assert (
        main([*run_fold_args(tiny_prepared, tmp_path / "e")[:-2], "--eval-epochs", "0", "--out", str(tmp_path / "e")])
        == 2
    )
    err = capsys.readouterr().err
    assert "neither a model name" in err and "epochs: Input should be greater than or equal to 1" in err
