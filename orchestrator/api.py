"""The Python front door: run an experiment from a config, as ``sernas search`` does, without the CLI.

    from orchestrator import run
    summary = run("configs/demo.yaml", overrides=["tune.num_samples=2"])
    print(summary.completed, summary.pruned)  # then: orchestrator.leaderboard.connect(summary.storage)

Nothing heavy is imported until ``run`` is called (no Ray, no torch at ``import orchestrator``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.config import ExperimentConfig
    from orchestrator.experiment import ExperimentSummary

__all__ = ["run"]


def run(
    config: ExperimentConfig | str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    address: str | None = None,
    resume: bool = False,
    console: Any = None,
) -> ExperimentSummary:
    """Prepare the data and run (or, with ``resume``, finish) the experiment of ``config``: a
    validated ``ExperimentConfig`` or a YAML path (``overrides`` as ``--set`` takes them).

    Joins the Ray at ``address``, uses a Ray this process already started, or starts a local one
    and stops it afterwards. The same checks as ``sernas search`` apply: a resumed run must have
    the config and data it started with. A used experiment name is not archived here: give a new
    ``name`` (``overrides=["name=..."]``) or ``resume``.
    """
    from orchestrator.config import ExperimentConfig, load_config
    from orchestrator.experiment import prepare_data, run_experiment, storage_root
    from orchestrator.ray_runtime import start_ray
    from orchestrator.resume_check import check_resume

    if not isinstance(config, ExperimentConfig):
        config = load_config(config, overrides=list(overrides))
    elif overrides:
        raise ValueError("overrides apply to a config file; change an ExperimentConfig with model_copy instead.")
    if resume:
        for warning in check_resume(config, data=storage_root(config).experiment_data(config.name)):
            warnings.warn(warning, UserWarning, stacklevel=2)
    prepared = prepare_data(config, progress=console is not None, resume=resume)
    _, started = start_ray(address)
    try:
        return run_experiment(config, prepared=prepared, resume=resume, console=console)
    finally:
        if started:
            import ray

            ray.shutdown()
