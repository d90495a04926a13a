"""A head and N worker nodes on loopback, for trying the cluster path on one machine.

Every node is a ``ray start`` run in its own process group (``start_new_session``), with
explicit non-default ports and a dedicated temp dir, so it never clashes with, and
``stop_local_cluster`` never touches, any other Ray on the machine (``ray stop`` would kill
them all). Worker nodes on the same machine join the head's GCS on 127.0.0.1, each with its own temp dir under the head's (``<temp>/w1`` ...): with
one shared temp dir the nodes' runtime-env agents share ``runtime_resources/`` and a worker
node deletes the job's working dir under the driver's feet when its last trial ends.

Port layout from ``base_port`` (default 46380): head GCS ``base``, dashboard ``base+1`` (or
``dashboard_port``), client server ``base+2``; node ``i`` (0 = head) uses
``base+10+10*i .. base+15+10*i`` for its node manager, object manager, dashboard agent
(HTTP, gRPC), runtime-env agent and metrics, and ``base+200+100*i .. +99`` for its workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cluster.auth import AUTH_MODE_ENV, Token
from cluster.loopback import LOOPBACK, LOOPBACK_ENV
from cluster.loopback import ray_start_command as loopback_start_command

DEFAULT_STATE = Path("runs") / "cluster" / "local.json"
DEFAULT_BASE_PORT = 46380
MAX_WORKERS = 16
WORKER_PORTS_PER_NODE = 100


class LocalClusterError(RuntimeError):
    """The local cluster could not be started or stopped as asked."""


@dataclass
class NodeRecord:
    role: str  # "head" or "worker"
    pgid: int  # process group of its `ray start` (= that process's pid)
    ports: dict[str, int]
    num_cpus: int
    num_gpus: int = 0  # the head gets this machine's GPUs, worker nodes none (see node_gpus)


def detected_gpus() -> int:
    """CUDA devices torch sees on this machine (0 without a working CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def node_gpus(index: int, head_gpus: int) -> int:
    """GPUs node ``index`` advertises: all nodes of a local cluster share one machine, so its
    GPUs go to the head (index 0) only; otherwise each node would advertise the same physical
    GPU(s) and Ray would place (nodes) x as many GPU trials as they can hold."""
    return head_gpus if index == 0 else 0


@dataclass
class LocalCluster:
    temp_dir: str
    host: str
    gcs_address: str
    dashboard_url: str
    base_port: int
    nodes: list[NodeRecord] = field(default_factory=list)
    started_at: float = 0.0
    token_source: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LocalCluster:
        data = json.loads(text)
        data["nodes"] = [NodeRecord(**node) for node in data.get("nodes", [])]
        return cls(**data)


def node_ports(base_port: int, index: int) -> dict[str, int]:
    first = base_port + 10 + 10 * index
    workers = base_port + 200 + WORKER_PORTS_PER_NODE * index
    return {
        "node_manager": first,
        "object_manager": first + 1,
        "agent_listen": first + 2,
        "agent_grpc": first + 3,
        "runtime_env_agent": first + 4,
        "metrics_export": first + 5,
        "min_worker": workers,
        "max_worker": workers + WORKER_PORTS_PER_NODE - 1,
    }


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def planned_ports(base_port: int, workers: int, dashboard_port: int) -> list[int]:
    ports = [base_port, dashboard_port, base_port + 2]
    for index in range(workers + 1):
        layout = node_ports(base_port, index)
        ports += [v for k, v in layout.items() if k not in ("min_worker", "max_worker")]
        ports += [layout["min_worker"], layout["max_worker"]]  # spot checks of the range
    return ports


def _ray_executable() -> str:
    """The ``ray`` script next to this Python (so the nodes run the same environment)."""
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


def ray_start_command(host: str) -> list[str]:
    """``ray start`` for a node on ``host``; on 127.0.0.1 through ``cluster.loopback``, which keeps
    Ray from rewriting the address to the machine's (and so from listening on all interfaces)."""
    return loopback_start_command() if host == LOOPBACK else [_ray_executable(), "start"]


def _node_env(token: Token, *, host: str) -> dict[str, str]:
    env = dict(os.environ)
    if host == LOOPBACK:
        env.update(LOOPBACK_ENV)  # every process of the nodes, job drivers included, stays on 127.0.0.1
    env[AUTH_MODE_ENV] = "token"  # explicit: the cluster never starts without authentication
    env["RAY_AUTH_TOKEN"] = token.value  # inherited by job drivers, which then join with it
    env.pop("RAY_ADDRESS", None)
    # Job entrypoints (`sernas search ...`) must find this environment's console scripts.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _run_ray_start(args: list[str], *, host: str, env: dict[str, str], log: Path, timeout: float) -> int:
    """Run ``ray start ...`` in a new process group; returns that group's id."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*ray_start_command(host), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid, grace=2.0)
            raise LocalClusterError(f"`ray start` did not finish in {timeout:.0f} s (log: {log}).") from None
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        _kill_group(process.pid, grace=2.0)
        raise LocalClusterError(
            f"`ray start {' '.join(args[:2])}` failed with exit code {code} (log: {log}):\n" + "\n".join(tail)
        )
    return process.pid


def _wait_dashboard(url: str, token: Token, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"{url}/api/version", headers=token.headers())
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LocalClusterError(f"the dashboard at {url} did not answer within {timeout:.0f} s.")
        time.sleep(0.3)


def _alive_nodes(payload: object) -> int:
    """Count node records with state ALIVE anywhere in a state-API JSON answer."""
    if isinstance(payload, dict):
        own = 1 if payload.get("state") == "ALIVE" and "node_id" in payload else 0
        return own + sum(_alive_nodes(value) for value in payload.values())
    if isinstance(payload, list):
        return sum(_alive_nodes(item) for item in payload)
    return 0


def _wait_nodes(url: str, token: Token, *, count: int, timeout: float) -> None:
    """Wait until ``count`` nodes are alive, so the first job already sees every worker."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"{url}/api/v0/nodes?limit=1000", headers=token.headers())
    alive = 0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                alive = _alive_nodes(json.loads(response.read()))
                if alive >= count:
                    return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise LocalClusterError(
                f"only {alive} of {count} nodes joined the cluster at {url} within {timeout:.0f} s."
            )
        time.sleep(0.5)


def start_local_cluster(
    *,
    workers: int,
    token: Token,
    cpus_per_node: int = 1,
    base_port: int = DEFAULT_BASE_PORT,
    dashboard_port: int | None = None,
    state_path: Path = DEFAULT_STATE,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
    gpus: int | None = None,
) -> LocalCluster:
    """Start a head and ``workers`` worker nodes; writes ``state_path`` and returns what it wrote.

    ``gpus``: GPUs the head advertises (default: ``detected_gpus()``); worker nodes get none.
    """
    gpus = detected_gpus() if gpus is None else gpus
    if gpus < 0:
        raise ValueError(f"gpus must be >= 0, but got {gpus}.")
    if workers < 0 or workers > MAX_WORKERS:
        raise ValueError(f"workers must be in 0..{MAX_WORKERS}, but got {workers}.")
    if cpus_per_node < 1:
        raise ValueError(f"cpus_per_node must be >= 1, but got {cpus_per_node}.")
    dashboard_port = dashboard_port or base_port + 1
    top = base_port + 200 + WORKER_PORTS_PER_NODE * (workers + 1)
    if base_port < 1024 or top > 65535:
        raise ValueError(f"base port must leave room for {workers + 1} nodes in 1024..65535, but got {base_port}.")
    state_path = Path(state_path)
    if state_path.exists():
        raise LocalClusterError(
            f"{state_path} already describes a running local cluster; stop it first "
            f"(sernas cluster stop --state {state_path})."
        )
    busy = [port for port in planned_ports(base_port, workers, dashboard_port) if not port_is_free(port)]
    if busy:
        raise LocalClusterError(f"port(s) {', '.join(map(str, busy))} are in use; choose another --base-port.")

    temp_dir = tempfile.mkdtemp(prefix="sernas-ray-", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = _node_env(token, host=host)
    cluster = LocalCluster(
        temp_dir=temp_dir,
        host=host,
        gcs_address=f"{host}:{base_port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        base_port=base_port,
        started_at=time.time(),
        token_source=token.source,
    )
    state_path.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every node, so a failure half-way can still be stopped
        state_path.write_text(cluster.to_json())

    common = ["--node-ip-address", host, "--num-cpus", str(cpus_per_node), "--disable-usage-stats"]
    try:
        for index in range(workers + 1):
            ports = node_ports(base_port, index)
            args = (
                [
                    "--head",
                    "--port",
                    str(base_port),
                    "--dashboard-host",
                    "127.0.0.1",
                    "--dashboard-port",
                    str(dashboard_port),
                    "--ray-client-server-port",
                    str(base_port + 2),
                    "--temp-dir",
                    temp_dir,
                ]
                if index == 0
                else ["--address", cluster.gcs_address, "--temp-dir", str(Path(temp_dir) / f"w{index}")]
            )
            args += [
                *common,
                "--num-gpus",
                str(node_gpus(index, gpus)),
                "--node-manager-port",
                str(ports["node_manager"]),
                "--object-manager-port",
                str(ports["object_manager"]),
                "--dashboard-agent-listen-port",
                str(ports["agent_listen"]),
                "--dashboard-agent-grpc-port",
                str(ports["agent_grpc"]),
                "--runtime-env-agent-port",
                str(ports["runtime_env_agent"]),
                "--metrics-export-port",
                str(ports["metrics_export"]),
                "--min-worker-port",
                str(ports["min_worker"]),
                "--max-worker-port",
                str(ports["max_worker"]),
            ]
            role = "head" if index == 0 else "worker"
            pgid = _run_ray_start(
                args, host=host, env=env, log=Path(temp_dir) / f"ray-start-{role}-{index}.log", timeout=timeout
            )
            all_ports = dict(
                ports,
                **({"gcs": base_port, "dashboard": dashboard_port, "client": base_port + 2} if index == 0 else {}),
            )
            cluster.nodes.append(
                NodeRecord(
                    role=role, pgid=pgid, ports=all_ports, num_cpus=cpus_per_node, num_gpus=node_gpus(index, gpus)
                )
            )
            save()
            if index == 0:
                _wait_dashboard(cluster.dashboard_url, token, timeout=timeout)
        _wait_nodes(cluster.dashboard_url, token, count=workers + 1, timeout=timeout)
    except BaseException:
        if state_path.exists():  # absent when the head itself did not start
            stop_local_cluster(state_path)
        raise
    return cluster


# ------------------------------------------------------------------------------------------ stop
def _proc_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[0]


def _pgid_of(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[2])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _live_pids() -> list[int]:
    return [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _proc_state(int(p.name)) not in (None, "Z")
    ]


def cluster_processes(cluster: LocalCluster) -> list[int]:
    """Live (non-zombie) processes of this cluster: members of its nodes' process groups, plus any
    process whose command line names its temp dir (a node that changed group)."""
    groups = {node.pgid for node in cluster.nodes}
    marker = cluster.temp_dir.rstrip("/") + "/"
    own = os.getpid()
    return [
        pid
        for pid in _live_pids()
        if pid != own
        and (_pgid_of(pid) in groups or marker in _cmdline(pid) or _cmdline(pid).rstrip().endswith(cluster.temp_dir))
    ]


def _group_is_ours(pgid: int, cluster: LocalCluster) -> bool:
    """A recorded group id is only signalled while one of its members still names our temp dir
    (or is the `ray start` itself), so a reused id never hits a stranger."""
    for pid in _live_pids():
        if _pgid_of(pid) == pgid and cluster.temp_dir in _cmdline(pid):
            return True
    return False


def _kill_group(pgid: int, *, grace: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not any(_pgid_of(pid) == pgid for pid in _live_pids()):
                return
            time.sleep(0.1)


def stop_cluster(cluster: LocalCluster, *, grace: float = 5.0) -> int:
    """Stop exactly the processes of ``cluster``; returns how many were running."""
    pids = cluster_processes(cluster)
    count = len(pids)
    signalled = [node.pgid for node in reversed(cluster.nodes) if _group_is_ours(node.pgid, cluster)]
    for pgid in signalled:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and cluster_processes(cluster):
        time.sleep(0.2)
    for pid in cluster_processes(cluster):  # whatever ignored SIGTERM
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and cluster_processes(cluster):
        time.sleep(0.1)
    left = cluster_processes(cluster)
    if left:
        raise LocalClusterError(f"processes {left} of the cluster in {cluster.temp_dir} are still running.")
    return count


def read_state(state_path: Path) -> LocalCluster:
    state_path = Path(state_path)
    if not state_path.is_file():
        raise FileNotFoundError(f"no local cluster state at {state_path} (start one with sernas cluster local).")
    try:
        return LocalCluster.from_json(state_path.read_text())
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{state_path} is not a local cluster state file ({error}).") from None


def stop_local_cluster(state_path: Path = DEFAULT_STATE, *, remove_temp_dir: bool = True) -> int:
    """Stop the cluster described by ``state_path``, then remove the state file (and its temp dir)."""
    cluster = read_state(state_path)
    count = stop_cluster(cluster)
    Path(state_path).unlink(missing_ok=True)
    if remove_temp_dir and Path(cluster.temp_dir).name.startswith("sernas-ray-"):
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    return count
