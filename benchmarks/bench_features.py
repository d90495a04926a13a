"""Benchmark feature extraction and loading (trainers.features) on generated 16 kHz WAVs.

    python benchmarks/bench_features.py [--utterances 200] [--out benchmarks/results/features.json]

Writes N clips of 1.5-4.5 s (tones plus noise) to a temporary directory, waits until they are old
enough for the content index (as corpus files are), then times ``paper-mfcc``:

- cold (empty cache) and warm (cache filled) extraction with workers=1 and workers=2 (the
  workers=2 cold time includes starting the spawned processes);
- a warm run and ``load_features`` with and without the content index (without it, every file
  is rehashed), and indexing one batch of 32 out of the loaded tensor.

Times are medians over ``--cold-repeats`` fresh caches and ``--warm-repeats`` warm runs.
"""

from __future__ import annotations

import argparse
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
from trainers.audio import write_wav  # noqa: E402

SAMPLE_RATE = 16_000
PRESET = "paper-mfcc"


def write_corpus(directory: Path, n: int, seed: int) -> tuple[pd.DataFrame, float]:
    """N WAVs of 1.5-4.5 s, two to four vibrato tones plus noise; returns (manifest, audio seconds)."""
    rng = np.random.default_rng(seed)
    rows, total = [], 0.0
    for i in range(n):
        seconds = float(rng.uniform(1.5, 4.5))
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wave = 0.05 * rng.standard_normal(t.size)
        for _ in range(int(rng.integers(2, 5))):
            f0, vibrato = rng.uniform(80, 1_500), rng.uniform(2, 6)
            phase = 2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * vibrato * t)
            wave += rng.uniform(0.05, 0.3) * np.sin(phase)
        path = directory / f"utt{i:05d}.wav"
        write_wav(path, np.clip(wave, -1, 1), SAMPLE_RATE)
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
) -> dict:
    """One run per entry of ``cache_dirs`` (the same directory repeated = warm runs)."""
    samples = []
    for cache_dir in cache_dirs:
        if before is not None:
            before(cache_dir)
        summary = features.extract_features(
            manifest, preset=PRESET, cache_dir=cache_dir, workers=workers, progress=False
        )
        if summary.failed:
            raise RuntimeError(f"benchmark audio failed: {summary.failed[:3]}")
        samples.append(summary.seconds)
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
    (cache_dir / features._INDEX_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/features.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold-repeats", type=int, default=2, help="cold runs (fresh caches) per setting")
    parser.add_argument("--warm-repeats", type=int, default=5, help="warm runs and loads per setting")
    args = parser.parse_args(argv)
    for option in ("utterances", "cold_repeats", "warm_repeats"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, but got {getattr(args, option)}")

    with tempfile.TemporaryDirectory(prefix="sernas-bench-features-") as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        manifest, audio_seconds = write_corpus(tmp / "audio", args.utterances, args.seed)
        # Corpus files are old; files younger than this are never entered in the content index.
        time.sleep(features._INDEX_MIN_AGE_NS / 1e9 + 0.1)

        runs = {}
        for workers in (1, 2):
            colds = [tmp / f"cache-w{workers}-{i}" for i in range(args.cold_repeats)]
            runs[f"cold_w{workers}"] = time_extract(manifest, colds, workers)
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

    def warm_over_cold(workers: int) -> float:
        warm, cold = runs[f"warm_w{workers}"], runs[f"cold_w{workers}"]
        return round(warm["seconds_median"] / cold["seconds_median"], 4)

    result = {
        "benchmark": "features",
        "preset": PRESET,
        "fingerprint": features.get_preset(PRESET).fingerprint,
        "utterances": args.utterances,
        "audio_seconds": round(audio_seconds, 1),
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
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out, json.dumps(result, indent=2) + "\n")

    print(f"{PRESET}: {args.utterances} utterances, {audio_seconds:.0f} s of audio, {os.cpu_count()} CPUs")
    for name, run in runs.items():
        print(
            f"  extract {name:<17} {run['seconds_median']:8.3f} s {run['utterances_per_s']:9.1f} utt/s"
            f"  (median of {run['repeats']})"
        )
    print(f"  warm/cold time: workers=1 {warm_over_cold(1):.3f}, workers=2 {warm_over_cold(2):.3f}")
    print(
        f"  load_features {load['seconds_median']:.3f} s ({load_no_index['seconds_median']:.3f} s without "
        f"index); one {tuple(batch.shape)} batch by indexing: {batch_ms:.3f} ms"
    )
    print(f"  wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
