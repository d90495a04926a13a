"""What only a GPU can show (skipped without CUDA; benchmarks/gpu_smoke.sh runs them on one).

Second-order DARTS gradients on CUDA equal a CPU copy's (TF32 off in the architecture step);
an architecture step changes no weight, BatchNorm buffer or CUDA RNG state; the recurrent
stage computes in float32 under autocast; one paper-shape search step fits a quarter of the
card; a model trained and exported on CUDA predicts the same labels on the CPU.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from conftest import make_fold_data
from search_space import SuperNet
from search_space.head import RecurrentHead
from trainers.architect import architecture_gradients
from trainers.evaluate import train_final_model
from trainers.features import get_preset
from trainers.gpu_memory import limit_memory, should_recompute
from trainers.model_bundle import load_bundle, predict_files, save_bundle
from trainers.normalization import Normalizer
from trainers.settings import EvalSettings, ModelShape
from trainers.training import weight_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/gpu_smoke.sh)")

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)
TINY = dict(layers=3, nodes=2, init_channels=4, n_classes=3, lstm_hidden=8)


def batches(n: int = 8, shape=(1, 16, 16), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *shape, generator=g), torch.arange(n) % 3) for _ in range(3)]  # warm-up, train, arch


def on(device, batch):
    return tuple(t.to(device) for t in batch)


@pytest.fixture
def tf32_on():
    """TF32 allowed, as on an Ampere card by default for cuDNN: the architecture step must turn it off."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_second_order_gradients_on_cuda_equal_a_cpu_copy(tf32_on):
    torch.manual_seed(0)
    net = SuperNet(**TINY, dropout=0.0).train()  # no dropout: CPU and CUDA RNGs draw differently
    gpu = copy.deepcopy(net).to(CUDA)
    warm, train, arch = batches()
    grads = []
    for device, model in ((CPU, net), (CUDA, gpu)):
        weights = list(model.weight_parameters())
        optimizer = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
        weight_step(
            model,
            *on(device, warm),
            loss_fn=nn.CrossEntropyLoss(),
            optimizer=optimizer,
            parameters=weights,
            grad_clip=5.0,
        )  # fills the momentum buffers the unrolled step uses
        grads.append(
            architecture_gradients(
                model,
                train_batch=on(device, train),
                arch_batch=on(device, arch),
                loss_fn=nn.CrossEntropyLoss(),
                weight_optimizer=optimizer,
                order="second",
                seed=3,
            )[0]
        )
    for cpu_grad, cuda_grad in zip(*grads):
        torch.testing.assert_close(cuda_grad.cpu(), cpu_grad, rtol=1e-3, atol=1e-5)


def test_an_architecture_step_changes_no_weight_buffer_or_cuda_rng_state():
    torch.manual_seed(0)
    net = SuperNet(**TINY, dropout=0.3).to(CUDA).train()
    warm, train, arch = (on(CUDA, b) for b in batches())
    weights = list(net.weight_parameters())
    optimizer = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    weight_step(net, *warm, loss_fn=nn.CrossEntropyLoss(), optimizer=optimizer, parameters=weights, grad_clip=5.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.cuda.get_rng_state(CUDA)
    for order in ("second", "first"):
        architecture_gradients(
            net,
            train_batch=train,
            arch_batch=arch,
            loss_fn=nn.CrossEntropyLoss(),
            weight_optimizer=optimizer,
            order=order,
            seed=7,
        )
        for key, value in net.state_dict().items():
            assert torch.equal(value, before[key]), f"{order}-order step changed {key}"
    assert any("running_var" in key for key in before)
    assert torch.equal(torch.cuda.get_rng_state(CUDA), rng)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_recurrent_stage_computes_in_float32_under_autocast(dtype):
    head = RecurrentHead(16, n_classes=4, lstm_hidden=32, lstm_layers=2, dropout=0.0).to(CUDA)
    seen = []
    lstm = next(m for m in head.modules() if isinstance(m, nn.LSTM))
    lstm.register_forward_hook(lambda module, inputs, output: seen.append(output[0].dtype))
    x = torch.randn(4, 16, 8, 50, device=CUDA)  # (B, C, F, T)
    with torch.autocast("cuda", dtype=dtype):
        logits = head(x)
    assert seen == [torch.float32]  # no float16 LSTM without loss scaling, no bf16 cuDNN RNN
    assert torch.isfinite(logits).all()
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in lstm.parameters())


def test_one_paper_shape_step_fits_a_quarter_of_the_card():
    total = torch.cuda.get_device_properties(CUDA).total_memory
    limit_memory(CUDA, 0.25)
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(CUDA)
        paper = dict(layers=4, nodes=4, init_channels=8)
        recompute = should_recompute(CUDA, batch_size=32, primitives=8, input_shape=(1, 128, 128), **paper)
        torch.manual_seed(0)
        net = SuperNet(**paper, n_classes=4, lstm_hidden=128, checkpoint=recompute).to(CUDA).train()
        train, arch = (on(CUDA, b) for b in batches(32, (1, 128, 128))[:2])
        train = (train[0], train[1] % 4)
        weights = list(net.weight_parameters())
        optimizer = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
        for order in ("first", "second"):
            architecture_gradients(
                net,
                train_batch=train,
                arch_batch=arch,
                loss_fn=nn.CrossEntropyLoss(),
                weight_optimizer=optimizer,
                order=order,
                seed=1,
            )
            weight_step(
                net, *train, loss_fn=nn.CrossEntropyLoss(), optimizer=optimizer, parameters=weights, grad_clip=5.0
            )
        torch.cuda.synchronize(CUDA)
        peak = torch.cuda.max_memory_reserved(CUDA)
        print(
            f"\npaper-shape step, batch 32, recompute={recompute}: peak {peak / 2**30:.2f} GiB "
            f"of {total / 2**30:.1f} GiB"
        )
        assert peak <= 0.25 * total
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
        torch.cuda.empty_cache()


def test_a_model_exported_on_cuda_predicts_the_same_labels_on_the_cpu(tmp_path):
    preset = get_preset("logmel-32")
    data = make_fold_data(n_classes=3, shape=preset.output_shape, n_train=48, normalization=None)
    settings = EvalSettings(shape=ModelShape(layers=3, init_channels=8, lstm_hidden=16), epochs=2, batch_size=16)
    model = train_final_model(
        data.train, architecture="baseline", settings=settings, n_classes=3, epochs=2, device=CUDA
    )
    bundle = save_bundle(
        tmp_path / "model.pt",
        model=model,
        architecture="baseline",
        settings=settings,
        classes=data.classes,
        preset=preset,
        source={"test": "gpu"},
        normalizer=Normalizer("utterance"),
    )
    paths = []
    for i in range(6):
        path = tmp_path / f"u{i}.wav"
        t = np.arange(16000) / 16000
        sf.write(path, (0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t)).astype(np.float32), 16000)
        paths.append(str(path))
    on_cpu = predict_files(load_bundle(bundle, device=CPU), paths, device=CPU)
    on_cuda = predict_files(load_bundle(bundle, device=CUDA), paths, device=CUDA)
    assert [p.label for p in on_cpu] == [p.label for p in on_cuda]
    for a, b in zip(on_cpu, on_cuda):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)


def test_ssl_features_on_cuda_equal_the_cpus(tmp_path):
    """The encoder runs on the device it is given (never .cuda() on its own): a WavLM-sized
    front end on CUDA stores the CPU's features within float16 rounding."""
    from tiny_encoders import save_tiny_weights, tiny_encoder, tiny_preset

    from trainers.features import SSLFeatureExtractor, resolve_preset

    preset = tiny_preset(encoder=tiny_encoder(model_type="WavLM", dim=64), time_pool=2, max_seconds=4.0)
    resolved = resolve_preset(preset, weights=save_tiny_weights(preset.encoder, tmp_path / "w.pt"))
    wave = np.random.default_rng(0).standard_normal(3 * 16_000).astype(np.float32) * 0.1
    on_gpu = SSLFeatureExtractor(resolved, device=torch.device("cuda"))
    assert next(on_gpu.model.parameters()).device.type == "cuda"
    cpu = SSLFeatureExtractor(resolved, device=torch.device("cpu"))(wave, 16_000).float()
    gpu = on_gpu(wave, 16_000)
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float16  # stored from the CPU
    torch.testing.assert_close(gpu.float(), cpu, atol=5e-3, rtol=5e-3)
