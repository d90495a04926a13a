"""Joining or starting Ray for an experiment: one place for the options every entry point uses."""

from __future__ import annotations

__all__ = ["start_ray"]


def start_ray(address: str | None, *, num_cpus: int | None = None) -> tuple[str | None, bool]:
    """Join ``address`` or start a local Ray (dashboard on loopback).

    Returns the dashboard URL and whether this call started Ray (so only then is it stopped);
    a Ray already initialised in this process (a notebook, a test) is used as it is.
    """
    import os

    # A compact view: our own progress lines instead of Tune's tables, worker logs and
    # checkpoint chatter (trial errors still reach the console through their error files).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    if ray.is_initialized():
        return None, False
    if address:
        context = ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    else:
        context = ray.init(num_cpus=num_cpus, dashboard_host="127.0.0.1", logging_level="WARNING", log_to_driver=False)
    url = getattr(context, "dashboard_url", None)
    return (f"http://{url}" if url and not url.startswith("http") else url), True
