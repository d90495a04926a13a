"""Drawing a genotype's normal and reduction cells (nodes, edges labelled with their ops), and its
sequence cell over time when it has one (else the fixed LSTM, which is not drawn)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from orchestrator.report.html import empty, figure_html
from search_space.genotype import Genotype


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


def draw_cell(ax: Any, edges: Sequence[tuple[str, int]], concat: Sequence[int], title: str) -> None:
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


def draw_sequence_cell(ax: Any, edges: Sequence[tuple[str, int]], title: str) -> None:
    """The sequence cell: its input (state 0, the projected CNN sequence) on the left, nodes 0..n-1
    left to right, every edge an arrow labelled with its op, the nodes averaged into the output."""
    nodes = (len(edges) + 1) // 2
    where = {0: (0.0, 0.0), **{node + 1: (node + 1.0, 0.6 if node % 2 == 0 else -0.6) for node in range(nodes)}}
    out = (nodes + 1.0, 0.0)
    box = {"boxstyle": "round,pad=0.3", "ec": "#333"}
    for state, (x, y) in where.items():
        label, colour = ("x", "#cfe2f3") if state == 0 else (str(state - 1), "#f4cccc")
        ax.text(x, y, label, ha="center", va="center", fontsize=10, bbox={**box, "fc": colour}, zorder=3)
    ax.text(*out, "mean", ha="center", va="center", fontsize=10, bbox={**box, "fc": "#d9ead3"}, zorder=3)
    for number, (op, source) in enumerate(edges):
        target = (number + 1) // 2 + 1  # node 0 has one edge, every later node two
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
    for state in range(1, nodes + 1):
        ax.annotate(
            "",
            xy=out,
            xytext=where[state],
            arrowprops={"arrowstyle": "-|>", "color": "#999", "linestyle": "--", "shrinkA": 12, "shrinkB": 14},
        )
    ax.set_xlim(-0.6, nodes + 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.axis("off")


def cells_section(best_genotype: tuple[str, str] | None) -> str:
    if best_genotype is None:
        return empty("The best trials have no searched genotype (e.g. baseline models only).")
    hash_, text = best_genotype
    try:
        genotype = Genotype.from_json(text)
    except ValueError as exc:
        return empty(f"The best genotype {hash_} cannot be drawn: {exc}")
    rows = 3 if genotype.sequence is not None else 2
    width = 1.6 * (max(genotype.normal_nodes, genotype.reduce_nodes, genotype.sequence_nodes) + 2.2)
    fig = Figure(figsize=(width, rows * 1.6 * 3.2 + 0.8))
    axes = fig.subplots(rows, 1)
    draw_cell(axes[0], genotype.normal, genotype.normal_concat, "normal cell")
    draw_cell(axes[1], genotype.reduce, genotype.reduce_concat, "reduction cell")
    if genotype.sequence is not None:
        draw_sequence_cell(axes[2], genotype.sequence, "sequence cell (over time)")
        stage = "the sequence cell over time, whose nodes are averaged into its output"
    else:
        stage = "the fixed LSTM over time (no searched sequence cell)"
    return (
        f"<p>Genotype <code>{html.escape(hash_)}</code> (the best-ranked genotype); dashed arrows: nodes "
        f"concatenated into the cell output. After the cells: {stage}.</p>"
        f"<pre>{html.escape(genotype.to_json())}</pre>"
        + figure_html(fig, "normal, reduction and sequence cells" if rows == 3 else "normal and reduction cells")
    )
