"""SSL encoder features: extraction speed (seconds of audio per second) and cache size per hour.

    PYTHONPATH=. python benchmarks/bench_ssl_features.py [--clips 8] [--seconds 2 6] [--threads 2]
        [--encoders tiny wavlm-base-plus]

On the CPU, for a tiny random encoder (the tests' size: 3 layers of 16 features) and for real
architectures from torchaudio's bundles with random weights (no download: the speed of a forward
pass does not depend on the weights' values), each through ``extract_features`` into a fresh cache:
seconds of audio per wall second, MB of cache per hour of audio (measured on disk, against the
preset's formula), and ``load_features`` time (float16 in memory too). Also the disk arithmetic of every built-in SSL preset
for IEMOCAP: about 7 h in the four classes, 12.4 h in all (speaker statistics read every clip of a
speaker, so every clip is cached). Writes ``benchmarks/results/ssl_features.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trainers.atomic_io import write_text_atomically
from trainers.audio import write_wav
from trainers.features import PRESETS, SSL_BUNDLES, EncoderSpec, SSLPreset, extract_features, load_features
from trainers.features.ssl_encoder import build_encoder, resolve_preset

SR = 16_000
IEMOCAP_HOURS = {"four_classes": 7.0, "all": 12.4}  # neu/hap+exc/sad/ang ~7 h; every clip ~12.4 h
IEMOCAP_FOUR_CLASS_CLIPS = 5531  # what one fold's tensors hold in memory (float16, padded to max_seconds)

_TINY_PARAMS = {
    "extractor_mode": "layer_norm",
    "extractor_conv_layer_config": [[8, 10, 5], [8, 3, 2], [8, 3, 2], [8, 3, 2], [8, 3, 2], [8, 2, 2], [8, 2, 2]],
    "extractor_conv_bias": False,
    "encoder_embed_dim": 16,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 3,
    "encoder_num_heads": 2,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 32,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": False,
    "encoder_layer_drop": 0.0,
    "aux_num_out": None,
}


def _preset(name: str) -> SSLPreset:
    """``tiny``, or a built-in preset (its real architecture; random weights are saved for it)."""
    if name == "tiny":
        encoder = EncoderSpec(name="tiny", model_type="Wav2Vec2", params=_TINY_PARAMS, file_name="tiny.pt")
        return SSLPreset(name="tiny", encoder=encoder, layers=(1, 2, 3), time_pool=4, max_seconds=8.0)
    return PRESETS[name]


def _corpus(folder: Path, *, clips: int, seconds: tuple[float, float], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(clips):
        duration = float(rng.uniform(*seconds))
        t = np.arange(int(duration * SR)) / SR
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.standard_normal(t.shape)
        path = folder / f"clip{i:03d}.wav"
        write_wav(path, wave, SR)
        rows.append({"utt_id": f"clip{i:03d}", "path": str(path), "duration_s": len(t) / SR})
    return pd.DataFrame(rows)


def _measure(name: str, manifest: pd.DataFrame, folder: Path, *, threads: int) -> dict:
    preset = _preset(name)
    torch.manual_seed(0)
    model = build_encoder(preset.encoder)
    weights = folder / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    resolved = resolve_preset(preset, weights=weights)
    cache = folder / f"cache-{name}"
    audio_seconds = float(manifest["duration_s"].clip(upper=resolved.max_seconds).sum())
    started = time.perf_counter()
    summary = extract_features(manifest, preset=resolved, cache_dir=cache, workers=threads)
    cold = time.perf_counter() - started
    assert summary.ok and summary.computed == len(manifest), summary.describe()
    stored = sum(p.stat().st_size for p in summary.cache_dir.rglob("*.npy"))
    started = time.perf_counter()
    loaded = load_features(manifest, preset=resolved, cache_dir=cache)
    load_seconds = time.perf_counter() - started
    hours = audio_seconds / 3600
    return {
        "encoder": preset.encoder.name,
        "parameters": parameters,
        "layers": list(resolved.layers),
        "dim": resolved.encoder.dim,
        "time_pool": resolved.time_pool,
        "output_shape": list(resolved.output_shape),
        "audio_seconds": round(audio_seconds, 2),
        "extract_seconds": round(cold, 3),
        "audio_seconds_per_second": round(audio_seconds / cold, 2),
        "cache_bytes": stored,
        "cache_mb_per_hour": round(stored / hours / 1e6, 1),
        "formula_mb_per_hour": round(resolved.bytes_per_hour() / 1e6, 1),
        "load_seconds": round(load_seconds, 3),
        "loaded_megabytes": round(loaded.numel() * loaded.element_size() / 1e6, 1),
        "loaded_dtype": str(loaded.dtype).removeprefix("torch."),
    }


def _iemocap_arithmetic() -> dict:
    """Disk (float16, only the clips' frames) and one fold's memory (float16, padded) per built-in preset."""
    out = {}
    for name in SSL_BUNDLES:
        preset = PRESETS[name]
        layers, dim, frames = preset.output_shape
        out[name] = {
            "formula": f"hours x 3600 x 50 / {preset.time_pool} x {layers} x {dim} x 2 bytes",
            "gb_per_hour": round(preset.bytes_per_hour() / 1e9, 3),
            **{f"disk_gb_{k}": round(h * preset.bytes_per_hour() / 1e9, 2) for k, h in IEMOCAP_HOURS.items()},
            "fold_memory_gb_float16": round(IEMOCAP_FOUR_CLASS_CLIPS * layers * dim * frames * 2 / 1e9, 1),
        }
    return out


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="sernas-ssl-bench-") as tmp:
        folder = Path(tmp)
        manifest = _corpus(folder, clips=args.clips, seconds=tuple(args.seconds), seed=args.seed)
        encoders = {name: _measure(name, manifest, folder, threads=args.threads) for name in args.encoders}
    arithmetic = _iemocap_arithmetic()
    return {
        "benchmark": "ssl_features",
        "device": "cpu",
        "threads": args.threads,
        "clips": args.clips,
        "clip_seconds_range": list(args.seconds),
        "weights": "random (torchaudio.models architectures; speed does not depend on the values)",
        "encoders": encoders,
        "iemocap_hours": IEMOCAP_HOURS,
        "iemocap": arithmetic,
        "iemocap_default_max_disk_gb_all": max(v["disk_gb_all"] for v in arithmetic.values()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (on a busy 2-core machine 2 were ~40x slower for the tiny encoder)",
    )
    parser.add_argument(
        "--encoders",
        nargs="+",
        default=["tiny", "wavlm-base-plus"],
        choices=["tiny", *SSL_BUNDLES],
        help="tiny, or built-in presets whose architecture runs with random weights",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ssl_features.json"))
    args = parser.parse_args(argv)
    if args.clips < 1 or args.threads < 1 or not 0 < args.seconds[0] <= args.seconds[1]:
        parser.error("need --clips >= 1, --threads >= 1 and 0 < MIN <= MAX seconds")
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out, json.dumps(result, indent=2) + "\n")
    for name, r in result["encoders"].items():
        print(
            f"{name}: {r['audio_seconds_per_second']} s of audio per s ({r['parameters']:,} parameters, "
            f"{args.threads} threads), cache {r['cache_mb_per_hour']} MB per hour (formula {r['formula_mb_per_hour']})"
        )
    for name, r in result["iemocap"].items():
        print(f"{name}: IEMOCAP {r['disk_gb_four_classes']} GB (7 h) / {r['disk_gb_all']} GB (12.4 h)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
