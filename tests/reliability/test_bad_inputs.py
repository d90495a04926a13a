"""Bad input through the user-facing commands: each case ends with a message that names the file,
line or config key and what was expected (exit code 2, no traceback), and loses nothing else: the
good files still make a manifest with ``--skip-bad``, earlier leaderboard rows stay queryable,
earlier outputs and checkpoints stay as they were."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import trainers.atomic_io
from conftest import FakeCorpus, make_leaderboard_row, run_fold_args, write_experiment_config
from orchestrator.cli import main
from orchestrator.leaderboard import LeaderboardWriteError, write_fold_row
from trainers.audio import write_wav
from trainers.manifest import manifest_info, read_manifest, rejects_path


def sernas(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``sernas ARGV`` in this process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse reports bad option values this way
        code = exit_.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def manifest_args(corpus: FakeCorpus, out: Path, *extra: str) -> list[str]:
    return ["manifest", "--dataset", "iemocap", "--root", str(corpus.root), "--out", str(out), *extra]


def assert_refused_then_skipped(
    capsys,
    corpus: FakeCorpus,
    tmp_path: Path,
    *,
    reported: str,
    lost: set[str],
    rejected: Path,
    line: int | None = None,
) -> pd.DataFrame:
    """``sernas manifest`` refuses the corpus with ``reported`` in its message and writes nothing;
    with ``--skip-bad`` it writes every utterance except ``lost`` and lists ``rejected`` (at
    ``line``) in the rejects file. Returns the rejects."""
    out = tmp_path / "m.parquet"
    code, _, err = sernas(capsys, *manifest_args(corpus, out))
    assert code == 2 and reported in err, err
    assert "nothing was written" in err and "--skip-bad" in err
    assert not out.exists() and not rejects_path(out).exists()

    code, stdout, err = sernas(capsys, *manifest_args(corpus, out, "--skip-bad"))
    assert code == 0, err
    assert "Skipped" in stdout and rejects_path(out).name in stdout
    frame = read_manifest(out)
    assert set(frame["utt_id"]) == set(corpus.expected) - lost  # every good file, nothing twice
    assert len(frame) == len(corpus.expected) - len(lost)
    rejects = pd.read_csv(rejects_path(out))
    assert rejects["path"].tolist() == [str(rejected)]
    assert rejects["line"].isna().all() if line is None else rejects["line"].tolist() == [line]
    return rejects


# ------------------------------------------------------------------------------------ audio files
def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:20])  # RIFF/WAVE and half of the fmt chunk: no data chunk


def _text(path: Path) -> None:
    path.write_text("utterance,label\nSes01F_impro01_F000,neu\n")


def _short_clip(path: Path) -> None:
    t = np.arange(1600) / 16000  # 0.1 s at 16 kHz: a valid WAV, too short to carry an emotion
    write_wav(path, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_empty, "empty file (0 bytes)"),
        (_truncated_header, "truncated WAV: no 'data' chunk before the end of the file"),
        (_text, "not a readable audio file"),
        (_short_clip, "clip too short: 0.100 s of audio, expected at least 0.25 s"),
    ],
    ids=["empty-wav", "truncated-wav-header", "text-file-named-wav", "0.1s-clip"],
)
def test_bad_audio_file_is_named_and_the_rest_is_kept(fake_iemocap, tmp_path, capsys, damage, reason):
    utt_id = "Ses02M_script01_1b_M000"
    wav = fake_iemocap.wavs[utt_id]
    damage(wav)
    rejects = assert_refused_then_skipped(
        capsys, fake_iemocap, tmp_path, reported=f"{wav}: {reason}", lost={utt_id}, rejected=wav
    )
    assert rejects["reason"].str.startswith(reason).all()


def test_minimum_duration_is_an_option_and_documented_in_the_manifest(fake_iemocap, tmp_path, capsys):
    utt_id = "Ses01F_impro01_F000"
    _short_clip(fake_iemocap.wavs[utt_id])
    out = tmp_path / "m.parquet"
    code, _, err = sernas(capsys, *manifest_args(fake_iemocap, out, "--min-duration", "0.05"))
    assert code == 0, err
    frame = read_manifest(out).set_index("utt_id")
    assert len(frame) == len(fake_iemocap.expected) and frame.loc[utt_id, "duration_s"] == pytest.approx(0.1)
    assert manifest_info(out)["min_duration_s"] == 0.05
    for bad in ("-1", "nan", "soon"):
        code, _, err = sernas(capsys, *manifest_args(fake_iemocap, tmp_path / "other.parquet", "--min-duration", bad))
        assert code == 2 and "--min-duration: expected a number of seconds >= 0" in err and repr(bad) in err
    assert frame["duration_s"].drop(utt_id).min() >= 0.25  # the fixture's other clips are fine by default


def test_short_clip_in_an_experiment_names_the_clip_and_the_config_key(fake_iemocap, tmp_path, capsys):
    _short_clip(fake_iemocap.wavs["Ses01F_impro01_M000"])
    config = write_experiment_config(tmp_path / "x.yaml", name="short")
    corpus = [
        "--set",
        "data.dataset=iemocap",
        "--set",
        f"data.root={fake_iemocap.root}",
        "--set",
        "data.synthetic=null",
    ]
    code, _, err = sernas(capsys, "search", "--config", str(config), *corpus)
    assert code == 2 and f"{fake_iemocap.wavs['Ses01F_impro01_M000']}: clip too short: 0.100 s" in err, err
    assert "the experiment did not start" in err and "data.min_duration_s" in err
    assert f"sernas manifest --dataset iemocap --root {fake_iemocap.root} --min-duration 0.25" in err
    assert not (tmp_path / "runs" / "short" / "data" / "manifest.parquet").exists()
    code, _, err = sernas(capsys, "search", "--config", str(config), *corpus, "--set", "data.min_duration_s=-1")
    assert code == 2 and "data.min_duration_s: Input should be greater than or equal to 0" in err, err
    code, _, err = sernas(
        capsys,
        "search",
        "--config",
        str(config),
        "--set",
        "data.min_duration_s=0.1",
        "--set",
        f"data.manifest={tmp_path / 'm.parquet'}",
    )
    assert code == 2 and "data.min_duration_s: applies when root is scanned, but manifest is given" in err, err


# ----------------------------------------------------------------------------- corpus label files
def test_garbage_line_in_emo_evaluation_is_named_with_its_line(fake_iemocap, tmp_path, capsys):
    label_file = fake_iemocap.label_files[1]
    lines = label_file.read_text().splitlines()
    lines.insert(6, "Ses01M_script01_1b_F000 neu ???")  # becomes line 7
    label_file.write_text("\n".join(lines) + "\n")
    reported = f"{label_file}:7: cannot parse line 'Ses01M_script01_1b_F000 neu ???'; expected "
    rejects = assert_refused_then_skipped(
        capsys, fake_iemocap, tmp_path, reported=reported, lost=set(), rejected=label_file, line=7
    )
    assert "[START - END]<TAB>UTT_ID<TAB>LABEL<TAB>[V, A, D]" in rejects["reason"][0]


def test_missing_session_folder_is_named_and_other_sessions_are_kept(fake_iemocap, tmp_path, capsys):
    labels = fake_iemocap.root / "Session2" / "dialog" / "EmoEvaluation"
    shutil.rmtree(labels)
    reported = f"{labels}: missing folder (expected in every SessionN of IEMOCAP)"
    session2 = {utt for utt, expected in fake_iemocap.expected.items() if expected["session"] == 2}
    assert_refused_then_skipped(capsys, fake_iemocap, tmp_path, reported=reported, lost=session2, rejected=labels)


# ------------------------------------------------------------------------------------ the config
@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ({"set": "search.weights.lr=.nan"}, "search.weights.lr: Input should be a finite number"),
        ({"set": "eval.weights.lr=-0.01"}, "eval.weights.lr: Input should be greater than 0"),
        ({"space_lr": "{choice: [0.1, .nan]}"}, "x.yaml: space.weights_lr: "),
        ({"space_lr": "{loguniform: [-0.01, 0.1]}"}, "x.yaml: space.weights_lr: loguniform needs lower > 0"),
    ],
    ids=["nan-override", "negative-override", "nan-in-space", "negative-in-space"],
)
def test_nan_or_negative_learning_rate_is_refused_before_anything_runs(tmp_path, capsys, where, reason):
    config = write_experiment_config(tmp_path / "x.yaml", name="lr", space_lr=where.get("space_lr", "0.05"))
    earlier = Path(write_fold_row(tmp_path / "runs", make_leaderboard_row(experiment="lr")))  # a previous run's row
    before = earlier.read_bytes()
    overrides = ["--set", where["set"]] if "set" in where else []
    code, _, err = sernas(capsys, "search", "--config", str(config), *overrides)
    assert code == 2 and reason in err, err
    assert earlier.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["leaderboard"]  # no Tune state, no data
    assert not (tmp_path / "corpus").exists()


# -------------------------------------------------------------------------- genotypes, checkpoints
GENOTYPE_WITH_UNKNOWN_OP = {
    "normal": [["sep_conv_3x3", 0], ["conv_9x9", 1], ["skip_connect", 0], ["sep_conv_3x3", 2]],
    "normal_concat": [2, 3],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["max_pool_3x3", 0], ["skip_connect", 2]],
    "reduce_concat": [2, 3],
}


@pytest.mark.parametrize("as_file", [True, False], ids=["file", "inline"])
def test_unknown_primitive_in_a_genotype_names_the_op_and_the_source(tmp_path, capsys, as_file):
    text = json.dumps(GENOTYPE_WITH_UNKNOWN_OP)
    genotype_file = tmp_path / "genotype.json"
    genotype_file.write_text(text)
    out = tmp_path / "fold2"
    out.mkdir()
    (out / "result.json").write_text('{"ua": 0.61}\n')  # an earlier run's result
    args = [
        "run-fold",
        "--manifest",
        str(tmp_path / "m.parquet"),
        "--folds",
        str(tmp_path / "f.parquet"),
        "--fold",
        "2",
        "--out",
        str(out),
        "--genotype",
        str(genotype_file) if as_file else text,
    ]
    code, _, err = sernas(capsys, *args)
    assert code == 2, err
    assert (f"--genotype file {genotype_file}: " if as_file else "--genotype: ") in err
    assert "Genotype.normal edge 1 (node 0) has unknown operation 'conv_9x9'; known operations are " in err
    assert "sep_conv_3x3" in err
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]
    assert (out / "result.json").read_text() == '{"ua": 0.61}\n'


@pytest.mark.slow  # makes the small prepared corpus (~5 s) and runs one tiny fold
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint_is_named_and_kept(tiny_prepared, tmp_path, capsys, damage):
    out = tmp_path / "fold2"
    out.mkdir()
    checkpoint = out / "search.pt"
    if damage == "garbage":
        checkpoint.write_bytes(b"\x80\x02this is not a checkpoint")
    else:  # a real search checkpoint, cut short
        import torch

        torch.save({"kind": "search", "epoch": 1, "weights": torch.zeros(1000)}, checkpoint)
        checkpoint.write_bytes(checkpoint.read_bytes()[:1500])
    before = checkpoint.read_bytes()
    code, _, err = sernas(capsys, *run_fold_args(tiny_prepared, out))
    assert code == 2, err
    assert f"checkpoint {checkpoint} is unreadable: not a complete PyTorch checkpoint ({len(before)} bytes" in err
    assert "delete it to start this fold over" in err
    assert checkpoint.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["search.pt"]
    if damage == "truncated":
        return
    checkpoint.unlink()  # what the message advises
    code, _, err = sernas(capsys, *run_fold_args(tiny_prepared, out))
    assert code == 0, err
    assert json.loads((out / "result.json").read_text())["search_epochs_run"] == 1


# --------------------------------------------------------------------------------- the leaderboard
def test_corrupt_parquet_part_is_named_and_skipped_and_every_good_row_answers(tmp_path, capsys):
    storage = tmp_path / "runs"
    good = [(trial, fold) for trial in ("t1", "t2") for fold in (1, 2, 3)]
    for trial, fold in good:
        write_fold_row(storage, make_leaderboard_row(trial_id=trial, fold=fold, test_ua=0.5 + fold / 100))
    garbage = storage / "leaderboard" / "exp" / "t3" / "fold=1-attempt=0.parquet"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"PAR1" + b"\x00" * 200)
    truncated = Path(write_fold_row(storage, make_leaderboard_row(trial_id="t4")))
    truncated.write_bytes(truncated.read_bytes()[:-64])

    code, stdout, err = sernas(
        capsys,
        "leaderboard",
        "--storage",
        str(storage),
        "--format",
        "json",
        "--sql",
        "SELECT trial_id, fold FROM fold_rows ORDER BY trial_id, fold",
    )
    assert code == 0, err
    assert [(row["trial_id"], row["fold"]) for row in json.loads(stdout)] == good
    for damaged in (garbage, truncated):
        assert f"skipped damaged file {damaged}" in err and "not a readable Parquet file" in err
    code, stdout, err = sernas(capsys, "leaderboard", "--storage", str(storage), "--by", "trial", "--format", "json")
    assert code == 0 and sorted(row["trial_id"] for row in json.loads(stdout)["rows"]) == ["t1", "t2"]
    assert garbage.exists() and truncated.exists()  # reported, not deleted: the user decides


def test_corrupt_manifest_parquet_is_named(tmp_path, capsys):
    manifest = tmp_path / "m.parquet"
    manifest.write_bytes(b"PAR1 half of a manifest")
    out = tmp_path / "f.parquet"
    code, _, err = sernas(capsys, "folds", "--manifest", str(manifest), "--scheme", "loso", "--out", str(out))
    assert code == 2 and f"manifest {manifest} is not a readable Parquet file" in err, err
    assert not out.exists()


# ----------------------------------------------------------------------------------- a full disk
class _FullDiskFile:
    def __init__(self, handle, disk: FullDisk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        room = min(len(view), self._disk.free)
        self._handle.write(view[:room])
        self._disk.free -= room
        if room < len(view):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return room

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)


class FullDisk:
    """Stands in for ``open`` in ``trainers.atomic_io``, through which every durable file is written:
    files opened for writing share ``free`` bytes, then fail with ENOSPC, as on a full disk."""

    def __init__(self, free: int) -> None:
        self.free = free

    def open(self, file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        return _FullDiskFile(handle, self) if "w" in mode else handle


@pytest.fixture(params=["failing-writer", "small-tmpfs"])
def disk(request, tmp_path):
    """(storage folder, fill, free): ``fill()`` makes the disk full, ``free()`` makes room again.
    small-tmpfs is a real 1 MiB tmpfs, where mounting is allowed (root); skipped elsewhere."""
    if request.param == "failing-writer":
        patch = pytest.MonkeyPatch()
        yield (
            tmp_path / "runs",
            lambda: patch.setattr(trainers.atomic_io, "open", FullDisk(free=512).open, raising=False),
            patch.undo,
        )
        patch.undo()
        return
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        shutil.which("mount") is None
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a small tmpfs is not allowed here")
    filler = mount / "filler"

    def fill() -> None:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(fd)

    try:
        yield mount / "runs", fill, lambda: filler.unlink()
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_while_writing_a_row_names_the_file_and_keeps_the_others(disk, capsys):
    storage, fill, free = disk
    earlier = [("t1", 1), ("t1", 2), ("t2", 1)]
    for trial, fold in earlier:
        write_fold_row(storage, make_leaderboard_row(trial_id=trial, fold=fold))
    destination = storage / "leaderboard" / "exp" / "t2" / "fold=2-attempt=0.parquet"
    query = [
        "leaderboard",
        "--storage",
        str(storage),
        "--format",
        "json",
        "--sql",
        "SELECT trial_id, fold FROM fold_rows ORDER BY trial_id, fold",
    ]

    fill()
    with pytest.raises(LeaderboardWriteError) as caught:
        write_fold_row(storage, make_leaderboard_row(trial_id="t2", fold=2))
    assert caught.value.errno == errno.ENOSPC
    assert str(destination) in str(caught.value)
    assert "No space left on device" in str(caught.value) and "nothing was written there" in str(caught.value)
    assert not destination.exists()
    assert [p.name for p in storage.rglob(".tmp-*")] == []
    with warnings.catch_warnings():  # the query's footer cache cannot be saved on a full disk either
        warnings.simplefilter("ignore", RuntimeWarning)
        code, stdout, err = sernas(capsys, *query)
    assert code == 0, err
    assert [(row["trial_id"], row["fold"]) for row in json.loads(stdout)] == earlier  # every earlier row answers
    assert [p.name for p in storage.rglob(".tmp-*")] == []

    free()  # once there is room again, the same row is written
    write_fold_row(storage, make_leaderboard_row(trial_id="t2", fold=2))
    code, stdout, _ = sernas(capsys, *query)
    assert code == 0 and [(row["trial_id"], row["fold"]) for row in json.loads(stdout)] == [*earlier, ("t2", 2)]


def test_a_data_root_holding_another_corpus_is_named_and_left_alone(tmp_path, capsys):
    config = write_experiment_config(tmp_path / "exp.yaml", name="other-root")  # wants 12 per speaker
    code, _, _ = sernas(capsys, "synth", "--out", str(tmp_path / "corpus"), "--speakers", "6", "--per-speaker", "4")
    assert code == 0
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "corpus").rglob("*"))
    code, _, err = sernas(capsys, "search", "--config", str(config))
    assert code == 2 and f"data.root {tmp_path / 'corpus'}" in err and "holds a different synthetic corpus" in err
    mine = tmp_path / "mine"
    (mine / "notes.txt").parent.mkdir()
    (mine / "notes.txt").write_text("my files")
    code, _, err = sernas(capsys, "search", "--config", str(config), "--set", f"data.root={mine}")
    assert code == 2 and f"data.root {mine}" in err and "not a synthetic corpus" in err
    code, _, err = sernas(capsys, "synth", "--out", str(mine), "--per-speaker", "3")
    assert code == 2 and f"synth --out {mine}" in err and "per_speaker must be an integer >= 4" in err
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "corpus").rglob("*")) == before
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------- cross-corpus
def _cross_corpus_config(path: Path, *, first: str, second: str, classes: str = "[neu, hap, sad, ang]") -> Path:
    path.write_text(
        f"name: cross\ndevice: cpu\ndata:\n  preset: logmel-32\n  cache_dir: {path.parent / 'cache'}\n"
        f"  classes: {classes}\n  sources:\n    - {first}\n    - {second}\n"
        f"folds: {{scheme: cross-corpus, test_corpora: [b], valid_speakers: 1}}\n"
        f"tune: {{storage: {path.parent / 'runs'}, pruner: {{kind: none}}}}\n"
    )
    return path


def test_bad_cross_corpus_input_is_named_and_nothing_is_written(fake_iemocap, fake_msp_improv, tmp_path, capsys):
    iemocap, msp = fake_iemocap.root, fake_msp_improv.root
    runs = tmp_path / "runs"
    # A class mapping to a class the experiment does not have: the config key, before anything runs.
    config = _cross_corpus_config(
        tmp_path / "x.yaml",
        first=f"{{name: a, dataset: iemocap, root: {iemocap}, merges: {{exc: happy}}}}",
        second=f"{{name: b, dataset: msp-improv, root: {msp}}}",
    )
    code, _, err = sernas(capsys, "search", "--config", str(config))
    assert code == 2 and "data.sources.0.merges.exc: merge target 'happy' is not among classes" in err, err
    # One corpus given twice under two names: its ids differ once prefixed, but its audio files do not.
    config = _cross_corpus_config(
        tmp_path / "x.yaml",
        first=f"{{name: a, dataset: iemocap, root: {iemocap}}}",
        second=f"{{name: b, dataset: iemocap, root: {iemocap}}}",
    )
    code, _, err = sernas(capsys, "search", "--config", str(config))
    assert code == 2 and "is in corpus a and in corpus b: one recording would be trained on and tested on" in err
    # A class no training corpus has (MSP-IMPROV's oth, tested on; IEMOCAP trains).
    config = _cross_corpus_config(
        tmp_path / "x.yaml",
        first=f"{{name: a, dataset: iemocap, root: {iemocap}}}",
        second=f"{{name: b, dataset: msp-improv, root: {msp}}}",
        classes="[neu, oth]",
    )
    code, _, err = sernas(capsys, "search", "--config", str(config))
    assert code == 2 and "fold 1 (a -> b): class(es) oth have no utterance in the training corpora a" in err, err
    # A corpus with a bad file: named, with the source's own keys as the way out.
    _short_clip(fake_msp_improv.wavs[next(iter(fake_msp_improv.wavs))])
    config = _cross_corpus_config(
        tmp_path / "x.yaml",
        first=f"{{name: a, dataset: iemocap, root: {iemocap}}}",
        second=f"{{name: b, dataset: msp-improv, root: {msp}}}",
    )
    code, _, err = sernas(capsys, "search", "--config", str(config))
    assert code == 2 and "clip too short" in err and "data.sources.1.manifest instead of data.sources.1.root" in err
    assert not (runs / "cross" / "data").exists()
