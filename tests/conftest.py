"""Builders of tiny corpora in the real IEMOCAP and MSP-IMPROV layouts (no downloads).

Each builder writes real 16 kHz WAV files and label files exactly as the releases lay them
out, including the litter the readers must ignore (AppleDouble ``._*`` files, the
``Categorical/``, ``Attribute/``, ``Self-evaluation/`` subfolders, per-rater lines), and
returns what a correct reader must find.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from trainers.audio import write_wav

IEMOCAP_LABEL_CYCLE = ("neu", "hap", "sad", "ang", "exc", "fru", "xxx", "neu", "ang", "sad")
MSP_LETTERS = ("A", "H", "S", "N", "O", "X", "N", "A")


@dataclass
class FakeCorpus:
    root: Path
    expected: dict[str, dict] = field(default_factory=dict)  # utt_id -> expected manifest values
    wavs: dict[str, Path] = field(default_factory=dict)
    label_files: list[Path] = field(default_factory=list)


def _tone(seconds: float, seed: int, sample_rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * (120 + 40 * rng.random()) * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def build_fake_iemocap(root: Path, *, sessions=(1, 2), per_dialog: int = 4) -> FakeCorpus:
    corpus = FakeCorpus(root=root)
    counter = 0
    for session in sessions:
        session_dir = root / f"Session{session}"
        labels_dir = session_dir / "dialog" / "EmoEvaluation"
        for sub in ("Categorical", "Attribute", "Self-evaluation"):
            (labels_dir / sub).mkdir(parents=True, exist_ok=True)
        dialogs = [(f"Ses{session:02d}F_impro01", True), (f"Ses{session:02d}M_script01_1b", False)]
        for dialog, improvised in dialogs:
            wav_dir = session_dir / "sentences" / "wav" / dialog
            wav_dir.mkdir(parents=True, exist_ok=True)
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            start = 1.0
            per_gender = {"F": 0, "M": 0}
            for index in range(per_dialog):
                gender = "FM"[index % 2]
                utt_id = f"{dialog}_{gender}{per_gender[gender]:03d}"
                per_gender[gender] += 1
                label = IEMOCAP_LABEL_CYCLE[counter % len(IEMOCAP_LABEL_CYCLE)]
                seconds = 0.5 + 0.25 * (counter % 3)
                counter += 1
                write_wav(wav_dir / f"{utt_id}.wav", _tone(seconds, counter), 16000)
                lines += [
                    f"[{start:.4f} - {start + seconds:.4f}]\t{utt_id}\t{label}\t[2.5000, 3.0000, 3.5000]",
                    "C-E2:\tNeutral state;\t()",
                    "C-F1:\tFrustration; Anger;\t(annoyed)",
                    "A-E3:\tval 3; act 2; dom  2;\t()",
                    "",
                ]
                start += seconds + 0.5
                corpus.expected[utt_id] = {
                    "label": label,
                    "session": session,
                    "speaker": f"Ses{session:02d}{gender}",
                    "gender": gender,
                    "improvised": improvised,
                    "duration_s": seconds,
                    "dialog": dialog,
                }
                corpus.wavs[utt_id] = wav_dir / f"{utt_id}.wav"
            label_file = labels_dir / f"{dialog}.txt"
            label_file.write_text("\n".join(lines) + "\n")
            corpus.label_files.append(label_file)
            # Decoys the reader must not read: other annotation folders and macOS litter.
            (labels_dir / "Categorical" / f"{dialog}_e2_cat.txt").write_text(f"{dialog}_F000 :Neutral state; ()\n")
            (labels_dir / "Attribute" / f"{dialog}_e3_atr.txt").write_text(f"{dialog}_F000 :act 2; val 3; dom  2; ()\n")
            (labels_dir / "Self-evaluation" / f"{dialog}.anvil").write_text("<xml/>\n")
            (labels_dir / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07Mac OS X        ")
            (wav_dir / f"._{dialog}_F000.wav").write_bytes(b"\x00\x05\x16\x07Mac OS X        ")
    return corpus


def build_fake_msp_improv(root: Path, *, sessions=(1, 2), label_file_name: str = "Evaluation.txt") -> FakeCorpus:
    corpus = FakeCorpus(root=root)
    lines = []
    counter = 0
    for session in sessions:
        for gender in "FM":
            speaker = f"{gender}{session:02d}"
            for scenario, part in (("S01A", "R"), ("S02H", "T"), ("S03S", "S"), ("S04N", "P")):
                utt_id = f"MSP-IMPROV-{scenario}-{speaker}-{part}-FM{session:02d}"
                folder = root / f"session{session}" / scenario / part
                folder.mkdir(parents=True, exist_ok=True)
                seconds = 0.5 + 0.25 * (counter % 2)
                write_wav(folder / f"{utt_id}.wav", _tone(seconds, 100 + counter), 16000)
                letter = MSP_LETTERS[counter % len(MSP_LETTERS)]
                arousal = "NaN" if counter == 3 else "4.0000"
                lines += [
                    f"UTD-IMPROV-{scenario}-{speaker}-{part}-FM{session:02d}.avi; {letter}; A:{arousal}; V:2.2000; "
                    "D:3.4000 ; N:5.0000;",
                    f"S01M-D; {letter}; A:4; V:2; D:3; N:5;",
                    "S01F-D; N; A:3; V:3; D:3; N:4;",
                    "",
                ]
                counter += 1
                corpus.expected[utt_id] = {
                    "label": {"A": "ang", "H": "hap", "S": "sad", "N": "neu", "O": "oth", "X": "xxx"}[letter],
                    "session": session,
                    "speaker": speaker,
                    "gender": gender,
                    "improvised": part != "R",
                    "duration_s": seconds,
                    "part": part,
                    "target": scenario[-1],
                    "scenario": scenario,
                }
                corpus.wavs[utt_id] = folder / f"{utt_id}.wav"
        (root / f"session{session}" / "S01A" / "R" / "._litter.wav").write_bytes(b"\x00\x05\x16\x07")
    label_file = root / label_file_name
    label_file.write_text("\n".join(lines) + "\n")
    corpus.label_files.append(label_file)
    return corpus


@pytest.fixture
def fake_iemocap(tmp_path: Path) -> FakeCorpus:
    return build_fake_iemocap(tmp_path / "IEMOCAP_full_release")


@pytest.fixture
def fake_msp_improv(tmp_path: Path) -> FakeCorpus:
    return build_fake_msp_improv(tmp_path / "MSP-IMPROV")


def make_fold_data(
    *,
    n_classes: int = 3,
    shape=(1, 16, 16),
    n_train: int = 48,
    n_valid: int = 24,
    n_test: int = 24,
    seed: int = 0,
    signal: float = 1.5,
    fold: int = 1,
    normalization: str | None = "speaker",
):
    """A FoldData of random features in which class k adds ``signal`` to frequency band k, so a
    model can learn it; each split is drawn independently (like different speakers). The first
    half of train plays the weight speakers of the search, the second half the alpha speakers.

    Each split's clips are all of its speakers' audio, so they give the speaker statistics; the
    data come normalised with ``normalization`` (the settings' default, ``speaker``: run_search
    and run_evaluation refuse raw features); None: raw."""
    from dataclasses import replace

    import torch

    from trainers.fold_data import FoldData, Split
    from trainers.normalization import Normalizer, pooled_statistics

    generator = torch.Generator().manual_seed(seed)

    def split(n: int, name: str) -> Split:
        y = torch.arange(n) % n_classes
        x = torch.randn(n, *shape, generator=generator)
        band = shape[1] // n_classes
        for k in range(n_classes):
            x[y == k, :, k * band : (k + 1) * band, :] += signal
        speakers = tuple(f"{name}-speaker{i % 2}" for i in range(n))  # two speakers per split
        return Split(x=x, y=y, utt_ids=tuple(f"{name}{i}" for i in range(n)), speakers=speakers)

    raw = FoldData(
        fold=fold,
        classes=tuple(f"c{k}" for k in range(n_classes)),
        train=split(n_train, "train"),
        valid=split(n_valid, "valid"),
        test=split(n_test, "test"),
        train_roles=tuple("weights" if i < n_train // 2 else "alphas" for i in range(n_train)),
    )
    stats = {}
    for part in (raw.train, raw.valid, raw.test):
        for speaker in sorted(set(part.speakers)):
            mine = torch.tensor([s == speaker for s in part.speakers])
            stats[speaker] = pooled_statistics(part.x[mine], part.valid_lengths[mine])
    raw = replace(raw, speaker_stats=stats)
    return raw if normalization is None else raw.normalized(Normalizer(normalization))[0]


def make_leaderboard_row(**overrides) -> dict:
    """A valid completed leaderboard fold row (every column of the schema) as a mapping.

    ``overrides`` replace columns, or add unknown ones, so that tests can also write bad rows.
    """
    from orchestrator.leaderboard import FoldRow  # here, so that tests of the lower layers never import it

    row = FoldRow.finished(
        experiment="exp",
        trial_id="t1",
        fold=1,
        n_folds=3,
        attempt=0,
        node_id="node-a",
        hostname="host-a",
        seed=0,
        params_json={"layers": 4, "seed": 0},
        layers=4,
        nodes=4,
        init_channels=8,
        lstm_hidden=64,
        darts_order="first",
        pc_k=1,
        weights_lr=0.025,
        search_epochs=10,
        eval_epochs=20,
        dataset="synthetic",
        feature_preset="paper-mfcc",
        fold_scheme="loso",
        classes=["ang", "hap", "neu", "sad"],
        genotype=None,
        genotype_hash="baseline",
        test_ua=0.5,
        test_wa=0.55,
        test_macro_f1=0.45,
        confusion=[[5, 1, 0, 0], [0, 4, 1, 1], [1, 0, 6, 0], [0, 0, 1, 5]],
        test_utterances=25,
        test_absent_classes=[],
        valid_ua=0.52,
        valid_absent_classes=[],
        best_epoch=7,
        params=12345,
        search_seconds=10.0,
        eval_seconds=5.0,
        search_epochs_run=10,
        device="cpu",
    )
    return {**row.to_dict(), **overrides}


def write_experiment_config(
    path: Path,
    *,
    name: str,
    pruner: str = "{kind: none}",
    space_lr: str = "{loguniform: [0.01, 0.1]}",
    samples: int = 2,
    searcher: str = "optuna-tpe",
    concurrent: int = 2,
    eval_epochs: int = 2,
    per_speaker: int = 12,
    folds: str = "{scheme: loso, use: [1, 2]}",
    extra: str = "",
    search_extra: str = "",
) -> Path:
    """A tiny experiment YAML (6-speaker synthetic corpus, logmel-32, LOSO folds 1-2 of 3, 3-cell
    supernet) for end-to-end tests; its corpus, cache and storage sit beside ``path``. Six
    speakers, because every fold needs a speaker in each role: 2 test, 2 validation, 1 weight and
    1 alpha speaker. ``search_extra``: more base search settings, as ``", key: value"``."""
    import textwrap

    path.write_text(
        textwrap.dedent(f"""\
        name: {name}
        device: cpu
        data:
          dataset: synthetic
          root: {path.parent / "corpus"}
          synthetic: {{speakers: 6, per_speaker: {per_speaker}, seed: 0}}
          preset: logmel-32
          cache_dir: {path.parent / "cache"}
          classes: [neu, hap, sad, ang]
          merges: {{exc: hap}}
        folds: {folds}
        search: {{epochs: 1, batch_size: 16, weights: {{lr_min: 0.0}}{search_extra}}}
        eval: {{epochs: {eval_epochs}, batch_size: 16, weights: {{lr_min: 0.0}}}}
        space:
          layers: 3
          nodes: 2
          init_channels: 4
          lstm_hidden: 8
          weights_lr: {space_lr}
        tune:
          num_samples: {samples}
          max_concurrent: {concurrent}
          searcher: {searcher}
          pruner: {pruner}
          resources: {{cpu: 1}}
          storage: {path.parent / "runs"}
        {extra}""")
    )
    return path


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: on tiny tensors extra threads only spin (a 1-epoch search
    of a 3-cell supernet took 30x longer with 2 threads on a busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray in this process for end-to-end tests (2 CPUs, no dashboard), shut down afterwards;
    ``sernas search`` run in-process (``orchestrator.cli.main``) uses it instead of starting one."""
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this test process; local_ray starts its own.")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> dict[str, Path]:
    """A 6-speaker synthetic corpus with logmel-32 features and LOSO folds (2 test, 2 validation,
    1 weight and 1 alpha speaker each), made through the CLI (paths under keys corpus, m.parquet,
    features, f.parquet); shared by the session: read only."""
    from orchestrator.cli import main

    root = tmp_path_factory.mktemp("tiny")
    paths = {name: root / name for name in ("corpus", "m.parquet", "features", "f.parquet")}
    assert main(["synth", "--out", str(paths["corpus"]), "--speakers", "6", "--per-speaker", "12"]) == 0
    assert (
        main(["manifest", "--dataset", "iemocap", "--root", str(paths["corpus"]), "--out", str(paths["m.parquet"])])
        == 0
    )
    assert (
        main(
            [
                "features",
                "--manifest",
                str(paths["m.parquet"]),
                "--preset",
                "logmel-32",
                "--cache",
                str(paths["features"]),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "folds",
                "--manifest",
                str(paths["m.parquet"]),
                "--scheme",
                "loso",
                "--merge",
                "exc=hap",
                "--classes",
                "neu,hap,sad,ang",
                "--out",
                str(paths["f.parquet"]),
            ]
        )
        == 0
    )
    return paths


def run_fold_args(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """``sernas run-fold`` arguments for fold 2 of ``tiny_prepared`` with a tiny network, into ``out``."""
    return [
        "run-fold",
        "--manifest",
        str(paths["m.parquet"]),
        "--folds",
        str(paths["f.parquet"]),
        "--fold",
        "2",
        "--preset",
        "logmel-32",
        "--cache",
        str(paths["features"]),
        "--search-epochs",
        "1",
        "--eval-epochs",
        "2",
        "--layers",
        "3",
        "--nodes",
        "2",
        "--init-channels",
        "4",
        "--lstm-hidden",
        "8",
        "--out",
        str(out),
        *extra,
    ]


@dataclass(frozen=True)
class S3Server:
    """A moto S3-compatible server on 127.0.0.1 that checks credentials, with one bucket."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    def env(self, *, access_key: str | None = None, secret_key: str | None = None) -> dict[str, str]:
        """The standard AWS variables users set for an S3-compatible store (pyarrow and Ray read them)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": access_key or self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key or self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def _free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's standalone server (the dev extra's ``moto[server]``) started on a free 127.0.0.1 port,
    with an IAM user allowed everything and a bucket, then switched to checking every request's
    credentials; stopped at the end of the session."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    boto3 = pytest.importorskip("boto3", reason="moto[server] (dev extra) runs the S3 tests")
    port = _free_loopback_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "inf"},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "moto server did not answer in 60 s: " + log.read_text()
                time.sleep(0.2)
        admin = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        admin_keys = {"aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        iam = boto3.client("iam", **admin, **admin_keys)
        iam.create_user(UserName="sernas")
        iam.put_user_policy(
            UserName="sernas",
            PolicyName="all",
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
        )
        key = iam.create_access_key(UserName="sernas")["AccessKey"]
        boto3.client("s3", **admin, **admin_keys).create_bucket(Bucket="sernas-test")
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=10):  # from now on every request must be signed by a known key
            pass
        yield S3Server(
            endpoint=endpoint, access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"], bucket="sernas-test"
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def free_cluster_base_port() -> int:
    """A base port whose whole range for a head + 1 worker local cluster is free right now."""
    import random

    from cluster.local import planned_ports, port_is_free

    for _ in range(50):
        base = random.randrange(30000, 44000, 10)
        if all(port_is_free(p) for p in planned_ports(base, 1, base + 1)):
            return base
    raise RuntimeError("no free port range for the test cluster")


def write_pruning_config(path: Path, *, name: str) -> Path:
    """An experiment of one outer fold (LOSO fold 1) whose grid runs a good learning rate (0.1)
    first and a frozen one (1e-7) second, one at a time, under a median pruner that needs one
    complete trial: the frozen trial is pruned once the good one has finished. The fold's grid
    sampler shuffles the grid with a seed drawn from ``tune.seed``: the first seed that puts the
    good rate first is the one written."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from orchestrator.nested import fold_seed, make_sampler

    distributions = {"weights_lr": CategoricalDistribution([0.1, 0.0000001])}
    for seed in range(100):
        sampler = make_sampler("grid", seed=fold_seed(seed, 1), distributions=distributions)
        study = optuna.create_study(sampler=sampler)
        if study.ask(fixed_distributions=distributions).params["weights_lr"] == 0.1:
            break
    return write_experiment_config(
        path,
        name=name,
        samples=1,
        searcher="grid",
        concurrent=1,
        eval_epochs=6,
        per_speaker=32,
        folds="{scheme: loso, use: [1]}",
        space_lr="{grid: [0.1, 0.0000001]}",
        pruner="{kind: median, n_startup_trials: 1, n_warmup_steps: 0}",
        extra=f"  seed: {seed}",
    )


def kill_ray_processes_of(temp_dir: str) -> None:
    """Stop every process of the Ray session a test started (found by its temp dir)."""
    import os
    import signal

    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def kill_driver_when(driver, ready, *, ray_tmp: str, timeout: float, poll: float, what: str):
    """Wait until ``ready()`` while ``driver`` (a Popen) runs, then SIGKILL it and the Ray session
    it started in ``ray_tmp``; return when that was done (UTC, as the leaderboard's ``written_at``)."""
    import signal
    import time

    import pandas as pd

    deadline = time.monotonic() + timeout
    while not ready():
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        time.sleep(poll)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    kill_ray_processes_of(ray_tmp)  # a killed driver may leave its local cluster behind
    return pd.Timestamp.now(tz="UTC")
