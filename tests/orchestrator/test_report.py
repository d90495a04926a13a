"""The HTML report over a small hand-made leaderboard (real Parquet parts, real DuckDB, no Ray)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import make_leaderboard_row
from orchestrator.leaderboard import write_fold_row, write_trial_status
from orchestrator.report import SECTIONS, pareto_front, write_report
from search_space.genotype import Genotype

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CLASSES = ["ang", "hap", "neu", "sad"]


def make_row(**overrides) -> dict:
    """A valid completed fold row of a baseline on node "local"; ``overrides`` replace columns."""
    if "test_ua" in overrides and "valid_ua" not in overrides:  # validation agrees with test unless told otherwise
        overrides["valid_ua"] = overrides["test_ua"]
    return make_leaderboard_row(**{"node_id": "local", "nodes": 2, "classes": CLASSES, **overrides})


def genotype(op: str) -> Genotype:
    return Genotype(
        normal=[(op, 0), ("skip_connect", 1), ("sep_conv_3x3", 1), (op, 2)],
        normal_concat=[2, 3],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        reduce_concat=[2, 3],
    )


def write_trial(
    storage: Path,
    trial_id: str,
    uas: list[float],
    *,
    seed: int,
    layers: int,
    params: int,
    op: str = "sep_conv_3x3",
    minutes: int = 0,
    hash_: str | None = None,
    status: str = "completed",
    experiment: str = "exp",
) -> None:
    found = genotype(op)
    for fold, ua in enumerate(uas, start=1):
        write_fold_row(
            storage,
            make_row(
                experiment=experiment,
                trial_id=trial_id,
                fold=fold,
                n_folds=3,
                seed=seed,
                layers=layers,
                params=params,
                params_json={"layers": layers, "seed": seed},
                genotype=None if hash_ else found.to_json(),
                genotype_hash=hash_ or found.hash,
                test_ua=ua,
                classes=CLASSES,
                written_at=START + timedelta(minutes=minutes + fold),
            ),
        )
    write_trial_status(
        storage,
        experiment=experiment,
        trial_id=trial_id,
        status=status,
        step=len(uas),
        reason="Wilcoxon: worse than the best trial" if status == "pruned" else None,
    )


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("storage")
    write_trial(storage, "t1", [0.61, 0.64, 0.66], seed=0, layers=4, params=50_000, minutes=0)
    write_trial(storage, "t2", [0.55, 0.58, 0.57], seed=1, layers=4, params=20_000, op="dil_conv_3x3", minutes=5)
    write_trial(storage, "t3", [0.52, 0.50, 0.53], seed=0, layers=6, params=90_000, op="sep_conv_5x5", minutes=10)
    write_trial(storage, "t4", [0.30], seed=1, layers=6, params=80_000, op="dil_conv_5x5", minutes=15, status="pruned")
    write_trial(storage, "t5", [0.45, 0.47, 0.44], seed=2, layers=8, params=5_000, minutes=20, hash_="<baseline>")
    # a failed rerun-less fold, and a damaged part file: both stay out of the rankings
    write_fold_row(
        storage,
        make_row(
            trial_id="t6",
            fold=1,
            n_folds=3,
            status="failed",
            error="CUDA out of memory",
            test_ua=None,
            test_wa=None,
            test_macro_f1=None,
            genotype=None,
            genotype_hash=None,
            confusion=None,
        ),
    )
    bad = storage / "leaderboard" / "exp" / "t7" / "fold=1-attempt=0.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet at all")
    return storage


def sections_of(page: str) -> dict[str, str]:
    found = dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.S))
    return found


def assert_self_contained(page: str) -> None:
    # no external resources: no src/href to http(s), no <script>, no <link>, no @import, no url(...)
    assert not re.search(r'(src|href)\s*=\s*"(?!data:|#)', page)
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page


def test_report_has_every_section_embedded_images_and_no_external_resources(board_dir: Path, tmp_path: Path) -> None:
    out = write_report(board_dir, experiment="exp", out=tmp_path / "nested" / "report.html")
    assert out == tmp_path / "nested" / "report.html" and out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # atomic: no temporary file left
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    sections = sections_of(page)
    assert list(sections) == [key for key, _ in SECTIONS]
    for key, heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in sections[key]
    for key in ("pareto", "depth-seed", "fold-heatmap", "pruning", "confusion", "cells"):
        assert "data:image/png;base64," in sections[key], key
    assert_self_contained(page)

    ranked = sections["ranked"]
    assert ranked.index(">t1<") < ranked.index(">t2<") < ranked.index(">t3<")
    assert ranked.index(">t5<") < ranked.index(">t4<")  # incomplete t4 after every complete trial
    assert "0.6367" in ranked  # t1: mean of 0.61, 0.64, 0.66
    assert "&lt;baseline&gt;" in ranked and "<baseline>" not in page  # escaped model name
    assert genotype("sep_conv_3x3").hash in ranked
    assert "t6" not in ranked  # failed run left out
    assert "1 damaged file(s) skipped" in page and "fold=1-attempt=0.parquet" in page
    assert "1 of 5 finished trials were pruned" in sections["pruning"]
    assert "Trial <code>t1</code>" in sections["confusion"] and "75 test utterances" in sections["confusion"]
    assert genotype("sep_conv_3x3").hash in sections["cells"]


def test_single_trial_without_pruning_still_renders(tmp_path: Path) -> None:
    write_trial(tmp_path / "s", "only", [0.5, 0.6], seed=0, layers=4, params=1000)  # 2 of 3 folds: incomplete
    page = write_report(tmp_path / "s", out=tmp_path / "r.html").read_text(encoding="utf-8")
    sections = sections_of(page)
    assert list(sections) == [key for key, _ in SECTIONS]
    assert "No trial was pruned." in sections["pruning"]
    assert "data:image/png;base64," in sections["cells"]
    assert "damaged" not in page
    assert_self_contained(page)


def test_empty_leaderboard_shows_sentences_not_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "leaderboard").mkdir(parents=True)
    page = write_report(tmp_path / "empty", out=tmp_path / "r.html").read_text(encoding="utf-8")
    sections = sections_of(page)
    assert list(sections) == [key for key, _ in SECTIONS]
    assert "data:image" not in page
    assert all('class="empty"' in body for body in sections.values())


def test_runs_whose_splits_lack_a_class_are_noted(tmp_path: Path) -> None:
    write_trial(tmp_path / "a", "whole", [0.4, 0.5, 0.45], seed=0, layers=4, params=1000)
    page = write_report(tmp_path / "a", out=tmp_path / "whole.html").read_text(encoding="utf-8")
    assert "Classes absent from a split" not in page  # every class present: no note
    write_fold_row(tmp_path / "a", make_row(trial_id="gap", fold=2, test_ua=0.3, test_absent_classes=["sad"]))
    page = write_report(tmp_path / "a", out=tmp_path / "gap.html").read_text(encoding="utf-8")
    assert "Classes absent from a split" in page
    assert "1 search run(s) (fold 2) had no test utterance of class sad" in page


def test_runs_on_folds_that_are_not_speaker_independent_are_noted(tmp_path: Path) -> None:
    write_trial(tmp_path / "a", "clean", [0.4, 0.5, 0.45], seed=0, layers=4, params=1000)
    page = write_report(tmp_path / "a", out=tmp_path / "clean.html").read_text(encoding="utf-8")
    assert "not speaker-independent" not in page  # rows without a flag (or independent): no note
    write_fold_row(tmp_path / "a", make_row(trial_id="same", fold=2, speaker_check="overlap"))
    write_fold_row(tmp_path / "a", make_row(trial_id="who", fold=3, speaker_check="unknown"))
    write_fold_row(tmp_path / "a", make_row(trial_id="fine", fold=1, speaker_check="independent"))
    page = write_report(tmp_path / "a", out=tmp_path / "flagged.html").read_text(encoding="utf-8")
    assert "Folds that are not speaker-independent" in page
    assert "1 search run(s) on fold 2, whose speaker check is overlap: a test speaker also trains" in page
    assert "1 search run(s) on fold 3, whose speaker check is unknown" in page
    assert "on fold 1," not in page


def test_baseline_only_has_no_cells_to_draw(tmp_path: Path) -> None:
    write_trial(tmp_path / "b", "base", [0.4, 0.5, 0.45], seed=0, layers=4, params=1000, hash_="baseline")
    sections = sections_of(write_report(tmp_path / "b", out=tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "no searched genotype" in sections["cells"]
    assert "data:image/png;base64," in sections["confusion"]


def test_pareto_front_keeps_points_nothing_beats() -> None:
    ua = [0.60, 0.55, 0.50, 0.62, 0.40, 0.55]
    params = [50, 20, 90, 100, 5, 30]
    assert pareto_front(ua, params) == [4, 1, 0, 3]
    assert pareto_front([], []) == []


def test_cross_eval_section_marks_seen_folds_and_compares_with_the_baseline(tmp_path: Path) -> None:
    found = genotype("sep_conv_3x3")
    write_trial(tmp_path, "s1", [0.5], seed=0, layers=3, params=500)  # the search row that found it
    for hash_, text, uas, seen in (
        (found.hash, found.to_json(), [0.60, 0.70, 0.65], [False, True, True]),
        ("baseline", None, [0.50, 0.55, 0.60], [None, None, None]),
    ):
        for fold, (ua, flag) in enumerate(zip(uas, seen), start=1):
            write_fold_row(
                tmp_path,
                make_row(
                    trial_id=f"x-{hash_[:4]}",
                    stage="cross-eval",
                    fold=fold,
                    genotype=text,
                    genotype_hash=hash_,
                    test_ua=ua,
                    source_trial_id=None if text is None else "s1",
                    source_fold=None if text is None else 1,
                    test_seen_in_search=flag,
                ),
            )
    page = write_report(tmp_path, experiment="exp", out=tmp_path / "report.html").read_text(encoding="utf-8")
    section = sections_of(page)["cross-eval"]
    assert "data:image/png;base64," in section and "optimistic" in section
    assert section.index(f">{found.hash}<") < section.index(">baseline<")  # 0.65 before 0.55 by validation
    assert "0.1000" in section  # mean test UA difference vs baseline over 3 (fold, seed) pairs
    assert "0.2500" in section  # Wilcoxon p of 3 positive differences
    assert f"Rank 1: <code>{found.hash}</code>" in section  # its cells drawn
    assert "t1" not in sections_of(page)["ranked"] and "x-" not in sections_of(page)["ranked"]


def test_collapsed_searches_are_marked(tmp_path: Path) -> None:
    write_fold_row(
        tmp_path, make_row(trial_id="c1", fold=1, test_ua=0.4, search_stop_reason="collapsed after epoch 2: x")
    )
    write_fold_row(
        tmp_path, make_row(trial_id="c2", fold=1, test_ua=0.5, search_stop_reason="epochs", alpha_entropy=1.2)
    )
    page = write_report(tmp_path, out=tmp_path / "r.html").read_text(encoding="utf-8")
    ranked = sections_of(page)["ranked"]
    assert "Collapsed searches" in ranked and "<code>c1</code> (1)" in ranked and "<code>c2</code>" not in ranked
    assert "collapsed_searches" in ranked and "mean_alpha_entropy" in ranked
