"""Input normalisation over each clip's real frames, with statistics that never see labels or
(for ``train``) anything but the training speakers."""

from dataclasses import replace

import pytest
import torch

from conftest import make_fold_data
from trainers.features import get_preset
from trainers.fold_data import Split
from trainers.normalization import Normalizer, pooled_statistics, valid_mask


def clips(pad_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clips (2, 1, 3, 6): the first 4 and 2 frames carry signal, the rest is ``pad_value``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 3, 6, generator=g) * 3 + 5
    lengths = torch.tensor([4, 2])
    return torch.where(valid_mask(lengths, 6).bool(), x, torch.full_like(x, pad_value)), lengths


def test_valid_frames_follow_the_clip_duration():
    preset = get_preset("logmel-32")  # 512-sample hop at 16 kHz, 128 frames pooled by 4 -> 32
    assert preset.valid_frames(4.096) == 32 and preset.valid_frames(30.0) == 32
    assert preset.valid_frames(1.0) == 8  # ceil(16000 / 512) = 32 frames -> 8 pooled
    assert preset.valid_frames(0.001) == 1


def test_utterance_normalisation_ignores_padding_and_zeroes_it():
    padded_low, lengths = clips(-13.8)
    padded_high, _ = clips(0.0)
    a, b = Normalizer("utterance")(padded_low, lengths), Normalizer("utterance")(padded_high, lengths)
    assert torch.equal(a, b)  # what the padding holds does not matter
    assert (a[0, :, :, 4:] == 0).all() and (a[1, :, :, 2:] == 0).all()
    real = a[0, 0, :, :4]  # (F, T) of the first clip
    assert torch.allclose(real.mean(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(real.std(dim=1, unbiased=False), torch.ones(3), atol=1e-3)


def test_train_statistics_come_from_the_training_split_only():
    data = make_fold_data(n_train=12, n_valid=6, n_test=6, normalization=None)
    poisoned = replace(data, test=Split(x=torch.full_like(data.test.x, 1e6), y=data.test.y, utt_ids=data.test.utt_ids))
    clean, fitted = data.normalized(Normalizer("train"))
    dirty, fitted_dirty = poisoned.normalized(Normalizer("train"))
    assert torch.equal(fitted.mean, fitted_dirty.mean) and torch.equal(clean.train.x, dirty.train.x)
    flat = clean.train.x.transpose(0, 2).reshape(data.train.x.shape[2], -1)  # (F, N * T)
    assert torch.allclose(flat.mean(dim=1), torch.zeros(flat.shape[0]), atol=1e-4)
    # Round trip through what a model bundle stores.
    again = Normalizer.from_state(fitted.state())
    assert torch.allclose(again(data.valid.x, data.valid.valid_lengths), clean.valid.x)
    assert Normalizer.from_state(None).mode == "none"


def test_speaker_normalisation_uses_each_speakers_own_frames():
    x, lengths = clips(0.0)
    x = torch.cat([x, x * 10 + 100])  # speaker b: the same clips, scaled and shifted
    lengths = torch.cat([lengths, lengths])
    out = Normalizer("speaker")(x, lengths, ("a", "a", "b", "b"))
    assert torch.allclose(out[:2], out[2:], atol=1e-4)  # per-speaker statistics remove the speaker's offset
    with pytest.raises(ValueError, match="speaker of every utterance"):
        Normalizer("speaker")(x, lengths)
    with pytest.raises(ValueError, match="normalization must be one of utterance, train, speaker, none"):
        Normalizer("global")


def test_attached_speaker_statistics_replace_those_of_the_clips_at_hand():
    x, lengths = clips(0.0)  # (2, 1, 3, 6)
    everything = torch.cat([x, x * 3 + 7])  # the speaker's other clips, e.g. of labels the protocol drops
    stats = {"a": pooled_statistics(everything, torch.cat([lengths, lengths]))}
    fitted = Normalizer("speaker").fit(x, lengths, speaker_stats=stats)
    mean, std = stats["a"]  # (1, 1, 3, 1) each
    expected = (x - mean) / (std + 1e-5) * valid_mask(lengths, 6)
    assert torch.allclose(fitted(x, lengths, ("a", "a")), expected)
    assert not torch.allclose(fitted(x, lengths, ("a", "a")), Normalizer("speaker")(x, lengths, ("a", "a")))
    with pytest.raises(ValueError, match="speaker 'b' has no speaker statistics; they were computed for 1 speaker"):
        fitted(x, lengths, ("a", "b"))
    # A bundle never stores them: the speakers it meets are new, and their clips give their statistics.
    assert "speaker_stats" not in fitted.state() and Normalizer.from_state(fitted.state()).speaker_stats is None


def test_speaker_normalisation_of_a_fold_needs_statistics_of_all_of_each_speakers_audio():
    data = replace(make_fold_data(n_train=12, n_valid=6, n_test=6, normalization=None), speaker_stats=None)
    with pytest.raises(ValueError, match="fold 1 carries no speaker statistics"):
        data.normalized(Normalizer("speaker"))
    speakers = {*data.train.speakers, *data.valid.speakers, *data.test.speakers}
    stats = {s: (torch.zeros(1, 1, 16, 1), torch.full((1, 1, 16, 1), 2.0)) for s in speakers}
    normalized, fitted = replace(data, speaker_stats=stats).normalized(Normalizer("speaker"))
    assert fitted.speaker_stats == stats
    assert torch.allclose(normalized.test.x, data.test.x / (2.0 + 1e-5))


def test_training_refuses_raw_or_otherwise_normalised_features_and_a_second_normalisation():
    """run_search(load_fold_data(...)) used to train on raw features: the fold now says how it was
    normalised, and search and evaluation refuse raw (or differently normalised) data."""
    from trainers.evaluate import run_evaluation
    from trainers.search import run_search
    from trainers.settings import EvalSettings, ModelShape, SearchSettings

    raw = make_fold_data(n_train=12, n_valid=6, n_test=6, normalization=None)
    shape = ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8)
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match=r"fold 1 holds raw features: normalise them first"):
        run_search(raw, settings=SearchSettings(shape=shape, epochs=1, batch_size=8), device=cpu)
    with pytest.raises(ValueError, match=r"fold 1 holds raw features"):
        run_evaluation(raw, architecture="baseline", settings=EvalSettings(shape=shape, epochs=1), device=cpu)
    normalized, _ = raw.normalized(Normalizer("train"))
    assert normalized.normalization == "train"
    with pytest.raises(ValueError, match=r"normalised with 'train', but the settings say normalization='speaker'"):
        run_evaluation(
            normalized,
            architecture="baseline",
            settings=EvalSettings(shape=shape, epochs=1, normalization="speaker"),
            device=cpu,
        )
    with pytest.raises(ValueError, match=r"fold 1 is normalised already \('train'\)"):
        normalized.normalized(Normalizer("train"))
    trained = run_evaluation(
        normalized,
        architecture="baseline",
        settings=EvalSettings(shape=shape, epochs=1, batch_size=8, normalization="train"),
        device=cpu,
    )
    assert 0.0 <= trained.test["ua"] <= 1.0  # and it trains once normalised as its settings say


@pytest.mark.parametrize("mode", ["train", "utterance", "speaker"])
def test_half_precision_features_normalise_as_float32_does_in_chunks(mode, monkeypatch):
    """SSL features stay float16 in memory: statistics are summed in float32 and the result keeps
    float16, a chunk of clips at a time (a chunk of 3 here), equal to the float32 path."""
    import trainers.normalization as normalization
    from trainers.fold_data import Split, iterate_batches

    monkeypatch.setattr(normalization, "_CHUNK_ROWS", 3)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(10, 2, 5, 12, generator=gen) * 3 + 40).to(torch.float16)  # (N, L, D, T)
    lengths = torch.tensor([12, 3, 7, 12, 1, 9, 12, 5, 6, 12])
    speakers = tuple("ab"[i % 2] for i in range(10))
    rows = {s: [i for i in range(10) if speakers[i] == s] for s in "ab"}
    stats = {s: pooled_statistics(x.float()[r], lengths[r]) for s, r in rows.items()}  # each (1, C, F, 1)
    attached = stats if mode == "speaker" else None
    full = Normalizer(mode).fit(x.float(), lengths, speaker_stats=attached)
    half = Normalizer(mode).fit(x, lengths, speaker_stats=attached)
    if mode == "train":
        torch.testing.assert_close(half.mean, full.mean, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(half.std, full.std, rtol=1e-5, atol=1e-4)
    out = half(x, lengths, speakers)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), full(x.float(), lengths, speakers), rtol=2e-3, atol=2e-3)
    batch, _, _ = next(
        iterate_batches(
            Split(x=out, y=torch.zeros(10, dtype=torch.int64), utt_ids=tuple("0123456789"), lengths=lengths),
            batch_size=4,
            shuffle=False,
        )
    )
    assert batch.dtype == torch.float32  # what the networks get
