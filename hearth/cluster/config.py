"""hearth.toml ``[cluster]``: which models the Ray cluster serves, how many replicas each, how
many CPUs a replica takes, and where replicas pull their models from.

```toml
[cluster]
registry = "10.0.0.5:8000"        # where replicas pull models (host:port); default: the head
http = "0.0.0.0:8000"             # where Ray Serve's HTTP proxy listens (head node only)

[cluster.models."gemma3:270m"]
replicas = 2                      # a fixed number, or:
# autoscale = {min = 1, max = 4, target_ongoing_requests = 2}
num_cpus = 1                      # per replica (also its llama.cpp threads)
max_ongoing_requests = 16         # per replica; more wait in the ingress's queue
```

Parsing is pure (no Ray import); every mistake is a ConfigError naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hearth.errors import ConfigError
from hearth.store.names import parse_name

DEFAULT_HTTP = "127.0.0.1:8000"
_CLUSTER_KEYS = frozenset({"registry", "http", "models"})
_MODEL_KEYS = frozenset({"replicas", "autoscale", "num_cpus", "max_ongoing_requests"})
_AUTOSCALE_KEYS = frozenset({"min", "max", "target_ongoing_requests"})


@dataclass(frozen=True)
class Autoscale:
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float


@dataclass(frozen=True)
class ModelDeployment:
    """How one model is deployed: a fixed replica count or autoscaling bounds."""

    model: str
    replicas: int = 1
    autoscale: Autoscale | None = None
    num_cpus: float = 1.0
    max_ongoing_requests: int = 16

    @property
    def threads(self) -> int:
        """llama.cpp threads in each replica: one per CPU it was given (at least one)."""
        return max(1, math.ceil(self.num_cpus))


@dataclass(frozen=True)
class ClusterConfig:
    models: tuple[ModelDeployment, ...]
    registry: str = ""  # "" means the head's own /v2 API at the HTTP address
    http: str = DEFAULT_HTTP

    def deployment(self, model: str) -> ModelDeployment | None:
        return next((m for m in self.models if m.model == model), None)

    @classmethod
    def from_table(cls, table: Mapping[str, object], origin: str = "[cluster]") -> ClusterConfig:
        _no_unknown(table, _CLUSTER_KEYS, origin)
        models = table.get("models", {})
        if not isinstance(models, Mapping) or not models:
            raise ConfigError(
                f'{origin}: list the models to serve, e.g. [cluster.models."gemma3:270m"]'
            )
        parsed = tuple(
            _model(str(name), spec, f'{origin}.models."{name}"') for name, spec in models.items()
        )
        return cls(
            models=parsed,
            registry=_host_port(table.get("registry", ""), f"{origin}.registry", empty=True),
            http=_host_port(table.get("http", DEFAULT_HTTP), f"{origin}.http"),
        )


def _model(name: str, spec: object, origin: str) -> ModelDeployment:
    try:
        parse_name(name)
    except Exception as error:
        raise ConfigError(f"{origin}: {error}") from None
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{origin} must be a table (replicas, autoscale, num_cpus)")
    _no_unknown(spec, _MODEL_KEYS, origin)
    if "replicas" in spec and "autoscale" in spec:
        raise ConfigError(f"{origin}: give either replicas or autoscale, not both")
    autoscale = None
    if "autoscale" in spec:
        autoscale = _autoscale(spec["autoscale"], f"{origin}.autoscale")
    return ModelDeployment(
        model=name,
        replicas=_integer(spec.get("replicas", 1), f"{origin}.replicas", minimum=1),
        autoscale=autoscale,
        num_cpus=_number(spec.get("num_cpus", 1), f"{origin}.num_cpus"),
        max_ongoing_requests=_integer(
            spec.get("max_ongoing_requests", 16), f"{origin}.max_ongoing_requests", minimum=1
        ),
    )


def _autoscale(spec: object, origin: str) -> Autoscale:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{origin} must be a table: {{min=1, max=4, target_ongoing_requests=2}}")
    _no_unknown(spec, _AUTOSCALE_KEYS, origin)
    low = _integer(spec.get("min", 1), f"{origin}.min", minimum=0)
    high = _integer(spec.get("max", max(low, 1)), f"{origin}.max", minimum=1)
    if high < low:
        raise ConfigError(f"{origin}: max ({high}) is below min ({low})")
    target = _number(spec.get("target_ongoing_requests", 2), f"{origin}.target_ongoing_requests")
    return Autoscale(low, high, target)


def _no_unknown(table: Mapping[str, object], known: frozenset[str], origin: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )


def _integer(value: object, origin: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{origin} must be an integer of at least {minimum}, got {value!r}")
    return value


def _number(value: object, origin: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{origin} must be a number above 0, got {value!r}")
    return float(value)


def _host_port(value: object, origin: str, *, empty: bool = False) -> str:
    if empty and value == "":
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{origin} must be host:port, got {value!r}")
    host, _, port = value.rpartition(":")
    if not host or "/" in value or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{origin} must be host:port (no scheme), got {value!r}")
    return value
