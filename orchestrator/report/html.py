"""HTML pieces of the report: the inline style sheet, base64 figures, escaped tables."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

SEARCH = "stage = 'search'"  # the search's own sections; cross-eval rows have theirs
SCORED = f"{SEARCH} AND status IN ('completed', 'pruned') AND test_ua IS NOT NULL"
COLORS = {"completed": "#1f77b4", "pruned": "#d62728", "other": "#7f7f7f"}
CSS = """
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
def figure_html(fig: Figure, alt: str) -> str:
    """The figure as an ``<img>`` with a base64 PNG (self-contained, no id clashes between figures)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def empty(sentence: str) -> str:
    return f'<p class="empty">{html.escape(sentence)}</p>'


def table_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "<td>–</td>"
    if isinstance(value, (bool, np.bool_)):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (float, np.floating)):
        return f"<td>{value:.4f}</td>" if abs(value) < 10 else f"<td>{value:,.0f}</td>"
    if isinstance(value, (int, np.integer)):
        return f"<td>{value:,}</td>" if abs(int(value)) >= 10_000 else f"<td>{int(value)}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def html_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """An HTML table of ``columns`` (every value escaped); entries missing folds are greyed."""
    columns = [name for name in columns if name in frame.columns]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    complete = frame["complete"].astype(bool).tolist() if "complete" in frame else [True] * len(frame)
    rows = ["<tr>" if whole else '<tr class="incomplete">' for whole in complete]
    rows = [
        start + "".join(table_cell(record[name]) for name in columns) + "</tr>"
        for start, record in zip(rows, frame[columns].to_dict("records"), strict=True)
    ]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def trial_labels(frame: pd.DataFrame) -> pd.Series:
    """Row labels: ``trial_id``, prefixed by the experiment when the report spans several."""
    if frame["experiment"].nunique() > 1:
        return frame["experiment"].astype(str) + "/" + frame["trial_id"].astype(str)
    return frame["trial_id"].astype(str)
