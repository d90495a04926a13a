"""The trial: its leaderboard rows (one FoldRow per unit, finished or failed), its units, and the
attempt / resume / row-before-checkpoint logic of ``run_trial_units``.

The loop runs in this process with real tiny folds, real torch training, the real leaderboard
writer and real checkpoint folders; only Ray Tune's session is replaced by ``RecordingSession``,
which does what Tune's does with a report: persists its checkpoint folder (a copy), and raises
``SystemExit`` out of a report when Tune stops the trial."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest

from orchestrator.leaderboard import write_fold_row
from orchestrator.leaderboard.schema import RESULT_COLUMNS
from orchestrator.trial import _fold_row
from search_space.genotype import Genotype
from trainers.run_fold import FoldResult
from trainers.settings import EvalSettings, ModelShape, SearchSettings, WeightOptimizer

GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1)],
    normal_concat=[2],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
    reduce_concat=[2],
)
INPUTS = SimpleNamespace(
    experiment=SimpleNamespace(
        name="exp",
        data=SimpleNamespace(dataset="synthetic", preset="logmel-32"),
        folds=SimpleNamespace(scheme="loso", inner=3),
    ),
    # fold 2's test speaker also trains (its fold table says so): its rows carry the flag
    folds=pd.DataFrame(
        {"fold": [1, 1, 2, 3], "speaker_check": ["independent", "independent", "overlap", "independent"]}
    ),
    classes=("ang", "hap"),
)
SHAPE = ModelShape(layers=3, nodes=2, init_channels=8, lstm_hidden=16)
SEARCH = SearchSettings(shape=SHAPE, order="first", pc_k=1, weights=WeightOptimizer(lr=0.025), epochs=3)
EVALUATION = EvalSettings(shape=SHAPE, seed=7, epochs=2, widen=2.0, deepen=1)


def _result(architecture: str, genotype_hash: str | None) -> FoldResult:
    return FoldResult(
        fold=2,
        classes=["ang", "hap"],
        architecture=architecture,
        genotype_hash=genotype_hash,
        test_ua=0.6,
        test_wa=0.7,
        test_macro_f1=0.5,
        confusion=[[3, 1], [1, 3]],
        test_utterances=8,
        test_absent_classes=[],
        best_epoch=1,
        valid_ua=0.55,
        valid_absent_classes=["hap"],
        params=1000,
        search_seconds=1.5,
        eval_seconds=2.5,
        search_epochs_run=3,
        search_stopped_early=None,
        alpha_entropy=1.25,
        device="cpu",
        search_settings=None,
        eval_settings={},
    )


def _row(result: FoldResult | None, error: str | None):
    return _fold_row(
        INPUTS,
        trial_id="t1",
        attempt=1,
        params={"seed": 7, "layers": 3},
        search=SEARCH,
        evaluation=EVALUATION,
        fold=2,
        inner_fold=2,
        result=result,
        error=error,
        node_id="local",
    )


@pytest.mark.parametrize(
    ("architecture", "genotype_hash", "stored_genotype", "stored_hash"),
    [
        (GENOTYPE.to_json(), GENOTYPE.hash, GENOTYPE.to_json(), GENOTYPE.hash),
        ("baseline", None, None, "baseline"),
    ],
)
def test_a_finished_fold(tmp_path: Path, architecture, genotype_hash, stored_genotype, stored_hash) -> None:
    row = _row(_result(architecture, genotype_hash), None)
    path = write_fold_row(tmp_path, row)
    assert path.endswith("t1/fold=2-inner=2-attempt=1.parquet")
    stored = pq.read_table(path).to_pylist()[0]
    assert (stored["fold"], stored["outer_fold"], stored["inner_fold"], stored["n_inner_folds"]) == (2, 2, 2, 3)
    # The row describes the network that was evaluated (widened and deepened) and the settings that
    # change results, not only the configured shape.
    assert (stored["layers"], stored["init_channels"]) == (3, 8)
    assert (stored["eval_layers"], stored["eval_init_channels"], stored["widen"], stored["deepen"]) == (4, 16, 2.0, 1)
    assert (stored["normalization"], stored["imbalance"], stored["arch_data"]) == (
        "speaker",
        "weighted-loss",
        "train-speakers",
    )
    assert json.loads(stored["primitives"]) == list(SEARCH.primitives)
    assert stored["status"] == "completed" and stored["error"] is None
    assert stored["genotype"] == stored_genotype and stored["genotype_hash"] == stored_hash
    assert stored["n_folds"] == 3 and stored["attempt"] == 1 and stored["seed"] == 7 and stored["node_id"] == "local"
    assert json.loads(stored["confusion"]) == [[3, 1], [1, 3]] and stored["classes"] == '["ang","hap"]'
    assert stored["params_json"] == '{"layers":3,"seed":7}' and stored["weights_lr"] == 0.025
    assert stored["search_stop_reason"] == "epochs" and stored["alpha_entropy"] == 1.25
    assert (stored["test_ua"], stored["test_wa"], stored["test_macro_f1"], stored["valid_ua"]) == (0.6, 0.7, 0.5, 0.55)
    assert (stored["test_absent_classes"], stored["valid_absent_classes"]) == ("[]", '["hap"]')  # names, flagged
    assert (stored["dataset"], stored["fold_scheme"], stored["speaker_check"]) == ("synthetic", "loso", "overlap")


def test_the_collapse_guard_verdict_and_no_search_reach_the_row(tmp_path: Path) -> None:
    from dataclasses import replace

    collapsed = replace(_result("baseline", None), search_stopped_early="collapsed after epoch 2: normal: skip")
    stored = pq.read_table(write_fold_row(tmp_path, _row(collapsed, None))).to_pylist()[0]
    assert stored["search_stop_reason"] == "collapsed after epoch 2: normal: skip"
    unsearched = replace(_result("baseline", None), search_epochs_run=0, alpha_entropy=None)
    stored = pq.read_table(write_fold_row(tmp_path / "b", _row(unsearched, None))).to_pylist()[0]
    assert stored["search_stop_reason"] is None and stored["alpha_entropy"] is None


def test_a_failed_fold(tmp_path: Path) -> None:
    row = _row(None, "RuntimeError: boom")
    stored = pq.read_table(write_fold_row(tmp_path, row)).to_pylist()[0]
    assert stored["status"] == "failed" and stored["error"] == "RuntimeError: boom"
    assert all(stored[name] is None for name in RESULT_COLUMNS)
    assert stored["layers"] == 3 and stored["fold_scheme"] == "loso" and stored["speaker_check"] == "overlap"


def test_a_search_trial_runs_its_outer_folds_inner_folds_and_a_cross_eval_trial_every_fold() -> None:
    from orchestrator.trial import Unit, trial_units, unit_table

    speakers = [f"s{i}{g}" for i in range(1, 6) for g in "FM"]
    folds = pd.DataFrame(
        {
            "utt_id": [f"{s}-{k}" for s in speakers for k in range(2)],
            "fold": 1,
            "split": [
                "test" if s.startswith("s1") else "valid" if s.startswith("s2") else "train"
                for s in speakers
                for _ in range(2)
            ],
            "label": ["neu", "ang"] * len(speakers),
            "speaker": [s for s in speakers for _ in range(2)],
            "session": [int(s[1]) for s in speakers for _ in range(2)],
            "search_role": [None if s[:2] in ("s1", "s2") else "weights" for s in speakers for _ in range(2)],
        }
    )
    manifest = folds[["utt_id", "speaker"]].assign(gender=folds["speaker"].str[-1])
    inputs = SimpleNamespace(
        experiment=SimpleNamespace(folds=SimpleNamespace(inner=3, arch_share=0.5, seed=0)),
        folds=folds,
        manifest=manifest,
    )
    assert trial_units(inputs, outer_fold=1) == [Unit(1, 1), Unit(1, 2), Unit(1, 3)]
    assert trial_units(inputs, outer_fold=None) == [Unit(1)]
    assert unit_table(inputs, Unit(1)) is not None and unit_table(inputs, Unit(1)).equals(folds)
    tables = [unit_table(inputs, unit) for unit in trial_units(inputs, outer_fold=1)]
    valid = [set(table.loc[table["split"] == "valid", "speaker"]) for table in tables]
    assert set().union(*valid) == {
        s for s in speakers if not s.startswith("s1")
    }  # every non-test speaker validates once
    assert all(set(table.loc[table["split"] == "test", "speaker"]) == {"s1F", "s1M"} for table in tables)
    inputs.experiment.folds.inner = None
    assert trial_units(inputs, outer_fold=1) == [Unit(1)]


# --- attempts, resume and the order of row and checkpoint (run_trial_units) -------------------------


def test_a_first_run_is_attempt_1_and_every_restart_from_a_checkpoint_counts_one_more(tmp_path: Path) -> None:
    from orchestrator.trial import STATE_NAME, begin_attempt

    first = begin_attempt(tmp_path)
    assert (first.attempt, first.done) == (1, {})
    # Written at once: the run's first checkpoint already carries its attempt.
    assert json.loads((tmp_path / STATE_NAME).read_text()) == {"attempt": 1, "done": {}}
    done = {"1.1": {"valid_ua": 0.5, "ua": 0.4, "genotype_hash": "h", "params": 10}}
    (tmp_path / STATE_NAME).write_text(json.dumps({"attempt": 1, "done": done}))  # a checkpoint of attempt 1
    second = begin_attempt(tmp_path)
    assert (second.attempt, second.done) == (2, done)
    assert json.loads((tmp_path / STATE_NAME).read_text()) == {"attempt": 2, "done": done}
    assert begin_attempt(tmp_path).attempt == 3
    assert second.mean("valid_ua") == 0.5 and math.isnan(first.mean("valid_ua"))  # nothing done: no mean


def test_a_restarted_trial_runs_the_units_not_done_at_their_own_positions_and_prune_steps() -> None:
    from orchestrator.trial import Unit, is_final_step, prune_step, units_to_run

    units = [Unit(2, 1), Unit(2, 2), Unit(2, 3)]
    assert units_to_run(units, done={}) == [(1, Unit(2, 1)), (2, Unit(2, 2)), (3, Unit(2, 3))]
    assert units_to_run(units, done={"2.1", "2.3"}) == [(2, Unit(2, 2))]
    assert units_to_run([Unit(1), Unit(2)], done={"1"}) == [(2, Unit(2))]  # cross-eval keys: the outer fold
    assert units_to_run(units, done={"2.1", "2.2", "2.3"}) == []
    # Units of 4 epochs: steps 1..12 in order, whichever run reports them; only the very last is final.
    steps = [(p, e, prune_step(p, e, unit_span=4)) for p in (1, 2, 3) for e in (1, 2, 3, 4)]
    assert [step for _, _, step in steps] == list(range(1, 13))
    assert [(p, e) for p, e, _ in steps if is_final_step(p, e, unit_span=4, n_units=3)] == [(3, 4)]


def test_the_plan_of_a_search_trial_and_of_a_cross_eval_trial(trial_inputs) -> None:
    from orchestrator.candidates import CANDIDATE_KEY, SEED_KEY, Candidate
    from orchestrator.study import OUTER_FOLD_KEY
    from orchestrator.trial import Unit, plan_trial

    search = plan_trial({OUTER_FOLD_KEY: 2, "weights_lr": 0.05}, inputs=trial_inputs)
    assert search.units == (Unit(2, 1), Unit(2, 2)) and search.candidate is None
    assert search.row_params == {"weights_lr": 0.05} and search.search.weights.lr == 0.05
    assert search.unit_span == search.search.epochs + search.evaluation.epochs == 1 + 1
    baseline = Candidate(architecture="baseline", genotype_hash="baseline")
    cross = plan_trial({CANDIDATE_KEY: baseline.to_json(), SEED_KEY: 3}, inputs=trial_inputs)
    assert cross.units == (Unit(1), Unit(2)) and cross.candidate == baseline and cross.row_params == {}
    assert cross.unit_span == cross.evaluation.epochs == 1 and cross.evaluation.seed == 3  # no search epochs
    with pytest.raises(ValueError, match=f"needs its outer fold \\({OUTER_FOLD_KEY}\\)"):
        plan_trial({"weights_lr": 0.05}, inputs=trial_inputs)


class RecordingSession:
    """Ray Tune's session as ``run_trial_units`` sees it, in this process.

    ``restore`` copies ``restore_from`` (a checkpoint folder) into the work folder. ``report``
    keeps the result, the leaderboard rows on disk at that moment and, when a checkpoint folder
    comes with it, a copy of that folder (Tune persists it during the report); where ``stop_at``
    holds for the result, it then raises ``SystemExit`` (what Ray's session does in a trial that
    Tune stops, e.g. pruned)."""

    def __init__(self, tmp: Path, *, storage: Path, restore_from: Path | None = None, stop_at=None) -> None:
        self.tmp, self.storage, self.restore_from, self.stop_at = tmp, storage, restore_from, stop_at
        self.results: list[dict] = []
        self.rows_at: list[list[tuple[str, int, str]]] = []  # per result: the rows written before it
        self.checkpoints: list[Path | None] = []  # per result: its persisted checkpoint

    def restore(self, work: Path) -> None:
        if self.restore_from is not None:
            shutil.copytree(self.restore_from, work, dirs_exist_ok=True)

    def report(self, metrics: dict, *, checkpoint: Path | None = None) -> None:
        persisted = None
        if checkpoint is not None:
            persisted = self.tmp / f"checkpoint_{len(self.results):03d}"
            shutil.copytree(checkpoint, persisted)
        self.results.append(dict(metrics))
        self.rows_at.append(rows_on_disk(self.storage))
        self.checkpoints.append(persisted)
        if self.stop_at is not None and self.stop_at(metrics):
            raise SystemExit(0)

    def last_checkpoint(self) -> Path:
        return [c for c in self.checkpoints if c is not None][-1]


def rows_on_disk(storage: Path) -> list[tuple[str, int, str]]:
    """(unit key, attempt, status) of every fold row part file under ``storage``, sorted."""
    rows = []
    for path in sorted((storage / "leaderboard").rglob("fold=*.parquet")):
        row = pq.read_table(path).to_pylist()[0]
        key = str(row["fold"]) if row["inner_fold"] is None else f"{row['fold']}.{row['inner_fold']}"
        rows.append((key, row["attempt"], row["status"]))
    return sorted(rows)


def state_of(checkpoint: Path) -> dict:
    from orchestrator.trial import STATE_NAME

    return json.loads((checkpoint / STATE_NAME).read_text())


@pytest.fixture(scope="module")
def trial_inputs(tmp_path_factory):
    """TrialInputs of a tiny experiment (6-speaker synthetic corpus, logmel-32, LOSO outer folds 1
    and 2, two inner folds each, 1 search epoch and 1 evaluation epoch of a 3-cell network)."""
    from conftest import write_experiment_config
    from orchestrator.config import load_config
    from orchestrator.experiment import prepare_data
    from orchestrator.trial import TrialInputs

    root = tmp_path_factory.mktemp("trial")
    path = write_experiment_config(
        root / "exp.yaml", name="units", folds="{scheme: loso, use: [1, 2], inner: 2}", eval_epochs=1, per_speaker=8
    )
    config = load_config(path)
    prepared = prepare_data(config, progress=False)
    return TrialInputs(
        experiment=config,
        manifest=prepared.manifest,
        folds=prepared.folds,
        classes=prepared.classes,
        storage=str(root / "unused"),
    )


def run_units(inputs, tmp: Path, *, storage: Path, restore_from: Path | None = None, stop_at=None):
    """``run_trial_units`` of a search trial on outer fold 1 (inner folds 1.1 and 1.2) as trial
    ``t1``: returns the session and what the run raised (None when it finished)."""
    from dataclasses import replace

    import torch

    from orchestrator.study import OUTER_FOLD_KEY
    from orchestrator.trial import plan_trial, run_trial_units

    tmp.mkdir(parents=True)
    inputs = replace(inputs, storage=str(storage))
    session = RecordingSession(tmp, storage=storage, restore_from=restore_from, stop_at=stop_at)
    work = tmp / "work"
    work.mkdir()
    plan = plan_trial({OUTER_FOLD_KEY: 1, "weights_lr": 0.05}, inputs=inputs)
    try:
        run_trial_units(
            plan, inputs=inputs, session=session, work=work, trial_id="t1", node_id="n", device=torch.device("cpu")
        )
    except BaseException as error:  # SystemExit too: what a stopped trial raises
        return session, error
    return session, None


def stopped_at_the_end_of_unit(number: int):
    return lambda metrics: metrics["report"] == "fold" and metrics["unit"] == number


@pytest.fixture(scope="module")
def first_unit_run(trial_inputs, tmp_path_factory):
    """A first run of trial t1 that Tune stops when its first unit (1.1) has finished: its
    session, and its storage (copy it before writing there)."""
    import torch

    root = tmp_path_factory.mktemp("first")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        session, raised = run_units(
            trial_inputs, root / "run", storage=root / "storage", stop_at=stopped_at_the_end_of_unit(1)
        )
    finally:
        torch.set_num_threads(threads)
    assert isinstance(raised, SystemExit)
    return session, root / "storage"


def _storage_copy(first_unit_run, tmp_path: Path) -> Path:
    storage = tmp_path / "storage"
    shutil.copytree(first_unit_run[1], storage)
    return storage


def test_a_first_run_writes_each_units_row_as_attempt_1_before_the_checkpoint_that_marks_it_done(first_unit_run):
    from orchestrator.pruning import FINAL_STEP, PRUNE_STEP
    from orchestrator.selection import FOLD_OBJECTIVE

    session, storage = first_unit_run
    epochs = [r for r in session.results if r["report"] == "epoch"]
    (fold,) = [i for i, r in enumerate(session.results) if r["report"] == "fold"]
    assert [(r["unit"], r["inner_fold"]) for r in epochs] == [(1, 1), (1, 1)]  # 1 search + 1 evaluation epoch
    assert [r[PRUNE_STEP] for r in epochs] == [1, 2] and not any(r[FINAL_STEP] for r in epochs)
    # Every epoch report before the row: no row; the report that checkpoints unit 1.1 as done: its row is there.
    assert all(rows == [] for rows in session.rows_at[:fold])
    assert session.rows_at[fold] == [("1.1", 1, "completed")] == rows_on_disk(storage)
    state = state_of(session.checkpoints[fold])
    assert state["attempt"] == 1 and list(state["done"]) == ["1.1"]
    assert state["done"]["1.1"]["valid_ua"] == session.results[fold][FOLD_OBJECTIVE]
    assert [state_of(c)["done"] for c in session.checkpoints[:fold]] == [{}, {}]  # epoch checkpoints: not done
    assert session.results[fold]["folds_done"] == 1 and session.results[fold]["n_folds"] == 2
    assert not (session.checkpoints[fold] / "fold1.1").exists()  # a done unit's resumable checkpoints are dropped


def test_a_restart_from_a_checkpoint_skips_the_done_units_and_writes_the_rest_as_the_next_attempt(
    trial_inputs, first_unit_run, tmp_path: Path, one_torch_thread
) -> None:
    from orchestrator.pruning import FINAL_STEP, PRUNE_STEP
    from orchestrator.selection import OBJECTIVE

    first, _ = first_unit_run
    storage = _storage_copy(first_unit_run, tmp_path)
    session, raised = run_units(trial_inputs, tmp_path / "run", storage=storage, restore_from=first.last_checkpoint())
    assert raised is None
    # Only unit 2 ran, at its own prune steps (3, 4: after unit 1's 2), the last of them final.
    epochs = [r for r in session.results if r["report"] == "epoch"]
    assert [(r["unit"], r["inner_fold"], r[PRUNE_STEP], r[FINAL_STEP]) for r in epochs] == [
        (2, 2, 3, False),
        (2, 2, 4, True),
    ]
    assert [r["unit"] for r in session.results if r["report"] == "fold"] == [2]
    # Unit 1.1 keeps its one row of attempt 1; unit 1.2's row is attempt 2's.
    assert rows_on_disk(storage) == [("1.1", 1, "completed"), ("1.2", 2, "completed")]
    last = state_of(session.last_checkpoint())
    assert last["attempt"] == 2 and sorted(last["done"]) == ["1.1", "1.2"]
    # The trial's objective is the mean over both units, the one of the first run included.
    assert session.results[-1][OBJECTIVE] == pytest.approx(
        (last["done"]["1.1"]["valid_ua"] + last["done"]["1.2"]["valid_ua"]) / 2
    )


def test_a_restart_after_the_row_but_before_its_checkpoint_reruns_the_unit_as_the_next_attempt(
    trial_inputs, first_unit_run, tmp_path: Path, one_torch_thread
) -> None:
    """A worker killed between writing unit 1.1's row and persisting the checkpoint that marks it
    done restarts from the epoch checkpoint before: 1.1 runs again, as attempt 2, and the
    ``runs`` view shows that attempt's row (the first one's stays in ``fold_rows``)."""
    from orchestrator.leaderboard import connect

    first, _ = first_unit_run
    before_the_fold_report = [c for c, r in zip(first.checkpoints, first.results) if c and r["report"] == "epoch"][-1]
    storage = _storage_copy(first_unit_run, tmp_path)
    session, raised = run_units(
        trial_inputs,
        tmp_path / "run",
        storage=storage,
        restore_from=before_the_fold_report,
        stop_at=stopped_at_the_end_of_unit(1),
    )
    assert isinstance(raised, SystemExit)
    assert rows_on_disk(storage) == [("1.1", 1, "completed"), ("1.1", 2, "completed")]
    assert state_of(session.last_checkpoint())["attempt"] == 2
    with connect(storage, experiment="units") as board:
        runs = board.sql("SELECT inner_fold, attempt FROM runs")
    assert runs.to_dict("records") == [{"inner_fold": 1, "attempt": 2}]


def test_each_row_has_its_networks_predictions_and_the_view_holds_those_of_the_runs_attempt(
    trial_inputs, first_unit_run, tmp_path: Path, one_torch_thread
) -> None:
    """Every validation and test utterance of unit 1.1 once, with its true label and speaker, from
    the attempt the ``runs`` view reports (a rerun's file supersedes the first attempt's), written
    no later than its row."""
    from orchestrator.leaderboard import connect, part_path, predictions_path
    from orchestrator.trial import Unit, unit_table

    first, _ = first_unit_run
    before_the_fold_report = [c for c, r in zip(first.checkpoints, first.results) if c and r["report"] == "epoch"][-1]
    storage = _storage_copy(first_unit_run, tmp_path)
    run_units(
        trial_inputs,
        tmp_path / "run",
        storage=storage,
        restore_from=before_the_fold_report,
        stop_at=stopped_at_the_end_of_unit(1),
    )
    for attempt in (1, 2):
        keys = {"experiment": "units", "trial_id": "t1", "fold": 1, "inner_fold": 1, "attempt": attempt}
        written = storage / predictions_path(stage="search", **keys)
        assert written.stat().st_mtime_ns <= (storage / part_path(**keys)).stat().st_mtime_ns
    table = unit_table(trial_inputs, Unit(1, 1))
    expected = table[table["split"].isin(["valid", "test"])]
    with connect(storage, experiment="units") as board:
        predictions = board.sql("SELECT * FROM predictions ORDER BY split, utt_id")
    assert set(predictions["attempt"]) == {2} and set(predictions["inner_fold"]) == {1}
    assert sorted(predictions["utt_id"]) == sorted(expected["utt_id"])  # each utterance once
    truth = expected.set_index("utt_id")
    assert (predictions["split"] == truth.loc[predictions["utt_id"], "split"].to_numpy()).all()
    assert (predictions["label"] == truth.loc[predictions["utt_id"], "label"].to_numpy()).all()
    assert (predictions["speaker"] == truth.loc[predictions["utt_id"], "speaker"].astype(str).to_numpy()).all()
    probabilities = pd.DataFrame(predictions["probabilities"].tolist())
    assert probabilities.shape[1] == len(trial_inputs.classes)
    assert probabilities.sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-5)
    classes = list(trial_inputs.classes)
    assert (predictions["predicted"] == [classes[row.argmax()] for row in probabilities.to_numpy()]).all()


def test_a_trial_stopped_in_a_unit_writes_no_row_for_it(trial_inputs, first_unit_run, tmp_path: Path, one_torch_thread):
    """Tune stopping the trial (a pruner) at unit 1.2's first epoch: the ``SystemExit`` out of the
    report goes through, and no failed row is written for the unit (stopped is not failed)."""
    first, _ = first_unit_run
    storage = _storage_copy(first_unit_run, tmp_path)
    session, raised = run_units(
        trial_inputs,
        tmp_path / "run",
        storage=storage,
        restore_from=first.last_checkpoint(),
        stop_at=lambda r: r["unit"] == 2,
    )
    assert isinstance(raised, SystemExit) and [r["report"] for r in session.results] == ["epoch"]
    assert rows_on_disk(storage) == [("1.1", 1, "completed")]


def test_a_unit_that_fails_writes_a_failed_row_of_its_attempt_and_the_error_goes_through(
    trial_inputs, first_unit_run, tmp_path: Path
) -> None:
    """A restart whose checkpoint holds a truncated search checkpoint of unit 1.1: ``run_fold``
    raises; the unit gets a failed row naming the error, as attempt 2, it is not marked done, no
    fold result is reported, and the error reaches Tune (which may restart the trial)."""
    from trainers.checkpoint import CheckpointError

    first, _ = first_unit_run
    damaged = tmp_path / "checkpoint"
    shutil.copytree(next(c for c in first.checkpoints if c is not None), damaged)
    search_pt = damaged / "fold1.1" / "search.pt"
    search_pt.write_bytes(search_pt.read_bytes()[:100])
    storage = _storage_copy(first_unit_run, tmp_path)
    session, raised = run_units(trial_inputs, tmp_path / "run", storage=storage, restore_from=damaged)
    assert isinstance(raised, CheckpointError) and "search.pt" in str(raised)
    assert rows_on_disk(storage) == [("1.1", 1, "completed"), ("1.1", 2, "failed")]
    (failed,) = [pq.read_table(p).to_pylist()[0] for p in storage.rglob("fold=1-inner=1-attempt=2.parquet")]
    assert failed["error"].startswith("CheckpointError: ") and "search.pt" in failed["error"]
    assert session.results == [] and state_of(tmp_path / "run" / "work") == {"attempt": 2, "done": {}}
