"""Benchmark feature extraction and loading (trainers.features) on generated 16 kHz WAVs.

    python benchmarks/bench_features.py [--utterances 200] [--out benchmarks/results/features.json]

Writes N clips of 1.5-4.5 s (tones plus noise) to a temporary directory, waits until they are old
enough for the content index (as corpus files are), then times ``paper-mfcc``:

- cold (empty cache) and warm (cache filled) extraction with workers=1 and workers=2 (the
  workers=2 cold time includes starting the spawned processes);
- a warm run and ``load_features`` with and without the content index (without it, every file
  is rehashed), and indexing one batch of 32 out of the loaded tensor;
- the reference pipeline of the paper's librosa-based code on the same files, in the same order
  and process: ``librosa.load(path, sr=32750)``, cut/zero-pad to 8 s, ``librosa.feature.mfcc``
  with the preset's parameters, the first 512 frames max-pooled by 4 (see ``librosa_features``).
  It has no cache, so every run recomputes: both "ours cold / librosa" and "ours warm / librosa"
  divide by the same librosa time. Its features are compared with ours (correlation, relative
  difference), on the 16 kHz clips and on clips written at 32,750 Hz (no resampling, so the
  MFCC computations alone are compared). Needs ``pip install -c constraints.txt -e '.[bench]'``;
  without librosa that part is recorded as skipped.

Times are medians over ``--cold-repeats`` fresh caches (each followed by one librosa pass, so the
two alternate) and ``--warm-repeats`` warm runs. Every timed pipeline first processes one extra
clip outside the timed set, so one-off costs (imports, first-call initialisation) are left out
for both.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from trainers import features  # noqa: E402
from trainers.atomic_io import write_text_atomically  # noqa: E402
from trainers.audio import read_audio, write_wav  # noqa: E402

SAMPLE_RATE = 16_000
PRESET = "paper-mfcc"
LIBROSA_INSTALL = "pip install -c constraints.txt -e '.[bench]'"
N_EQUIVALENCE_NATIVE = 10  # clips written at the preset's rate for the MFCC-only comparison


def write_corpus(
    directory: Path,
    n: int,
    seed: int,
    *,
    sample_rate: int = SAMPLE_RATE,
    seconds_range: tuple[float, float] = (1.5, 4.5),
) -> tuple[pd.DataFrame, float]:
    """N WAVs, two to four vibrato tones plus noise; returns (manifest, audio seconds)."""
    rng = np.random.default_rng(seed)
    rows, total = [], 0.0
    for i in range(n):
        seconds = float(rng.uniform(*seconds_range))
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        wave = 0.05 * rng.standard_normal(t.size)
        for _ in range(int(rng.integers(2, 5))):
            f0, vibrato = rng.uniform(80, 1_500), rng.uniform(2, 6)
            phase = 2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * vibrato * t)
            wave += rng.uniform(0.05, 0.3) * np.sin(phase)
        path = directory / f"utt{i:05d}.wav"
        write_wav(path, np.clip(wave, -1, 1), sample_rate)
        rows.append({"utt_id": f"utt{i:05d}", "path": str(path)})
        total += seconds
    return pd.DataFrame(rows), total


def _stats(samples: list[float], n: int) -> dict:
    median = float(np.median(samples))
    return {
        "seconds_median": round(median, 4),
        "seconds_min": round(min(samples), 4),
        "utterances_per_s": round(n / median, 1),
        "repeats": len(samples),
    }


def time_extract(
    manifest: pd.DataFrame,
    cache_dirs: list[Path],
    workers: int,
    before: Callable[[Path], None] | None = None,
    after: Callable[[], None] | None = None,
) -> dict:
    """One run per entry of ``cache_dirs`` (the same directory repeated = warm runs).

    ``after`` runs after each run, untimed here (it interleaves the librosa passes with ours, so
    that a change of the machine's load between them hits both).
    """
    samples = []
    for cache_dir in cache_dirs:
        if before is not None:
            before(cache_dir)
        summary = features.extract_features(manifest, preset=PRESET, cache_dir=cache_dir, workers=workers)
        if summary.failed:
            raise RuntimeError(f"benchmark audio failed: {summary.failed[:3]}")
        samples.append(summary.seconds)
        if after is not None:
            after()
    return {**_stats(samples, len(manifest)), "computed": summary.computed, "reused": summary.reused}


def time_load(
    manifest: pd.DataFrame, cache_dir: Path, repeats: int, before: Callable[[Path], None] | None = None
) -> tuple[dict, torch.Tensor]:
    samples = []
    for _ in range(repeats):
        if before is not None:
            before(cache_dir)
        started = time.perf_counter()
        loaded = features.load_features(manifest, preset=PRESET, cache_dir=cache_dir)
        samples.append(time.perf_counter() - started)
    return _stats(samples, len(manifest)), loaded


def drop_index(cache_dir: Path) -> None:
    (cache_dir / features.cache._INDEX_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The paper's librosa pipeline (reference; librosa is a benchmark extra, never a dependency)
# --------------------------------------------------------------------------------------------


def librosa_parameters(preset: features.FeaturePreset) -> dict:
    """Keyword arguments of ``librosa.feature.mfcc`` equal to the preset's parameters.

    librosa's defaults already give the preset's Slaney mel scale and area normalisation, power
    2, ``power_to_db`` with ref 1, amin 1e-10, top_db 80 and an orthonormal DCT-II; they are
    spelled out so that a change of librosa's defaults cannot change the reference silently.
    ``pad_mode='reflect'`` is the preset's (and librosa < 0.10's default); librosa >= 0.10
    defaults to 'constant', which changes only the first and last frame or two.
    """
    if (preset.kind, preset.mel_scale, preset.mel_norm) != ("mfcc", "slaney", "slaney"):
        raise ValueError(
            f"the librosa reference computes Slaney-mel MFCC, but preset {preset.name!r} is "
            f"{preset.kind} with mel_scale={preset.mel_scale!r}, mel_norm={preset.mel_norm!r}."
        )
    return {
        "n_mfcc": preset.n_mfcc,
        "dct_type": 2,
        "norm": "ortho",
        "lifter": 0,
        "n_fft": preset.n_fft,
        "win_length": preset.win_length,
        "hop_length": preset.hop_length,
        "window": "hann",
        "center": True,
        "pad_mode": "reflect",
        "power": 2.0,
        "n_mels": preset.n_mels,
        "fmin": preset.f_min,
        "fmax": preset.f_max,
        "htk": False,
        "mel_norm": "slaney",
    }


def librosa_features(path: str, preset: features.FeaturePreset) -> np.ndarray:
    """The paper's pipeline for one file: float32 ``preset.output_shape``, like ours.

    ``librosa.load`` at the preset's rate (librosa's default resampler, soxr 'HQ'), cut or
    zero-pad to ``max_seconds``, MFCC, keep the first ``n_frames`` frames, max-pool time.
    """
    import librosa

    y, sr = librosa.load(path, sr=preset.sample_rate)  # mono float32 at 32,750 Hz
    y = librosa.util.fix_length(y, size=preset.num_samples)  # (S,)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, **librosa_parameters(preset))  # (n_mfcc, 1 + S // hop)
    mfcc = mfcc[:, : preset.n_frames]  # (F, n_frames)
    n_bins, pooled = mfcc.shape[0], preset.n_frames // preset.time_pool
    pooled_mfcc = mfcc.reshape(n_bins, pooled, preset.time_pool).max(axis=-1)  # (F, T)
    return pooled_mfcc[np.newaxis].astype(np.float32)  # (1, F, T)


class LibrosaPasses:
    """Each call runs the librosa pipeline over all ``paths`` once, timed; keeps the last outputs.

    BLAS (numpy's OpenBLAS, used by the mel projection) is held to one thread, as torch is in our
    extraction: both pipelines use one core. With OpenBLAS's default of one thread per core, the
    pipeline ran ~4x slower on this shared 2-core machine (threads spinning against other work),
    which would flatter our ratio.
    """

    def __init__(self, paths: list[str], preset: features.FeaturePreset) -> None:
        self.paths, self.preset = paths, preset
        self.seconds: list[float] = []
        self.outputs: np.ndarray | None = None  # (N, 1, F, T)

    def __call__(self) -> None:
        with _one_blas_thread():
            started = time.perf_counter()
            outputs = [librosa_features(path, self.preset) for path in self.paths]
            self.seconds.append(time.perf_counter() - started)
        self.outputs = np.stack(outputs)


def _one_blas_thread() -> contextlib.AbstractContextManager:
    import threadpoolctl  # a dependency of scikit-learn, which librosa requires

    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def compare(ours: np.ndarray, reference: np.ndarray) -> dict:
    """Per-utterance agreement of two ``(N, 1, F, T)`` feature arrays (summarised over N)."""
    if ours.shape != reference.shape:
        raise ValueError(f"feature shapes differ: ours {ours.shape}, librosa {reference.shape}")
    a = ours.reshape(len(ours), -1).astype(np.float64)
    b = reference.reshape(len(reference), -1).astype(np.float64)
    correlation = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)])
    relative = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    # c0 (the log energy term) dominates both norms; the others carry the spectral shape.
    higher = np.array([np.corrcoef(x[1:].ravel(), y[1:].ravel())[0, 1] for x, y in zip(ours[:, 0], reference[:, 0])])
    return {
        "utterances": len(ours),
        "shape": list(ours.shape[1:]),
        "correlation_median": round(float(np.median(correlation)), 6),
        "correlation_min": round(float(correlation.min()), 6),
        "correlation_without_c0_median": round(float(np.median(higher)), 6),
        "correlation_without_c0_min": round(float(higher.min()), 6),
        "relative_difference_median": round(float(np.median(relative)), 6),
        "relative_difference_max": round(float(relative.max()), 6),
        "max_abs_difference": round(float(np.abs(a - b).max()), 4),
        "reference_value_range": [round(float(b.min()), 2), round(float(b.max()), 2)],
    }


def librosa_version() -> str | None:
    """librosa's version, or None when it is not installed (it is only a benchmark extra)."""
    if importlib.util.find_spec("librosa") is None:
        return None
    import librosa

    return str(librosa.__version__)


def run_librosa(
    manifest: pd.DataFrame,
    cache: Path,
    tmp: Path,
    args: argparse.Namespace,
    ours: dict[str, dict],
    passes: LibrosaPasses,
) -> dict:
    """The librosa reference: its time on the same files, ratios to ours, and feature agreement."""
    preset = passes.preset
    timing, reference = _stats(passes.seconds, len(passes.paths)), passes.outputs
    ours_features = features.load_features(manifest, preset=preset, cache_dir=cache).numpy()

    # Clips written at the preset's rate: no resampling on either side, so the MFCCs alone meet.
    (tmp / "native").mkdir()
    native, _ = write_corpus(
        tmp / "native",
        N_EQUIVALENCE_NATIVE,
        args.seed + 2,
        sample_rate=preset.sample_rate,
        seconds_range=tuple(args.seconds),
    )
    extractor = features.FeatureExtractor(preset)
    ours_native = np.stack([extractor(*read_audio(path)).numpy() for path in native["path"]])
    reference_native = np.stack([librosa_features(path, preset) for path in native["path"]])

    def ratio(name: str) -> float:
        return round(ours[name]["utterances_per_s"] / timing["utterances_per_s"], 2)

    return {
        "skipped": False,
        "version": librosa_version(),
        "pipeline": (
            f"librosa.load(path, sr={preset.sample_rate}) [res_type soxr_hq]; "
            f"librosa.util.fix_length(y, size={preset.num_samples}); "
            f"librosa.feature.mfcc(y=y, sr={preset.sample_rate}, **parameters); "
            f"[:, :{preset.n_frames}] max-pooled over time by {preset.time_pool}"
        ),
        "parameters": librosa_parameters(preset),
        "cache": "none: the paper's pipeline recomputes on every run, so ours cold and ours warm "
        "are both divided by this same librosa time",
        "blas_threads": 1,
        "timing": timing,
        "timing_note": "each librosa pass runs right after one of ours cold (workers=1) runs",
        "ours_cold_over_librosa": ratio("cold_w1"),
        "ours_cold_w2_over_librosa": ratio("cold_w2"),
        "ours_warm_over_librosa": ratio("warm_w1"),
        # What a trial does with a warm cache: load_features of every row into one tensor.
        "ours_load_features_over_librosa": ratio("load"),
        "equivalence": {
            "note": (
                f"On clips at {preset.sample_rate} Hz (no resampling) the two agree to float32 "
                "rounding: the MFCC computations are the same. On 16 kHz clips what is left is the "
                "resamplers: librosa's soxr HQ and ours (a Kaiser-windowed sinc with resampy's "
                "kaiser_best parameters, FEATURE_ALGORITHM_VERSION 2) both leave the bands above "
                "8 kHz empty but differ slightly in passband ripple and transition band. (Version "
                "1 used torchaudio's default Hann sinc, whose images above 8 kHz put it ~12 % off.)"
            ),
            "16k_files": compare(ours_features, reference),
            f"{preset.sample_rate}hz_files": compare(ours_native, reference_native),
        },
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="sernas-bench-features-") as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        (tmp / "warmup").mkdir()
        manifest, audio_seconds = write_corpus(
            tmp / "audio", args.utterances, args.seed, seconds_range=tuple(args.seconds)
        )
        # One clip outside the timed set: each pipeline's first-call costs are paid on it.
        warmup, _ = write_corpus(tmp / "warmup", 1, args.seed + 1, seconds_range=tuple(args.seconds))
        # Corpus files are old; files younger than this are never entered in the content index.
        time.sleep(features.cache._INDEX_MIN_AGE_NS / 1e9 + 0.1)
        features.extract_features(warmup, preset=PRESET, cache_dir=tmp / "cache-warmup")
        passes = None
        if librosa_version() is not None:
            passes = LibrosaPasses([str(path) for path in manifest["path"]], features.get_preset(PRESET))
            with _one_blas_thread():
                librosa_features(str(warmup["path"][0]), passes.preset)  # first-call costs, untimed

        runs = {}
        for workers in (1, 2):
            colds = [tmp / f"cache-w{workers}-{i}" for i in range(args.cold_repeats)]
            after = passes if workers == 1 else None  # librosa alternates with ours cold, workers=1
            runs[f"cold_w{workers}"] = time_extract(manifest, colds, workers, after=after)
            runs[f"warm_w{workers}"] = time_extract(manifest, [colds[-1]] * args.warm_repeats, workers)
        cache = tmp / "cache-w1-0"
        # Without the index every file is rehashed (and the index written again).
        runs["warm_w1_no_index"] = time_extract(manifest, [cache] * args.warm_repeats, 1, before=drop_index)

        load, loaded = time_load(manifest, cache, args.warm_repeats)
        load_no_index, _ = time_load(manifest, cache, args.warm_repeats, before=drop_index)
        batch_index = torch.randint(0, len(manifest), (32,))
        batch_samples = []
        for _ in range(200):
            started = time.perf_counter()
            batch = loaded[batch_index]  # (32, 1, 128, 128)
            batch_samples.append(time.perf_counter() - started)
        batch_ms = float(np.median(batch_samples)) * 1e3

        if passes is None:
            librosa_result = {
                "skipped": True,
                "reason": "librosa is not installed",
                "install": LIBROSA_INSTALL,
            }
        else:
            librosa_result = run_librosa(manifest, cache, tmp, args, {**runs, "load": load}, passes)

    def warm_over_cold(workers: int) -> float:
        warm, cold = runs[f"warm_w{workers}"], runs[f"cold_w{workers}"]
        return round(warm["seconds_median"] / cold["seconds_median"], 4)

    preset = features.get_preset(PRESET)
    return {
        "benchmark": "features",
        "preset": PRESET,
        "fingerprint": preset.fingerprint,
        "utterances": args.utterances,
        "audio_seconds": round(audio_seconds, 1),
        "clip_seconds_range": list(args.seconds),
        # Share of the analysed window (max_seconds) that is zero padding, averaged over clips.
        "padding_fraction": round(max(0.0, 1 - audio_seconds / (args.utterances * preset.max_seconds)), 3),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "extract": runs,
        "warm_over_cold_time_w1": warm_over_cold(1),
        "warm_over_cold_time_w2": warm_over_cold(2),
        "load_features": load,
        "load_features_no_index": load_no_index,
        "loaded_shape": list(loaded.shape),
        "loaded_megabytes": round(loaded.numel() * loaded.element_size() / 2**20, 1),
        "batch32_index_ms_median": round(batch_ms, 4),
        "batch32_shape": list(batch.shape),
        "librosa": librosa_result,
    }


def print_summary(result: dict, out: Path) -> None:
    runs, load = result["extract"], result["load_features"]
    print(
        f"{PRESET}: {result['utterances']} utterances, {result['audio_seconds']:.0f} s of audio "
        f"({result['padding_fraction']:.0%} of the 8 s windows is padding), {os.cpu_count()} CPUs"
    )
    for name, run_ in runs.items():
        print(
            f"  extract {name:<17} {run_['seconds_median']:8.3f} s {run_['utterances_per_s']:9.1f} utt/s"
            f"  (median of {run_['repeats']})"
        )
    print(
        f"  warm/cold time: workers=1 {result['warm_over_cold_time_w1']:.3f}, "
        f"workers=2 {result['warm_over_cold_time_w2']:.3f}"
    )
    print(
        f"  load_features {load['seconds_median']:.3f} s "
        f"({result['load_features_no_index']['seconds_median']:.3f} s without index); "
        f"one {tuple(result['batch32_shape'])} batch by indexing: {result['batch32_index_ms_median']:.3f} ms"
    )
    lib = result["librosa"]
    if lib["skipped"]:
        print(f"  librosa reference skipped ({lib['reason']}); install it with: {lib['install']}")
    else:
        timing = lib["timing"]
        print(
            f"  librosa {lib['version']} (no cache) {timing['seconds_median']:8.3f} s "
            f"{timing['utterances_per_s']:9.1f} utt/s  (median of {timing['repeats']})"
        )
        print(
            f"  ours / librosa: cold {lib['ours_cold_over_librosa']:.2f}x (workers=2: "
            f"{lib['ours_cold_w2_over_librosa']:.2f}x), warm {lib['ours_warm_over_librosa']:.0f}x, "
            f"load_features of the warm cache {lib['ours_load_features_over_librosa']:.0f}x"
        )
        for key, eq in lib["equivalence"].items():
            if key == "note":
                continue
            print(
                f"  features on {key.replace('_', ' ')}: correlation median {eq['correlation_median']:.4f} "
                f"(min {eq['correlation_min']:.4f}; without c0 {eq['correlation_without_c0_median']:.4f}), "
                f"relative difference median {eq['relative_difference_median']:.4f} "
                f"(max {eq['relative_difference_max']:.4f})"
            )
    print(f"  wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/features.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cold-repeats", type=int, default=2, help="cold runs (fresh caches) per setting, and librosa passes"
    )
    parser.add_argument("--warm-repeats", type=int, default=5, help="warm runs and loads per setting")
    parser.add_argument(
        "--seconds",
        type=float,
        nargs=2,
        default=(1.5, 4.5),
        metavar=("MIN", "MAX"),
        help="clip durations are drawn uniformly from [MIN, MAX] seconds",
    )
    args = parser.parse_args(argv)
    for option in ("utterances", "cold_repeats", "warm_repeats"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, but got {getattr(args, option)}")
    if not 0 < args.seconds[0] <= args.seconds[1]:
        parser.error(f"--seconds needs 0 < MIN <= MAX, but got {args.seconds[0]:g} {args.seconds[1]:g}")

    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out, json.dumps(result, indent=2) + "\n")
    print_summary(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
