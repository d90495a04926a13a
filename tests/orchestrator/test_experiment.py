"""A real experiment: local Ray (2 CPUs), real Optuna, real Parquet leaderboard, real training."""

import textwrap

import pytest

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


def write_config(path, *, name, pruner="{kind: none}", space_lr="{loguniform: [0.01, 0.1]}", samples=2,
                 searcher="optuna-tpe", folds="null", extra=""):
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        device: cpu
        data:
          dataset: synthetic
          root: {path.parent / 'corpus'}
          synthetic: {{speakers: 4, per_speaker: 16, seed: 0}}
          preset: logmel-32
          cache_dir: {path.parent / 'cache'}
          classes: [neu, hap, sad, ang]
          merges: {{exc: hap}}
        folds: {{scheme: loso, use: {folds}}}
        search: {{epochs: 1, batch_size: 16}}
        eval: {{epochs: 2, batch_size: 16}}
        space:
          layers: 3
          nodes: 2
          init_channels: 4
          lstm_hidden: 8
          weights_lr: {space_lr}
        tune:
          num_samples: {samples}
          max_concurrent: 2
          searcher: {searcher}
          pruner: {pruner}
          resources: {{cpu: 1}}
          storage: {path.parent / 'runs'}
        {extra}"""))
    return path


def test_a_small_experiment_fills_the_leaderboard(ray_cluster, tmp_path, capsys):
    config = write_config(tmp_path / "exp.yaml", name="small")
    assert main(["search", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "2 trials (2 completed, 0 pruned, 0 failed)" in out and "Best trials of small" in out
    with connect(tmp_path / "runs", experiment="small") as board:
        runs = board.sql("SELECT * FROM runs ORDER BY trial_id, fold")
        trials = board.sql("SELECT * FROM trials")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}
    assert runs.groupby("trial_id")["fold"].apply(sorted).tolist() == [[1, 2], [1, 2]]
    assert runs["ua"].between(0, 1).all() and runs["genotype"].notna().all()
    assert (runs["attempt"] == 1).all() and runs["node_id"].str.len().gt(0).all()
    assert set(trials["status"]) == {"completed"}


def test_invalid_config_names_the_key(tmp_path, capsys):
    config = write_config(tmp_path / "bad.yaml", name="bad", extra="  num_sampels: 3")
    assert main(["search", "--config", str(config)]) == 2
    assert "tune.num_sampels" in capsys.readouterr().err
