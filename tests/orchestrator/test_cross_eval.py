"""sernas cross-eval: candidates chosen by validation, the settings they train under and the baseline
each is compared with, the seen-speakers flag, and a real run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_leaderboard_row
from conftest import write_experiment_config as write_config
from orchestrator.candidates import CANDIDATE_KEY, SEED_KEY, Candidate, seen_in_search, settings_from
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.cross_eval import choose_candidates
from orchestrator.leaderboard import connect, cross_eval_summary, supernet_rankings, write_fold_row
from orchestrator.trial import TrialInputs, TrialPlan, plan_trial
from search_space.architecture import architecture_key, parse_architecture

GENOTYPE = (
    '{"normal": [["sep_conv_3x3", 0], ["skip_connect", 1]], "normal_concat": [2], '
    '"reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2]}'
)


def _folds() -> pd.DataFrame:
    """Three LOSO folds over sessions of two speakers: fold k tests session k, validates on the next."""
    rows = []
    for fold in (1, 2, 3):
        for session in (1, 2, 3):
            split = "test" if session == fold else "valid" if session == fold % 3 + 1 else "train"
            for speaker in (f"S{session}F", f"S{session}M"):
                rows.append({"fold": fold, "speaker": speaker, "split": split, "utt_id": f"{speaker}-{fold}"})
    return pd.DataFrame(rows)


def test_seen_speakers_are_every_fold_but_the_genotypes_own() -> None:
    folds = _folds()
    assert [seen_in_search(folds, found_on=[2], fold=fold) for fold in (1, 2, 3)] == [True, False, True]
    assert [seen_in_search(folds, found_on=[1, 2], fold=fold) for fold in (1, 2, 3)] == [True, True, True]
    assert seen_in_search(folds, found_on=[], fold=1) is None  # the baseline: no search found it
    only_train = folds[~((folds["fold"] == 2) & (folds["split"] == "valid"))]  # validation speakers count too
    assert seen_in_search(only_train, found_on=[2], fold=3) is False


def test_a_candidate_travels_as_json() -> None:
    candidate = Candidate(
        architecture="baseline", genotype_hash="baseline", source_trial_id="t", source_fold=2, found_on=(2, 3)
    )
    assert Candidate.from_json(candidate.to_json()) == candidate


def _search_rows(storage: Path) -> None:
    """Genotype g1 is best by validation, g2 best by test: --top 1 must take g1."""
    g2 = GENOTYPE.replace("max_pool_3x3", "avg_pool_3x3")
    assert g2 != GENOTYPE
    for trial, fold, genotype, valid, ua in [("t1", 1, GENOTYPE, 0.8, 0.3), ("t2", 2, g2, 0.5, 0.9)]:
        key = architecture_key(parse_architecture(genotype))
        write_fold_row(
            storage,
            make_leaderboard_row(
                trial_id=trial, fold=fold, genotype=genotype, genotype_hash=key, valid_ua=valid, test_ua=ua
            ),
        )


def test_top_chooses_by_validation_and_genotype_adds(tmp_path: Path) -> None:
    _search_rows(tmp_path)
    chosen = choose_candidates(str(tmp_path), experiment="exp", top=1, genotypes=["baseline"])
    assert [(c.source_trial_id, c.source_fold, c.found_on) for c in chosen] == [("t1", 1, (1,)), (None, None, ())]
    assert chosen[1].genotype_hash == "baseline" and chosen[0].params is None and chosen[1].params is None
    again = choose_candidates(str(tmp_path), experiment="exp", top=2, genotypes=[chosen[0].genotype_hash])
    assert [c.source_trial_id for c in again] == ["t1", "t2"]  # no repeats
    sourced = choose_candidates(str(tmp_path), experiment="exp", top=1, settings="source")
    assert sourced[0].params == {"layers": 4, "seed": 0}  # the source trial's parameters


BASE_LR = 0.025  # eval.weights.lr of write_config's experiment; its space samples weights_lr


def _params(lr: float) -> dict:
    """A search trial's parameters in write_config's space (its fixed values and the sampled lr)."""
    return {"init_channels": 4, "layers": 3, "lstm_hidden": 8, "nodes": 2, "weights_lr": lr}


def _searched(storage: Path, runs: list[tuple[str, int, str, float, float]]) -> dict[str, str]:
    """Search rows (trial, fold, genotype, valid UA, sampled weights_lr); their genotypes' hashes."""
    hashes = {}
    for trial, fold, genotype, valid, lr in runs:
        hashes[genotype] = architecture_key(parse_architecture(genotype))
        write_fold_row(
            storage,
            make_leaderboard_row(
                trial_id=trial,
                fold=fold,
                genotype=genotype,
                genotype_hash=hashes[genotype],
                valid_ua=valid,
                params_json=_params(lr),
            ),
        )
    return hashes


def _plans(tmp_path: Path, candidates: list[Candidate]) -> list[TrialPlan]:
    """What each candidate's cross-eval trial (seed 0) trains under: its real plan, as the trial makes it."""
    config = load_config(write_config(tmp_path / "exp.yaml", name="exp"))
    inputs = TrialInputs(
        experiment=config, manifest=pd.DataFrame(), folds=_folds(), classes=("ang", "hap"), storage=str(tmp_path)
    )
    return [plan_trial({CANDIDATE_KEY: c.to_json(), SEED_KEY: 0}, inputs=inputs) for c in candidates]


G2 = GENOTYPE.replace("max_pool_3x3", "avg_pool_3x3")
G3 = GENOTYPE.replace("sep_conv_3x3", "dil_conv_3x3")
G4 = GENOTYPE.replace("skip_connect", "sep_conv_5x5")  # given as JSON; no search found it


def test_by_default_every_candidate_trains_under_the_base_settings(tmp_path: Path) -> None:
    hashes = _searched(tmp_path / "runs", [("t1", 1, GENOTYPE, 0.8, 0.0777)])
    chosen = choose_candidates(str(tmp_path / "runs"), experiment="exp", top=1, genotypes=["baseline"])
    assert [c.genotype_hash for c in chosen] == [hashes[GENOTYPE], "baseline"]
    assert (chosen[0].source_trial_id, chosen[0].source_fold) == ("t1", 1)  # where it came from is kept
    searched, baseline = _plans(tmp_path, chosen)
    assert searched.evaluation.weights.lr == BASE_LR != 0.0777  # not its source trial's sampled lr
    assert searched.evaluation == baseline.evaluation  # the same settings: they differ by architecture only
    assert searched.row_params == baseline.row_params == {}  # what the rows' params_json say: base settings
    config = load_config(tmp_path / "exp.yaml")
    assert searched.evaluation == settings_from(config, None)[1].model_copy(update={"seed": 0})


def test_source_settings_train_the_baseline_under_each_source_trials_settings(tmp_path: Path) -> None:
    storage = tmp_path / "runs"  # t1 and t3 sampled the same lr: one baseline for both
    hashes = _searched(storage, [("t1", 1, GENOTYPE, 0.8, 0.05), ("t2", 2, G2, 0.7, 0.08), ("t3", 2, G3, 0.6, 0.05)])
    chosen = choose_candidates(str(storage), experiment="exp", top=3, genotypes=["baseline", G4], settings="source")
    g4 = architecture_key(parse_architecture(G4))
    assert [(c.genotype_hash, c.source_trial_id) for c in chosen] == [
        (hashes[GENOTYPE], "t1"),
        (hashes[G2], "t2"),
        (hashes[G3], "t3"),
        ("baseline", "t1"),  # once per distinct source settings, carrying that trial's parameters and id
        ("baseline", "t2"),
        ("baseline", None),  # G4 has no source trial: base settings, and a baseline trained like it
        (g4, None),
    ]
    plans = _plans(tmp_path, chosen)
    assert [plan.evaluation.weights.lr for plan in plans] == [0.05, 0.08, 0.05, 0.05, 0.08, BASE_LR, BASE_LR]
    assert [c.params for c in chosen[3:5]] == [_params(0.05), _params(0.08)] and chosen[3].source_fold is None

    # Their cross-eval rows, as the trials write them (params_json: the parameters the plan trained under):
    # each genotype is compared with the baseline trained under its own settings, never another.
    test_ua = {"t1": 0.50, "t2": 0.60, "t3": 0.55, None: 0.40}  # a genotype's UA on fold 1; + 0.1 per fold
    baseline_ua = {"t1": 0.30, "t2": 0.45, None: 0.20}  # on every fold
    for number, (candidate, plan) in enumerate(zip(chosen, plans, strict=True)):
        is_baseline = candidate.genotype_hash == "baseline"
        for fold in (1, 2, 3):
            ua = baseline_ua if is_baseline else {k: v + 0.1 * (fold - 1) for k, v in test_ua.items()}
            write_fold_row(
                storage,
                make_leaderboard_row(
                    trial_id=f"x{number}",
                    stage="cross-eval",
                    fold=fold,
                    genotype_hash=candidate.genotype_hash,
                    genotype=None if is_baseline else candidate.architecture,
                    params_json=plan.row_params,
                    source_trial_id=candidate.source_trial_id,
                    source_fold=candidate.source_fold,
                    test_ua=ua[candidate.source_trial_id],
                ),
            )
    with connect(storage, experiment="exp") as board:
        view = board.sql("SELECT genotype_hash, baseline_pairs, mean_diff_vs_baseline FROM cross_eval")
        table = cross_eval_summary(board, experiment="exp").set_index("genotype_hash")
    diffs = dict(zip(view["genotype_hash"], view["mean_diff_vs_baseline"]))
    expected = {  # its own mean test UA minus that of the baseline under its settings
        hashes[GENOTYPE]: 0.50 + 0.1 - 0.30,
        hashes[G2]: 0.60 + 0.1 - 0.45,
        hashes[G3]: 0.55 + 0.1 - 0.30,  # t3 sampled what t1 did: the baseline under t1's settings
        g4: 0.40 + 0.1 - 0.20,
    }
    assert {k: diffs[k] for k in expected} == pytest.approx(expected)
    assert dict(zip(view["genotype_hash"], view["baseline_pairs"])) == {**dict.fromkeys(expected, 3), "baseline": 0}
    assert table.loc[hashes[G2], "wilcoxon_p"] == pytest.approx(0.25)  # 3 folds, each above its own baseline


def test_one_experiments_cross_eval_keeps_to_one_settings(tmp_path: Path, capsys) -> None:
    storage = tmp_path / "runs"
    hashes = _searched(storage, [("t1", 1, GENOTYPE, 0.8, 0.05)])
    write_fold_row(  # a cross-eval under the base settings (the default) ran before
        storage,
        make_leaderboard_row(
            trial_id="x1",
            stage="cross-eval",
            genotype=GENOTYPE,
            genotype_hash=hashes[GENOTYPE],
            params_json={},
            source_trial_id="t1",
            source_fold=1,
        ),
    )
    assert choose_candidates(str(storage), experiment="exp", top=1)  # the same settings again: fine
    with pytest.raises(ValueError, match="already has cross-eval rows trained under --settings base") as error:
        choose_candidates(str(storage), experiment="exp", top=1, settings="source")
    assert f"genotype {hashes[GENOTYPE]} of source trial t1: 1 row(s) under the base settings" in str(error.value)
    arguments = ["--storage", str(storage), "--experiment", "exp", "--resume", "--settings", "source"]
    assert main(["cross-eval", *arguments]) == 2  # a resume under the other settings: refused before anything runs
    assert "run it with --settings base" in capsys.readouterr().err

    other = tmp_path / "other"  # and the other way round: a cross-eval under the source settings ran before
    _searched(other, [("t1", 1, GENOTYPE, 0.8, 0.05)])
    write_fold_row(
        other, make_leaderboard_row(trial_id="x2", stage="cross-eval", params_json=_params(0.05), source_trial_id="t1")
    )
    assert choose_candidates(str(other), experiment="exp", top=1, settings="source")
    with pytest.raises(ValueError, match="trained under --settings source .genotype baseline of source trial t1"):
        choose_candidates(str(other), experiment="exp", top=1, genotypes=["baseline"])


def test_random_controls_come_from_the_experiments_own_space_seeded_and_marked(tmp_path: Path) -> None:
    from orchestrator.cross_eval import random_controls
    from search_space.architecture import parse_architecture as parse

    config = load_config(write_config(tmp_path / "exp.yaml", name="exp"))
    search, _ = settings_from(config, None)
    controls = random_controls(config, count=5, seed=3)
    assert controls == random_controls(config, count=5, seed=3) != random_controls(config, count=5, seed=4)
    assert len({c.genotype_hash for c in controls}) == 5 and {c.control for c in controls} == {"random"}
    for control in controls:
        genotype = parse(control.architecture)
        assert architecture_key(genotype) == control.genotype_hash and control.source_fold is None
        ops = {op for op, _ in (*genotype.normal, *genotype.reduce)}
        assert ops <= set(search.primitives) - {"none"}
        assert len(genotype.normal) == len(genotype.reduce) == 2 * search.shape.nodes
    # they join the chosen candidates, under the base settings like the others, the rows say "random"
    _searched(tmp_path / "runs", [("t1", 1, GENOTYPE, 0.8, 0.0777)])
    chosen = choose_candidates(str(tmp_path / "runs"), experiment="exp", top=1, controls=controls[:2])
    assert [c.control for c in chosen] == [None, "random", "random"] and all(c.params is None for c in chosen)
    plan = _plans(tmp_path, chosen[1:2])[0]
    assert plan.candidate.control == "random" and plan.row_params == {}
    with pytest.raises(ValueError, match="--random 0 must|--random must be >= 1"):
        random_controls(config, count=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "give --top N, --genotype HASH|JSON|baseline and/or --random K"),
        (["--random", "0"], "--random must be >= 1"),
        (["--top", "0"], "--top must be >= 1"),
        (["--genotype", "baseline", "--seeds", "0"], "--seeds must be >= 1"),
        (["--genotype", "nonsense"], "--genotype 'nonsense' is neither"),
        (["--genotype", "abcdefabcdef"], "--genotype abcdefabcdef: no finished search row"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, capsys, arguments: list[str], message: str) -> None:
    _search_rows(tmp_path / "runs")  # the genotype flags are checked before the prepared data is read
    code = main(["cross-eval", "--storage", str(tmp_path / "runs"), "--experiment", "exp", *arguments])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_missing_experiment_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = main(["cross-eval", "--storage", str(tmp_path), "--experiment", "nope", "--genotype", "baseline"])
    assert code == 2 and "cross-eval needs the prepared data of the experiment 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_cross_eval_end_to_end(local_ray, tmp_path: Path, capsys) -> None:
    config = write_config(
        tmp_path / "exp.yaml", name="xe", samples=2, eval_epochs=1, per_speaker=8, search_extra=", score_controls: 3"
    )
    storage = str(tmp_path / "runs")
    assert main(["search", "--config", str(config)]) == 0
    with connect(storage, experiment="xe") as board:
        genotypes_before = board.summary("genotype")
        top = genotypes_before["genotype_hash"].iloc[0]
    capsys.readouterr()
    arguments = ["--storage", storage, "--experiment", "xe", "--top", "1", "--genotype", "baseline", "--seeds", "1"]
    assert main(["cross-eval", *arguments, "--random", "3"]) == 0
    out = capsys.readouterr().out
    assert "5 trials (5 completed, 0 failed)" in out and "Cross-eval of xe, ranked by mean validation UA" in out
    assert "random control)" in out and "the search beat " in out and " of 3 random cells with " in out
    assert "under the experiment's base settings (--settings base)" in out
    assert (tmp_path / "runs" / "xe-cross-eval").is_dir()  # its own Tune folder; rows under the experiment
    with connect(storage, experiment="xe") as board:
        pd.testing.assert_frame_equal(board.summary("genotype"), genotypes_before)  # search views: unchanged
        controls = board.sql("SELECT * FROM runs WHERE stage = 'cross-eval' AND control = 'random'")
        scored = board.sql("SELECT control_scores FROM runs WHERE stage = 'search'")["control_scores"]
        ranking = supernet_rankings(board).get("xe")
        rows = board.sql(
            "SELECT * FROM runs WHERE stage = 'cross-eval' AND control IS NULL ORDER BY genotype_hash, fold"
        )
        table = cross_eval_summary(board, experiment="xe").set_index("genotype_hash")
        predictions = board.sql("SELECT * FROM predictions WHERE stage = 'cross-eval' AND split = 'test'")
    assert len(controls) == 6 and controls["genotype_hash"].nunique() == 3 and controls["source_fold"].isna().all()
    assert table["random_control"].sum() == 3
    # every search scored exactly the controls cross-eval then trained (the default draw), on its alpha speakers
    assert len(scored) == 4 and all(set(json.loads(s)) == set(controls["genotype_hash"]) for s in scored)
    if ranking is not None:  # a fold where the 3 controls' validation UAs differ: its tau is printed
        assert "the supernets ranked the random cells with Kendall tau" in " ".join(out.split())
    # every cross-eval network's test utterances were stored: each test utterance once per network (5 x 2 folds)
    assert len(predictions) == 5 * len(predictions.drop_duplicates("utt_id"))
    assert table["pooled_test_ua"].notna().all() and table.loc[top, "speaker_note"].startswith("exact")
    assert len(rows) == 4 and set(rows["status"]) == {"completed"} and (rows["search_seconds"] == 0).all()
    assert set(rows["genotype_hash"]) == {top, "baseline"}
    assert set(rows["params_json"]) == {"{}"} and set(rows["weights_lr"]) == {BASE_LR}  # alike: the base settings
    searched = rows[rows["genotype_hash"] == top]
    source_fold = int(searched["source_fold"].iloc[0])
    assert searched["source_trial_id"].notna().all()
    assert dict(zip(searched["fold"], searched["test_seen_in_search"])) == {
        fold: fold != source_fold for fold in (1, 2)
    }
    baseline = rows[rows["genotype_hash"] == "baseline"]
    assert baseline["source_fold"].isna().all() and baseline["test_seen_in_search"].isna().all()
    assert (
        set(table.index) - set(controls["genotype_hash"]) == {top, "baseline"}
        and table["complete"].all()
        and (table["folds_covered"] == 2).all()
    )
    assert table.loc[top, "baseline_pairs"] == 2 and table.loc[top, "seen_folds"] == 1

    assert main(["leaderboard", "--storage", storage, "--experiment", "xe", "--by", "cross-eval"]) == 0
    out = capsys.readouterr().out
    assert "cross-eval rows only" in out and "the search beat " in out
    model = tmp_path / "baseline.pt"  # a genotype with cross-eval rows only exports too
    arguments = ["--storage", storage, "--experiment", "xe", "--genotype", "baseline", "--device", "cpu"]
    assert main(["export", *arguments, "--out", str(model)]) == 0 and model.is_file()
