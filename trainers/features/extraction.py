"""``extract_features``: compute and cache the features of a manifest's rows, in one or more processes."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from trainers.atomic_io import write_atomically, write_text_atomically
from trainers.audio import AudioError, read_audio
from trainers.features.cache import (
    _INDEX_FILE,
    _ContentIndex,
    _feature_path,
    _manifest_rows,
    _preset_dir,
    _resolve_hashes,
    _StatKey,
    default_cache_dir,
)
from trainers.features.presets import FEATURE_ALGORITHM_VERSION, AnyPreset, FeaturePreset, get_preset
from trainers.features.signal import FeatureExtractor
from trainers.features.ssl_encoder import SSLFeatureExtractor, resolve_preset
from trainers.features.ssl_presets import SSL_ALGORITHM_VERSION, SSLPreset
from trainers.reporting import Progress, ignore_progress


class FailedUtterance(NamedTuple):
    utt_id: str
    path: str
    reason: str


@dataclass(frozen=True)
class FeatureExtractionSummary:
    """What one ``extract_features`` run did.

    ``computed`` counts feature files written (one per distinct audio content), ``reused`` the
    rows whose features were already cached, ``shared`` the rows whose audio is identical to
    another row's computed in this run; ``computed + reused + shared + len(failed) == n_rows``.
    """

    preset: str
    fingerprint: str
    cache_dir: Path  # the preset's directory, <cache_dir>/<name>-<fingerprint>
    n_rows: int
    computed: int
    reused: int
    shared: int
    failed: tuple[FailedUtterance, ...]
    hashed: int  # audio files read to hash them (the others' hashes came from the content index)
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        """One line for a CLI or a log."""
        return (
            f"{self.preset} ({self.fingerprint}): {self.n_rows} utterances, {self.computed} computed, "
            f"{self.reused} reused, {self.shared} shared, {len(self.failed)} failed "
            f"({self.hashed} files hashed) in {self.seconds:.1f} s -> {self.cache_dir}"
        )


@dataclass(frozen=True)
class _Task:
    content_hash: str
    path: str
    stat_key: _StatKey
    destination: Path


def _run_task(task: _Task, extractor: FeatureExtractor | SSLFeatureExtractor) -> str | None:
    """Compute and cache one audio file's features; return None, or why the audio is unusable."""
    try:
        samples, sample_rate = read_audio(task.path)
        # The features are stored under the hash taken earlier: make sure this is still that file.
        if _StatKey.of(os.stat(task.path)) != task.stat_key:
            return "file changed while features were being extracted; run again"
    except AudioError as error:
        return str(error)
    except OSError as error:
        return f"cannot read file ({error.strerror or error})"
    values = extractor(samples, sample_rate)  # (1, F, T) float32, or SSL (L, D, T') float16
    if not torch.isfinite(values).all():
        if values.dtype == torch.float16:
            return "features are not finite in float16 (NaN or inf audio samples, or hidden states beyond 65504)"
        return "features are not finite (does the audio contain NaN or inf samples?)"
    array = values.numpy()
    write_atomically(task.destination, lambda handle: np.save(handle, array))
    return None


@contextlib.contextmanager
def _single_torch_thread(threads: int = 1) -> Iterator[None]:
    """Run torch on one intra-op thread, as the workers do, then restore the caller's setting.

    Per utterance the transforms are too small to gain from threads (on a 2-core node one thread
    was ~7x faster than two under load), and one thread everywhere makes the cached values
    bit-identical whatever ``workers`` was. An SSL encoder is large enough to use ``threads``.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_WORKER_EXTRACTOR: FeatureExtractor | None = None


def _init_worker(preset: FeaturePreset) -> None:
    global _WORKER_EXTRACTOR
    torch.set_num_threads(1)  # one process per core; intra-op threads would oversubscribe
    _WORKER_EXTRACTOR = FeatureExtractor(preset)


def _run_task_in_worker(task: _Task) -> str | None:
    assert _WORKER_EXTRACTOR is not None, "_init_worker did not run"
    return _run_task(task, _WORKER_EXTRACTOR)


def _run_tasks(
    tasks: Sequence[_Task],
    preset: FeaturePreset,
    workers: int,
    advance: Callable[[], None],
    encoder: SSLFeatureExtractor | None = None,
) -> Iterator[tuple[_Task, str | None]]:
    if not tasks:
        return
    if encoder is not None:  # one encoder in this process, on its device; the CPU's threads are the workers
        with _single_torch_thread(workers if encoder.device.type == "cpu" else 1):
            for task in tasks:
                yield task, _run_task(task, encoder)
                advance()
        return
    if workers == 1 or len(tasks) == 1:
        extractor = FeatureExtractor(preset)
        with _single_torch_thread():
            for task in tasks:
                yield task, _run_task(task, extractor)
                advance()
        return
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(preset,),
    ) as pool:
        futures = {pool.submit(_run_task_in_worker, task): task for task in tasks}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
                advance()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _stage(progress: Progress, description: str, total: int) -> Callable[[], None]:
    """Announce a stage (0 of ``total`` done); return the function that counts one more item done."""
    done = 0
    progress(description, done, total)

    def advance() -> None:
        nonlocal done
        done += 1
        progress(description, done, total)

    return advance


def extract_features(
    manifest: pd.DataFrame,
    *,
    preset: AnyPreset | str,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
    progress: Progress = ignore_progress,
    device: torch.device | None = None,
) -> FeatureExtractionSummary:
    """Compute and cache the features of every manifest row that is not cached yet.

    Rows whose audio cannot be read are returned in ``failed`` (with the reason) and do not stop
    the others; errors that are not about the input (a full disk, a bug) are raised.
    ``workers > 1`` computes in that many spawned processes of one torch thread each.
    ``progress`` hears the stages ("hashing audio", "computing <preset>") and their counts.

    An SSL preset (``trainers.features.ssl_presets``) runs its encoder in this process on
    ``device`` (None: the CPU; the caller picks, e.g. ``trainers.device.resolve_device``) with
    ``workers`` torch threads on a CPU. Its weights are found (and, when anything is to be
    computed, loaded) before anything is written: a missing or broken file raises
    ``WeightsError`` naming it. On a GPU the encoder's memory is given back when it is done.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, but got {workers!r}.")
    started = time.perf_counter()
    preset = resolve_preset(get_preset(preset))
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    preset_dir = _preset_dir(cache_dir, preset)
    utt_ids, paths = _manifest_rows(manifest)

    failed: list[tuple[int, FailedUtterance]] = []  # (row, failure)
    reused = shared = computed = 0
    index = _ContentIndex(cache_dir / _INDEX_FILE)
    resolved = _resolve_hashes(paths, index, _stage(progress, "hashing audio", len(paths)))
    for row, reason in resolved.errors.items():
        failed.append((row, FailedUtterance(utt_ids[row], paths[row], reason)))

    rows_by_hash: dict[str, list[int]] = {}
    for row, content_hash in enumerate(resolved.hashes):
        if content_hash is not None:
            rows_by_hash.setdefault(content_hash, []).append(row)
    tasks = []
    for content_hash, rows in rows_by_hash.items():
        destination = _feature_path(preset_dir, content_hash)
        if destination.exists():
            reused += len(rows)
        else:
            first = rows[0]
            tasks.append(_Task(content_hash, paths[first], resolved.stat_keys[first], destination))

    encoder = None
    if tasks and isinstance(preset, SSLPreset):  # loads and checks the weights before anything is written
        encoder = SSLFeatureExtractor(preset, device=device or torch.device("cpu"))
    index.save()
    if tasks:
        _write_preset_description(preset_dir, preset)
    advance = _stage(progress, f"computing {preset.name}", len(tasks))
    for task, error in _run_tasks(tasks, preset, workers, advance, encoder):
        rows = rows_by_hash[task.content_hash]
        if error is None:
            computed += 1
            shared += len(rows) - 1
        else:
            failed.extend((row, FailedUtterance(utt_ids[row], paths[row], error)) for row in rows)
    if encoder is not None and encoder.device.type == "cuda":
        del encoder  # the trial that computed goes on training on this GPU: give the encoder's memory back
        torch.cuda.empty_cache()

    failed.sort(key=lambda item: item[0])  # manifest row order
    return FeatureExtractionSummary(
        preset=preset.name,
        fingerprint=preset.fingerprint,
        cache_dir=preset_dir,
        n_rows=len(paths),
        computed=computed,
        reused=reused,
        shared=shared,
        failed=tuple(failure for _, failure in failed),
        hashed=resolved.hashed,
        seconds=time.perf_counter() - started,
    )


def _write_preset_description(preset_dir: Path, preset: AnyPreset) -> None:
    description = preset_dir / "preset.json"
    if description.exists():
        return
    payload = {
        "fingerprint": preset.fingerprint,
        "algorithm_version": SSL_ALGORITHM_VERSION if isinstance(preset, SSLPreset) else FEATURE_ALGORITHM_VERSION,
        **preset.model_dump(mode="json"),
    }
    write_text_atomically(description, json.dumps(payload, indent=2, sort_keys=True) + "\n")
