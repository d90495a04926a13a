"""Acoustic features for a manifest, computed once per (audio content, preset) and cached on disk.

A *preset* (``FeaturePreset``) fixes every parameter of the computation; ``paper-mfcc`` follows
Rajapakshe et al. (2023): resample to 32,750 Hz, keep the first 8 s (zero-padded), 128 MFCC with
n_fft 2048 / hop 512 -> 128 x 512 frames, max-pool time by 4 -> ``(1, 128, 128)``.

Cache layout (per node; ``default_cache_dir()``)::

    <cache_dir>/
        content-index.json                      # (path, size, mtime, ctime, inode) -> content hash
        <preset.name>-<preset.fingerprint>/
            preset.json                         # the preset, for humans
            <hh>/<content hash>.npy             # float32 (1, F, T); hh = first two hex digits

The key of a feature file is the blake2b hash of the audio file's bytes plus the preset's
fingerprint, so editing an audio file or any preset parameter recomputes, renaming or copying an
audio file does not, and identical audio under two paths is computed once. Every file is written
through ``trainers.atomic_io``: a killed run leaves no partial ``.npy``.

``content-index.json`` only saves rehashing unchanged audio (hashing takes about twice as long as
loading the cached features; see ``benchmarks/bench_features.py``). The content hash stays the source of
truth: an entry is used only while the file's size, mtime, ctime and inode all match, and a file is
entered only once its timestamps are older than ``_INDEX_MIN_AGE_NS`` (so a rewrite within the
filesystem's timestamp granularity cannot go unnoticed; the same "racy clean" rule git uses).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainers.atomic_io import write_atomically, write_text_atomically
from trainers.audio import AudioError, read_audio
from trainers.torchaudio_compat import transforms

__all__ = [
    "FEATURE_ALGORITHM_VERSION",
    "PRESETS",
    "FailedUtterance",
    "FeatureExtractionSummary",
    "FeatureExtractor",
    "FeaturePreset",
    "FeaturesNotFoundError",
    "default_cache_dir",
    "extract_features",
    "feature_path",
    "get_preset",
    "load_features",
]

# Bump when the computation changes in a way the preset's fields do not capture (a different
# resampler, padding rule, pooling...): every fingerprint changes and caches are recomputed.
# 2: band-limited Kaiser-windowed sinc resampling (was torchaudio's default Hann, 6 zero crossings).
FEATURE_ALGORITHM_VERSION = 2

# The resampler: a Kaiser-windowed sinc with resampy's "kaiser_best" parameters (librosa's
# high-quality resampler before soxr). torchaudio's default (Hann window, 6 zero crossings,
# rolloff 0.99) leaks images of the speech into the bands above the source's Nyquist: upsampling
# IEMOCAP's 16 kHz audio to paper-mfcc's 32,750 Hz left its 8-16 kHz mel bands ~65 dB louder
# than librosa's soxr and the MFCCs ~12 % off (relative); with these parameters they are ~1 % off,
# for about 1 ms more per utterance (measured in benchmarks/bench_features.py).
_RESAMPLER = {"resampling_method": "sinc_interp_kaiser", "lowpass_filter_width": 64,
              "rolloff": 0.9475937167399596, "beta": 14.769656459379492}

_INDEX_FILE = "content-index.json"
_INDEX_VERSION = 1
# A file is entered into the content index only when its mtime and ctime are at least this much
# older than the moment it was stat'ed; younger entries could hide a rewrite made within the
# filesystem's timestamp granularity (1-2 s on FAT/NFS, coarse ticks on older Linux kernels).
_INDEX_MIN_AGE_NS = 2_000_000_000
_HASH_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------


class FeaturePreset(BaseModel):
    """Every parameter of one feature computation; frozen so that its fingerprint is stable.

    The spectrogram always uses a Hann window, ``center=True`` with reflect padding and power 2.
    ``n_frames`` is the number of frames kept before pooling (the first ``n_frames`` of the
    ``1 + samples // hop_length`` that ``center=True`` yields); the output has
    ``n_frames // time_pool`` frames.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["mfcc", "logmel"]
    sample_rate: int = Field(gt=0)
    max_seconds: float = Field(gt=0)
    n_fft: int = Field(gt=0)
    win_length: int = Field(gt=0)
    hop_length: int = Field(gt=0)
    n_mels: int = Field(gt=0)
    n_mfcc: int | None = Field(default=None, gt=0)
    f_min: float = Field(default=0.0, ge=0)
    f_max: float | None = Field(default=None, gt=0)
    mel_scale: Literal["htk", "slaney"] = "htk"
    mel_norm: Literal["slaney"] | None = None
    log_offset: float = Field(default=1e-6, gt=0)  # logmel: log(mel + log_offset)
    n_frames: int = Field(gt=0)
    time_pool: int = Field(default=1, gt=0)  # max-pool over time, kernel = stride = time_pool

    @model_validator(mode="after")
    def _check_consistent(self) -> FeaturePreset:
        if self.kind == "mfcc" and self.n_mfcc is None:
            raise ValueError(f"preset {self.name!r}: kind 'mfcc' needs n_mfcc, but got None.")
        if self.kind == "logmel" and self.n_mfcc is not None:
            raise ValueError(
                f"preset {self.name!r}: kind 'logmel' takes no n_mfcc, but got {self.n_mfcc}."
            )
        if self.n_mfcc is not None and self.n_mfcc > self.n_mels:
            raise ValueError(
                f"preset {self.name!r}: n_mfcc must be <= n_mels={self.n_mels}, but got {self.n_mfcc}."
            )
        if self.win_length > self.n_fft:
            raise ValueError(
                f"preset {self.name!r}: win_length must be <= n_fft={self.n_fft}, but got {self.win_length}."
            )
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        if not self.f_min < f_max <= nyquist:
            raise ValueError(
                f"preset {self.name!r}: need f_min < f_max <= sample_rate / 2 = {nyquist:g}, "
                f"but got f_min={self.f_min:g}, f_max={f_max:g}."
            )
        exact = self.max_seconds * self.sample_rate
        if abs(exact - round(exact)) > 1e-6:
            raise ValueError(
                f"preset {self.name!r}: max_seconds * sample_rate must be a whole number of samples, "
                f"but got {self.max_seconds:g} * {self.sample_rate} = {exact:g}."
            )
        available = 1 + self.num_samples // self.hop_length
        if self.n_frames > available:
            raise ValueError(
                f"preset {self.name!r}: n_frames must be <= {available} (frames in {self.max_seconds:g} s "
                f"with hop {self.hop_length}), but got {self.n_frames}."
            )
        if self.n_frames % self.time_pool:
            raise ValueError(
                f"preset {self.name!r}: n_frames={self.n_frames} must be a multiple of time_pool, "
                f"but got time_pool={self.time_pool}."
            )
        return self

    @property
    def num_samples(self) -> int:
        """Samples at ``sample_rate`` that are analysed (longer audio is cut, shorter zero-padded)."""
        return round(self.max_seconds * self.sample_rate)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Shape of one utterance's features, ``(1, F, T)`` (channel, frequency bins, frames)."""
        n_bins = self.n_mfcc if self.kind == "mfcc" else self.n_mels
        assert n_bins is not None  # guaranteed by _check_consistent
        return (1, n_bins, self.n_frames // self.time_pool)

    def canonical_json(self) -> str:
        """The computation's parameters (name excluded) as sorted, compact JSON."""
        params = self.model_dump(mode="json", exclude={"name"})
        params["algorithm_version"] = FEATURE_ALGORITHM_VERSION
        return json.dumps(params, sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> str:
        """12 hex digits identifying the computation.

        The name is excluded: it is a label, and the cache directory carries it anyway
        (``<name>-<fingerprint>``), so the fingerprint alone says whether two presets compute
        the same thing.
        """
        return hashlib.blake2b(self.canonical_json().encode("utf-8"), digest_size=6).hexdigest()


_PRESET_LIST = (
    # Rajapakshe et al. 2023. Mel filters follow librosa's defaults (Slaney scale and area
    # normalisation), which the paper's librosa-based pipeline used.
    FeaturePreset(
        name="paper-mfcc",
        kind="mfcc",
        sample_rate=32_750,
        max_seconds=8.0,
        n_fft=2048,
        win_length=2048,
        hop_length=512,
        n_mels=128,
        n_mfcc=128,
        mel_scale="slaney",
        mel_norm="slaney",
        n_frames=512,  # 1 + 262000 // 512 = 512 frames with center=True
        time_pool=4,  # -> (1, 128, 128)
    ),
    # A common SER front end: 25 ms Hann window, 10 ms hop, 64 HTK-mel bands up to 8 kHz,
    # FFT zero-padded to 512, log(mel power + 1e-6). 8 s -> 801 frames; the first 800 are kept and
    # max-pooled by 4 -> 200 frames of 40 ms, i.e. (1, 64, 200).
    FeaturePreset(
        name="logmel-64",
        kind="logmel",
        sample_rate=16_000,
        max_seconds=8.0,
        n_fft=512,
        win_length=400,
        hop_length=160,
        n_mels=64,
        log_offset=1e-6,
        n_frames=800,
        time_pool=4,
    ),
    # Small and fast, for the demo, CI and quick sweeps on CPU: 16 kHz, first 4.096 s, 32
    # HTK-mel bands, 32 ms window / hop, 128 frames max-pooled by 4 -> (1, 32, 32). A supernet
    # step costs ~16x less than on paper-mfcc's 128 x 128.
    FeaturePreset(
        name="logmel-32",
        kind="logmel",
        sample_rate=16_000,
        max_seconds=4.096,
        n_fft=512,
        win_length=512,
        hop_length=512,
        n_mels=32,
        log_offset=1e-6,
        n_frames=128,
        time_pool=4,
    ),
)

PRESETS: Mapping[str, FeaturePreset] = MappingProxyType({preset.name: preset for preset in _PRESET_LIST})


def get_preset(preset: FeaturePreset | str) -> FeaturePreset:
    """Return the named built-in preset (a ``FeaturePreset`` is returned as is)."""
    if isinstance(preset, FeaturePreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        expected = ", ".join(PRESETS)
        raise ValueError(f"unknown feature preset {preset!r}; expected one of: {expected}") from None


# --------------------------------------------------------------------------------------------
# Computation
# --------------------------------------------------------------------------------------------


class FeatureExtractor:
    """Compute one preset's features from samples; holds the transforms so they are built once.

    One ``Resample`` transform (whose sinc kernel is the costly part to build) is kept per source
    sample rate. Not thread-safe; use one extractor per process.

    The values are those of torchaudio's ``MFCC`` / ``MelSpectrogram`` transforms applied to the
    cut or zero-padded samples, bit for bit; only the STFT of frames that see nothing but the
    zero padding is skipped, because their power is exactly zero (see ``_power_spectrogram``).
    """

    def __init__(self, preset: FeaturePreset | str) -> None:
        self.preset = get_preset(preset)
        self._resamplers: dict[int, torch.nn.Module] = {}
        p = self.preset
        mel_kwargs = dict(
            n_fft=p.n_fft,
            win_length=p.win_length,
            hop_length=p.hop_length,
            f_min=p.f_min,
            f_max=p.f_max,
            n_mels=p.n_mels,
            power=2.0,
            center=True,
            pad_mode="reflect",
            norm=p.mel_norm,
            mel_scale=p.mel_scale,
        )
        self._mfcc: torch.nn.Module | None = None
        if p.kind == "mfcc":
            # Power mel -> dB (top_db 80, as librosa's power_to_db) -> orthonormal DCT-II.
            self._mfcc = transforms.MFCC(
                sample_rate=p.sample_rate,
                n_mfcc=p.n_mfcc,
                dct_type=2,
                norm="ortho",
                log_mels=False,
                melkwargs=mel_kwargs,
            )
            self._mel: torch.nn.Module = self._mfcc.MelSpectrogram
        else:
            self._mel = transforms.MelSpectrogram(sample_rate=p.sample_rate, **mel_kwargs)
        self._window: torch.Tensor = self._mel.spectrogram.window  # (win_length,) Hann

    def _resampler(self, source_rate: int) -> torch.nn.Module:
        resampler = self._resamplers.get(source_rate)
        if resampler is None:
            resampler = transforms.Resample(orig_freq=source_rate, new_freq=self.preset.sample_rate, **_RESAMPLER)
            self._resamplers[source_rate] = resampler
        return resampler

    def __call__(self, samples: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Features of mono ``samples`` (N,) at ``sample_rate``: float32 tensor ``preset.output_shape``."""
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono with shape (N,), but got shape {samples.shape}.")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, but got {sample_rate}.")
        p = self.preset
        wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))  # (N,)
        with torch.no_grad():
            if sample_rate != p.sample_rate:
                # Only the first max_seconds are used: cut before resampling, keeping a margin far
                # wider than the sinc kernel so that the kept samples equal those of resampling all.
                keep = math.ceil(p.max_seconds * sample_rate) + sample_rate // 20 + 64
                wave = self._resampler(sample_rate)(wave[:keep].unsqueeze(0)).squeeze(0)
            n_signal = min(wave.shape[0], p.num_samples)  # samples before the zero padding
            wave = _fit_length(wave, p.num_samples)  # (S,)
            power = self._power_spectrogram(wave, n_signal)  # (1, n_fft // 2 + 1, 1 + S // hop)
            spec = self._mel.mel_scale(power)  # (1, n_mels, 1 + S // hop)
            if self._mfcc is not None:
                # As torchaudio's MFCC.forward: dB over all frames (top_db is relative to the
                # loudest), then the DCT as (..., time, n_mels) @ (n_mels, n_mfcc).
                spec = self._mfcc.amplitude_to_DB(spec)
                spec = torch.matmul(spec.transpose(-1, -2), self._mfcc.dct_mat).transpose(-1, -2)
            spec = spec[..., : p.n_frames]  # (1, F, n_frames); the preset checked there are enough
            if p.kind == "logmel":
                spec = torch.log(spec + p.log_offset)
            if p.time_pool > 1:
                spec = F.max_pool1d(spec, kernel_size=p.time_pool, stride=p.time_pool)  # (1, F, T)
        return spec.to(torch.float32).contiguous()

    def _power_spectrogram(self, wave: torch.Tensor, n_signal: int) -> torch.Tensor:
        """``|STFT|^2`` of ``wave`` (S,), as torchaudio's ``Spectrogram(power=2)`` computes it.

        Returns ``(1, n_fft // 2 + 1, 1 + S // hop)``.

        With ``center=True`` frame t covers samples ``[t * hop - n_fft / 2, t * hop + n_fft / 2)``
        of the reflect-padded wave. When ``wave[n_signal:]`` is zero padding at least ``n_fft``
        long, every frame that starts at or after ``n_signal`` sees only zeros (its reflected end
        mirrors the padding too), so its power is exactly 0 and is not computed: with IEMOCAP's
        ~4.5 s mean duration about half of paper-mfcc's 8 s window is padding. The frames that are
        computed go through the same ``torch.stft`` on the same padded samples, so the result
        equals the full computation bit for bit.
        """
        p = self.preset
        n_samples = wave.shape[0]
        n_total = 1 + n_samples // p.hop_length
        half = p.n_fft // 2
        n_nonzero = n_total
        if n_signal + p.n_fft <= n_samples:
            n_nonzero = -(-(n_signal + half) // p.hop_length)  # ceil: first frame starting in the padding
        # Frames 0 .. n_nonzero-1 of the reflect padding that torch.stft(center=True) applies.
        # They end before the right edge when frames are skipped, so only the left side is padded.
        end = (n_nonzero - 1) * p.hop_length + half  # wave samples they cover
        if n_nonzero < n_total and end > half:
            padded = F.pad(wave[:end].unsqueeze(0), (half, 0), mode="reflect")  # (1, end + n_fft / 2)
        else:
            padded = F.pad(wave.unsqueeze(0), (half, half), mode="reflect")  # (1, S + n_fft)
            padded = padded[:, : end + half]
        spec = torch.stft(
            padded,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            win_length=p.win_length,
            window=self._window,
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )  # (1, n_fft // 2 + 1, n_nonzero); n_nonzero >= 1
        power = spec.abs().pow(2.0)  # (1, n_fft // 2 + 1, n_nonzero)
        return F.pad(power, (0, n_total - n_nonzero))  # zeros: (1, n_fft // 2 + 1, n_total)


def _fit_length(wave: torch.Tensor, length: int) -> torch.Tensor:
    """Cut ``wave`` (N,) to ``length`` samples or zero-pad it at the end."""
    if wave.shape[0] >= length:
        return wave[:length]
    return F.pad(wave, (0, length - wave.shape[0]))


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$SERNAS_CACHE_DIR`` if set, else ``~/.cache/sernas/features``.

    Caches are per node: every node computes (or is given) its own copy, and trials read it from
    local disk.
    """
    configured = os.environ.get("SERNAS_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "sernas" / "features"


def _preset_dir(cache_dir: Path, preset: FeaturePreset) -> Path:
    return cache_dir / f"{preset.name}-{preset.fingerprint}"


def feature_path(cache_dir: str | os.PathLike[str], preset: FeaturePreset | str, content_hash: str) -> Path:
    """Where the features of audio whose bytes hash to ``content_hash`` are cached."""
    return _feature_path(_preset_dir(Path(cache_dir), get_preset(preset)), content_hash)


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


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


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
            f"manifest must have columns 'utt_id' and 'path', but it lacks {missing}; "
            f"it has {list(manifest.columns)}."
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


def _run_task(task: _Task, extractor: FeatureExtractor) -> str | None:
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
    values = extractor(samples, sample_rate)  # (1, F, T)
    if not torch.isfinite(values).all():
        return "features are not finite (does the audio contain NaN or inf samples?)"
    array = values.numpy()
    write_atomically(task.destination, lambda handle: np.save(handle, array))
    return None


@contextlib.contextmanager
def _single_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, as the workers do, then restore the caller's setting.

    Per utterance the transforms are too small to gain from threads (on a 2-core node one thread
    was ~7x faster than two under load), and one thread everywhere makes the cached values
    bit-identical whatever ``workers`` was.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
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
    tasks: Sequence[_Task], preset: FeaturePreset, workers: int, advance: Callable[[], None]
) -> Iterator[tuple[_Task, str | None]]:
    if not tasks:
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


class _Progress:
    """rich progress bars on stderr, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def stage(self, description: str, total: int) -> Callable[[], None]:
        """Add a bar; return the function that advances it by one."""
        if self._progress is None:
            return lambda: None
        task_id = self._progress.add_task(description, total=total)
        return lambda: self._progress.advance(task_id)


def extract_features(
    manifest: pd.DataFrame,
    *,
    preset: FeaturePreset | str,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> FeatureExtractionSummary:
    """Compute and cache the features of every manifest row that is not cached yet.

    Rows whose audio cannot be read are returned in ``failed`` (with the reason) and do not stop
    the others; errors that are not about the input (a full disk, a bug) are raised.
    ``workers > 1`` computes in that many spawned processes of one torch thread each.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, but got {workers!r}.")
    started = time.perf_counter()
    preset = get_preset(preset)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    preset_dir = _preset_dir(cache_dir, preset)
    utt_ids, paths = _manifest_rows(manifest)

    failed: list[tuple[int, FailedUtterance]] = []  # (row, failure)
    reused = shared = computed = 0
    with _Progress(progress) as bars:
        index = _ContentIndex(cache_dir / _INDEX_FILE)
        resolved = _resolve_hashes(paths, index, bars.stage("hashing audio", len(paths)))
        index.save()
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

        if tasks:
            _write_preset_description(preset_dir, preset)
        advance = bars.stage(f"computing {preset.name}", len(tasks))
        for task, error in _run_tasks(tasks, preset, workers, advance):
            rows = rows_by_hash[task.content_hash]
            if error is None:
                computed += 1
                shared += len(rows) - 1
            else:
                failed.extend((row, FailedUtterance(utt_ids[row], paths[row], error)) for row in rows)

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


def _write_preset_description(preset_dir: Path, preset: FeaturePreset) -> None:
    description = preset_dir / "preset.json"
    if description.exists():
        return
    payload = {
        "fingerprint": preset.fingerprint,
        "algorithm_version": FEATURE_ALGORITHM_VERSION,
        **preset.model_dump(mode="json"),
    }
    write_text_atomically(description, json.dumps(payload, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class FeaturesNotFoundError(LookupError):
    """Some manifest rows have no cached features for the preset; the message says how to compute them."""


def load_features(
    manifest: pd.DataFrame,
    *,
    preset: FeaturePreset | str,
    cache_dir: str | os.PathLike[str] | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """All cached features of ``manifest`` as one float32 tensor ``(N, 1, F, T)``, in row order.

    A trial loads once and then batches by indexing (IEMOCAP: ~5.5k x 64 KB). Raises
    ``FeaturesNotFoundError`` naming the missing rows and the ``sernas features`` command that
    computes them (``manifest_path`` only fills in that command).
    """
    preset = get_preset(preset)
    explicit_cache = cache_dir is not None
    cache_dir = Path(cache_dir).expanduser() if explicit_cache else default_cache_dir()
    utt_ids, paths = _manifest_rows(manifest)

    index = _ContentIndex(cache_dir / _INDEX_FILE)
    resolved = _resolve_hashes(paths, index)
    index.save(required=False)  # the cache may be read-only for trials

    preset_dir = _preset_dir(cache_dir, preset)
    out = np.empty((len(paths), *preset.output_shape), dtype=np.float32)  # (N, 1, F, T)
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
    preset: FeaturePreset,
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
