"""Where cached features live, and the content hashes that key them.

The key of a feature file is the blake2b hash of the audio file's bytes plus the preset's
fingerprint (``<cache_dir>/<name>-<fingerprint>/<hh>/<content hash>.npy``).

``content-index.json`` only saves rehashing unchanged audio (hashing takes about twice as long as
loading the cached features; see ``benchmarks/bench_features.py``). The content hash stays the source of
truth: an entry is used only while the file's size, mtime, ctime and inode all match, and a file is
entered only once its timestamps are older than ``_INDEX_MIN_AGE_NS`` (so a rewrite within the
filesystem's timestamp granularity cannot go unnoticed; the same "racy clean" rule git uses).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from trainers.atomic_io import write_text_atomically
from trainers.features.presets import AnyPreset, get_preset
from trainers.features.ssl_encoder import resolve_preset

_INDEX_FILE = "content-index.json"
_INDEX_VERSION = 1
# A file is entered into the content index only when its mtime and ctime are at least this much
# older than the moment it was stat'ed; younger entries could hide a rewrite made within the
# filesystem's timestamp granularity (1-2 s on FAT/NFS, coarse ticks on older Linux kernels).
_INDEX_MIN_AGE_NS = 2_000_000_000
_HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$SERNAS_CACHE_DIR`` if set, else ``~/.cache/sernas/features``.

    Caches are per node: every node computes (or is given) its own copy, and trials read it from
    local disk.
    """
    configured = os.environ.get("SERNAS_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "sernas" / "features"


def _preset_dir(cache_dir: Path, preset: AnyPreset) -> Path:
    return cache_dir / f"{preset.name}-{preset.fingerprint}"


def feature_path(cache_dir: str | os.PathLike[str], preset: AnyPreset | str, content_hash: str) -> Path:
    """Where the features of audio whose bytes hash to ``content_hash`` are cached (an SSL preset's
    weights are looked up: their checksum is part of the key)."""
    return _feature_path(_preset_dir(Path(cache_dir), resolve_preset(get_preset(preset))), content_hash)


def _feature_path(preset_dir: Path, content_hash: str) -> Path:
    return preset_dir / content_hash[:2] / f"{content_hash}.npy"


def _hash_file(path: str) -> str:
    """blake2b (128 bit) of a file's bytes, hex."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _StatKey(NamedTuple):
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, stat: os.stat_result) -> _StatKey:
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


class _ContentIndex:
    """``absolute path -> (stat key, content hash)``, saved as JSON beside the preset directories.

    Concurrent runs may overwrite each other's additions (each merges what is on disk just before
    its atomic write); a lost entry only costs a rehash.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries = self._read(path)
        self._added: dict[str, list] = {}

    @staticmethod
    def _read(path: Path) -> dict[str, list]:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UnicodeDecodeError):
            return {}  # an unreadable index only costs rehashing; the next save replaces it
        if not isinstance(payload, dict) or payload.get("version") != _INDEX_VERSION:
            return {}
        entries = payload.get("entries")
        return entries if isinstance(entries, dict) else {}

    def lookup(self, path: str, key: _StatKey) -> str | None:
        entry = self._entries.get(path)
        if isinstance(entry, list) and len(entry) == 5 and tuple(entry[:4]) == tuple(key):
            return str(entry[4])
        return None

    def record(self, path: str, key: _StatKey, content_hash: str, stat_time_ns: int) -> None:
        if max(key.mtime_ns, key.ctime_ns) > stat_time_ns - _INDEX_MIN_AGE_NS:
            return  # too recent to trust (see _INDEX_MIN_AGE_NS)
        entry = [*key, content_hash]
        self._entries[path] = entry
        self._added[path] = entry

    def save(self, *, required: bool = True) -> None:
        """Write the new entries; when not ``required`` (a reader), a failure only warns."""
        if not self._added:
            return
        merged = self._read(self.path)
        merged.update(self._added)
        text = json.dumps({"version": _INDEX_VERSION, "entries": merged}, separators=(",", ":"))
        try:
            write_text_atomically(self.path, text)
        except OSError as error:
            if required:
                raise
            warnings.warn(
                f"could not update the content index {self.path} ({error}); "
                f"unchanged audio will be hashed again next time",
                stacklevel=3,
            )
            return
        self._entries = merged
        self._added = {}


@dataclass
class _Resolved:
    """Content hashes of manifest rows (None where the file could not be read)."""

    hashes: list[str | None]
    errors: dict[int, str] = field(default_factory=dict)  # row -> reason
    stat_keys: dict[int, _StatKey] = field(default_factory=dict)
    hashed: int = 0  # files actually read and hashed (index misses)


def _manifest_rows(manifest: pd.DataFrame) -> tuple[list[str], list[str]]:
    missing = [column for column in ("utt_id", "path") if column not in manifest.columns]
    if missing:
        raise ValueError(
            f"manifest must have columns 'utt_id' and 'path', but it lacks {missing}; it has {list(manifest.columns)}."
        )
    return [str(u) for u in manifest["utt_id"]], [os.path.abspath(str(p)) for p in manifest["path"]]


def _resolve_hashes(
    paths: Sequence[str], index: _ContentIndex, advance: Callable[[], None] = lambda: None
) -> _Resolved:
    """Content hash of every path: from the index while its stat matches, else by hashing."""
    resolved = _Resolved(hashes=[None] * len(paths))
    for row, path in enumerate(paths):
        try:
            stat_time_ns = time.time_ns()
            key = _StatKey.of(os.stat(path))
            content_hash = index.lookup(path, key)
            if content_hash is None:
                content_hash = _hash_file(path)
                resolved.hashed += 1
                index.record(path, key, content_hash, stat_time_ns)
        except FileNotFoundError:
            resolved.errors[row] = "file does not exist"
        except OSError as error:
            resolved.errors[row] = f"cannot read file ({error.strerror or error})"
        else:
            resolved.hashes[row] = content_hash
            resolved.stat_keys[row] = key
        advance()
    return resolved
