"""Device choice, GPU memory helpers, exact float32 in the architecture step and per-device RNG
state, tested on the CPU (CUDA faked absent where a GPU path must refuse); tests/gpu runs the
CUDA side."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_space import SuperNet
from trainers.architect import architecture_gradients
from trainers.device import DeviceUnavailableError, device_spec_problem, resolve_device, trial_device
from trainers.gpu_memory import (
    is_out_of_memory,
    limit_memory,
    peak_memory_mib,
    release_cached_memory,
    should_recompute,
)
from trainers.reproducibility import capture_rng_state, restore_rng_state, seed_everything

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)


@pytest.fixture
def no_cuda(monkeypatch):
    """CUDA absent, as on a node whose driver or torch wheel does not work."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("spec", ["auto", "cuda", "cuda:0"])
def test_a_trial_given_a_gpu_without_cuda_fails_at_once_naming_the_node(no_cuda, spec):
    with pytest.raises(DeviceUnavailableError) as caught:
        trial_device(spec, gpus=0.25, where="node abc123 (gpu-worker-7)")
    message = str(caught.value)
    assert "Ray gave this trial 0.25 GPU on node abc123 (gpu-worker-7), but CUDA does not work there" in message
    assert "instead of training on the CPU" in message and "cluster.gpu_check" in message


@pytest.mark.parametrize("spec", ["auto", "cuda", "cuda:0"])
def test_a_trial_given_a_gpu_maps_every_cuda_spec_to_the_assigned_one(monkeypatch, spec):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # Ray shows the trial its own GPU only
    assert trial_device(spec, gpus=0.5, where="node x") == CUDA


@pytest.mark.parametrize("spec", ["auto", "cpu"])
def test_a_trial_without_a_gpu_trains_on_the_cpu_even_where_cuda_works(monkeypatch, spec):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trial_device(spec, gpus=0, where="node x") == CPU


def test_a_trial_refuses_a_device_its_gpu_share_cannot_give():
    with pytest.raises(ValueError, match="cannot exist inside a trial"):
        trial_device("cuda:1", gpus=0.5, where="node x")
    assert device_spec_problem("cuda:1", gpus=2) is not None and device_spec_problem("cuda", gpus=1) is None


def test_outside_ray_auto_is_the_cpu_without_cuda_and_cuda_is_refused(no_cuda):
    assert resolve_device("auto") == CPU
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        resolve_device("cuda")


def test_outside_ray_a_missing_gpu_ordinal_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="has 1 CUDA device"):
        resolve_device("cuda:1")


def test_gpu_memory_helpers_leave_the_cpu_alone():
    limit_memory(CPU, 0.25)
    release_cached_memory(CPU)
    assert peak_memory_mib(CPU) is None
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("invalid device ordinal"))


def test_recomputation_is_on_where_memory_demands_it():
    paper = dict(batch_size=32, layers=4, nodes=4, init_channels=8, primitives=8, input_shape=(1, 128, 128))
    assert should_recompute(CPU, **paper)  # the CPU: always
    assert should_recompute(CUDA, **paper, budget_gib=6.0)  # a quarter of a 24 GB card
    assert not should_recompute(CUDA, **paper, budget_gib=80.0)  # a whole 80 GB card
    assert not should_recompute(CUDA, **{**paper, "batch_size": 8}, budget_gib=10.0)


def test_the_architecture_step_runs_without_tf32_and_restores_the_flags():
    torch.manual_seed(0)
    net = SuperNet(layers=3, nodes=2, init_channels=4, n_classes=3, lstm_hidden=8, dropout=0.0).train()
    seen = []
    net.register_forward_hook(
        lambda *_: seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
    )
    batch = (torch.randn(4, 1, 16, 16), torch.arange(4) % 3)
    optimizer = torch.optim.SGD(list(net.weight_parameters()), lr=0.025, momentum=0.9)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as a fast weight step may want
    try:
        for order in ("first", "second"):
            architecture_gradients(
                net,
                train_batch=batch,
                arch_batch=batch,
                loss_fn=nn.CrossEntropyLoss(),
                weight_optimizer=optimizer,
                order=order,
                seed=3,
            )
        assert seen and set(seen) == {(False, False)}
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_rng_state_of_a_cpu_run_never_touches_cuda(monkeypatch):
    def cuda_touched(*args, **kwargs):
        raise AssertionError("a CPU run touched the CUDA RNG")

    for name in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all"):
        monkeypatch.setattr(torch.cuda, name, cuda_touched)
    generator = seed_everything(5)
    state = capture_rng_state(generator, device=CPU)
    assert "cuda" not in state
    expected = torch.rand(3)
    restore_rng_state(state, generator, device=CPU)
    assert torch.equal(torch.rand(3), expected)


def test_a_checkpoint_with_cuda_state_resumes_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda *a, **k: pytest.fail("restored CUDA state on the CPU"))
    state = capture_rng_state(seed_everything(1), device=CPU)
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 4  # an older checkpoint from a 4-GPU host
    restore_rng_state(state, device=CPU)


def test_a_cuda_run_saves_and_restores_its_own_devices_state_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)) or torch.ones(4))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("saved every GPU's state"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda value, device: calls.append(("set", device, len(value))))
    state = capture_rng_state(device=CUDA)
    state_all = dict(state, cuda=[torch.ones(2), torch.ones(3)])  # older checkpoint: one per GPU
    restore_rng_state(state, device=CUDA)
    restore_rng_state(state_all, device=CUDA)
    assert calls == [("get", CUDA), ("set", CUDA, 4), ("set", CUDA, 2)]


@pytest.mark.parametrize(("setting", "device", "expected"), [(None, CPU, True), (False, CPU, False), (True, CPU, True)])
def test_the_search_setting_decides_recomputation(monkeypatch, setting, device, expected):
    from conftest import make_fold_data
    from trainers import search as search_module
    from trainers.settings import ModelShape, SearchSettings

    settings = SearchSettings(
        shape=ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8), epochs=1, batch_size=8, recompute=setting
    )
    data = make_fold_data(n_train=16, n_valid=8, n_test=8)
    assert search_module.resolve_recompute(data, settings, device) is expected
    built = []
    original = search_module.build_supernet
    monkeypatch.setattr(search_module, "build_supernet", lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    search_module.run_search(data, settings=settings, device=device)
    assert built[0].config["checkpoint"] is expected
