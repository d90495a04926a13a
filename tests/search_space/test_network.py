import pytest
import torch

from search_space.genotype import Genotype
from search_space.network import (
    BaselineCNNLSTM,
    Network,
    baseline_channels,
    build_model,
    count_parameters,
)

GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 2), ("avg_pool_3x3", 0)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("skip_connect", 1), ("sep_conv_5x5", 2), ("dil_conv_5x5", 1)],
    reduce_concat=[2, 3],
)
SIZES = dict(layers=3, init_channels=4, n_classes=3, lstm_hidden=6, dropout=0.1)


@pytest.mark.parametrize("size", [(16, 20), (13, 7)])
@pytest.mark.parametrize("which", ["genotype", "json", "baseline"])
def test_forward_shapes(which, size):
    torch.manual_seed(0)
    arch = {"genotype": GENOTYPE, "json": GENOTYPE.to_json(), "baseline": "baseline"}[which]
    model = build_model(arch, **SIZES)
    assert isinstance(model, BaselineCNNLSTM if which == "baseline" else Network)
    assert model(torch.randn(2, 1, *size)).shape == (2, 3)


@pytest.mark.parametrize("which", ["genotype", "baseline"])
def test_logits_do_not_depend_on_batch_mates_in_eval_mode(which):
    torch.manual_seed(0)
    model = build_model(GENOTYPE if which == "genotype" else "baseline", **SIZES).eval()
    x = torch.randn(4, 1, 12, 10)
    with torch.no_grad():
        batched = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=1e-4)


def test_build_model_rejects_unknown_names_and_types():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet'.*\['baseline'\]"):
        build_model("resnet", **SIZES)
    with pytest.raises(ValueError, match="valid JSON"):
        build_model("{not json", **SIZES)
    with pytest.raises(ValueError, match="got int"):
        build_model(3, **SIZES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a Genotype"):
        Network(GENOTYPE.to_json(), **SIZES)  # type: ignore[arg-type]


def test_baseline_channels_follow_the_configuration():
    assert baseline_channels(8, 4) == (16, 32, 64, 128)
    model = build_model("baseline", **SIZES)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32]


def test_config_rebuilds_the_same_network():
    torch.manual_seed(0)
    net = Network(GENOTYPE, **SIZES)
    config = net.config
    rebuilt = Network(Genotype.from_dict(config.pop("genotype")), **config)
    rebuilt.load_state_dict(net.state_dict())
    assert count_parameters(rebuilt) == count_parameters(net) > 0
    baseline = BaselineCNNLSTM(**build_model("baseline", **SIZES).config)
    assert count_parameters(baseline) == count_parameters(build_model("baseline", **SIZES))


def test_count_parameters():
    model = torch.nn.Linear(3, 2)
    assert count_parameters(model) == 8
    model.bias.requires_grad_(False)
    assert count_parameters(model) == 6
    assert count_parameters(model, trainable_only=False) == 8


def test_drop_path_is_scheduled_by_attribute_and_only_trains():
    torch.manual_seed(0)
    net = Network(GENOTYPE, drop_path_prob=0.0, **SIZES)
    x = torch.randn(2, 1, 10, 10)
    net.eval()
    reference = net(x)
    net.drop_path_prob = 0.5
    torch.testing.assert_close(net(x), reference)
    net.train()
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(1)
    assert torch.equal(a, net(x))


def test_same_seed_same_outputs():
    x = torch.randn(2, 1, 10, 10)
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        outs.append(build_model(GENOTYPE, **SIZES)(x))
    assert torch.equal(outs[0], outs[1])


EVERY_OP = Genotype(  # every primitive but none, at stride 1 and 2
    normal=[("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_3x3", 0), ("skip_connect", 2)]
    + [("dil_conv_5x5", 1), ("avg_pool_3x3", 2), ("max_pool_3x3", 3), ("sep_conv_3x3", 0)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("dil_conv_5x5", 1), ("avg_pool_3x3", 0), ("sep_conv_5x5", 1)]
    + [("dil_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 2), ("skip_connect", 3)],
    reduce_concat=[2, 3, 4, 5],
)


@pytest.mark.parametrize("size", [(16, 20), (13, 7)])
def test_channels_last_network_equals_the_default_layout(size):
    """The fast path (channels_last activations, search_space.fast_conv) changes only the order of
    float sums: logits, auxiliary logits, weight gradients and BatchNorm statistics agree, in
    training mode with drop-path, odd sizes included."""
    x = torch.randn(3, 1, *size, dtype=torch.float64)
    lengths = torch.tensor([size[1], size[1] - 2, 1])
    y = torch.tensor([0, 1, 2])
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        net = Network(EVERY_OP, auxiliary=True, drop_path_prob=0.2, channels_last=channels_last, **SIZES)
        net = net.double().train()
        torch.manual_seed(1)
        logits, aux = net.forward_with_aux(x, lengths)
        torch.nn.functional.cross_entropy(logits + aux, y).backward()
        grads = [p.grad for p in net.parameters()]
        stats = [b for b in net.buffers() if b.is_floating_point()]
        results.append((logits, aux, grads, stats))
        assert "channels_last" not in net.config  # a layout, not part of the model
    for fast, plain in zip(results[1], results[0]):
        torch.testing.assert_close(fast, plain, rtol=1e-9, atol=1e-12)
    assert results[1][0].requires_grad and all(g is not None for g in results[1][2])
