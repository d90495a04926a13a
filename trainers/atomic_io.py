"""Write files so that readers see either the old content or the new, never a part.

Every durable artefact (manifests, fold tables, cached features, leaderboard parts,
checkpoints) is written to a temporary file in the destination's directory, flushed to disk
and then renamed over the destination; ``os.replace`` is atomic on POSIX within a filesystem,
so a crash or a kill mid-write leaves at most a stray ``.tmp-*`` file, never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place on success.

    On any exception the temporary file is removed and ``destination`` is untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{destination.name}.", dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are shared files, like open() would make
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(destination: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temporary binary file and rename it to ``destination``."""
    with atomic_path(destination) as tmp:
        with open(tmp, "wb") as handle:
            write(handle)
    return Path(destination)


def write_parquet_atomically(
    frame: pd.DataFrame, destination: str | os.PathLike[str], *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``frame`` (without its index) as one Parquet file, atomically.

    ``metadata`` goes into the file's key-value metadata (e.g. how a fold table was made), so
    the file explains itself without a sidecar that could drift from it.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        extra = {key.encode(): value.encode() for key, value in metadata.items()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    with atomic_path(destination) as tmp:
        pq.write_table(table, tmp)
    return Path(destination)


def read_parquet_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The key-value metadata written by ``write_parquet_atomically`` (pandas' own key excluded)."""
    raw = pq.read_schema(path).metadata or {}
    return {key.decode(): value.decode() for key, value in raw.items() if key != b"pandas"}


def write_text_atomically(destination: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically (CSV reports, JSON summaries)."""
    return write_atomically(destination, lambda handle: handle.write(text.encode("utf-8")))
