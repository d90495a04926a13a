"""Cross-eval rows on the leaderboard: stage tags, the cross_eval view, search views untouched, v1 files."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_leaderboard_row
from orchestrator.leaderboard import SCHEMA, connect, cross_eval_summary, write_fold_row
from orchestrator.leaderboard.cross_eval import wilcoxon_vs_baseline
from orchestrator.leaderboard.schema import ADDED_COLUMNS, RENAMED_COLUMNS
from orchestrator.leaderboard.validation import validate_fold_row
from orchestrator.selection import nested_estimates

pytest.importorskip("scipy")

SEARCH = [  # (trial, fold, genotype_hash, valid_ua, ua)
    ("s1", 1, "aaaaaaaaaaaa", 0.60, 0.50),
    ("s2", 2, "bbbbbbbbbbbb", 0.70, 0.40),
    ("s3", 3, "aaaaaaaaaaaa", 0.50, 0.45),
]
CROSS = {  # genotype -> per fold (valid_ua, ua, seen); seed 0
    "aaaaaaaaaaaa": [(0.55, 0.50, False), (0.65, 0.60, True), (0.75, 0.70, False)],
    "bbbbbbbbbbbb": [(0.60, 0.30, True), (0.60, 0.40, False)],  # folds 1-2 only
    "baseline": [(0.50, 0.45, None), (0.50, 0.50, None), (0.50, 0.50, None)],
}


def _search_rows(storage: Path) -> None:
    for trial, fold, genotype, valid, ua in SEARCH:
        write_fold_row(
            storage, make_leaderboard_row(trial_id=trial, fold=fold, genotype_hash=genotype, valid_ua=valid, test_ua=ua)
        )


def _cross_rows(storage: Path, *, seeds=(0,)) -> None:
    for genotype, folds in CROSS.items():
        for seed in seeds:
            for fold, (valid, ua, seen) in enumerate(folds, start=1):
                source = {} if genotype == "baseline" else {"source_trial_id": "s1", "source_fold": 1}
                write_fold_row(
                    storage,
                    make_leaderboard_row(
                        trial_id=f"x-{genotype[:4]}-{seed}",
                        stage="cross-eval",
                        fold=fold,
                        seed=seed,
                        genotype_hash=genotype,
                        valid_ua=valid,
                        test_ua=ua,
                        test_seen_in_search=seen,
                        params=1000 if genotype == "baseline" else 500,
                        **source,
                    ),
                )


def test_rows_carry_their_stage_and_search_views_ignore_cross_eval_rows(tmp_path: Path) -> None:
    _search_rows(tmp_path)
    with connect(tmp_path) as board:
        genotypes_before = board.summary("genotype")
        trials_before = board.summary("trial")
        nested_before = nested_estimates(board)["exp"]
    _cross_rows(tmp_path)
    with connect(tmp_path) as board:
        stages = board.sql("SELECT stage, count(*) AS n FROM runs GROUP BY stage ORDER BY stage")
        assert stages.to_dict("records") == [{"stage": "cross-eval", "n": 8}, {"stage": "search", "n": 3}]
        pd.testing.assert_frame_equal(board.summary("genotype"), genotypes_before)  # (floats: DuckDB sums in any order)
        pd.testing.assert_frame_equal(board.summary("trial"), trials_before)
        assert nested_estimates(board)["exp"] == nested_before
        assert len(board.sql("SELECT * FROM config_scores")) == 1


def test_the_cross_eval_view_against_hand_computed_values(tmp_path: Path) -> None:
    _search_rows(tmp_path)
    _cross_rows(tmp_path)
    with connect(tmp_path) as board:
        table = cross_eval_summary(board).set_index("genotype_hash")
    # ranked by mean validation UA, complete entries first: a (0.65), baseline (0.50), then b (2 of 3 folds)
    assert table["rank"].to_dict() == {"aaaaaaaaaaaa": 1, "baseline": 2, "bbbbbbbbbbbb": 3}
    a = table.loc["aaaaaaaaaaaa"]
    assert a["mean_test_ua"] == pytest.approx(0.60) and a["std_test_ua"] == pytest.approx(0.10)
    assert a["mean_valid_ua"] == pytest.approx(0.65) and a["std_valid_ua"] == pytest.approx(0.10)
    assert (a["folds_covered"], a["n_folds"], a["complete"], a["seeds"], a["seen_folds"]) == (3, 3, True, 1, 1)
    assert a["mean_params"] == 500 and a["source_trial_id"] == "s1" and a["source_fold"] == 1
    assert a["baseline_pairs"] == 3
    assert a["mean_diff_vs_baseline"] == pytest.approx((0.05 + 0.10 + 0.20) / 3)
    assert a["wilcoxon_p"] == pytest.approx(0.25)  # 3 positive differences: exact two-sided 2 / 2**3
    b = table.loc["bbbbbbbbbbbb"]
    assert (b["folds_covered"], b["complete"], b["baseline_pairs"]) == (2, False, 2)
    assert b["mean_diff_vs_baseline"] == pytest.approx((-0.15 - 0.10) / 2)
    assert b["wilcoxon_p"] == pytest.approx(0.5)  # 2 negative differences: 2 / 2**2
    base = table.loc["baseline"]
    assert base["seen_folds"] == 0 and math.isnan(base["wilcoxon_p"]) and base["wilcoxon_note"] == "the baseline"
    assert base["baseline_pairs"] == 0 and math.isnan(base["mean_diff_vs_baseline"])


def test_a_rerun_pair_counts_once_and_seeds_pair_with_the_baselines(tmp_path: Path) -> None:
    _cross_rows(tmp_path, seeds=(0, 1))
    _cross_rows(tmp_path, seeds=(0,))  # the same trial ids and (fold, seed): a rerun replaces, never adds
    with connect(tmp_path) as board:
        a = cross_eval_summary(board, experiment="exp").set_index("genotype_hash").loc["aaaaaaaaaaaa"]
    assert (a["pairs"], a["seeds"], a["baseline_pairs"]) == (6, 2, 6)
    assert a["mean_test_ua"] == pytest.approx(0.60)


def test_seeds_of_a_fold_are_one_observation_in_the_wilcoxon_test(tmp_path: Path) -> None:
    """Seeds share their fold's test speakers: pairing (fold, seed) would count 6 observations."""
    _cross_rows(tmp_path, seeds=(0, 1))
    with connect(tmp_path) as board:
        a = cross_eval_summary(board, experiment="exp").set_index("genotype_hash").loc["aaaaaaaaaaaa"]
    assert a["wilcoxon_note"] == "n=3" and a["wilcoxon_p"] == pytest.approx(0.25)


def _cross_predictions(storage: Path, *, right_of: dict[str, int]) -> None:
    """Test predictions of every cross-eval run of ``CROSS`` (seed 0): per fold 8 utterances of 2
    speakers, two per class; a genotype is right on the first ``right_of[genotype]`` of each
    speaker's 4 (one per class)."""
    from orchestrator.leaderboard import write_predictions

    classes = list(make_leaderboard_row()["classes"])
    for genotype, folds in CROSS.items():
        for fold in range(1, len(folds) + 1):
            utterances = [f"f{fold}-u{i}" for i in range(8)]
            labels = [classes[(i // 2) % 4] for i in range(8)]
            right = [(i // 2) < right_of[genotype] for i in range(8)]
            predicted = [label if ok else classes[(classes.index(label) + 1) % 4] for label, ok in zip(labels, right)]
            frame = pd.DataFrame(
                {
                    "split": "test",
                    "utt_id": utterances,
                    "speaker": [f"f{fold}-s{i % 2}" for i in range(8)],
                    "label": labels,
                    "predicted": predicted,
                    "probabilities": [[0.25] * 4] * 8,
                }
            )
            write_predictions(
                storage,
                frame,
                experiment="exp",
                stage="cross-eval",
                trial_id=f"x-{genotype[:4]}-0",
                fold=fold,
                attempt=make_leaderboard_row()["attempt"],
            )


def test_speaker_level_figures_from_the_predictions_with_holm_over_the_genotypes(tmp_path: Path) -> None:
    _cross_rows(tmp_path)
    _cross_predictions(tmp_path, right_of={"aaaaaaaaaaaa": 4, "bbbbbbbbbbbb": 1, "baseline": 2})
    with connect(tmp_path) as board:
        table = cross_eval_summary(board).set_index("genotype_hash")
    a, b, base = table.loc["aaaaaaaaaaaa"], table.loc["bbbbbbbbbbbb"], table.loc["baseline"]
    assert (a["pooled_test_ua"], base["pooled_test_ua"], b["pooled_test_ua"]) == pytest.approx((1.0, 0.5, 0.25))
    assert a["pooled_test_ua_low"] <= 1.0 <= a["pooled_test_ua_high"] and a["test_speakers"] == 6
    assert a["diff_vs_baseline"] == pytest.approx(0.5) and 0 < a["diff_low"] <= a["diff_high"]
    # Better on each of 6 speakers: only no swap and the full swap are as extreme, 2 of 2^6.
    assert a["speaker_p"] == pytest.approx(2 / 64) and a["speaker_note"] == "exact, 2^6 swaps"
    # b shares folds 1-2 (4 speakers) with the baseline and is worse on each: 2 of 2^4.
    assert b["diff_vs_baseline"] == pytest.approx(-0.25) and b["speaker_p"] == pytest.approx(2 / 16)
    assert (a["speaker_p_holm"], b["speaker_p_holm"]) == pytest.approx((2 * 2 / 64, 2 / 16))
    assert base["speaker_note"] == "the baseline" and math.isnan(base["speaker_p"])


def test_entries_without_predictions_say_so(tmp_path: Path) -> None:
    _cross_rows(tmp_path)
    with connect(tmp_path) as board:
        table = cross_eval_summary(board)
    assert set(table["speaker_note"]) == {"no stored predictions"} and table["pooled_test_ua"].isna().all()


def test_wilcoxon_says_why_there_is_no_p_value() -> None:
    assert wilcoxon_vs_baseline([0.5], [0.4]) == (None, "n/a: <2 pairs")
    assert wilcoxon_vs_baseline([0.5, 0.6], [0.5, 0.6]) == (None, "n/a: all differences zero")
    p, note = wilcoxon_vs_baseline([0.5, 0.6, 0.7, 0.8, 0.9], [0.4, 0.5, 0.5, 0.6, 0.6])
    assert p == pytest.approx(0.0625) and note == "n=5"


def _write_version_1_row(storage: Path, trial_id: str, fold: int) -> None:
    """A row as schema version 1 wrote it: no stage and no source columns, test UA under its old name ``ua``."""
    row = {**validate_fold_row(make_leaderboard_row(trial_id=trial_id, fold=fold)), "schema_version": 1}
    former = {new: old for old, new in RENAMED_COLUMNS.items()}
    old = pa.schema(
        [f.with_name(former.get(f.name, f.name)) for f in SCHEMA if f.name not in ADDED_COLUMNS],
        metadata={b"sernas.leaderboard.schema_version": b"1"},
    )
    folder = storage / "leaderboard" / "exp" / trial_id
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(
        [{former.get(name, name): row[name] for name in SCHEMA.names if name not in ADDED_COLUMNS}], schema=old
    )
    pq.write_table(table, folder / f"fold={fold}-attempt=0.parquet")


def test_version_1_files_read_as_search_rows(tmp_path: Path) -> None:
    _write_version_1_row(tmp_path / "only-old", "old", 1)
    with connect(tmp_path / "only-old") as board:  # only version-1 files: the new columns exist all the same
        assert board.damaged == ()
        assert board.sql("SELECT stage, source_fold FROM runs").to_dict("records") == [
            {"stage": "search", "source_fold": None}
        ]
    write_fold_row(tmp_path / "mixed", make_leaderboard_row(trial_id="new", fold=2))
    _write_version_1_row(tmp_path / "mixed", "old", 1)
    with connect(tmp_path / "mixed") as board:
        assert board.damaged == ()
        runs = board.sql("SELECT trial_id, schema_version, stage FROM runs ORDER BY trial_id")
        assert runs["stage"].tolist() == ["search", "search"] and runs["schema_version"].tolist() == [4, 1]
        assert board.summary("genotype")["folds_covered"].tolist() == [2]


def test_a_search_row_must_not_name_a_source() -> None:
    with pytest.raises(ValueError, match="column 'test_seen_in_search' must be null in a search row"):
        write_fold_row("/nonexistent", make_leaderboard_row(test_seen_in_search=True))


def test_version_2_rows_read_with_null_outer_and_inner_folds(tmp_path: Path) -> None:
    """Rows written before nested selection lack outer_fold/inner_fold: they read as null, and the
    runs view keeps one row per (trial, fold) as before."""
    _write_version_1_row(tmp_path, "old", 1)
    write_fold_row(tmp_path, make_leaderboard_row(trial_id="new", fold=1, outer_fold=1, inner_fold=1, n_inner_folds=2))
    write_fold_row(tmp_path, make_leaderboard_row(trial_id="new", fold=1, outer_fold=1, inner_fold=2, n_inner_folds=2))
    with connect(tmp_path) as board:
        rows = board.sql("SELECT trial_id, outer_fold, inner_fold FROM runs ORDER BY trial_id, inner_fold")
    assert rows.to_dict("records") == [
        {"trial_id": "new", "outer_fold": 1, "inner_fold": 1},
        {"trial_id": "new", "outer_fold": 1, "inner_fold": 2},
        {"trial_id": "old", "outer_fold": None, "inner_fold": None},
    ]


def test_the_verdict_places_a_searched_genotype_among_the_random_controls(tmp_path: Path) -> None:
    """Hand-computed: the searched genotype (mean test UA 0.70) beats 3 of 4 random controls."""
    from orchestrator.leaderboard import BASELINE, search_verdicts

    runs = {
        "aaaaaaaaaaaa": ([0.6, 0.7, 0.8], None),
        "r00000000001": ([0.5, 0.5, 0.5], "random"),
        "r00000000002": ([0.55, 0.55, 0.55], "random"),
        "r00000000003": ([0.9, 0.9, 0.9], "random"),
        "r00000000004": ([0.4, 0.4, 0.4], "random"),
    }
    for genotype, (uas, control) in runs.items():
        for fold, ua in enumerate(uas, start=1):
            write_fold_row(
                tmp_path,
                make_leaderboard_row(
                    trial_id=f"x-{genotype}",
                    stage="cross-eval",
                    fold=fold,
                    genotype_hash=genotype,
                    test_ua=ua,
                    control=control,
                    **({} if control else {"source_trial_id": "s1", "source_fold": 1}),
                ),
            )
    with connect(tmp_path) as board:
        table = cross_eval_summary(board)
        (verdict,) = search_verdicts(board, table, baseline=BASELINE)
    assert table.set_index("genotype_hash")["random_control"].to_dict() == {
        genotype: control == "random" for genotype, (_, control) in runs.items()
    }
    assert (verdict.genotype_hash, verdict.random_controls, verdict.beaten, verdict.rank) == ("aaaaaaaaaaaa", 4, 3, 2)
    assert verdict.percentile == pytest.approx(75.0) and verdict.random_mean_test_ua == pytest.approx(0.5875)
    assert verdict.relative_improvement == pytest.approx(100 * (0.70 - 0.5875) / 0.5875)
    assert verdict.folds_p == pytest.approx(1 / 8)  # 3 folds above the random mean: one-sided exact
    assert verdict.vs_random is None and verdict.vs_baseline is None  # no predictions stored here
    assert verdict.line().startswith("the search beat 3 of 4 random cells with aaaaaaaaaaaa (rank 2, percentile 75")


def test_supernet_ranking_is_kendall_tau_of_the_searches_scores_against_the_controls_validation_ua(
    tmp_path: Path,
) -> None:
    """Hand-computed: fold 1's two supernets (averaged) agree with validation on the order of 4 controls
    but one pair (tau 4/6); fold 2 ranks 3 controls exactly backwards (tau -1); fold 3 has too few."""
    from scipy.stats import kendalltau

    from orchestrator.leaderboard import supernet_rankings

    searches = {  # (trial, outer fold, inner fold) -> control hash -> shared-weight UA on the alpha speakers
        ("s1", 1, 1): {"c1": 0.1, "c2": 0.3, "c3": 0.5, "c4": 0.6},
        ("s1", 1, 2): {"c1": 0.3, "c2": 0.5, "c3": 0.7, "c4": 0.4},  # means: 0.2, 0.4, 0.6, 0.5
        ("s2", 2, 1): {"c1": 0.9, "c2": 0.5, "c3": 0.1},
        ("s3", 3, 1): {"c1": 0.5, "c2": 0.6},
    }
    for (trial, fold, inner), scores in searches.items():
        write_fold_row(
            tmp_path,
            make_leaderboard_row(
                trial_id=trial, fold=fold, outer_fold=fold, inner_fold=inner, n_inner_folds=2, control_scores=scores
            ),
        )
    standalone = {1: {"c1": 0.56, "c2": 0.55, "c3": 0.70, "c4": 0.60}, 2: {"c1": 0.4, "c2": 0.5, "c3": 0.6}}
    standalone[3] = {"c1": 0.5, "c2": 0.6}
    for fold, uas in standalone.items():
        for control, ua in uas.items():
            for seed, shift in ((0, -0.01), (1, 0.01)):  # seeds average back to ``ua``
                write_fold_row(
                    tmp_path,
                    make_leaderboard_row(
                        trial_id=f"x-{control}-{seed}",
                        stage="cross-eval",
                        fold=fold,
                        seed=seed,
                        genotype_hash=control,
                        valid_ua=ua + shift,
                        control="random",
                    ),
                )
    with connect(tmp_path) as board:
        (ranking,) = supernet_rankings(board).values()
    fold_1 = (5 - 1) / 6  # c1/c2 the one discordant pair of six
    assert kendalltau([0.2, 0.4, 0.6, 0.5], [0.56, 0.55, 0.70, 0.60]).statistic == pytest.approx(fold_1)
    assert ranking.tau_per_fold == pytest.approx({1: fold_1, 2: -1.0})
    assert ranking.controls_per_fold == {1: 4, 2: 3} and ranking.supernets == 4
    assert ranking.mean_tau == pytest.approx((fold_1 - 1.0) / 2)
    assert ranking.text().startswith(f"the supernets ranked the random cells with Kendall tau {ranking.mean_tau:+.2f}")
    assert ranking.to_dict()["tau_per_fold"] == {"1": pytest.approx(fold_1), "2": -1.0}


def test_no_supernet_ranking_without_scored_controls(tmp_path: Path) -> None:
    from orchestrator.leaderboard import supernet_rankings

    write_fold_row(tmp_path, make_leaderboard_row())
    with connect(tmp_path) as board:
        assert supernet_rankings(board) == {}
