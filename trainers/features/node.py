"""``extract_features_once``: a node's feature cache filled by one process, the others waiting.

Trials that start together on a fresh node all need the whole corpus's features before their
first fold. Without coordination each computed all of it, single-threaded, while its GPU
waited. Here the first caller takes a file lock beside the cache (``<cache_dir>/<preset
dir>.lock``), computes what is missing with ``workers`` processes (the node's CPUs), and
releases it; the others block on the lock, then find every feature cached (a stat per file,
through the content index) and start at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock

from trainers.features.cache import _preset_dir, default_cache_dir
from trainers.features.extraction import FeatureExtractionSummary, extract_features
from trainers.features.presets import AnyPreset, get_preset
from trainers.features.ssl_encoder import resolve_preset

__all__ = ["extract_features_once", "features_lock_path"]


def features_lock_path(cache_dir: str | os.PathLike[str] | None, preset: AnyPreset | str) -> Path:
    """The lock file that serialises extraction of ``preset`` into ``cache_dir`` on one node."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return _preset_dir(cache_dir, resolve_preset(get_preset(preset))).with_suffix(".lock")


def extract_features_once(
    manifest: pd.DataFrame,
    *,
    preset: AnyPreset | str,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
    where: str = "this node",
    device: torch.device | None = None,
) -> FeatureExtractionSummary:
    """``extract_features`` under the node's lock for ``preset``; raise if any utterance failed.

    ``where`` names the node in the error (a corpus path that only some nodes can read);
    ``device`` runs an SSL preset's encoder (None: the CPU).
    """
    lock_path = features_lock_path(cache_dir, preset)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        summary = extract_features(manifest, preset=preset, cache_dir=cache_dir, workers=workers, device=device)
    if summary.failed:
        first = summary.failed[0]
        raise ValueError(
            f"{len(summary.failed)} utterance(s) could not be turned into features on {where} "
            f"(first: {first.path}: {first.reason}); every node must read the corpus at the same path."
        )
    return summary
