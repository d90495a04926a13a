"""search_space.frontend: the weighted sum of SSL encoder layers and its projection, in every network."""

from __future__ import annotations

import pytest
import torch

from search_space import (
    BaselineCNNLSTM,
    Genotype,
    LayerMix,
    LayerMixOptions,
    Network,
    SuperNet,
    build_model,
)

L, D, T = 3, 10, 24
OPTIONS = LayerMixOptions(layers=L, dim=D, width=8)
GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("sep_conv_3x3", 2)],
    normal_concat=(2, 3),
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0)],
    reduce_concat=(2, 3),
)
PRIMITIVES = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only spin on a shared machine
    yield
    torch.set_num_threads(previous)


def _networks() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    shape = dict(n_classes=4, lstm_hidden=8, in_channels=L, frontend=OPTIONS)
    return {
        "supernet": SuperNet(layers=3, nodes=2, init_channels=4, primitives=PRIMITIVES, checkpoint=False, **shape),
        "network": Network(GENOTYPE, layers=3, init_channels=4, **shape),
        "baseline": BaselineCNNLSTM(channels=(4, 8), **shape),
    }


def test_the_weighted_sum_and_projection_get_gradients() -> None:
    mix = LayerMix(OPTIONS)
    x = torch.randn(2, L, D, T)
    out = mix(x)  # (B, 1, width, T)
    assert out.shape == (2, 1, 8, T)
    assert torch.allclose(mix.layer_weights().sum(), torch.tensor(1.0))
    out.square().mean().backward()
    assert mix.layer_logits.grad is not None and mix.layer_logits.grad.abs().sum() > 0
    assert mix.projection.weight.grad.abs().sum() > 0


def test_at_the_start_every_layer_weighs_the_same() -> None:
    mix = LayerMix(OPTIONS)
    x = torch.randn(2, L, D, T)
    expected = mix.projection(x.mean(dim=1).transpose(1, 2)).transpose(1, 2)[:, None]  # (B, 1, width, T)
    torch.testing.assert_close(mix(x), expected)


def test_a_wrong_input_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 3, 10, T\), but got \(2, 1, 10, 24\)"):
        LayerMix(OPTIONS)(torch.randn(2, 1, D, T))
    with pytest.raises(ValueError, match="in_channels \\(1\\) must equal the frontend's layers \\(3\\)"):
        Network(GENOTYPE, layers=3, init_channels=4, n_classes=4, frontend=OPTIONS)


@pytest.mark.parametrize("kind", ["supernet", "network", "baseline"])
def test_every_network_reads_layers_and_ignores_the_padding(kind: str) -> None:
    net = _networks()[kind].eval()
    x = torch.randn(2, L, D, T)
    lengths = torch.tensor([T, 10])
    logits = net(x, lengths)
    assert logits.shape == (2, 4)
    noisy = x.clone()
    noisy[1, :, :, 10:] = 100.0  # whatever fills the padding
    torch.testing.assert_close(net(noisy, lengths), logits)
    assert net.config["frontend"] == {"layers": L, "dim": D, "width": 8}


def test_the_layer_weights_train_with_the_network_weights_not_the_alphas() -> None:
    supernet = _networks()["supernet"]
    names = dict(supernet.named_weight_parameters())
    assert "frontend.layer_logits" in names and "frontend.projection.weight" in names
    assert all(p is not supernet.frontend.layer_logits for p in supernet.arch_parameters())
    supernet(torch.randn(2, L, D, T), torch.tensor([T, 12])).sum().backward()
    assert supernet.frontend.layer_logits.grad.abs().sum() > 0


def test_a_network_rebuilds_from_its_config() -> None:
    net = _networks()["network"]
    config = net.config
    rebuilt = build_model(Genotype.from_dict(config.pop("genotype")), **config)
    rebuilt.load_state_dict(net.state_dict())
    baseline = build_model("baseline", layers=2, init_channels=2, n_classes=4, in_channels=L, frontend=OPTIONS)
    assert isinstance(baseline, BaselineCNNLSTM) and baseline.config["frontend"]["width"] == 8
