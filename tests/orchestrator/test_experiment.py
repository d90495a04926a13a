"""A real experiment: local Ray (2 CPUs), real Optuna, real Parquet leaderboard, real training."""

import json
from pathlib import Path

import pytest

from conftest import write_experiment_config as write_config
from conftest import write_pruning_config
from orchestrator.cli import main
from orchestrator.leaderboard import connect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_a_small_experiment_fills_the_leaderboard(ray_cluster, tmp_path, capsys):
    config = write_config(tmp_path / "exp.yaml", name="small", extra="  checkpoint_every: 2")
    assert main(["search", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "4 trials (4 completed, 0 pruned, 0 failed)" in out and "Best trials of small" in out  # 2 per outer fold
    # tune.checkpoint_every: 2 -> every 2nd epoch report carries a checkpoint, every fold summary does
    for results in (tmp_path / "runs" / "small").glob("*/result.json"):
        reports = [json.loads(line) for line in results.read_text().splitlines()]
        epochs = [r for r in reports if r["report"] == "epoch"]
        assert len(epochs) == 3  # 1 network (its outer fold's validation split) x (1 search + 2 evaluation epochs)
        assert [bool(r.get("checkpoint_dir_name")) for r in epochs] == [False, True, False]
        assert [r["prune_step"] for r in epochs] == [1, 2, 3] and [r["final_step"] for r in epochs][-1]
        assert all(r.get("checkpoint_dir_name") for r in reports if r["report"] == "fold")
    with connect(tmp_path / "runs", experiment="small") as board:
        runs = board.sql("SELECT * FROM runs ORDER BY trial_id, fold")
        trials = board.sql("SELECT * FROM trials")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}
    assert runs.groupby("trial_id")["fold"].nunique().eq(1).all()  # a trial belongs to one outer fold
    assert runs.groupby("fold")["trial_id"].nunique().tolist() == [2, 2] and runs["inner_fold"].isna().all()
    assert runs["test_ua"].between(0, 1).all() and runs["genotype"].notna().all()
    assert (runs["attempt"] == 1).all() and runs["node_id"].str.len().gt(0).all()
    assert set(trials["status"]) == {"completed"}

    # The same rows through `sernas leaderboard`.
    capsys.readouterr()
    assert main(["leaderboard", "--storage", str(tmp_path / "runs"), "--by", "trial", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    ranked = document["rows"]
    assert [entry["rank"] for entry in ranked] == [1, 2, 3, 4] and all(entry["complete"] for entry in ranked)
    by_trial = runs.groupby("trial_id")[["test_ua", "valid_ua"]].mean()
    for entry in ranked:
        assert entry["mean_test_ua"] == pytest.approx(by_trial.loc[entry["trial_id"], "test_ua"])
        assert entry["mean_valid_ua"] == pytest.approx(by_trial.loc[entry["trial_id"], "valid_ua"])
    assert ranked[0]["mean_valid_ua"] >= ranked[1]["mean_valid_ua"]
    # The nested estimate: per outer fold the trial its study would choose (best on validation), scored on test.
    estimate = document["nested_estimate"][runs["experiment"].iloc[0]]
    picks = runs.sort_values(["valid_ua", "trial_id"], ascending=[False, True]).groupby("fold").head(1)
    assert [pick["trial_id"] for pick in estimate["picks"]] == picks.sort_values("fold")["trial_id"].tolist()
    assert estimate["mean_test_ua"] == pytest.approx(picks["test_ua"].mean())
    assert estimate["best_mean_test_ua"] == pytest.approx(runs.groupby("fold")["test_ua"].max().mean())
    assert [pick["candidates"] for pick in estimate["picks"]] == [2, 2]
    assert (
        main(
            [
                "leaderboard",
                "--storage",
                str(tmp_path / "runs"),
                "--sql",
                "SELECT count(*) AS n FROM runs",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == ["n", "4"]
    assert main(["leaderboard", "--storage", str(tmp_path / "runs"), "--sql", "SELEC 1"]) == 2
    assert "query failed" in capsys.readouterr().err

    # The HTML report of the same experiment has every section.
    report = tmp_path / "report.html"
    assert main(["report", "--storage", str(tmp_path / "runs"), "--experiment", "small", "--out", str(report)]) == 0
    html = report.read_text()
    for section in ("ranked", "pareto", "depth-seed", "fold-heatmap", "pruning", "confusion", "cells"):
        assert f'id="{section}"' in html
    assert "data:image/png;base64," in html and oct(report.stat().st_mode & 0o777) != "0o600"

    # Export the best genotype, then predict synthetic WAVs with it (one bad file among them).
    import torch

    model = tmp_path / "model.pt"
    assert (
        main(["export", "--storage", str(tmp_path / "runs"), "--rank", "1", "--device", "cpu", "--out", str(model)])
        == 0
    )
    out = capsys.readouterr().out
    assert "retrained from scratch on every speaker of the protocol" in out and "nested estimate UA" in out
    bundle = torch.load(model, weights_only=True)
    assert bundle["classes"] == ["neu", "hap", "sad", "ang"] and bundle["preset"]["name"] == "logmel-32"
    with connect(tmp_path / "runs", experiment="small") as board:
        chosen = board.summary("genotype").iloc[0]  # rank 1 by validation
    source = bundle["source"]
    assert source["fold"] is None and source["genotype_hash"] == chosen["genotype_hash"]
    chosen_runs = runs[runs["genotype_hash"] == chosen["genotype_hash"]]
    assert bundle["architecture"] == chosen_runs["genotype"].iloc[0]
    assert source["epochs"] == max(1, round(float(chosen_runs.groupby("fold")["best_epoch"].median().median())))
    assert source["nested_estimate"]["n_folds"] == 2 and "maximum" not in json.dumps(source)
    wavs = sorted((tmp_path / "corpus").rglob("Ses01F_impro01_F00*.wav"))[:2]
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert main(["predict", "--model", str(model), "--format", "json", *map(str, wavs), str(bad)]) == 2
    captured = capsys.readouterr()
    predictions = json.loads(captured.out)
    assert [p["error"] is None for p in predictions] == [True, True, False]
    for p in predictions[:2]:
        assert p["label"] in bundle["classes"] and sum(p["probabilities"].values()) == pytest.approx(1.0)
    assert "bad.wav: not a readable audio file" in captured.err


def test_invalid_config_names_the_key(tmp_path, capsys):
    config = write_config(tmp_path / "bad.yaml", name="bad", extra="  num_sampels: 3")
    assert main(["search", "--config", str(config)]) == 2
    assert "tune.num_sampels" in capsys.readouterr().err


def test_prepared_data_holds_every_clip_of_the_folds_speakers_with_features(tmp_path):
    """Speaker statistics read all of a speaker's audio, so the prepared manifest (what trials
    load, cross-eval and export rebuild) keeps the clips the protocol drops, with their features."""
    from orchestrator.config import load_config
    from orchestrator.experiment import prepare_data
    from orchestrator.storage import MANIFEST_FILE
    from trainers.fold_data import fold_speaker_rows, load_fold_data
    from trainers.manifest import read_manifest

    config = load_config(write_config(tmp_path / "exp.yaml", name="prepared"))
    prepared = prepare_data(config, progress=False)
    everything = read_manifest(Path(prepared.data_dir) / MANIFEST_FILE)
    speakers = set(prepared.folds["speaker"])
    assert sorted(prepared.manifest["utt_id"]) == sorted(everything.loc[everything.speaker.isin(speakers), "utt_id"])
    dropped = prepared.manifest[~prepared.manifest["utt_id"].isin(prepared.folds["utt_id"])]
    assert len(dropped) and set(dropped["label"]) <= {"fru", "xxx"}  # exc merges into hap
    table = prepared.folds[prepared.folds["fold"] == 1]
    data = load_fold_data(  # as a trial loads it: the features of the dropped clips are in the cache
        manifest=fold_speaker_rows(prepared.manifest, table),
        folds=table,
        fold=1,
        preset=config.data.preset,
        cache_dir=config.data.cache_dir,
        classes=prepared.classes,
    )
    assert set(data.speaker_stats) == speakers


def test_a_clearly_bad_configuration_is_pruned_early(ray_cluster, tmp_path, capsys):
    """One outer fold whose grid runs the good learning rate first; the frozen one (lr 1e-7) cannot
    learn and its study's median pruner stops it at the first epoch where it falls below the good trial."""
    config = write_pruning_config(tmp_path / "prune.yaml", name="prune")
    assert main(["search", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "1 pruned" in out
    with connect(tmp_path / "runs", experiment="prune") as board:
        trials = board.sql("SELECT * FROM trials").set_index("trial_id")
        runs = board.sql("SELECT trial_id, fold, status, weights_lr FROM runs")
    pruned = trials[trials["status"] == "pruned"]
    reason = pruned["reason"].iloc[0]
    assert len(pruned) == 1 and "MedianPruner at step" in reason and "outer fold 1" in reason, reason
    good = trials[trials["status"] == "completed"].index
    assert len(good) == 1
    # The good trial finished its one network (outer fold 1's validation split); the pruned one
    # was stopped at an epoch of it, so it has no row.
    assert sorted(runs.loc[runs.trial_id == good[0], "fold"]) == [1]
    assert len(runs.loc[runs.trial_id == pruned.index[0]]) == 0
