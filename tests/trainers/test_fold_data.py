import pytest
import torch

from conftest import build_fake_iemocap
from trainers.features import extract_features, get_preset, load_features
from trainers.fold_data import Split, fold_speaker_rows, iterate_batches, load_fold_data
from trainers.folds import FoldProtocol, make_folds
from trainers.manifest import build_manifest
from trainers.normalization import Normalizer, pooled_statistics

CLASSES = ("neu", "hap", "sad", "ang")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("fold-data")
    corpus = build_fake_iemocap(root / "iemocap", sessions=(1, 2, 3), per_dialog=4)
    manifest = build_manifest(dataset="iemocap", root=corpus.root).frame
    extract_features(manifest, preset="logmel-64", cache_dir=root / "cache")
    folds = make_folds(manifest, protocol=FoldProtocol(scheme="loso", classes=CLASSES, merges={"exc": "hap"}))
    return manifest, folds, root / "cache"


def test_splits_hold_the_fold_table_rows_with_fixed_class_order(prepared):
    manifest, folds, cache = prepared
    data = load_fold_data(
        manifest=manifest,
        folds=folds,
        fold=2,
        preset="logmel-64",
        cache_dir=cache,
        classes=("neu", "hap", "sad", "ang"),
    )
    table = folds[folds.fold == 2]
    for name in ("train", "valid", "test"):
        split = getattr(data, name)
        rows = table[table.split == name]
        assert split.utt_ids == tuple(rows.utt_id)
        assert [data.classes[i] for i in split.y] == list(rows.label)
        assert split.x.shape == (len(rows), 1, 64, 200)
        assert split.speakers == tuple(rows.speaker)
        durations = manifest.set_index("utt_id").loc[list(rows.utt_id), "duration_s"]
        expected = [get_preset("logmel-64").valid_frames(d) for d in durations]
        assert split.lengths.tolist() == expected and 0 < min(expected) <= max(expected) <= 200
    assert {u[:5] for u in data.test.utt_ids} == {"Ses02"}
    weights = data.class_weights()
    counts = torch.bincount(data.train.y, minlength=4)
    assert torch.allclose(
        weights[counts > 0] * counts[counts > 0], torch.full((int((counts > 0).sum()),), len(data.train) / 4.0)
    )


def test_errors_name_the_problem(prepared):
    manifest, folds, cache = prepared
    with pytest.raises(ValueError, match="fold 9 is not in the fold table"):
        load_fold_data(manifest=manifest, folds=folds, fold=9, preset="logmel-64", cache_dir=cache)
    with pytest.raises(ValueError, match="outside the classes"):
        load_fold_data(manifest=manifest, folds=folds, fold=1, preset="logmel-64", cache_dir=cache, classes=("neu",))
    with pytest.raises(ValueError, match="not in the manifest"):
        load_fold_data(manifest=manifest.iloc[3:], folds=folds, fold=1, preset="logmel-64", cache_dir=cache)


def test_batches_cover_every_sample_once_and_balanced_sampling_balances():
    split = Split(
        x=torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1),
        y=torch.tensor([0] * 8 + [1] * 2),
        utt_ids=tuple(map(str, range(10))),
    )
    seen = torch.cat(
        [
            x.flatten()
            for x, _, _ in iterate_batches(
                split, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0)
            )
        ]
    )
    assert sorted(seen.tolist()) == list(range(10))  # the short last batch is kept
    big = Split(x=torch.zeros(1000, 1, 1, 1), y=torch.tensor([0] * 900 + [1] * 100), utt_ids=("u",) * 1000)
    drawn = torch.cat(
        [
            y
            for _, y, _ in iterate_batches(
                big, batch_size=100, shuffle=True, balanced=True, generator=torch.Generator().manual_seed(0)
            )
        ]
    )
    assert len(drawn) == 1000 and 0.4 < drawn.float().mean() < 0.6


def load(manifest, folds, cache, classes=CLASSES, fold=2):
    return load_fold_data(
        manifest=manifest, folds=folds, fold=fold, preset="logmel-64", cache_dir=cache, classes=classes
    )


def test_speaker_statistics_cover_all_of_a_speakers_audio_whatever_its_label(prepared):
    manifest, folds, cache = prepared
    table = folds[folds.fold == 2]
    data = load(fold_speaker_rows(manifest, table), folds, cache)
    preset = get_preset("logmel-64")
    assert set(data.speaker_stats) == set(table.speaker)
    for speaker, (mean, std) in data.speaker_stats.items():
        rows = manifest[manifest.speaker == speaker]  # every label, fru and xxx included
        x = load_features(rows, preset=preset, cache_dir=cache)  # (n, 1, 64, 200)
        lengths = torch.tensor([preset.valid_frames(d) for d in rows.duration_s])
        expected_mean, expected_std = pooled_statistics(x, lengths)
        assert mean.shape == std.shape == (1, 1, 64, 1)
        assert torch.allclose(mean, expected_mean, atol=1e-6) and torch.allclose(std, expected_std, atol=1e-6)
    dropped = manifest[manifest.speaker.isin(table.speaker) & ~manifest.utt_id.isin(table.utt_id)]
    assert {"fru", "xxx"} <= set(dropped.label)  # the protocol dropped some of the speakers' clips


@pytest.mark.parametrize(
    ("classes", "merges"),
    [(("neu", "sad", "ang"), {}), (CLASSES, {"exc": "hap", "fru": "ang", "xxx": "neu"})],
    ids=["fewer-classes", "every-clip-labelled"],
)
def test_a_speakers_normalised_features_do_not_depend_on_the_class_selection(prepared, classes, merges):
    manifest, folds, cache = prepared
    other = make_folds(manifest, protocol=FoldProtocol(scheme="loso", classes=classes, merges=merges))
    assert len(other[other.fold == 2]) != len(folds[folds.fold == 2])
    normalizer = Normalizer("speaker")
    data, _ = load(manifest, folds, cache).normalized(normalizer)
    relabelled, _ = load(manifest, other, cache, classes=classes).normalized(normalizer)
    for name in ("test", "valid", "train"):
        a, b = getattr(data, name), getattr(relabelled, name)
        shared = sorted(set(a.utt_ids) & set(b.utt_ids))
        assert shared
        rows_a = torch.tensor([a.utt_ids.index(u) for u in shared])
        rows_b = torch.tensor([b.utt_ids.index(u) for u in shared])
        assert torch.equal(a.x[rows_a], b.x[rows_b]), f"{name} features depend on which clips the protocol kept"


def test_speaker_statistics_need_the_speakers_features_and_the_fold_table_s_speakers(prepared, tmp_path):
    manifest, folds, cache = prepared
    table = folds[folds.fold == 2]
    only_selected = manifest[manifest.utt_id.isin(table.utt_id)]
    extract_features(only_selected, preset="logmel-64", cache_dir=tmp_path / "cache")
    with pytest.raises(LookupError, match="features of preset 'logmel-64' are missing"):
        load(manifest, folds, tmp_path / "cache")  # the dropped clips were never computed
    moved = manifest.copy()
    moved.loc[moved.utt_id == table.utt_id.iloc[0], "speaker"] = "Ses09F"
    with pytest.raises(ValueError, match="another speaker in the manifest than in the fold table"):
        load(moved, folds, cache)


def test_ssl_layers_stay_marked_through_subsets_and_concatenation():
    """``Split.layered`` (SSL encoder layers, (N, L, D, T)) is what makes the networks mix the layers
    (``ModelShape.frontend``), so it must survive every way a split is cut and joined."""
    from search_space import LayerMixOptions
    from trainers.fold_data import concat_splits
    from trainers.settings import ModelShape

    layered = Split(
        x=torch.zeros(4, 3, 8, 10, dtype=torch.float16),
        y=torch.zeros(4, dtype=torch.int64),
        utt_ids=("a", "b", "c", "d"),
        layered=True,
    )
    assert layered.subset(torch.tensor([2, 0])).layered and concat_splits(layered, layered).layered
    spectral = Split(x=torch.zeros(1, 1, 8, 10), y=torch.zeros(1, dtype=torch.int64), utt_ids=("e",))
    with pytest.raises(ValueError, match="SSL encoder layers with splits of spectrograms"):
        concat_splits(layered, spectral)
    shape = ModelShape(ssl_projection=16)
    assert shape.frontend((3, 8, 10), layered=True) == LayerMixOptions(layers=3, dim=8, width=16)
    assert shape.frontend((1, 8, 10), layered=False) is None
