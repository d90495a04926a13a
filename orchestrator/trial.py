"""The Ray Tune trainable: a search trial = one point of the search space on ONE outer fold.

A search trial belongs to the outer fold its config names (``OUTER_FOLD_KEY``, set by the
searcher of ``orchestrator.nested``). Its units of work are that fold's inner folds
(``folds.inner``: inner speaker folds built from the outer fold's non-test speakers,
``trainers.folds.make_inner_folds``), or the outer fold itself with its own validation
speakers. A cross-eval trial (``sernas cross-eval``; its parameters hold an
``orchestrator.candidates`` ``Candidate`` and a seed) runs the same loop without a search over
every outer fold and tags its rows ``stage = cross-eval``.

For each unit still to do, the trial runs the Ray-free ``trainers.run_fold`` (search, then
evaluation), forwarding every epoch to ``tune.report`` together with a checkpoint of its work
folder (the trainers' own resumable checkpoints plus ``state.json``); each epoch carries its
``prune_step`` on a fixed schedule (unit, phase, epoch: the same step means the same thing in
every trial). After the unit it appends one leaderboard row and reports a summary
(``report="fold"``): the unit's validation UA and the mean over finished units
(``orchestrator.selection``: what the pruner and the study read), with the test UAs of the outer
fold's test speakers beside them (read by nobody that chooses). A restarted trial (a crash with
``max_failures``, or ``sernas search --resume``) copies its last checkpoint back, skips the
units it finished and continues the current one from its last epoch.

``run_trial`` is the Ray glue (trial id, node, device, features); the loop is
``run_trial_units``, which talks to Tune only through a ``TrialSession`` (``TuneSession``: restore
the last checkpoint, report), and decides with small functions: ``begin_attempt`` (the attempt
and the units done, from the checkpoint), ``units_to_run`` and ``prune_step`` / ``is_final_step``.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch

from orchestrator.candidates import SEED_KEY, Candidate, candidate_of, seen_in_search
from orchestrator.config import ExperimentConfig, settings_for_trial
from orchestrator.leaderboard import FoldRow, write_fold_row
from orchestrator.leaderboard.predictions import write_predictions
from orchestrator.pruning import FINAL_STEP, FOLD_REPORT, PRUNE_STEP
from orchestrator.selection import FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE
from orchestrator.study import MEAN_PARAMS, OUTER_FOLD_KEY
from search_space.architecture import architecture_key, parse_architecture
from search_space.genotype import Genotype
from trainers.atomic_io import write_text_atomically
from trainers.cross_corpus import fold_corpora
from trainers.device import trial_device
from trainers.features import extract_features_once
from trainers.fold_data import fold_speaker_rows, load_fold_data
from trainers.folds import SPEAKER_CHECK_COLUMN, make_inner_folds, speaker_check
from trainers.gpu_memory import is_out_of_memory, limit_memory, peak_memory_mib, release_cached_memory
from trainers.reproducibility import reproducible_mode
from trainers.run_fold import FoldResult, run_fold
from trainers.settings import EvalSettings, SearchSettings

STATE_NAME = "state.json"
EPOCH_REPORT = "epoch"
INFEASIBLE_REPORT = "infeasible"  # result["report"] of a trial stopped by CUDA out-of-memory (not retried)
INFEASIBLE = "infeasible"  # how its fold row's error and its trial status reason begin


@dataclass(frozen=True)
class TrialInputs:
    """What every trial of an experiment shares (sent once through Ray's object store)."""

    experiment: ExperimentConfig
    manifest: pd.DataFrame
    folds: pd.DataFrame
    classes: tuple[str, ...]
    storage: str

    @property
    def preset(self) -> Any:
        """The feature preset on this node: an SSL preset's weights are found and checksummed here
        (each node has its own copy; the checksum is remembered per process)."""
        return self.experiment.data.resolved_preset()


def _canonical_params(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _genotype_hash(result: FoldResult) -> str:
    """The leaderboard's ``genotype_hash`` of a finished fold: its genotype's hash or model name."""
    return result.genotype_hash or architecture_key(parse_architecture(result.architecture))


def _fold_row(
    inputs: TrialInputs,
    *,
    trial_id: str,
    attempt: int,
    params: dict[str, Any],
    search,
    evaluation,
    fold: int,
    result: FoldResult | None,
    error: str | None,
    node_id: str,
    candidate: Candidate | None = None,
    peak_gpu_mib: float | None = None,
    inner_fold: int | None = None,
) -> FoldRow:
    experiment = inputs.experiment
    shape = evaluation.shape
    facts = {
        "experiment": experiment.name,
        "trial_id": trial_id,
        "fold": fold,
        "outer_fold": fold,
        "inner_fold": inner_fold,
        "n_inner_folds": experiment.folds.inner if candidate is None else None,
        "n_folds": int(inputs.folds["fold"].nunique()),
        "attempt": attempt,
        "node_id": node_id,
        "hostname": socket.gethostname(),
        "seed": evaluation.seed,
        "params_json": _canonical_params(params),
        "layers": shape.layers,
        "nodes": shape.nodes,
        "init_channels": shape.init_channels,
        "eval_layers": evaluation.network_layers,
        "eval_init_channels": evaluation.network_init_channels,
        "normalization": evaluation.normalization,
        "widen": float(evaluation.widen),
        "deepen": evaluation.deepen,
        "imbalance": evaluation.imbalance,
        "arch_data": search.arch_data if candidate is None else None,
        "primitives": list(search.primitives) if candidate is None else None,
        "lstm_hidden": shape.lstm_hidden,
        "darts_order": search.order,
        "pc_k": search.pc_k,
        "weights_lr": search.weights.lr,
        "search_epochs": search.epochs,
        "eval_epochs": evaluation.epochs,
        **fold_facts(inputs, fold),
        "feature_preset": experiment.data.preset,
        "fold_scheme": experiment.folds.scheme,
        "classes": json.dumps(list(inputs.classes)),
        "peak_gpu_mib": peak_gpu_mib,
        **_stage_facts(inputs, candidate, fold),
    }
    if error is not None:
        return FoldRow.failed(error=error, **facts)
    if result is None:
        raise ValueError(f"fold {fold} of trial {trial_id} has neither a result nor an error.")
    architecture = parse_architecture(result.architecture)
    return FoldRow.finished(
        **facts,
        genotype=result.architecture if isinstance(architecture, Genotype) else None,
        genotype_hash=_genotype_hash(result),
        test_ua=result.test_ua,
        test_wa=result.test_wa,
        test_macro_f1=result.test_macro_f1,
        confusion=json.dumps(result.confusion),
        test_utterances=result.test_utterances,
        test_absent_classes=list(result.test_absent_classes),
        valid_ua=result.valid_ua,
        valid_absent_classes=list(result.valid_absent_classes),
        best_epoch=result.best_epoch,
        params=result.params,
        search_seconds=result.search_seconds,
        eval_seconds=result.eval_seconds,
        search_epochs_run=result.search_epochs_run,
        search_stop_reason=(result.search_stopped_early or "epochs") if result.search_epochs_run else None,
        alpha_entropy=result.alpha_entropy,
        control_scores=result.control_scores,
        device=result.device,
    )


def fold_facts(inputs: TrialInputs, fold: int) -> dict[str, str]:
    """The fold row's ``dataset`` (cross-corpus: ``train corpora->test corpus``, ``trainers.cross_corpus``)
    and ``speaker_check`` (the fold table's, of the outer fold)."""
    rows = inputs.folds[inputs.folds["fold"] == fold]
    if rows.empty:
        raise ValueError(f"fold {fold} is not in the experiment's fold table.")
    check = str(rows[SPEAKER_CHECK_COLUMN].iloc[0]) if SPEAKER_CHECK_COLUMN in rows.columns else speaker_check(rows)
    dataset = inputs.experiment.data.dataset
    if inputs.experiment.folds.scheme == "cross-corpus":
        dataset = fold_corpora(rows, inputs.manifest)[fold].label
    return {"dataset": str(dataset), "speaker_check": check}


def _stage_facts(inputs: TrialInputs, candidate: Candidate | None, fold: int) -> dict[str, Any]:
    if candidate is None:
        return {"stage": "search"}
    return {
        "stage": "cross-eval",
        "source_trial_id": candidate.source_trial_id,
        "source_fold": candidate.source_fold,
        "control": candidate.control,
        "test_seen_in_search": seen_in_search(inputs.folds, found_on=candidate.found_on, fold=fold),
    }


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Keep what Tune can log as a result column (numbers and short strings)."""
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float, str, bool))}


def _infeasible_reason(error: BaseException, *, fold: int, gpus: float, peak: float | None) -> str:
    held = f", {peak:.0f} MiB held at the peak" if peak is not None else ""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"{INFEASIBLE}: CUDA out of memory on fold {fold} with tune.resources.gpu {gpus:g}{held}; not retried "
        f"(it would recur): give trials a larger GPU share, a smaller batch or shape, or search.recompute true "
        f"({first})"
    )


def _node_cpus(ray: Any, node_id: str) -> int:
    """CPUs Ray counts on this node (what a node's first trial may use to extract features)."""
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("Alive", True):
            return max(1, int(node.get("Resources", {}).get("CPU", 1)))
    return 1


@dataclass(frozen=True)
class Unit:
    """One network a trial trains and scores: an outer fold, and the inner fold whose validation
    speakers choose (None: the outer fold's own validation speakers)."""

    fold: int
    inner_fold: int | None = None

    @property
    def key(self) -> str:
        return str(self.fold) if self.inner_fold is None else f"{self.fold}.{self.inner_fold}"


def trial_units(inputs: TrialInputs, *, outer_fold: int | None) -> list[Unit]:
    """A search trial's units (its outer fold's inner folds, or the outer fold itself); a
    cross-eval trial's (``outer_fold`` None): every outer fold."""
    if outer_fold is None:
        return [Unit(int(fold)) for fold in sorted(inputs.folds["fold"].unique())]
    inner = inputs.experiment.folds.inner
    if inner is None:
        return [Unit(outer_fold)]
    return [Unit(outer_fold, i) for i in range(1, inner + 1)]


def unit_table(inputs: TrialInputs, unit: Unit) -> pd.DataFrame:
    """The fold-table rows of ``unit``: the outer fold's, or its inner fold's (made here, the
    same on every node: seeded by ``folds.seed``)."""
    outer = inputs.folds[inputs.folds["fold"] == unit.fold]
    if unit.inner_fold is None:
        return outer
    folds = inputs.experiment.folds
    genders = dict(zip(inputs.manifest["speaker"].astype(str), inputs.manifest["gender"].astype(str)))
    inner = make_inner_folds(
        outer, n_inner=int(folds.inner), arch_share=folds.arch_share, seed=folds.seed, genders=genders
    )
    return inner[inner["inner_fold"] == unit.inner_fold].drop(columns="inner_fold")


@dataclass
class CheckpointState:
    """What a trial's checkpoint records (``state.json`` in its work folder): the attempt of the run
    that wrote it (1 for a trial's first run, one more for each restart from a checkpoint) and,
    per finished unit (``Unit.key``), its ``valid_ua``, ``ua``, ``genotype_hash`` and ``params``."""

    attempt: int
    done: dict[str, dict[str, Any]]

    def mean(self, key: str) -> float:
        """Mean over the finished units of their validation (``valid_ua``) or test (``ua``) UA, or parameters."""
        values = [done.get(key, math.nan) for done in self.done.values()]
        return sum(values) / len(values) if values else math.nan

    def save(self, work: Path) -> None:
        write_text_atomically(work / STATE_NAME, json.dumps({"attempt": self.attempt, "done": self.done}))


def begin_attempt(work: Path) -> CheckpointState:
    """The state of a run starting in ``work``, where the trial's last checkpoint (if any) was
    copied: that checkpoint's state with the attempt counted up, or attempt 1 with nothing done.
    Written back at once, so every checkpoint of this run carries its attempt."""
    path = work / STATE_NAME
    saved = json.loads(path.read_text()) if path.exists() else {"attempt": 0, "done": {}}
    state = CheckpointState(attempt=int(saved["attempt"]) + 1, done=dict(saved["done"]))
    state.save(work)
    return state


def units_to_run(units: Sequence[Unit], *, done: Collection[str]) -> list[tuple[int, Unit]]:
    """The units whose key is not in ``done``, each with its position among all of ``units``
    (from 1): a restarted trial reports its remaining units at the same prune steps."""
    return [(position, unit) for position, unit in enumerate(units, start=1) if unit.key not in done]


def prune_step(position: int, step: int, *, unit_span: int) -> int:
    """The pruner's step of epoch ``step`` (from 1) of the unit at ``position`` (from 1), each unit
    spanning ``unit_span`` epochs: the same step means the same unit, phase and epoch in every trial."""
    return (position - 1) * unit_span + step


def is_final_step(position: int, step: int, *, unit_span: int, n_units: int) -> bool:
    """Whether the epoch is the trial's last (its training all done: never pruned there)."""
    return position == n_units and step >= unit_span


@dataclass(frozen=True)
class TrialPlan:
    """What a trial's parameters decide: its settings, the parameters its rows record, its units."""

    search: SearchSettings
    evaluation: EvalSettings
    row_params: dict[str, Any]
    units: tuple[Unit, ...]
    candidate: Candidate | None = None  # a cross-eval trial's (no search)

    @property
    def unit_span(self) -> int:
        """Epochs per unit on the pruner's fixed schedule: search epochs, then evaluation epochs."""
        return (self.search.epochs if self.candidate is None else 0) + self.evaluation.epochs


def plan_trial(params: dict[str, Any], *, inputs: TrialInputs) -> TrialPlan:
    """The plan of a search trial (its config names its outer fold) or a cross-eval trial (its
    config holds a ``Candidate`` and a seed)."""
    candidate = candidate_of(params)
    if candidate is None:
        if OUTER_FOLD_KEY not in params:
            raise ValueError(f"a search trial needs its outer fold ({OUTER_FOLD_KEY}) in its config: {params!r}")
        row_params = {k: v for k, v in params.items() if k != OUTER_FOLD_KEY}
        search, evaluation = settings_for_trial(inputs.experiment, row_params)
        units = trial_units(inputs, outer_fold=int(params[OUTER_FOLD_KEY]))
    else:  # cross-eval: the settings of the candidate's params (the base ones, or its source trial's), no search
        search, evaluation = candidate.settings(inputs.experiment, seed=params[SEED_KEY])
        row_params = dict(candidate.params or {})
        units = trial_units(inputs, outer_fold=None)
    return TrialPlan(
        search=search, evaluation=evaluation, row_params=row_params, units=tuple(units), candidate=candidate
    )


class TrialSession(Protocol):
    """What a trial needs of Ray Tune's session (``TuneSession``); ``run_trial_units`` runs with any."""

    def restore(self, work: Path) -> None:
        """Copy the trial's last reported checkpoint into ``work`` (nothing on a first run)."""

    def report(self, metrics: dict[str, Any], *, checkpoint: Path | None = None) -> None:
        """Report ``metrics``, with the folder ``checkpoint`` as a checkpoint; raises ``SystemExit``
        when Tune stops the trial (Ray's session does)."""


class TuneSession:
    """``TrialSession`` of a Ray Tune function trainable: ``tune.get_checkpoint`` and ``tune.report``."""

    def restore(self, work: Path) -> None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(str(work))

    def report(self, metrics: dict[str, Any], *, checkpoint: Path | None = None) -> None:
        from ray import tune

        tune.report(metrics, checkpoint=None if checkpoint is None else tune.Checkpoint.from_directory(str(checkpoint)))


def run_trial(params: dict[str, Any], *, inputs: TrialInputs) -> None:
    """The function trainable (wrap with ``tune.with_parameters(run_trial, inputs=...)``)."""
    import ray
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    plan = plan_trial(params, inputs=inputs)
    cpus, gpus = inputs.experiment.tune.resources.cpu, inputs.experiment.tune.resources.gpu
    torch.set_num_threads(max(1, int(cpus)))
    node_id = ray.get_runtime_context().get_node_id()
    where = f"node {node_id} ({socket.gethostname()}, Ray GPU ids {ray.get_gpu_ids()})"
    device = trial_device(inputs.experiment.device, gpus=gpus, where=where)  # fails at once, names the node
    limit_memory(device, min(1.0, gpus))  # a shared card: this trial's share only
    if inputs.experiment.reproducible:
        reproducible_mode(device)
    # Once per node, under a lock, with the node's CPUs (an SSL encoder on the trial's device): the
    # first trial computes, the others wait.
    extract_features_once(
        inputs.manifest,
        preset=inputs.preset,
        cache_dir=inputs.experiment.data.cache_dir,
        workers=_node_cpus(ray, node_id),
        where=where,
        device=device,
    )
    work = Path(tempfile.mkdtemp(prefix=f"sernas-{trial_id}-"))
    try:
        run_trial_units(
            plan, inputs=inputs, session=TuneSession(), work=work, trial_id=trial_id, node_id=node_id, device=device
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_trial_units(
    plan: TrialPlan,
    *,
    inputs: TrialInputs,
    session: TrialSession,
    work: Path,
    trial_id: str,
    node_id: str,
    device: torch.device,
) -> None:
    """Run the units of ``plan`` that the session's last checkpoint (copied into the empty folder
    ``work``) does not mark done, as attempt ``begin_attempt``.

    Per unit: its epochs are reported (with a checkpoint of ``work`` every ``tune.checkpoint_every``);
    then its predictions and leaderboard row are written (in that order), and only then the checkpoint that marks it done is
    reported, so a crash between the two reruns the unit as the next attempt (a second row, which
    the ``runs`` view supersedes) and never leaves a unit done without its row. A unit that raises
    writes a failed row and re-raises (Tune may restart the trial); one that runs out of CUDA memory
    writes an infeasible row, reports ``INFEASIBLE_REPORT`` and ends the trial. A trial that Tune
    stops (``SystemExit`` out of a report) writes no row for the unit it was in."""
    gpus = inputs.experiment.tune.resources.gpu
    units, unit_span, candidate = plan.units, plan.unit_span, plan.candidate
    search, evaluation = plan.search, plan.evaluation
    session.restore(work)
    state = begin_attempt(work)

    epochs_reported = 0
    for position, unit in units_to_run(units, done=state.done):
        fold = unit.fold
        fold_table = unit_table(inputs, unit)
        rows = fold_speaker_rows(inputs.manifest, fold_table)  # any label: for the speakers' statistics
        data = load_fold_data(
            manifest=rows,
            folds=fold_table,
            fold=fold,
            preset=inputs.preset,
            cache_dir=inputs.experiment.data.cache_dir,
            classes=inputs.classes,
        )
        unit_facts = {
            "fold": fold,
            "unit": position,
            **({"inner_fold": unit.inner_fold} if unit.inner_fold else {}),
        }

        def report(step: int, metrics: dict[str, Any], unit_facts=unit_facts, position: int = position) -> None:
            nonlocal epochs_reported  # a checkpoint every tune.checkpoint_every epochs (and after each unit)
            epochs_reported += 1
            keep = epochs_reported % inputs.experiment.tune.checkpoint_every == 0
            session.report(
                {
                    **_scalar_metrics(metrics),
                    **unit_facts,
                    "report": EPOCH_REPORT,
                    PRUNE_STEP: prune_step(position, step, unit_span=unit_span),
                    FINAL_STEP: is_final_step(position, step, unit_span=unit_span, n_units=len(units)),
                    "folds_done": len(state.done),
                    "n_folds": len(units),
                    OBJECTIVE: state.mean("valid_ua"),
                    MEAN_TEST_UA: state.mean("ua"),
                },
                checkpoint=work if keep else None,
            )

        fold_dir = work / f"fold{unit.key}"

        def record(result: FoldResult | None, error: str | None, unit: Unit = unit, peak: float | None = None) -> None:
            """Append this unit's leaderboard row, finished or failed."""
            row = _fold_row(
                inputs,
                trial_id=trial_id,
                attempt=state.attempt,
                params=plan.row_params,
                search=search,
                evaluation=evaluation,
                fold=unit.fold,
                inner_fold=unit.inner_fold,
                result=result,
                error=error,
                node_id=node_id,
                candidate=candidate,
                peak_gpu_mib=result.peak_gpu_mib if result is not None else peak,
            )
            if result is not None and result.predictions is not None:  # before the row: a row has its predictions
                write_predictions(
                    inputs.storage,
                    result.predictions,
                    experiment=row.experiment,
                    stage=row.stage,
                    trial_id=trial_id,
                    fold=unit.fold,
                    inner_fold=unit.inner_fold,
                    attempt=state.attempt,
                )
            write_fold_row(inputs.storage, row)

        try:
            result = run_fold(
                data,
                evaluation=evaluation,
                search=search if candidate is None else None,
                architecture=None if candidate is None else candidate.architecture,
                device=device,
                work_dir=fold_dir,
                reporter=report,
                preset=inputs.experiment.data.preset,
            )
        except Exception as error:
            peak = peak_memory_mib(device)
            if is_out_of_memory(error):  # it would recur on every retry: infeasible, not failed
                reason = _infeasible_reason(error, fold=fold, gpus=gpus, peak=peak)
                record(None, reason, peak=peak)
                session.report(
                    {
                        **unit_facts,
                        "report": INFEASIBLE_REPORT,
                        "reason": reason,
                        "folds_done": len(state.done),
                        "n_folds": len(units),
                        OBJECTIVE: math.nan,  # the study records a failure, not a score
                        MEAN_TEST_UA: math.nan,
                    }
                )
                return
            record(None, f"{type(error).__name__}: {error}", peak=peak)
            raise
        finally:
            release_cached_memory(device)
        record(result, None)
        state.done[unit.key] = {
            "valid_ua": result.valid_ua,
            "ua": result.test_ua,  # (state.json's key for the test UA, kept so older checkpoints resume)
            "genotype_hash": result.genotype_hash,
            "params": result.params,
        }
        state.save(work)
        shutil.rmtree(fold_dir, ignore_errors=True)  # finished: its resumable checkpoints are dead weight
        session.report(
            {
                **unit_facts,
                "report": FOLD_REPORT,
                FOLD_OBJECTIVE: result.valid_ua,
                FOLD_TEST_UA: result.test_ua,
                "fold_test_wa": result.test_wa,
                "fold_test_macro_f1": result.test_macro_f1,
                "genotype_hash": _genotype_hash(result),
                "params": result.params,
                "folds_done": len(state.done),
                "n_folds": len(units),
                OBJECTIVE: state.mean("valid_ua"),
                MEAN_TEST_UA: state.mean("ua"),
                MEAN_PARAMS: state.mean("params"),
                "search_seconds": result.search_seconds,
                "eval_seconds": result.eval_seconds,
            },
            checkpoint=work,
        )
