"""A compact view of a running experiment instead of Ray Tune's verbose table.

One line per finished fold and per trial end (completed, pruned, failed), plus a short
progress line every ``every_s`` seconds with the counts; the same events also go to the trial
status files of the leaderboard so a crashed driver loses nothing a person needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.markup import escape

from orchestrator.candidates import CANDIDATE_KEY, candidate_of
from orchestrator.pruning import FOLD_REPORT
from orchestrator.selection import FOLD_OBJECTIVE, FOLD_TEST_UA, MEAN_TEST_UA, OBJECTIVE
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
    ) -> None:
        self.console = console
        self.n_folds = n_folds
        self.pruner_name = pruner_name
        self.write_status = write_status
        self.every_s = every_s
        self._last_line = time.monotonic()
        self.epochs = 0
        self.folds = 0
        self.ended: dict[str, str] = {}

    # Tune pickles callbacks into its experiment state (and restores them on --resume); a
    # console holds a lock and cannot travel, so a restored callback makes a new one.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "console": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.console is None:
            self.console = Console(highlight=False, soft_wrap=True)

    @staticmethod
    def _params(trial) -> str:
        config = {k: v for k, v in (trial.config or {}).items()}
        candidate = candidate_of(config)
        if candidate is not None:  # a cross-eval trial: its genotype (shown already) and where it came from
            del config[CANDIDATE_KEY]
            if candidate.source_trial_id is not None:
                config["from"] = f"{candidate.source_trial_id}/fold{candidate.source_fold}"
        return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        if result.get("report") == FOLD_REPORT:
            self.folds += 1
            self.console.print(
                f"[bold]{trial.trial_id}[/] fold {result['fold']}: valid UA {result[FOLD_OBJECTIVE]:.3f} "
                f"(mean {result[OBJECTIVE]:.3f} over {result['folds_done']}), test UA {result[FOLD_TEST_UA]:.3f}, "
                f"genotype {escape(str(result['genotype_hash']))} "
                f"[dim]{escape(self._params(trial))}[/]"
            )
        else:
            self.epochs += 1
        if time.monotonic() - self._last_line > self.every_s:
            self._last_line = time.monotonic()
            running = sum(1 for t in trials if t.status == "RUNNING")
            self.console.print(
                f"[dim]{len(trials)} trials ({running} running), {self.epochs} epochs and "
                f"{self.folds} folds reported, {list(self.ended.values()).count('pruned')} pruned[/]"
            )

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        last = trial.last_result or {}
        folds_done = int(last.get("folds_done", 0))
        if last.get("report") == INFEASIBLE_REPORT:  # CUDA out of memory: failed, and not retried
            status, reason = "failed", str(last.get("reason"))
            self.console.print(f"[red]{trial.trial_id} infeasible[/]: {escape(reason)}")
        elif folds_done < self.n_folds:  # ended without error before its last fold: the pruner stopped it
            status = "pruned"
            reason = f"{self.pruner_name} pruner stopped it after {folds_done}/{self.n_folds} folds"
            if last.get("report") != FOLD_REPORT:  # stopped inside a fold, at an epoch
                reason += f" (fold {last.get('fold')}, {last.get('phase')} epoch {last.get('epoch')})"
            self.console.print(f"[yellow]{trial.trial_id} pruned[/]: {escape(reason)}")
        else:
            status, reason = "completed", None
            self.console.print(
                f"[green]{trial.trial_id} completed[/]: mean valid UA {last.get(OBJECTIVE, float('nan')):.3f}, "
                f"mean test UA {last.get(MEAN_TEST_UA, float('nan')):.3f} over {last.get('folds_done', 0)} folds"
            )
        self.ended[trial.trial_id] = status
        self.write_status(
            trial_id=trial.trial_id, status=status, step=int(last.get("training_iteration", 0)), reason=reason
        )

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        last = trial.last_result or {}
        self.ended[trial.trial_id] = "failed"
        self.console.print(f"[red]{trial.trial_id} failed[/] (error file: {escape(str(trial.error_file))})")
        self.write_status(
            trial_id=trial.trial_id,
            status="failed",
            step=int(last.get("training_iteration", 0)),
            reason=f"see {trial.error_file}",
        )
