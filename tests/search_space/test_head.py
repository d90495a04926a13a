"""Padding never counts: a clip's logits depend on its valid frames only, in every network."""

from __future__ import annotations

import pytest
import torch

from search_space import SuperNet, build_model
from search_space.genotype import Genotype
from search_space.head import STD_EPS, HeadOptions, RecurrentHead, head_lengths, masked_time_mean, masked_time_std
from search_space.network import BaselineCNNLSTM, Network

GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 1), ("max_pool_3x3", 2)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 2), ("skip_connect", 0)],
    reduce_concat=[2, 3],
)


# Every head option, and a projection: what padding-never-counts is tested for.
HEADS = {
    "default": HeadOptions(),
    "stats": HeadOptions(pooling="stats"),
    "frequency-channels": HeadOptions(sequence_input="frequency-channels", frequency_bins=2),
    "frequency-channels-stats": HeadOptions(sequence_input="frequency-channels", pooling="stats"),
    "projected": HeadOptions(sequence_input="frequency-channels", sequence_projection=5, pooling="stats"),
}
# The discrete networks with every head; the supernet (slow, and the same head module) with the
# default and the one that combines every non-default option.
CASES = [(name, head) for name in ("network", "baseline") for head in HEADS] + [
    ("supernet", "default"),
    ("supernet", "projected"),
]


def networks(head: HeadOptions | None = None) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "supernet": SuperNet(layers=3, nodes=2, init_channels=4, n_classes=3, lstm_hidden=8, head=head),
        "network": Network(GENOTYPE, layers=3, init_channels=4, n_classes=3, lstm_hidden=8, auxiliary=True, head=head),
        "baseline": BaselineCNNLSTM(n_classes=3, channels=(4, 8), lstm_hidden=8, head=head),
    }


@pytest.mark.parametrize(("name", "head"), CASES)
def test_padding_content_and_window_length_do_not_change_logits(name, head):
    net = networks(HEADS[head])[name].eval()
    lengths = torch.tensor([12, 20, 32])
    x = torch.randn(3, 1, 8, 32)
    with torch.no_grad():
        reference = net(x, lengths)  # (3, 3)
        junk = x.clone()
        for i, n in enumerate(lengths):
            junk[i, :, :, n:] = torch.randn_like(junk[i, :, :, n:]) * 50 - 13.8  # anything at all
        assert torch.allclose(net(junk, lengths), reference, atol=1e-5)
        # A longer window (more padding): only the frames at a clip's end, whose convolutions see
        # a padded neighbour (constant, whatever the clip), can move; without lengths the
        # padding is pooled and the logits move tens of times more.
        longer = torch.cat([x, torch.full((3, 1, 8, 16), -13.8)], dim=-1)  # (3, 1, 8, 48)
        masked = (net(longer, lengths) - reference).abs().max()
        unmasked = (net(longer) - reference).abs().max()
        assert masked < unmasked / 20, (float(masked), float(unmasked))


@pytest.mark.parametrize(("name", "head"), CASES)
def test_logits_with_lengths_never_depend_on_batch_mates(name, head):
    net = networks(HEADS[head])[name].eval()
    x, lengths = torch.randn(4, 1, 8, 16), torch.tensor([5, 16, 9, 12])
    with torch.no_grad():
        batched = net(x, lengths)
        alone = torch.cat([net(x[i : i + 1], lengths[i : i + 1]) for i in range(4)])
    assert torch.allclose(batched, alone, atol=1e-5)


def test_head_lengths_map_frames_to_the_head_resolution():
    lengths = torch.tensor([1, 4, 5, 31, 32])
    assert head_lengths(lengths, input_frames=32, frames=8).tolist() == [1, 1, 2, 8, 8]  # ceil(n / 4)
    assert head_lengths(torch.tensor([0]), input_frames=32, frames=8).tolist() == [1]  # never empty


def test_masked_time_mean_averages_the_valid_steps_only():
    x = torch.arange(6.0).reshape(1, 6, 1).repeat(2, 1, 1)  # (2, 6, 1): steps 0..5
    assert masked_time_mean(x, torch.tensor([2, 6])).flatten().tolist() == [0.5, 2.5]
    assert masked_time_mean(x, None).flatten().tolist() == [2.5, 2.5]


def test_lstm_runs_in_float32_under_autocast():
    head = RecurrentHead(4, n_classes=3, lstm_hidden=8, lstm_layers=1, dropout=0.0)
    seen = []
    head.lstm.register_forward_hook(lambda module, args, output: seen.append(output[0].dtype))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        head(torch.randn(2, 4, 3, 5).to(torch.bfloat16))
    assert seen == [torch.float32]


def test_auxiliary_head_speaks_in_training_mode_only():
    net = networks()["network"]
    x, lengths = torch.randn(2, 1, 8, 16), torch.tensor([9, 16])
    logits, aux = net.train().forward_with_aux(x, lengths)
    assert logits.shape == aux.shape == (2, 3)
    (logits.sum() + aux.sum()).backward()
    assert net.aux_head.classifier.weight.grad is not None
    assert net.eval().forward_with_aux(x, lengths)[1] is None
    assert Network(GENOTYPE, layers=3, init_channels=4, n_classes=3).train().forward_with_aux(x)[1] is None


def test_masked_time_std_covers_the_valid_steps_only_and_is_safe_for_one_step():
    x = torch.tensor([[1.0, 3.0, 100.0], [5.0, float("inf"), float("nan")]])[:, :, None]  # (2, 3, 1)
    x.requires_grad_(True)
    std = masked_time_std(x, torch.tensor([2, 1]))  # (2, 1)
    expected = torch.tensor([[(1.0 + STD_EPS) ** 0.5], [STD_EPS**0.5]])  # population variance of (1, 3) is 1
    assert torch.allclose(std, expected)
    std.sum().backward()
    assert torch.isfinite(x.grad).all()  # padded steps (inf, NaN) reach neither value nor gradient
    assert x.grad[1].abs().sum() == 0 and x.grad[0, 2] == 0  # a lone step has no spread to move
    assert torch.allclose(
        masked_time_std(x.detach()[:1], None), (x.detach()[:1].var(dim=1, correction=0) + STD_EPS).sqrt()
    )


@pytest.mark.parametrize("head", [name for name, options in HEADS.items() if options.pooling == "stats"])
@pytest.mark.parametrize("name", ["network", "baseline"])  # the supernet's head is the same module
def test_one_step_clips_give_finite_logits_and_gradients(name, head):
    net = networks(HEADS[head])[name].train()
    x, lengths = torch.randn(2, 1, 8, 16), torch.tensor([1, 16])  # the first clip: 1 step at the head
    logits = net(x, lengths)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_default_head_is_the_head_sernas_always_had():
    """Mean over frequency -> LSTM -> masked mean -> linear, with the same parameter names, so
    genotypes, checkpoints and bundles from before the options mean what they meant."""
    torch.manual_seed(0)
    head = RecurrentHead(6, n_classes=3, lstm_hidden=8, lstm_layers=1, dropout=0.0).eval()
    assert set(head.state_dict()) == {f"lstm.{k}" for k in head.lstm.state_dict()} | {
        "classifier.weight",
        "classifier.bias",
    }
    x, lengths = torch.randn(2, 6, 4, 10), torch.tensor([20, 7])  # lengths in input frames (of 20)
    out, _ = head.lstm(x.mean(dim=2).transpose(1, 2))  # (2, 10, 8)
    expected = head.classifier(torch.stack([out[0].mean(0), out[1, :4].mean(0)]))  # ceil(7 * 10 / 20) = 4
    assert torch.allclose(head(x, lengths, input_frames=20), expected, atol=1e-6)


def test_frequency_channels_flattens_channels_by_frequency_bands_per_step():
    head = RecurrentHead(
        2,
        n_classes=3,
        lstm_hidden=4,
        lstm_layers=1,
        dropout=0.0,
        options=HeadOptions(sequence_input="frequency-channels"),
    )
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(1, 2, 4, 3)  # (B, C=2, F'=4, T'=3)
    sequence = head.sequence(x)  # (1, 3, 2 * 4): with F' == K, the plain C x F' flatten
    assert torch.equal(sequence, x.permute(0, 3, 1, 2).reshape(1, 3, 8))
    pooled = head.sequence(x.repeat_interleave(2, dim=2))  # F' = 8 -> 4 bands of 2 equal bins: the same
    assert torch.equal(pooled, sequence)
    assert head.lstm.input_size == 8


def test_option_sizes_projection_and_stats_pooling():
    options = HeadOptions(sequence_input="frequency-channels", frequency_bins=3, sequence_projection=5, pooling="stats")
    head = RecurrentHead(4, n_classes=2, lstm_hidden=6, lstm_layers=1, dropout=0.0, options=options)
    assert head.projection.in_features == 12 and head.projection.out_features == 5
    assert head.lstm.input_size == 5 and head.classifier.in_features == 12  # mean and std: 2 x 6
    mean_frequency = HeadOptions(sequence_projection=5)  # projection acts with frequency-channels only
    assert (
        RecurrentHead(4, n_classes=2, lstm_hidden=6, lstm_layers=1, dropout=0.0, options=mean_frequency).projection
        is None
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sequence_input": "frequency"}, "sequence_input must be one of"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"frequency_bins": 0}, "frequency_bins must be an int >= 1"),
        ({"sequence_projection": -1}, "sequence_projection must be an int >= 0"),
    ],
)
def test_bad_head_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        HeadOptions(**options)
    with pytest.raises(ValueError, match="unknown head options"):
        HeadOptions.of({"poolin": "stats"})


@pytest.mark.parametrize("architecture", ["baseline", GENOTYPE.to_json()])
def test_head_options_are_in_the_config_and_rebuild_the_same_network(architecture):
    head = HeadOptions(sequence_input="frequency-channels", sequence_projection=4, pooling="stats")
    torch.manual_seed(0)
    net = build_model(architecture, layers=3, init_channels=4, n_classes=3, lstm_hidden=8, head=head).eval()
    assert net.config["head"] == head.to_dict() and net.head.options == head
    config = net.config
    if "genotype" in config:
        config["genotype"] = Genotype.from_dict(config["genotype"])
    rebuilt = type(net)(**config).eval()
    rebuilt.load_state_dict(net.state_dict())
    x, lengths = torch.randn(2, 1, 8, 16), torch.tensor([16, 5])
    with torch.no_grad():
        assert torch.equal(rebuilt(x, lengths), net(x, lengths))
    supernet = SuperNet(layers=3, nodes=2, init_channels=4, n_classes=3, lstm_hidden=8, head=head)
    assert SuperNet(**supernet.config).head.options == head
