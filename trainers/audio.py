"""Read and check audio files with soundfile (torchaudio's I/O needs torchcodec; see DESIGN.md).

``probe_audio`` is what the manifest uses: it reads only headers, yet catches the ways a corpus
file is commonly broken (zero bytes, not audio at all, a WAV whose data chunk promises more
bytes than the file holds, no samples).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile


class AudioError(ValueError):
    """An audio file cannot be used; the message says why (the caller adds the path)."""


@dataclass(frozen=True, slots=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _declared_wav_data_end(path: Path) -> int | None:
    """Byte offset where a RIFF/WAVE file's ``data`` chunk says it ends, or None if not RIFF."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk_header = handle.read(8)
            if len(chunk_header) < 8:
                raise AudioError("truncated WAV: no 'data' chunk before the end of the file")
            chunk_id, chunk_size = chunk_header[:4], struct.unpack("<I", chunk_header[4:])[0]
            if chunk_id == b"data":
                return handle.tell() + chunk_size
            handle.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)


def probe_audio(path: str | os.PathLike[str]) -> AudioInfo:
    """Return the header facts of an audio file, or raise ``AudioError`` saying what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioError("file does not exist") from None
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    data_end = _declared_wav_data_end(path)
    if data_end is not None and data_end > size:
        raise AudioError(f"truncated WAV: the data chunk ends at byte {data_end} but the file has {size} bytes")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"not a readable audio file ({error})") from None
    if info.frames <= 0:
        raise AudioError("audio has no samples")
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels))


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a file as mono float32 in [-1, 1]; returns ``(samples (N,), sample_rate)``.

    Multi-channel audio is averaged to mono. Raises ``AudioError`` for unreadable files.
    """
    try:
        samples, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"not a readable audio file ({error})") from None
    if samples.shape[0] == 0:
        raise AudioError("audio has no samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sample_rate)


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float samples as 16-bit PCM WAV (the format IEMOCAP and MSP-IMPROV ship)."""
    soundfile.write(str(path), np.asarray(samples, dtype=np.float32), sample_rate, subtype="PCM_16")
