"""The ``sernas`` command line with the cluster commands: ``submit`` and ``cluster local/stop``.

It is ``orchestrator.cli`` plus this command group, added through the same ``register`` hook
as the orchestrator's groups (cluster sits above orchestrator), so the console script points
here. The Ray auth token is passed, never printed: only its source is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape

from orchestrator import cli as base
from orchestrator.candidates import CROSS_EVAL_SETTINGS
from orchestrator.cli import Register, Subcommands, UserError, console, error_console
from orchestrator.cli.common import add_restart_option


def _token(required: bool):
    from cluster.auth import find_token

    token = find_token()
    if token is None and required:
        raise UserError(
            "no Ray authentication token: set RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or create "
            "~/.ray/auth_token (copy it from the head node; see docs/cluster.md)."
        )
    return token


def _job_client_error(error: Exception, address: str) -> UserError:
    from ray.exceptions import AuthenticationError

    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, AuthenticationError):
        return UserError(
            f"the Ray cluster at {address} refused the authentication token ({first}). Use the "
            "head node's token (RAY_AUTH_TOKEN or ~/.ray/auth_token; see docs/cluster.md)."
        )
    if isinstance(error, ConnectionError) or "Failed to connect" in first or "Connection" in first:
        return UserError(
            f"no Ray job server at {address} ({first}). Start a cluster (sernas cluster local) "
            "or pass --address http://HEAD:8265 (forward the port over SSH for a remote head)."
        )
    return UserError(f"the Ray job server at {address} said: {first}")


# ----------------------------------------------------------------------------------------- submit
def cmd_submit(args: argparse.Namespace) -> int:
    from cluster.auth import redact
    from cluster.submit import follow_job, make_client, resolve_address, submit_cross_eval, submit_search

    address = resolve_address(args.address, state_path=args.state)
    token = _token(required=False)
    if args.stop:
        if args.config or args.wait or args.cross_eval:
            raise UserError("--stop JOB_ID takes no --config, --cross-eval or --wait.")
        try:
            client = make_client(address, token)
            stopped = client.stop_job(args.stop)
        except Exception as error:  # the client raises plain RuntimeError for unknown jobs
            raise _job_client_error(error, address) from None
        console.print(f"Job {escape(args.stop)}: " + ("stop requested." if stopped else "already finished."))
        return 0
    cross_options = (
        args.top is not None or args.genotype or args.seeds is not None or args.settings is not None or args.random
    )
    if args.resume and args.restart:
        raise UserError("--resume and --restart exclude each other: finish the run, or start afresh.")
    if args.cross_eval is not None:
        if args.restart:
            raise UserError("--restart goes with --config (a search); a cross-eval finishes with --resume.")
        if args.config is not None or args.set:
            raise UserError("--cross-eval EXPERIMENT takes no --config or --set (it reads the experiment's own).")
        if not args.storage:
            raise UserError("--cross-eval needs --storage: the search's storage, reachable from every node.")
        if not args.resume and args.top is None and not args.genotype and not args.random:
            raise UserError(
                "--cross-eval needs --top N, --genotype HASH|JSON|baseline and/or --random K (or --resume)."
            )
    elif cross_options:
        raise UserError("--top, --genotype, --seeds, --settings and --random go with --cross-eval EXPERIMENT.")
    elif args.config is None:
        raise UserError("give --config CONFIG.yaml, --cross-eval EXPERIMENT or --stop JOB_ID.")
    elif not args.config.is_file():
        raise UserError(f"config {args.config} does not exist.")
    if args.working_dir is not None and not args.working_dir.is_dir():
        raise UserError(f"--working-dir {args.working_dir} is not a folder.")
    try:
        client = make_client(address, token)
        if args.cross_eval is not None:
            submission = submit_cross_eval(
                address=address,
                token=token,
                storage=args.storage,
                experiment=args.cross_eval,
                top=args.top,
                genotypes=args.genotype,
                seeds=1 if args.seeds is None else args.seeds,
                settings=args.settings,
                random=args.random,
                resume=args.resume,
                working_dir=args.working_dir,
                pip_install_project=args.pip_install,
                client=client,
            )
        else:
            submission = submit_search(
                address=address,
                token=token,
                config=args.config,
                overrides=args.set,
                storage=args.storage,
                resume=args.resume,
                restart=args.restart,
                working_dir=args.working_dir,
                pip_install_project=args.pip_install,
                client=client,
            )
    except UserError:
        raise
    except Exception as error:
        raise _job_client_error(error, address) from None
    console.print(f"Submitted job [bold]{submission.job_id}[/] to {address}")
    console.print(f"  entrypoint: {escape(redact(submission.entrypoint, token))}")
    console.print(f"  dashboard:  {address.rstrip('/')}/#/jobs/{submission.job_id}")
    if not args.storage:
        console.print(
            "[yellow]  no --storage: results go to the config's tune.storage as seen from the job's "
            "working directory on the head node; pass a shared path or URI for multi-node runs.[/]"
        )
    if not args.wait:
        console.print(f"  follow: sernas submit --address {address} --wait ... or ray job logs -f {submission.job_id}")
        return 0
    try:
        status = follow_job(
            client, submission.job_id, write=lambda text: (sys.stdout.write(redact(text, token)), sys.stdout.flush())
        )
    except KeyboardInterrupt:
        error_console.print(
            f"stopped following; the job keeps running (stop it: sernas submit --stop {submission.job_id})"
        )
        return 130
    console.print(f"Job {submission.job_id} {status}.")
    return 0 if status == "SUCCEEDED" else 1


# ---------------------------------------------------------------------------------------- cluster
def cmd_cluster_local(args: argparse.Namespace) -> int:
    from cluster.auth import ensure_token
    from cluster.local import LocalClusterError, start_local_cluster

    token, created = ensure_token()
    try:
        cluster = start_local_cluster(
            workers=args.workers,
            token=token,
            cpus_per_node=args.cpus_per_node,
            base_port=args.base_port,
            dashboard_port=args.dashboard_port,
            state_path=args.state,
            gpus=args.gpus,
        )
    except (ValueError, LocalClusterError) as error:
        raise UserError(str(error)) from None
    console.print(
        f"Local Ray cluster: head + {args.workers} worker node(s), {args.cpus_per_node} CPU(s) each, "
        f"{cluster.nodes[0].num_gpus} GPU(s) on the head only, on 127.0.0.1 (temp dir {cluster.temp_dir})."
    )
    console.print(
        f"  address:   {cluster.gcs_address}   (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 sernas search --address "
        f"{cluster.gcs_address}: a driver outside a job must keep to loopback too, see docs/cluster.md)"
    )
    console.print(f"  dashboard: {cluster.dashboard_url}")
    console.print(
        f"  token:     {'created in ' if created else 'from '}{escape(token.source)} (never printed; "
        "`ray job submit` reads it from there too, with RAY_AUTH_MODE=token)"
    )
    console.print(f"  submit:    sernas submit --address {cluster.dashboard_url} --config configs/demo.yaml --wait")
    console.print(f"  stop:      sernas cluster stop{'' if args.state == base_state() else f' --state {args.state}'}")
    return 0


def cmd_cluster_stop(args: argparse.Namespace) -> int:
    from cluster.local import LocalClusterError, stop_local_cluster

    try:
        count = stop_local_cluster(args.state)
    except (FileNotFoundError, ValueError, LocalClusterError) as error:
        raise UserError(str(error)) from None
    console.print(f"Stopped the local cluster of {args.state} ({count} process(es)).")
    return 0


def base_state() -> Path:
    from cluster.local import DEFAULT_STATE

    return DEFAULT_STATE


# ------------------------------------------------------------------------------------------- main
def register(commands: Subcommands) -> None:
    """Add ``submit`` and ``cluster local/stop``."""
    state_help = "state file of `sernas cluster local` (default runs/cluster/local.json)"

    submit = commands.add_parser("submit", help="submit `sernas search` (or `sernas cross-eval`) to a Ray cluster")
    submit.add_argument(
        "--address",
        default=None,
        help="job server URL (default: $RAY_API_SERVER_ADDRESS, the local cluster, or http://127.0.0.1:8265)",
    )
    submit.add_argument("--config", type=Path, default=None, help="experiment YAML (see configs/)")
    submit.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    submit.add_argument("--storage", default=None, help="results path or URI reachable from every node")
    submit.add_argument(
        "--cross-eval", default=None, metavar="EXPERIMENT", help="submit `sernas cross-eval` of this experiment instead"
    )
    submit.add_argument("--top", type=int, default=None, help="with --cross-eval: the N best genotypes by validation")
    submit.add_argument(
        "--genotype", action="append", default=[], help="with --cross-eval: also this genotype (repeatable)"
    )
    submit.add_argument("--seeds", type=int, default=None, help="with --cross-eval: seeds per genotype and fold")
    submit.add_argument(
        "--random", type=int, default=None, metavar="K", help="with --cross-eval: also K random-architecture controls"
    )
    submit.add_argument(
        "--settings",
        choices=CROSS_EVAL_SETTINGS,
        default=None,
        help="with --cross-eval: what the candidates train under (as sernas cross-eval --settings; default base)",
    )
    submit.add_argument("--resume", action="store_true", help="finish the interrupted search (or cross-eval)")
    add_restart_option(
        submit,
        help="the search's experiment name already has results: start afresh, the old run archived or removed "
        "(as sernas search --restart)",
    )
    submit.add_argument("--wait", action="store_true", help="follow the logs; exit 0 if the job succeeded, else 1")
    submit.add_argument("--stop", default=None, metavar="JOB_ID", help="stop a submitted job")
    submit.add_argument(
        "--working-dir",
        type=Path,
        default=None,
        help="folder uploaded as the job's working dir (default: the project root or cwd)",
    )
    submit.add_argument(
        "--pip-install",
        action="store_true",
        help="pip install the uploaded project in the job's env (cluster image without sernas)",
    )
    submit.add_argument("--state", type=Path, default=base_state(), help=state_help)
    submit.set_defaults(handler=cmd_submit)

    cluster = commands.add_parser("cluster", help="a head and worker nodes on this machine (loopback)")
    actions = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    local = actions.add_parser("local", help="start a head and N worker nodes on 127.0.0.1")
    local.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    local.add_argument("--cpus-per-node", type=int, default=1)
    local.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="GPUs the head advertises (default: those torch detects); worker nodes get none, since they share "
        "this machine's GPUs",
    )
    local.add_argument("--base-port", type=int, default=46380, help="GCS port; the other ports follow it")
    local.add_argument("--dashboard-port", type=int, default=None, help="default: base port + 1")
    local.add_argument("--state", type=Path, default=base_state(), help=state_help)
    local.set_defaults(handler=cmd_cluster_local)
    stop = actions.add_parser("stop", help="stop exactly the processes of `sernas cluster local`")
    stop.add_argument("--state", type=Path, default=base_state(), help=state_help)
    stop.set_defaults(handler=cmd_cluster_stop)


COMMAND_GROUPS: tuple[Register, ...] = (*base.COMMAND_GROUPS, register)
"""Every command of ``sernas``: the orchestrator's groups, then this one."""


def build_parser() -> argparse.ArgumentParser:
    return base.build_parser(groups=COMMAND_GROUPS)


def main(argv: Sequence[str] | None = None) -> int:
    return base.main(argv, groups=COMMAND_GROUPS)


if __name__ == "__main__":
    sys.exit(main())
