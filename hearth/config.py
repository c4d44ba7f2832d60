"""Every setting Hearth reads, in one place.

No other module reads ``os.environ``; they receive a :class:`Settings` (usually from
:func:`get_settings`). Each environment variable is listed in :data:`ENVIRONMENT` with its
default and meaning, and ``hearth env`` prints that table.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hearth.errors import ConfigError, ValidationError
from hearth.units import parse_duration, parse_keep_alive, parse_size

_Getter = Callable[[str], str]


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    help: str


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("HEARTH_HOME", "~/.hearth", "Store root: blobs/, manifests/, hearth.db, hearth.toml."),
    EnvVar("HEARTH_HOST", "127.0.0.1:11435", "Address `hearth serve` binds and the client calls."),
    EnvVar(
        "HEARTH_ALLOWED_HOSTS",
        "",
        "Comma-separated host names (or `*.example.com`) the server answers in the Host header,"
        " besides loopback names and the bind address; anything else gets 421 (DNS-rebinding"
        " defence). Bound to 0.0.0.0 or ::, list the names clients use, or `*` to accept any.",
    ),
    EnvVar("HEARTH_THREADS", "0", "llama.cpp threads per model; 0 means one per CPU core."),
    EnvVar("HEARTH_CONTEXT", "4096", "Context length (tokens) per sequence; capped by the model."),
    EnvVar("HEARTH_MAX_SEQS", "16", "Sequences one loaded model decodes together."),
    EnvVar("HEARTH_BATCH", "512", "Token budget of one engine step (prompt chunks + decodes)."),
    EnvVar("HEARTH_CACHE_SEQS", "4", "Finished sequences kept per model for prefix-cache reuse."),
    EnvVar("HEARTH_MAX_QUEUE", "256", "Requests that may wait per model before 'queue full'."),
    EnvVar("HEARTH_LOG_LEVEL", "WARNING", "Log level: DEBUG, INFO, WARNING, ERROR."),
    EnvVar("HEARTH_LLAMA_LOG", "0", "1 lets llama.cpp print its own (verbose) log to stderr."),
    EnvVar(
        "HEARTH_MAX_MEMORY",
        "50%",
        "Memory budget for loaded models: bytes, a size (512M, 8G) or a percentage of RAM"
        " (the smaller of physical RAM and the cgroup limit). Idle models are unloaded, least"
        " recently used first, to make room; a model that cannot fit is refused.",
    ),
    EnvVar(
        "HEARTH_KEEP_ALIVE",
        "5m",
        "How long an idle model stays loaded: seconds or a duration (30s, 5m, 1h);"
        " 0 unloads as soon as it is idle, a negative value keeps it loaded forever."
        " A request's keep_alive overrides it for that model.",
    ),
    EnvVar(
        "HEARTH_API_KEY",
        "",
        "API key the CLI sends to a running server (needed once the server has keys).",
    ),
    EnvVar(
        "HEARTH_SHUTDOWN_TIMEOUT",
        "30",
        "Seconds `hearth serve` lets in-flight requests finish after SIGTERM before it aborts"
        " them; usage records are flushed either way.",
    ),
    EnvVar(
        "HEARTH_DATABASE_URL",
        "sqlite:///$HEARTH_HOME/hearth.db",
        "SQLAlchemy URL of the database holding API keys and usage records, e.g."
        " postgresql+psycopg://user:pass@host/hearth (needs the `postgres` extra).",
    ),
    EnvVar(
        "HEARTH_SHARED_QUOTAS",
        "0",
        "1 keeps rate limits and quotas in the database (HEARTH_DATABASE_URL), so every server"
        " process on it enforces them together; 0 counts in each process's memory.",
    ),
    EnvVar(
        "HEARTH_REGISTRY_AUTH",
        "",
        "Credentials for OCI registries (pull/push): `user:password`, or a bare token (a Hearth"
        " API key for another Hearth). Sent only when a registry asks (401); overrides"
        " HEARTH_DOCKER_CONFIG.",
    ),
    EnvVar(
        "HEARTH_FINETUNE_JOBS",
        "1",
        "Fine-tuning jobs that may train at once on this machine; more wait, queued (training"
        " beside another job or a decoding model on the same cores slows both many times).",
    ),
    EnvVar(
        "HEARTH_FINETUNE_THREADS",
        "0",
        "CPU threads a fine-tune trains with; 0 means torch's default (one per core). Set it"
        " below the core count to leave cores to a server running beside it.",
    ),
    EnvVar(
        "HEARTH_RESPONSES_TTL",
        "1h",
        "How long /v1/responses keeps a response (in memory) for GET and previous_response_id:"
        " seconds or a duration (30m, 1h); 0 keeps none.",
    ),
    EnvVar(
        "HEARTH_DOCKER_CONFIG",
        "~/.docker/config.json",
        "Docker's config file; its `auths` entries (from `docker login`) are registry credentials.",
    ),
)

_DEFAULTS = {var.name: var.default for var in ENVIRONMENT}
_CGROUP_MEMORY_MAX = "/sys/fs/cgroup/memory.max"


@dataclass(frozen=True)
class Settings:
    home: Path
    host: str
    threads: int
    context: int
    max_seqs: int
    batch: int
    cache_seqs: int
    max_queue: int
    log_level: str
    llama_log: bool
    max_memory: int = 0  # bytes; from_env always sets it
    keep_alive: float = 300.0  # seconds; math.inf keeps models loaded forever
    database_url: str = ""  # "" means SQLite in HEARTH_HOME; see effective_database_url
    shutdown_timeout: int = 30
    api_key: str = ""
    aliases: Mapping[str, str] = field(default_factory=dict)  # from hearth.toml [aliases]
    policy: Mapping[str, object] = field(default_factory=dict)  # hearth.toml [policy], raw
    safety: Mapping[str, object] = field(default_factory=dict)  # hearth.toml [safety], raw
    cluster: Mapping[str, object] = field(default_factory=dict)  # hearth.toml [cluster], raw
    registry_auth: str = ""  # HEARTH_REGISTRY_AUTH
    docker_config: Path = Path("~/.docker/config.json")
    finetune_jobs: int = 1  # HEARTH_FINETUNE_JOBS
    finetune_threads: int = 0  # HEARTH_FINETUNE_THREADS; 0: torch's default
    responses_ttl: float = 3600.0  # HEARTH_RESPONSES_TTL, seconds; 0 keeps none
    hardware: Hardware | None = None  # hearth.toml [hardware]: what this machine costs
    shared_quotas: bool = False  # HEARTH_SHARED_QUOTAS: quota counters in the database
    allowed_hosts: tuple[str, ...] = ()  # HEARTH_ALLOWED_HOSTS, lower case; ("*",) allows any

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def manifests_dir(self) -> Path:
        return self.home / "manifests"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'hearth.db'}"

    @property
    def effective_threads(self) -> int:
        return self.threads or (os.cpu_count() or 1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env

        def get(name: str) -> str:
            return source.get(name, "") or _DEFAULTS[name]

        return cls(
            home=Path(get("HEARTH_HOME")).expanduser(),
            host=get("HEARTH_HOST"),
            threads=_int(get, "HEARTH_THREADS", minimum=0),
            context=_int(get, "HEARTH_CONTEXT", minimum=16),
            max_seqs=_int(get, "HEARTH_MAX_SEQS", minimum=1),
            batch=_int(get, "HEARTH_BATCH", minimum=1),
            cache_seqs=_int(get, "HEARTH_CACHE_SEQS", minimum=0),
            max_queue=_int(get, "HEARTH_MAX_QUEUE", minimum=0),
            log_level=_choice(get, "HEARTH_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
            llama_log=get("HEARTH_LLAMA_LOG") not in ("0", "false", "no"),
            max_memory=_memory_budget(get),
            keep_alive=_keep_alive(get),
            database_url=_database_url(get),
            shutdown_timeout=_int(get, "HEARTH_SHUTDOWN_TIMEOUT", minimum=0),
            api_key=source.get("HEARTH_API_KEY", ""),
            aliases=load_aliases(Path(get("HEARTH_HOME")).expanduser() / CONFIG_FILE),
            policy=load_policy_table(Path(get("HEARTH_HOME")).expanduser() / CONFIG_FILE),
            safety=load_safety_table(Path(get("HEARTH_HOME")).expanduser() / CONFIG_FILE),
            cluster=load_cluster_table(Path(get("HEARTH_HOME")).expanduser() / CONFIG_FILE),
            registry_auth=source.get("HEARTH_REGISTRY_AUTH", ""),
            docker_config=Path(get("HEARTH_DOCKER_CONFIG")).expanduser(),
            finetune_jobs=_int(get, "HEARTH_FINETUNE_JOBS", minimum=1),
            finetune_threads=_int(get, "HEARTH_FINETUNE_THREADS", minimum=0),
            responses_ttl=_responses_ttl(get),
            hardware=load_hardware(Path(get("HEARTH_HOME")).expanduser() / CONFIG_FILE),
            shared_quotas=get("HEARTH_SHARED_QUOTAS") not in ("0", "false", "no"),
            allowed_hosts=_host_list(source.get("HEARTH_ALLOWED_HOSTS", "")),
        )


CONFIG_FILE = "hearth.toml"


def load_aliases(path: Path) -> dict[str, str]:
    """``[aliases]`` of hearth.toml: names applications use (say, a hosted model's) mapped to
    local models, so switching an application to Hearth only changes its base URL."""
    aliases = _read_toml(path).get("aliases", {})
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in aliases.items()
    ):
        raise ConfigError(f"{path}: [aliases] must map names to model names (strings)")
    return dict(aliases)


def load_policy_table(path: Path) -> dict[str, object]:
    """``[policy]`` of hearth.toml, unvalidated: hearth.license.Policy.from_table checks it."""
    policy = _read_toml(path).get("policy", {})
    if not isinstance(policy, dict):
        raise ConfigError(f"{path}: 'policy' must be a table")
    return policy


HOURS_PER_MONTH = 730.5  # 365.25 * 24 / 12
_HARDWARE_KEYS = frozenset(
    {"cost_per_hour", "purchase_price", "amortisation_months", "watts", "price_per_kwh", "currency"}
)


@dataclass(frozen=True)
class Hardware:
    """What this machine costs to run: ``cost_per_hour`` directly, or an amortised purchase
    price plus power (``watts`` at ``price_per_kwh``), in ``currency``."""

    cost_per_hour: float
    currency: str = "USD"
    basis: str = ""  # how the hourly cost was worked out, for `hearth cost`


def load_hardware(path: Path) -> Hardware | None:
    """``[hardware]`` of hearth.toml, None when absent; ConfigError naming a bad value."""
    table = _read_toml(path).get("hardware")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'hardware' must be a table")
    unknown = sorted(set(table) - _HARDWARE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: [hardware] has unknown keys: {', '.join(unknown)}")
    currency = table.get("currency", "USD")
    if not isinstance(currency, str) or not currency.strip():
        raise ConfigError(f'{path}: [hardware] currency must be a name such as "USD"')
    values = {k: _cost_number(path, k, v) for k, v in table.items() if k != "currency"}
    if "cost_per_hour" in values:
        hourly = values["cost_per_hour"]
        return Hardware(hourly, currency, f"{hourly:g} {currency} per hour")
    return _amortised(path, values, currency)


def _amortised(path: Path, values: dict[str, float], currency: str) -> Hardware:
    if "purchase_price" not in values or not values.get("amortisation_months"):
        raise ConfigError(
            f"{path}: [hardware] needs cost_per_hour, or purchase_price and amortisation_months"
            " (above 0), optionally with watts and price_per_kwh"
        )
    if ("watts" in values) != ("price_per_kwh" in values):
        raise ConfigError(f"{path}: [hardware] watts and price_per_kwh go together")
    machine = values["purchase_price"] / (values["amortisation_months"] * HOURS_PER_MONTH)
    power = values.get("watts", 0.0) / 1000 * values.get("price_per_kwh", 0.0)
    basis = (
        f"{values['purchase_price']:g} {currency} over {values['amortisation_months']:g} months"
        f" + {values.get('watts', 0.0):g} W at {values.get('price_per_kwh', 0.0):g} per kWh"
    )
    return Hardware(machine + power, currency, basis)


def _cost_number(path: Path, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{path}: [hardware] {key} must be a number of at least 0, not {value!r}")
    return float(value)


def load_safety_table(path: Path) -> dict[str, object]:
    """``[safety]`` of hearth.toml, unvalidated: hearth.safety.SafetyConfig.from_table checks it
    (and compiles its patterns) when the server starts."""
    safety = _read_toml(path).get("safety", {})
    if not isinstance(safety, dict):
        raise ConfigError(f"{path}: 'safety' must be a table")
    return safety


def load_cluster_table(path: Path) -> dict[str, object]:
    """``[cluster]`` of hearth.toml, unvalidated: hearth.cluster.config.ClusterConfig checks it."""
    cluster = _read_toml(path).get("cluster", {})
    if not isinstance(cluster, dict):
        raise ConfigError(f"{path}: 'cluster' must be a table")
    return cluster


def _read_toml(path: Path) -> dict[str, object]:
    """The document, {} when the file is absent; ConfigError with the line and column if bad."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None


def _int(get: _Getter, name: str, minimum: int) -> int:
    raw = get(name)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _choice(get: _Getter, name: str, choices: tuple[str, ...]) -> str:
    value = get(name).upper()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _memory_budget(get: _Getter) -> int:
    name = "HEARTH_MAX_MEMORY"
    try:
        budget = parse_size(get(name), name, total=total_memory())
    except ValidationError as error:
        raise ConfigError(f"{name} {error.reason}, got {error.value!r}") from None
    if budget <= 0:
        raise ConfigError(f"{name} must be more than 0 bytes, got {get(name)!r}")
    return budget


def _keep_alive(get: _Getter) -> float:
    name = "HEARTH_KEEP_ALIVE"
    try:
        seconds = parse_keep_alive(get(name))
    except ValidationError as error:
        raise ConfigError(f"{name} {error.reason}, got {error.value!r}") from None
    return 300.0 if seconds is None else seconds


def _responses_ttl(get: _Getter) -> float:
    name = "HEARTH_RESPONSES_TTL"
    try:
        seconds = parse_duration(get(name), name)
    except ValidationError as error:
        raise ConfigError(f"{name} {error.reason}, got {error.value!r}") from None
    if seconds < 0:
        raise ConfigError(f"{name} must not be negative, got {get(name)!r}")
    return seconds


def _host_list(raw: str) -> tuple[str, ...]:
    """HEARTH_ALLOWED_HOSTS: names or addresses without ports (IPv6 brackets dropped)."""
    hosts = tuple(part.strip().lower().strip("[]") for part in raw.split(","))
    for host in hosts:
        if "/" in host or host.count(":") == 1:  # a URL, or name:port (IPv6 has 2 colons)
            raise ConfigError(f"HEARTH_ALLOWED_HOSTS lists host names without ports, got {host!r}")
    return tuple(host for host in hosts if host)


def _database_url(get: _Getter) -> str:
    """The URL as given, or "" for the default (SQLite under HEARTH_HOME)."""
    name = "HEARTH_DATABASE_URL"
    value = get(name).strip()
    return "" if value == _DEFAULTS[name] else value


def total_memory() -> int:
    """Bytes of RAM this process may use: physical RAM, or the cgroup v2 limit if lower."""
    physical = _physical_memory()
    try:
        limit = Path(_CGROUP_MEMORY_MAX).read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ConfigError("cannot tell how much memory this machine has; set HEARTH_MAX_MEMORY")


def get_settings() -> Settings:
    """Settings from the process environment (read each call, so tests can monkeypatch)."""
    return Settings.from_env()
