"""A real Ray cluster on loopback for the ray driver's tests: a head and two worker nodes.

Every node gets ``node_ip_address=127.0.0.1`` (and ``RAY_NODE_IP_ADDRESS``), or Ray would bind
the machine's network address; the workers advertise fake GPUs, a custom resource and a label.
One cluster per test module (a few seconds to start on 2 cores). Without ray installed the
tests are skipped, unless ``SWAPD_REQUIRE_RAY=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

if os.environ.get("SWAPD_REQUIRE_RAY") == "1":
    import ray  # noqa: F401 - CI: missing is a failure, not a skip
pytest.importorskip("ray")

LOOPBACK = "127.0.0.1"


@dataclass
class Lab:
    """The running cluster: its GCS address and the worker nodes (``w1``, ``w2``)."""

    cluster: Any  # ray.cluster_utils.Cluster
    address: str
    nodes: dict[str, Any]  # label value -> ray._private.node.Node

    def node_id(self, name: str) -> str:
        return str(self.nodes[name].node_id)

    def add(self, name: str, **resources: float) -> Any:
        """Add a worker node labelled ``name`` with these custom resources."""
        node = self.cluster.add_node(
            node_ip_address=LOOPBACK,
            num_cpus=1,
            resources=resources,
            labels={"swapd-node": name},
            include_dashboard=False,
        )
        self.nodes[name] = node
        return node

    def remove(self, name: str) -> None:
        self.cluster.remove_node(self.nodes.pop(name))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    from ray.cluster_utils import Cluster

    saved = os.environ.get("RAY_NODE_IP_ADDRESS")
    os.environ["RAY_NODE_IP_ADDRESS"] = LOOPBACK
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "node_ip_address": LOOPBACK,
            "num_cpus": 1,
            "include_dashboard": False,
        },
    )
    lab = Lab(cluster, cluster.address, {})
    try:
        for name, gpus in (("w1", 2), ("w2", 1)):
            node = cluster.add_node(
                node_ip_address=LOOPBACK,
                num_cpus=1,
                num_gpus=gpus,
                resources={name: 1},
                labels={"swapd-node": name},
                include_dashboard=False,
            )
            lab.nodes[name] = node
        yield lab
    finally:
        cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_NODE_IP_ADDRESS", None)
        else:
            os.environ["RAY_NODE_IP_ADDRESS"] = saved
