"""The feature computation: resampling, then the power spectrogram, mel, and log-mel or MFCC."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from trainers.features.presets import FeaturePreset, get_preset
from trainers.torchaudio_compat import transforms

# The resampler: a Kaiser-windowed sinc with resampy's "kaiser_best" parameters (librosa's
# high-quality resampler before soxr). torchaudio's default (Hann window, 6 zero crossings,
# rolloff 0.99) leaks images of the speech into the bands above the source's Nyquist: upsampling
# IEMOCAP's 16 kHz audio to paper-mfcc's 32,750 Hz left its 8-16 kHz mel bands ~65 dB louder
# than librosa's soxr and the MFCCs ~12 % off (relative); with these parameters they are ~1 % off,
# for about 1 ms more per utterance (measured in benchmarks/bench_features.py).
_RESAMPLER = {
    "resampling_method": "sinc_interp_kaiser",
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "beta": 14.769656459379492,
}


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
