"""SSL presets through the CLI and the experiment, on a tiny random encoder (never real weights).

manifest -> features -> folds -> run-fold (search + evaluation) -> export -> predict, and the
weights' errors: exit 2 naming the file, with nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_encoders import save_tiny_weights, tiny_encoder, tiny_preset, write_preset_file

from conftest import make_leaderboard_row, write_experiment_config
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.experiment import prepare_data
from orchestrator.export import export_model
from orchestrator.leaderboard import write_fold_row
from search_space import Genotype

SPEAKERS, PER_SPEAKER = 6, 6


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub cache: the machine's own cache is never looked at."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny encoder's preset file and its weights."""
    preset = tiny_preset(encoder=tiny_encoder(model_type="WavLM"), layers=(1, 2, 3), time_pool=2, max_seconds=2.0)
    return write_preset_file(preset, tmp_path / "tiny.json"), save_tiny_weights(preset.encoder, tmp_path / "w.pt")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    corpus, out = tmp_path / "corpus", tmp_path / "manifest.parquet"
    argv = ["synth", "--out", str(corpus), "--speakers", str(SPEAKERS), "--per-speaker", str(PER_SPEAKER)]
    assert main([*argv, "--seed", "0"]) == 0
    assert main(["manifest", "--dataset", "iemocap", "--root", str(corpus), "--out", str(out)]) == 0
    return out


def _features(manifest: Path, preset: Path, cache: Path, *extra: str) -> int:
    argv = ["features", "--manifest", str(manifest), "--preset", str(preset), "--cache", str(cache)]
    return main([*argv, "--device", "cpu", "--quiet", *extra])


def test_missing_weights_exit_2_naming_the_file_and_write_nothing(manifest, tiny, hub, tmp_path, capsys) -> None:
    preset, _ = tiny
    cache = tmp_path / "cache"
    assert _features(manifest, preset, cache) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(hub / "tiny-wavlm.pt") in err and "https://example.invalid/tiny.pt" in err and "--weights" in err
    assert _features(manifest, preset, cache, "--weights", str(tmp_path / "nowhere.pt")) == 2
    assert str(tmp_path / "nowhere.pt") in " ".join(capsys.readouterr().err.split())
    assert not cache.exists()


def test_broken_weights_exit_2_naming_the_file_and_write_nothing(manifest, tiny, hub, tmp_path, capsys) -> None:
    preset, weights = tiny
    cache = tmp_path / "cache"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(weights.read_bytes()[:1000])
    other = save_tiny_weights(tiny_encoder(model_type="WavLM", dim=32), tmp_path / "other.pt")
    for path, what in ((truncated, "not a readable torch file"), (other, "does not fit encoder")):
        assert _features(manifest, preset, cache, "--weights", str(path)) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert str(path) in err and what in err and "https://example.invalid/tiny.pt" in err
    assert not cache.exists()


def test_an_experiment_checks_the_weights_before_it_writes(tiny, hub, tmp_path) -> None:
    preset, weights = tiny
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(weights.read_bytes()[:1000])
    config = write_experiment_config(tmp_path / "exp.yaml", name="ssl", per_speaker=PER_SPEAKER)
    config.write_text(config.read_text().replace("preset: logmel-32", f"preset: {preset}\n  weights: {truncated}"))
    with pytest.raises(ValueError, match=f"weights file {truncated} .* is not a readable torch file"):
        prepare_data(load_config(config), progress=False)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()
    assert main(["search", "--config", str(config)]) == 2  # before Ray starts or the storage is touched
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_manifest_features_folds_search_export_predict(manifest, tiny, hub, tmp_path, capsys, one_torch_thread):
    preset, weights = tiny
    cache, folds, run = tmp_path / "cache", tmp_path / "folds.parquet", tmp_path / "run"
    assert _features(manifest, preset, cache, "--weights", str(weights)) == 0
    assert "Features tiny-ssl (3, 16, 50)" in capsys.readouterr().out  # 3 layers, 16 features, 2 s at 25 frames/s
    assert _features(manifest, preset, cache, "--weights", str(weights)) == 0
    assert " 0 computed" in capsys.readouterr().out  # cached per (audio content, preset)
    protocol = ["--classes", "neu,hap,sad,ang", "--merge", "exc=hap"]
    assert main(["folds", "--manifest", str(manifest), "--scheme", "loso", *protocol, "--out", str(folds)]) == 0
    small = ["--layers", "3", "--nodes", "2", "--init-channels", "4", "--lstm-hidden", "8", "--ssl-projection", "8"]
    argv = ["run-fold", "--manifest", str(manifest), "--folds", str(folds), "--fold", "1", "--preset", str(preset)]
    argv += ["--weights", str(weights), "--cache", str(cache), "--search-epochs", "1", "--eval-epochs", "2"]
    assert main([*argv, *small, "--batch-size", "16", "--device", "cpu", "--out", str(run)]) == 0
    result = json.loads((run / "result.json").read_text())
    assert 0.0 <= result["test_ua"] <= 1.0 and result["genotype_hash"]
    genotype = Genotype.from_json(result["architecture"])

    # Export the searched genotype through an experiment on the same corpus, features and weights.
    config = write_experiment_config(tmp_path / "exp.yaml", name="ssl", per_speaker=PER_SPEAKER)
    text = config.read_text().replace("preset: logmel-32", f"preset: {preset}\n  weights: {weights}")
    config.write_text(text.replace("  lstm_hidden: 8\n", "  lstm_hidden: 8\n  ssl_projection: 8\n"))
    experiment = load_config(config)
    prepared = prepare_data(experiment, progress=False)
    classes = list(prepared.classes)
    row = make_leaderboard_row(experiment="ssl", classes=classes, best_epoch=1, feature_preset=str(preset))
    row.update(
        genotype=genotype.to_json(),
        genotype_hash=genotype.hash,
        layers=3,
        nodes=2,
        init_channels=4,
        lstm_hidden=8,
        params_json={"weights_lr": 0.05},  # what the space samples; the rest it fixes
    )
    write_fold_row(experiment.tune.storage, row)
    model = tmp_path / "model.pt"
    exported = export_model(str(experiment.tune.storage), out=model, device=torch.device("cpu"), fold=1)
    assert exported.fold == 1 and pd.read_parquet(exported.predictions)["predicted"].isin(classes).all()
    bundle = torch.load(model, weights_only=True)
    assert (
        bundle["preset"]["kind"] == "ssl"
        and bundle["preset"]["weights_sha256"]
        and "weights_path" not in bundle["preset"]
    )
    assert bundle["eval_settings"]["shape"]["ssl_projection"] == 8

    wavs = sorted(str(p) for p in (tmp_path / "corpus").rglob("Ses01F_impro01_F00*.wav"))[:2]
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--weights", str(weights), "--format", "json", *wavs]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [p["error"] for p in predictions] == [None, None]
    assert all(sum(p["probabilities"].values()) == pytest.approx(1.0) for p in predictions)
    # Other weights, or none at all: exit 2 naming the file.
    other = save_tiny_weights(tiny_encoder(model_type="WavLM"), tmp_path / "other.pt", seed=1)
    assert main(["predict", "--model", str(model), "--weights", str(other), *wavs]) == 2
    assert "was made with weights of sha256" in " ".join(capsys.readouterr().err.split())
    assert main(["predict", "--model", str(model), *wavs]) == 2
    assert str(hub / "tiny-wavlm.pt") in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_sernas_search_on_ssl_features(tiny, hub, tmp_path, capsys) -> None:
    """The same through Ray Tune: trials find the weights on their node (data.weights), compute
    nothing more (the driver cached every clip) and search cells on the mixed layers."""
    import ray

    from orchestrator.leaderboard import connect

    preset, weights = tiny
    config = write_experiment_config(tmp_path / "exp.yaml", name="ssl", per_speaker=PER_SPEAKER, samples=1)
    text = config.read_text().replace("preset: logmel-32", f"preset: {preset}\n  weights: {weights}")
    config.write_text(text.replace("  lstm_hidden: 8\n", "  lstm_hidden: 8\n  ssl_projection: 8\n"))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        assert main(["search", "--config", str(config)]) == 0
    finally:
        ray.shutdown()
    assert "2 trials (2 completed, 0 pruned, 0 failed)" in capsys.readouterr().out
    with connect(tmp_path / "runs", experiment="ssl") as board:
        runs = board.sql("SELECT * FROM runs")
    assert len(runs) == 2 and set(runs["status"]) == {"completed"} and runs["genotype"].notna().all()
    assert set(runs["feature_preset"]) == {str(preset)}
