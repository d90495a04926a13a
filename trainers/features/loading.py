"""``load_features``: a manifest's cached features as one tensor, or an error that says how to compute them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trainers.features.cache import (
    _INDEX_FILE,
    _ContentIndex,
    _feature_path,
    _manifest_rows,
    _preset_dir,
    _resolve_hashes,
    default_cache_dir,
)
from trainers.features.presets import AnyPreset, get_preset
from trainers.features.ssl_encoder import resolve_preset
from trainers.features.ssl_presets import SSLPreset


class FeaturesNotFoundError(LookupError):
    """Some manifest rows have no cached features for the preset; the message says how to compute them."""


def load_features(
    manifest: pd.DataFrame,
    *,
    preset: AnyPreset | str,
    cache_dir: str | os.PathLike[str] | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """All cached features of ``manifest`` as one tensor ``(N, C, F, T)``, in row order: float32, or
    for an SSL preset float16 (kept at half size in memory: IEMOCAP's 5,531 clips of ``wavlm-large``
    are 6.8 GB so; batches are cast to float32, ``trainers.fold_data.iterate_batches``).

    A trial loads once and then batches by indexing (IEMOCAP: ~5.5k x 64 KB). Raises
    ``FeaturesNotFoundError`` naming the missing rows and the ``sernas features`` command that
    computes them (``manifest_path`` only fills in that command). An SSL preset's files hold
    float16 ``(L, D, t)`` with only the clip's frames; they are padded with zeros to ``T`` here.
    """
    preset = resolve_preset(get_preset(preset))
    explicit_cache = cache_dir is not None
    cache_dir = Path(cache_dir).expanduser() if explicit_cache else default_cache_dir()
    utt_ids, paths = _manifest_rows(manifest)

    index = _ContentIndex(cache_dir / _INDEX_FILE)
    resolved = _resolve_hashes(paths, index)
    index.save(required=False)  # the cache may be read-only for trials

    preset_dir = _preset_dir(cache_dir, preset)
    dtype = np.float16 if isinstance(preset, SSLPreset) else np.float32
    out = np.empty((len(paths), *preset.output_shape), dtype=dtype)  # (N, C, F, T)
    missing: list[int] = []
    for row, content_hash in enumerate(resolved.hashes):
        if content_hash is None:
            missing.append(row)
            continue
        location = _feature_path(preset_dir, content_hash)
        try:
            array = np.load(location, allow_pickle=False)
        except FileNotFoundError:
            missing.append(row)
            continue
        if isinstance(preset, SSLPreset):
            layers, dim, frames = preset.output_shape
            if array.dtype != np.float16 or array.ndim != 3 or array.shape[:2] != (layers, dim):
                raise ValueError(
                    f"cached features {location} have shape {array.shape} and dtype {array.dtype}, but "
                    f"preset {preset.name!r} expects ({layers}, {dim}, <= {frames}) float16; delete the file and "
                    f"compute it again."
                )
            kept = min(array.shape[2], frames)
            out[row, :, :, :kept] = array[:, :, :kept]
            out[row, :, :, kept:] = 0.0
            continue
        if array.shape != preset.output_shape or array.dtype != np.float32:
            raise ValueError(
                f"cached features {location} have shape {array.shape} and dtype {array.dtype}, but "
                f"preset {preset.name!r} expects {preset.output_shape} float32; delete the file and "
                f"compute it again."
            )
        out[row] = array
    if missing:
        command = f"sernas features --manifest {manifest_path or '<manifest.parquet>'} --preset {preset.name}"
        if explicit_cache:
            command += f" --cache {cache_dir}"
        raise FeaturesNotFoundError(
            _missing_message(utt_ids, paths, missing, resolved.errors, preset_dir, preset, command)
        )
    return torch.from_numpy(out)


def _missing_message(
    utt_ids: Sequence[str],
    paths: Sequence[str],
    missing: Sequence[int],
    errors: Mapping[int, str],
    preset_dir: Path,
    preset: AnyPreset,
    command: str,
) -> str:
    shown = ", ".join(utt_ids[row] for row in missing[:5]) + (", ..." if len(missing) > 5 else "")
    message = (
        f"features of preset {preset.name!r} are missing for {len(missing)} of {len(utt_ids)} "
        f"utterances (first: {shown}) under {preset_dir}; compute them with: {command}"
    )
    if errors:
        row, reason = next(iter(errors.items()))
        message += f". {len(errors)} audio file(s) could not be read, e.g. {paths[row]}: {reason}"
    return message
