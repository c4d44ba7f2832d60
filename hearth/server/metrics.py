"""Prometheus metrics: request counters and latency histograms recorded by the routes, and
engine and model gauges read from the model manager at each scrape."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hearth.engine.engine import EngineStats
from hearth.engine.manager import ModelManager
from hearth.engine.request import Request as EngineRequest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_GAP_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class Metrics:
    def __init__(self, manager: ModelManager) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hearth_requests",
            "Requests answered",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "hearth_prompt_tokens", "Prompt tokens processed", ["model"], registry=self.registry
        )
        self.completion_tokens = Counter(
            "hearth_completion_tokens", "Tokens generated", ["model"], registry=self.registry
        )
        self.ttft = Histogram(
            "hearth_time_to_first_token_seconds",
            "Submission to first token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.token_gap = Histogram(
            "hearth_inter_token_seconds",
            "Time between streamed tokens",
            ["model"],
            buckets=TOKEN_GAP_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(manager))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Observation:
    """Feeds one generation's outputs into the metrics as they stream; when it ends, counts it
    and hands it to the usage sink (streams cut short included: their tokens count)."""

    def __init__(
        self, metrics: Metrics, model: str, endpoint: str, usage: UsageSink | None = None
    ) -> None:
        self._metrics = metrics
        self._model = model
        self._endpoint = endpoint
        self._usage = usage
        self._last: float | None = None

    def output(self, queued: float) -> None:
        now = time.monotonic()
        if self._last is None:
            self._metrics.ttft.labels(self._model).observe(now - queued)
        else:
            self._metrics.token_gap.labels(self._model).observe(now - self._last)
        self._last = now

    def done(self, request: EngineRequest, status: str, error: str | None = None) -> None:
        self._metrics.requests.labels(self._model, self._endpoint, status).inc()
        self._metrics.prompt_tokens.labels(self._model).inc(len(request.prompt_tokens))
        self._metrics.completion_tokens.labels(self._model).inc(len(request.output_tokens))
        if self._usage is not None:
            self._usage(request, self._model, self._endpoint, status, error)


UsageSink = Callable[[EngineRequest, str, str, str, str | None], None]


class _EngineCollector(Collector):
    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        gauges: dict[str, tuple[str, Callable[[EngineStats], int]]] = {
            "queue_depth": ("Requests waiting for a sequence", lambda s: s.waiting),
            "running_sequences": ("Sequences being decoded", lambda s: s.running),
            "kv_cells_used": ("KV cells in use (live and cached)", lambda s: s.kv_cells_used),
            "kv_cells_total": ("KV cells in the context", lambda s: s.kv_cells_total),
            "prefix_cache_hits": ("Prompts that reused a cached prefix", lambda s: s.prefix_hits),
            "prefix_cache_misses": ("Prompts with no cached prefix", lambda s: s.prefix_misses),
            "preemptions": ("Requests preempted for KV cells", lambda s: s.preemptions),
        }
        stats = self._manager.engine_stats()
        for key, (help_text, read) in gauges.items():
            family = GaugeMetricFamily(f"hearth_{key}", help_text, labels=["model"])
            for name, snapshot in stats:
                family.add_metric([name], float(read(snapshot)))
            yield family
        speculation: dict[str, tuple[str, Callable[[EngineStats], int]]] = {
            "speculative_draft_tokens": ("Draft tokens verified", lambda s: s.draft_tokens),
            "speculative_accepted_tokens": ("Draft tokens accepted", lambda s: s.accepted_tokens),
        }
        for key, (help_text, read) in speculation.items():
            counter = CounterMetricFamily(f"hearth_{key}", help_text, labels=["model"])
            for name, snapshot in stats:
                counter.add_metric([name], float(read(snapshot)))
            yield counter
        memory = GaugeMetricFamily(
            "hearth_model_memory_bytes", "Estimated memory of each loaded model", labels=["model"]
        )
        for status in self._manager.loaded():
            memory.add_metric([status.name], float(status.memory.total))
        yield memory
        loaded = GaugeMetricFamily("hearth_loaded_models", "Models loaded now")
        loaded.add_metric([], float(len(stats)))
        yield loaded
