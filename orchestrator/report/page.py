"""One self-contained HTML report of an experiment's leaderboard.

``write_report(storage, experiment=..., out=...)`` queries the leaderboard views
(``orchestrator.leaderboard``) and writes a single HTML page that opens offline: every figure is
a base64 PNG drawn by matplotlib (Agg, no pyplot state), the style sheet is inline, and no
external script, font or image is referenced. Sections (each ``<section id=...>``):

``estimate``      the nested estimate of the search procedure (what to publish) and the optimistic
                  best mean test UA over trials, with the gap between them
``ranked``        trials ranked by mean validation UA over folds (complete first), test UA beside
``pareto``        mean validation UA vs parameter count per trial, Pareto front highlighted
``depth-seed``    mean UA per trial by cell depth (``layers``) and by seed
``fold-heatmap``  per-fold UA of the top trials (rows trials, columns folds)
``pruning``       trials finished and trial-epochs spent, completed vs pruned, over time
``confusion``     confusion matrix of the best trial, summed over its folds
``cells``         the best genotype's normal and reduction cells (nodes, edges labelled with ops)

A section without data shows one sentence instead. Damaged part files are listed in a note, and so
are runs on folds that are not speaker-independent (``leaderboard.speaker_checks``) and runs whose
test or validation speakers lacked a class (``leaderboard.absent_classes``).
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from orchestrator.leaderboard import (
    BASELINE,
    Leaderboard,
    StorageLocation,
    absent_class_notes,
    connect,
    cross_eval_summary,
    search_verdicts,
    speaker_check_notes,
)
from orchestrator.report.cells import cells_section
from orchestrator.report.cross_eval import CROSS_EVAL_FOLDS_SQL, cross_eval_section
from orchestrator.report.html import CSS, SCORED, SEARCH
from orchestrator.report.sections import (
    confusion_section,
    depth_seed_section,
    estimate_section,
    fold_heatmap_section,
    pareto_section,
    pruning_section,
    ranked_section,
)
from orchestrator.selection import nested_estimates
from trainers.atomic_io import write_text_atomically

__all__ = ["SECTIONS", "write_report"]

SECTIONS: tuple[tuple[str, str], ...] = (
    ("estimate", "Nested estimate"),
    ("ranked", "Ranked trials and genotypes"),
    ("pareto", "UA vs parameter count"),
    ("depth-seed", "UA by cell depth and by seed"),
    ("fold-heatmap", "Per-fold UA of the top trials"),
    ("pruning", "Trial-epochs spent vs pruned over time"),
    ("confusion", "Confusion matrix of the best trial"),
    ("cells", "Cells of the best genotype"),
    ("cross-eval", "Cross-evaluated genotypes (every fold, vs baseline)"),
)


# -------------------------------------------------------------------------------------- queries
def _best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The best trial over the report: complete first, then by mean validation UA (never test)."""
    if trials.empty:
        return None
    ordered = trials.sort_values(["complete", "mean_valid_ua", "folds_covered"], ascending=[False, False, False])
    return ordered.iloc[0]


def _best_genotype(board: Leaderboard, genotypes: pd.DataFrame) -> tuple[str, str] | None:
    """(hash, JSON) of the best-ranked genotype that has a genotype JSON (baselines have none)."""
    ordered = genotypes.sort_values(["complete", "mean_valid_ua", "folds_covered"], ascending=[False, False, False])
    for record in ordered.itertuples():
        found = board.sql(
            "SELECT any_value(genotype) AS genotype FROM runs WHERE experiment = ? AND "
            "genotype_hash = ? AND genotype IS NOT NULL",
            [record.experiment, record.genotype_hash],
        )
        if not found.empty and isinstance(found["genotype"].iloc[0], str):
            return str(record.genotype_hash), found["genotype"].iloc[0]
    return None


def _damage_note(board: Leaderboard) -> str:
    if not board.damaged:
        return ""
    items = "".join(
        f"<li><code>{html.escape(str(item.path))}</code>: {html.escape(str(item.reason))}</li>"
        for item in board.damaged
    )
    return (
        f'<div class="note"><strong>{len(board.damaged)} damaged file(s) skipped</strong> '
        f"(not in any table or figure):<ul>{items}</ul></div>"
    )


def _absent_note(board: Leaderboard) -> str:
    """A note naming the runs whose test or validation speakers lacked a class (recall 0 in that UA)."""
    notes = absent_class_notes(board)
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return (
        '<div class="note"><strong>Classes absent from a split</strong> (UA averages over every class of the '
        f"protocol, so such a class counts as recall 0 there):<ul>{items}</ul></div>"
    )


def _speaker_note(board: Leaderboard) -> str:
    """A note naming the runs on folds that are not speaker-independent (``speaker_check`` overlap or unknown)."""
    notes = speaker_check_notes(board)
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return (
        '<div class="note"><strong>Folds that are not speaker-independent</strong> (searched only because '
        f"folds.accept_speaker_overlap allowed it; their test figures are not speaker-independent):<ul>{items}</ul>"
        "</div>"
    )


def _render(board: Leaderboard, *, experiment: str | None, storage: str) -> str:
    trials = board.summary("trial")
    genotypes = board.summary("genotype")
    folds = board.sql(f"SELECT experiment, trial_id, fold, test_ua FROM runs WHERE {SCORED}")
    per_trial = board.sql(
        f"SELECT experiment, trial_id, any_value(layers) AS layers, any_value(seed) AS seed, "
        f"max(status) AS status, avg(test_ua) AS test_ua FROM runs WHERE {SCORED} GROUP BY ALL"
    )
    runs = board.sql(
        "SELECT experiment, trial_id, status, written_at, coalesce(search_epochs_run, 0) + "
        f"coalesce(eval_epochs, best_epoch, 0) AS epochs FROM runs WHERE {SEARCH}"
    )
    statuses = board.sql(
        "SELECT experiment, trial_id, status, updated_at FROM trials AS t WHERE NOT EXISTS (SELECT 1 FROM runs AS r "
        "WHERE r.stage = 'cross-eval' AND r.experiment = t.experiment AND r.trial_id = t.trial_id)"
    )
    best = _best_trial(trials)
    best_rows = (
        board.sql(
            f"SELECT confusion, classes FROM runs WHERE {SCORED} AND experiment = ? AND trial_id = ?",
            [best["experiment"], best["trial_id"]],
        )
        if best is not None
        else pd.DataFrame()
    )
    estimates = nested_estimates(board)
    cross_table = cross_eval_summary(board, experiment=experiment)
    verdicts = search_verdicts(board, cross_table, baseline=BASELINE)
    cross_folds = board.sql(CROSS_EVAL_FOLDS_SQL)
    cross_genotypes = {
        (str(r.experiment), str(r.genotype_hash)): str(r.genotype)
        for r in board.sql(
            "SELECT experiment, genotype_hash, any_value(genotype) AS genotype FROM runs "
            "WHERE stage = 'cross-eval' AND genotype IS NOT NULL GROUP BY ALL"
        ).itertuples()
    }
    bodies: dict[str, Callable[[], str]] = {
        "estimate": lambda: estimate_section(estimates),
        "ranked": lambda: ranked_section(trials, genotypes),
        "pareto": lambda: pareto_section(trials),
        "depth-seed": lambda: depth_seed_section(per_trial),
        "fold-heatmap": lambda: fold_heatmap_section(trials, folds),
        "pruning": lambda: pruning_section(runs, statuses),
        "confusion": lambda: confusion_section(best, best_rows),
        "cells": lambda: cells_section(_best_genotype(board, genotypes) if not genotypes.empty else None),
        "cross-eval": lambda: cross_eval_section(cross_table, cross_folds, cross_genotypes, verdicts),
    }
    sections = "".join(
        f'<section id="{key}"><h2>{html.escape(title)}</h2>{bodies[key]()}</section>' for key, title in SECTIONS
    )
    title = f"sernas report: {experiment}" if experiment else "sernas report"
    toc = "".join(f'<li><a href="#{key}">{html.escape(heading)}</a></li>' for key, heading in SECTIONS)
    failed = int(board.sql(f"SELECT count(*) AS n FROM runs WHERE {SEARCH} AND status = 'failed'")["n"][0])
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Leaderboard <code>{html.escape(storage)}</code>; {len(trials)} trial(s) with finished folds, "
        f"{failed} failed run(s) left out of the rankings; written {created}.</p>"
        f"{_damage_note(board)}{_speaker_note(board)}{_absent_note(board)}<nav><ul>{toc}</ul></nav>{sections}</body></html>\n"
    )


def write_report(
    storage: str | os.PathLike[str] | StorageLocation, *, experiment: str | None = None, out: str | os.PathLike[str]
) -> Path:
    """Write the HTML report of ``experiment`` (every experiment when None) to ``out``, atomically.

    Returns the path written. The page embeds its figures and style, so it opens offline.
    """
    with connect(storage, experiment=experiment, materialize=True) as board:
        page = _render(board, experiment=experiment, storage=str(getattr(storage, "display", storage)))
    return write_text_atomically(Path(out), page)
