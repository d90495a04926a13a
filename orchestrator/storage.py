"""Where an experiment's results live: a local folder or an object-store URI, as one value.

Every layer that touches storage (the config's ``tune.storage``, data preparation, the
leaderboard, the report, export, ``sernas submit``) goes through ``StorageLocation``, so a URI
never loses a slash through ``Path(...)`` and a local path is always absolute.

Layout under a storage root (the one owner of these locations)::

    <storage>/<experiment>/                     Ray Tune's experiment state and checkpoints
    <storage>/<experiment>/data/                config.yaml, manifest.parquet, folds.parquet, fingerprint.json
    <storage>/<experiment>/optuna.journal       the experiment's Optuna study (see orchestrator.study);
                                                on an object store, a copy of the journal the driver
                                                keeps on its own disk (``StorageLocation.study_journal``)
    <storage>/leaderboard/<experiment>/...      leaderboard part files (see orchestrator.leaderboard)
    <storage>/_archive/<experiment>-<time>/     a run moved aside by ``--restart archive`` (orchestrator.runs)
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from trainers.atomic_io import write_atomically

__all__ = [
    "ARCHIVE_DIR",
    "RESTART_CHOICES",
    "CONFIG_FILE",
    "DATA_DIR",
    "DATA_FILES",
    "DATA_FINGERPRINT_FILE",
    "FOLDS_FILE",
    "MANIFEST_FILE",
    "STUDY_CACHE_ENV",
    "STUDY_FILE",
    "StorageAccessError",
    "StorageLocation",
    "StorageWriteError",
    "check_access",
    "folder_to_read",
    "folder_to_write",
    "is_uri",
    "resolve_storage",
]

DATA_DIR = "data"  # <storage>/<experiment>/data: what the driver prepared for the trials
MANIFEST_FILE = "manifest.parquet"  # in DATA_DIR, when the experiment scanned its corpus itself
FOLDS_FILE = "folds.parquet"
CONFIG_FILE = "config.yaml"  # the validated experiment config, which `sernas export` rebuilds from
DATA_FILES = (CONFIG_FILE, MANIFEST_FILE, FOLDS_FILE)
DATA_FINGERPRINT_FILE = "fingerprint.json"  # in DATA_DIR: hashes of the manifest and folds (orchestrator.resume_check)
ARCHIVE_DIR = "_archive"  # no experiment is named so: names never start with "_" (orchestrator.names)
RESTART_CHOICES = ("archive", "remove")  # how a used experiment name starts afresh: its run moved there, or deleted
STUDY_FILE = "optuna.journal"  # <storage>/<experiment>/optuna.journal: the experiment's Optuna study
STUDY_CACHE_ENV = "SERNAS_STUDY_CACHE"  # where a driver keeps the journals of object-store experiments
_STUDY_CACHE_DEFAULT = "~/.cache/sernas/studies"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(text: str) -> bool:
    """Whether ``text`` is a URI (``scheme://...``) rather than a local path."""
    return bool(_URI.match(text))


class StorageWriteError(OSError):
    """A file could not be written; the message names the destination, the errno is kept."""


class StorageAccessError(OSError):
    """The storage cannot be read or written as given (wrong endpoint, credentials, bucket)."""


CREDENTIALS_HINT = (
    "for an object store, check the bucket and the standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION) in this process's environment"
)
_PROBE = ".sernas-write-check"  # written and deleted under the root by check_access(write=True)


def _write_all(handle: object, data: pa.Buffer | bytes) -> None:
    """The one low-level write of every file written through a location (tests make it fail)."""
    handle.write(data)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StorageLocation:
    """A ``pyarrow.fs`` filesystem and a root path inside it.

    Build one with ``resolve_storage`` from a path or URI, or directly around a configured
    filesystem (e.g. ``S3FileSystem(region=...)``).
    """

    filesystem: pafs.FileSystem
    root: str
    display: str = ""  # how paths are shown (the URI the user gave); defaults to root

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    @property
    def uri(self) -> str:
        """What Ray Tune's ``storage_path`` and a job's ``--storage`` take: an absolute path or the URI."""
        return self.root if self.is_local else (self.display or self.root)

    def path(self, *parts: str) -> str:
        """``parts`` joined under the root, as a path inside ``filesystem``."""
        return "/".join([self.root.rstrip("/"), *parts]) if self.root else "/".join(parts)

    def shown(self, path: str) -> str:
        """``path`` (inside the filesystem) as the user would name it."""
        if self.is_local or not self.display:
            return path
        return f"{self.display.rstrip('/')}/{self.relative(path)}"

    def relative(self, path: str) -> str:
        """``path`` (inside the filesystem) relative to the root."""
        root = self.root.rstrip("/")
        return path[len(root) :].lstrip("/") if path.startswith(root) else path

    def child(self, *parts: str) -> StorageLocation:
        """The location of a folder under this one (e.g. an experiment's data folder)."""
        display = "/".join([self.display.rstrip("/"), *parts]) if self.display else ""
        return StorageLocation(self.filesystem, self.path(*parts), display)

    def experiment_data(self, experiment: str) -> StorageLocation:
        """Where the driver keeps an experiment's manifest, folds and config."""
        return self.child(experiment, DATA_DIR)

    def study_journal(self, experiment: str) -> Path:
        """The local file of ``experiment``'s Optuna journal (``optuna.storages.JournalStorage``).

        Local storage: ``<storage>/<experiment>/optuna.journal``, beside Tune's state. A journal
        is appended to under a file lock, which an object store cannot do, so for ``s3://``
        and friends the driver keeps it on its own disk, under ``$SERNAS_STUDY_CACHE`` (default
        ``~/.cache/sernas/studies``) + ``<scheme>/<bucket>/<prefix>/<experiment>/optuna.journal``,
        and copies it to ``<storage>/<experiment>/optuna.journal`` (``study_copy``) after every
        trial ends.
        """
        if self.is_local:
            return self.local_path(experiment, STUDY_FILE)
        scheme, _, rest = (self.display or self.root).partition("://")
        cache = Path(os.environ.get(STUDY_CACHE_ENV) or _STUDY_CACHE_DEFAULT).expanduser().absolute()
        return cache.joinpath(
            scheme or "store",
            *[part for part in rest.split("/") if part not in ("", ".", "..")],
            experiment,
            STUDY_FILE,
        )

    def study_copy(self, experiment: str) -> str:
        """``study_journal``'s path relative to the root, as uploaded to an object store."""
        return f"{experiment}/{STUDY_FILE}"

    def local_path(self, *parts: str) -> Path:
        """``parts`` under the root as a local ``Path``; only for local storage."""
        if not self.is_local:
            raise ValueError(f"{self.shown(self.path(*parts))} is on an object store, not a local path.")
        return Path(self.path(*parts))

    def is_file(self, *parts: str) -> bool:
        return self.filesystem.get_file_info(self.path(*parts)).type == pafs.FileType.File

    def exists(self, *parts: str) -> bool:
        return self.filesystem.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def entries(self, *parts: str) -> list[pafs.FileInfo]:
        """The files and folders directly in a folder under the root; none when it does not exist."""
        selector = pafs.FileSelector(self.path(*parts), recursive=False, allow_not_found=True)
        return self.filesystem.get_file_info(selector)

    def count_files(self, *parts: str) -> int:
        """How many files lie anywhere below a folder under the root (0 when it does not exist)."""
        selector = pafs.FileSelector(self.path(*parts), recursive=True, allow_not_found=True)
        return sum(info.type == pafs.FileType.File for info in self.filesystem.get_file_info(selector))

    def rename(self, relative: str, to: str) -> str:
        """Move a file or folder to ``to`` (both relative to the root) in one rename; return its shown new path.

        Only filesystems rename a folder in one step; object stores would copy and delete key by
        key, so there this raises ValueError rather than leave half a folder on each side.
        """
        source, target = self.path(relative), self.path(to)
        if not self.is_local:
            raise ValueError(
                f"cannot move {self.shown(source)} aside: an object store has no atomic rename of a folder."
            )
        if self.exists(to):
            raise FileExistsError(f"cannot move {source} to {target}: something is already there.")
        self.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        self.filesystem.move(source, target)  # rename(2): readers see the old place or the new, never half
        return self.shown(target)

    def delete(self, relative: str) -> None:
        """Delete a file or a whole folder under the root; nothing happens when it is absent."""
        info = self.filesystem.get_file_info(self.path(relative))
        if info.type == pafs.FileType.Directory:
            self.filesystem.delete_dir(info.path)
        elif info.type != pafs.FileType.NotFound:
            self.filesystem.delete_file(info.path)

    def read_bytes(self, *parts: str) -> bytes:
        """The whole content of a file under the root."""
        with self.filesystem.open_input_stream(self.path(*parts)) as stream:
            return stream.read()

    def write_bytes(self, relative: str, data: pa.Buffer | bytes, *, what: str) -> str:
        """Write ``data`` to ``relative`` so that readers see all of it or nothing; return its shown path.

        Local files: temporary file, fsync, rename. Object stores: one stream, one write of the
        whole (small) buffer; they upload nothing before the stream closes and then publish it
        in a single PUT, whole or not at all. ``what`` names the content in the error.
        """
        target = self.path(relative)
        shown = self.shown(target)
        try:
            if self.is_local:
                write_atomically(target, lambda handle: _write_all(handle, data))
            else:
                self.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
                with self.filesystem.open_output_stream(target) as stream:
                    _write_all(stream, data)
        except OSError as error:
            message = f"could not write {what} to {shown}: {error.strerror or error}; nothing was written there"
            raise StorageWriteError(*((error.errno, message) if error.errno is not None else (message,))) from error
        return shown


def check_access(location: StorageLocation, *, write: bool) -> None:
    """Raise ``StorageAccessError`` naming the storage (never a credential) unless an object-store
    root can be listed and, with ``write``, a small file put there and deleted again.

    Commands call it before anything else, so a wrong endpoint, key or bucket ends in one clear
    message instead of a traceback from deep inside Ray Tune or DuckDB, with nothing written
    anywhere. Local folders are left to the commands' own checks (they name the folder)."""
    if location.is_local:
        return
    action = "read"
    try:
        location.filesystem.get_file_info(pafs.FileSelector(location.root, allow_not_found=True))
        if write:
            action = "write to"
            location.write_bytes(_PROBE, b"", what="a write check")
            location.filesystem.delete_file(location.path(_PROBE))
    except OSError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        message = f"cannot {action} storage {location.uri} ({first}); {CREDENTIALS_HINT}. Nothing was written."
        raise StorageAccessError(*((error.errno, message) if error.errno is not None else (message,))) from None


@contextlib.contextmanager
def folder_to_write(location: StorageLocation) -> Iterator[Path]:
    """A local folder whose files end up in ``location``: the folder itself when local, else a
    staging folder uploaded file by file (each one atomically) when the block ends without error."""
    if location.is_local:
        folder = location.local_path()
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="sernas-upload-") as staging:
        yield Path(staging)
        for file in sorted(Path(staging).rglob("*")):
            if file.is_file():
                relative = file.relative_to(staging).as_posix()
                location.write_bytes(relative, file.read_bytes(), what=f"{relative}")


@contextlib.contextmanager
def folder_to_read(location: StorageLocation, names: tuple[str, ...]) -> Iterator[Path]:
    """A local folder holding ``names`` of ``location``: the folder itself when local, else a
    temporary copy of those of them that exist (a missing one is simply absent there too)."""
    if location.is_local:
        yield location.local_path()
        return
    with tempfile.TemporaryDirectory(prefix="sernas-download-") as staging:
        for name in names:
            if location.is_file(name):
                (Path(staging) / name).write_bytes(location.read_bytes(name))
        yield Path(staging)


def resolve_storage(storage: str | os.PathLike[str] | StorageLocation) -> StorageLocation:
    """A local path, ``file://`` URI or object-store URI (``s3://bucket/prefix``, ``gs://``...)."""
    if isinstance(storage, StorageLocation):
        return storage
    text = os.fspath(storage)
    if isinstance(storage, os.PathLike) or not is_uri(text):
        if not text.strip():
            raise ValueError("storage must be a local path or a URI, but got an empty string.")
        root = str(Path(text).expanduser().absolute())
        return StorageLocation(pafs.LocalFileSystem(), root, root)
    try:
        filesystem, root = pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, ValueError, OSError) as error:
        raise ValueError(
            f"storage must be a local path or a URI that pyarrow.fs understands, but got {text!r}: {error}"
        ) from error
    if isinstance(filesystem, pafs.LocalFileSystem):
        return StorageLocation(filesystem, root, root)
    return StorageLocation(filesystem, root.rstrip("/"), text.rstrip("/"))
