"""Keep a one-machine Ray cluster on 127.0.0.1.

Ray binds its GCS, raylets, dashboard agents and runtime-env agents to 127.0.0.1 only when the
node's IP is 127.0.0.1, but ``ray start`` and ``ray.init`` rewrite an explicit loopback
address to the machine's address (``ray._private.services.resolve_ip_for_localhost`` ->
``get_node_ip_address``), so every node of ``sernas cluster local`` used to listen on all
interfaces (17 of its 20 listening sockets, measured with one worker).

Ray 2.60 has one switch that keeps the loopback address: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
makes ``get_node_ip_address`` answer 127.0.0.1 (it exists so that a laptop's Ray never opens a
public port). ``LOOPBACK_ENV`` holds it; the local cluster puts it in its nodes' environment,
so every process Ray spawns (agents, workers, job drivers such as ``sernas search --address
auto``) inherits it. The same switch also makes ``ray start --address`` refuse to add a worker
node, so the nodes are started through ``python -m cluster.loopback start ...``: ``ray start``
with the refusal lifted (and 127.0.0.1 kept as given) in that one process.

Ray 2.60 is pinned in pyproject; ``tests/cluster/test_loopback.py`` lists the sockets that the
cluster's processes listen on, so a Ray upgrade that changes this shows up there. A driver run
by hand against such a cluster needs the variable too (docs/cluster.md).
"""

from __future__ import annotations

import sys

__all__ = ["LOOPBACK", "LOOPBACK_ENV", "ray_start_command"]

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray's "this machine only" switch


def ray_start_command() -> list[str]:
    """The command line prefix of ``ray start`` for a node on 127.0.0.1 (then its options)."""
    return [sys.executable, "-m", "cluster.loopback", "start"]


def _start() -> int:
    """``ray start`` in this process with loopback kept and multi-node allowed."""
    from ray._private import ray_constants, services
    from ray.scripts.scripts import main

    ray_constants.ENABLE_RAY_CLUSTER = True  # lift the worker-node refusal the environment switch brings
    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host if host == LOOPBACK else resolve(host)
    sys.argv[0] = "ray"
    return main()


if __name__ == "__main__":
    sys.exit(_start())
