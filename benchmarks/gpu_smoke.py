"""GPU smoke test and figures, under 10 minutes on one GPU (run through benchmarks/gpu_smoke.sh).

    python benchmarks/gpu_smoke.py [--out benchmarks/results/gpu_smoke.json] [--work DIR] [--skip STAGE ...]

Stages (each recorded, a failing one does not stop the others; the exit code is 1 if any failed):

* ``tests``: ``pytest tests/gpu`` (second-order gradients vs a CPU copy, architecture-step
  invariants, float32 LSTM under autocast, paper-shape step in a quarter of the card, export).
* ``step``: one DARTS search step (architecture + weight step) at the paper's setting
  (4 layers, 4 nodes, 8 channels, 1 x 128 x 128, batch 32): seconds per step for first and
  second order, also in reproducible mode, and the peak GPU memory of each.
* ``run_fold``: ``sernas run-fold --device cuda`` on a tiny synthetic corpus, first and second
  order, then the second-order fold resumed from its checkpoints (result.json removed): the
  resumed run must give the same result.
* ``sharing``: 4 trials of a small experiment via Ray Tune on this GPU, once at
  ``tune.resources.gpu: 1.0`` (one at a time) and once at 0.25 (four at once): wall time,
  peak GPU memory per trial (the leaderboard's ``peak_gpu_mib``) and searches per GPU-hour.

Needs CUDA; without it the script says so and exits 2 (nothing to measure).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainers.atomic_io import write_text_atomically  # noqa: E402

STAGES = ("tests", "step", "run_fold", "sharing")
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_smoke.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="figures (JSON)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--skip", nargs="*", default=[], choices=STAGES, help="stages to leave out")
    parser.add_argument("--batch", type=int, default=32, help="batch of the paper-shape step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per order (after one warm-up)")
    parser.add_argument("--trials", type=int, default=4, help="trials of each sharing experiment")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.trials < 1:
        parser.error("--batch, --steps and --trials must be >= 1")
    return args


def searches_per_gpu_hour(*, trials: int, seconds: float, gpus: float) -> float:
    """Trials (searches) finished per hour of ``gpus`` GPUs held for ``seconds``."""
    if seconds <= 0 or gpus <= 0:
        raise ValueError(f"seconds and gpus must be > 0, but got {seconds} and {gpus}.")
    return trials / (seconds / 3600.0) / gpus


def write_figures(path: Path, figures: dict[str, Any]) -> Path:
    """The figures as sorted, indented JSON, written atomically."""
    return write_text_atomically(path, json.dumps(figures, indent=2, sort_keys=True, default=str) + "\n")


def _sernas(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def _checked(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
    return done


# ------------------------------------------------------------------------------------ the stages
def stage_tests(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "tests/gpu"], cwd=ROOT, capture_output=True, text=True
    )
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", done.stdout)}
    peak = re.search(r"paper-shape step.*?peak ([\d.]+) GiB", done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"tests/gpu failed: {done.stdout[-3000:]}")
    return {**counts, "paper_step_peak_gib": float(peak[1]) if peak else None}


def _time_steps(net, *, order: str, batch: int, steps: int, device) -> tuple[float, float]:
    """Seconds per search step (architecture + weight step) and peak MiB, after one warm-up step."""
    import torch
    from torch import nn

    from trainers.architect import architecture_gradients
    from trainers.training import weight_step

    weights = list(net.weight_parameters())
    optimizer = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(batch, 1, 128, 128, device=device)  # (B, 1, F, T)
    y = torch.arange(batch, device=device) % 4
    loss_fn = nn.CrossEntropyLoss()
    for timed in (False, True):  # a warm-up step (cuDNN algorithm choice, allocator), then the timed ones
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        for _ in range(steps if timed else 1):
            architecture_gradients(
                net,
                train_batch=(x, y),
                arch_batch=(x, y),
                loss_fn=loss_fn,
                weight_optimizer=optimizer,
                order=order,
                seed=0,
            )
            weight_step(net, x, y, loss_fn=loss_fn, optimizer=optimizer, parameters=weights, grad_clip=5.0)
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / steps, torch.cuda.max_memory_reserved(device) / 2**20


def stage_step(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from search_space import SuperNet
    from trainers.gpu_memory import should_recompute

    device = torch.device("cuda", 0)
    paper = dict(layers=4, nodes=4, init_channels=8)
    recompute = should_recompute(device, batch_size=args.batch, primitives=8, input_shape=(1, 128, 128), **paper)
    figures: dict[str, Any] = {"batch": args.batch, "recompute": recompute}
    for reproducible in (False, True):
        torch.use_deterministic_algorithms(reproducible, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = reproducible, False
        for order in ("first", "second"):
            torch.manual_seed(0)
            net = SuperNet(**paper, n_classes=4, lstm_hidden=128, checkpoint=recompute).to(device).train()
            key = f"{order}_order" + ("_reproducible" if reproducible else "")
            figures[f"{key}_step_s"], figures[f"{key}_peak_mib"] = _time_steps(
                net, order=order, batch=args.batch, steps=args.steps, device=device
            )
            del net
            torch.cuda.empty_cache()
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
    figures["reproducible_cost"] = {
        order: figures[f"{order}_order_reproducible_step_s"] / figures[f"{order}_order_step_s"]
        for order in ("first", "second")
    }
    return figures


def _tiny_data(work: Path) -> dict[str, Path]:
    paths = {name: work / name for name in ("corpus", "m.parquet", "features", "f.parquet")}
    if paths["f.parquet"].exists():
        return paths
    steps = [
        ["synth", "--out", str(paths["corpus"]), "--speakers", "6", "--per-speaker", "16"],
        ["manifest", "--dataset", "iemocap", "--root", str(paths["corpus"]), "--out", str(paths["m.parquet"])],
        ["features", "--manifest", str(paths["m.parquet"]), "--preset", "logmel-32"]
        + ["--cache", str(paths["features"]), "--quiet"],
        ["folds", "--manifest", str(paths["m.parquet"]), "--scheme", "loso", "--merge", "exc=hap"]
        + ["--classes", "neu,hap,sad,ang", "--out", str(paths["f.parquet"])],
    ]
    for step in steps:
        _checked(_sernas(*step, cwd=ROOT), f"sernas {step[0]}")
    return paths


def stage_run_fold(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    paths = _tiny_data(work)
    common = ["run-fold", "--manifest", str(paths["m.parquet"]), "--folds", str(paths["f.parquet"]), "--fold", "2"]
    common += ["--preset", "logmel-32", "--cache", str(paths["features"]), "--device", "cuda"]
    common += ["--search-epochs", "3", "--eval-epochs", "3", "--layers", "3", "--nodes", "3", "--init-channels", "8"]
    figures: dict[str, Any] = {}
    for order in ("first", "second"):
        out = work / f"fold-{order}"
        started = time.perf_counter()
        _checked(_sernas(*common, "--order", order, "--out", str(out), cwd=ROOT), f"run-fold {order}")
        result = json.loads((out / "result.json").read_text())
        if result["device"] != "cuda":
            raise RuntimeError(f"run-fold --device cuda ran on {result['device']}")
        figures[order] = {
            "seconds": time.perf_counter() - started,
            "test_ua": result["test_ua"],
            "peak_gpu_mib": result.get("peak_gpu_mib"),
        }
    out = work / "fold-second"
    before = json.loads((out / "result.json").read_text())
    (out / "result.json").unlink()
    started = time.perf_counter()
    _checked(_sernas(*common, "--order", "second", "--out", str(out), cwd=ROOT), "run-fold resume")
    after = json.loads((out / "result.json").read_text())
    same = {k: before[k] for k in ("test_ua", "genotype_hash", "best_epoch")} == {
        k: after[k] for k in ("test_ua", "genotype_hash", "best_epoch")
    }
    figures["resume"] = {"seconds": time.perf_counter() - started, "same_result": same}
    if not same:
        raise RuntimeError(f"the resumed fold differs: {before['test_ua']} vs {after['test_ua']}")
    return figures


def _sharing_config(path: Path, *, name: str, gpu: float, trials: int, data: dict[str, Path]) -> Path:
    path.write_text(
        f"""name: {name}
device: auto
data: {{dataset: iemocap, manifest: {data["m.parquet"]}, preset: logmel-32, cache_dir: {data["features"]},
       classes: [neu, hap, sad, ang], merges: {{exc: hap}}}}
folds: {{scheme: loso, use: [1]}}
search: {{epochs: 3, batch_size: 16, shape: {{layers: 3, nodes: 3, init_channels: 8, lstm_hidden: 32}}}}
eval: {{epochs: 3, batch_size: 16, shape: {{layers: 3, nodes: 3, init_channels: 8, lstm_hidden: 32}}}}
space: {{weights_lr: {{uniform: [0.01, 0.02]}}}}
tune: {{num_samples: {trials}, searcher: random, pruner: {{kind: none}}, resources: {{cpu: 2, gpu: {gpu}}},
       max_failures: 0, storage: {path.parent / "runs"}}}
"""
    )
    return path


def stage_sharing(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import ray

    from orchestrator.config import load_config
    from orchestrator.experiment import prepare_data, run_experiment
    from orchestrator.leaderboard import connect

    data = _tiny_data(work)
    figures: dict[str, Any] = {}
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        for label, gpu in (("1x1.0", 1.0), ("4x0.25", 0.25)):
            name = f"share-{label.replace('.', '_')}"
            config = load_config(
                _sharing_config(work / f"{name}.yaml", name=name, gpu=gpu, trials=args.trials, data=data)
            )
            summary = run_experiment(config, prepared=prepare_data(config, progress=False))
            with connect(Path(config.tune.storage), experiment=name) as board:
                peaks = board.sql("SELECT trial_id, max(peak_gpu_mib) AS peak FROM runs GROUP BY trial_id")
            figures[label] = {
                "trials": summary.trials,
                "completed": summary.completed,
                "seconds": summary.seconds,
                "searches_per_gpu_hour": searches_per_gpu_hour(
                    trials=summary.completed, seconds=summary.seconds, gpus=1
                ),
                "peak_gpu_mib_per_trial": sorted(float(p) for p in peaks["peak"].dropna()),
            }
            if summary.completed != args.trials:
                raise RuntimeError(f"{label}: {summary.completed} of {args.trials} trials completed")
    finally:
        ray.shutdown()
    figures["speedup_4x0.25_over_1x1.0"] = (
        figures["4x0.25"]["searches_per_gpu_hour"] / figures["1x1.0"]["searches_per_gpu_hour"]
    )
    return figures


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "tests": stage_tests,
    "step": stage_step,
    "run_fold": stage_run_fold,
    "sharing": stage_sharing,
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_smoke: CUDA is not available on this machine; run it on a GPU node.", file=sys.stderr)
        return 2
    props = torch.cuda.get_device_properties(0)
    figures: dict[str, Any] = {
        "device": props.name,
        "total_memory_gib": props.total_memory / 2**30,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "stages": {},
    }
    work = args.work or Path(tempfile.mkdtemp(prefix="sernas-gpu-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    failed = []
    for stage in STAGES:
        if stage in args.skip:
            continue
        stage_started = time.perf_counter()
        try:
            figures["stages"][stage] = {"ok": True, **RUNNERS[stage](args, work)}
        except Exception as error:  # recorded, and the next stage still runs
            failed.append(stage)
            figures["stages"][stage] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        figures["stages"][stage]["stage_seconds"] = time.perf_counter() - stage_started
        print(f"{stage}: {json.dumps(figures['stages'][stage], default=str)}", flush=True)
        write_figures(args.out, {**figures, "seconds": time.perf_counter() - started})
    figures["seconds"] = time.perf_counter() - started
    write_figures(args.out, figures)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"figures -> {args.out}; failed stages: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
