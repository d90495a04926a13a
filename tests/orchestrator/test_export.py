"""sernas export reads the prepared data as cross-eval does: the same classes, the same clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import make_leaderboard_row, write_experiment_config
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.experiment import load_experiment, prepare_data
from orchestrator.export import export_model
from orchestrator.leaderboard import write_fold_row
from trainers.folds import protocol_classes


@pytest.fixture(scope="module")
def prepared_nc(tmp_path_factory) -> tuple[Path, tuple[str, ...]]:
    """A storage with the prepared data of experiment ``nc`` (no ``data.classes``: the protocol's
    classes are the fold table's labels) and the classes ``sernas search`` gave it."""
    folder = tmp_path_factory.mktemp("export")
    path = write_experiment_config(folder / "nc.yaml", name="nc", per_speaker=4)
    path.write_text(path.read_text().replace("  classes: [neu, hap, sad, ang]\n", ""))
    config = load_config(path)
    assert config.data.classes is None
    return Path(config.tune.storage), prepare_data(config, progress=False).classes


@pytest.fixture
def no_config_classes(prepared_nc, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    """A copy of ``prepared_nc``'s storage for one test's leaderboard rows (the feature cache stays shared)."""
    storage, classes = prepared_nc
    copy = shutil.copytree(storage, tmp_path / "runs")
    return str(copy), classes


def _row(storage: str, classes: list[str]) -> None:
    write_fold_row(
        storage,
        make_leaderboard_row(experiment="nc", classes=classes, best_epoch=1, params_json={"weights_lr": 0.05}),
    )


def test_the_class_rule_has_one_owner(no_config_classes) -> None:
    storage, classes = no_config_classes
    _, prepared = load_experiment(storage, "nc", needed_by="cross-eval")  # what cross-eval runs on
    assert prepared.classes == classes == protocol_classes(prepared.folds) == tuple(sorted(classes))
    assert len(classes) > 4  # the decoy labels too: there is no config list to keep them out


def test_export_refuses_a_run_whose_classes_are_not_the_protocols(no_config_classes, tmp_path: Path) -> None:
    storage, classes = no_config_classes
    _row(storage, list(reversed(classes)))  # the same labels, numbered otherwise
    with pytest.raises(ValueError, match=r"has classes \[.*\], but its prepared data .* give \["):
        export_model(storage, out=tmp_path / "m.pt", device=torch.device("cpu"), genotype="baseline")
    assert not (tmp_path / "m.pt").exists()


def test_export_trains_on_the_protocols_classes(no_config_classes, tmp_path: Path, one_torch_thread) -> None:
    storage, classes = no_config_classes
    _row(storage, list(classes))
    out = tmp_path / "m.pt"
    result = export_model(storage, out=out, device=torch.device("cpu"), genotype="baseline", fold=1)
    assert result.fold == 1 and result.epochs == 1
    assert torch.load(out, weights_only=True)["classes"] == list(classes)
    # Fold 1's test speakers were held out: scored once, each utterance's prediction beside the bundle.
    _, prepared = load_experiment(storage, "nc", needed_by="export")
    test = prepared.folds[(prepared.folds["fold"] == 1) & (prepared.folds["split"] == "test")]
    predictions = pd.read_parquet(result.predictions)
    assert result.predictions == tmp_path / "m.predictions.parquet"
    assert sorted(predictions["utt_id"]) == sorted(test["utt_id"]) and set(predictions["split"]) == {"test"}
    assert result.test["n"] == len(test)
    hits = (predictions["label"] == predictions["predicted"]).mean()
    assert result.test["wa"] == pytest.approx(hits)


def test_missing_prepared_data_is_a_clear_error(tmp_path: Path, capsys) -> None:
    write_fold_row(tmp_path, make_leaderboard_row(experiment="gone"))
    arguments = ["--storage", str(tmp_path), "--genotype", "baseline", "--device", "cpu"]
    assert main(["export", *arguments, "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "config.yaml is missing: export needs the prepared data of the experiment 'gone'" in err
    assert "Traceback" not in err
