#!/usr/bin/env bash
# GPU smoke test, under 10 minutes on one GPU: tests/gpu, a paper-shape step (first/second
# order, reproducible mode), `sernas run-fold --device cuda` (first and second order, resume)
# and 4 trials sharing the GPU via Ray (1 x 1.0 vs 4 x 0.25). Figures go to
# benchmarks/results/gpu_smoke.json (see benchmarks/gpu_smoke.py --help; docs/gpu.md).
#   benchmarks/gpu_smoke.sh [--skip sharing] [--out FILE] ...
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=INT 590 "$PYTHON" benchmarks/gpu_smoke.py "$@"
