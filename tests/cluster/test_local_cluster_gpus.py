"""`sernas cluster local` gives the machine's GPUs to one node only: all its nodes share them."""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest

from cluster.auth import Token
from cluster.cli import main
from cluster.local import LocalCluster, node_gpus, read_state, start_local_cluster
from conftest import free_cluster_base_port


def test_only_the_head_gets_gpus():
    assert [node_gpus(index, 2) for index in range(3)] == [2, 0, 0]


def test_a_state_file_from_before_gpus_were_recorded_still_reads(tmp_path):
    state = tmp_path / "local.json"
    state.write_text(
        json.dumps(
            {
                "temp_dir": "/tmp/sernas-ray-x",
                "host": "127.0.0.1",
                "gcs_address": "127.0.0.1:1",
                "dashboard_url": "http://127.0.0.1:2",
                "base_port": 1,
                "nodes": [{"role": "head", "pgid": 1, "ports": {}, "num_cpus": 1}],
            }
        )
    )
    assert read_state(state).nodes[0].num_gpus == 0


@pytest.mark.slow
def test_a_local_cluster_advertises_gpus_on_the_head_only(tmp_path):
    state = tmp_path / "local.json"
    token = Token(value=secrets.token_hex(32), source="test")
    try:
        cluster: LocalCluster = start_local_cluster(
            workers=1, token=token, cpus_per_node=1, base_port=free_cluster_base_port(), state_path=state, gpus=2
        )
        request = urllib.request.Request(f"{cluster.dashboard_url}/api/v0/nodes?detail=1", headers=token.headers())
        with urllib.request.urlopen(request, timeout=30) as response:
            nodes = json.loads(response.read())["data"]["result"]["result"]
        gpus = {node["is_head_node"]: node["resources_total"].get("GPU", 0) for node in nodes}
        assert gpus == {True: 2, False: 0}
        assert [node.num_gpus for node in read_state(state).nodes] == [2, 0]
    finally:
        if state.exists():
            assert main(["cluster", "stop", "--state", str(state)]) == 0
