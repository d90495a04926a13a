"""The experiment's progress lines: what a person reads while trials run."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from orchestrator.progress import ExperimentProgress


def test_the_parameters_that_tell_trials_apart_come_first() -> None:
    """At 110 columns the shared values (init_channels, layers, lstm_hidden, ...) used to fill the
    params column and cut off the sampled ones; the sampled ones and the outer fold now lead."""
    stream = io.StringIO()
    statuses: list[dict] = []
    progress = ExperimentProgress(
        console=Console(file=stream, width=200),
        write_status=lambda **status: statuses.append(status),
        n_folds=3,
        pruner_name="wilcoxon",
        first=("outer_fold", "weights_lr"),
    )
    config = {"init_channels": 4, "layers": 3, "lstm_hidden": 16, "weights_lr": 0.0312, "outer_fold": 2}
    trial = SimpleNamespace(trial_id="t1", config=config, status="RUNNING")
    progress.on_trial_start(0, [trial], trial)
    progress.close()
    assert stream.getvalue().startswith("t1 started outer_fold=2 weights_lr=0.0312 init_channels=4 layers=3")
