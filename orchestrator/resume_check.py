"""Resume only the run that was started: ``--resume`` refuses a changed config or changed data.

A resumed experiment continues trials, Optuna studies and leaderboard rows begun under one
protocol (settings, corpus, folds). Preparing its data again and writing it over the stored
copy would let an edited YAML or a changed corpus mix two protocols in one leaderboard without
a word, so the run's data folder (``StorageLocation.experiment_data``) is the reference:

- ``config.yaml``, the config the run started with: a resume under another
  ``config_fingerprint`` is refused, naming each changed key (``eval.epochs: 6 -> 8``);
  ``RESUME_SAFE_FIELDS`` (where and how fast it runs) may change;
- ``fingerprint.json`` (``write_data_fingerprint``), content hashes of the manifest's
  ``MANIFEST_COLUMNS`` rows and of the fold table's rows, written with the data: a resume whose
  newly built tables hash otherwise is refused, naming what changed (counted from the stored
  tables where the run stored them).

Runs prepared before these files existed resume with a warning saying what is not compared.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from orchestrator.config import (
    RESUME_SAFE_FIELDS,
    ExperimentConfig,
    config_fingerprint,
    without_resume_safe_fields,
)
from orchestrator.storage import (
    CONFIG_FILE,
    DATA_FINGERPRINT_FILE,
    FOLDS_FILE,
    MANIFEST_FILE,
    StorageLocation,
    folder_to_read,
)
from trainers.atomic_io import write_text_atomically
from trainers.folds import SPEAKER_CHECK_COLUMN

__all__ = [
    "MANIFEST_COLUMNS",
    "ResumeRefused",
    "check_prepared_data",
    "check_resume",
    "config_changes",
    "data_fingerprint",
    "table_changes",
    "write_data_fingerprint",
]

MANIFEST_COLUMNS = ("utt_id", "path", "label", "speaker", "duration_s")
"""The manifest columns a run depends on; its other columns (corpus extras) may change."""
FINGERPRINT_VERSION = 1
_TABLES = (("manifest", MANIFEST_FILE, "manifest"), ("fold table", FOLDS_FILE, "folds"))  # name, file, key in the JSON
_ABSENT = "<absent>"
_START_AFRESH = "or start afresh (--restart archive or --restart remove, or another name: --set name=...)"


class ResumeRefused(ValueError):
    """``--resume`` of a run whose config or prepared data changed; the message names what changed."""


# ------------------------------------------------------------------------------------- the config


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"eval.epochs": 6, ...}``: the dotted key path of every non-mapping value (lists are values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        leaves.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def _shown(value: Any, limit: int = 60) -> str:
    text = value if value is _ABSENT else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key.path: stored -> current`` for every value that differs between two configs dumped as
    JSON-like trees, ``RESUME_SAFE_FIELDS`` left out; a key one side lacks shows ``<absent>``."""
    before = _leaves(without_resume_safe_fields(copy.deepcopy(stored)))
    after = _leaves(without_resume_safe_fields(copy.deepcopy(current)))
    return [
        f"{key}: {_shown(before.get(key, _ABSENT))} -> {_shown(after.get(key, _ABSENT))}"
        for key in sorted(set(before) | set(after))
        if before.get(key, _ABSENT) != after.get(key, _ABSENT)
    ]


def _stored_config(data: StorageLocation) -> tuple[dict[str, Any], str | None]:
    """The stored config as a tree, normalised through ``ExperimentConfig`` (so keys added since
    with defaults compare equal), and its fingerprint; the raw tree and None when this version
    cannot validate it."""
    where = data.shown(data.path(CONFIG_FILE))
    try:
        tree = yaml.safe_load(data.read_bytes(CONFIG_FILE).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ResumeRefused(f"cannot resume: the run's config {where} is unreadable ({error}).") from None
    if not isinstance(tree, dict):
        raise ResumeRefused(f"cannot resume: the run's config {where} holds {type(tree).__name__}, not a mapping.")
    try:
        stored = ExperimentConfig.model_validate(tree)
    except ValidationError:
        return tree, None
    return stored.model_dump(mode="json"), config_fingerprint(stored)


def check_resume(config: ExperimentConfig, *, data: StorageLocation) -> list[str]:
    """Refuse (``ResumeRefused``) to resume under ``config`` a run whose stored config (in its data
    folder ``data``) has another fingerprint, naming every changed key; call it before anything
    is prepared or written. Returns warnings for what an older run did not store and so is not
    compared."""
    if not data.exists():
        return [
            f"no prepared data at {data.uri} (an older or never-prepared run): neither the config "
            "nor the data is compared with the run's."
        ]
    warnings = []
    if not data.is_file(CONFIG_FILE):
        warnings.append(
            f"{data.shown(data.path(CONFIG_FILE))} does not exist (a run prepared by an older sernas): the config is "
            "not compared with the one the run started with."
        )
    else:
        stored, fingerprint = _stored_config(data)
        current = config_fingerprint(config)
        if fingerprint != current:
            changes = config_changes(stored, config.model_dump(mode="json"))
            if fingerprint is not None and not changes:  # (cannot happen: both come from the same dump)
                changes = [f"config fingerprint {fingerprint} there, {current} now"]
            if changes:
                raise ResumeRefused(
                    f"cannot resume experiment {config.name!r}: its config differs from the one the run started "
                    f"with ({data.shown(data.path(CONFIG_FILE))}): {'; '.join(changes)}. A run is resumed with the "
                    f"settings it started with (only {', '.join(RESUME_SAFE_FIELDS)} may change): resume with "
                    f"those, {_START_AFRESH}."
                )
    if not data.is_file(DATA_FINGERPRINT_FILE):
        stored_tables = [name for name, file, _ in _TABLES if data.is_file(file)]
        compared = f"compared with its stored {' and '.join(stored_tables)} only" if stored_tables else "not compared"
        warnings.append(
            f"{data.shown(data.path(DATA_FINGERPRINT_FILE))} does not exist (a run prepared by an older sernas): "
            f"the prepared data is {compared}."
        )
    return warnings


# --------------------------------------------------------------------------------------- the data


def _plain(value: Any) -> Any:
    """A cell as a JSON value that is the same whether read from memory or back from Parquet."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _columns(frame: pd.DataFrame, name: str) -> list[str]:
    """The compared columns of ``frame``: ``MANIFEST_COLUMNS`` of a manifest, every column of a fold
    table but ``speaker_check`` (computed from its other columns: a run prepared before it existed
    resumes)."""
    if name == "manifest":
        return [column for column in MANIFEST_COLUMNS if column in frame.columns]
    return sorted(str(column) for column in frame.columns if column != SPEAKER_CHECK_COLUMN)


def _rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Each row of ``frame[columns]`` as canonical JSON, sorted."""
    return sorted(
        json.dumps([_plain(value) for value in row], ensure_ascii=False, allow_nan=False)
        for row in frame[list(columns)].itertuples(index=False, name=None)
    )


def _table_print(frame: pd.DataFrame, name: str) -> dict[str, Any]:
    columns = _columns(frame, name)
    digest = hashlib.sha256(json.dumps(columns).encode("utf-8"))
    for row in _rows(frame, columns):
        digest.update(b"\n" + row.encode("utf-8"))
    return {"sha256": digest.hexdigest(), "rows": len(frame), "columns": columns}


def data_fingerprint(*, manifest: pd.DataFrame, folds: pd.DataFrame) -> dict[str, Any]:
    """What ``fingerprint.json`` holds: per table (``manifest``: its ``MANIFEST_COLUMNS``; ``folds``:
    every column) the SHA-256 of its sorted rows, its row count and the columns hashed."""
    return {
        "version": FINGERPRINT_VERSION,
        "manifest": _table_print(manifest, "manifest"),
        "folds": _table_print(folds, "fold table"),
    }


def write_data_fingerprint(folder: Path, *, manifest: pd.DataFrame, folds: pd.DataFrame) -> Path:
    """Write ``fingerprint.json`` of ``manifest`` and ``folds`` into ``folder`` (atomically), beside them."""
    text = json.dumps(data_fingerprint(manifest=manifest, folds=folds), indent=2, sort_keys=True) + "\n"
    return write_text_atomically(folder / DATA_FINGERPRINT_FILE, text)


def _by_utterance(frame: pd.DataFrame, columns: Sequence[str]) -> dict[Any, list[tuple]]:
    rows: dict[Any, list[tuple]] = {}
    key = list(columns).index("utt_id")
    for row in frame[list(columns)].itertuples(index=False, name=None):
        plain = tuple(_plain(value) for value in row)
        rows.setdefault(plain[key], []).append(plain)
    return {utt: sorted(found, key=repr) for utt, found in rows.items()}


def _counted(count: int, what: str, examples: Iterable[Any]) -> str:
    first = sorted(map(str, examples))[:2]
    return f"{count} utterance(s) {what} (e.g. {', '.join(first)})"


def table_changes(stored: pd.DataFrame, current: pd.DataFrame, *, columns: Sequence[str] | None = None) -> list[str]:
    """What differs between two versions of a table keyed by ``utt_id``, compared on ``columns``
    (default: every column of either): columns added or removed, and utterances added, removed,
    or whose rows changed (naming the columns that did)."""
    if columns is None:
        columns = sorted(set(map(str, stored.columns)) | set(map(str, current.columns)))
    changes = []
    added_columns = [column for column in columns if column in current and column not in stored]
    removed_columns = [column for column in columns if column in stored and column not in current]
    if added_columns:
        changes.append(f"column(s) {', '.join(added_columns)} added")
    if removed_columns:
        changes.append(f"column(s) {', '.join(removed_columns)} removed")
    shared = [column for column in columns if column in stored and column in current]
    if "utt_id" not in shared:
        return changes or ["no utt_id column to compare by"]
    before, after = _by_utterance(stored, shared), _by_utterance(current, shared)
    changed: dict[Any, set[str]] = {}
    for utt in set(before) & set(after):
        old, new = before[utt], after[utt]
        if old == new:
            continue
        if len(old) != len(new):
            changed[utt] = {"number of rows"}
        else:  # per column, its values over the utterance's rows (one per fold in a fold table)
            changed[utt] = {
                column
                for i, column in enumerate(shared)
                if sorted((row[i] for row in old), key=repr) != sorted((row[i] for row in new), key=repr)
            }
    if changed:
        which = sorted(set().union(*changed.values()))
        changes.append(_counted(len(changed), f"changed {' or '.join(which)}", changed))
    added, removed = set(after) - set(before), set(before) - set(after)
    if added:
        changes.append(_counted(len(added), "added", added))
    if removed:
        changes.append(_counted(len(removed), "removed", removed))
    return changes


def _stored_fingerprint(data: StorageLocation) -> dict[str, Any] | None:
    if not data.is_file(DATA_FINGERPRINT_FILE):
        return None
    where = data.shown(data.path(DATA_FINGERPRINT_FILE))
    try:
        stored = json.loads(data.read_bytes(DATA_FINGERPRINT_FILE))
    except ValueError as error:  # (UnicodeDecodeError and JSONDecodeError alike)
        raise ResumeRefused(f"cannot resume: {where} is unreadable ({error}); it was written by sernas.") from None
    if not isinstance(stored, dict):
        raise ResumeRefused(f"cannot resume: {where} holds {type(stored).__name__}, expected a JSON object.")
    return stored


def check_prepared_data(data: StorageLocation, *, manifest: pd.DataFrame, folds: pd.DataFrame) -> bool:
    """On ``--resume``, before anything is written to ``data``: compare the newly built ``manifest``
    and ``folds`` with the run's (``fingerprint.json``, and the stored tables to say what changed).

    Returns True when ``data`` holds this very data (so nothing needs writing), False when it
    holds nothing to compare with (prepare as before); raises ``ResumeRefused`` naming what
    changed otherwise.
    """
    now = data_fingerprint(manifest=manifest, folds=folds)
    stored = _stored_fingerprint(data)
    if stored is not None and all(stored.get(key) == now[key] for _, _, key in _TABLES):
        return True
    changes, compared = [], stored is not None
    with folder_to_read(data, tuple(file for _, file, _ in _TABLES)) as folder:
        for (name, file, key), frame in zip(_TABLES, (manifest, folds)):
            before, after = (stored or {}).get(key), now[key]
            if before == after:
                continue
            if (folder / file).is_file():
                compared = True
                columns = MANIFEST_COLUMNS if name == "manifest" else None  # a fold table: every column of either
                found = table_changes(pd.read_parquet(folder / file), frame, columns=columns)
                if not found and before is not None:  # the hash differs while the rows do not: say so anyway
                    found = [f"content hash {before['sha256'][:16]} there, {after['sha256'][:16]} now"]
            elif before is not None:
                found = [
                    f"its rows changed ({before['rows']} then, {after['rows']} now; the run did not store its {name}, "
                    "so which is not known)"
                ]
            else:
                continue
            changes += [f"{name}: {change}" for change in found]
    if changes:
        raise ResumeRefused(
            f"cannot resume: the data prepared now differs from the run's ({data.uri}): "
            f"{'; '.join(changes)}. Its trials were scored on the stored folds, and resuming on other data mixes two "
            f"protocols: restore the corpus (or data.manifest) the run started with, {_START_AFRESH}."
        )
    return compared
