"""SuperNet search step vs a plain DARTS reference: samples/s and peak memory, first and second order.

    python benchmarks/bench_supernet.py [--batch 32] [--layers 4] [--nodes 4] [--channels 8]
        [--height 128] [--width 128] [--steps 1] [--orders first second] [--threads 1]
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
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # run from a checkout
sys.path.insert(0, str(_HERE))

from reference_darts import ReferenceArchitect, ReferenceNetwork, reference_weight_step  # noqa: E402

from search_space import SuperNet  # noqa: E402
from trainers.architect import architecture_gradients  # noqa: E402
from trainers.atomic_io import write_text_atomically  # noqa: E402
from trainers.settings import ArchOptimizer, WeightOptimizer  # noqa: E402
from trainers.training import weight_step  # noqa: E402

IMPLEMENTATIONS = ("ours", "reference")
ORDERS = ("first", "second")
N_CLASSES = 4
WEIGHTS, ALPHAS = WeightOptimizer(), ArchOptimizer()  # the search's defaults (DARTS, the paper)
PROBE_BATCHES = (2, 4)
# A second-order step's peak over one forward+backward's (both above the set-up RSS), measured for
# the reference at the paper's setting: 1.44 at batch 8, 1.37 at batch 16 (the allocator keeps more
# across the five passes); rounded up.
SECOND_ORDER_FACTOR = 1.5
GIB = 2**30

# Issue #17: at least 3x the plain DARTS supernet's speed at no more than half its peak memory.
GOAL = {"samples_per_s_ratio_at_least": 3.0, "peak_rss_ratio_at_most": 0.5}


@dataclass(frozen=True)
class Setting:
    batch: int
    layers: int
    nodes: int
    channels: int
    height: int
    width: int
    dropout: float = 0.3


# ---------------------------------------------------------------------------- the two steps


@dataclass
class Searcher:
    """One implementation's model and optimisers; ``step`` is one search step."""

    impl: str
    model: nn.Module
    weight_optimizer: torch.optim.SGD
    loss_fn: nn.Module
    arch_optimizer: torch.optim.Adam | None = None  # ours
    architect: ReferenceArchitect | None = None  # the reference's (holds its Adam)

    def alpha_gradients(self, train: tuple, arch: tuple, *, order: str, seed: int) -> list[torch.Tensor]:
        """The alphas' gradient alone (no step taken)."""
        if self.impl == "ours":
            grads, _ = architecture_gradients(
                self.model,
                train_batch=train,
                arch_batch=arch,
                loss_fn=self.loss_fn,
                weight_optimizer=self.weight_optimizer,
                order=order,
                seed=seed,
            )
            return grads
        grads = self.architect.gradients(*train, *arch, self.weight_optimizer, unrolled=order == "second", seed=seed)
        return [g.detach().clone() for g in grads]

    def step(self, train: tuple, arch: tuple, *, order: str, seed: int) -> float:
        """Architecture step then weight step (as ``run_search``); returns the train loss."""
        if self.impl == "ours":
            alphas = list(self.model.arch_parameters())
            grads, _ = architecture_gradients(
                self.model,
                train_batch=train,
                arch_batch=arch,
                loss_fn=self.loss_fn,
                weight_optimizer=self.weight_optimizer,
                order=order,
                seed=seed,
            )
            self.arch_optimizer.zero_grad(set_to_none=True)
            for p, g in zip(alphas, grads):
                p.grad = g
            self.arch_optimizer.step()
            self.arch_optimizer.zero_grad(set_to_none=True)
            del grads
            loss = weight_step(
                self.model,
                *train,
                loss_fn=self.loss_fn,
                optimizer=self.weight_optimizer,
                parameters=list(self.model.weight_parameters()),
                grad_clip=WEIGHTS.grad_clip,
            )
            for p in alphas:
                p.grad = None
            return loss
        self.architect.step(*train, *arch, self.weight_optimizer, unrolled=order == "second", seed=seed)
        return reference_weight_step(
            self.model, *train, criterion=self.loss_fn, optimizer=self.weight_optimizer, grad_clip=WEIGHTS.grad_clip
        )


def build_supernet(
    setting: Setting, *, seed: int, dtype: torch.dtype = torch.float32, random_alphas: bool = False
) -> SuperNet:
    """The search's supernet (``build_supernet``'s defaults: recomputing edges, LSTM head)."""
    torch.manual_seed(seed)
    net = (
        SuperNet(
            layers=setting.layers,
            nodes=setting.nodes,
            init_channels=setting.channels,
            n_classes=N_CLASSES,
            dropout=setting.dropout,
        )
        .to(dtype)
        .train()
    )
    if random_alphas:  # away from uniform, so that a comparison is generic
        with torch.no_grad():
            for p in net.arch_parameters():
                p.copy_(torch.randn_like(p))
    return net


def make_searcher(impl: str, net: SuperNet, *, seed: int) -> Searcher:
    """``impl``'s searcher over ``net``'s numbers (the reference copies them; ours uses ``net``);
    the weight optimiser's momentum buffers are filled from ``seed``, the same for both."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, but got {impl!r}.")
    model = net if impl == "ours" else ReferenceNetwork(net).train()
    weights = list(model.weight_parameters())
    weight_optimizer = torch.optim.SGD(
        weights, lr=WEIGHTS.lr, momentum=WEIGHTS.momentum, weight_decay=WEIGHTS.weight_decay
    )
    generator = torch.Generator().manual_seed(seed)
    for p in weights:
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
        weight_optimizer.state[p]["momentum_buffer"] = (1e-3 * noise).to(p.dtype)
    loss_fn = nn.CrossEntropyLoss()
    if impl == "ours":
        arch_optimizer = torch.optim.Adam(
            list(model.arch_parameters()),
            lr=ALPHAS.lr,
            betas=(ALPHAS.beta1, ALPHAS.beta2),
            weight_decay=ALPHAS.weight_decay,
        )
        return Searcher(impl, model, weight_optimizer, loss_fn, arch_optimizer=arch_optimizer)
    architect = ReferenceArchitect(
        model,
        loss_fn,
        arch_lr=ALPHAS.lr,
        arch_betas=(ALPHAS.beta1, ALPHAS.beta2),
        arch_weight_decay=ALPHAS.weight_decay,
    )
    return Searcher(impl, model, weight_optimizer, loss_fn, architect=architect)


def make_batches(setting: Setting, *, seed: int, dtype: torch.dtype = torch.float32) -> tuple[tuple, tuple]:
    """A train and an arch batch: (B, 1, H, W) inputs, labels cycling over the classes."""
    generator = torch.Generator().manual_seed(seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(setting.batch, 1, setting.height, setting.width, generator=generator, dtype=dtype)
        return x, torch.arange(setting.batch) % N_CLASSES  # (B, 1, H, W), (B,)

    return batch(), batch()


# ---------------------------------------------------------------------------- equivalence


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def _difference(ours: torch.Tensor, reference: torch.Tensor) -> dict:
    abs_diff = float((ours - reference).abs().max())
    scale = float(reference.abs().max())
    return {"max_abs": abs_diff, "max_rel": abs_diff / scale if scale else abs_diff, "max_abs_reference": scale}


def equivalence(setting: Setting, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict:
    """Our alpha gradients and search step vs the reference's, from the same numbers and batches.

    ``max_rel`` is the largest absolute difference over the largest reference magnitude.
    """
    train, arch = make_batches(setting, seed=seed + 1, dtype=dtype)
    net = build_supernet(setting, seed=seed, dtype=dtype, random_alphas=True)
    reference = make_searcher("reference", net, seed=seed + 2)
    ours = make_searcher("ours", net, seed=seed + 2)
    result: dict = {"setting": asdict(setting), "dtype": str(dtype).removeprefix("torch.")}
    grads = {}
    for order in ORDERS:
        grads[order] = [_flat(s.alpha_gradients(train, arch, order=order, seed=seed + 3)) for s in (ours, reference)]
        result[f"alpha_grad_{order}"] = _difference(*grads[order])
    # The second-order term is not negligible (the released code's eps^2 scaling made it vanish):
    result["second_minus_first_max_abs"] = float((grads["second"][1] - grads["first"][1]).abs().max())
    after = {}
    for searcher in (ours, reference):
        torch.manual_seed(seed + 4)  # the weight step's dropout draws from the global RNG
        searcher.step(train, arch, order="second", seed=seed + 3)
        model = searcher.model
        after[searcher.impl] = {
            "weights": _flat(model.weight_parameters()),
            "alphas": _flat(model.arch_parameters()),
            "batchnorm_stats": _flat([b for b in model.buffers() if b.is_floating_point()]),
        }
    result["after_second_order_step"] = {
        key: _difference(after["ours"][key], after["reference"][key]) for key in after["ours"]
    }
    return result


# ---------------------------------------------------------------------------- the child


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _limit_address_space(extra_bytes: int | None) -> None:
    """Allow ``extra_bytes`` of address space beyond what the process maps now."""
    if extra_bytes is None:
        return
    limit = _vm_size_bytes() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def run_child(spec: dict) -> dict:
    """Measure one (implementation, order) in this process (called in a fresh subprocess)."""
    torch.set_num_threads(spec["threads"])
    setting = Setting(**spec["setting"])
    net = build_supernet(setting, seed=0)
    searcher = make_searcher(spec["impl"], net, seed=2)
    del net
    train, arch = make_batches(setting, seed=1)
    torch.manual_seed(3)
    setup_rss = _peak_rss_bytes()
    _limit_address_space(spec.get("address_space_extra_bytes"))
    if spec["mode"] == "probe":  # forward + backward peaks at growing batches (reference-only use)
        peaks = []
        for batch in spec["probe_batches"]:
            x, y = train[0][:batch], train[1][:batch]
            searcher.loss_fn(searcher.model(x), y).backward()
            searcher.model.zero_grad(set_to_none=True)
            peaks.append(_peak_rss_bytes())
        return {"probe_batches": spec["probe_batches"], "peak_rss_bytes": peaks, "setup_rss_bytes": setup_rss}
    seconds, losses = [], []
    for i in range(spec["warmup"] + spec["steps"]):
        seed = int(torch.randint(0, 2**62, ()))
        started = time.perf_counter()
        losses.append(searcher.step(train, arch, order=spec["order"], seed=seed))
        if i >= spec["warmup"]:
            seconds.append(time.perf_counter() - started)
    median = sorted(seconds)[len(seconds) // 2]
    return {
        "impl": spec["impl"],
        "order": spec["order"],
        "batch": setting.batch,
        "step_seconds": [round(s, 3) for s in seconds],
        "step_seconds_median": round(median, 3),
        "samples_per_s": round(setting.batch / median, 4),
        "peak_rss_bytes": _peak_rss_bytes(),
        "setup_rss_bytes": setup_rss,
        "train_losses": [round(v, 6) for v in losses],
    }


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
    if args.fallback_batch is not None and not 1 <= args.fallback_batch < args.batch:
        parser.error(f"--fallback-batch must be in [1, --batch), but got {args.fallback_batch}")

    started = time.perf_counter()
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
