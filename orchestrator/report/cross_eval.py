"""The report's cross-eval section: genotype x fold heatmap of test UA (seen cells marked), the
ranked cross-eval table with the baseline comparison, and the top cross-evaluated cells."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from orchestrator.leaderboard.cross_eval import CROSS_EVAL_COLUMNS
from orchestrator.leaderboard.search_value import SearchVerdict
from orchestrator.report.cells import cells_section
from orchestrator.report.html import empty, figure_html, html_table

__all__ = ["CROSS_EVAL_FOLDS_SQL", "cross_eval_section"]

CROSS_EVAL_FOLDS_SQL = """
SELECT experiment, genotype_hash, fold, avg(test_ua) AS test_ua, bool_or(test_seen_in_search) AS seen,
       any_value(dataset) AS dataset
FROM runs WHERE stage = 'cross-eval' AND status = 'completed' AND test_ua IS NOT NULL
GROUP BY ALL
"""
"""Test UA per (genotype, fold), the mean over seeds, whether the genotype's search saw the fold's test speakers,
and the fold's dataset (a cross-corpus fold's ``train->test`` corpora label its column)."""

TOP_CELLS = 2


def _heatmap(table: pd.DataFrame, folds: pd.DataFrame) -> str:
    keys = list(zip(table["experiment"], table["genotype_hash"], strict=True))
    several = table["experiment"].nunique() > 1
    labels = [f"{e}/{g}" if several else str(g) for e, g in keys]
    n_folds = int(max(folds["fold"].max(), table["n_folds"].max()))
    grid = np.full((len(keys), n_folds), np.nan)
    seen = np.zeros((len(keys), n_folds), dtype=bool)
    index = {key: row for row, key in enumerate(keys)}
    for record in folds.itertuples():
        row = index.get((record.experiment, record.genotype_hash))
        if row is not None:
            grid[row, int(record.fold) - 1] = record.test_ua
            seen[row, int(record.fold) - 1] = bool(record.seen) if not pd.isna(record.seen) else False
    fig = Figure(figsize=(1.6 + 0.8 * n_folds, 1 + 0.4 * len(keys)))
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", vmin=np.nanmin(grid), vmax=np.nanmax(grid)
    )
    for (row, col), value in np.ndenumerate(grid):
        text = "–" if math.isnan(value) else f"{value:.3f}" + ("*" if seen[row, col] else "")
        dark = not math.isnan(value) and value < np.nanmean(grid)
        ax.text(col, row, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        if seen[row, col]:  # hatched as well as starred, so they read as marked without colour
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, hatch="//", edgecolor="white", lw=0))
    corpora = {
        int(r.fold): str(r.dataset) for r in folds.itertuples() if isinstance(r.dataset, str) and "->" in r.dataset
    }
    ax.set_xticks(
        range(n_folds), [f"{k + 1}\n{corpora[k + 1]}" if k + 1 in corpora else str(k + 1) for k in range(n_folds)]
    )
    ax.set_yticks(range(len(keys)), labels, fontsize=8)
    ax.set_xlabel("fold")
    fig.colorbar(image, ax=ax, label="test UA (mean over seeds)")
    return figure_html(fig, "cross-eval test UA per genotype and fold")


def cross_eval_section(
    table: pd.DataFrame,
    folds: pd.DataFrame,
    genotypes: dict[tuple[str, str], str],
    verdicts: Sequence[SearchVerdict] = (),
) -> str:
    """``table``: ``cross_eval_summary``; ``folds``: rows of ``CROSS_EVAL_FOLDS_SQL``; ``genotypes``:
    (experiment, hash) -> genotype JSON of the cross-evaluated genotypes that have one; ``verdicts``:
    where each searched genotype falls among the random controls (first, one line each)."""
    if table.empty:
        return empty(
            "No cross-eval rows: run sernas cross-eval --top N --genotype baseline to retrain the best genotypes "
            "on every fold."
        )
    verdict_lines = "".join(
        f"<p><strong>{html.escape(verdict.experiment)}: {html.escape(verdict.line())}</strong></p>"
        for verdict in verdicts
    )
    intro = verdict_lines + (
        "<p>Genotypes retrained from scratch on every fold (<code>sernas cross-eval</code>), ranked by mean "
        "validation UA over folds x seeds; test UA is reported. <strong>*</strong> and hatching mark folds whose "
        "test speakers trained or validated the search that found the genotype: its test UA there is optimistic, "
        "and so is its comparison with the baseline. Publish the nested estimate for the search procedure "
        "(see docs/cross_eval.md).</p>"
    )
    cells = []
    for record in table.itertuples():
        text = genotypes.get((record.experiment, record.genotype_hash))
        if text is not None and len(cells) < TOP_CELLS:
            cells.append(
                f"<h3>Rank {int(record.rank)}: <code>{html.escape(str(record.genotype_hash))}</code></h3>"
                + cells_section((str(record.genotype_hash), text))
            )
    return intro + _heatmap(table, folds) + html_table(table, CROSS_EVAL_COLUMNS) + "".join(cells)
