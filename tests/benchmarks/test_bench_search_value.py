"""benchmarks/bench_search_value.py: its figures on a hand-computed case, the shared-weight scores
rebuilt from a search's checkpoint, and the whole pipeline at tiny budgets."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_search_value as bench  # noqa: E402
import run_all  # noqa: E402

from conftest import make_fold_data  # noqa: E402
from search_space import sample_genotypes  # noqa: E402
from trainers.checkpoint import load_checkpoint  # noqa: E402
from trainers.run_fold import run_fold  # noqa: E402
from trainers.settings import EvalSettings, ModelShape, SearchSettings  # noqa: E402

FOLDS = [1, 2, 3, 4, 5]
CONTROLS = ["g0", "g1", "g2"]  # stand-ins for genotype texts: summarise only counts them
SHAPE = ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8)


def rows_for(*, darts_valid: float, random_ws_valid: float) -> list[dict]:
    """One seed per fold. Control i scores 0.50 + 0.01 i (valid and test) on every fold; darts
    0.60 + 0.001 f on test (beats every control and the hand-made 0.55 on every fold); random-ws
    0.505 (beats one control of three). The searches' shared-weight scores rank the controls in
    reverse (running BatchNorm) and in order (batch statistics)."""
    rows = []
    for f in FOLDS:
        for i in range(3):
            rows.append(
                {"fold": f, "seed": 0, "name": f"random-{i}", "valid_ua": 0.5 + 0.01 * i, "test_ua": 0.5 + 0.01 * i}
            )
            rows[-1]["params"] = 100 + i
        rows.append({"fold": f, "seed": 0, "name": bench.HANDMADE, "valid_ua": 0.55, "test_ua": 0.55})
        for name, valid, test in (("darts", darts_valid, 0.6 + 0.001 * f), ("random-ws", random_ws_valid, 0.505)):
            shared = {"running": [0.3, 0.2, 0.1], "batch": [0.1, 0.2, 0.3]}
            rows.append(
                {"fold": f, "seed": 0, "name": name, "valid_ua": valid, "test_ua": test, "shared_weight_ua": shared}
            )
    return rows


def test_the_method_is_chosen_on_validation_and_the_goal_follows_its_figures():
    logistic = dict.fromkeys(FOLDS, 0.45)
    # random-ws has the better validation UA: it is chosen although darts is better on test
    result = bench.summarise(
        rows_for(darts_valid=0.55, random_ws_valid=0.60),
        logistic=logistic,
        controls=CONTROLS,
        methods=["darts", "random-ws"],
    )
    assert result["chosen_by_validation"] == "random-ws"
    table = result["table"]
    assert table["darts"]["test_ua"] == pytest.approx(0.603)
    assert table["random controls (mean of K)"] == {"valid_ua": pytest.approx(0.51), "test_ua": pytest.approx(0.51)}
    assert table["logistic regression (per speaker)"] == {"valid_ua": None, "test_ua": 0.45}

    darts_vs_random = result["tests"]["vs_random_mean"]["darts"]
    assert darts_vs_random["wins"] == 5 and darts_vs_random["p_value"] == pytest.approx(1 / 32)  # the 5-fold floor
    assert darts_vs_random["p_holm"] == pytest.approx(2 / 32)  # two methods, darts the smaller p
    assert result["tests"]["vs_random_mean"]["random-ws"]["p_value"] == 1.0  # loses every fold
    assert result["tests"]["handmade_vs_logistic"]["p_value"] == pytest.approx(1 / 32)

    darts, random_ws = result["standing"]["darts"]["test"], result["standing"]["random-ws"]["test"]
    assert darts["mean_percentile"] == 1.0 and darts["beats_controls"] == 3
    assert random_ws["mean_percentile"] == pytest.approx(1 / 3) and random_ws["beats_controls"] == 1
    assert darts["relative_improvement"] == pytest.approx(100 * (0.603 - 0.51) / 0.51)

    tau = result["kendall_tau"]["darts"]
    assert tau["running"]["mean_tau"] == pytest.approx(-1.0) and tau["batch"]["mean_tau"] == pytest.approx(1.0)
    assert tau["running"]["supernets"] == 5

    goal = result["goal"]
    assert goal["chosen_method"] == "random-ws" and goal["met"] is False
    assert goal["beats_random_mean_p_below_0.05"] is False and goal["smallest_possible_p"] == 1 / 32
    assert "validation chose random-ws" in result["verdict"] and "goal NOT met" in result["verdict"]

    # darts chosen: it beats the random mean and the hand-made network on all five folds, both beat the logistic
    chosen = bench.summarise(
        rows_for(darts_valid=0.60, random_ws_valid=0.55),
        logistic=logistic,
        controls=CONTROLS,
        methods=["darts", "random-ws"],
    )
    assert chosen["goal"]["chosen_method"] == "darts" and chosen["goal"]["met"] is True
    assert "goal met" in chosen["verdict"] and "beat 3 of 3 random cells" in chosen["verdict"]
    # ... but not when the logistic regression is ahead of the hand-made network
    behind = bench.summarise(
        rows_for(darts_valid=0.60, random_ws_valid=0.55),
        logistic=dict.fromkeys(FOLDS, 0.58),
        controls=CONTROLS,
        methods=["darts", "random-ws"],
    )
    assert behind["goal"]["networks_beat_logistic"] is False and behind["goal"]["met"] is False


def test_percentile_counts_ties_half_and_a_constant_ranking_has_no_tau():
    assert bench.percentile(0.5, [0.4, 0.5, 0.6, 0.7]) == pytest.approx(1.5 / 4)
    assert bench._kendall([0.1, 0.1, 0.1], [0.2, 0.3, 0.4]) is None
    assert bench.relative_improvement(0.55, 0.5) == pytest.approx(10.0)


@pytest.mark.usefixtures("one_torch_thread")
def test_shared_weight_scores_rebuild_the_supernet_the_search_ranked_with(tmp_path):
    """random-ws records its best candidate's shared-weight UA; rebuilt from search.pt and scored
    on the alpha speakers of the data as run_fold normalises it, the same candidates give it back."""
    data = make_fold_data(n_train=24, n_valid=12, n_test=12, normalization=None)  # run_fold normalises
    search = SearchSettings(shape=SHAPE, epochs=1, batch_size=8, method="random-ws", random_ws_candidates=4)
    evaluation = EvalSettings(shape=SHAPE, epochs=1, batch_size=8)
    run_fold(data, evaluation=evaluation, search=search, device=torch.device("cpu"), work_dir=tmp_path)
    candidates = sample_genotypes(search.seed, 4, primitives=search.primitives, nodes=SHAPE.nodes)
    scores = bench.shared_weight_scores(
        data, search=search, evaluation=evaluation, checkpoint=tmp_path / "search.pt", genotypes=candidates
    )
    last = load_checkpoint(tmp_path / "search.pt")["history"][-1]
    assert scores["running"][last["candidate_index"]] == last["shared_weight_ua"] == max(scores["running"])
    assert len(scores["batch"]) == 4 and all(0.0 <= s <= 1.0 for s in scores["batch"])
    with pytest.raises(FileNotFoundError, match="no search checkpoint"):
        bench.shared_weight_scores(
            data, search=search, evaluation=evaluation, checkpoint=tmp_path / "absent.pt", genotypes=candidates
        )


@pytest.mark.usefixtures("one_torch_thread")
def test_the_whole_pipeline_at_tiny_budgets(tmp_path, monkeypatch):
    """Every method, two controls, the hand-made network, two folds, one epoch each, in this
    process, on tiny generated folds instead of the built-in corpus (the same code path below)."""
    monkeypatch.setattr(bench, "prepare", lambda root, fold_numbers: None)
    monkeypatch.setattr(
        bench,
        "fold_data",
        lambda corpus, fold: make_fold_data(n_train=24, n_valid=12, n_test=12, fold=fold, normalization=None),
    )
    monkeypatch.setattr(bench, "per_speaker_logistic_ua", lambda corpus, folds: dict.fromkeys(folds, 0.4))
    lines: list[str] = []
    result = bench.run(
        tmp_path, fold_numbers=[1, 2], seeds=[0], random=2, search_epochs=1, eval_epochs=1, jobs=1, say=lines.append
    )
    assert len(result["rows"]) == 2 * (5 + 1 + 2) and len(lines) == 1 + 16
    assert set(result["table"]) == {
        *bench.METHODS,
        bench.HANDMADE,
        "random controls (mean of K)",
        "logistic regression (per speaker)",
    }
    assert result["chosen_by_validation"] == max(bench.METHODS, key=lambda m: result["table"][m]["valid_ua"])
    assert result["budgets"] == {
        "folds": [1, 2],
        "seeds": [0],
        "random_controls": 2,
        "search_epochs": 1,
        "eval_epochs": 1,
        "jobs": 1,
    }
    searched = [r for r in result["rows"] if r["name"] in bench.METHODS and r["name"] != bench.SEARCHED_SEQUENCE]
    assert all(len(r["shared_weight_ua"]["running"]) == 2 for r in searched)
    sequence = result["sequence_vs_fixed_lstm"]
    assert sequence["validation"]["n"] == 2 and sequence["validation_prefers"] in bench.METHODS
    assert all('"sequence"' in r["architecture"] for r in result["rows"] if r["name"] == "darts-sequence")
    assert result["goal"]["smallest_possible_p"] == 0.25 and result["goal"]["met"] is False  # 2 folds: p >= 0.25
    rows = run_all._search_value(json.loads(json.dumps(result)))  # the results file is JSON; its SUMMARY rows
    assert (
        len(rows) == 3
        and "chosen by validation" in rows[0]
        and "sequence cell vs fixed LSTM" in rows[2]
        and "| NOT met (" in rows[0]
    )
    assert all(math.isfinite(r["test_ua"]) and math.isfinite(r["valid_ua"]) for r in result["rows"])
    with pytest.raises(ValueError, match="methods must be among"):
        bench.run(
            tmp_path,
            fold_numbers=[1],
            seeds=[0],
            methods=["enas"],
            random=2,
            search_epochs=1,
            eval_epochs=1,
            jobs=1,
            say=print,
        )


@pytest.mark.slow
def test_the_script_on_the_built_in_corpus(tmp_path):
    """The command line at its smallest: one fold, one seed, random-ws, two controls, one epoch."""
    out = tmp_path / "search_value.json"
    bench.main(
        ["--folds", "1", "--seeds", "1", "--methods", "random-ws", "--random", "2"]
        + ["--search-epochs", "1", "--eval-epochs", "1", "--jobs", "1", "--out", str(out)]
    )
    result = json.loads(out.read_text())
    assert result["chosen_by_validation"] == "random-ws" and len(result["rows"]) == 4
    assert 0.0 <= result["table"]["logistic regression (per speaker)"]["test_ua"] <= 1.0


def test_runs_over_other_seeds_merge_into_one_over_all_of_them():
    """A run split by seeds (--first-seed) merges into what one run over every seed summarises."""
    logistic, methods = dict.fromkeys(FOLDS, 0.45), ["darts", "random-ws"]
    seed_0 = rows_for(darts_valid=0.55, random_ws_valid=0.60)
    seed_1 = [{**row, "seed": 1, "valid_ua": row["valid_ua"] + 0.02} for row in seed_0]

    def result(rows: list[dict], seeds: list[int]) -> dict:
        budgets = {"folds": FOLDS, "seeds": seeds, "random_controls": 3, "search_epochs": 6, "eval_epochs": 20}
        rows = [{**row, "params": row.get("params", 1), "cpu_seconds": 1.0} for row in rows]
        return {
            "budgets": budgets,
            "methods": {name: {} for name in methods},
            "seconds": 10.0,
            "rows": rows,
            **bench.summarise(rows, logistic=logistic, controls=CONTROLS, methods=methods),
        }

    merged = bench.merge_results([result(seed_0, [0]), result(seed_1, [1])])
    whole = result(seed_0 + seed_1, [0, 1])
    assert merged["budgets"]["seeds"] == [0, 1] and merged["seconds"] == 20.0 and len(merged["rows"]) == 2 * len(seed_0)
    assert merged["table"] == whole["table"] and merged["tests"] == whole["tests"]
    assert merged["chosen_by_validation"] == whole["chosen_by_validation"]
    with pytest.raises(ValueError, match="differ only in their seeds"):
        bench.merge_results([result(seed_0, [0]), {**result(seed_1, [1]), "methods": {"darts": {}}}])
