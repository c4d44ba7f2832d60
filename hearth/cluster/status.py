"""What the cluster is doing: nodes, deployments, and each replica's load and memory.

Replicas report their :class:`~hearth.cluster.deployment.ReplicaStats` every couple of seconds
to a small named Ray actor, the board (no CPU, detached, created by whoever needs it first);
:func:`collect_status` reads the board, Ray Serve's application status and Ray's node table.
``hearth cluster status`` and the ingress's ``GET /api/cluster/status`` both call it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from hearth.cluster.deployment import ReplicaStats

BOARD_NAME = "hearth-cluster-board"
BOARD_NAMESPACE = "hearth"
APP_NAME = "hearth"
STALE_AFTER = 10.0  # seconds: a replica silent this long is gone (killed, or replaced)


class StatusBoard:
    """The latest report of every replica (a Ray actor: see :func:`board`)."""

    def __init__(self) -> None:
        self._reports: dict[str, ReplicaStats] = {}

    def report(self, stats: ReplicaStats) -> None:
        self._reports[stats.replica] = stats

    def snapshot(self) -> list[ReplicaStats]:
        now = time.time()
        self._reports = {k: v for k, v in self._reports.items() if now - v.reported < STALE_AFTER}
        return sorted(self._reports.values(), key=lambda s: (s.deployment, s.replica))


def board() -> Any:
    """The board's actor handle, created on first use (Ray must be initialised)."""
    import ray

    actor = ray.remote(StatusBoard).options(
        name=BOARD_NAME,
        namespace=BOARD_NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
    )
    return actor.remote()


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    address: str
    alive: bool
    head: bool
    cpus: float
    memory_bytes: int


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    status: str
    replicas: int  # replicas running now
    message: str


@dataclass(frozen=True)
class ClusterStatus:
    nodes: list[NodeStatus]
    deployments: list[DeploymentStatus]
    replicas: list[ReplicaStats]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def collect_status() -> ClusterStatus:
    """Read the cluster's state (blocking: call it in a thread from async code)."""
    import ray

    board_handle = board()
    replicas: list[ReplicaStats] = ray.get(board_handle.snapshot.remote(), timeout=10)
    return ClusterStatus(nodes=_nodes(), deployments=_deployments(), replicas=replicas)


def _nodes() -> list[NodeStatus]:
    import ray

    nodes = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        resources = node.get("Resources", {})
        nodes.append(
            NodeStatus(
                node_id=str(node.get("NodeID", "")),
                address=str(node.get("NodeManagerAddress", "")),
                alive=bool(node.get("Alive", False)),
                head="node:__internal_head__" in resources,
                cpus=float(resources.get("CPU", 0.0)),
                memory_bytes=int(resources.get("memory", 0)),
            )
        )
    return sorted(nodes, key=lambda n: (not n.head, n.address, n.node_id))


def _deployments() -> list[DeploymentStatus]:
    from ray import serve

    application = serve.status().applications.get(APP_NAME)
    if application is None:
        return []
    found = []
    for name, deployment in sorted(application.deployments.items()):
        counts = {_text(state): n for state, n in deployment.replica_states.items()}
        found.append(
            DeploymentStatus(
                name=name,
                status=_text(deployment.status),
                replicas=int(counts.get("RUNNING", 0)),
                message=deployment.message,
            )
        )
    return found


def _text(value: object) -> str:
    """An enum member's value, or the string Serve already gave."""
    return str(getattr(value, "value", value))
