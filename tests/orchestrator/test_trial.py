"""The trial's leaderboard rows: one FoldRow per fold, finished or failed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest

from orchestrator.leaderboard import write_fold_row
from orchestrator.leaderboard.schema import RESULT_COLUMNS
from orchestrator.trial import _fold_row
from search_space.genotype import Genotype
from trainers.run_fold import FoldResult
from trainers.settings import EvalSettings, ModelShape, SearchSettings, WeightOptimizer

GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1)],
    normal_concat=[2],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
    reduce_concat=[2],
)
INPUTS = SimpleNamespace(
    experiment=SimpleNamespace(
        name="exp",
        data=SimpleNamespace(dataset="synthetic", preset="logmel-32"),
        folds=SimpleNamespace(scheme="loso", inner=3),
    ),
    folds=pd.DataFrame({"fold": [1, 1, 2, 3]}),
    classes=("ang", "hap"),
)
SHAPE = ModelShape(layers=3, nodes=2, init_channels=8, lstm_hidden=16)
SEARCH = SearchSettings(shape=SHAPE, order="first", pc_k=1, weights=WeightOptimizer(lr=0.025), epochs=3)
EVALUATION = EvalSettings(shape=SHAPE, seed=7, epochs=2, widen=2.0, deepen=1)


def _result(architecture: str, genotype_hash: str | None) -> FoldResult:
    return FoldResult(
        fold=2,
        classes=["ang", "hap"],
        architecture=architecture,
        genotype_hash=genotype_hash,
        ua=0.6,
        wa=0.7,
        macro_f1=0.5,
        confusion=[[3, 1], [1, 3]],
        test_utterances=8,
        best_epoch=1,
        valid_ua=0.55,
        params=1000,
        search_seconds=1.5,
        eval_seconds=2.5,
        search_epochs_run=3,
        search_stopped_early=None,
        alpha_entropy=1.25,
        device="cpu",
        search_settings=None,
        eval_settings={},
    )


def _row(result: FoldResult | None, error: str | None):
    return _fold_row(
        INPUTS,
        trial_id="t1",
        attempt=1,
        params={"seed": 7, "layers": 3},
        search=SEARCH,
        evaluation=EVALUATION,
        fold=2,
        inner_fold=2,
        result=result,
        error=error,
        node_id="local",
    )


@pytest.mark.parametrize(
    ("architecture", "genotype_hash", "stored_genotype", "stored_hash"),
    [
        (GENOTYPE.to_json(), GENOTYPE.hash, GENOTYPE.to_json(), GENOTYPE.hash),
        ("baseline", None, None, "baseline"),
    ],
)
def test_a_finished_fold(tmp_path: Path, architecture, genotype_hash, stored_genotype, stored_hash) -> None:
    row = _row(_result(architecture, genotype_hash), None)
    path = write_fold_row(tmp_path, row)
    assert path.endswith("t1/fold=2-inner=2-attempt=1.parquet")
    stored = pq.read_table(path).to_pylist()[0]
    assert (stored["fold"], stored["outer_fold"], stored["inner_fold"], stored["n_inner_folds"]) == (2, 2, 2, 3)
    # The row describes the network that was evaluated (widened and deepened) and the settings that
    # change results, not only the configured shape.
    assert (stored["layers"], stored["init_channels"]) == (3, 8)
    assert (stored["eval_layers"], stored["eval_init_channels"], stored["widen"], stored["deepen"]) == (4, 16, 2.0, 1)
    assert (stored["normalization"], stored["imbalance"], stored["arch_data"]) == (
        "speaker",
        "weighted-loss",
        "train-speakers",
    )
    assert json.loads(stored["primitives"]) == list(SEARCH.primitives)
    assert stored["status"] == "completed" and stored["error"] is None
    assert stored["genotype"] == stored_genotype and stored["genotype_hash"] == stored_hash
    assert stored["n_folds"] == 3 and stored["attempt"] == 1 and stored["seed"] == 7 and stored["node_id"] == "local"
    assert json.loads(stored["confusion"]) == [[3, 1], [1, 3]] and stored["classes"] == '["ang","hap"]'
    assert stored["params_json"] == '{"layers":3,"seed":7}' and stored["weights_lr"] == 0.025
    assert stored["search_stop_reason"] == "epochs" and stored["alpha_entropy"] == 1.25


def test_the_collapse_guard_verdict_and_no_search_reach_the_row(tmp_path: Path) -> None:
    from dataclasses import replace

    collapsed = replace(_result("baseline", None), search_stopped_early="collapsed after epoch 2: normal: skip")
    stored = pq.read_table(write_fold_row(tmp_path, _row(collapsed, None))).to_pylist()[0]
    assert stored["search_stop_reason"] == "collapsed after epoch 2: normal: skip"
    unsearched = replace(_result("baseline", None), search_epochs_run=0, alpha_entropy=None)
    stored = pq.read_table(write_fold_row(tmp_path / "b", _row(unsearched, None))).to_pylist()[0]
    assert stored["search_stop_reason"] is None and stored["alpha_entropy"] is None


def test_a_failed_fold(tmp_path: Path) -> None:
    row = _row(None, "RuntimeError: boom")
    stored = pq.read_table(write_fold_row(tmp_path, row)).to_pylist()[0]
    assert stored["status"] == "failed" and stored["error"] == "RuntimeError: boom"
    assert all(stored[name] is None for name in RESULT_COLUMNS)
    assert stored["layers"] == 3 and stored["fold_scheme"] == "loso"


def test_a_search_trial_runs_its_outer_folds_inner_folds_and_a_cross_eval_trial_every_fold() -> None:
    from orchestrator.trial import Unit, trial_units, unit_table

    speakers = [f"s{i}{g}" for i in range(1, 6) for g in "FM"]
    folds = pd.DataFrame(
        {
            "utt_id": [f"{s}-{k}" for s in speakers for k in range(2)],
            "fold": 1,
            "split": [
                "test" if s.startswith("s1") else "valid" if s.startswith("s2") else "train"
                for s in speakers
                for _ in range(2)
            ],
            "label": ["neu", "ang"] * len(speakers),
            "speaker": [s for s in speakers for _ in range(2)],
            "session": [int(s[1]) for s in speakers for _ in range(2)],
            "search_role": [None if s[:2] in ("s1", "s2") else "weights" for s in speakers for _ in range(2)],
        }
    )
    manifest = folds[["utt_id", "speaker"]].assign(gender=folds["speaker"].str[-1])
    inputs = SimpleNamespace(
        experiment=SimpleNamespace(folds=SimpleNamespace(inner=3, arch_share=0.5, seed=0)),
        folds=folds,
        manifest=manifest,
    )
    assert trial_units(inputs, outer_fold=1) == [Unit(1, 1), Unit(1, 2), Unit(1, 3)]
    assert trial_units(inputs, outer_fold=None) == [Unit(1)]
    assert unit_table(inputs, Unit(1)) is not None and unit_table(inputs, Unit(1)).equals(folds)
    tables = [unit_table(inputs, unit) for unit in trial_units(inputs, outer_fold=1)]
    valid = [set(table.loc[table["split"] == "valid", "speaker"]) for table in tables]
    assert set().union(*valid) == {
        s for s in speakers if not s.startswith("s1")
    }  # every non-test speaker validates once
    assert all(set(table.loc[table["split"] == "test", "speaker"]) == {"s1F", "s1M"} for table in tables)
    inputs.experiment.folds.inner = None
    assert trial_units(inputs, outer_fold=1) == [Unit(1)]
