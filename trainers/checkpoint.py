"""Checkpoints as plain dicts of tensors and Python values, written atomically.

Loaded with ``torch.load(weights_only=True)``: nothing in a checkpoint can execute code, and a
corrupt file is reported by name instead of crashing deep inside unpickling.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from trainers.atomic_io import atomic_path


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
