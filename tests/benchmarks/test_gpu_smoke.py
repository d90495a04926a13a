"""The parts of benchmarks/gpu_smoke.py that need no GPU: arguments, arithmetic, the JSON file,
and the refusal to run without CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_smoke  # noqa: E402


def test_arguments_have_defaults_and_reject_nonsense(capsys):
    args = gpu_smoke.parse_args([])
    assert args.out == ROOT / "benchmarks" / "results" / "gpu_smoke.json" and args.skip == []
    assert (args.batch, args.steps, args.trials) == (32, 5, 4)
    assert gpu_smoke.parse_args(["--skip", "tests", "sharing"]).skip == ["tests", "sharing"]
    with pytest.raises(SystemExit):
        gpu_smoke.parse_args(["--skip", "everything"])
    with pytest.raises(SystemExit):
        gpu_smoke.parse_args(["--trials", "0"])
    assert "--trials" in capsys.readouterr().err


def test_searches_per_gpu_hour():
    assert gpu_smoke.searches_per_gpu_hour(trials=4, seconds=1800, gpus=1) == 8.0
    assert gpu_smoke.searches_per_gpu_hour(trials=4, seconds=3600, gpus=0.25) == 16.0
    with pytest.raises(ValueError, match="must be > 0"):
        gpu_smoke.searches_per_gpu_hour(trials=4, seconds=0, gpus=1)


def test_figures_are_written_as_json(tmp_path):
    path = gpu_smoke.write_figures(tmp_path / "results" / "gpu_smoke.json", {"stages": {"step": {"ok": True}}})
    assert json.loads(path.read_text()) == {"stages": {"step": {"ok": True}}}
    assert [p.name for p in path.parent.iterdir()] == ["gpu_smoke.json"]  # no temp file left


def test_the_sharing_config_is_a_valid_experiment(tmp_path):
    from orchestrator.concurrency import size_concurrency
    from orchestrator.config import load_config

    data = {"m.parquet": tmp_path / "m.parquet", "features": tmp_path / "features"}
    for gpu, concurrent in ((1.0, 1), (0.25, 4)):
        path = gpu_smoke._sharing_config(tmp_path / f"x{gpu}.yaml", name="share", gpu=gpu, trials=4, data=data)
        config = load_config(path)
        assert config.tune.resources.gpu == gpu and config.device == "auto"
        assert size_concurrency(config.tune, {"CPU": 16, "GPU": 1}).trials == concurrent


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_without_cuda_the_script_says_so_and_exits_2(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_smoke.sh"), "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert done.returncode == 2 and "CUDA is not available on this machine" in done.stderr
    assert not (tmp_path / "x.json").exists()
