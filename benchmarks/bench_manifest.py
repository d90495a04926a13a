"""Manifest speed: seconds to scan and probe a synthetic corpus of N utterances.

    python benchmarks/bench_manifest.py [--utterances 1000] [--out benchmarks/results/manifest.json]

The corpus is generated once into a temporary folder (its time is reported separately), then
``build_manifest`` runs ``--repeats`` times; the fastest run is reported, because the others
only add this machine's noise.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from trainers.corpora.synthetic import generate_synthetic_corpus
from trainers.manifest import build_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=1000, help="multiple of 10 (10 speakers)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/manifest.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = generate_synthetic_corpus(Path(tmp) / "corpus", speakers=10, per_speaker=args.utterances // 10)
        synth_seconds = time.perf_counter() - started
        timings = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = build_manifest(dataset="iemocap", root=summary.root)
            timings.append(time.perf_counter() - started)
    best = min(timings)
    results = {
        "utterances": len(result.frame),
        "problems": len(result.problems),
        "synth_seconds": round(synth_seconds, 3),
        "manifest_seconds_best": round(best, 4),
        "manifest_seconds_all": [round(t, 4) for t in timings],
        "utterances_per_second": round(len(result.frame) / best, 1),
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"manifest of {results['utterances']} synthetic utterances: {best:.3f} s "
        f"({results['utterances_per_second']} utt/s); corpus generation {synth_seconds:.1f} s -> {args.out}"
    )


if __name__ == "__main__":
    main()
