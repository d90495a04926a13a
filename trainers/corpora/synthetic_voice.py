"""The voice of the synthetic corpus: one utterance rendered from a speaker and emotion cues.

A source-filter toy: a glottal pulse train whose pitch follows a declining contour with
per-syllable accents (jitter and shimmer on top), breath noise, four formant resonators per
vowel, a spectral tilt and a per-speaker channel colouring and noise floor. See
``trainers.corpora.synthetic`` for how speakers and cues are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

__all__ = ["SyntheticSpeaker", "synthesize"]

# (F1, F2, F3, F4) in Hz for an adult male vocal tract; speakers scale them.
_VOWELS = np.array(
    [
        [730, 1090, 2440, 3400],  # a
        [530, 1840, 2480, 3500],  # e
        [270, 2290, 3010, 3700],  # i
        [570, 840, 2410, 3300],  # o
        [300, 870, 2240, 3300],  # u
        [660, 1720, 2410, 3400],  # ae
        [520, 1190, 2390, 3400],  # schwa
    ],
    dtype=np.float64,
)
_FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])
_REFERENCE_RMS = 0.05  # level of a 0 dB utterance before speaker/emotion gains


@dataclass(frozen=True, eq=False)
class SyntheticSpeaker:
    session: int
    gender: str  # "F" or "M"
    f0_hz: float
    syllables_per_s: float
    formant_scale: float
    cue_offset: np.ndarray  # (8,) added to every emotion's cue means
    emotion_offsets: dict[str, np.ndarray]  # label -> (8,) speaker-specific extra shift
    noise_floor: float
    channel_tilt: float  # first-order "microphone" colouring, per speaker

    @property
    def code(self) -> str:
        return f"Ses{self.session:02d}{self.gender}"


def synthesize(
    rng: np.random.Generator, speaker: SyntheticSpeaker, cues: np.ndarray, duration_s: float, sr: int
) -> np.ndarray:
    """Render one utterance: (N,) float32, N = round(duration_s * sr)."""
    f0_st, f0var_st, tempo, energy_db, tilt, breath, jitter, shimmer = cues
    n = int(round(duration_s * sr))
    lead = int(rng.uniform(0.05, 0.25) * sr)
    tail = int(rng.uniform(0.05, 0.25) * sr)
    rate = speaker.syllables_per_s * np.exp(tempo)

    # Syllable plan: (start, length, vowel, accent) filling [lead, n - tail).
    syllables: list[tuple[int, int, int, float]] = []
    cursor = lead
    while True:
        length = int(sr * np.clip(rng.lognormal(np.log(0.75 / rate), 0.25), 0.06, 0.6))
        if cursor + length > n - tail:
            break
        syllables.append((cursor, length, int(rng.integers(len(_VOWELS))), float(rng.normal(0.0, f0var_st))))
        gap = 1.0 / rate - length / sr
        if rng.random() < 0.08:  # a phrase break
            gap += rng.uniform(0.15, 0.4)
        cursor += length + int(sr * max(0.02, gap + rng.normal(0.0, 0.02)))
    if not syllables:  # very short utterance at a slow rate: one syllable that fills it
        syllables.append((lead, n - lead - tail, int(rng.integers(len(_VOWELS))), 0.0))

    # f0 contour in semitones: declination plus interpolated per-syllable accents.
    t = np.arange(n) / sr
    centres = np.array([s + length / 2 for s, length, _, _ in syllables]) / sr
    accents = np.array([a for _, _, _, a in syllables])
    contour = f0_st + np.interp(t, centres, accents) - 2.0 * t / max(duration_s, 1e-3)
    f0 = speaker.f0_hz * 2.0 ** (contour / 12.0)
    # Jitter and shimmer: perturbations that change about once per nominal period.
    period = max(1, int(sr / speaker.f0_hz))
    n_periods = n // period + 2
    f0 *= 1.0 + jitter * np.repeat(rng.standard_normal(n_periods), period)[:n]
    phase = np.cumsum(f0 / sr)
    cycle = phase.astype(np.int64)
    amplitude = 1.0 + shimmer * rng.standard_normal(int(cycle[-1]) + 1)[cycle]
    voice = (1.0 - 2.0 * (phase - cycle)) * amplitude  # sawtooth glottal source
    aspiration = rng.standard_normal(n) * (0.5 + 0.5 * (phase - cycle))  # noise during opening
    source = (1.0 - breath) * voice + breath * 2.0 * aspiration
    source = lfilter([1.0 - tilt], [1.0, -tilt], source)

    out = np.zeros(n)
    nyquist_guard = 0.45 * sr
    for start, length, vowel, _ in syllables:
        segment = source[start : start + length]
        formants = _VOWELS[vowel] * speaker.formant_scale * rng.uniform(0.93, 1.07, size=4)
        for freq, bandwidth in zip(formants, _FORMANT_BANDWIDTHS):
            if freq < nyquist_guard:
                segment = _resonate(segment, freq, bandwidth, sr)
        attack = min(length // 3, int(0.03 * sr))
        envelope = np.ones(length)
        envelope[:attack] = np.linspace(0.0, 1.0, attack, endpoint=False)
        envelope *= np.hanning(length) ** 0.3
        out[start : start + length] += segment * envelope
        # A consonant: a short burst of high-passed noise right after the vowel.
        burst = int(sr * rng.uniform(0.02, 0.07))
        b0 = start + length
        if rng.random() < 0.6 and b0 + burst < n - tail:
            noise = np.diff(rng.standard_normal(burst + 1)) * np.hanning(burst)
            out[b0 : b0 + burst] += 0.15 * noise * np.std(segment)

    voiced_rms = np.sqrt(np.mean(out[out != 0.0] ** 2)) if np.any(out) else 1.0
    out *= _REFERENCE_RMS * 10 ** (energy_db / 20) / voiced_rms
    out = lfilter([1.0, -speaker.channel_tilt], [1.0], out)  # per-speaker channel colouring
    out += speaker.noise_floor * rng.standard_normal(n)
    return np.tanh(out).astype(np.float32)  # soft limiter: loud anger saturates, never wraps


def _resonate(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """A 2nd-order resonator (one formant) with unit gain at DC."""
    r = np.exp(-np.pi * bandwidth / sr)
    c = 2.0 * r * np.cos(2.0 * np.pi * freq / sr)
    return lfilter([1.0 - c + r * r], [1.0, -c, r * r], x)
