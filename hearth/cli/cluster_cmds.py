"""`hearth cluster status`: nodes, deployments and replicas of Hearth on a Ray cluster."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from hearth.cli.console import out
from hearth.cli.store_cmds import human_size


def cluster_status(
    address: Annotated[
        str,
        typer.Option(help="Ray cluster: ray://HEAD:10001, HEAD:6379 (GCS), or auto"),
    ] = "auto",
) -> None:
    """Show the cluster's nodes, deployments, and each replica's load and memory."""
    from hearth.cluster.serve import connect
    from hearth.cluster.status import collect_status

    connect(address)
    status = collect_status()
    nodes = Table("node", "address", "role", "CPUs", "memory", "alive", title="Nodes")
    for node in status.nodes:
        role = "head" if node.head else "worker"
        alive = "yes" if node.alive else "[red]no[/]"
        cpus = f"{node.cpus:g}"
        nodes.add_row(
            node.node_id[:12], node.address, role, cpus, human_size(node.memory_bytes), alive
        )
    deployments = Table("deployment", "status", "running replicas", "message", title="Deployments")
    for deployment in status.deployments:
        deployments.add_row(
            deployment.name, deployment.status, str(deployment.replicas), deployment.message
        )
    replicas = Table(
        "replica",
        "model",
        "node",
        "pid",
        "state",
        "in flight",
        "queued",
        "decoding",
        "memory (RSS)",
        "model memory",
        "last report",
        title="Replicas",
    )
    now = time.time()
    for replica in status.replicas:
        state = (
            "ready"
            if replica.ready
            else (f"[red]{replica.error}[/]" if replica.error else "starting")
        )
        replicas.add_row(
            replica.replica,
            replica.model,
            f"{replica.node_ip} ({replica.node_id[:8]})",
            str(replica.pid),
            state,
            str(replica.ongoing),
            str(replica.waiting),
            str(replica.running),
            human_size(replica.rss_bytes),
            human_size(replica.model_bytes),
            f"{now - replica.reported:.0f}s ago",
        )
    for table in (nodes, deployments, replicas):
        out.print(table)
