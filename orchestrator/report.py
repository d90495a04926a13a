"""One self-contained HTML report of an experiment's leaderboard.

``write_report(storage, experiment=..., out=...)`` queries the leaderboard views
(``orchestrator.leaderboard``) and writes a single HTML page that opens offline: every figure is
a base64 PNG drawn by matplotlib (Agg, no pyplot state), the style sheet is inline, and no
external script, font or image is referenced. Sections (each ``<section id=...>``):

``ranked``        trials ranked by mean test UA over folds (complete first) and the genotype table
``pareto``        mean UA vs parameter count per trial, Pareto front (max UA, min params) highlighted
``depth-seed``    mean UA per trial by cell depth (``layers``) and by seed
``fold-heatmap``  per-fold UA of the top trials (rows trials, columns folds)
``pruning``       trials finished and trial-epochs spent, completed vs pruned, over time
``confusion``     confusion matrix of the best trial, summed over its folds
``cells``         the best genotype's normal and reduction cells (nodes, edges labelled with ops)

A section without data shows one sentence instead. Damaged part files are listed in a note.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from orchestrator.leaderboard import Leaderboard, StorageLocation, connect
from search_space.genotype import Genotype
from trainers.atomic_io import write_text_atomically

__all__ = ["write_report", "pareto_front", "SECTIONS"]

SECTIONS: tuple[tuple[str, str], ...] = (
    ("ranked", "Ranked trials and genotypes"),
    ("pareto", "UA vs parameter count"),
    ("depth-seed", "UA by cell depth and by seed"),
    ("fold-heatmap", "Per-fold UA of the top trials"),
    ("pruning", "Trial-epochs spent vs pruned over time"),
    ("confusion", "Confusion matrix of the best trial"),
    ("cells", "Cells of the best genotype"),
)
TOP_TRIALS = 15  # rows of the fold heatmap
_SCORED = "status IN ('completed', 'pruned') AND ua IS NOT NULL"
_COLORS = {"completed": "#1f77b4", "pruned": "#d62728", "other": "#7f7f7f"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:72em;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.text{text-align:left;font-family:ui-monospace,monospace}
tr.incomplete td{color:#888}
.note{background:#fff6e0;border:1px solid #e8c36a;padding:.5em 1em;font-size:.9em}
.empty{color:#777;font-style:italic}img{max-width:100%;height:auto}
"""


# ------------------------------------------------------------------------------------ helpers
def _figure_html(fig: Figure, alt: str) -> str:
    """The figure as an ``<img>`` with a base64 PNG (self-contained, no id clashes between figures)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _empty(sentence: str) -> str:
    return f'<p class="empty">{html.escape(sentence)}</p>'


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "<td>–</td>"
    if isinstance(value, (bool, np.bool_)):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (float, np.floating)):
        return f"<td>{value:.4f}</td>" if abs(value) < 10 else f"<td>{value:,.0f}</td>"
    if isinstance(value, (int, np.integer)):
        return f"<td>{value:,}</td>" if abs(int(value)) >= 10_000 else f"<td>{int(value)}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def _table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """An HTML table of ``columns`` (every value escaped); entries missing folds are greyed."""
    columns = [name for name in columns if name in frame.columns]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    complete = frame["complete"].astype(bool).tolist() if "complete" in frame else [True] * len(frame)
    rows = ["<tr>" if whole else '<tr class="incomplete">' for whole in complete]
    rows = [
        start + "".join(_cell(record[name]) for name in columns) + "</tr>"
        for start, record in zip(rows, frame[columns].to_dict("records"), strict=True)
    ]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _label(frame: pd.DataFrame) -> pd.Series:
    """Row labels: ``trial_id``, prefixed by the experiment when the report spans several."""
    if frame["experiment"].nunique() > 1:
        return frame["experiment"].astype(str) + "/" + frame["trial_id"].astype(str)
    return frame["trial_id"].astype(str)


def pareto_front(ua: Sequence[float], params: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (UA at least as high and params at most as low,
    one of them strictly), sorted by parameter count."""
    points = [
        (p, u, i) for i, (u, p) in enumerate(zip(ua, params, strict=True)) if not (math.isnan(u) or math.isnan(p))
    ]
    front = []
    best_ua = -math.inf
    for _p, u, i in sorted(points, key=lambda t: (t[0], -t[1])):
        if u > best_ua:
            front.append(i)
            best_ua = u
    return front


# ----------------------------------------------------------------------------------- sections
def _ranked_section(trials: pd.DataFrame, genotypes: pd.DataFrame) -> str:
    if trials.empty:
        return _empty("The leaderboard has no completed folds yet.")
    trial_columns = [
        "experiment",
        "rank",
        "trial_id",
        "mean_ua",
        "std_ua",
        "mean_wa",
        "mean_macro_f1",
        "folds_covered",
        "n_folds",
        "complete",
        "trial_status",
        "seed",
        "mean_params",
        "total_seconds",
        "params_json",
    ]
    genotype_columns = [
        "experiment",
        "rank",
        "genotype_hash",
        "mean_ua",
        "std_ua",
        "mean_wa",
        "mean_macro_f1",
        "folds_covered",
        "n_folds",
        "complete",
        "trials",
        "seeds",
        "runs",
        "pruned_runs",
        "mean_params",
        "total_seconds",
    ]
    if trials["experiment"].nunique() == 1:
        trial_columns.remove("experiment")
        genotype_columns.remove("experiment")
    return (
        "<p>Mean test UA over the speaker-independent folds (each fold weighs the same); "
        "entries missing folds (greyed) are ranked after every complete one.</p>"
        "<h3>Trials</h3>" + _table(trials, trial_columns) + "<h3>Genotypes</h3>" + _table(genotypes, genotype_columns)
    )


def _pareto_section(trials: pd.DataFrame) -> str:
    points = trials.dropna(subset=["mean_ua", "mean_params"]).reset_index(drop=True)
    if points.empty:
        return _empty("No trial has both a UA and a parameter count.")
    front = points.loc[pareto_front(points["mean_ua"].tolist(), points["mean_params"].tolist())]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    complete = points["complete"].astype(bool)
    ax.scatter(
        points.loc[complete, "mean_params"],
        points.loc[complete, "mean_ua"],
        color=_COLORS["other"],
        alpha=0.7,
        label="trials (all folds)",
    )
    if (~complete).any():
        ax.scatter(
            points.loc[~complete, "mean_params"],
            points.loc[~complete, "mean_ua"],
            facecolors="none",
            edgecolors=_COLORS["other"],
            label="trials (folds missing)",
        )
    ax.step(front["mean_params"], front["mean_ua"], where="post", color=_COLORS["pruned"], lw=1.5)
    ax.scatter(front["mean_params"], front["mean_ua"], color=_COLORS["pruned"], zorder=3, label="Pareto front")
    for row in front.itertuples():
        ax.annotate(
            str(row.trial_id), (row.mean_params, row.mean_ua), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    ax.set_xscale("log" if points["mean_params"].max() > 20 * max(points["mean_params"].min(), 1) else "linear")
    ax.set_xlabel("trainable parameters (mean over folds)")
    ax.set_ylabel("mean test UA over folds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    table = _table(front.sort_values("mean_params"), ["trial_id", "mean_ua", "mean_params", "folds_covered"])
    return _figure_html(fig, "UA vs parameter count") + "<h3>Pareto front</h3>" + table


def _strip_box(ax: Any, frame: pd.DataFrame, key: str, xlabel: str) -> None:
    groups = sorted(frame[key].dropna().unique())
    values = [frame.loc[frame[key] == group, "ua"].to_numpy() for group in groups]
    ax.boxplot(values, positions=range(len(groups)), widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)  # jitter, reproducible
    for position, group in enumerate(groups):
        rows = frame[frame[key] == group]
        colors = [_COLORS.get(status, _COLORS["other"]) for status in rows["status"]]
        ax.scatter(position + rng.uniform(-0.12, 0.12, len(rows)), rows["ua"], s=14, alpha=0.8, c=colors)
    ax.set_xticks(range(len(groups)), [str(int(g)) if float(g).is_integer() else str(g) for g in groups])
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="y")


def _depth_seed_section(per_trial: pd.DataFrame) -> str:
    if per_trial.empty:
        return _empty("No completed folds to group by depth or seed.")
    fig = Figure(figsize=(10, 4))
    by_depth, by_seed = fig.subplots(1, 2, sharey=True)
    depth = per_trial.dropna(subset=["layers"])
    if depth.empty:
        by_depth.text(0.5, 0.5, "no layers recorded", ha="center", va="center", transform=by_depth.transAxes)
    else:
        _strip_box(by_depth, depth, "layers", "cells in the network (layers)")
    _strip_box(by_seed, per_trial, "seed", "seed")
    by_depth.set_ylabel("mean test UA of a trial over its folds")
    return (
        "<p>One point per trial (its mean UA over its folds; red: pruned trials); boxes show the spread.</p>"
        + _figure_html(fig, "UA by depth and by seed")
    )


def _fold_heatmap_section(trials: pd.DataFrame, folds: pd.DataFrame) -> str:
    if trials.empty or folds.empty:
        return _empty("No per-fold UA to show.")
    top = trials.sort_values(["experiment", "rank"]).groupby("experiment").head(TOP_TRIALS)
    keys = list(zip(top["experiment"], top["trial_id"], strict=True))
    labels = _label(top).tolist()
    n_folds = int(max(folds["fold"].max(), top["n_folds"].max()))
    grid = np.full((len(keys), n_folds), np.nan)
    index = {key: row for row, key in enumerate(keys)}
    for record in folds.itertuples():
        row = index.get((record.experiment, record.trial_id))
        if row is not None:
            grid[row, int(record.fold) - 1] = record.ua
    fig = Figure(figsize=(1.2 + 0.7 * n_folds, 1 + 0.35 * len(keys)))
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", vmin=np.nanmin(grid), vmax=np.nanmax(grid)
    )
    for (row, col), value in np.ndenumerate(grid):
        ax.text(
            col,
            row,
            "–" if math.isnan(value) else f"{value:.3f}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if not math.isnan(value) and value < np.nanmean(grid) else "black",
        )
    ax.set_xticks(range(n_folds), [str(k + 1) for k in range(n_folds)])
    ax.set_yticks(range(len(keys)), labels, fontsize=8)
    ax.set_xlabel("fold")
    fig.colorbar(image, ax=ax, label="test UA")
    return (
        f"<p>The {len(keys)} best trials (rank order); '–' marks a fold the trial did not finish.</p>"
        + _figure_html(fig, "per-fold UA heatmap")
    )


def _cumulative(ax: Any, when: pd.Series, amount: pd.Series, origin: Any, *, color: str, label: str) -> None:
    """A step curve of ``amount`` summed over time, starting from 0 at ``origin``."""
    xs = pd.concat([pd.Series([origin]), when], ignore_index=True)
    ys = np.concatenate([[0], amount.cumsum().to_numpy()])
    ax.plot(xs, ys, drawstyle="steps-post", marker="o", markersize=3, color=color, label=label)


def _pruning_section(runs: pd.DataFrame, statuses: pd.DataFrame) -> str:
    finished = statuses[statuses["status"].isin(["completed", "pruned"])]
    if runs.empty and finished.empty:
        return _empty("No trial has finished yet.")
    fig = Figure(figsize=(10, 4))
    spent, count = fig.subplots(1, 2)
    totals = {}
    for status in ("completed", "pruned"):
        rows = runs[runs["status"] == status].sort_values("written_at")
        totals[status] = int(rows["epochs"].sum())
        if not rows.empty:
            _cumulative(
                spent,
                rows["written_at"],
                rows["epochs"],
                runs["written_at"].min(),
                color=_COLORS[status],
                label=f"{status} trials ({totals[status]} epochs)",
            )
        done = finished[finished["status"] == status].sort_values("updated_at")
        if not done.empty:
            _cumulative(
                count,
                done["updated_at"],
                pd.Series(1, index=done.index),
                finished["updated_at"].min(),
                color=_COLORS[status],
                label=f"{status} ({len(done)})",
            )
    spent.set_ylabel("trial-epochs (search + evaluation), cumulative")
    count.set_ylabel("trials finished, cumulative")
    for ax in (spent, count):
        ax.set_xlabel("time (UTC)")
        ax.grid(alpha=0.3)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    all_epochs = sum(totals.values())
    share = f" ({totals['pruned'] / all_epochs:.0%})" if all_epochs else ""
    n_pruned = int((finished["status"] == "pruned").sum())
    text = (
        f"<p>{n_pruned} of {len(finished)} finished trials were pruned; they consumed "
        f"{totals['pruned']} of {all_epochs} trial-epochs{share}.</p>"
    )
    if statuses["status"].eq("pruned").sum() == 0:
        text += _empty("No trial was pruned.")
    return text + _figure_html(fig, "trial-epochs spent vs pruned over time")


def _confusion_section(best: pd.Series | None, rows: pd.DataFrame) -> str:
    matrices = [json.loads(text) for text in rows["confusion"].dropna()] if not rows.empty else []
    if best is None or not matrices:
        return _empty("The best trial recorded no confusion matrix.")
    total = np.sum([np.asarray(m, dtype=np.int64) for m in matrices], axis=0)
    classes = json.loads(rows["classes"].iloc[0])
    if len(classes) != total.shape[0]:
        classes = [str(k) for k in range(total.shape[0])]
    recall = total / np.maximum(total.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.5 + 0.8 * len(classes), 1 + 0.8 * len(classes)))
    ax = fig.add_subplot()
    image = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(total):
        ax.text(
            col,
            row,
            f"{count}\n{recall[row, col]:.0%}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if recall[row, col] > 0.5 else "black",
        )
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, label="recall (row-normalised)")
    return (
        f"<p>Trial <code>{html.escape(str(best['trial_id']))}</code>, summed over its {len(matrices)} "
        f"folds ({int(total.sum())} test utterances); UA = mean of the diagonal = "
        f"{np.mean(np.diag(recall)):.4f}.</p>" + _figure_html(fig, "confusion matrix")
    )


def _bezier_middle(start: tuple[float, float], end: tuple[float, float], rad: float) -> tuple[float, float]:
    """Middle of matplotlib's ``arc3`` curve: a quadratic Bezier whose control point is the chord's
    midpoint moved by ``rad`` times the chord turned clockwise (equal axis scales)."""
    (x0, y0), (x1, y1) = start, end
    return (x0 + x1) / 2 + rad * (y1 - y0) / 2, (y0 + y1) / 2 - rad * (x1 - x0) / 2


def _clear_bend(
    start: tuple[float, float], end: tuple[float, float], others: Sequence[tuple[float, float]], *, prefer: float
) -> float:
    """The ``arc3`` bend (among a few) whose curve passes farthest from the other nodes."""
    (x0, y0), (x1, y1) = start, end
    t = np.linspace(0.15, 0.85, 15)[:, None]

    def clearance(rad: float) -> float:
        cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
        curve = (1 - t) ** 2 * np.array([x0, y0]) + 2 * (1 - t) * t * np.array([cx, cy]) + t**2 * np.array([x1, y1])
        if not others:
            return math.inf
        return float(min(np.hypot(*(curve - np.array(xy)).T).min() for xy in others))

    candidates = [prefer, -prefer, 2 * prefer, -2 * prefer]
    best = max(candidates, key=lambda rad: min(clearance(rad), 0.45))  # ties (all clear) keep the preferred bend
    return best


def _draw_cell(ax: Any, edges: Sequence[tuple[str, int]], concat: Sequence[int], title: str) -> None:
    """Inputs c_{k-2}, c_{k-1} on the left, nodes 0..n-1 left to right, c_{k} on the right;
    every edge an arrow labelled with its op, concatenated nodes joined to c_{k} by dashed arrows."""
    nodes = len(edges) // 2
    where = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for node in range(nodes):
        where[node + 2] = (node + 1.0, 0.6 if node % 2 == 0 else -0.6)
    out = (nodes + 1.0, 0.0)
    names = {0: "c_{k-2}", 1: "c_{k-1}", **{node + 2: str(node) for node in range(nodes)}}
    box = {"boxstyle": "round,pad=0.3", "ec": "#333"}
    for state, (x, y) in where.items():
        ax.text(
            x,
            y,
            f"${names[state]}$" if state < 2 else names[state],
            ha="center",
            va="center",
            fontsize=10,
            bbox={**box, "fc": "#cfe2f3" if state < 2 else "#f4cccc"},
            zorder=3,
        )
    ax.text(*out, "$c_{k}$", ha="center", va="center", fontsize=10, bbox={**box, "fc": "#d9ead3"}, zorder=3)
    for number, (op, source) in enumerate(edges):
        target = number // 2 + 2
        start, end = where[source], where[target]
        others = [xy for state, xy in where.items() if state not in (source, target)] + [out]
        rad = _clear_bend(start, end, others, prefer=0.25 if number % 2 == 0 else -0.25)
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#555",
                "shrinkA": 14,
                "shrinkB": 14,
                "connectionstyle": f"arc3,rad={rad}",
            },
            zorder=1,
        )
        lx, ly = _bezier_middle(start, end, rad)
        ax.text(
            lx,
            ly,
            op,
            fontsize=7,
            ha="center",
            va="center",
            zorder=2,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        )
    for state in concat:
        ax.annotate(
            "",
            xy=out,
            xytext=where[state],
            arrowprops={"arrowstyle": "-|>", "color": "#999", "linestyle": "--", "shrinkA": 12, "shrinkB": 14},
        )
    ax.set_xlim(-0.6, nodes + 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.set_aspect("equal")  # arc3 bends in display space: equal scales keep labels on their arcs
    ax.set_title(title)
    ax.axis("off")


def _cells_section(best_genotype: tuple[str, str] | None) -> str:
    if best_genotype is None:
        return _empty("The best trials have no searched genotype (e.g. baseline models only).")
    hash_, text = best_genotype
    try:
        genotype = Genotype.from_json(text)
    except ValueError as exc:
        return _empty(f"The best genotype {hash_} cannot be drawn: {exc}")
    width = 1.6 * (max(genotype.normal_nodes, genotype.reduce_nodes) + 2.2)
    fig = Figure(figsize=(width, 2 * 1.6 * 3.2 + 0.8))
    normal, reduce = fig.subplots(2, 1)
    _draw_cell(normal, genotype.normal, genotype.normal_concat, "normal cell")
    _draw_cell(reduce, genotype.reduce, genotype.reduce_concat, "reduction cell")
    return (
        f"<p>Genotype <code>{html.escape(hash_)}</code> (the best-ranked genotype); dashed arrows: nodes "
        f"concatenated into the cell output.</p><pre>{html.escape(genotype.to_json())}</pre>"
        + _figure_html(fig, "normal and reduction cells")
    )


# -------------------------------------------------------------------------------------- queries
def _best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The best trial over the report: complete first, then by mean UA."""
    if trials.empty:
        return None
    ordered = trials.sort_values(["complete", "mean_ua", "folds_covered"], ascending=[False, False, False])
    return ordered.iloc[0]


def _best_genotype(board: Leaderboard, genotypes: pd.DataFrame) -> tuple[str, str] | None:
    """(hash, JSON) of the best-ranked genotype that has a genotype JSON (baselines have none)."""
    ordered = genotypes.sort_values(["complete", "mean_ua", "folds_covered"], ascending=[False, False, False])
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


def _render(board: Leaderboard, *, experiment: str | None, storage: str) -> str:
    trials = board.summary("trial")
    genotypes = board.summary("genotype")
    folds = board.sql(f"SELECT experiment, trial_id, fold, ua FROM runs WHERE {_SCORED}")
    per_trial = board.sql(
        f"SELECT experiment, trial_id, any_value(layers) AS layers, any_value(seed) AS seed, "
        f"max(status) AS status, avg(ua) AS ua FROM runs WHERE {_SCORED} GROUP BY ALL"
    )
    runs = board.sql(
        "SELECT experiment, trial_id, status, written_at, coalesce(search_epochs_run, 0) + "
        "coalesce(eval_epochs, best_epoch, 0) AS epochs FROM runs"
    )
    statuses = board.sql("SELECT experiment, trial_id, status, updated_at FROM trials")
    best = _best_trial(trials)
    best_rows = (
        board.sql(
            f"SELECT confusion, classes FROM runs WHERE {_SCORED} AND experiment = ? AND trial_id = ?",
            [best["experiment"], best["trial_id"]],
        )
        if best is not None
        else pd.DataFrame()
    )
    bodies: dict[str, Callable[[], str]] = {
        "ranked": lambda: _ranked_section(trials, genotypes),
        "pareto": lambda: _pareto_section(trials),
        "depth-seed": lambda: _depth_seed_section(per_trial),
        "fold-heatmap": lambda: _fold_heatmap_section(trials, folds),
        "pruning": lambda: _pruning_section(runs, statuses),
        "confusion": lambda: _confusion_section(best, best_rows),
        "cells": lambda: _cells_section(_best_genotype(board, genotypes) if not genotypes.empty else None),
    }
    sections = "".join(
        f'<section id="{key}"><h2>{html.escape(title)}</h2>{bodies[key]()}</section>' for key, title in SECTIONS
    )
    title = f"sernas report: {experiment}" if experiment else "sernas report"
    toc = "".join(f'<li><a href="#{key}">{html.escape(heading)}</a></li>' for key, heading in SECTIONS)
    failed = int(board.sql("SELECT count(*) AS n FROM runs WHERE status = 'failed'")["n"][0])
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Leaderboard <code>{html.escape(storage)}</code>; {len(trials)} trial(s) with finished folds, "
        f"{failed} failed run(s) left out of the rankings; written {created}.</p>"
        f"{_damage_note(board)}<nav><ul>{toc}</ul></nav>{sections}</body></html>\n"
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
