"""SpecAugment masks training batches only, reproducibly, and leaves random streams alone when off."""

import torch

from conftest import make_fold_data
from trainers.augment import spec_augment
from trainers.evaluate import run_evaluation
from trainers.settings import EvalSettings, ModelShape, SpecAugment

SHAPE = ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8)


def test_masks_are_bands_of_bounded_width_and_reproducible():
    x = torch.ones(64, 1, 20, 30)
    settings = SpecAugment(freq_masks=1, freq_width=0.2, time_masks=1, time_width=0.1)
    out = spec_augment(x, settings, generator=torch.Generator().manual_seed(1))
    again = spec_augment(x, settings, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and (out == 0).any() and out.shape == x.shape
    for sample in out[:, 0]:  # (F, T)
        zero_rows = (sample == 0).all(dim=1).sum()  # a frequency mask blanks whole rows
        zero_cols = (sample == 0).all(dim=0).sum()  # a time mask whole columns
        assert zero_rows <= 4 and zero_cols <= 3
    assert torch.equal(x, torch.ones_like(x))  # the input is not modified


def test_off_draws_nothing_and_changes_nothing():
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    x = torch.randn(4, 1, 8, 8)
    assert spec_augment(x, SpecAugment(), generator=generator) is x
    assert torch.equal(generator.get_state(), state)


def test_training_with_masks_is_seeded_and_differs_from_training_without():
    """Masks change the weight steps (train loss), and a seeded run masks the same cells again.
    (Validation and test go through ``evaluate_split``, which takes no augmentation at all.)"""
    data = make_fold_data(n_train=16, n_valid=8, n_test=8)
    settings = EvalSettings(shape=SHAPE, epochs=2, batch_size=8, spec_augment=SpecAugment(freq_masks=2, time_masks=2))
    first = run_evaluation(data, architecture="baseline", settings=settings, device=torch.device("cpu"))
    second = run_evaluation(data, architecture="baseline", settings=settings, device=torch.device("cpu"))
    assert first.test == second.test and first.valid == second.valid
    plain = run_evaluation(
        data,
        architecture="baseline",
        settings=settings.model_copy(update={"spec_augment": SpecAugment()}),
        device=torch.device("cpu"),
    )
    assert [h["train_loss"] for h in plain.history] != [h["train_loss"] for h in first.history]
