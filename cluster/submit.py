"""Submit ``sernas search`` (or ``sernas cross-eval``) to a Ray cluster through the job API
(what ``ray job submit`` does).

The job's working directory is uploaded (small: data, caches, run outputs, virtual envs and
VCS metadata are excluded); the cluster's Python environment is expected to have sernas
installed (or add ``pip``/``py_modules`` to the runtime env, see docs/cluster.md). The job's
driver runs ``sernas search ... --address auto`` (or ``sernas cross-eval ... --address auto``) on
the head node and joins the cluster.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.auth import Token
from orchestrator.storage import RESTART_CHOICES, resolve_storage

DEFAULT_ADDRESS = "http://127.0.0.1:8265"

# Never uploaded: virtual envs, VCS, run outputs, feature caches, corpora and Parquet files.
RUNTIME_ENV_EXCLUDES = (
    ".venv",
    "venv",
    ".git",
    "**/__pycache__",
    "*.pyc",
    ".pytest_cache",
    "*.egg-info",
    "runs",
    "demo",
    ".cache",
    "benchmarks/results",
    "*.parquet",
    "*.wav",
    "*.flac",
    "*.pt",
    "*.ckpt",
    "IEMOCAP_full_release",
    "MSP-IMPROV",
)


@dataclass(frozen=True)
class Submission:
    job_id: str
    address: str
    entrypoint: str
    submitted_at: float


def find_project_root(start: Path) -> Path:
    """The closest folder at or above ``start`` with sernas's pyproject.toml, else ``start``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "sernas"' in pyproject.read_text(errors="replace"):
            return folder
    return start


def job_path(path: Path | str, working_dir: Path) -> str:
    """A path as the job sees it: relative to the uploaded working dir when inside it, else absolute
    (then it must exist on the head node: a shared path)."""
    absolute = Path(path).expanduser().resolve()
    try:
        return absolute.relative_to(working_dir.resolve()).as_posix()
    except ValueError:
        return str(absolute)


def storage_for_job(storage: str) -> str:
    """URIs pass through; a local path becomes absolute (a relative one would land inside the
    job's temporary copy of the working dir and vanish with it)."""
    return resolve_storage(storage).uri


def build_entrypoint(
    *,
    config: str,
    overrides: Sequence[str] = (),
    storage: str | None = None,
    resume: bool = False,
    restart: str | None = None,
) -> str:
    """``sernas search`` joining the cluster; ``resume`` / ``restart`` as its ``--resume`` / ``--restart``
    (the job refuses an experiment name that already has results without one of them)."""
    if resume and restart:
        raise ValueError("--resume and --restart exclude each other: finish the run, or start afresh.")
    if restart is not None and restart not in RESTART_CHOICES:
        raise ValueError(f"--restart must be one of {', '.join(RESTART_CHOICES)}, but got {restart!r}.")
    parts = ["sernas", "search", "--config", config]
    for override in overrides:
        parts += ["--set", override]
    if storage:
        parts += ["--storage", storage]
    parts += ["--resume"] if resume else []
    parts += ["--restart", restart] if restart else []
    parts += ["--address", "auto"]
    return shlex.join(parts)


def build_cross_eval_entrypoint(
    *,
    storage: str,
    experiment: str,
    top: int | None = None,
    genotypes: Sequence[str] = (),
    seeds: int = 1,
    settings: str | None = None,
    random: int | None = None,
    resume: bool = False,
) -> str:
    parts = ["sernas", "cross-eval", "--storage", storage, "--experiment", experiment]
    if top is not None:
        parts += ["--top", str(top)]
    for genotype in genotypes:
        parts += ["--genotype", genotype]
    parts += ["--seeds", str(seeds)] + (["--settings", settings] if settings is not None else [])
    parts += ["--random", str(random)] if random is not None else []
    parts += ["--resume"] if resume else []
    parts += ["--address", "auto"]
    return shlex.join(parts)


def build_runtime_env(working_dir: Path, *, pip_install_project: bool = False) -> dict:
    env: dict = {"working_dir": str(working_dir), "excludes": list(RUNTIME_ENV_EXCLUDES)}
    if pip_install_project:
        # For clusters whose image lacks sernas: installs the uploaded copy into the job's env.
        env["pip"] = ["-e", "."]
    return env


def make_client(address: str, token: Token | None):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address, headers=token.headers() if token else None)


def submit_search(
    *,
    address: str,
    token: Token | None,
    config: Path,
    overrides: Sequence[str] = (),
    storage: str | None = None,
    resume: bool = False,
    restart: str | None = None,
    working_dir: Path | None = None,
    pip_install_project: bool = False,
    client=None,
) -> Submission:
    """``sernas search`` of ``config`` as a job (``resume`` / ``restart`` as in :func:`build_entrypoint`)."""
    working_dir = (working_dir or find_project_root(Path.cwd())).resolve()
    if not Path(config).is_file():
        raise FileNotFoundError(f"config {config} does not exist.")
    entrypoint = build_entrypoint(
        config=job_path(config, working_dir),
        overrides=overrides,
        storage=storage_for_job(storage) if storage else None,
        resume=resume,
        restart=restart,
    )
    return submit_entrypoint(
        entrypoint,
        address=address,
        token=token,
        metadata={"sernas_config": Path(config).name},
        working_dir=working_dir,
        pip_install_project=pip_install_project,
        client=client,
    )


def submit_cross_eval(
    *,
    address: str,
    token: Token | None,
    storage: str,
    experiment: str,
    top: int | None = None,
    genotypes: Sequence[str] = (),
    seeds: int = 1,
    settings: str | None = None,
    random: int | None = None,
    resume: bool = False,
    working_dir: Path | None = None,
    pip_install_project: bool = False,
    client=None,
) -> Submission:
    """``sernas cross-eval`` of ``experiment`` in ``storage`` (a path or URI every node reaches) as a job."""
    entrypoint = build_cross_eval_entrypoint(
        storage=storage_for_job(storage),
        experiment=experiment,
        top=top,
        genotypes=genotypes,
        seeds=seeds,
        settings=settings,
        random=random,
        resume=resume,
    )
    return submit_entrypoint(
        entrypoint,
        address=address,
        token=token,
        metadata={"sernas_cross_eval": experiment},
        working_dir=(working_dir or find_project_root(Path.cwd())).resolve(),
        pip_install_project=pip_install_project,
        client=client,
    )


def submit_entrypoint(
    entrypoint: str,
    *,
    address: str,
    token: Token | None,
    metadata: dict[str, str],
    working_dir: Path,
    pip_install_project: bool = False,
    client=None,
) -> Submission:
    """Submit one ``sernas`` command line as a job whose working dir is ``working_dir``."""
    client = client or make_client(address, token)
    submitted_at = time.time()
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env=build_runtime_env(working_dir, pip_install_project=pip_install_project),
        metadata=metadata,
    )
    return Submission(job_id=job_id, address=address, entrypoint=entrypoint, submitted_at=submitted_at)


def follow_job(client, job_id: str, *, write: Callable[[str], None], poll_s: float = 1.0) -> str:
    """Stream the job's logs to ``write`` until it ends; returns its final status name."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    try:
        asyncio.run(tail())
    except Exception:  # the log stream is best-effort (proxies may cut websockets): poll instead
        seen = 0
        while not client.get_job_status(job_id).is_terminal():
            logs = client.get_job_logs(job_id)
            write(logs[seen:])
            seen = len(logs)
            time.sleep(poll_s)
        write(client.get_job_logs(job_id)[seen:])
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return str(status.value if hasattr(status, "value") else status)
        time.sleep(poll_s)


def resolve_address(address: str | None, *, state_path: Path | None = None) -> str:
    """``--address``, else ``$RAY_API_SERVER_ADDRESS``, else an http ``$RAY_ADDRESS``, else the
    dashboard of the local cluster started by ``sernas cluster local``, else 127.0.0.1:8265."""
    if address:
        return address if "://" in address else f"http://{address}"
    for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(name, "")
        if value.startswith("http"):
            return value
    if state_path is not None and Path(state_path).is_file():
        from cluster.local import read_state

        try:
            return read_state(state_path).dashboard_url
        except ValueError:
            pass
    return DEFAULT_ADDRESS
