"""The report's sections that read the leaderboard's tables: ranking, Pareto front, depth and
seed, per-fold heatmap, pruning over time, confusion matrix."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from orchestrator.report.html import COLORS, empty, figure_html, html_table, trial_labels
from orchestrator.selection import NestedEstimate

TOP_TRIALS = 15  # rows of the fold heatmap


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
def estimate_section(estimates: Mapping[str, NestedEstimate]) -> str:
    """The number to publish first, the optimistic one after it, and the per-fold choices."""
    if not estimates:
        return empty("No fold has a finished trial yet.")
    parts = []
    for name, estimate in estimates.items():
        spread = "" if math.isnan(estimate.std_test_ua) else f" ± {estimate.std_test_ua:.4f}"
        optimistic = (
            "No complete trial yet, so there is no optimistic figure to compare."
            if estimate.best_mean_test_ua is None
            else f"Optimistic figure (on each fold the trial with the best <em>test</em> UA, among "
            f"{estimate.complete_trials} complete trial(s)): <strong>{estimate.best_mean_test_ua:.4f}</strong> "
            f"(gap {estimate.gap:+.4f}). It lets the test speakers pick the winner: do not publish it as the "
            "result of the search."
        )
        picks = pd.DataFrame([vars(pick) for pick in estimate.picks])
        per_dataset = estimate.by_dataset()
        per_corpus = (
            "<p>Per test corpus (the chosen trial's test UA, mean over the folds testing on it): "
            + ", ".join(f"{html.escape(name)} <strong>{ua:.4f}</strong>" for name, ua in per_dataset.items())
            + ". Every fold trained, validated and chose on its training corpora only.</p>"
            if per_dataset
            else ""
        )
        pooled = estimate.pooled
        pooled_text = (
            "<p>No pooled figure: the chosen trials' predictions are not stored (rows written before them).</p>"
            if pooled is None
            else f"<p>Pooled over every outer fold's {pooled.utterances} test utterances ({pooled.speakers} "
            f"speakers; each utterance once, the mean vote of the chosen trial's {pooled.networks} network(s)): "
            f"<strong>UA {pooled.ua:.4f} [{pooled.ua_interval[0]:.4f}, {pooled.ua_interval[1]:.4f}]</strong>, "
            f"WA {pooled.wa:.4f} [{pooled.wa_interval[0]:.4f}, {pooled.wa_interval[1]:.4f}], macro-F1 "
            f"{pooled.macro_f1:.4f} [{pooled.macro_f1_interval[0]:.4f}, {pooled.macro_f1_interval[1]:.4f}] "
            f"({pooled.confidence:.0%} percentile bootstrap over speakers, {pooled.resamples} resamples, seed "
            f"{pooled.seed}).</p>"
            + html_table(
                pd.DataFrame({"speaker": list(pooled.per_speaker_ua), "test_ua": list(pooled.per_speaker_ua.values())}),
                ["speaker", "test_ua"],
            )
        )
        parts.append(
            f"<h3>{html.escape(name)}</h3><p>Nested estimate (publish this): <strong>UA "
            f"{estimate.mean_test_ua:.4f}{spread}</strong> over {len(estimate.picks)}/{estimate.n_folds} outer "
            "folds. Each outer fold has its own Optuna study, which proposed, pruned and chose among that fold's "
            "trials on its non-test speakers only; the chosen trial's test UA on that fold is counted, and the test "
            f"speakers chose nothing.</p>{per_corpus}{pooled_text}<p>{optimistic}</p>"
            + html_table(
                picks,
                ["fold", *(["dataset"] if per_dataset else []), "trial_id", "candidates", "genotype_hash", "valid_ua"]
                + ["test_ua", "oracle_test_ua"],
            )
        )
    return "".join(parts)


def ranked_section(trials: pd.DataFrame, genotypes: pd.DataFrame) -> str:
    if trials.empty:
        return empty("The leaderboard has no completed folds yet.")
    metrics = [
        "mean_valid_ua",
        "std_valid_ua",
        "mean_test_ua",
        "std_test_ua",
        "mean_test_wa",
        "mean_test_macro_f1",
        "folds_covered",
        "n_folds",
        "complete",
    ]
    trial_columns = ["experiment", "rank", "trial_id", "outer_fold", *metrics, "runs", "trial_status", "seed"]
    trial_columns += ["collapsed_searches", "mean_alpha_entropy", "mean_params", "total_seconds", "params_json"]
    genotype_columns = ["experiment", "rank", "genotype_hash", *metrics, "trials", "seeds", "runs", "pruned_runs"]
    genotype_columns += ["collapsed_searches", "mean_alpha_entropy"]
    genotype_columns += ["mean_params", "total_seconds"]
    if trials["experiment"].nunique() == 1:
        trial_columns.remove("experiment")
        genotype_columns.remove("experiment")
    return (
        "<p>Ranked by mean <strong>validation</strong> UA (a trial: over the inner folds of its one outer fold; "
        "a genotype or configuration: over the outer folds it was found on, each weighing the same); test UA is "
        "reported beside it and never orders anything. Incomplete entries (greyed: a trial its study recorded as "
        "pruned, failed or unfinished; in older leaderboards, one missing folds) are ranked after every complete "
        "one.</p>"
        + _collapse_note(trials)
        + "<h3>Trials</h3>"
        + html_table(trials, trial_columns)
        + "<h3>Genotypes</h3>"
        + html_table(genotypes, genotype_columns)
    )


def _collapse_note(trials: pd.DataFrame) -> str:
    """A warning naming the trials with searches the collapse guard stopped (``collapsed_searches``)."""
    if "collapsed_searches" not in trials or not (trials["collapsed_searches"] > 0).any():
        return ""
    collapsed = trials[trials["collapsed_searches"] > 0]
    names = ", ".join(
        f"<code>{html.escape(str(t))}</code> ({int(n)})"
        for t, n in zip(collapsed["trial_id"], collapsed["collapsed_searches"])
    )
    return (
        f'<div class="note"><strong>Collapsed searches</strong> (the strongest operation was parameter-free on every '
        f"edge, so the search stopped early; column <code>collapsed_searches</code>): {names}.</div>"
    )


def pareto_section(trials: pd.DataFrame) -> str:
    """Mean validation UA against size: the front is a choice between trials, so validation draws it."""
    points = trials.dropna(subset=["mean_valid_ua", "mean_params"]).reset_index(drop=True)
    if points.empty:
        return empty("No trial has both a validation UA and a parameter count.")
    front = points.loc[pareto_front(points["mean_valid_ua"].tolist(), points["mean_params"].tolist())]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    complete = points["complete"].astype(bool)
    ax.scatter(
        points.loc[complete, "mean_params"],
        points.loc[complete, "mean_valid_ua"],
        color=COLORS["other"],
        alpha=0.7,
        label="trials (all folds)",
    )
    if (~complete).any():
        ax.scatter(
            points.loc[~complete, "mean_params"],
            points.loc[~complete, "mean_valid_ua"],
            facecolors="none",
            edgecolors=COLORS["other"],
            label="trials (folds missing)",
        )
    ax.step(front["mean_params"], front["mean_valid_ua"], where="post", color=COLORS["pruned"], lw=1.5)
    ax.scatter(front["mean_params"], front["mean_valid_ua"], color=COLORS["pruned"], zorder=3, label="Pareto front")
    for row in front.itertuples():
        ax.annotate(
            str(row.trial_id),
            (row.mean_params, row.mean_valid_ua),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xscale("log" if points["mean_params"].max() > 20 * max(points["mean_params"].min(), 1) else "linear")
    ax.set_xlabel("trainable parameters (mean over folds)")
    ax.set_ylabel("mean validation UA over folds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    table = html_table(
        front.sort_values("mean_params"),
        ["trial_id", "mean_valid_ua", "mean_test_ua", "mean_params", "folds_covered"],
    )
    return figure_html(fig, "UA vs parameter count") + "<h3>Pareto front</h3>" + table


def _strip_box(ax: Any, frame: pd.DataFrame, key: str, xlabel: str) -> None:
    groups = sorted(frame[key].dropna().unique())
    values = [frame.loc[frame[key] == group, "test_ua"].to_numpy() for group in groups]
    ax.boxplot(values, positions=range(len(groups)), widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)  # jitter, reproducible
    for position, group in enumerate(groups):
        rows = frame[frame[key] == group]
        colors = [COLORS.get(status, COLORS["other"]) for status in rows["status"]]
        ax.scatter(position + rng.uniform(-0.12, 0.12, len(rows)), rows["test_ua"], s=14, alpha=0.8, c=colors)
    ax.set_xticks(range(len(groups)), [str(int(g)) if float(g).is_integer() else str(g) for g in groups])
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="y")


def depth_seed_section(per_trial: pd.DataFrame) -> str:
    if per_trial.empty:
        return empty("No completed folds to group by depth or seed.")
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
        + figure_html(fig, "UA by depth and by seed")
    )


def fold_heatmap_section(trials: pd.DataFrame, folds: pd.DataFrame) -> str:
    if trials.empty or folds.empty:
        return empty("No per-fold UA to show.")
    top = trials.sort_values(["experiment", "rank"]).groupby("experiment").head(TOP_TRIALS)
    keys = list(zip(top["experiment"], top["trial_id"], strict=True))
    labels = trial_labels(top).tolist()
    n_folds = int(max(folds["fold"].max(), top["n_folds"].max()))
    grid = np.full((len(keys), n_folds), np.nan)
    index = {key: row for row, key in enumerate(keys)}
    for record in folds.itertuples():
        row = index.get((record.experiment, record.trial_id))
        if row is not None:
            grid[row, int(record.fold) - 1] = record.test_ua
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
    return f"<p>The {len(keys)} best trials (rank order); '–' marks a fold the trial did not finish.</p>" + figure_html(
        fig, "per-fold UA heatmap"
    )


def _cumulative(ax: Any, when: pd.Series, amount: pd.Series, origin: Any, *, color: str, label: str) -> None:
    """A step curve of ``amount`` summed over time, starting from 0 at ``origin``."""
    xs = pd.concat([pd.Series([origin]), when], ignore_index=True)
    ys = np.concatenate([[0], amount.cumsum().to_numpy()])
    ax.plot(xs, ys, drawstyle="steps-post", marker="o", markersize=3, color=color, label=label)


def pruning_section(runs: pd.DataFrame, statuses: pd.DataFrame) -> str:
    finished = statuses[statuses["status"].isin(["completed", "pruned"])]
    if runs.empty and finished.empty:
        return empty("No trial has finished yet.")
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
                color=COLORS[status],
                label=f"{status} trials ({totals[status]} epochs)",
            )
        done = finished[finished["status"] == status].sort_values("updated_at")
        if not done.empty:
            _cumulative(
                count,
                done["updated_at"],
                pd.Series(1, index=done.index),
                finished["updated_at"].min(),
                color=COLORS[status],
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
        text += empty("No trial was pruned.")
    return text + figure_html(fig, "trial-epochs spent vs pruned over time")


def confusion_section(best: pd.Series | None, rows: pd.DataFrame) -> str:
    matrices = [json.loads(text) for text in rows["confusion"].dropna()] if not rows.empty else []
    if best is None or not matrices:
        return empty("The best trial recorded no confusion matrix.")
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
        f"{np.mean(np.diag(recall)):.4f}.</p>" + figure_html(fig, "confusion matrix")
    )
