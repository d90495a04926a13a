"""``python -m cluster.gpu_check``: exit 0 only if CUDA works on this node, else 1 and say why.

Run by GPU workers before ``ray start`` (cluster/ray-cluster.yaml ``worker_setup_commands``,
the KubeRay worker's init container), so a node whose driver or torch wheel cannot use its GPU
never joins the cluster and never takes a GPU trial. It computes a convolution and a matrix
product on every visible GPU and compares them with the CPU.
"""

from __future__ import annotations

import sys


def check() -> list[str]:
    """One line per visible GPU that works; raises RuntimeError naming what does not."""
    import torch

    facts = f"torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none: a CPU-only wheel'}"
    if torch.version.cuda is None:
        raise RuntimeError(f"this torch cannot use a GPU ({facts}); install the CUDA wheel: pip install torch")
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        raise RuntimeError(f"CUDA is not available ({facts}); check the NVIDIA driver (nvidia-smi)")
    lines = []
    x, w = torch.randn(2, 3, 16, 16), torch.randn(4, 3, 3, 3)
    expected = torch.nn.functional.conv2d(x, w).flatten(1) @ torch.ones(4 * 14 * 14, 2)
    for index in range(torch.cuda.device_count()):
        device = torch.device("cuda", index)
        got = torch.nn.functional.conv2d(x.to(device), w.to(device)).flatten(1) @ torch.ones(4 * 14 * 14, 2).to(device)
        if not torch.allclose(got.cpu(), expected, rtol=1e-2, atol=1e-2):
            raise RuntimeError(f"cuda:{index} computes wrong results ({facts})")
        props = torch.cuda.get_device_properties(index)
        lines.append(f"cuda:{index} {props.name}, {props.total_memory / 2**30:.1f} GiB: ok ({facts})")
    return lines


def main() -> int:
    try:
        lines = check()
    except Exception as error:  # any failure means: this node must not take GPU trials
        print(f"gpu_check: CUDA does not work on this node: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
