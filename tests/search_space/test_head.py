"""Padding never counts: a clip's logits depend on its valid frames only, in every network."""

from __future__ import annotations

import pytest
import torch

from search_space import SuperNet
from search_space.genotype import Genotype
from search_space.head import RecurrentHead, head_lengths, masked_time_mean
from search_space.network import BaselineCNNLSTM, Network

GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 1), ("max_pool_3x3", 2)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 2), ("skip_connect", 0)],
    reduce_concat=[2, 3],
)


def networks() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "supernet": SuperNet(layers=3, nodes=2, init_channels=4, n_classes=3, lstm_hidden=8),
        "network": Network(GENOTYPE, layers=3, init_channels=4, n_classes=3, lstm_hidden=8, auxiliary=True),
        "baseline": BaselineCNNLSTM(n_classes=3, channels=(4, 8), lstm_hidden=8),
    }


@pytest.mark.parametrize("name", ["supernet", "network", "baseline"])
def test_padding_content_and_window_length_do_not_change_logits(name):
    net = networks()[name].eval()
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


@pytest.mark.parametrize("name", ["supernet", "network", "baseline"])
def test_logits_with_lengths_never_depend_on_batch_mates(name):
    net = networks()[name].eval()
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
