"""Hearth on Ray Serve: an ingress deployment (the single-machine app, forwarding generation
requests) and one deployment per served model whose replicas each hold a Hearth engine.

    ingress (head node, 0 CPUs) ──DeploymentHandle + HearthRequestRouter──▶ model deployment
       create_app(settings) + forwarding routes               replicas: ModelReplica (create_app
       /v2 registry API (replicas pull from it)               on the node's own store, num_cpus
       GET /api/cluster/status                                 from [cluster.models."name"])

:func:`build_application` makes the Serve application from ``[cluster]`` (hearth.toml);
:func:`run_cluster` connects to Ray, deploys it and (for ``hearth serve --cluster``) blocks until
SIGTERM or Ctrl-C, then deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hearth.cluster.config import ClusterConfig, ModelDeployment
from hearth.cluster.deployment import ModelReplica, ReplicaSpec
from hearth.cluster.ingress import install_forwarding
from hearth.cluster.status import APP_NAME, BOARD_NAME, BOARD_NAMESPACE, collect_status
from hearth.config import Settings
from hearth.errors import ConfigError

HEAD_RESOURCE = "node:__internal_head__"
INGRESS_NAME = "ingress"
HEALTH_CHECK_PERIOD = 5.0  # seconds between Ray Serve's calls to a replica's check_health


@dataclass(frozen=True)
class IngressSpec:
    database_url: str  # shared with the replicas
    http: str  # host:port the HTTP proxy binds (the app's Host check allows it)


class HearthIngress:
    """The ingress deployment's class (wrapped by ``serve.ingress()``, late-bound: the app is
    built in the replica, on the head node, from that node's settings)."""

    def __init__(self, spec: IngressSpec, handles: dict[str, Any]) -> None:
        settings = Settings.from_env()
        database_url = spec.database_url or settings.database_url
        shared = settings.shared_quotas or bool(spec.database_url)
        self._settings = replace(
            settings, database_url=database_url, host=spec.http, shared_quotas=shared
        )
        self._handles = handles

    def __serve_build_asgi_app__(self) -> FastAPI:
        from hearth.server.app import create_app

        app = create_app(self._settings)
        install_forwarding(app, self._handles)
        app.add_api_route("/api/cluster/status", cluster_status_route, methods=["GET"])
        return app


async def cluster_status_route(request: Request) -> JSONResponse:
    status = await asyncio.to_thread(collect_status)
    return JSONResponse(status.to_json())


def deployment_name(model: str) -> str:
    """A Serve deployment name for ``model`` (Serve names allow no ``:`` or ``/``)."""
    return "model-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", model)


def build_application(settings: Settings, cluster: ClusterConfig, registry: str) -> Any:
    """The Serve application: one deployment per model, and the ingress in front."""
    from ray import serve

    handles = {m.model: _model_deployment(m, settings, registry) for m in cluster.models}
    ingress = serve.deployment(
        name=INGRESS_NAME,
        num_replicas=1,
        ray_actor_options={"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}},
    )(serve.ingress()(HearthIngress))
    return ingress.bind(IngressSpec(settings.database_url, cluster.http), handles)


def _model_deployment(model: ModelDeployment, settings: Settings, registry: str) -> Any:
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from hearth.cluster.ray_router import ROUTER_CLASS

    scaling: dict[str, Any] = {"num_replicas": model.replicas}
    if model.autoscale is not None:
        scaling = {
            "autoscaling_config": {
                "min_replicas": model.autoscale.min_replicas,
                "max_replicas": model.autoscale.max_replicas,
                "target_ongoing_requests": model.autoscale.target_ongoing_requests,
            }
        }
    spec = ReplicaSpec(
        model=model.model,
        threads=model.threads,
        database_url=settings.database_url,
        registry=registry,
        max_seqs=min(settings.max_seqs, model.max_ongoing_requests),
    )
    router = RequestRouterConfig(request_router_class=ROUTER_CLASS)  # type: ignore[arg-type]
    deployment = serve.deployment(
        name=deployment_name(model.model),
        max_ongoing_requests=model.max_ongoing_requests,
        ray_actor_options={"num_cpus": model.num_cpus},
        request_router_config=router,
        health_check_period_s=HEALTH_CHECK_PERIOD,
        **scaling,
    )(ModelReplica)
    return deployment.bind(spec)


def cluster_config(settings: Settings) -> ClusterConfig:
    if not settings.cluster:
        raise ConfigError(
            f"{settings.home / 'hearth.toml'} has no [cluster] table: add one, e.g."
            ' [cluster.models."gemma3:270m"] replicas = 2'
        )
    return ClusterConfig.from_table(settings.cluster, f"{settings.home / 'hearth.toml'} [cluster]")


def check_public_bind(settings: Settings, http: str, insecure_no_auth: bool) -> None:
    """As ``hearth serve`` does: no non-loopback bind while anyone could use it."""
    from hearth.cli.serve import is_loopback, split_host
    from hearth.db import open_database
    from hearth.server.keys import KeyStore

    address, _ = split_host(http)
    if is_loopback(address) or insecure_no_auth:
        return
    if not KeyStore(open_database(settings)).any_active():
        raise ConfigError(
            f"refusing to serve the cluster on {address} with no API keys: create one"
            " (hearth keys create NAME), bind 127.0.0.1, or pass --insecure-no-auth"
        )


def connect(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` (``ray://HOST:PORT``, a GCS
    ``HOST:PORT``, or ``auto`` inside a Ray job)."""
    import logging

    import ray

    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)


def deploy(address: str, settings: Settings, cluster: ClusterConfig) -> str:
    """Deploy Hearth on the cluster; return the URL it answers on."""
    from ray import serve

    connect(address)
    prepare_database(settings)
    host, _, port = cluster.http.rpartition(":")
    serve.start(http_options={"host": host, "port": int(port), "location": "HeadOnly"})
    registry = cluster.registry or f"{_reachable_host(host)}:{port}"
    app = build_application(settings, cluster, registry)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{_reachable_host(host)}:{port}"


def prepare_database(settings: Settings) -> None:
    """Create the shared database's tables once, here, before the replicas start: each
    process creates them on first use otherwise, and on PostgreSQL two racing CREATE TABLEs
    fail one of the first requests."""
    if not settings.database_url:
        return
    import hearth.server.app  # noqa: F401  # every table registers itself on Base.metadata
    from hearth.db import Base, open_database

    engine = open_database(settings)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def _reachable_host(bind: str) -> str:
    """Where other nodes reach the head's HTTP proxy bound to ``bind``."""
    if bind not in ("0.0.0.0", "::", ""):
        return bind
    import ray

    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if HEAD_RESOURCE in node.get("Resources", {}) and node.get("Alive"):
            return str(node["NodeManagerAddress"])
    return "127.0.0.1"


def undeploy() -> None:
    """Delete the application and the status board (replicas flush their usage first)."""
    import ray
    from ray import serve

    serve.delete(APP_NAME)
    with contextlib.suppress(ValueError):  # never created
        ray.kill(ray.get_actor(BOARD_NAME, namespace=BOARD_NAMESPACE))


def run_cluster(
    address: str, settings: Settings, insecure_no_auth: bool, on_ready: Callable[[str], None]
) -> None:
    """``hearth serve --cluster ADDRESS``: deploy, tell ``on_ready`` the URL, then wait for
    SIGTERM or Ctrl-C and delete the application."""
    cluster = cluster_config(settings)
    check_public_bind(settings, cluster.http, insecure_no_auth)
    on_ready(deploy(address, settings, cluster))
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        undeploy()
