"""What searching the sequence stage costs per search step (issue 28): time and peak memory.

    python benchmarks/bench_sequence_step.py [--steps 8] [--warmup 2] [--threads 1]
        [--out benchmarks/results/sequence_step.json]

One DARTS search step (first-order architecture step, then weight step: ``supernet_steps``'
``Searcher``, as ``run_search`` does it) on a :class:`search_space.SuperNet` whose head is the
fixed LSTM (the default) and on the same supernet with a searched sequence cell
(``search.sequence.enabled``: its default operations, 2 nodes, width ``lstm_hidden``), each in a
fresh subprocess so that its peak RSS is its own, same seed, same batch, clips of random valid
lengths (so packing and masks do real work). Two shapes: ``bench_search_value``'s search
(3 cells x 2 nodes x 4 channels, LSTM 16, batch 16, logmel-32 x 128 frames) and the same
cells with the paper's LSTM width 128. Reported: median seconds per step, samples/s, peak RSS,
and the ratios sequence / fixed measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

from supernet_steps import N_CLASSES, WEIGHTS, Setting, _peak_rss_bytes, make_batches, make_searcher  # noqa: E402

from search_space import SuperNet  # noqa: E402
from search_space.sequence_cell import SEQUENCE_OPS  # noqa: E402
from trainers.architect import architecture_gradients  # noqa: E402
from trainers.atomic_io import write_text_atomically  # noqa: E402
from trainers.training import weight_step  # noqa: E402

HEADS = ("fixed-lstm", "sequence-cell")
SHAPES = {  # name -> (Setting, lstm_hidden)
    "search-value (LSTM 16)": (Setting(batch=16, layers=3, nodes=2, channels=4, height=32, width=128), 16),
    "search-value cells, LSTM 128": (Setting(batch=16, layers=3, nodes=2, channels=4, height=32, width=128), 128),
}


def _child(spec: dict) -> dict:
    """One (shape, head) measured in this (fresh) process."""
    torch.set_num_threads(spec["threads"])
    setting, hidden = SHAPES[spec["shape"]]
    torch.manual_seed(0)
    sequence = {"ops": list(SEQUENCE_OPS), "nodes": 2, "hidden": hidden} if spec["head"] == "sequence-cell" else None
    net = SuperNet(
        layers=setting.layers,
        nodes=setting.nodes,
        init_channels=setting.channels,
        n_classes=N_CLASSES,
        lstm_hidden=hidden,
        dropout=setting.dropout,
        sequence=sequence,
    ).train()
    searcher = make_searcher("ours", net, seed=2)
    (x, y), (ax, ay) = make_batches(setting, seed=1)
    generator = torch.Generator().manual_seed(4)
    # Valid frames per clip after the stem's input: between half and all of the window.
    lengths = torch.randint(setting.width // 2, setting.width + 1, (setting.batch,), generator=generator)
    arch_lengths = torch.randint(setting.width // 2, setting.width + 1, (setting.batch,), generator=generator)
    train, arch = (x, y, lengths), (ax, ay, arch_lengths)
    before = _peak_rss_bytes()
    seconds = []
    torch.manual_seed(3)
    model, alphas = searcher.model, list(searcher.model.arch_parameters())
    for i in range(spec["warmup"] + spec["steps"]):
        started = time.perf_counter()
        # run_search's step with each clip's lengths: the architecture step, then the weight step.
        grads, _ = architecture_gradients(
            model,
            train_batch=train,
            arch_batch=arch,
            loss_fn=searcher.loss_fn,
            weight_optimizer=searcher.weight_optimizer,
            order="first",
            seed=i,
        )
        for p, g in zip(alphas, grads):
            p.grad = g
        searcher.arch_optimizer.step()
        searcher.arch_optimizer.zero_grad(set_to_none=True)
        weight_step(
            model,
            x,
            y,
            lengths=lengths,
            loss_fn=searcher.loss_fn,
            optimizer=searcher.weight_optimizer,
            parameters=list(model.weight_parameters()),
            grad_clip=WEIGHTS.grad_clip,
        )
        if i >= spec["warmup"]:
            seconds.append(time.perf_counter() - started)
    median = sorted(seconds)[len(seconds) // 2]
    return {
        "shape": spec["shape"],
        "head": spec["head"],
        "parameters": sum(p.numel() for p in net.weight_parameters()),
        "alphas": sum(p.numel() for p in net.arch_parameters()),
        "seconds": [round(s, 4) for s in seconds],
        "seconds_median": round(median, 4),
        "samples_per_s": round(setting.batch / median, 2),
        "peak_rss_bytes": _peak_rss_bytes(),
        "setup_rss_bytes": before,
    }


def measure(spec: dict) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_child, (spec,))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=_HERE / "results" / "sequence_step.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = []
    for shape in SHAPES:
        for head in HEADS:
            run = measure(
                {"shape": shape, "head": head, "steps": args.steps, "warmup": args.warmup, "threads": args.threads}
            )
            runs.append(run)
            print(
                f"{shape}, {head}: {run['seconds_median'] * 1000:.0f} ms per search step "
                f"({run['samples_per_s']:.0f} samples/s), peak RSS {run['peak_rss_bytes'] / 2**20:.0f} MiB, "
                f"{run['parameters']} weights, {run['alphas']} alphas",
                flush=True,
            )
    ratios = {}
    for shape in SHAPES:
        fixed, searched = (next(r for r in runs if r["shape"] == shape and r["head"] == h) for h in HEADS)
        ratios[shape] = {
            "step_time": round(searched["seconds_median"] / fixed["seconds_median"], 3),
            "peak_rss": round(searched["peak_rss_bytes"] / fixed["peak_rss_bytes"], 3),
            "peak_rss_above_setup": round(
                (searched["peak_rss_bytes"] - searched["setup_rss_bytes"])
                / max(1, fixed["peak_rss_bytes"] - fixed["setup_rss_bytes"]),
                3,
            ),
        }
        print(
            f"{shape}: sequence cell / fixed LSTM: step time x{ratios[shape]['step_time']}, "
            f"peak RSS x{ratios[shape]['peak_rss']}"
        )
    result = {
        "what": "one first-order DARTS search step (architecture + weight step), fixed LSTM vs searched sequence cell",
        "heads": list(HEADS),  # (baseline, measured): the ratios are the second over the first
        "sequence_cell": {"ops": list(SEQUENCE_OPS), "nodes": 2},
        "shapes": {name: {**vars(setting), "lstm_hidden": hidden} for name, (setting, hidden) in SHAPES.items()},
        "runs": runs,
        "ratios": ratios,
        "threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": multiprocessing.cpu_count(), "torch": torch.__version__},
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
