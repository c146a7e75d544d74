"""Prometheus metrics of one app: HTTP, embedding stages, retrieval, chat, and vLLM's own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from rag_appliance.embedding.batcher import BatcherStats

# Whole-request latency: embeddings take milliseconds, streamed chat answers up to minutes.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Queue wait and forward passes: sub-millisecond on an idle GPU, seconds under overload.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024 inputs
BATCH_TOKEN_BUCKETS = tuple(float(2**i) for i in range(4, 18))  # 16 .. 131,072 padded tokens
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# The global registry's families we re-export: vLLM registers its own there ("vllm:...").
VLLM_PREFIX = "vllm"


class EngineCollector(Collector):
    """Reads the batcher's counters at scrape time (no bookkeeping on the hot path)."""

    def __init__(self, stats: Callable[[], BatcherStats]) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the registry would otherwise call collect() at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The counters and the queue gauge, read now."""
        stats = self._stats()
        counters = {
            "requests": ("Embedding requests admitted", stats.requests),
            "items": ("Inputs encoded", stats.items),
            "forward_passes": ("Model forward passes", stats.forward_passes),
            "real_tokens": ("Tokens encoded, without padding", stats.real_tokens),
            "padded_tokens": ("Tokens encoded, with padding", stats.padded_tokens),
            "rejected_requests": ("Requests refused with 429", stats.rejected),
            "failed_batches": ("Forward passes that raised", stats.failed_batches),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"rag_embedding_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "rag_embedding_queued_items", "Inputs waiting for the engine", value=stats.queued_items
        )


class PrefixCollector(Collector):
    """Re-exports another registry's families whose names start with a prefix."""

    def __init__(self, source: CollectorRegistry, prefix: str) -> None:
        self._source = source
        self._prefix = prefix

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families appear only once vLLM has registered them."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The source's matching families, read now."""
        for family in self._source.collect():
            if family.name.startswith(self._prefix):
                yield family


class Metrics:
    """One app's metrics on its own registry (several apps may share a process in tests)."""

    def __init__(
        self,
        engine_stats: Callable[[], BatcherStats] | None = None,
        vllm_source: CollectorRegistry = REGISTRY,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = ("method", "route", "status")
        self.http_requests = Counter(
            "rag_http_requests", "HTTP requests by route template and status", labels, registry=r
        )
        self.http_duration = Histogram(
            "rag_http_request_duration_seconds",
            "HTTP request latency to the end of the response body",
            labels,
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "rag_embedding_queue_wait_seconds",
            "Time an input waited from admission to the start of its forward pass",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "rag_embedding_batch_size",
            "Inputs per forward pass",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_tokens = Histogram(
            "rag_embedding_batch_tokens",
            "Padded tokens (inputs x longest) per forward pass",
            buckets=BATCH_TOKEN_BUCKETS,
            registry=r,
        )
        self.forward = Histogram(
            "rag_embedding_forward_seconds",
            "Duration of one embedding forward pass",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.retrieval = Histogram(
            "rag_retrieval_seconds",
            "Retrieval latency: query embedding plus vector search",
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "rag_chat_time_to_first_token_seconds",
            "Chat latency from admission to the first generated token",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        if engine_stats is not None:
            r.register(EngineCollector(engine_stats))
        r.register(PrefixCollector(vllm_source, VLLM_PREFIX))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished HTTP request."""
        code = str(status)
        self.http_requests.labels(method, route, code).inc()
        self.http_duration.labels(method, route, code).observe(seconds)

    def observe_batch(
        self, waits: Sequence[float], size: int, padded_tokens: int, forward_s: float
    ) -> None:
        """One embedding forward pass and how long each of its inputs queued for it."""
        for wait in waits:
            self.queue_wait.observe(wait)
        self.batch_size.observe(size)
        self.batch_tokens.observe(padded_tokens)
        self.forward.observe(forward_s)

    def observe_retrieval(self, seconds: float) -> None:
        """One retrieval (query embedding + search)."""
        self.retrieval.observe(seconds)

    def observe_ttft(self, seconds: float) -> None:
        """One chat completion's time to its first token."""
        self.ttft.observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of everything above, vLLM's families included."""
        return generate_latest(self.registry)
