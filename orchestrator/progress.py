"""A compact view of a running experiment instead of Ray Tune's verbose table.

One line per finished fold and per trial end (completed, pruned, failed), plus a short
progress line every ``every_s`` seconds with the counts; the same events also go to the trial
status files of the leaderboard so a crashed driver loses nothing a person needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.markup import escape

from orchestrator.candidates import CANDIDATE_KEY, candidate_of
from orchestrator.pruning import FOLD_REPORT
from orchestrator.selection import FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE
from orchestrator.study import OUTER_FOLD_KEY, TRIAL_STATUS, recorded_end
from orchestrator.terminal import TrialBoard
from orchestrator.trial import INFEASIBLE_REPORT

StatusWriter = Callable[..., Any]


class ExperimentProgress(Callback):
    def __init__(
        self,
        *,
        console: Console | None,
        write_status: StatusWriter,
        n_folds: int,
        pruner_name: str,
        every_s: float = 30.0,
        study: Any = None,
        first: tuple[str, ...] = (),
    ) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.n_folds = n_folds
        self.pruner_name = pruner_name
        self.study = study  # an orchestrator.study.StudyHandle: where a search trial's end is decided
        self.first = first  # parameters that vary between trials: shown before the ones all share
        self.write_status = write_status
        self.every_s = every_s
        self.board = TrialBoard(console=self.console, n_folds=n_folds, every_s=every_s)
        self.epochs = 0
        self.folds = 0
        self.ended: dict[str, str] = {}

    # Tune pickles callbacks into its experiment state (and restores them on --resume); a
    # console holds a lock and a live table a thread, so a restored callback makes new ones.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "console": None, "board": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.console is None:
            self.console = Console(highlight=False, soft_wrap=True)
        if self.board is None:
            self.board = TrialBoard(console=self.console, n_folds=self.n_folds, every_s=self.every_s)

    def _params(self, trial) -> str:
        """The trial's parameters, those that tell trials apart first (``first``), then the shared ones."""
        config = {k: v for k, v in (trial.config or {}).items()}
        candidate = candidate_of(config)
        if candidate is not None:  # a cross-eval trial: its genotype and where it came from
            del config[CANDIDATE_KEY]
            config["genotype"] = candidate.genotype_hash
            if candidate.source_fold is not None:
                config["from"] = f"{candidate.source_trial_id}/fold{candidate.source_fold}"
            if candidate.params:  # --settings source: the parameters it trains under are that trial's
                config["settings"] = candidate.source_trial_id
        order = sorted(config, key=lambda key: (key not in self.first, key))
        return " ".join(f"{k}={config[k]:.3g}" if isinstance(config[k], float) else f"{k}={config[k]}" for k in order)

    def _pending(self, trials: list) -> None:
        for other in trials:
            if other.status == "PENDING":
                self.board.pending(other.trial_id, params=self._params(other))

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._pending(trials)
        self.board.started(trial.trial_id, params=self._params(trial))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        self._pending(trials)
        if result.get("report") == FOLD_REPORT:
            self.folds += 1
            self.board.fold_done(
                trial.trial_id,
                fold=int(result["fold"]),
                folds_done=int(result["folds_done"]),
                mean_valid_ua=float(result[OBJECTIVE]),
                params=self._params(trial),
                message=f"[bold]{trial.trial_id}[/] fold {result['fold']}"
                + (f" inner {result['inner_fold']}" if result.get("inner_fold") else "")
                + f": valid UA {result[FOLD_OBJECTIVE]:.3f} "
                f"(mean {result[OBJECTIVE]:.3f} over {result['folds_done']}), test UA {result[FOLD_TEST_UA]:.3f}, "
                f"genotype {escape(str(result['genotype_hash']))}",
            )
        else:
            self.epochs += 1
            self.board.epoch(
                trial.trial_id,
                fold=int(result.get("fold", 0)),
                phase=str(result.get("phase", "")),
                epoch=int(result.get("epoch", 0)),
                valid_ua=float(result.get("valid_ua", float("nan"))),
                params=self._params(trial),
            )

    def _recorded(self, trial) -> tuple[str, str | None] | None:
        """The study's word on a search trial's end (``completed``/``pruned``/``failed``, reason)."""
        fold = (trial.config or {}).get(OUTER_FOLD_KEY)
        if self.study is None or fold is None:
            return None
        recorded = recorded_end(self.study, fold=int(fold), tune_trial_id=trial.trial_id)
        if recorded is None:
            return None
        state, reason = recorded
        return TRIAL_STATUS.get(state.name, "failed"), reason

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        last = trial.last_result or {}
        folds_done, planned = int(last.get("folds_done", 0)), int(last.get("n_folds", self.n_folds))
        recorded = self._recorded(trial)
        if last.get("report") == INFEASIBLE_REPORT:  # CUDA out of memory: failed, and not retried
            status, reason = "failed", str(last.get("reason"))
            message = f"[red]{trial.trial_id} infeasible[/]: {escape(reason)}"
        elif recorded is not None and recorded[0] == "pruned" or recorded is None and folds_done < planned:
            status = "pruned"
            reason = (recorded[1] if recorded is not None else None) or f"{self.pruner_name} pruner stopped it"
            reason += f" after {folds_done}/{planned} {'inner folds' if last.get('inner_fold') else 'folds'}"
            if last.get("report") != FOLD_REPORT:  # stopped inside a fold, at an epoch
                reason += f" (fold {last.get('fold')}, {last.get('phase')} epoch {last.get('epoch')})"
            message = f"[yellow]{trial.trial_id} pruned[/]: {escape(reason)}"
        elif recorded is not None and recorded[0] == "failed":
            status, reason = "failed", f"stopped after {folds_done}/{planned} folds without a pruning decision"
            message = f"[red]{trial.trial_id} failed[/]: {escape(reason)}"
        else:
            status, reason = "completed", None
            message = (
                f"[green]{trial.trial_id} completed[/]: mean valid UA {last.get(OBJECTIVE, float('nan')):.3f}, "
                f"mean test UA {last.get(MEAN_TEST_UA, float('nan')):.3f} over {last.get('folds_done', 0)} folds"
            )
        self.ended[trial.trial_id] = status
        self.board.ended(trial.trial_id, state=status, message=message)
        self.write_status(
            trial_id=trial.trial_id, status=status, step=int(last.get("training_iteration", 0)), reason=reason
        )

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        last = trial.last_result or {}
        self.ended[trial.trial_id] = "failed"
        message = f"[red]{trial.trial_id} failed[/] (error file: {escape(str(trial.error_file))})"
        self.board.ended(trial.trial_id, state="failed", message=message)
        self.write_status(
            trial_id=trial.trial_id,
            status="failed",
            step=int(last.get("training_iteration", 0)),
            reason=f"see {trial.error_file}",
        )

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.board.close()

    def close(self) -> None:
        """Stop the live table (also when the experiment ends with an error or Ctrl-C)."""
        self.board.close()
