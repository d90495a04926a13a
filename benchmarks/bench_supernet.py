"""SuperNet search step vs a plain DARTS reference: samples/s and peak memory, first and second order.

    python benchmarks/bench_supernet.py [--batch 32] [--layers 4] [--nodes 4] [--channels 8]
        [--height 128] [--width 128] [--steps 1] [--orders first second] [--threads 1]
        [--fb-batches 8 16] [--fb-steps 3] [--eval-steps 5] [--profile-batch 8]
        [--out benchmarks/results/supernet.json]

One search step is what ``trainers.search.run_search`` does per batch: the architecture step
(alpha gradient, first or second order, and the alphas' Adam step) and then the weight step
(SGD with momentum, weight decay and gradient clipping). "ours" is ``architecture_gradients`` and
``weight_step`` on a :class:`search_space.SuperNet` (edges recomputed in the backward pass,
``none`` skipped); "reference" is ``benchmarks/reference_darts.py`` (DARTS' equations in the
original code's style, every op computed, no recomputation), built from the same supernet, so both
start from the same numbers. Batches are random (B, 1, H, W) inputs with 4 classes; the weight
optimiser's momentum buffers are filled (seeded) beforehand, so the second-order unrolling uses
them as it would after the first step.

Each (implementation, order) runs in its own subprocess, so its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``, read in the child) is its own. samples/s = batch / median
step seconds over ``--steps`` timed steps (after ``--warmup`` untimed ones).

The reference keeps every activation, so its peak grows by ~0.6 GB per sample at the paper's
setting (at batch 32: ~19 GiB first order, 25+ GiB second order, more than this 24 GiB machine can
spare). Before it runs at ``--batch``, a probe child measures its forward+backward
peak at two small batches and extrapolates linearly (a second-order step keeps more:
``SECOND_ORDER_FACTOR``); if the prediction exceeds ``--reference-max-gb`` or 85 % of the memory
available now, the reference is not run at that batch (the reason and the prediction are
recorded, and our peak is compared with the predicted one), and both implementations are also
measured at ``--fallback-batch`` (default: the largest halving of ``--batch`` where the reference
fits), so that a measured same-batch ratio exists. The reference's child also runs under an
address-space limit, so a wrong prediction ends in a ``MemoryError`` in the child, not in the
machine's OOM killer.

The two steps, the equivalence check and the child side live in ``benchmarks/supernet_steps.py``.

Single passes (``benchmarks/supernet_passes.py``, each in its own child too): one forward+backward
of ours (``SuperNet`` with its defaults) and of the reference at each ``--fb-batches`` (the
issue's headline measure, median of ``--fb-steps``; the reference skipped where its predicted
peak does not fit), the evaluation network's weight step (``Network`` of a fixed genotype holding
every primitive) before (``channels_last=False``) and after (its default fast path), and a
torch.profiler profile of our forward+backward at ``--profile-batch`` (top ops by self CPU time).

Equivalence: before timing, a small setting (the same cell topology, 1 x 16 x 16 inputs, batch 2,
dropout on; float64, and float32 as timed) compares our alpha gradients with the reference's,
first and second order, and the weights, alphas and BatchNorm statistics after one full
second-order search step; the differences are in the result file.

Time: at the paper's setting with one thread on a quiet 2-core machine, about 12 minutes (our
second-order step at batch 32 alone takes minutes); ``--fallback-batch 8`` or ``--orders first``
shorten it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # run from a checkout
sys.path.insert(0, str(_HERE))

import supernet_passes as passes  # noqa: E402
from supernet_steps import IMPLEMENTATIONS, ORDERS, Setting, equivalence, run_child  # noqa: E402

from trainers.atomic_io import write_text_atomically  # noqa: E402

PROBE_BATCHES = (2, 4)
# A second-order step's peak over one forward+backward's (both above the set-up RSS), measured for
# the reference at the paper's setting: 1.44 at batch 8, 1.37 at batch 16 (the allocator keeps more
# across the five passes); rounded up.
SECOND_ORDER_FACTOR = 1.5
GIB = 2**30

# Issue #17: at least 3x the plain DARTS supernet's speed at no more than half its peak memory.
GOAL = {"samples_per_s_ratio_at_least": 3.0, "peak_rss_ratio_at_most": 0.5}


def spawn(spec: dict, *, threads: int) -> dict:
    """Run ``run_child(spec)`` in a fresh interpreter; its result, or the error it ended with."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = round(time.perf_counter() - started, 2)
    if done.returncode != 0:
        return {"error": f"child exited with {done.returncode}: {done.stderr.strip()[-1500:]}", "wall_seconds": wall}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_seconds": wall}


# ---------------------------------------------------------------------------- the parent


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def predict_reference_peak(probe: dict, batch: int, order: str) -> float:
    """Bytes: the probe's forward+backward peaks extrapolated linearly to ``batch``; for a
    second-order step, the part above the set-up RSS times ``SECOND_ORDER_FACTOR``."""
    (b1, b2), (p1, p2) = probe["probe_batches"], probe["peak_rss_bytes"]
    setup = probe["setup_rss_bytes"]
    peak = p2 + (p2 - p1) / (b2 - b1) * (batch - b2)
    return setup + (peak - setup) * (SECOND_ORDER_FACTOR if order == "second" else 1.0)


def _fits(predicted: float, limit_bytes: float) -> tuple[bool, str]:
    available = 0.85 * _available_bytes()
    if predicted > limit_bytes:
        return False, f"predicted peak {predicted / GIB:.1f} GiB > --reference-max-gb {limit_bytes / GIB:.1f}"
    if predicted > available:
        return False, (
            f"predicted peak {predicted / GIB:.1f} GiB > 85 % of the memory available now ({available / GIB:.1f} GiB)"
        )
    return True, ""


def _gib(value: float | None) -> float | None:
    return None if value is None else round(value / GIB, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def _row(order: str, batch: int, impl: str, run: dict) -> str:
    head = f"  {order:<7}{batch:>6}  {impl:<10}"
    if "samples_per_s" not in run:
        return head + f"  not measured: {run.get('skipped') or run.get('error', '?')[:160]}"
    return (
        head + f"{run['samples_per_s']:>11.3f}{run['step_seconds_median']:>10.1f}{run['peak_rss_bytes'] / GIB:>11.2f}"
    )


def _single_passes(
    args: argparse.Namespace, setting: Setting, base: dict, probe: dict, limit: float, fb_batches: list[int]
) -> dict:
    """One forward+backward (ours vs the reference), the evaluation network's step (before vs
    after) and the profile, each run in its own child."""

    def spec(mode: str, impl: str, batch: int, steps: int, warmup: int = 0) -> dict:
        setting_b = asdict(replace(setting, batch=batch))
        return {**base, "mode": mode, "impl": impl, "setting": setting_b, "steps": steps, "warmup": warmup}

    fb_runs, fb_comparisons = [], []
    for batch in fb_batches:
        ours = spawn(spec("forward_backward", "ours", batch, args.fb_steps), threads=args.threads)
        predicted = predict_reference_peak(probe, batch, "first")
        fits, reason = _fits(predicted, limit)
        if fits:
            ref_spec = {
                **spec("forward_backward", "reference", batch, args.fb_steps),
                "address_space_extra_bytes": int(limit),
            }
            ref = spawn(ref_spec, threads=args.threads)
        else:
            ref = {"impl": "reference", "batch": batch, "skipped": reason}
        ref["predicted_peak_rss_bytes"] = int(predicted)
        fb_runs += [{"impl": "ours", "batch": batch, **ours}, {"impl": "reference", "batch": batch, **ref}]
        fb_comparisons.append(
            {
                "batch": batch,
                "reference_measured": "samples_per_s" in ref,
                "ours_seconds": ours.get("seconds_median"),
                "reference_seconds": ref.get("seconds_median"),
                "samples_per_s_ratio": _ratio(ours.get("samples_per_s"), ref.get("samples_per_s")),
                "peak_rss_ratio": _ratio(ours.get("peak_rss_bytes"), ref.get("peak_rss_bytes")),
                "peak_rss_ratio_vs_predicted_reference": _ratio(ours.get("peak_rss_bytes"), predicted),
                "ours_peak_rss_gib": _gib(ours.get("peak_rss_bytes")),
                "reference_peak_rss_gib": _gib(ref.get("peak_rss_bytes")),
                "reference_note": ref.get("skipped") or ref.get("error") or ours.get("error"),
            }
        )
        print(f"  forward+backward, batch {batch}: {fb_comparisons[-1]}", file=sys.stderr, flush=True)

    eval_runs, eval_comparisons = [], []
    for batch in fb_batches:
        pair = {
            layout: spawn(spec("evaluation", layout, batch, args.eval_steps, warmup=1), threads=args.threads)
            for layout in passes.EVAL_LAYOUTS
        }
        eval_runs += [{"layout": layout, "batch": batch, **run} for layout, run in pair.items()]
        before, after = pair["before"], pair["after"]
        eval_comparisons.append(
            {
                "batch": batch,
                "before_seconds": before.get("seconds_median"),
                "after_seconds": after.get("seconds_median"),
                "samples_per_s_ratio": _ratio(after.get("samples_per_s"), before.get("samples_per_s")),
                "peak_rss_ratio": _ratio(after.get("peak_rss_bytes"), before.get("peak_rss_bytes")),
                "before_peak_rss_gib": _gib(before.get("peak_rss_bytes")),
                "after_peak_rss_gib": _gib(after.get("peak_rss_bytes")),
                "error": before.get("error") or after.get("error"),
            }
        )
        print(f"  evaluation network, batch {batch}: {eval_comparisons[-1]}", file=sys.stderr, flush=True)

    result = {
        "forward_backward": {
            "what": "one forward+backward (cross-entropy, alphas included) of ours (SuperNet with its defaults) "
            f"and of the reference, median of {args.fb_steps}",
            "runs": fb_runs,
            "comparisons": fb_comparisons,
        },
        "evaluation_network": {
            "what": "one trainers.training.weight_step of Network(EVAL_GENOTYPE) (every primitive but none), "
            "before: channels_last=False (default layout, plain convolutions), after: channels_last=True "
            f"(channels_last activations + search_space.fast_conv, the default); median of {args.eval_steps}",
            "genotype": passes.EVAL_GENOTYPE.to_dict(),
            "runs": eval_runs,
            "comparisons": eval_comparisons,
        },
    }
    if args.profile_batch:
        prof = spawn(spec("profile", "ours", args.profile_batch, 1), threads=args.threads)
        result["profile"] = {
            "what": "ours, one forward+backward, torch.profiler self CPU time",
            "batch": args.profile_batch,
            **prof,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1, help="timed search steps per run")
    parser.add_argument("--warmup", type=int, default=0, help="untimed search steps before them")
    parser.add_argument("--orders", nargs="+", choices=ORDERS, default=list(ORDERS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every child")
    parser.add_argument(
        "--reference-max-gb",
        type=float,
        default=18.0,
        help="do not run the reference where its predicted peak RSS exceeds this",
    )
    parser.add_argument(
        "--fallback-batch",
        type=int,
        default=None,
        help="same-batch comparison batch when the reference does not fit at --batch "
        "(default: the largest halving of --batch that fits)",
    )
    parser.add_argument(
        "--fb-batches",
        type=int,
        nargs="+",
        default=None,
        help="batches of the single forward+backward and of the evaluation network's step (default: --batch)",
    )
    parser.add_argument("--fb-steps", type=int, default=3, help="timed forward+backward passes per run (median)")
    parser.add_argument("--eval-steps", type=int, default=5, help="timed evaluation-network steps per run (median)")
    parser.add_argument(
        "--profile-batch", type=int, default=8, help="batch of the profiled forward+backward (0: no profile)"
    )
    parser.add_argument("--check-size", type=int, default=16, help="input height and width of the equivalence check")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/supernet.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(json.loads(args.child))))
        return 0
    for option in ("batch", "layers", "nodes", "channels", "height", "width", "steps", "threads", "check_size"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, but got {getattr(args, option)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, but got {args.warmup}")
    fb_batches = list(dict.fromkeys(args.fb_batches or [args.batch]))
    if min(fb_batches) < 1 or args.fb_steps < 1 or args.eval_steps < 1 or args.profile_batch < 0:
        parser.error("--fb-batches, --fb-steps and --eval-steps must be >= 1 and --profile-batch >= 0")
    if args.fallback_batch is not None and not 1 <= args.fallback_batch < args.batch:
        parser.error(f"--fallback-batch must be in [1, --batch), but got {args.fallback_batch}")

    started = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    torch.set_num_threads(args.threads)
    setting = Setting(
        batch=args.batch,
        layers=args.layers,
        nodes=args.nodes,
        channels=args.channels,
        height=args.height,
        width=args.width,
    )
    orders = list(dict.fromkeys(args.orders))
    limit = args.reference_max_gb * GIB

    check = replace(setting, batch=2, height=args.check_size, width=args.check_size)
    equivalent = {
        "float64": equivalence(check, dtype=torch.float64),
        "float32": equivalence(check, dtype=torch.float32),
    }

    base = {"setting": asdict(setting), "threads": args.threads, "warmup": args.warmup, "steps": args.steps}
    probe = spawn(
        {
            **base,
            "mode": "probe",
            "impl": "reference",
            "probe_batches": list(PROBE_BATCHES),
            "setting": asdict(replace(setting, batch=max(PROBE_BATCHES))),
        },
        threads=args.threads,
    )
    if "error" in probe:
        raise RuntimeError(f"the reference's memory probe failed: {probe['error']}")

    def measure(impl: str, order: str, batch: int) -> dict:
        spec = {**base, "mode": "step", "impl": impl, "order": order, "setting": asdict(replace(setting, batch=batch))}
        if impl == "reference":
            predicted = predict_reference_peak(probe, batch, order)
            fits, reason = _fits(predicted, limit)
            if not fits:
                return {
                    "impl": impl,
                    "order": order,
                    "batch": batch,
                    "skipped": reason,
                    "predicted_peak_rss_bytes": int(predicted),
                }
            spec["address_space_extra_bytes"] = int(limit)
            return {**spawn(spec, threads=args.threads), "predicted_peak_rss_bytes": int(predicted)}
        return spawn(spec, threads=args.threads)

    def reference_fits(batch: int) -> bool:
        return all(_fits(predict_reference_peak(probe, batch, o), limit)[0] for o in orders)

    batches = [args.batch]  # plus a smaller one for a same-batch comparison if the reference does not fit
    if not reference_fits(args.batch):
        fallback = args.fallback_batch
        if fallback is None:
            fallback = args.batch // 2
            while fallback >= 1 and not reference_fits(fallback):
                fallback //= 2
        if fallback >= 1:
            batches.append(fallback)
    runs = []
    for batch in batches:
        for order in orders:
            for impl in IMPLEMENTATIONS:
                runs.append({"impl": impl, "order": order, "batch": batch, **measure(impl, order, batch)})
                print(_row(order, batch, impl, runs[-1]), file=sys.stderr, flush=True)  # progress

    single = _single_passes(args, setting, base, probe, limit, fb_batches)

    comparisons = []
    for batch in batches:
        for order in orders:
            ours, ref = (
                next(r for r in runs if (r["impl"], r["order"], r["batch"]) == (impl, order, batch))
                for impl in IMPLEMENTATIONS
            )
            comparisons.append(
                {
                    "order": order,
                    "batch": batch,
                    "reference_measured": "samples_per_s" in ref,
                    "samples_per_s_ratio": _ratio(ours.get("samples_per_s"), ref.get("samples_per_s")),
                    "peak_rss_ratio": _ratio(ours.get("peak_rss_bytes"), ref.get("peak_rss_bytes")),
                    "peak_rss_ratio_vs_predicted_reference": _ratio(
                        ours.get("peak_rss_bytes"), ref.get("predicted_peak_rss_bytes")
                    ),
                    "reference_note": ref.get("skipped") or ref.get("error"),
                }
            )
    wall = time.perf_counter() - started
    (b1, b2), (p1, p2) = probe["probe_batches"], probe["peak_rss_bytes"]
    result = {
        "benchmark": "supernet",
        "what": "one search step = architecture step (alpha gradient + Adam) + weight step (SGD); "
        "ours: trainers.architect.architecture_gradients + trainers.training.weight_step on a "
        "SuperNet(checkpoint=True), as run_search builds it; reference: benchmarks/reference_darts.py",
        **base,
        "goal": GOAL,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": args.threads,
            "memory_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
            "load_average_at_start": load_at_start,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "equivalence": equivalent,
        "reference_memory_probe": {
            "forward_backward_batches": [b1, b2],
            "peak_rss_bytes": [p1, p2],
            "setup_rss_bytes": probe["setup_rss_bytes"],
            "per_sample_bytes": int((p2 - p1) / (b2 - b1)),
            "second_order_factor": SECOND_ORDER_FACTOR,
            "limit_gib": args.reference_max_gb,
            "predicted_peak_gib": {
                f"{o}@{b}": _gib(predict_reference_peak(probe, b, o)) for b in batches for o in orders
            },
        },
        "runs": runs,
        "comparisons": comparisons,
        **single,
        "wall_seconds": round(wall, 1),
    }
    write_text_atomically(args.out, json.dumps(result, indent=2) + "\n")

    print(
        f"SuperNet search step: {args.layers} layers x {args.nodes} nodes x {args.channels} channels, "
        f"1 x {args.height} x {args.width}, {args.threads} thread(s), {args.steps} timed step(s), "
        f"{os.cpu_count()} CPUs"
    )
    print(f"  {'order':<7}{'batch':>6}  {'impl':<10}{'samples/s':>11}{'step s':>10}{'peak GiB':>11}")
    for run in runs:
        print(_row(run["order"], run["batch"], run["impl"], run))
    for c in comparisons:
        if c["reference_measured"]:
            print(
                f"  ours/reference, {c['order']} order, batch {c['batch']}: samples/s x{c['samples_per_s_ratio']}, "
                f"peak RSS x{c['peak_rss_ratio']} (goal >= {GOAL['samples_per_s_ratio_at_least']}, "
                f"<= {GOAL['peak_rss_ratio_at_most']})"
            )
        else:
            print(
                f"  ours/reference, {c['order']} order, batch {c['batch']}: reference not measured "
                f"({c['reference_note']}); peak RSS x{c['peak_rss_ratio_vs_predicted_reference']} "
                "of its predicted peak"
            )
    for c in single["forward_backward"]["comparisons"]:
        print(
            f"  forward+backward, batch {c['batch']}: ours {c['ours_seconds']} s, reference {c['reference_seconds']} s"
            f" -> speed x{c['samples_per_s_ratio']}, peak RSS x{c['peak_rss_ratio']}"
            + (f" ({c['reference_note']})" if c["reference_note"] else "")
        )
    for c in single["evaluation_network"]["comparisons"]:
        print(
            f"  evaluation network step, batch {c['batch']}: before {c['before_seconds']} s, after "
            f"{c['after_seconds']} s -> speed x{c['samples_per_s_ratio']}, peak RSS x{c['peak_rss_ratio']}"
        )
    for op in (single.get("profile") or {}).get("top_ops", []):
        print(f"  profile: {op['share']:6.1%}  {op['self_cpu_seconds']:7.3f} s  {op['calls']:5d} calls  {op['op']}")
    for dtype, check_result in equivalent.items():
        print(
            f"  alpha gradients ours vs reference ({dtype}, batch 2, {args.check_size}x{args.check_size}): "
            f"max rel diff first {check_result['alpha_grad_first']['max_rel']:.1e}, "
            f"second {check_result['alpha_grad_second']['max_rel']:.1e}"
        )
    print(f"  {wall:.0f} s in all -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
