"""Checking rows before they are written: every error names the column and what it expected.

A bad row never reaches storage, so a query never meets a value of the wrong type, a NaN, a
fraction outside [0, 1] or a name that cannot be a folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator.leaderboard.schema import (
    FOLD_COLUMNS,
    FOLD_STATUSES,
    SCHEMA_VERSION,
    STAGES,
    TRIAL_COLUMNS,
    TRIAL_STATUSES,
    Column,
    FoldRow,
)
from orchestrator.names import check_name
from trainers.folds import SPEAKER_CHECKS

__all__ = ["validate_fold_row", "validate_trial_row"]

_ABSENT_CLASSES = ("test_absent_classes", "valid_absent_classes")  # JSON lists of names out of `classes`
_JSON_COLUMNS = {
    "params_json": dict,
    "genotype": dict,
    "classes": list,
    "confusion": list,
    "primitives": list,
    **dict.fromkeys(_ABSENT_CLASSES, list),
}
_COMPLETED_NEEDS = ("genotype_hash", "test_ua", "test_wa", "test_macro_f1")
_FRACTIONS = ("test_ua", "test_wa", "test_macro_f1", "valid_ua")


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _check_value(column: Column, value: Any) -> Any:
    """Return ``value`` as stored in ``column`` or raise ValueError naming the column."""
    if value is None:
        if column.required:
            raise ValueError(f"column {column.name!r} must not be null.")
        return None
    kind = column.type
    if pa.types.is_boolean(kind):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"column {column.name!r} must be a bool, but got {type(value).__name__} {value!r}.")
        return bool(value)
    if pa.types.is_integer(kind):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(
                f"column {column.name!r} must be an integer ({kind}), but got {type(value).__name__} {value!r}."
            )
        value = int(value)
        bits = kind.bit_width - 1
        if not -(2**bits) <= value < 2**bits:
            raise ValueError(f"column {column.name!r} must fit in {kind}, but got {value}.")
        return value
    if pa.types.is_floating(kind):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(
                f"column {column.name!r} must be a number ({kind}), but got {type(value).__name__} {value!r}."
            )
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(
                f"column {column.name!r} must be a finite number (use None when unknown), but got {value}."
            )
        return value
    if pa.types.is_timestamp(kind):
        if not isinstance(value, datetime):
            raise ValueError(
                f"column {column.name!r} must be a timezone-aware datetime, but got {type(value).__name__} {value!r}."
            )
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"column {column.name!r} must be a timezone-aware datetime, but got the naive {value}.")
        return value.astimezone(UTC)
    # strings; JSON columns also take the parsed value and store it canonically
    expected_json = _JSON_COLUMNS.get(column.name)
    if expected_json is not None:
        parsed = value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"column {column.name!r} must be JSON, but got {value[:80]!r}: {error}.") from None
        if not isinstance(parsed, expected_json):
            raise ValueError(
                f"column {column.name!r} must be a JSON {'object' if expected_json is dict else 'list'}"
                f" (or a {expected_json.__name__}), but got {type(parsed).__name__} {value!r:.80}."
            )
        try:
            return _canonical_json(parsed)
        except (TypeError, ValueError) as error:
            raise ValueError(f"column {column.name!r} holds a value JSON cannot store: {error}.") from None
    if not isinstance(value, str):
        raise ValueError(f"column {column.name!r} must be a string, but got {type(value).__name__} {value!r}.")
    return value


def _validate(columns: Sequence[Column], row: Mapping[str, Any], *, defaults: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError(
            f"a leaderboard row must be a FoldRow or a mapping of column -> value, but got {type(row).__name__}."
        )
    names = [c.name for c in columns]
    unknown = [key for key in row if key not in names]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; schema version {SCHEMA_VERSION} has: {', '.join(names)}.")
    full = {**defaults, **row}
    missing = [name for name in names if name not in full]
    if missing:
        raise ValueError(f"missing column(s) {missing}; give every column (None where a nullable one is unknown).")
    clean = {column.name: _check_value(column, full[column.name]) for column in columns}
    if clean["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"column 'schema_version' must be {SCHEMA_VERSION} (this writer's schema), "
            f"but got {clean['schema_version']}."
        )
    check_name("column 'experiment'", clean["experiment"])
    check_name("column 'trial_id'", clean["trial_id"])
    return clean


def validate_fold_row(row: FoldRow | Mapping[str, Any]) -> dict[str, Any]:
    """The row as stored (JSON canonical, ``written_at`` stamped), or ValueError naming the column.

    A mapping is accepted too, so that rows from elsewhere get the same checks.
    """
    if isinstance(row, FoldRow):
        row = row.to_dict()
    clean = _validate(FOLD_COLUMNS, row, defaults={"schema_version": SCHEMA_VERSION, "written_at": datetime.now(UTC)})
    if clean["status"] not in FOLD_STATUSES:
        raise ValueError(f"column 'status' must be one of {FOLD_STATUSES}, but got {clean['status']!r}.")
    if clean["stage"] not in STAGES:
        raise ValueError(f"column 'stage' must be one of {STAGES}, but got {clean['stage']!r}.")
    if clean["stage"] == "search":
        for name in ("source_trial_id", "source_fold", "test_seen_in_search"):
            if clean[name] is not None:
                raise ValueError(f"column {name!r} must be null in a search row, but got {clean[name]!r}.")
    if clean["speaker_check"] is not None and clean["speaker_check"] not in SPEAKER_CHECKS:
        raise ValueError(
            f"column 'speaker_check' must be one of {SPEAKER_CHECKS} (or null), but got {clean['speaker_check']!r}."
        )
    if clean["fold"] < 1:
        raise ValueError(f"column 'fold' must be >= 1 (folds are numbered from 1), but got {clean['fold']}.")
    if clean["n_folds"] < 1:
        raise ValueError(f"column 'n_folds' must be >= 1, but got {clean['n_folds']}.")
    if clean["attempt"] < 0:
        raise ValueError(f"column 'attempt' must be >= 0, but got {clean['attempt']}.")
    if clean["status"] == "completed":
        for name in _COMPLETED_NEEDS:
            if clean[name] is None:
                raise ValueError(f"column {name!r} must not be null in a completed row.")
        if clean["error"] is not None:
            raise ValueError(f"column 'error' must be null in a completed row, but got {clean['error']!r}.")
    elif clean["error"] is None:
        raise ValueError("column 'error' must say what went wrong in a failed row, but got None.")
    for name in _FRACTIONS:
        if clean[name] is not None and not 0.0 <= clean[name] <= 1.0:
            raise ValueError(f"column {name!r} must be a fraction in [0, 1], but got {clean[name]}.")
    classes = json.loads(clean["classes"])
    for name in _ABSENT_CLASSES:
        if clean[name] is not None:
            unknown = [value for value in json.loads(clean[name]) if value not in classes]
            if unknown:
                raise ValueError(
                    f"column {name!r} must list names out of column 'classes' {classes}, but got {unknown!r}."
                )
    return clean


def validate_trial_row(
    *,
    experiment: str,
    trial_id: str,
    status: str,
    step: int,
    reason: str | None,
    params_json: str | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A trial status row as stored (``updated_at`` stamped now), or ValueError naming what is wrong."""
    if status not in TRIAL_STATUSES:
        raise ValueError(f"status must be one of {TRIAL_STATUSES}, but got {status!r}.")
    clean = _validate(
        TRIAL_COLUMNS,
        {
            "experiment": experiment,
            "trial_id": trial_id,
            "status": status,
            "step": step,
            "reason": reason,
            "params_json": params_json,
        },
        defaults={"schema_version": SCHEMA_VERSION, "updated_at": datetime.now(UTC)},
    )
    if clean["step"] < 0:
        raise ValueError(f"step must be >= 0, but got {clean['step']}.")
    return clean
