"""Checkpoints as plain dicts of tensors and Python values, written atomically.

Loaded with ``torch.load(weights_only=True)``: nothing in a checkpoint can execute code, and a
corrupt file is reported by name instead of crashing deep inside unpickling. A run resumes only
from a checkpoint of the same identity (kind, settings, fold, classes, ...), and a checkpoint
is on disk before a reporter may stop the run.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from trainers.atomic_io import atomic_path
from trainers.reporting import Reporter


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used (unreadable, or written by a different run)."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none; ``CheckpointError`` if unreadable."""
    path = Path(path)
    if not path.exists():
        return None
    if not zipfile.is_zipfile(path):  # torch would blame its weights_only default for plain garbage
        raise CheckpointError(
            f"checkpoint {path} is unreadable: not a complete PyTorch checkpoint "
            f"({path.stat().st_size} bytes without the zip archive torch.save writes: truncated, "
            "or another file); delete it to start this fold over."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated/garbage files
        first_line = (str(error).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(error).__name__}: {first_line}); "
            "delete it to start this fold over."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict.")
    return state


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"weights.lr": 0.025, ...}`` from nested mappings, so a difference names its key."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (list, tuple)):
        return {prefix: [_flatten(v) if isinstance(v, Mapping) else v for v in value]}
    return {prefix: value}


def check_resumable(
    state: Mapping[str, Any], *, identity: Mapping[str, Any], path: Path, optional: Collection[str] = ()
) -> None:
    """Refuse (``CheckpointError``) a loaded ``state`` written by another run than ``identity``.

    ``identity`` is what the run writes into its checkpoints to say whose they are: ``kind``
    first, then e.g. ``settings``, ``fold``, ``classes``, ``architecture``. The message names
    the checkpoint and the first differing key (``weights.lr`` inside the settings).
    ``optional`` names fields that checkpoints of older versions do not record: those are
    compared only when ``state`` has them, so such a checkpoint resumes as it did before.
    """
    missing = "<missing>"
    if state.get("kind") != identity["kind"]:
        raise CheckpointError(
            f"checkpoint {path} is a {state.get('kind')!r} checkpoint, expected a {identity['kind']!r} one."
        )
    for field, expected in identity.items():
        if field in optional and field not in state:
            continue
        stored = state.get(field, missing)
        if not isinstance(expected, Mapping):
            if stored != expected:
                raise CheckpointError(
                    f"checkpoint {path} was written for a different run: it belongs to {field} {stored!r}, "
                    f"but this is {field} {expected!r}; delete it or use another checkpoint path."
                )
            continue
        before, now = _flatten(stored if isinstance(stored, Mapping) else {}), _flatten(expected)
        for key in sorted(set(before) | set(now)):
            if before.get(key, missing) != now.get(key, missing):
                raise CheckpointError(
                    f"checkpoint {path} was written for a different run: its {field!r} is different "
                    f"({key} is {before.get(key, missing)!r} there but {now.get(key, missing)!r} now); "
                    f"delete it, use another checkpoint path, or the same {field}."
                )


def save_then_report(
    step: int, metrics: dict[str, Any], *, reporter: Reporter, save: Callable[[], object] | None, due: bool
) -> None:
    """Save when ``due``, then report; if the reporter raises (a pruner stopping the run), save
    first (unless already saved) so the epoch just finished is not lost, then re-raise.

    ``save`` is None when the run keeps no checkpoint. The reporter gets a copy of ``metrics``.
    """
    if save is not None and due:
        save()
    try:
        reporter(step, dict(metrics))
    except BaseException:
        if save is not None and not due:
            save()
        raise
