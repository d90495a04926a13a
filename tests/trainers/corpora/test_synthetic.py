"""The synthetic corpus must look like IEMOCAP on disk, be reproducible, and be learnable."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile

from trainers.audio import probe_audio, read_audio
from trainers.corpora import synthetic
from trainers.corpora.synthetic import MARKER_NAME, SyntheticCorpusSummary, generate_synthetic_corpus

SMALL = {"speakers": 4, "per_speaker": 8}
MAIN = ("neu", "hap", "sad", "ang")

# What a reader of real IEMOCAP expects.
WAV_PATH = re.compile(
    r"^Session(?P<session>\d)/sentences/wav/(?P<dialog>Ses(?P<ses>\d{2})[FM]_(?:impro|script)\w*)/"
    r"(?P<utt>(?P=dialog)_(?P<gender>[FM])\d{3})\.wav$"
)
LABEL_LINE = re.compile(
    r"^\[(?P<start>\d+\.\d{4}) - (?P<end>\d+\.\d{4})\]\t(?P<utt>Ses\d{2}[FM]_\w+_[FM]\d{3})\t"
    r"(?P<label>[a-z]{3})\t\[(?P<v>\d\.\d{4}), (?P<a>\d\.\d{4}), (?P<d>\d\.\d{4})\]$"
)
RATER_LINE = re.compile(r"^[CA]-[EFM]\d:\t.*;\t\(.*\)$")
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"


def _wav_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("Session*/sentences/wav/*/*.wav") if not p.name.startswith("._"))


def _label_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("Session*/dialog/EmoEvaluation/*.txt") if not p.name.startswith("._"))


def _labels(root: Path) -> dict[str, tuple[str, float, float, Path]]:
    """utt_id -> (label, start, end, label file), parsed the way an IEMOCAP reader would."""
    found = {}
    for path in _label_files(root):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = LABEL_LINE.match(line)
            if match:
                found[match["utt"]] = (match["label"], float(match["start"]), float(match["end"]), path)
    return found


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, SyntheticCorpusSummary]:
    root = tmp_path_factory.mktemp("small") / "corpus"
    return root, generate_synthetic_corpus(root, **SMALL)


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory) -> tuple[Path, SyntheticCorpusSummary]:
    root = tmp_path_factory.mktemp("default") / "corpus"
    return root, generate_synthetic_corpus(root)


# ---------------------------------------------------------------- layout


def test_wav_paths_follow_iemocap_layout_and_format(small):
    root, summary = small
    wavs = _wav_files(root)
    assert len(wavs) == summary.n_utterances == 4 * 8
    for path in wavs:
        rel = path.relative_to(root).as_posix()
        match = WAV_PATH.match(rel)
        assert match, rel
        assert int(match["ses"]) == int(match["session"])
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 <= info.duration <= 4.5 + 1e-3


def test_label_files_parse_like_real_iemocap(small):
    root, _ = small
    files = _label_files(root)
    assert files
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == HEADER and lines[1] == ""
        body = lines[2:]
        n_blocks = 0
        i = 0
        while i < len(body):
            match = LABEL_LINE.match(body[i])
            assert match, f"{path.name}: {body[i]!r}"
            assert match["utt"].startswith(path.stem + "_")
            assert all(1.0 <= float(match[k]) <= 5.0 for k in "vad")
            raters = body[i + 1 : i + 4]
            assert len(raters) == 3 and all(RATER_LINE.match(r) for r in raters), raters
            assert not any(LABEL_LINE.match(r) for r in raters)
            assert body[i + 4] == ""
            n_blocks += 1
            i += 5
        assert n_blocks > 0


def test_every_labelled_utterance_has_a_wav_and_vice_versa(small):
    root, summary = small
    labels = _labels(root)
    wav_ids = {p.stem for p in _wav_files(root)}
    assert set(labels) == wav_ids
    assert sum(summary.label_counts.values()) == len(labels) == summary.n_utterances
    counts: dict[str, int] = defaultdict(int)
    for label, *_ in labels.values():
        counts[label] += 1
    assert dict(counts) == summary.label_counts
    assert summary.sessions == (1, 2) and summary.n_speakers == 4


def test_label_times_match_audio_and_do_not_overlap(small):
    root, summary = small
    labels = _labels(root)
    total = 0.0
    for wav in _wav_files(root):
        _, start, end, _ = labels[wav.stem]
        duration = probe_audio(wav).duration_s
        assert end - start == pytest.approx(duration, abs=2e-4)
        total += duration
    assert summary.seconds_of_audio == pytest.approx(total, abs=1e-2)
    by_file: dict[Path, list[tuple[float, float]]] = defaultdict(list)
    for _, start, end, path in labels.values():
        by_file[path].append((start, end))
    for spans in by_file.values():
        spans.sort()
        assert all(prev_end <= next_start for (_, prev_end), (next_start, _) in zip(spans, spans[1:]))


def test_dialogs_mix_both_speakers_and_both_kinds(small):
    root, _ = small
    dialogs = {p.parent.name for p in _wav_files(root)}
    assert any("_impro" in d for d in dialogs) and any("_script" in d for d in dialogs)
    for dialog in dialogs:
        genders = {p.stem[-4] for p in (root.glob(f"Session*/sentences/wav/{dialog}/Ses*.wav"))}
        assert genders == {"F", "M"}, dialog
        suffixes = sorted(p.stem[-4:] for p in root.glob(f"Session*/sentences/wav/{dialog}/Ses*.wav"))
        for gender in "FM":  # numbered per gender from 000 without gaps, like IEMOCAP
            numbers = [int(s[1:]) for s in suffixes if s[0] == gender]
            assert numbers == list(range(len(numbers)))


def _median_f0(samples: np.ndarray, sr: int) -> float:
    """Median autocorrelation pitch (Hz) of the loudest 40 ms frames."""
    frame = int(0.04 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[:: frame // 2]
    energy = (frames**2).mean(axis=1)
    lo, hi = int(sr / 400), int(sr / 70)
    estimates = []
    for f in frames[energy >= np.percentile(energy, 70)]:
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[frame - 1 :]
        estimates.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(estimates))


def test_utterance_gender_letter_matches_the_voice(small):
    root, _ = small
    pitches: dict[tuple[str, str], list[float]] = defaultdict(list)
    for wav in _wav_files(root):
        samples, sr = read_audio(wav)
        pitches[(wav.stem[:5], wav.stem[-4])].append(_median_f0(samples, sr))
    for session in {s for s, _ in pitches}:
        female, male = np.median(pitches[(session, "F")]), np.median(pitches[(session, "M")])
        assert female > 165 and male < 150 and female > 1.3 * male, (session, female, male)


def test_decoy_files_are_present(small):
    root, _ = small
    for session in ("Session1", "Session2"):
        evaluation = root / session / "dialog" / "EmoEvaluation"
        assert len(list((evaluation / "Categorical").glob("*.txt"))) == 1
        assert len(list((evaluation / "Attribute").glob("*.txt"))) == 1
        apple = list(evaluation.glob("._*.txt"))
        assert len(apple) == 1 and not apple[0].read_bytes().startswith(b"%")
        assert len(list((root / session / "sentences" / "wav").glob("*/._*.wav"))) == 1


def test_default_corpus_is_imbalanced_with_decoy_labels(default_corpus):
    root, summary = default_corpus
    assert (summary.n_utterances, summary.n_speakers, summary.sessions) == (600, 10, (1, 2, 3, 4, 5))
    counts = summary.label_counts
    assert set(counts) == {*MAIN, "exc", "fru", "xxx"}
    decoys = counts["exc"] + counts["fru"] + counts["xxx"]
    assert 0.04 < decoys / 600 < 0.13
    main = [counts[k] for k in MAIN]
    assert min(main) > 0.12 * 600 and max(main) < 0.40 * 600 and len(set(main)) > 1
    # every session has improvised and scripted dialogs and all four main classes
    for session in summary.sessions:
        in_session = {u: v for u, v in _labels(root).items() if u.startswith(f"Ses{session:02d}")}
        assert {label for label, *_ in in_session.values()} >= set(MAIN)
        assert any("_impro" in u for u in in_session) and any("_script" in u for u in in_session)


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(small, tmp_path):
    root, _ = small
    again = tmp_path / "again"
    generate_synthetic_corpus(again, **SMALL)
    assert _tree_bytes(again) == _tree_bytes(root)

    other = tmp_path / "other"
    generate_synthetic_corpus(other, **SMALL, seed=1)
    ours, theirs = _tree_bytes(root), _tree_bytes(other)
    wav_names = [n for n in ours if n.endswith(".wav") and "/._" not in n]
    assert all(ours[n] != theirs.get(n) for n in wav_names)
    assert [ours[n] for n in ours if n.endswith(".txt")] != [theirs.get(n) for n in ours if n.endswith(".txt")]


def test_utterances_do_not_depend_on_corpus_size(small, tmp_path):
    """Speaker traits and utterance audio are seeded per (seed, speaker, utterance)."""
    root, _ = small
    fewer = tmp_path / "fewer"
    generate_synthetic_corpus(fewer, speakers=2, per_speaker=8)
    for path in _wav_files(fewer):
        assert path.read_bytes() == (root / path.relative_to(fewer)).read_bytes()


# ---------------------------------------------------------------- parameters and marker


@pytest.mark.parametrize("speakers", [0, 1, 3, 12, -2, 2.0, True])
def test_speakers_must_be_even_between_2_and_10(tmp_path, speakers):
    message = f"speakers must be an even number between 2 and 10, but got {speakers}."
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_synthetic_corpus(tmp_path / "c", speakers=speakers)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("per_speaker", 3, "per_speaker must be an integer >= 4, but got 3."),
        ("seed", -1, "seed must be a non-negative integer, but got -1."),
        ("sample_rate", 4000, "sample_rate must be an integer >= 8000 (Hz), but got 4000."),
    ],
)
def test_other_options_are_validated(tmp_path, option, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_synthetic_corpus(tmp_path / "c", **{option: value})


def test_options_are_keyword_only(tmp_path):
    with pytest.raises(TypeError):
        generate_synthetic_corpus(tmp_path / "c", 4)  # type: ignore[misc]


def test_second_call_reuses_the_corpus(small, monkeypatch):
    root, summary = small
    marker = root / MARKER_NAME
    before = marker.stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("regenerated an existing corpus")

    monkeypatch.setattr(synthetic, "_write_corpus", must_not_run)
    assert generate_synthetic_corpus(root, **SMALL) == summary
    assert marker.stat().st_mtime_ns == before


def test_corpus_with_other_parameters_is_refused(small):
    root, _ = small
    with pytest.raises(FileExistsError, match="different synthetic corpus"):
        generate_synthetic_corpus(root, speakers=4, per_speaker=8, seed=7)


def test_foreign_directory_is_refused_and_left_alone(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthetic corpus"):
        generate_synthetic_corpus(foreign, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_empty_directory_is_filled(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = generate_synthetic_corpus(empty, speakers=2, per_speaker=4)
    assert summary.root == empty and (empty / MARKER_NAME).is_file()
    assert len(_wav_files(empty)) == 8


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_write_wav = synthetic.write_wav

    def dies_midway(path, samples, sample_rate):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        real_write_wav(path, samples, sample_rate)

    monkeypatch.setattr(synthetic, "write_wav", dies_midway)
    target = tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_corpus(target, speakers=2, per_speaker=4)
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(synthetic, "write_wav", real_write_wav)
    assert generate_synthetic_corpus(target, speakers=2, per_speaker=4).n_utterances == 8


# ---------------------------------------------------------------- learnability


def test_default_corpus_is_learnable_but_not_trivial(default_corpus):
    """Leave-one-session-out logistic regression on MFCC statistics: above chance, below perfect."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from threadpoolctl import threadpool_limits

    from trainers.torchaudio_compat import transforms

    root, _ = default_corpus
    mfcc = transforms.MFCC(sample_rate=16000, n_mfcc=40, melkwargs={"n_fft": 512, "hop_length": 160, "n_mels": 64})
    features, labels, sessions = [], [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: extra threads only spin (10x slower on a busy 2-core box)
    try:
        for utt, (label, _, _, label_file) in sorted(_labels(root).items()):
            if label not in MAIN:
                continue
            session_dir = label_file.parents[2]
            samples, _ = read_audio(session_dir / "sentences" / "wav" / utt.rsplit("_", 1)[0] / f"{utt}.wav")
            coefficients = mfcc(torch.from_numpy(samples))  # (40, T)
            features.append(torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1)]).numpy())
            labels.append(label)
            sessions.append(session_dir.name)
    finally:
        torch.set_num_threads(threads)
    x, y, groups = np.stack(features), np.array(labels), np.array(sessions)

    uas = []
    with threadpool_limits(limits=1):  # same reason: BLAS threads on small matrices only contend
        for held_out in sorted(set(sessions)):
            train, test = groups != held_out, groups == held_out
            mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8  # train speakers only
            model = LogisticRegression(max_iter=2000).fit((x[train] - mean) / std, y[train])
            uas.append(balanced_accuracy_score(y[test], model.predict((x[test] - mean) / std)))
    ua = float(np.mean(uas))
    assert 0.40 < ua < 0.90, uas
