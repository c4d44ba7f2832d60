"""`hearth serve`: the OpenAI-compatible API on HEARTH_HOST (default 127.0.0.1:11435)."""

from __future__ import annotations

import dataclasses
import ipaddress
import signal
from types import FrameType
from typing import Annotated

import typer

from hearth.cli.console import err
from hearth.config import get_settings
from hearth.errors import ConfigError


def serve(
    host: Annotated[
        str | None, typer.Option(help="host:port to bind (default HEARTH_HOST)")
    ] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Allow a non-loopback bind without API keys")
    ] = False,
    cluster: Annotated[
        str | None,
        typer.Option(help="Serve on a Ray cluster: ray://HEAD:10001, HEAD:6379, or auto"),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API."""
    import uvicorn

    from hearth.db import open_database
    from hearth.server.app import create_app
    from hearth.server.keys import KeyStore

    settings = get_settings()
    if cluster is not None:  # replicas on Ray Serve; hearth.toml [cluster] says what to serve
        from hearth.cluster.serve import run_cluster

        run_cluster(cluster, settings, insecure_no_auth, lambda url: err.print(f"[dim]{url}[/]"))
        return
    address, port = split_host(host or settings.host)
    public = not is_loopback(address) and not insecure_no_auth
    if public and not KeyStore(open_database(settings)).any_active():
        raise ConfigError(
            f"refusing to bind {address} with no API keys: anyone on the network could use"
            " it. Create one (hearth keys create NAME), bind 127.0.0.1, or pass"
            " --insecure-no-auth"
        )
    err.print(f"[dim]Hearth listening on http://{address}:{port} (OpenAI API under /v1)[/]")
    if address in ("0.0.0.0", "::") and not settings.allowed_hosts:
        err.print(
            "[yellow]Only loopback Host names are answered (DNS-rebinding defence): set"
            " HEARTH_ALLOWED_HOSTS to the names clients use, or * for any[/]"
        )
    # On SIGTERM uvicorn stops accepting, lets in-flight requests run for the timeout, then
    # cancels them (which aborts their engine requests); the app's shutdown flushes usage.
    config = uvicorn.Config(
        create_app(dataclasses.replace(settings, host=host or settings.host)),  # Host check
        host=address,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )
    _graceful_server_class()(config).run()


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT once its graceful shutdown is done, so the process
        would end "killed by signal"; a completed graceful shutdown is a success: exit 0."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            if sig in (signal.SIGTERM, signal.SIGINT) and sig in self._captured_signals:
                self._captured_signals.remove(sig)

    return GracefulServer


def split_host(value: str) -> tuple[str, int]:
    address, _, port = value.rpartition(":")
    if not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"HEARTH_HOST must be host:port, got {value!r}")
    return address.strip("[]"), int(port)


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
